use super::endpoint::{classify, path_decode, Endpoint};
use super::*;
use crate::config::{load, Strictness};
use crate::host::mock::MockHost;
use crate::openai::{self, Usage};
use hashbrown::HashMap;
use serde_json::json;

fn gateway() -> Arc<Config> {
    let doc = json!({
        "model_list": [
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-provider-secret", "api_base": "http://127.0.0.1:9001/v1"}}
        ],
        "general_settings": {"master_key": "sk-master"}
    });
    let r = load(&doc, &HashMap::<String, String>::new(), Strictness::Serve);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    Arc::new(r.config.unwrap())
}

fn chat_host(body: &str) -> MockHost {
    let mut h = MockHost::request(
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", "Bearer sk-master"),
            ("content-type", "application/json"),
            ("cookie", "c=1"),
            ("x-stainless-os", "Linux"),
        ],
    )
    .metadata("model", b"gpt");
    h.request_body = body.as_bytes().to_vec();
    h
}

#[test]
fn routes_a_chat_request() {
    let mut f = HttpFilter::new(gateway(), Role::Gateway);
    let mut h = chat_host(r#"{"model":"gpt","messages":[{"role":"user","content":"hi"}]}"#);
    assert_eq!(f.on_request_headers(&mut h, false), Action::Continue);
    assert!(h.reply.is_none());
    assert_eq!(
        h.header(CLUSTER_HEADER).as_deref(),
        Some("tollgate_127.0.0.1_9001")
    );
    assert_eq!(h.header(":path").as_deref(), Some("/v1/chat/completions"));
    assert_eq!(h.header(":authority").as_deref(), Some("127.0.0.1:9001"));
    assert_eq!(
        h.header("authorization").as_deref(),
        Some("Bearer sk-provider-secret")
    );
    assert!(h.header("cookie").is_none() && h.header("x-stainless-os").is_none());
    let size = h.request_body.len();
    assert_eq!(f.on_request_body(&mut h, size, true), Action::Continue);
    let sent: serde_json::Value = serde_json::from_slice(&h.request_body).unwrap();
    assert_eq!(sent["model"], "gpt-4o-mini");

    h.response_headers = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "application/json".into()),
        ("set-cookie".into(), "x".into()),
    ];
    h.properties
        .insert("response.code_details".into(), b"via_upstream".to_vec());
    let answer = br#"{"id":"x","object":"chat.completion","created":1,"model":"gpt-4o-mini-2024","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
    h.response_metadata(answer);
    assert_eq!(f.on_response_headers(&mut h, false), Action::Continue);
    assert!(h.response_header("set-cookie").is_none());
    h.response_body = answer.to_vec();
    let n = h.response_body.len();
    assert_eq!(f.on_response_body(&mut h, n, false), Action::Pause);
    assert_eq!(f.on_response_body(&mut h, n, true), Action::Continue);
    let got: serde_json::Value = serde_json::from_slice(&h.response_body).unwrap();
    assert_eq!(got["model"], "gpt");
}

