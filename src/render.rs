//! `tollgate render`: a complete Envoy bootstrap for a configuration. Envoy does the traffic work
//! (listener, clusters, TLS, timeouts, buffer limits, SigV4 signing); the filter decides and
//! translates.

use serde_json::{json, Value};

use crate::config::store::{StoreSettings, STORE_CLUSTER};
use crate::config::{Cluster, Config, Settings, ATTEMPT_CLUSTER};
use crate::error::ApiError;
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
                    },
                    {
                        // A Responses API turn goes to the deployment holding the one before.
                        "selectors": [{"key": "previous_response_id"}],
                        "on_present": {"metadata_namespace": ns, "key": "previous_response_id", "type": "STRING"}
                    }
                ],
                "allow_content_types": body_metadata::JSON_CONTENT_TYPES,
                "allow_content_types_regex": {"regex": body_metadata::JSON_CONTENT_TYPE_REGEX}
            }
        }
    })
}

/// A second `json_to_metadata`, after Tollgate in the chain, so it runs before Tollgate on the
/// response path: it buffers a JSON response and extracts the provider's usage into metadata,
/// which lets Tollgate put the request's cost in the response headers (sent before the body), and
/// marks what the body is (an answer, an error, not JSON) so that a 200 that is no answer becomes
/// a 502 before its headers go out.
pub fn usage_to_metadata_filter() -> Value {
    let fields: Vec<(&[&str], &str)> = body_metadata::USAGE_FIELDS
        .iter()
        .map(|p| (*p, p.last().copied().unwrap_or_default()))
        .collect();
    // Typed as JSON has them: a count sent as a string must not read as the number it spells
    // (Envoy's NUMBER type would convert "5" to 5), since the body's usage is then unusable.
    let mut rules = field_rules(USAGE_NAMESPACE, "PROTOBUF_VALUE", &fields);
    rules.extend(field_rules(
        USAGE_NAMESPACE,
        "STRING",
        &[
            (&["message"], body_metadata::MESSAGE),
            (&["error", "message"], body_metadata::ERROR_MESSAGE),
        ],
    ));
    rules.extend(answer_rules(USAGE_NAMESPACE));
    response_rules_filter(rules)
}

/// Rules copying JSON fields (by path) into a namespace, as `kind`.
fn field_rules(namespace: &str, kind: &str, fields: &[(&[&str], &str)]) -> Vec<Value> {
    fields
        .iter()
        .map(|(path, key)| {
            json!({
                "selectors": path.iter().map(|k| json!({"key": k})).collect::<Vec<_>>(),
                "on_present": {"metadata_namespace": namespace, "key": key, "type": kind}
            })
        })
        .collect()
}

/// Rules marking a response body that is no JSON object: `body_error` when it is not JSON (or its
/// content type is not JSON's: Envoy applies every rule's `on_error` then), `not_object` when it
/// is a string or a number (Envoy applies every rule's `on_missing` then; with no `on_present`, a
/// rule's `on_missing` applies in no other case).
fn answer_rules(namespace: &str) -> Vec<Value> {
    let marker = |key: &str| json!({"metadata_namespace": namespace, "key": key, "value": true});
    vec![json!({
        "selectors": [{"key": "choices"}],
        "on_missing": marker(body_metadata::NOT_OBJECT),
        "on_error": marker(body_metadata::BODY_ERROR)
    })]
}

