//! `tollgate render`: a complete Envoy bootstrap for a configuration. Envoy does the traffic work
//! (listener, clusters, TLS, timeouts, buffer limits, SigV4 signing); the filter decides and
//! translates.

use serde_json::{json, Value};

use crate::config::{Cluster, Config};
use crate::filter::{
    body_metadata, ATTEMPT_HEADER, ATTEMPT_RETRY_HEADER, ATTEMPT_ROOT_ID, CLUSTER_HEADER,
    ERROR_NAMESPACE, METADATA_NAMESPACE, USAGE_NAMESPACE,
};
use crate::providers::{AwsCredentials, Signing};
use crate::stats;

pub struct RenderOptions {
    pub listen_host: String,
    pub listen_port: u16,
    pub admin_host: String,
    pub admin_port: u16,
    pub wasm_path: String,
    /// Load the filter as an Envoy dynamic module from this `.so` instead of the `.wasm`.
    pub module_path: Option<String>,
    pub ca_file: String,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            listen_host: "127.0.0.1".into(),
            listen_port: 4000,
            admin_host: "127.0.0.1".into(),
            admin_port: 9901,
            wasm_path: "target/wasm32-wasip1/release/tollgate.wasm".into(),
            module_path: None,
            ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
        }
    }
}

/// Splits `host:port` (or `[v6]:port`).
pub fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("'{s}' is not host:port"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("'{s}' has an invalid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("'{s}' has no host"));
    }
    Ok((host.to_string(), port))
}

fn secs(x: f64) -> String {
    // Envoy durations are strings with an "s" suffix; keep millisecond precision.
    format!("{:.3}s", x)
}

/// The `json_to_metadata` filter that lets the wasm filter route on the body's `model` in its
/// request-headers phase (a wasm filter cannot wait for the body there in Envoy 1.40).
pub fn json_to_metadata_filter() -> Value {
    let ns = METADATA_NAMESPACE;
    json!({
        "name": "envoy.filters.http.json_to_metadata",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.json_to_metadata.v3.JsonToMetadata",
            "request_rules": {
                "rules": [
                    {
                        "selectors": [{"key": "model"}],
                        "on_present": {"metadata_namespace": ns, "key": "model", "type": "STRING"},
                        "on_missing": {"metadata_namespace": ns, "key": "model_missing", "value": true},
                        "on_error": {"metadata_namespace": ns, "key": "body_error", "value": true}
                    },
                    {
                        // The same field with its JSON type kept: a number or boolean `model`
                        // differs from its stringified form, so the filter can refuse it.
                        "selectors": [{"key": "model"}],
                        "on_present": {"metadata_namespace": ns, "key": "model_value"}
                    },
                    {
                        "selectors": [{"key": "stream"}],
                        "on_present": {"metadata_namespace": ns, "key": "stream"}
                    }
                ],
                "allow_content_types": body_metadata::JSON_CONTENT_TYPES
            }
        }
    })
}

/// A second `json_to_metadata`, after Tollgate in the chain, so it runs before Tollgate on the
/// response path: it buffers a JSON response and extracts the provider's usage into metadata,
/// which lets Tollgate put the request's cost in the response headers (sent before the body).
pub fn usage_to_metadata_filter() -> Value {
    let fields: Vec<(&[&str], &str)> = body_metadata::USAGE_FIELDS
        .iter()
        .map(|p| (*p, p.last().copied().unwrap_or_default()))
        .collect();
    response_fields_to_metadata(USAGE_NAMESPACE, "NUMBER", &fields)
}

/// A `json_to_metadata` with response rules copying JSON fields (by path) into a namespace.
fn response_fields_to_metadata(namespace: &str, kind: &str, fields: &[(&[&str], &str)]) -> Value {
    let rules: Vec<Value> = fields
        .iter()
        .map(|(path, key)| {
            json!({
                "selectors": path.iter().map(|k| json!({"key": k})).collect::<Vec<_>>(),
                "on_present": {"metadata_namespace": namespace, "key": key, "type": kind}
            })
        })
        .collect();
    json!({
        "name": "envoy.filters.http.json_to_metadata",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.json_to_metadata.v3.JsonToMetadata",
            "response_rules": {"rules": rules, "allow_content_types": ["application/json"]}
        }
    })
}

pub fn wasm_filter(
    plugin_json: &str,
    env_keys: &[String],
    wasm_path: &str,
    root_id: &str,
) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "tollgate",
                // Both roles share one VM (`vm_id`), and so its shared data.
                "root_id": root_id,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": plugin_json
                },
                "vm_config": {
                    "vm_id": "tollgate",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": wasm_path}},
                    "environment_variables": {"host_env_keys": env_keys}
                }
            }
        }
    })
}

