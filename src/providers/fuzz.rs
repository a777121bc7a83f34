//! Property tests ("fuzzing") run against every provider in the registry: arbitrary requests,
//! response bodies, error bodies and streams cut at arbitrary points must never panic, and
//! whatever claims to be JSON must parse.

use proptest::prelude::*;

use super::{RequestOptions, Target, REGISTRY};
use crate::openai::{parse_chat, ResponseCtx};

/// One target every provider can take: a model id each accepts, Azure's API version.
fn target() -> Target {
    Target {
        model: "anthropic.claude-3-5-sonnet-20241022-v2:0".into(),
        base_path: String::new(),
        api_version: Some("2024-10-21".into()),
    }
}

fn ctx(include_usage: bool) -> ResponseCtx {
    ResponseCtx {
        id: "chatcmpl-fuzz".into(),
        created: 1,
        model: "alias".into(),
        include_usage,
        api: Default::default(),
    }
}

fn arb_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i32>().prop_map(serde_json::Value::from),
        (-1e6f64..1e6).prop_map(serde_json::Value::from),
        "[a-z_{}\\[\\]\":,]{0,10}".prop_map(serde_json::Value::from),
        prop_oneof![
            Just("user"),
            Just("assistant"),
            Just("system"),
            Just("tool"),
            Just("text"),
            Just("image_url"),
            Just("function"),
            Just("data:image/png;base64,iVBORw0KGgo="),
            Just("https://x/y.jpg"),
            Just("{\"a\":1}"),
            Just("json_schema"),
            Just("json_object"),
            Just("auto"),
            Just("required"),
            Just("none")
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("role"),
                    Just("content"),
                    Just("type"),
                    Just("text"),
                    Just("image_url"),
                    Just("url"),
                    Just("tool_calls"),
                    Just("tool_call_id"),
                    Just("id"),
                    Just("function"),
                    Just("name"),
                    Just("arguments"),
                    Just("parameters"),
                    Just("json_schema"),
                    Just("schema"),
                    Just("candidates"),
                    Just("parts"),
                    Just("output"),
                    Just("message"),
                    Just("usage"),
                    Just("delta"),
                    Just("error"),
                    Just("stop_reason"),
                    Just("finishReason"),
                    Just("choices"),
                    Just("embeddings"),
                    Just("values")
                ]
                .prop_map(String::from),
                inner,
                0..5,
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_request() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(arb_value(), 1..4),
        prop::collection::btree_map(
            prop_oneof![
                Just("tools"),
                Just("tool_choice"),
                Just("temperature"),
                Just("top_p"),
                Just("stop"),
                Just("response_format"),
                Just("max_tokens"),
                Just("max_completion_tokens"),
                Just("n"),
                Just("seed"),
                Just("user"),
                Just("parallel_tool_calls"),
                Just("stream"),
                Just("logit_bias")
            ],
            arb_value(),
            0..5,
        ),
    )
        .prop_map(|(messages, extra)| {
            let mut o = serde_json::Map::new();
            o.insert("model".into(), "alias".into());
            o.insert("messages".into(), serde_json::Value::from(messages));
            for (k, v) in extra {
                o.insert(k.to_string(), v);
            }
            serde_json::to_vec(&o).unwrap_or_default()
        })
}

fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        arb_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// What the dynamic module reads from untrusted bodies in place of json_to_metadata: never a
    /// panic, and a string model comes out as sent.
    #[test]
    fn body_metadata_never_panics(body in arb_bytes(), request in arb_request(), json in any::<bool>()) {
        use crate::filter::body_metadata::{request_metadata, response_usage};
        let ct = if json { "application/json" } else { "text/plain" };
        let _ = request_metadata(Some(ct), &body);
        let _ = response_usage(Some(ct), &body);
        let _ = crate::json::nesting_within(&body, 128);
        let m = request_metadata(Some("application/json"), &request);
        let sent = serde_json::from_slice::<serde_json::Value>(&request)
            .ok()
            .and_then(|v| v.get("model").and_then(|m| m.as_str()).map(str::to_string))
            .filter(|m| !m.is_empty());
        if let Some(model) = sent {
            let got = m.iter().find(|(k, _)| *k == "model").map(|(_, v)| v.clone());
            prop_assert_eq!(got, Some(model.into_bytes()));
        }
    }

    #[test]
    fn scan_agrees_with_the_parser(value in arb_value(), body in arb_bytes()) {
        use crate::json::{scan_object, split_object, ScanError, SplitError};
        // Any bytes: no panic, and what the full split takes in, the scan takes in (if not too deep).
        let scanned = scan_object(&body, ["model", "stream"], 128);
        if split_object(&body).is_ok() && crate::json::nesting_within(&body, 128) {
            prop_assert!(scanned.is_ok(), "scan refused what the parser took: {:?}", String::from_utf8_lossy(&body));
        }
        // (The split calls "[" not an object: it stops at the first wrong type; the scan sees
        // that it is not JSON at all.)
        let json = serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok();
        if let (Err(SplitError::NotAnObject), true) = (split_object(&body), json) {
            prop_assert_eq!(scanned.err(), Some(ScanError::NotAnObject));
        }
        // A JSON document: the scan finds each top-level field's exact text, as the split does.
        let text = serde_json::to_vec_pretty(&value).unwrap_or_default();
        if let (Ok(fields), true) = (split_object(&text), crate::json::nesting_within(&text, 128)) {
            for (key, raw) in &fields {
                let [found] = scan_object(&text, [key.as_str()], 128).unwrap_or([None]);
                prop_assert_eq!(found, Some(raw.get().as_bytes()));
            }
        }
    }

    /// The strict pass never panics on any bytes, takes every JSON document serde writes (its
    /// numbers and strings are in range; nesting within the limit), refuses what serde refuses,
    /// and reports the top-level fields the split finds.
    #[test]
    fn strict_check_agrees_with_the_parser(value in arb_value(), body in arb_bytes()) {
        use crate::json::check::{check, Rules};
        let checked = check(&body, &Rules::ENVOY, |_, _| {});
        if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
            prop_assert!(checked.is_err(), "took what serde refuses: {:?}", String::from_utf8_lossy(&body));
        }
        let text = serde_json::to_vec_pretty(&value).unwrap_or_default();
        let mut fields = Vec::new();
        let gateway = check(&text, &Rules::GATEWAY, |k, v| fields.push((k.to_vec(), v.to_vec())));
        prop_assert_eq!(gateway.is_ok(), crate::json::nesting_within(&text, 128));
        if let (Ok(split), true) = (crate::json::split_object(&text), gateway.is_ok()) {
            let split: Vec<(Vec<u8>, Vec<u8>)> = split
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.get().as_bytes().to_vec()))
                .collect();
            // The split keeps the last of duplicate keys, in first-seen order; the pass reports all.
            for (k, v) in &split {
                prop_assert_eq!(fields.iter().rev().find(|(fk, _)| fk == k).map(|(_, fv)| fv), Some(v));
            }
        }
    }

    #[test]
    fn requests_translate_or_fail_cleanly(body in arb_request(), drop in any::<bool>()) {
        if let Ok(req) = parse_chat(&body) {
            let t = target();
            for p in REGISTRY {
                match p.chat_request(&req, &t, RequestOptions { drop_params: drop, ..Default::default() }) {
                    Ok(out) => {
                        let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&out);
                        prop_assert!(parsed.is_ok(), "{} wrote a body that is not JSON", p.name());
                    }
                    Err(e) => prop_assert!((400..600).contains(&e.status)),
                }
            }
        }
    }

    #[test]
    fn responses_and_errors_never_panic(body in arb_bytes(), status in 400u16..600) {
        for p in REGISTRY {
            if let Ok(t) = p.chat_response(&body, &ctx(false)) {
                let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&t.body);
                prop_assert!(parsed.is_ok(), "{} produced a non-JSON completion", p.name());
            }
            let _ = p.embeddings_response(&body, true, &ctx(false));
            let e = p.error(status, Some("ValidationException"), &body);
            prop_assert!((400..600).contains(&e.status));
            let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&e.to_json());
            prop_assert!(parsed.is_ok());
        }
    }

    #[test]
    fn streams_never_panic(chunks in prop::collection::vec(arb_bytes(), 0..6), include_usage in any::<bool>()) {
        for p in REGISTRY {
            let mut t = p.chat_stream(ctx(include_usage));
            let mut out = Vec::new();
            for c in &chunks {
                t.feed(c, &mut out);
            }
            t.finish(&mut out);
            let _ = (t.final_usage(), t.completed());
        }
    }

    /// The same, for a client of the Messages API: whatever the provider sends, the client gets
    /// well-formed events ending in exactly one `message_stop` or `error`; whole answers are
    /// `message` objects.
    #[test]
    fn messages_clients_get_well_formed_answers(chunks in prop::collection::vec(arb_bytes(), 0..6), body in arb_bytes()) {
        use crate::ingress::anthropic::testing::events;
        let messages = ResponseCtx { api: crate::ingress::ClientApi::Messages, ..ctx(false) };
        for p in REGISTRY {
            let mut t = p.chat_stream(messages.clone());
            let mut out = Vec::new();
            for c in &chunks {
                t.feed(c, &mut out);
            }
            t.finish(&mut out);
            let evs = events(&out);
            let ends = evs.iter().filter(|(n, _)| n == "message_stop" || n == "error").count();
            prop_assert_eq!(ends, 1, "{}: {}", p.name(), String::from_utf8_lossy(&out));
            prop_assert!(matches!(evs.last().map(|(n, _)| n.as_str()), Some("message_stop" | "error")));
            if let Ok(r) = p.chat_response(&body, &messages) {
                let v: serde_json::Value = serde_json::from_slice(&r.body).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&v["type"], "message", "{}", p.name());
            }
        }
    }

    /// The same, for a client of OpenAI's Responses API: typed events with consecutive sequence
    /// numbers, ending in exactly one terminal event (after which at most an `error` follows);
    /// whole answers are `response` objects. For OpenAI and Azure, which serve the API themselves,
    /// the provider's events are relayed as they come, so only a terminal event is required.
    #[test]
    fn responses_clients_get_well_formed_answers(chunks in prop::collection::vec(arb_bytes(), 0..6), body in arb_bytes()) {
        let responses = ResponseCtx { api: crate::ingress::ClientApi::Responses, ..ctx(false) };
        for p in REGISTRY {
            let mut t = p.chat_stream(responses.clone());
            let mut out = Vec::new();
            for c in &chunks {
                t.feed(c, &mut out);
            }
            t.finish(&mut out);
            let text = String::from_utf8(out).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let evs: Vec<(String, serde_json::Value)> = text
                .split_terminator("\n\n")
                .map(|e| {
                    let (name, data) = e.split_once('\n').unwrap_or((e, ""));
                    let data = data.strip_prefix("data: ").unwrap_or(data);
                    (name.strip_prefix("event: ").unwrap_or(name).to_string(),
                     serde_json::from_str(data).unwrap_or(serde_json::Value::Null))
                })
                .collect();
            prop_assert!(evs.iter().all(|(_, d)| d.is_object()), "{}: {}", p.name(), text);
            let terminal = |n: &str| matches!(n, "response.completed" | "response.incomplete" | "response.failed" | "error");
            prop_assert!(evs.last().is_some_and(|(n, _)| terminal(n)), "{}: {}", p.name(), text);
            let native = p.responses_path(&Default::default()).is_some();
            if !native {
                for (i, (n, d)) in evs.iter().enumerate() {
                    prop_assert_eq!(&d["type"], n.as_str());
                    prop_assert_eq!(&d["sequence_number"], i, "{}: {}", p.name(), text);
                }
                let ends = evs.iter().filter(|(n, _)| matches!(n.as_str(),
                    "response.completed" | "response.incomplete" | "response.failed")).count();
                prop_assert_eq!(ends, 1, "{}: {}", p.name(), text);
            }
            if let Ok(r) = p.chat_response(&body, &responses) {
                let v: serde_json::Value = serde_json::from_slice(&r.body).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&v["object"], "response", "{}", p.name());
            }
        }
    }
}