/// A JSON body Envoy's parser refused is refused from the body phase, with what the gateway's own
/// parse finds wrong in it (the typed parameter, when that is what is wrong).
#[test]
fn a_body_envoy_refused_is_refused_with_the_parse_error() {
    let ok = br#"{"model":"gpt","messages":[{"role":"user","content":"x"}]}"#;
    for (marker, body, status, param) in [
        (
            Some("body_error"),
            &br#"{"model":"gpt","messages":[{"role":"user","content":"x"}],"max_tokens":9223372036854775808}"#[..],
            400,
            Some("max_tokens"),
        ),
        (Some("body_error"), br#"{"model":"gpt","x":"\ud800"}"#, 400, Some("messages")),
        (
            Some("body_error"),
            br#"{"model":"gpt","messages":[{"role":"user","content":"x"}],"x":"\ud800"}"#,
            400,
            None,
        ),
        (Some("body_error"), b"{\"model\":", 400, None),
        // Nothing extracted: an empty model, or (a body with one) no json_to_metadata in front.
        (None, br#"{"model":"","messages":[]}"#, 400, Some("model")),
        (None, ok, 500, None),
    ] {
        let mut h = MockHost::request(
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", "Bearer sk-master"),
                ("content-type", "application/json"),
            ],
        );
        if let Some(m) = marker {
            h = h.metadata(m, b"x");
        }
        h.request_body = body.to_vec();
        let mut f = HttpFilter::new(gateway(), Role::Gateway);
        assert_eq!(f.on_request_headers(&mut h, false), Action::Continue);
        assert!(h.reply.is_none());
        assert_eq!(f.on_request_body(&mut h, body.len(), true), Action::Pause);
        let (got, _, _) = h.reply.clone().unwrap();
        let e = h.reply_json();
        assert_eq!(got, status, "{e}");
        assert_eq!(e["error"]["param"].as_str(), param, "{e}");
        if status == 400 && param.is_none() {
            assert_eq!(e["error"]["code"], "invalid_json", "{e}");
        }
    }
}

#[test]
fn refuses_bad_requests_with_openai_errors() {
    let cases: Vec<(MockHost, u16, &str)> = vec![
        (
            MockHost::request("POST", "/v1/chat/completions", &[]).metadata("model", b"gpt"),
            401,
            "authentication_error",
        ),
        (
            MockHost::request(
                "POST",
                "/v1/chat/completions",
                &[("authorization", "Bearer nope")],
            )
            .metadata("model", b"gpt"),
            401,
            "authentication_error",
        ),
        (
            MockHost::request(
                "POST",
                "/v1/chat/completions",
                &[("authorization", "Bearer sk-master")],
            )
            .metadata("model", b"nosuch"),
            404,
            "invalid_request_error",
        ),
        (
            MockHost::request("POST", "/v1/chat/completions", &[("api-key", "sk-master")])
                .metadata("model_missing", b"x"),
            400,
            "invalid_request_error",
        ),
        (
            MockHost::request(
                "POST",
                "/v1/chat/completions",
                &[
                    ("authorization", "Bearer sk-master"),
                    ("content-type", "text/plain"),
                ],
            )
            .metadata("body_error", b"x"),
            400,
            "invalid_request_error",
        ),
        (
            MockHost::request("GET", "/v1/chat/completions", &[]),
            405,
            "invalid_request_error",
        ),
        (
            MockHost::request("POST", "/v1/completions", &[]),
            404,
            "invalid_request_error",
        ),
    ];
    for (mut h, status, kind) in cases {
        let mut f = HttpFilter::new(gateway(), Role::Gateway);
        assert_eq!(f.on_request_headers(&mut h, false), Action::Pause);
        let (s, _, _) = h.reply.clone().unwrap();
        assert_eq!(s, status, "{:?}", h.reply_json());
        assert_eq!(h.reply_json()["error"]["type"], kind);
    }
}

#[test]
fn body_errors_reply_from_the_body_phase() {
    let mut f = HttpFilter::new(gateway(), Role::Gateway);
    let mut h = chat_host(r#"{"model":"gpt","messages":[],"temperature":1}"#);
    assert_eq!(f.on_request_headers(&mut h, false), Action::Continue);
    let n = h.request_body.len();
    assert_eq!(f.on_request_body(&mut h, n, true), Action::Pause);
    assert_eq!(h.reply_json()["error"]["param"], "messages");
}

#[test]
fn lists_models() {
    let mut f = HttpFilter::new(gateway(), Role::Gateway);
    let mut h = MockHost::request(
        "GET",
        "/v1/models",
        &[("authorization", "Bearer sk-master")],
    );
    f.on_request_headers(&mut h, true);
    assert_eq!(h.reply_json()["data"][0]["id"], "gpt");
    let mut f = HttpFilter::new(gateway(), Role::Gateway);
    let mut h = MockHost::request(
        "GET",
        "/v1/models/gpt",
        &[("authorization", "Bearer sk-master")],
    );
    f.on_request_headers(&mut h, true);
    assert_eq!(h.reply_json()["id"], "gpt");
}

#[test]
fn envoy_generated_errors_become_openai_errors() {
    for (status, details, want) in [
        (
            503,
            "upstream_reset_before_response_started{connection_failure}",
            502,
        ),
        (504, "response_timeout", 504),
        (503, "cluster_not_found", 500),
    ] {
        let mut f = HttpFilter::new(gateway(), Role::Gateway);
        let mut h = chat_host(r#"{"model":"gpt","messages":[{"role":"user","content":"x"}]}"#);
        f.on_request_headers(&mut h, false);
        let n = h.request_body.len();
        f.on_request_body(&mut h, n, true);
        h.response_headers = vec![(":status".into(), status.to_string())];
        h.properties
            .insert("response.code_details".into(), details.as_bytes().to_vec());
        assert_eq!(f.on_response_headers(&mut h, false), Action::Pause);
        assert_eq!(h.reply.as_ref().unwrap().0, want);
    }
}

#[test]
fn classify_paths() {
    assert_eq!(
        classify("POST", "/v1/chat/completions?x=1"),
        Endpoint::Api(Operation::Chat)
    );
    assert_eq!(
        classify("POST", "/chat/completions/"),
        Endpoint::Api(Operation::Chat)
    );
    assert_eq!(
        classify("POST", "/v1/embeddings"),
        Endpoint::Api(Operation::Embeddings)
    );
    assert_eq!(
        classify("GET", "/v1/models/claude"),
        Endpoint::Model("claude")
    );
    assert_eq!(classify("GET", "/v1"), Endpoint::Unknown);
    assert_eq!(
        classify(
            "POST",
            "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
        ),
        Endpoint::Deployment(Operation::Chat, "gpt-4o")
    );
    assert_eq!(
        classify("POST", "/openai/deployments/emb/embeddings"),
        Endpoint::Deployment(Operation::Embeddings, "emb")
    );
    assert_eq!(
        classify("GET", "/openai/deployments/gpt/chat/completions"),
        Endpoint::WrongMethod("POST")
    );
    assert_eq!(
        classify("POST", "/openai/deployments//chat/completions"),
        Endpoint::Unknown
    );
    assert_eq!(
        classify("POST", "/openai/deployments/gpt/completions"),
        Endpoint::Unknown
    );
    assert_eq!(classify("PUT", "/v1/models"), Endpoint::WrongMethod("GET"));
    assert_eq!(
        classify("GET", "/v1/responses/resp_1?include[]=x"),
        Endpoint::StoredResponse("resp_1", "")
    );
    assert_eq!(
        classify("DELETE", "/v1/responses/resp_1"),
        Endpoint::StoredResponse("resp_1", "")
    );
    assert_eq!(
        classify("GET", "/responses/resp_1/input_items"),
        Endpoint::StoredResponse("resp_1", "/input_items")
    );
    assert_eq!(
        classify("DELETE", "/v1/responses/resp_1/input_items"),
        Endpoint::WrongMethod("GET")
    );
    assert_eq!(
        classify("PUT", "/v1/responses/resp_1"),
        Endpoint::WrongMethod("GET or DELETE")
    );
    assert_eq!(
        classify("POST", "/v1/responses/resp_1/cancel"),
        Endpoint::Unknown
    );
    assert_eq!(
        classify("GET", "/v1/responses//input_items"),
        Endpoint::Unknown
    );
    assert_eq!(classify("POST", "/v1/responses"), Endpoint::Responses);
    // A model id with a slash, as the SDKs send it.
    assert_eq!(
        path_decode("anthropic%2Fclaude-haiku-4-5"),
        "anthropic/claude-haiku-4-5"
    );
    assert_eq!(path_decode("a+b%2"), "a+b%2");
    assert_eq!(path_decode("bad%FF"), "bad%FF");
}

#[test]
fn a_non_string_model_is_refused_in_the_headers_phase() {
    // json_to_metadata stringifies `5` to "5"; the typed copy (an 8-byte double) differs.
    let mut f = HttpFilter::new(gateway(), Role::Gateway);
    let mut h = MockHost::request(
        "POST",
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-master")],
    )
    .metadata("model", b"5")
    .metadata("model_value", &5f64.to_le_bytes());
    assert_eq!(f.on_request_headers(&mut h, false), Action::Pause);
    assert_eq!(h.reply.as_ref().unwrap().0, 400);
    assert_eq!(h.reply_json()["error"]["code"], "invalid_type");
    // A string model has identical copies and routes.
    let mut f = HttpFilter::new(gateway(), Role::Gateway);
    let mut h = chat_host("{}").metadata("model_value", b"gpt");
    assert_eq!(f.on_request_headers(&mut h, false), Action::Continue);
}

#[test]
fn provider_errors_never_echo_the_key() {
    let mut f = HttpFilter::new(gateway(), Role::Gateway);
    let mut h = chat_host(r#"{"model":"gpt","messages":[{"role":"user","content":"x"}]}"#);
    f.on_request_headers(&mut h, false);
    let n = h.request_body.len();
    f.on_request_body(&mut h, n, true);
    h.response_headers = vec![(":status".into(), "401".into())];
    h.properties
        .insert("response.code_details".into(), b"via_upstream".to_vec());
    f.on_response_headers(&mut h, false);
    h.response_body = b"bad key: sk-provider-secret (really)".to_vec();
    let n = h.response_body.len();
    f.on_response_body(&mut h, n, true);
    let body = String::from_utf8(h.response_body.clone()).unwrap();
    assert!(!body.contains("sk-provider-secret"), "{body}");
    assert!(body.contains("[redacted]"), "{body}");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            ".{0,12}".prop_map(serde_json::Value::from),
            prop_oneof![
                Just("user"),
                Just("assistant"),
                Just("system"),
                Just("tool"),
                Just("text"),
                Just("image_url"),
                Just("function")
            ]
            .prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("role".to_string()),
                        Just("content".to_string()),
                        Just("type".to_string()),
                        Just("text".to_string()),
                        Just("tool_calls".to_string()),
                        Just("function".to_string()),
                        ".{0,6}".prop_map(String::from),
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A chat body whose top level is plausible and whose values are arbitrary.
    fn arb_body() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            prop::collection::btree_map(
                prop_oneof![
                    Just("messages"),
                    Just("tools"),
                    Just("tool_choice"),
                    Just("temperature"),
                    Just("stop"),
                    Just("response_format"),
                    Just("max_tokens"),
                    Just("n"),
                    Just("stream_options"),
                    Just("user")
                ],
                arb_json(),
                0..6
            )
            .prop_map(|m| {
                let mut o: serde_json::Map<String, serde_json::Value> =
                    m.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                o.insert("model".into(), "gpt".into());
                serde_json::to_vec(&o).unwrap()
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(384))]

        #[test]
        fn any_request_body_gets_an_upstream_body_or_an_openai_error(body in arb_body()) {
            let mut f = HttpFilter::new(gateway(), Role::Gateway);
            let mut h = chat_host("");
            h.request_body = body;
            prop_assert_eq!(f.on_request_headers(&mut h, false), Action::Continue);
            let n = h.request_body.len();
            match f.on_request_body(&mut h, n, true) {
                Action::Continue => {
                    let v: serde_json::Value = serde_json::from_slice(&h.request_body).unwrap();
                    prop_assert_eq!(&v["model"], "gpt-4o-mini");
                }
                Action::Pause => {
                    let (status, _, _) = h.reply.clone().unwrap();
                    prop_assert!((400..500).contains(&status));
                    let v = h.reply_json();
                    prop_assert!(v["error"]["message"].is_string());
                }
            }
        }

        #[test]
        fn any_response_is_translated_without_panic(status in prop_oneof![Just(200u16), Just(400), Just(429), Just(500), Just(529), 100u16..600],
                                                     body in prop::collection::vec(any::<u8>(), 0..300),
                                                     stream in any::<bool>(),
                                                     cut in 0usize..300) {
            let mut f = HttpFilter::new(gateway(), Role::Gateway);
            let mut h = chat_host(r#"{"model":"gpt","messages":[{"role":"user","content":"x"}]}"#);
            if stream {
                h = h.metadata("stream", &[1]);
                h.request_body = br#"{"model":"gpt","messages":[{"role":"user","content":"x"}],"stream":true}"#.to_vec();
            }
            f.on_request_headers(&mut h, false);
            let n = h.request_body.len();
            prop_assert_eq!(f.on_request_body(&mut h, n, true), Action::Continue);
            h.response_headers = vec![(":status".into(), status.to_string())];
            h.properties.insert("response.code_details".into(), b"via_upstream".to_vec());
            if f.on_response_headers(&mut h, false) == Action::Pause {
                return Ok(());
            }
            // Deliver the body in two pieces, as Envoy may.
            let cut = cut.min(body.len());
            let (a, b) = body.split_at(cut);
            let mut out = Vec::new();
            for (piece, eos) in [(a, false), (b, true)] {
                h.response_body = piece.to_vec();
                let size = piece.len();
                if f.on_response_body(&mut h, size, eos) == Action::Continue {
                    out.extend_from_slice(&h.response_body);
                } else {
                    // Buffering: Envoy keeps the bytes; the mock host gives them back whole.
                    h.response_body = body.clone();
                    let size = body.len();
                    prop_assert_eq!(f.on_response_body(&mut h, size, true), Action::Continue);
                    out = h.response_body.clone();
                    break;
                }
            }
            if !stream || status >= 400 {
                let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
                prop_assert!(v.is_object());
            }
        }
    }
}

#[test]
fn emits_request_token_and_latency_metrics() {
    let mut f = HttpFilter::new(gateway(), Role::Gateway);
    let mut h = chat_host(r#"{"model":"gpt","messages":[{"role":"user","content":"x"}]}"#);
    f.on_request_headers(&mut h, false);
    let n = h.request_body.len();
    f.on_request_body(&mut h, n, true);
    h.now_ms += 250;
    h.response_headers = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "application/json".into()),
    ];
    h.properties
        .insert("response.code_details".into(), b"via_upstream".to_vec());
    let answer = br#"{"id":"x","model":"m","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":3}}}"#;
    h.response_metadata(answer);
    f.on_response_headers(&mut h, false);
    h.response_body = answer.to_vec();
    let n = h.response_body.len();
    f.on_response_body(&mut h, n, true);
    let c = |name: &str| h.counters.get(name).copied();
    assert_eq!(
        c("tollgate.requests_total.team.-.key_alias.master.model.gpt.provider.openai.api.chat.status.2xx"),
        Some(1)
    );
    assert_eq!(
        c("tollgate.tokens_total.team.-.key_alias.master.model.gpt.provider.openai.type.input"),
        Some(11)
    );
    assert_eq!(
        c("tollgate.tokens_total.team.-.key_alias.master.model.gpt.provider.openai.type.output"),
        Some(4)
    );
    assert_eq!(
        c("tollgate.tokens_total.team.-.key_alias.master.model.gpt.provider.openai.type.cached_input"),
        Some(3)
    );

    assert_eq!(
        h.histograms,
        vec![(
            "tollgate.upstream_latency_ms.team.-.key_alias.master.model.gpt.provider.openai"
                .to_string(),
            250
        )]
    );

    // gpt-4o-mini is in the built-in price table: the master key's usage is charged and counted.
    f.on_done(&mut h);
    let spend = "tollgate.spend_micro_usd.team.-.key_alias.master.model.gpt.provider.openai";
    assert!(
        h.counters.get(spend).copied().unwrap_or(0) > 0,
        "{:?}",
        h.counters
    );

    // A request refused before routing counts without model and provider.
    let mut f = HttpFilter::new(gateway(), Role::Gateway);
    let mut h = MockHost::request("POST", "/v1/chat/completions", &[]).metadata("model", b"gpt");
    f.on_request_headers(&mut h, false);
    assert_eq!(
        h.counters.get(
            "tollgate.requests_total.team.-.key_alias.-.model.-.provider.-.api.chat.status.4xx"
        ),
        Some(&1)
    );
}

fn priced(extra: serde_json::Value) -> Arc<Config> {
    let mut doc = json!({
        "model_list": [
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-provider-secret", "api_base": "http://127.0.0.1:9001/v1"},
             "model_info": {"max_output_tokens": 1000, "max_input_tokens": 10000}},
            {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_key": "sk-ant-secret-1234"}}
        ],
        "general_settings": {"master_key": "sk-master"}
    });
    if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    let r = load(&doc, &HashMap::<String, String>::new(), Strictness::Serve);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    Arc::new(r.config.unwrap())
}

/// `n` (and `best_of`) multiply the output a request may be charged for, so they multiply its
/// reservation; a provider that generates one completion whatever `n` says is not multiplied.
#[test]
fn estimates_count_every_completion() {
    let config = priced(json!({}));
    let gpt = config.deployment(0).unwrap();
    let claude = config.deployment(1).unwrap();
    let one = accounting::Ask::chat(100, Some(100), 1);
    let fifty = accounting::Ask::chat(100, Some(100), 50);
    let e1 = accounting::estimate(gpt, &one);
    let e50 = accounting::estimate(gpt, &fifty);
    assert_eq!(e1.tokens, 200);
    assert_eq!(e50.tokens, 100 + 100 * 50);
    assert!(e50.cost > e1.cost * 40, "{e1:?} {e50:?}");
    assert_eq!(accounting::estimate(claude, &fifty).tokens, 200);
    let req = openai::parse_chat(
        br#"{"model":"gpt","messages":[{"role":"user","content":"x"}],"n":3,"best_of":7}"#,
    )
    .unwrap();
    assert_eq!(req.choices(), 7);
    let req = openai::parse_chat(br#"{"model":"gpt","messages":[{"role":"user","content":"x"}]}"#)
        .unwrap();
    assert_eq!(req.choices(), 1);
}

#[test]
fn usage_is_checked_against_what_the_request_could_produce() {
    let config = priced(json!({}));
    let gpt = config.deployment(0).unwrap();
    let ask = accounting::Ask::chat(200, Some(100), 2);
    let u = |p: u64, c: u64| Usage {
        prompt_tokens: p,
        completion_tokens: c,
        ..Default::default()
    };
    assert_eq!(accounting::check_usage(gpt, &ask, &u(50, 200)), Ok(()));
    // Within twice the bound plus slack: providers count a little differently.
    assert_eq!(accounting::check_usage(gpt, &ask, &u(50, 4000)), Ok(()));
    assert!(accounting::check_usage(gpt, &ask, &u(50, 1 << 40)).is_err());
    assert!(accounting::check_usage(gpt, &ask, &u(1 << 40, 5)).is_err());
    let mut cached = u(10, 5);
    cached.cached_tokens = 11;
    assert!(accounting::check_usage(gpt, &ask, &cached).is_err());
    let mut reasoning = u(10, 5);
    reasoning.reasoning_tokens = 6;
    assert!(accounting::check_usage(gpt, &ask, &reasoning).is_err());
}

/// Runs a master-key chat request to the end with this provider answer.
fn answered(config: Arc<Config>, answer: &[u8]) -> MockHost {
    let mut f = HttpFilter::new(config, Role::Gateway);
    let mut h =
        chat_host(r#"{"model":"gpt","messages":[{"role":"user","content":"x"}],"max_tokens":10}"#);
    f.on_request_headers(&mut h, false);
    let n = h.request_body.len();
    f.on_request_body(&mut h, n, true);
    h.response_headers = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "application/json".into()),
    ];
    h.properties
        .insert("response.code_details".into(), b"via_upstream".to_vec());
    h.response_metadata(answer);
    f.on_response_headers(&mut h, false);
    h.response_body = answer.to_vec();
    let n = h.response_body.len();
    f.on_response_body(&mut h, n, true);
    f.on_done(&mut h);
    h
}

/// Usage that is missing, unreadable or absurd is charged the reservation (never 0, never an
/// overflowing cost), counted and logged.
#[test]
fn unusable_usage_is_charged_the_reservation() {
    let spend = "tollgate.spend_micro_usd.team.-.key_alias.master.model.gpt.provider.openai";
    let unusable = "tollgate.usage_unusable_total.model.gpt.provider.openai";
    let body = |usage: &str| {
        format!(
            r#"{{"id":"x","object":"chat.completion","model":"m","choices":[{{"index":0,"message":{{"role":"assistant","content":"hi"}},"finish_reason":"stop"}}]{usage}}}"#
        )
    };
    let good = answered(
        priced(json!({})),
        body(r#","usage":{"prompt_tokens":5,"completion_tokens":2}"#).as_bytes(),
    );
    let good_cost = good.counters.get(spend).copied().unwrap_or(0);
    assert!(good_cost > 0);
    assert_eq!(good.counters.get(unusable), None);
    let mut reservation = None;
    for usage in [
        "",
        r#","usage":null"#,
        r#","usage":{}"#,
        r#","usage":{"prompt_tokens":-5,"completion_tokens":2}"#,
        r#","usage":{"prompt_tokens":"5","completion_tokens":2}"#,
        r#","usage":{"prompt_tokens":5,"completion_tokens":1e30}"#,
        r#","usage":{"prompt_tokens":5,"completion_tokens":2.5}"#,
        r#","usage":{"prompt_tokens":5,"completion_tokens":9000000000}"#,
        r#","usage":"lots""#,
    ] {
        let h = answered(priced(json!({})), body(usage).as_bytes());
        let charged = h.counters.get(spend).copied();
        assert!(
            charged.is_some_and(|c| c > good_cost),
            "{usage}: {:?}",
            h.counters
        );
        assert_eq!(*reservation.get_or_insert(charged), charged, "{usage}");
        assert_eq!(h.counters.get(unusable), Some(&1), "{usage}");
        let v: serde_json::Value = serde_json::from_slice(&h.response_body).unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "hi", "{usage}");
    }
}

/// A wildcard deployment (`anthropic/*`) gets the model id the client's name fills it with, in
/// its path and body, and the request is priced as that model.
#[test]
fn a_wildcard_request_is_routed_and_priced_as_the_clients_model() {
    let doc = json!({
        "model_list": [
            {"model_name": "anthropic/*", "litellm_params": {"model": "anthropic/*", "api_key": "sk-ant-secret", "api_base": "http://127.0.0.1:9002"}}
        ],
        "general_settings": {"master_key": "sk-master"}
    });
    let r = load(&doc, &HashMap::<String, String>::new(), Strictness::Serve);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let config = Arc::new(r.config.unwrap());
    let name = "anthropic/claude-haiku-4-5";
    let body = format!(
        r#"{{"model":"{name}","max_tokens":10,"messages":[{{"role":"user","content":"hi"}}]}}"#
    );
    let mut h = chat_host(&body).metadata("model", name.as_bytes());
    let mut f = HttpFilter::new(Arc::clone(&config), Role::Gateway);
    assert_eq!(f.on_request_headers(&mut h, false), Action::Continue);
    assert!(h.reply.is_none(), "{:?}", h.reply);
    assert_eq!(h.header(":path").as_deref(), Some("/v1/messages"));
    assert_eq!(
        h.header(CLUSTER_HEADER).as_deref(),
        Some("tollgate_127.0.0.1_9002")
    );
    let size = h.request_body.len();
    assert_eq!(f.on_request_body(&mut h, size, true), Action::Continue);
    let sent: serde_json::Value = serde_json::from_slice(&h.request_body).unwrap();
    assert_eq!(sent["model"], "claude-haiku-4-5");

    h.response_headers = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "application/json".into()),
    ];
    h.properties
        .insert("response.code_details".into(), b"via_upstream".to_vec());
    let answer = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":1000,"output_tokens":100}}"#;
    h.response_metadata(answer);
    assert_eq!(f.on_response_headers(&mut h, false), Action::Continue);
    let price = crate::pricing::builtin("anthropic", "claude-haiku-4-5")
        .unwrap()
        .price;
    let micro = (1000 * price.input + 100 * price.output) as f64 / 1e12;
    assert!(micro > 0.0);
    assert_eq!(
        h.response_header("x-tollgate-response-cost").as_deref(),
        Some(format!("{micro:.6}").as_str())
    );
    assert_eq!(
        h.response_header("x-tollgate-model-id").as_deref(),
        Some("anthropic/*.0")
    );
    h.response_body = answer.to_vec();
    let n = h.response_body.len();
    assert_eq!(f.on_response_body(&mut h, n, true), Action::Continue);
    let got: serde_json::Value = serde_json::from_slice(&h.response_body).unwrap();
    assert_eq!(got["model"], name);

    // A name no pattern matches is the usual 404.
    let mut h = chat_host(&body).metadata("model", b"claude-haiku-4-5");
    let mut f = HttpFilter::new(config, Role::Gateway);
    assert_eq!(f.on_request_headers(&mut h, false), Action::Pause);
    assert_eq!(h.reply_json()["error"]["code"], "model_not_found");
}

/// The prices of issue 17: one and two micro-dollars per input and output token.
fn one_two(extra: serde_json::Value) -> Arc<Config> {
    let mut doc = json!({
        "model_list": [
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-provider-secret", "api_base": "http://127.0.0.1:9001/v1",
             "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}},
            {"model_name": "big", "litellm_params": {"model": "anthropic/claude-opus-4-1", "api_key": "sk-ant-secret-1234",
             "input_cost_per_token": 15e-6, "output_cost_per_token": 75e-6},
             "model_info": {"max_output_tokens": 32000}}
        ],
        "general_settings": {"master_key": "sk-master"}
    });
    if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    let r = load(&doc, &HashMap::<String, String>::new(), Strictness::Serve);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    Arc::new(r.config.unwrap())
}

/// One request of `key`, answered with `answer` and settled; the host as it ended (a refusal
/// is its local reply).
fn keyed_call(
    config: &Arc<Config>,
    store: &crate::store::MemoryStore,
    key: &str,
    model: &str,
    body: &str,
    answer: &[u8],
) -> MockHost {
    let mut f = HttpFilter::new(Arc::clone(config), Role::Gateway);
    let mut h = MockHost::request(
        "POST",
        "/v1/chat/completions",
        &[
            ("authorization", &format!("Bearer {key}")),
            ("content-type", "application/json"),
        ],
    )
    .metadata("model", model.as_bytes());
    h.store = store.clone();
    h.request_body = body.as_bytes().to_vec();
    if f.on_request_headers(&mut h, false) != Action::Continue {
        return h;
    }
    let n = h.request_body.len();
    if f.on_request_body(&mut h, n, true) != Action::Continue {
        return h;
    }
    h.response_headers = vec![
        (":status".into(), "200".into()),
        ("content-type".into(), "application/json".into()),
    ];
    h.properties
        .insert("response.code_details".into(), b"via_upstream".to_vec());
    h.response_metadata(answer);
    f.on_response_headers(&mut h, false);
    let sent = std::mem::replace(&mut h.request_body, answer.to_vec());
    let n = answer.len();
    h.response_body = answer.to_vec();
    f.on_response_body(&mut h, n, true);
    f.on_done(&mut h);
    h.request_body = sent;
    h
}

/// Issue 17's numbers: with prices of $1/$2 per million tokens, a key whose budget pays for 20
/// requests of 11+7 tokens (`max_tokens: 7`) admits 20 ±1 of them, a team whose budget pays for
/// 4 admits 4 ±1, and the spend never passes either budget (the estimate is above the cost).
#[test]
fn a_budget_is_usable_to_within_one_request() {
    let config = one_two(json!({
        "teams": [{"team_id": "four", "max_budget": 0.0001}],
        "keys": [
            {"key": "sk-twenty-requests", "max_budget": 0.0005},
            {"key": "sk-team-member", "team_id": "four"}
        ]
    }));
    let body = r#"{"model":"gpt","messages":[{"role":"user","content":"one two three four five six"}],"max_tokens":7}"#;
    let answer = br#"{"id":"x","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"echo: one two three four five six"},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}"#;
    let store = crate::store::MemoryStore::default();
    let admitted = |key: &str| {
        let mut n = 0;
        for _ in 0..40 {
            let h = keyed_call(&config, &store, key, "gpt", body, answer);
            match &h.reply {
                None => n += 1,
                Some((status, _, _)) => {
                    assert_eq!(*status, 429);
                    assert_eq!(h.reply_json()["error"]["code"], "budget_exceeded");
                }
            }
        }
        n
    };
    let key_admitted = admitted("sk-twenty-requests");
    assert!((19..=21).contains(&key_admitted), "{key_admitted}");
    let team = admitted("sk-team-member");
    assert!((3..=5).contains(&team), "{team}");
    let spend = |record: &str| crate::quota::read(&store, record, &Default::default(), 0).spend;
    assert_eq!(spend("tollgate.usage.team.four"), team * 25);
    let key = crate::keys::hash_key("sk-twenty-requests");
    assert_eq!(
        spend(&crate::quota::record_key(crate::quota::Scope::Key, &key)),
        key_admitted * 25
    );
}

/// A key with little left reaches a large model without `max_tokens`: its output is capped to
/// what the budget pays for (the provider is sent that cap, the client told it), where reserving
/// the whole output the request may have (Anthropic's 4,096 tokens: $0.31) would refuse it.
#[test]
fn a_request_the_budget_cannot_pay_whole_is_capped() {
    let config = one_two(json!({"keys": [{"key": "sk-twenty-cents", "max_budget": 0.2}]}));
    let store = crate::store::MemoryStore::default();
    let body = r#"{"model":"big","messages":[{"role":"user","content":"Write a long story."}]}"#;
    let answer = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-opus-4-1","content":[{"type":"text","text":"Once"}],"stop_reason":"end_turn","usage":{"input_tokens":12,"output_tokens":100}}"#;
    let h = keyed_call(&config, &store, "sk-twenty-cents", "big", body, answer);
    assert!(h.reply.is_none(), "{:?}", h.reply);
    let sent: serde_json::Value = serde_json::from_slice(&h.request_body).unwrap();
    let cap = sent["max_tokens"].as_u64().unwrap();
    assert_eq!(
        h.response_header(accounting::MAX_TOKENS_CAPPED),
        Some(cap.to_string())
    );
    // The most the budget pays for: the prompt's estimate at $15, the output at $75 a million.
    let prompt = accounting::prompt_tokens(
        &openai::parse_chat(body.as_bytes()).unwrap().prompt_text(),
        body.len() as u64,
    );
    assert_eq!(cap, (200_000_000_000 - prompt * 15_000_000) / 75_000_000);
    // Settled at its cost: the reservation is gone.
    let record = crate::quota::record_key(
        crate::quota::Scope::Key,
        &crate::keys::hash_key("sk-twenty-cents"),
    );
    let c = crate::quota::read(&store, &record, &Default::default(), 0);
    assert_eq!((c.reserved, c.spend), (0, 12 * 15 + 100 * 75));

    // A budget that pays for the whole request leaves it alone.
    let config = one_two(json!({"keys": [{"key": "sk-rich", "max_budget": 20.0}]}));
    let h = keyed_call(&config, &store, "sk-rich", "big", body, answer);
    let sent: serde_json::Value = serde_json::from_slice(&h.request_body).unwrap();
    assert_eq!(sent["max_tokens"], 4096);
    assert_eq!(h.response_header(accounting::MAX_TOKENS_CAPPED), None);

    // Nor is a request capped below the least output worth sending: refused as it was.
    let config = one_two(json!({"keys": [{"key": "sk-poor", "max_budget": 0.0004}]}));
    let h = keyed_call(&config, &store, "sk-poor", "big", body, answer);
    assert_eq!(h.reply.as_ref().map(|r| r.0), Some(429));
}

/// The estimate of a prompt: its text at three bytes a token, overheads, images; the body's
/// length where the text cannot tell (audio).
#[test]
fn prompt_estimates() {
    let text = |bytes, messages, images, opaque| crate::openai::request::PromptText {
        bytes,
        messages,
        images,
        opaque,
    };
    assert_eq!(
        accounting::prompt_tokens(&text(27, 1, 0, false), 96),
        9 + 4 + 3
    );
    assert_eq!(
        accounting::prompt_tokens(&text(28, 1, 0, false), 96),
        10 + 4 + 3
    );
    // Never above the body's length, but images are counted whatever their bytes.
    assert_eq!(accounting::prompt_tokens(&text(300, 1, 0, false), 60), 60);
    assert_eq!(
        accounting::prompt_tokens(&text(3, 1, 2, false), 90),
        1 + 7 + 3200
    );
    assert_eq!(accounting::prompt_tokens(&text(3, 1, 0, true), 500), 500);
}

/// The cap is the largest output whose reservation fits on every deployment the request may
/// reach; none when it fits whole, or when not even the least output fits.
#[test]
fn output_caps() {
    use std::borrow::Cow;
    let config = one_two(json!({}));
    let gpt = config.deployment(0).unwrap();
    let big = config.deployment(1).unwrap();
    let ask = accounting::Ask {
        body_len: 100,
        prompt_tokens: 10,
        max_output: None,
        choices: 1,
        op: Operation::Chat,
    };
    let both = [Cow::Borrowed(gpt), Cow::Borrowed(big)];
    // gpt (gpt-4o-mini: 16,384 output tokens at most): 10 + 2 * 16384 = 32778 µ$ whole.
    assert_eq!(accounting::cap_output(&both[..1], &ask, 32778), None);
    assert_eq!(accounting::cap_output(&both[..1], &ask, 32777), Some(16383));
    assert_eq!(accounting::cap_output(&both[..1], &ask, 1010), Some(500));
    // The least output (16 tokens: 42 µ$) must fit.
    assert_eq!(accounting::cap_output(&both[..1], &ask, 42), Some(16));
    assert_eq!(accounting::cap_output(&both[..1], &ask, 41), None);
    // Over both, the dearer one decides (big: $15/$75, Anthropic's 4,096 tokens without a cap
    // of the client's: 307,350 µ$ whole), and the cap is never above what either would send.
    assert_eq!(
        accounting::cap_output(&both, &ask, 150 + 75 * 1000),
        Some(1000)
    );
    assert_eq!(accounting::cap_output(&both, &ask, 307_350), None);
    assert_eq!(accounting::cap_output(&both, &ask, 307_349), Some(4095));
    let fits = |n| {
        let a = accounting::Ask {
            max_output: Some(n),
            ..ask
        };
        accounting::estimate_worst(&both, &a).cost
    };
    assert_eq!(fits(4096), 307_350);
    // A client's own small cap is never raised, nor cut below itself to the minimum.
    let small = accounting::Ask {
        max_output: Some(7),
        ..ask
    };
    assert_eq!(accounting::cap_output(&both[..1], &small, 24), None);
    assert_eq!(accounting::cap_output(&both[..1], &small, 23), None);
    // Two completions: the cap is per completion.
    let two = accounting::Ask { choices: 2, ..ask };
    assert_eq!(
        accounting::cap_output(&both[..1], &two, 10 + 2 * 2 * 100),
        Some(100)
    );
}

fn duo() -> Arc<Config> {
    let d = |port: u16| {
        json!({"model_name": "duo", "litellm_params": {"model": "openai/gpt-4.1", "api_key": "sk-provider-secret",
               "api_base": format!("http://127.0.0.1:{port}/v1")}, "model_info": {"id": format!("duo-{port}")}})
    };
    let doc = json!({
        "model_list": [d(9001), d(9002)],
        "general_settings": {"master_key": "sk-master"}
    });
    let r = load(&doc, &HashMap::<String, String>::new(), Strictness::Serve);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    Arc::new(r.config.unwrap())
}

fn responses_host(previous: Option<&str>) -> MockHost {
    let mut h = MockHost::request(
        "POST",
        "/v1/responses",
        &[
            ("authorization", "Bearer sk-master"),
            ("content-type", "application/json"),
        ],
    )
    .metadata("model", b"duo");
    if let Some(id) = previous {
        h = h.metadata("previous_response_id", id.as_bytes());
    }
    h
}

#[test]
fn a_remembered_previous_response_id_routes_to_its_holder() {
    use crate::router::sticky::{self, Held};
    let config = duo();
    let store = crate::store::MemoryStore::default();
    let now = 1_700_000_000;
    let held = |id: &str, d: &str| Held {
        id: id.into(),
        deployment: d.into(),
        alias: "duo".into(),
        at: now,
    };
    assert!(sticky::remember(&store, held("resp_b", "duo-9002")));
    assert!(sticky::remember(&store, held("resp_gone", "not-a-member")));
    // Remembered, in the group: directly to its deployment, no attempt listener.
    let mut h = responses_host(Some("resp_b"));
    h.store = store.clone();
    let mut f = HttpFilter::new(Arc::clone(&config), Role::Gateway);
    assert_eq!(f.on_request_headers(&mut h, false), Action::Continue);
    assert!(h.reply.is_none());
    assert_eq!(
        h.header(CLUSTER_HEADER).as_deref(),
        Some("tollgate_127.0.0.1_9002")
    );
    assert_eq!(h.header(":path").as_deref(), Some("/v1/responses"));
    assert!(h.header(ATTEMPT_HEADER).is_none());
    // Unknown, or held by a deployment the group lacks: balanced as any request.
    for previous in [Some("resp_unknown"), Some("resp_gone"), None] {
        let mut h = responses_host(previous);
        h.store = store.clone();
        let mut f = HttpFilter::new(Arc::clone(&config), Role::Gateway);
        assert_eq!(f.on_request_headers(&mut h, false), Action::Continue);
        assert!(h.header(ATTEMPT_HEADER).is_some(), "{previous:?}");
    }
    // GET and DELETE go to the holder, the path its own.
    for (method, path, want) in [
        (
            "GET",
            "/v1/responses/resp_b?include[]=x",
            "/v1/responses/resp_b?include[]=x",
        ),
        (
            "GET",
            "/v1/responses/resp_b/input_items",
            "/v1/responses/resp_b/input_items",
        ),
        ("DELETE", "/v1/responses/resp_b", "/v1/responses/resp_b"),
    ] {
        let mut h = MockHost::request(method, path, &[("authorization", "Bearer sk-master")]);
        h.store = store.clone();
        let mut f = HttpFilter::new(Arc::clone(&config), Role::Gateway);
        assert_eq!(f.on_request_headers(&mut h, true), Action::Continue);
        assert!(h.reply.is_none(), "{path}");
        assert_eq!(
            h.header(CLUSTER_HEADER).as_deref(),
            Some("tollgate_127.0.0.1_9002")
        );
        assert_eq!(h.header(":path").as_deref(), Some(want));
        assert_eq!(
            h.header("authorization").as_deref(),
            Some("Bearer sk-provider-secret")
        );
    }
    // An id the gateway does not hold: OpenAI's 404, answered here.
    for path in ["/v1/responses/resp_unknown", "/v1/responses/resp_gone"] {
        let mut h = MockHost::request("GET", path, &[("authorization", "Bearer sk-master")]);
        h.store = store.clone();
        let mut f = HttpFilter::new(Arc::clone(&config), Role::Gateway);
        f.on_request_headers(&mut h, true);
        assert_eq!(h.reply.as_ref().unwrap().0, 404);
        let id = path.rsplit('/').next().unwrap();
        assert_eq!(
            h.reply_json(),
            json!({"error": {"message": format!("Response with id '{id}' not found."),
                             "type": "invalid_request_error", "param": null, "code": null}})
        );
    }
}

/// A stored response read back as its event stream (`?stream=true`): relayed as it comes, in any
/// pieces, each lifecycle event's `response.model` the alias, no secret on, an error as it came.
#[test]
fn a_stored_responses_event_stream_is_relayed_under_its_alias() {
    use crate::router::sticky::{self, Held};
    let config = duo();
    let store = crate::store::MemoryStore::default();
    let held = Held {
        id: "resp_b".into(),
        deployment: "duo-9002".into(),
        alias: "duo".into(),
        at: 1_700_000_000,
    };
    assert!(sticky::remember(&store, held));
    let created = r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_b","object":"response","status":"in_progress","model":"gpt-4.1-2025-04-14","output":[]}}"#;
    let delta = r#"{"type":"response.output_text.delta","sequence_number":1,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"key sk-provider-secret","logprobs":[]}"#;
    let done = r#"{"type":"response.completed","sequence_number":2,"response":{"id":"resp_b","object":"response","status":"completed","model":"gpt-4.1-2025-04-14","output":[]}}"#;
    let upstream = format!(
        "event: response.created\ndata: {created}\n\nevent: response.output_text.delta\ndata: {delta}\n\nevent: response.completed\ndata: {done}\n\n"
    );
    let want = upstream
        .replace("gpt-4.1-2025-04-14", "duo")
        .replace("sk-provider-secret", "[redacted]");
    let get = |status: &str| {
        let mut h = MockHost::request(
            "GET",
            "/v1/responses/resp_b?stream=true",
            &[("authorization", "Bearer sk-master")],
        );
        h.store = store.clone();
        h.now_ms = 1_700_000_000_000;
        let mut f = HttpFilter::new(Arc::clone(&config), Role::Gateway);
        assert_eq!(f.on_request_headers(&mut h, true), Action::Continue);
        assert!(h.reply.is_none());
        assert_eq!(
            h.header(":path").as_deref(),
            Some("/v1/responses/resp_b?stream=true")
        );
        h.response_headers = vec![
            (":status".into(), status.into()),
            (
                "content-type".into(),
                "text/event-stream; charset=utf-8".into(),
            ),
        ];
        h.properties
            .insert("response.code_details".into(), b"via_upstream".to_vec());
        assert_eq!(f.on_response_headers(&mut h, false), Action::Continue);
        (f, h)
    };
    // Pieces cut inside the model name and inside the secret.
    let bytes = upstream.as_bytes();
    let cuts = [
        0,
        upstream.find("4.1-2025").unwrap(),
        upstream.find("provider-secret").unwrap(),
        upstream.find("event: response.completed").unwrap() + 3,
        bytes.len(),
    ];
    let (mut f, mut h) = get("200");
    let mut out = Vec::new();
    for w in cuts.windows(2) {
        h.response_body = bytes[w[0]..w[1]].to_vec();
        let n = h.response_body.len();
        assert_eq!(f.on_response_body(&mut h, n, false), Action::Continue);
        out.extend_from_slice(&h.response_body);
    }
    h.response_body.clear();
    assert_eq!(f.on_response_body(&mut h, 0, true), Action::Continue);
    out.extend_from_slice(&h.response_body);
    assert_eq!(String::from_utf8(out).unwrap(), want);

    // Not a 2xx: as it came, but for secrets.
    let (mut f, mut h) = get("500");
    h.response_body = bytes.to_vec();
    assert_eq!(
        f.on_response_body(&mut h, bytes.len(), true),
        Action::Continue
    );
    assert_eq!(
        String::from_utf8(h.response_body.clone()).unwrap(),
        upstream.replace("sk-provider-secret", "[redacted]")
    );
}