/// The same filter as an Envoy dynamic module: native code, no VM. Both roles load one `.so`
/// (so they share its process-wide store) and tell themselves apart by `filter_name`; the
/// metrics are tagged stats (`dynamicmodulescustom.tollgate.*`, as the wasm filter's are
/// `wasmcustom.tollgate.*`).
pub fn module_filter(plugin_json: &str, module_path: &str, root_id: &str) -> Value {
    json!({
        "name": "tollgate",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            "dynamic_module_config": {
                "module": {"local": {"filename": module_path}},
                "do_not_close": true
            },
            "filter_name": root_id,
            "filter_config": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": plugin_json
            }
        }
    })
}

/// Tollgate's filter in the chosen form: the `.wasm` (default) or the dynamic module.
fn tollgate_filter(
    config: &Config,
    plugin_json: &str,
    opts: &RenderOptions,
    root_id: &str,
) -> Value {
    match &opts.module_path {
        Some(path) => module_filter(plugin_json, path, root_id),
        None => wasm_filter(plugin_json, &config.env_keys, &opts.wasm_path, root_id),
    }
}

/// The edge listener's HTTP filters. The `.wasm` needs `json_to_metadata` in front (it cannot wait
/// for the body before the route is chosen), the buffer filter behind (so the router sees
/// nothing until Tollgate has accepted the body) and a second `json_to_metadata` for the
/// response's usage; the dynamic module holds the headers until the body is in, each way, and
/// reads the body itself, so it needs none of them.
fn edge_filters(config: &Config, plugin_json: &str, opts: &RenderOptions) -> Vec<Value> {
    let max_body = config.settings.max_request_body_bytes;
    let tollgate = tollgate_filter(config, plugin_json, opts, "tollgate");
    if opts.module_path.is_some() {
        vec![tollgate, router_filter()]
    } else {
        vec![
            json_to_metadata_filter(),
            tollgate,
            usage_to_metadata_filter(),
            hold_until_accepted(max_body),
            router_filter(),
        ]
    }
}

/// Envoy's buffer filter between Tollgate and the router: the router (and so the upstream) sees
/// nothing until Tollgate has accepted and rewritten the whole body, so a request Tollgate
/// refuses in its body phase never opens an upstream request. The body is already buffered by
/// json_to_metadata, so this adds no copy.
pub fn hold_until_accepted(max_body: u64) -> Value {
    json!({
        "name": "envoy.filters.http.buffer",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": max_body.min(u64::from(u32::MAX))
        }
    })
}