/// A `json_to_metadata` with these response rules, for JSON bodies (`application/json`, with or
/// without parameters such as `charset`).
fn response_rules_filter(rules: Vec<Value>) -> Value {
    json!({
        "name": "envoy.filters.http.json_to_metadata",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.json_to_metadata.v3.JsonToMetadata",
            "response_rules": {
                "rules": rules,
                "allow_content_types": ["application/json"],
                "allow_content_types_regex": {"regex": "(?i)application/json\\s*;.*"}
            }
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
/// reads the body itself, so it needs none of them. For the `.wasm`, Envoy's buffer filter also
/// comes first: it holds the request body to the size limit (see [`request_body_limit`]), which
/// the module does itself.
fn edge_filters(config: &Config, plugin_json: &str, opts: &RenderOptions) -> Vec<Value> {
    let max_body = config.settings.max_request_body_bytes;
    let tollgate = tollgate_filter(config, plugin_json, opts, "tollgate");
    if opts.module_path.is_some() {
        vec![tollgate, router_filter()]
    } else {
        vec![
            request_body_limit(max_body),
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

/// Envoy's buffer filter first in the edge chain, for the `.wasm`: at the request's headers it sets
/// the stream's buffer limit to `max_body` and holds the request until its body is in, so no
/// filter behind it (`json_to_metadata`, Tollgate) buffers more, over HTTP/1.1 and HTTP/2 alike.
/// Without it an HTTP/2 stream starts with the HTTP/2 stream window as its limit (256 MiB), not
/// the listener's. A body of `max_body` + 1 bytes is Envoy's 413.
pub fn request_body_limit(max_body: u64) -> Value {
    json!({
        "name": "tollgate.request_body_limit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
            "max_request_bytes": max_body.min(u64::from(u32::MAX))
        }
    })
}

/// OpenAI-shaped bodies for the replies Envoy makes itself where the filter cannot answer: before
/// it sees the request (a body or headers too large, a request sent too slowly, HTTP the codec
/// refuses), and after a response has begun to reach it (a response over the buffer limit, an
/// upstream reset in the middle of a body), where Envoy answers straight to the client. Each
/// mapper matches Envoy's own reply (by its status where the filter never uses it, else by its
/// response code details), so the filter's replies, which are JSON already, pass unchanged.
fn local_reply_config(settings: &Settings, edge: bool) -> Value {
    let status_filter = |code: u16| json!({"status_code_filter": {"comparison": {"op": "EQ", "value": {"default_value": code, "runtime_key": format!("tollgate.local_reply.{code}")}}}});
    let details_filter = |expression: &str| {
        json!({"extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": expression
            }
        }})
    };
    // A client of the Messages API gets each in Anthropic's shape: the same mapper, first, for
    // its requests (the edge knows them by path, the attempt listener by the gateway's header).
    let messages_filter = if edge {
        let prefixes: Vec<Value> = ["/v1/messages", "/messages"]
            .iter()
            .map(|p| json!({"header_filter": {"header": {"name": ":path", "string_match": {"prefix": p}}}}))
            .collect();
        json!({"or_filter": {"filters": prefixes}})
    } else {
        json!({"header_filter": {"header": {"name": "x-tollgate-client-api", "string_match": {"exact": "messages"}}}})
    };
    // The reply keeps Envoy's status unless the error's differs.
    let mapper = |filter: Value, e: ApiError, status: Option<u16>| {
        let kind = crate::ingress::anthropic::error_type(status.unwrap_or(e.status));
        let mut anthropic = json!({
            "filter": {"and_filter": {"filters": [filter.clone(), messages_filter.clone()]}},
            "body_format_override": {"json_format": {"type": "error", "error": {"type": kind, "message": e.message}}}
        });
        let mut openai = json!({
            "filter": filter,
            "body_format_override": {"json_format": {"error": {"message": e.message, "type": e.kind, "param": null, "code": e.code}}}
        });
        if let Some(status) = status {
            put(&mut anthropic, "status_code", json!(status));
            put(&mut openai, "status_code", json!(status));
        }
        [anthropic, openai]
    };
    let max_response = settings.max_response_body_bytes;
    let mut mappers: Vec<[Value; 2]> = vec![
        mapper(
            details_filter("response.code_details == 'response_payload_too_large'"),
            ApiError::bad_gateway(format!("The provider's response is larger than the gateway buffers: at most {max_response} bytes (tollgate_settings.max_response_body_bytes).")).with_code("response_too_large"),
            Some(502),
        ),
        mapper(
            details_filter("response.code_details.startsWith('upstream_reset_after_response_started')"),
            ApiError::bad_gateway("The provider closed the connection before its response was complete."),
            Some(502),
        ),
    ];
    if edge {
        let (headers, receive) = (
            settings.request_headers_timeout_secs,
            settings.request_receive_timeout_secs,
        );
        mappers.extend([
            mapper(status_filter(413), ApiError::body_too_large(settings.max_request_body_bytes), None),
            mapper(
                status_filter(431),
                ApiError::new(431, "invalid_request_error", "Request headers too large.").with_code("headers_too_large"),
                None,
            ),
            mapper(
                details_filter("response.code_details == 'request_header_timeout'"),
                ApiError::from_status(408, format!("The request headers were not received in time: the gateway waits at most {headers} s for them (tollgate_settings.request_headers_timeout).")).with_code("request_timeout"),
                None,
            ),
            mapper(
                details_filter("response.code_details == 'request_overall_timeout'"),
                ApiError::from_status(408, format!("The request was not received in time: the gateway waits at most {receive} s for a whole request (tollgate_settings.request_receive_timeout).")).with_code("request_timeout"),
                None,
            ),
            mapper(
                details_filter("response.code_details == 'low_version'"),
                ApiError::new(426, "invalid_request_error", "HTTP/1.0 is not supported: use HTTP/1.1 or HTTP/2.").with_code("http_version_not_supported"),
                None,
            ),
            // The HTTP/1 codec's refusals (a malformed chunk, Content-Length with
            // Transfer-Encoding, an invalid header).
            mapper(
                details_filter("response.code_details.startsWith('http1.')"),
                ApiError::invalid_request("The request is not valid HTTP (%RESPONSE_CODE_DETAILS%).").with_code("invalid_http_request"),
                None,
            ),
        ]);
    }
    let mappers: Vec<Value> = mappers.into_iter().flatten().collect();
    json!({"mappers": mappers})
}

/// Envoy's credential provider for these credentials; `None`: its default chain.
fn credential_provider(c: &AwsCredentials) -> Option<Value> {
    match c {
        AwsCredentials::DefaultChain => None,
        AwsCredentials::Environment => Some(json!({
            "custom_credential_provider_chain": true,
            "environment_credential_provider": {}
        })),
        AwsCredentials::Inline {
            access_key_id,
            secret_access_key,
            session_token,
        } => {
            let mut inline =
                json!({"access_key_id": access_key_id, "secret_access_key": secret_access_key});
            if let Some(t) = session_token {
                put(&mut inline, "session_token", json!(t));
            }
            Some(json!({"inline_credential": inline}))
        }
        AwsCredentials::AssumeRole {
            role_arn,
            session_name,
            external_id,
            source,
        } => {
            // Envoy calls STS AssumeRole in the signing region, signed with the source
            // credentials (its default chain when none are configured), and refreshes them.
            let mut assume = json!({"role_arn": role_arn});
            if let Some(n) = session_name {
                put(&mut assume, "role_session_name", json!(n));
            }
            if let Some(e) = external_id {
                put(&mut assume, "external_id", json!(e));
            }
            if let Some(p) = credential_provider(source) {
                put(&mut assume, "credential_provider", p);
            }
            Some(json!({
                "custom_credential_provider_chain": true,
                "assume_role_credential_provider": assume
            }))
        }
    }
}

fn signing_filter(s: &Signing) -> Value {
    let mut config = json!({
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
        ]
    });
    if let Some(p) = credential_provider(&s.credentials) {
        put(&mut config, "credential_provider", p);
    }
    json!({"name": "envoy.filters.http.aws_request_signing", "typed_config": config})
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

/// The shared store's cluster: the webdis sidecar, plain HTTP/1.1 (webdis speaks nothing else),
/// a short connect timeout (it runs beside Envoy; a refused or slow connection is the store
/// being down, which the filter's failure mode handles). Calls carry their own timeouts.
fn store_cluster(s: &StoreSettings) -> Value {
    let mut v = json!({
        "name": STORE_CLUSTER,
        "type": if is_ip(&s.host) { "STATIC" } else { "LOGICAL_DNS" },
        "connect_timeout": "0.250s",
        "load_assignment": {
            "cluster_name": STORE_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": s.host, "port_value": s.port}}}}]}]
        },
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http_protocol_options": {}},
            "common_http_protocol_options": {"idle_timeout": "60s"}
        }}
    });
    if !is_ip(&s.host) {
        put(&mut v, "dns_lookup_family", json!("V4_PREFERRED"));
    }
    v
}

/// The commands webdis lets through: the ones Tollgate sends (`FUNCTION` loads its library).
pub const WEBDIS_COMMANDS: [&str; 3] = ["FCALL", "FCALL_RO", "FUNCTION"];

/// What `tollgate webdis-config` writes: webdis (0.1.9's fields) listening where `store.url`
/// points, in front of `redis`, letting through only [`WEBDIS_COMMANDS`] and only with the
/// store's basic-auth credentials (`auth`, `user:password`), which it must hold itself (webdis
/// reads no environment).
pub fn webdis_config(
    listen: (&str, u16),
    redis: (&str, u16),
    redis_password: Option<&str>,
    auth: &str,
) -> Value {
    json!({
        "redis_host": redis.0,
        "redis_port": redis.1,
        "redis_auth": redis_password,
        "http_host": listen.0,
        "http_port": listen.1,
        "threads": 2,
        "pool_size": 8,
        "daemonize": false,
        "websockets": false,
        "database": 0,
        "verbosity": 3,
        "logfile": "/dev/stderr",
        "acl": [
            {"disabled": ["*"]},
            {"http_basic_auth": auth, "enabled": WEBDIS_COMMANDS}
        ]
    })
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
    let mut rules = field_rules(ERROR_NAMESPACE, "STRING", &fields);
    rules.extend(answer_rules(ERROR_NAMESPACE));
    response_rules_filter(rules)
}

fn router_filter() -> Value {
    json!({"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
}

/// The gateway's access log (`tollgate_settings.access_log`): one JSON line per request, Envoy's
/// own fields and the request's spend record (`filter::LOG_FIELDS`), which the `.wasm` leaves in
/// filter state and the dynamic module in dynamic metadata.
fn access_log(settings: &Settings, module: bool) -> Option<Value> {
    let target = settings.access_log.as_deref()?;
    let mut format = serde_json::Map::new();
    for (k, v) in [
        ("start_time", "%START_TIME%"),
        ("method", "%REQ(:METHOD)%"),
        ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
        ("response_code", "%RESPONSE_CODE%"),
        ("duration_ms", "%DURATION%"),
        ("x_request_id", "%REQ(X-REQUEST-ID)%"),
    ] {
        format.insert(k.into(), Value::from(v));
    }
    for f in crate::filter::LOG_FIELDS {
        let v = if module {
            format!("%DYNAMIC_METADATA({}:{f})%", crate::filter::LOG_NAMESPACE)
        } else {
            format!("%FILTER_STATE(wasm.tollgate.{f}:PLAIN)%")
        };
        format.insert(f.into(), Value::from(v));
    }
    let (name, config) = match target {
        "stdout" | "stderr" => (
            format!("envoy.access_loggers.{target}"),
            json!({
                "@type": format!("type.googleapis.com/envoy.extensions.access_loggers.stream.v3.{}AccessLog",
                    if target == "stdout" { "Stdout" } else { "Stderr" }),
                "log_format": {"json_format": format}
            }),
        ),
        path => (
            "envoy.access_loggers.file".to_string(),
            json!({
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": path,
                "log_format": {"json_format": format}
            }),
        ),
    };
    Some(json!({"name": name, "typed_config": config}))
}

fn hcm(
    stat_prefix: &str,
    routes: Vec<Value>,
    filters: Vec<Value>,
    timeout: f64,
    edge: bool,
    settings: &Settings,
    module: bool,
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
    put(
        &mut v,
        "local_reply_config",
        local_reply_config(settings, edge),
    );
    if edge {
        if let Some(log) = access_log(settings, module) {
            put(&mut v, "access_log", json!([log]));
        }
        put(&mut v, "use_remote_address", json!(true));
        // What a client may hold open: time to send its headers, then its whole request (the
        // timer stops once the request is in, so responses stream as long as they need), and
        // HTTP/2 streams per connection (each may hold a body up to the limit).
        put(
            &mut v,
            "request_headers_timeout",
            json!(secs(settings.request_headers_timeout_secs)),
        );
        put(
            &mut v,
            "request_timeout",
            json!(secs(settings.request_receive_timeout_secs)),
        );
        put(
            &mut v,
            "http2_protocol_options",
            json!({"max_concurrent_streams": MAX_CONCURRENT_STREAMS}),
        );
    }
    v
}

/// HTTP/2 streams a client may open on one connection (Envoy's default is unbounded); Envoy's
/// guidance for edge proxies.
const MAX_CONCURRENT_STREAMS: u32 = 100;

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
    // Names with chains of their own: the groups, and names only a wildcard serves.
    let longest_chain = config
        .model_names
        .iter()
        .chain(r.fallbacks.keys())
        .chain(r.context_window_fallbacks.keys())
        .chain(r.content_policy_fallbacks.keys())
        .map(|g| {
            1 + r.fallback_chain(g).len()
                + r.context_window_fallbacks.get(g).map_or(0, Vec::len)
                + r.content_policy_fallbacks.get(g).map_or(0, Vec::len)
        })
        .max()
        .unwrap_or(1);
    let groups_size = config
        .groups
        .values()
        .chain(config.patterns.iter().map(|p| &p.members))
        .map(Vec::len)
        .max()
        .unwrap_or(1);
    let attempts = (per_group as usize)
        .max(groups_size)
        .saturating_mul(longest_chain)
        .clamp(2, 50);
    json!({
        "match": {"prefix": "/", "headers": [{"name": ATTEMPT_HEADER, "present_match": true}]},
        "request_body_buffer_limit": config.settings.max_response_body_bytes,
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

/// Envoy's overload manager with its one proactive monitor: past `max_connections` client
/// connections (every listener's), Envoy closes new ones as it accepts them.
fn overload_manager(max_connections: u64) -> Value {
    json!({"resource_monitors": [{
        "name": "envoy.resource_monitors.global_downstream_max_connections",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
            "max_active_downstream_connections": max_connections
        }
    }]})
}

const ATTEMPT_LISTENER: &str = "tollgate_attempt";

/// The whole bootstrap. `plugin_json` is the configuration document the filter will parse.
pub fn bootstrap(config: &Config, plugin_json: &str, opts: &RenderOptions) -> Value {
    let timeout = config.settings.request_timeout_secs;
    let max_body = config.settings.max_request_body_bytes;
    let route_all = json!({
        "match": {"prefix": "/", "headers": [{"name": CLUSTER_HEADER, "present_match": true}]},
        "route": {"cluster_header": CLUSTER_HEADER, "timeout": secs(timeout)},
        // Applied after the cluster is chosen: the internal header never reaches a provider.
        "request_headers_to_remove": [CLUSTER_HEADER],
        "request_body_buffer_limit": config.settings.max_response_body_bytes
    });
    let fallback = json!({
        "match": {"prefix": "/"},
        "direct_response": {
            "status": 404,
            "body": {"inline_string": "{\"error\":{\"message\":\"Not found\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"unknown_url\"}}"}
        }
    });
    let uses_attempts = config.uses_attempts();
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
            "typed_config": hcm("tollgate", edge_routes, edge_filters(config, plugin_json, opts), timeout, true, &config.settings, opts.module_path.is_some())
        }]}]
    });
    let mut listeners = vec![edge];
    let mut clusters: Vec<Value> = config
        .clusters
        .iter()
        .map(|c| cluster(c, max_body, &opts.ca_file))
        .collect();
    if let Some(s) = &config.store {
        clusters.push(store_cluster(s));
    }
    let mut bootstrap_extensions = Vec::new();
    if uses_attempts {
        // Each attempt of a routed request runs through this in-process listener, where Tollgate
        // chooses the deployment and translates the request for it.
        listeners.push(json!({
            "name": ATTEMPT_LISTENER,
            "internal_listener": {},
            // Its connections are the gateway's own, one per handed-off request already admitted.
            "ignore_global_conn_limit": true,
            "per_connection_buffer_limit_bytes": max_body,
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": hcm(ATTEMPT_LISTENER, vec![route_all, fallback], vec![
                    tollgate_filter(config, plugin_json, opts, ATTEMPT_ROOT_ID),
                    error_to_metadata_filter(),
                    hold_until_accepted(max_body),
                    router_filter(),
                ], timeout, false, &config.settings, opts.module_path.is_some())
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
        "admin": {
            "address": {"socket_address": {"address": opts.admin_host, "port_value": opts.admin_port}},
            // Reachable however many clients are connected.
            "ignore_global_conn_limit": true
        },
        "static_resources": {"listeners": listeners, "clusters": clusters},
        "overload_manager": overload_manager(config.settings.max_downstream_connections)
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

    /// No keys: Envoy's default chain (no credential_provider at all). A role: STS AssumeRole,
    /// signed with the keys when given, else with the default chain.
    #[test]
    fn bedrock_default_chain_and_assume_role() {
        let claude = "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0";
        let doc = serde_json::json!({"model_list": [
            {"model_name": "default", "litellm_params": {"model": claude, "aws_region_name": "us-east-1"}},
            {"model_name": "role", "litellm_params": {"model": claude, "aws_region_name": "us-west-2",
                "aws_role_name": "arn:aws:iam::123456789012:role/bedrock", "aws_session_name": "tollgate-gw",
                "aws_external_id": "ext-1"}},
            {"model_name": "role-env", "litellm_params": {"model": claude, "aws_region_name": "eu-west-1",
                "aws_role_name": "arn:aws:iam::123456789012:role/bedrock",
                "aws_access_key_id": "os.environ/AWS_ACCESS_KEY_ID", "aws_secret_access_key": "os.environ/AWS_SECRET_ACCESS_KEY"}}
        ]});
        let env: HashMap<String, String> = HashMap::new();
        let report = load(&doc, &env, Strictness::Serve);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let b = bootstrap(&report.config.unwrap(), "{}", &RenderOptions::default());
        let signing = |region: &str| {
            b["static_resources"]["clusters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"].as_str().unwrap().contains(region))
                .unwrap()["typed_extension_protocol_options"]
                ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"][0]
                ["typed_config"]
                .clone()
        };
        let default = signing("us-east-1");
        assert_eq!(default["region"], "us-east-1");
        assert!(default.get("credential_provider").is_none(), "{default}");
        assert_eq!(
            signing("us-west-2")["credential_provider"],
            serde_json::json!({"custom_credential_provider_chain": true, "assume_role_credential_provider": {
                "role_arn": "arn:aws:iam::123456789012:role/bedrock", "role_session_name": "tollgate-gw",
                "external_id": "ext-1"}})
        );
        assert_eq!(
            signing("eu-west-1")["credential_provider"],
            serde_json::json!({"custom_credential_provider_chain": true, "assume_role_credential_provider": {
                "role_arn": "arn:aws:iam::123456789012:role/bedrock",
                "credential_provider": {"custom_credential_provider_chain": true, "environment_credential_provider": {}}}})
        );
    }

    fn limits_config() -> Config {
        let doc = serde_json::json!({
            "model_list": [
                {"model_name": "one", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-a"}},
                {"model_name": "pair", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-a"}},
                {"model_name": "pair", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-a"}}
            ],
            "tollgate_settings": {"max_request_body_bytes": 4096, "max_response_body_bytes": 8192,
                "request_headers_timeout": 3, "request_receive_timeout": 7, "max_downstream_connections": 9}
        });
        let env: HashMap<String, String> = HashMap::new();
        let report = load(&doc, &env, Strictness::Check);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        report.config.unwrap()
    }

    /// A deployment routed to a cluster of the user's (`model_info.envoy_cluster`) gets no
    /// rendered cluster, in either form; the others keep theirs.
    #[test]
    fn users_clusters_are_not_rendered() {
        let doc = serde_json::json!({"model_list": [
            {"model_name": "mesh", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-a",
                "api_base": "https://api.example.com/v1"},
             "model_info": {"envoy_cluster": "outbound|443||api.example.com"}},
            {"model_name": "direct", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-a",
                "api_base": "https://api.example.com/v1"}}
        ]});
        let env: HashMap<String, String> = HashMap::new();
        let config = load(&doc, &env, Strictness::Check).config.unwrap();
        for (b, _, _) in bootstraps(&config) {
            let names: Vec<&str> = b["static_resources"]["clusters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap())
                .collect();
            assert_eq!(names, ["tollgate_api.example.com_443"]);
        }
    }

    /// Each form's bootstrap; its edge and attempt connection managers.
    fn bootstraps(config: &Config) -> Vec<(Value, Value, Value)> {
        bootstraps_of(config, "{}")
    }

    fn bootstraps_of(config: &Config, plugin: &str) -> Vec<(Value, Value, Value)> {
        [None, Some("/m.so".to_string())]
            .into_iter()
            .map(|module_path| {
                let opts = RenderOptions {
                    module_path,
                    ..RenderOptions::default()
                };
                let b = bootstrap(config, plugin, &opts);
                let hcm = |i: usize| {
                    b["static_resources"]["listeners"][i]["filter_chains"][0]["filters"][0]
                        ["typed_config"]
                        .clone()
                };
                let (edge, attempt) = (hcm(0), hcm(1));
                (b, edge, attempt)
            })
            .collect()
    }

    /// The request body is held to its limit by the first filter (the `.wasm`'s buffer filter, or
    /// the module itself), the response buffer is the routes' limit, and Envoy's replies for
    /// either are OpenAI-shaped.
    #[test]
    fn body_limits_are_rendered() {
        for (_, hcm, attempt) in bootstraps(&limits_config()) {
            let filters = hcm["http_filters"].as_array().unwrap();
            if filters[0]["name"] == "tollgate.request_body_limit" {
                assert_eq!(filters[0]["typed_config"]["max_request_bytes"], 4096);
            } else {
                assert_eq!(filters[0]["name"], "tollgate");
            }
            for h in [&hcm, &attempt] {
                let routes = h["route_config"]["virtual_hosts"][0]["routes"]
                    .as_array()
                    .unwrap();
                for r in routes.iter().filter(|r| r.get("route").is_some()) {
                    assert_eq!(r["request_body_buffer_limit"], 8192, "{r}");
                }
                let mappers = h["local_reply_config"]["mappers"].to_string();
                for needle in [
                    "response_payload_too_large",
                    "upstream_reset_after_response_started",
                    "at most 8192 bytes",
                ] {
                    assert!(mappers.contains(needle), "{needle}");
                }
            }
            let mappers = hcm["local_reply_config"]["mappers"].to_string();
            assert!(mappers.contains("at most 4096 bytes"));
        }
    }

    /// The time to send a request is bounded by the edge's connection manager, the connections
    /// by the overload manager (the attempt listener's and the admin's not counted).
    #[test]
    fn client_limits_are_rendered() {
        for (b, hcm, attempt) in bootstraps(&limits_config()) {
            assert_eq!(hcm["request_headers_timeout"], "3.000s");
            assert_eq!(hcm["request_timeout"], "7.000s");
            assert_eq!(hcm["http2_protocol_options"]["max_concurrent_streams"], 100);
            let mappers = hcm["local_reply_config"]["mappers"].to_string();
            for needle in ["request_header_timeout", "request_overall_timeout"] {
                assert!(mappers.contains(needle), "{needle}");
            }
            assert!(attempt.get("request_timeout").is_none());
            let monitor = &b["overload_manager"]["resource_monitors"][0];
            assert_eq!(
                monitor["typed_config"]["max_active_downstream_connections"],
                9
            );
            assert_eq!(b["admin"]["ignore_global_conn_limit"], true);
            assert_eq!(
                b["static_resources"]["listeners"][1]["ignore_global_conn_limit"],
                true
            );
        }
    }

    /// The store's cluster is webdis over HTTP/1.1 with a short connect timeout, and its
    /// credentials reach the filter from the environment, never through Envoy's config.
    #[test]
    fn the_store_cluster_is_rendered_without_its_secret() {
        let doc = serde_json::json!({
            "model_list": [{"model_name": "one", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-a"}}],
            "tollgate_settings": {"store": {"url": "http://127.0.0.1:7379", "auth": "os.environ/TOLLGATE_STORE_AUTH"}}
        });
        let env: HashMap<String, String> = [(
            "TOLLGATE_STORE_AUTH".to_string(),
            "tollgate:very-secret".to_string(),
        )]
        .into_iter()
        .collect();
        let report = load(&doc, &env, Strictness::Check);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let config = report.config.unwrap();
        let plugin = serde_json::to_string(&doc).unwrap();
        for (b, _, _) in bootstraps_of(&config, &plugin) {
            let text = b.to_string();
            assert!(!text.contains("very-secret"));
            let clusters = b["static_resources"]["clusters"].as_array().unwrap();
            let store = clusters
                .iter()
                .find(|c| c["name"] == "tollgate_store")
                .unwrap();
            assert_eq!(store["type"], "STATIC");
            assert_eq!(store["connect_timeout"], "0.250s");
            let address = &store["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
                ["address"]["socket_address"];
            assert_eq!(address["address"], "127.0.0.1");
            assert_eq!(address["port_value"], 7379);
            let options = &store["typed_extension_protocol_options"]
                ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
            assert!(options["explicit_http_config"]["http_protocol_options"].is_object());
            assert!(store.get("transport_socket").is_none());
        }
        let wasm = bootstrap(&config, &plugin, &RenderOptions::default());
        let keys = wasm.to_string();
        assert!(
            keys.contains(r#""host_env_keys":["TOLLGATE_STORE_AUTH"]"#),
            "{keys}"
        );
        // No store: no cluster.
        assert!(
            !bootstrap(&limits_config(), "{}", &RenderOptions::default())
                .to_string()
                .contains("tollgate_store")
        );
    }

    #[test]
    fn webdis_lets_through_only_tollgates_commands_with_its_credentials() {
        let w = webdis_config(
            ("127.0.0.1", 7379),
            ("redis.internal", 6380),
            Some("rpw"),
            "u:p",
        );
        assert_eq!(w["http_host"], "127.0.0.1");
        assert_eq!(w["http_port"], 7379);
        assert_eq!(w["redis_host"], "redis.internal");
        assert_eq!(w["redis_port"], 6380);
        assert_eq!(w["redis_auth"], "rpw");
        assert_eq!(
            w["acl"],
            serde_json::json!([{"disabled": ["*"]}, {"http_basic_auth": "u:p", "enabled": ["FCALL", "FCALL_RO", "FUNCTION"]}])
        );
        assert_eq!(
            webdis_config(("127.0.0.1", 1), ("r", 2), None, "u:p")["redis_auth"],
            serde_json::Value::Null
        );
    }

    /// Requests the HTTP/1 codec refuses get OpenAI-shaped bodies on the edge only.
    #[test]
    fn codec_refusals_are_mapped() {
        for (_, hcm, attempt) in bootstraps(&limits_config()) {
            let edge = hcm["local_reply_config"]["mappers"].to_string();
            let internal = attempt["local_reply_config"]["mappers"].to_string();
            for needle in ["low_version", "startsWith('http1.')"] {
                assert!(edge.contains(needle), "{needle}");
                assert!(!internal.contains(needle), "{needle}");
            }
        }
    }
}
