use super::*;
use crate::ingress::ClientApi;
use serde_json::{json, Value};

fn ctx() -> ResponseCtx {
    ResponseCtx {
        id: "resp_gw".into(),
        created: 1,
        model: "my-gpt".into(),
        include_usage: false,
        api: ClientApi::Responses,
    }
}

/// A response as OpenAI's API reference shows it (`POST /v1/responses`).
fn reference_response() -> Value {
    json!({
        "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
        "object": "response", "created_at": 1741476542, "status": "completed", "error": null,
        "incomplete_details": null, "instructions": null, "max_output_tokens": null,
        "model": "gpt-4.1-2025-04-14",
        "output": [{"type": "message", "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
                    "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "In a peaceful grove beneath a silver moon...",
                                 "annotations": []}]}],
        "parallel_tool_calls": true, "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null}, "store": true, "temperature": 1.0,
        "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
        "truncation": "disabled",
        "usage": {"input_tokens": 36, "input_tokens_details": {"cached_tokens": 12}, "output_tokens": 87,
                  "output_tokens_details": {"reasoning_tokens": 5}, "total_tokens": 123},
        "user": null, "metadata": {}
    })
}

#[test]
fn the_request_goes_with_the_deployments_model_and_a_cap() {
    let body = br#"{"model":"my-gpt","input":"Hi","max_output_tokens":500,"store":false}"#;
    let v: Value = serde_json::from_slice(&request(body, "gpt-4.1", None).unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"model": "gpt-4.1", "input": "Hi", "max_output_tokens": 500, "store": false})
    );
    let v: Value = serde_json::from_slice(&request(body, "gpt-4.1", Some(100)).unwrap()).unwrap();
    assert_eq!(v["max_output_tokens"], 100);
    let v: Value = serde_json::from_slice(&request(body, "gpt-4.1", Some(900)).unwrap()).unwrap();
    assert_eq!(v["max_output_tokens"], 500);
    // No cap asked for: the budget's is added.
    let v: Value =
        serde_json::from_slice(&request(br#"{"input":"Hi"}"#, "gpt-4.1", Some(64)).unwrap())
            .unwrap();
    assert_eq!(
        v,
        json!({"input": "Hi", "model": "gpt-4.1", "max_output_tokens": 64})
    );
    assert_eq!(request(b"[1]", "m", None).unwrap_err().status, 400);
}

#[test]
fn a_whole_response_is_relayed_with_the_alias_and_its_usage_read() {
    let body = serde_json::to_vec(&reference_response()).unwrap();
    let t = response("openai", &body, &ctx()).unwrap();
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    let mut want = reference_response();
    want["model"] = json!("my-gpt");
    assert_eq!(v, want);
    assert_eq!(
        t.usage,
        Some(Usage {
            prompt_tokens: 36,
            completion_tokens: 87,
            cached_tokens: 12,
            cache_creation_tokens: 0,
            reasoning_tokens: 5,
        })
    );
    let mut bad = reference_response();
    bad["usage"]["input_tokens"] = json!(-1);
    let t = response("openai", &serde_json::to_vec(&bad).unwrap(), &ctx()).unwrap();
    assert_eq!(t.usage, None, "usage that cannot be charged is not");
    for garbage in [
        &b"<html>"[..],
        br#"{"object":"chat.completion","choices":[]}"#,
        b"[]",
    ] {
        assert_eq!(response("openai", garbage, &ctx()).unwrap_err().status, 502);
    }
}

/// A stream as OpenAI sends it for a short answer (the API reference's streaming example).
fn reference_stream() -> String {
    let mut created = reference_response();
    created["status"] = json!("in_progress");
    created["output"] = json!([]);
    created["usage"] = Value::Null;
    let item = json!({"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant", "content": []});
    let events = [
        json!({"type": "response.created", "sequence_number": 0, "response": created}),
        json!({"type": "response.in_progress", "sequence_number": 1, "response": created}),
        json!({"type": "response.output_item.added", "sequence_number": 2, "output_index": 0, "item": item}),
        json!({"type": "response.content_part.added", "sequence_number": 3, "item_id": "msg_1",
               "output_index": 0, "content_index": 0,
               "part": {"type": "output_text", "text": "", "annotations": []}}),
        json!({"type": "response.output_text.delta", "sequence_number": 4, "item_id": "msg_1",
               "output_index": 0, "content_index": 0, "delta": "Hi é", "logprobs": []}),
        json!({"type": "response.output_text.done", "sequence_number": 5, "item_id": "msg_1",
               "output_index": 0, "content_index": 0, "text": "Hi é", "logprobs": []}),
        json!({"type": "response.output_item.done", "sequence_number": 6, "output_index": 0,
               "item": {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": "Hi é", "annotations": []}]}}),
        json!({"type": "response.completed", "sequence_number": 7, "response": reference_response()}),
    ];
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {}\n\n", e["type"].as_str().unwrap(), e))
        .collect()
}

fn relay(upstream: &[u8], split: usize) -> (Vec<(String, Value)>, PassthroughStream) {
    let mut s = PassthroughStream::new("openai", ctx());
    let mut out = Vec::new();
    let (a, b) = upstream.split_at(split.min(upstream.len()));
    s.feed(a, &mut out);
    s.feed(b, &mut out);
    s.finish(&mut out);
    let text = String::from_utf8(out).unwrap();
    let evs = text
        .split_terminator("\n\n")
        .map(|e| {
            let (name, data) = e.split_once('\n').unwrap();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            let name = name.strip_prefix("event: ").unwrap().to_string();
            assert_eq!(data["type"], name.as_str());
            (name, data)
        })
        .collect();
    (evs, s)
}

#[test]
fn a_stream_is_relayed_at_any_split_with_the_alias() {
    let upstream = reference_stream();
    let want: Vec<Value> = upstream
        .split_terminator("\n\n")
        .map(|e| {
            let mut v: Value = serde_json::from_str(e.split_once("data: ").unwrap().1).unwrap();
            if v.get("response").is_some() {
                v["response"]["model"] = json!("my-gpt");
            }
            v
        })
        .collect();
    for split in 0..=upstream.len() {
        let (evs, s) = relay(upstream.as_bytes(), split);
        let got: Vec<Value> = evs.into_iter().map(|(_, v)| v).collect();
        assert_eq!(got, want, "split at {split}");
        assert!(s.completed());
        assert_eq!(s.final_usage().map(|u| u.completion_tokens), Some(87));
    }
}

#[test]
fn a_cut_stream_ends_failed_with_an_error_the_sdk_raises() {
    let upstream = reference_stream();
    let cut = upstream.find("event: response.output_text.done").unwrap();
    let (evs, s) = relay(&upstream.as_bytes()[..cut], cut);
    assert!(!s.completed());
    assert_eq!(s.final_usage(), None);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[names.len() - 2..], ["response.failed", "error"]);
    let (failed, err) = (&evs[evs.len() - 2].1, &evs[evs.len() - 1].1);
    assert_eq!(failed["sequence_number"], 5);
    assert_eq!(err["sequence_number"], 6);
    assert_eq!(
        failed["response"]["id"],
        "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b"
    );
    assert_eq!(failed["response"]["status"], "failed");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ended before"));

    let (evs, s) = relay(b"event: response.created\ndata: {not json\n\n", 0);
    assert!(!s.completed());
    assert_eq!(evs.last().unwrap().0, "error");
}

#[test]
fn an_upstream_error_event_ends_the_stream_as_it_came() {
    let up = "event: error\ndata: {\"type\":\"error\",\"sequence_number\":0,\"code\":\"server_error\",\"message\":\"boom\",\"param\":null}\n\n";
    let (evs, s) = relay(up.as_bytes(), 10);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].1["message"], "boom");
    assert!(!s.completed());
}

/// `upstream`'s events as the gateway should relay them under `alias`: each lifecycle event's
/// `response.model` the alias, every other byte as it came.
fn under_alias(upstream: &str, alias: &str) -> String {
    upstream
        .split_terminator("\n\n")
        .map(|e| {
            let (name, data) = e.split_once("\ndata: ").unwrap();
            let mut v: Value = serde_json::from_str(data).unwrap();
            if v.get("response").is_some() {
                v["response"]["model"] = json!(alias);
            }
            format!("{name}\ndata: {v}\n\n")
        })
        .collect()
}

fn replay(pieces: &[&[u8]]) -> String {
    let mut s = PassthroughStream::replay("openai", "my-gpt".into());
    let mut out = Vec::new();
    for piece in pieces {
        s.feed(piece, &mut out);
    }
    s.finish(&mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn a_replayed_stream_is_relayed_at_any_split_under_the_alias_and_otherwise_as_it_came() {
    let upstream = reference_stream();
    assert_eq!(
        upstream.matches("\"model\":\"gpt-4.1-2025-04-14\"").count(),
        3
    );
    let want = under_alias(&upstream, "my-gpt");
    assert_eq!(want.matches("\"model\":\"my-gpt\"").count(), 3);
    assert!(!want.contains("gpt-4.1"));
    let bytes = upstream.as_bytes();
    for split in 0..=bytes.len() {
        let (a, b) = bytes.split_at(split);
        assert_eq!(replay(&[a, b]), want, "split at {split}");
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(replay(&singles), want);
}

#[test]
fn a_replay_ends_as_the_holder_ends_it() {
    let upstream = reference_stream();
    // After `starting_after`: the events that follow, nothing added.
    let tail = &upstream[upstream.find("event: response.output_text.delta").unwrap()..];
    assert_eq!(replay(&[tail.as_bytes()]), under_alias(tail, "my-gpt"));
    // Nothing after the last one; and a stream ended before its terminal event is not said to
    // have failed (the stored response did not).
    assert_eq!(replay(&[]), "");
    let head = &upstream[..upstream.find("event: response.output_text.done").unwrap()];
    assert_eq!(replay(&[head.as_bytes()]), under_alias(head, "my-gpt"));
    // An event the gateway cannot read ends it with an `error` event alone.
    let got = replay(&[b"event: response.created\ndata: {not json\n\n"]);
    let (name, data) = got.trim_end().split_once('\n').unwrap();
    assert_eq!(name, "event: error");
    let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(data["type"], "error");
    assert!(data["error"]["message"]
        .as_str()
        .unwrap()
        .contains("could not read"));
}