fn local_reply_config(max_body: u64) -> Value {
    let status_filter = |code: u16| json!({"status_code_filter": {"comparison": {"op": "EQ", "value": {"default_value": code, "runtime_key": format!("tollgate.local_reply.{code}")}}}});
    let error = |message: String, code: &str| json!({"json_format": {"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}}});
    // Only replies Envoy makes before the filter sees the request; the filter's own replies are
    // JSON already and never use these statuses.
    json!({
        "mappers": [
            {
                "filter": status_filter(413),
                "body_format_override": error(
                    format!("Request body too large: the gateway accepts at most {max_body} bytes (tollgate_settings.max_request_body_bytes)."),
                    "request_too_large"
                )
            },
            {
                "filter": status_filter(431),
                "body_format_override": error("Request headers too large.".into(), "headers_too_large")
            }
        ]
    })
}

fn signing_filter(s: &Signing) -> Value {
    let credential_provider = match &s.credentials {
        AwsCredentials::Environment => json!({
            "custom_credential_provider_chain": true,
            "environment_credential_provider": {}
        }),
        AwsCredentials::Inline {
            access_key_id,
            secret_access_key,
            session_token,
        } => {
            let mut inline =
                json!({"access_key_id": access_key_id, "secret_access_key": secret_access_key});
            if let (Some(t), Some(m)) = (session_token, inline.as_object_mut()) {
                m.insert("session_token".into(), json!(t));
            }
            json!({"inline_credential": inline})
        }
    };
    json!({
        "name": "envoy.filters.http.aws_request_signing",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.aws_request_signing.v3.AwsRequestSigning",
            "service_name": s.service,
            "region": s.region,
            // SigV4 covers the body's hash: the translated body, which this filter buffers.
            "use_unsigned_payload": false,
            // Only headers that stay as signed may be signed: not Envoy's per-attempt headers, the
            // tracing context (rewritten per span), forwarding headers (proxies append to them), or
            // user-agent (AWS SDKs leave it unsigned for the same reason).
            "match_excluded_headers": [
                {"prefix": "x-envoy"},
                {"prefix": "x-forwarded-"},
                {"prefix": "x-b3-"},
                {"exact": "x-request-id"},
                {"exact": "traceparent"},
                {"exact": "tracestate"},
                {"exact": "baggage"},
                {"exact": "b3"},
                {"exact": "x-amzn-trace-id"},
                {"exact": "user-agent"}
            ],
            "credential_provider": credential_provider
        }
    })
}

/// Sets a field on a JSON object built by `json!` (always an object here).
fn put(v: &mut Value, key: &str, value: Value) {
    if let Some(m) = v.as_object_mut() {
        m.insert(key.to_string(), value);
    }
}

fn is_ip(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
}

fn cluster(c: &Cluster, max_body: u64, ca_file: &str) -> Value {
    let mut protocol = if c.tls {
        json!({"auto_config": {"http_protocol_options": {}, "http2_protocol_options": {}}})
    } else {
        json!({"explicit_http_config": {"http_protocol_options": {}}})
    };
    put(
        &mut protocol,
        "@type",
        json!("type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"),
    );
    put(
        &mut protocol,
        "common_http_protocol_options",
        json!({"idle_timeout": "300s"}),
    );
    if let Some(s) = &c.signing {
        put(
            &mut protocol,
            "http_filters",
            json!([
                signing_filter(s),
                {"name": "envoy.filters.http.upstream_codec", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"}}
            ]),
        );
    }
    let mut v = json!({
        "name": c.name,
        "type": if is_ip(&c.host) { "STATIC" } else { "LOGICAL_DNS" },
        "connect_timeout": "10s",
        "per_connection_buffer_limit_bytes": max_body,
        "load_assignment": {
            "cluster_name": c.name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": c.host, "port_value": c.port}}}}]}]
        },
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": protocol}
    });
    if !is_ip(&c.host) {
        put(&mut v, "dns_lookup_family", json!("V4_PREFERRED"));
    }
    if c.tls {
        put(
            &mut v,
            "transport_socket",
            json!({
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "sni": c.host,
                    "common_tls_context": {
                        "alpn_protocols": ["h2", "http/1.1"],
                        "validation_context": {
                            "trusted_ca": {"filename": ca_file},
                            "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": c.host}}]
                        }
                    }
                }
            }),
        );
    }
    v
}

/// The whole bootstrap. `plugin_json` is the configuration document the filter will parse.
/// An error response's fields, in the attempt listener (after Tollgate there, so first on the
/// response path): they let an attempt tell a context-length or content-policy refusal from other
/// errors before the response body reaches it.
pub fn error_to_metadata_filter() -> Value {
    let fields: [(&[&str], &str); 5] = [
        (&["error", "message"], "error_message"),
        (&["error", "code"], "error_code"),
        (&["error", "type"], "error_type"),
        (&["error", "status"], "error_status"),
        (&["message"], "message"),
    ];
    response_fields_to_metadata(ERROR_NAMESPACE, "STRING", &fields)
}

