"""A minimal hand-written Envoy bootstrap with Tollgate, for tests that bypass `tollgate render`."""


def minimal_bootstrap(plugin_json, port, admin_port, wasm):
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {"listeners": [{
            "name": "l",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "t",
                    "route_config": {"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": []}]},
                    "http_filters": [
                        {"name": "envoy.filters.http.wasm", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                            "config": {"name": "tollgate", "root_id": "tollgate",
                                       "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": plugin_json},
                                       "vm_config": {"vm_id": "tollgate", "runtime": "envoy.wasm.runtime.v8",
                                                     "code": {"local": {"filename": wasm}}}}}},
                        {"name": "envoy.filters.http.router", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
                    ],
                },
            }]}],
        }]},
    }


def minimal_module_bootstrap(plugin_json, port, admin_port, module):
    """The same with Tollgate loaded as an Envoy dynamic module."""
    b = minimal_bootstrap(plugin_json, port, admin_port, "unused")
    hcm = b["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"][0] = {"name": "tollgate", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
        "dynamic_module_config": {"module": {"local": {"filename": module}}, "do_not_close": True},
        "filter_name": "tollgate",
        "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": plugin_json}}}
    return b
