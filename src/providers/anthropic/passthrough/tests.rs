use super::*;
use crate::ingress::anthropic::testing::{accumulate, events};
use crate::ingress::ClientApi;
use serde_json::{json, Value};

fn ctx() -> ResponseCtx {
    ResponseCtx {
        id: "msg_gw".into(),
        created: 1,
        model: "claude-alias".into(),
        include_usage: false,
        api: ClientApi::Messages,
    }
}

#[test]
fn a_whole_message_passes_with_the_alias() {
    let body = br#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"thinking","thinking":"t","signature":"s=="},{"type":"text","text":"hi","citations":null}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":3,"cache_read_input_tokens":20,"output_tokens":5,"service_tier":"standard"},"container":null}"#;
    let t = response(body, &ctx()).unwrap();
    let mut want: Value = serde_json::from_slice(body).unwrap();
    want["model"] = json!("claude-alias");
    assert_eq!(serde_json::from_slice::<Value>(&t.body).unwrap(), want);
    let u = t.usage.unwrap();
    assert_eq!(
        (
            u.prompt_tokens,
            u.cached_tokens,
            u.cache_creation_tokens,
            u.completion_tokens
        ),
        (33, 20, 3, 5)
    );
    assert_eq!(
        response(b"{\"type\":\"error\"}", &ctx())
            .unwrap_err()
            .status,
        502
    );
    assert_eq!(response(b"nope", &ctx()).unwrap_err().status, 502);
}

#[test]
fn a_message_missing_fields_gets_them() {
    // An Anthropic-compatible server's sparse answer: no id, role, stop_sequence or usage.
    let body = br#"{"type":"message","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","x":1}"#;
    let t = response(body, &ctx()).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&t.body).unwrap(),
        json!({"type": "message", "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
               "x": 1, "model": "claude-alias", "id": "msg_gw", "role": "assistant", "stop_sequence": null,
               "usage": {"input_tokens": 0, "output_tokens": 0}})
    );
    // A stream whose message_start has only an id and usage (as in a peer gateway's test): the
    // client gets a whole message to build on, the upstream's own fields as they came.
    let ev = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
    let up = [
        ev("message_start", json!({"type": "message_start", "message": {"id": "msg_123",
            "usage": {"input_tokens": 50, "output_tokens": 1}}})),
        ev("content_block_start", json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}})),
        ev("content_block_delta", json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": "{\"location\":\"Bosto"}})),
        ev("content_block_delta", json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": "n, MA\"}"}})),
        ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 20}})),
        ev("message_stop", json!({"type": "message_stop"})),
    ]
    .concat();
    let (out, t) = run(&[up.as_bytes()]);
    let evs = events(&out);
    assert_eq!(
        evs[0].1["message"],
        json!({"id": "msg_123", "usage": {"input_tokens": 50, "output_tokens": 1}, "model": "claude-alias",
               "type": "message", "role": "assistant", "content": [], "stop_reason": null, "stop_sequence": null})
    );
    let msg = accumulate(&evs);
    assert_eq!(
        msg["content"][0]["input"],
        json!({"location": "Boston, MA"})
    );
    assert_eq!(msg["stop_reason"], "tool_use");
    assert!(t.completed());
    let u = t.final_usage().unwrap();
    assert_eq!((u.prompt_tokens, u.completion_tokens), (50, 20));
}

fn upstream() -> Vec<u8> {
    let ev = |name: &str, v: Value| format!("event: {name}\ndata: {v}\n\n");
    let mut s = String::new();
    s += &ev(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_01", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5", "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 25, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 100, "output_tokens": 1}}}),
    );
    s += &ev("ping", json!({"type": "ping"}));
    s += &ev(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
    );
    s += &ev(
        "content_block_delta",
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm ✓"}}),
    );
    s += &ev(
        "content_block_delta",
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCkYI"}}),
    );
    s += &ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    );
    s += &ev(
        "content_block_start",
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}}),
    );
    s += &ev(
        "content_block_delta",
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"path\": \"a"}}),
    );
    s += &ev(
        "content_block_delta",
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ".txt\"}"}}),
    );
    s += &ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 1}),
    );
    s += &ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 42}}),
    );
    s += &ev("message_stop", json!({"type": "message_stop"}));
    s.into_bytes()
}

fn run(parts: &[&[u8]]) -> (Vec<u8>, PassthroughStream) {
    let mut t = PassthroughStream::new(ctx());
    let mut out = Vec::new();
    for p in parts {
        t.feed(p, &mut out);
    }
    t.finish(&mut out);
    (out, t)
}

#[test]
fn a_stream_passes_event_by_event_at_every_split() {
    let up = upstream();
    let (whole, t) = run(&[&up]);
    let evs = events(&whole);
    // The same events as the upstream's, message_start naming the alias.
    let upstream_events = events(&up);
    assert_eq!(evs.len(), upstream_events.len());
    for (got, sent) in evs.iter().zip(&upstream_events) {
        let mut sent = sent.clone();
        if sent.0 == "message_start" {
            sent.1["message"]["model"] = json!("claude-alias");
        }
        assert_eq!(got, &sent);
    }
    let msg = accumulate(&evs);
    assert_eq!(msg["content"][0]["signature"], "EqQBCkYI");
    assert_eq!(msg["content"][1]["input"], json!({"path": "a.txt"}));
    assert!(t.completed());
    let u = t.final_usage().unwrap();
    assert_eq!(
        (u.prompt_tokens, u.cached_tokens, u.completion_tokens),
        (125, 100, 42)
    );
    for i in 0..=up.len() {
        assert_eq!(run(&[&up[..i], &up[i..]]).0, whole, "split at {i}");
    }
}

#[test]
fn breaks_and_errors() {
    let up = upstream();
    let text = String::from_utf8(up.clone()).unwrap();
    // Cut after message_delta: completed with the message_stop that was lost.
    let cut = text.find("event: message_stop").unwrap();
    let (out, t) = run(&[&up[..cut]]);
    assert_eq!(events(&out).last().unwrap().0, "message_stop");
    assert!(t.completed() && t.final_usage().is_some());
    // Cut mid-message: an error event, nothing charged as usage.
    let cut = text.find("event: content_block_stop").unwrap();
    let (out, t) = run(&[&up[..cut]]);
    let last = events(&out).last().unwrap().clone();
    assert_eq!(last.1["error"]["type"], "api_error");
    assert!(!t.completed() && t.final_usage().is_none());
    // Anthropic's own error event passes as it is and ends the stream.
    let err = b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
    let (out, t) = run(&[err, &up]);
    let evs = events(&out);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].1["error"]["type"], "overloaded_error");
    assert!(!t.completed());
    // Garbage.
    let (out, _) = run(&[b"data: {nope\n\n"]);
    assert_eq!(events(&out).last().unwrap().0, "error");
}