fn router_filter() -> Value {
    json!({"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
}

fn hcm(
    stat_prefix: &str,
    routes: Vec<Value>,
    filters: Vec<Value>,
    timeout: f64,
    edge: bool,
    max_body: u64,
) -> Value {
    let mut v = json!({
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat_prefix,
        "codec_type": "AUTO",
        // A non-streamed completion can be silent for the whole request timeout.
        "stream_idle_timeout": secs(timeout + 5.0),
        "route_config": {
            "name": stat_prefix,
            "virtual_hosts": [{"name": stat_prefix, "domains": ["*"], "routes": routes}]
        },
        "http_filters": filters
    });
    if edge {
        put(&mut v, "use_remote_address", json!(true));
        put(&mut v, "local_reply_config", local_reply_config(max_body));
    }
    v
}

/// Envoy retries a handed-off request against the attempt listener while the attempt says so
/// (`x-tollgate-retry`); the attempts a request can need bound the retries.
fn attempt_route(config: &Config, timeout: f64) -> Value {
    let r = &config.router;
    let per_group = 1 + [
        Some(r.num_retries),
        r.retry_policy.rate_limit,
        r.retry_policy.internal_server,
        r.retry_policy.timeout,
    ]
    .iter()
    .flatten()
    .copied()
    .max()
    .unwrap_or(0);
    let longest_chain = config
        .model_names
        .iter()
        .map(|g| {
            1 + r.fallback_chain(g).len()
                + r.context_window_fallbacks.get(g).map_or(0, Vec::len)
                + r.content_policy_fallbacks.get(g).map_or(0, Vec::len)
        })
        .max()
        .unwrap_or(1);
    let groups_size = config.groups.values().map(Vec::len).max().unwrap_or(1);
    let attempts = (per_group as usize)
        .max(groups_size)
        .saturating_mul(longest_chain)
        .clamp(2, 50);
    json!({
        "match": {"prefix": "/", "headers": [{"name": ATTEMPT_HEADER, "present_match": true}]},
        "route": {
            "cluster": ATTEMPT_CLUSTER,
            "timeout": secs(timeout),
            "retry_policy": {
                "retry_on": "retriable-headers",
                "retriable_headers": [{"name": ATTEMPT_RETRY_HEADER, "string_match": {"exact": "1"}}],
                "num_retries": attempts - 1,
                "retry_back_off": {"base_interval": "0.005s", "max_interval": "0.05s"}
            }
        }
    })
}

const ATTEMPT_LISTENER: &str = "tollgate_attempt";
const ATTEMPT_CLUSTER: &str = "tollgate_attempts";

/// The whole bootstrap. `plugin_json` is the configuration document the filter will parse.
pub fn bootstrap(config: &Config, plugin_json: &str, opts: &RenderOptions) -> Value {
    let timeout = config.settings.request_timeout_secs;
    let max_body = config.settings.max_request_body_bytes;
    let route_all = json!({
        "match": {"prefix": "/", "headers": [{"name": CLUSTER_HEADER, "present_match": true}]},
        "route": {"cluster_header": CLUSTER_HEADER, "timeout": secs(timeout)},
        // Applied after the cluster is chosen: the internal header never reaches a provider.
        "request_headers_to_remove": [CLUSTER_HEADER]
    });
    let fallback = json!({
        "match": {"prefix": "/"},
        "direct_response": {
            "status": 404,
            "body": {"inline_string": "{\"error\":{\"message\":\"Not found\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"unknown_url\"}}"}
        }
    });
    let uses_attempts = config
        .groups
        .iter()
        .any(|(alias, members)| config.router.needs_attempts(alias, members.len()));
    let mut edge_routes = Vec::new();
    if uses_attempts {
        edge_routes.push(attempt_route(config, timeout));
    }
    edge_routes.push(route_all.clone());
    edge_routes.push(fallback.clone());
    let edge = json!({
        "name": "tollgate",
        "address": {"socket_address": {"address": opts.listen_host, "port_value": opts.listen_port}},
        "per_connection_buffer_limit_bytes": max_body,
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": hcm("tollgate", edge_routes, edge_filters(config, plugin_json, opts), timeout, true, max_body)
        }]}]
    });
    let mut listeners = vec![edge];
    let mut clusters: Vec<Value> = config
        .clusters
        .iter()
        .map(|c| cluster(c, max_body, &opts.ca_file))
        .collect();
    let mut bootstrap_extensions = Vec::new();
    if uses_attempts {
        // Each attempt of a routed request runs through this in-process listener, where Tollgate
        // chooses the deployment and translates the request for it.
        listeners.push(json!({
            "name": ATTEMPT_LISTENER,
            "internal_listener": {},
            "per_connection_buffer_limit_bytes": max_body,
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": hcm(ATTEMPT_LISTENER, vec![route_all, fallback], vec![
                    tollgate_filter(config, plugin_json, opts, ATTEMPT_ROOT_ID),
                    error_to_metadata_filter(),
                    hold_until_accepted(max_body),
                    router_filter(),
                ], timeout, false, max_body)
            }]}]
        }));
        clusters.push(json!({
            "name": ATTEMPT_CLUSTER,
            "connect_timeout": "1s",
            "per_connection_buffer_limit_bytes": max_body,
            "load_assignment": {
                "cluster_name": ATTEMPT_CLUSTER,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"envoy_internal_address": {"server_listener_name": ATTEMPT_LISTENER}}}}]}]
            },
            "transport_socket": {
                "name": "envoy.transport_sockets.internal_upstream",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.internal_upstream.v3.InternalUpstreamTransport",
                    "transport_socket": {"name": "envoy.transport_sockets.raw_buffer", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}
                }
            }
        }));
        bootstrap_extensions.push(json!({
            "name": "envoy.bootstrap.internal_listener",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener"}
        }));
    }
    let mut v = json!({
        "node": {"id": "tollgate", "cluster": "tollgate"},
        "admin": {"address": {"socket_address": {"address": opts.admin_host, "port_value": opts.admin_port}}},
        "static_resources": {"listeners": listeners, "clusters": clusters}
    });
    if opts.module_path.is_some() {
        // Prometheus shows the dynamic module's stats without the `dynamicmodulescustom`
        // namespace, as it shows the wasm filter's without `wasmcustom`:
        // `tollgate_requests_total{...}` either way.
        put(
            &mut v,
            "layered_runtime",
            json!({"layers": [{"name": "tollgate", "static_layer": {
                "envoy.reloadable_features.dynamic_modules_strip_custom_stat_prefix": true
            }}]}),
        );
    } else {
        // Tags encoded in the wasm filter's metric names become Prometheus labels (the dynamic
        // module's metrics carry their tags).
        put(
            &mut v,
            "stats_config",
            json!({"stats_tags": stats::STATS_TAGS.iter().map(|(tag, regex)| json!({"tag_name": tag, "regex": regex})).collect::<Vec<_>>()}),
        );
    }
    if !bootstrap_extensions.is_empty() {
        put(&mut v, "bootstrap_extensions", json!(bootstrap_extensions));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, Strictness};
    use hashbrown::HashMap;

    /// The Bedrock clusters: SigV4 signing before the codec where credentials come from AWS, none
    /// with an API key; inline credentials only when the config has them.
    #[test]
    fn bedrock_clusters_sign_with_envoys_filter() {
        let doc = serde_json::json!({"model_list": [
            {"model_name": "env", "litellm_params": {"model": "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0",
                "aws_region_name": "us-east-1",
                "aws_access_key_id": "os.environ/AWS_ACCESS_KEY_ID", "aws_secret_access_key": "os.environ/AWS_SECRET_ACCESS_KEY"}},
            {"model_name": "inline", "litellm_params": {"model": "bedrock/amazon.nova-lite-v1:0",
                "aws_region_name": "eu-west-1", "aws_access_key_id": "AKIAINLINEEXAMPLE", "aws_secret_access_key": "inline-secret",
                "aws_session_token": "inline-token"}},
            {"model_name": "key", "litellm_params": {"model": "bedrock/amazon.nova-lite-v1:0",
                "aws_region_name": "us-east-1", "api_key": "ABSKexample"}}
        ]});
        let env: HashMap<String, String> = HashMap::new();
        let report = load(&doc, &env, Strictness::Check);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let config = report.config.unwrap();
        let b = bootstrap(&config, "{}", &RenderOptions::default());
        let clusters = b["static_resources"]["clusters"].as_array().unwrap();
        let filters = |host: &str| {
            let c = clusters
                .iter()
                .find(|c| {
                    c["name"].as_str().unwrap().contains(host)
                        && c["typed_extension_protocol_options"]
                            ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
                            .get("http_filters")
                            .is_some()
                })
                .unwrap_or_else(|| panic!("no signed cluster for {host}"));
            c["typed_extension_protocol_options"]
                ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"]
                .clone()
        };
        let f = filters("bedrock-runtime.us-east-1");
        assert_eq!(f[0]["name"], "envoy.filters.http.aws_request_signing");
        assert_eq!(f[1]["name"], "envoy.filters.http.upstream_codec");
        let signing = &f[0]["typed_config"];
        assert_eq!(signing["service_name"], "bedrock");
        assert_eq!(signing["region"], "us-east-1");
        assert_eq!(signing["use_unsigned_payload"], false);
        assert_eq!(
            signing["credential_provider"],
            serde_json::json!({"custom_credential_provider_chain": true, "environment_credential_provider": {}})
        );
        let excluded = signing["match_excluded_headers"].to_string();
        for h in [
            "x-envoy",
            "x-request-id",
            "traceparent",
            "user-agent",
            "x-forwarded-",
        ] {
            assert!(excluded.contains(h), "{h}");
        }
        let inline = &filters("bedrock-runtime.eu-west-1")[0]["typed_config"];
        assert_eq!(inline["region"], "eu-west-1");
        assert_eq!(
            inline["credential_provider"],
            serde_json::json!({"inline_credential": {"access_key_id": "AKIAINLINEEXAMPLE",
                "secret_access_key": "inline-secret", "session_token": "inline-token"}})
        );
        // The API-key deployment shares the host but not the cluster, and is not signed.
        let unsigned: Vec<_> = clusters
            .iter()
            .filter(|c| {
                c["name"]
                    .as_str()
                    .unwrap()
                    .contains("bedrock-runtime.us-east-1")
            })
            .filter(|c| {
                c["typed_extension_protocol_options"]
                    ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
                    .get("http_filters")
                    .is_none()
            })
            .collect();
        assert_eq!(unsigned.len(), 1);
    }
}
