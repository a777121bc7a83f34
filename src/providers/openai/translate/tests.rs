use super::*;
use crate::ingress::anthropic::testing::{accumulate, events};
use crate::ingress::ClientApi;
use serde_json::{json, Value};

fn ctx() -> ResponseCtx {
    ResponseCtx {
        id: "msg_1".into(),
        created: 1,
        model: "gpt-alias".into(),
        include_usage: false,
        api: ClientApi::Messages,
    }
}

#[test]
fn a_completion_as_a_messages_answer() {
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Sure.",
            "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27,
                  "prompt_tokens_details": {"cached_tokens": 16}},
    });
    let t = response("openai", &serde_json::to_vec(&body).unwrap(), &ctx()).unwrap();
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(
        v,
        json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "gpt-alias",
            "content": [
                {"type": "text", "text": "Sure."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 4, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 16, "output_tokens": 7},
        })
    );
    assert_eq!(t.usage.unwrap().prompt_tokens, 20);
    for bad in [
        &b"nope"[..],
        b"{\"error\":{\"message\":\"x\"}}",
        b"{\"choices\":5}",
    ] {
        assert_eq!(response("openai", bad, &ctx()).unwrap_err().status, 502);
    }
}

fn chunk(v: Value) -> String {
    format!("data: {v}\n\n")
}

fn upstream() -> Vec<u8> {
    let c = |delta: Value, finish: Value| {
        chunk(
            json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    };
    let mut s = String::new();
    s += &c(json!({"role": "assistant", "content": ""}), Value::Null);
    s += &c(json!({"reasoning_content": "Think."}), Value::Null);
    s += &c(json!({"content": "Hé, "}), Value::Null);
    s += &c(json!({"content": "ça va ✓"}), Value::Null);
    s += &c(
        json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
        "function": {"name": "get_weather", "arguments": ""}}]}),
        Value::Null,
    );
    s += &c(
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}),
        Value::Null,
    );
    s += &c(
        json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
        "function": {"name": "get_time", "arguments": "{}"}}]}),
        Value::Null,
    );
    s += &c(
        json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Rome\"}"}}]}),
        Value::Null,
    );
    s += &c(json!({}), json!("tool_calls"));
    s += &chunk(
        json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
        "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 9, "total_tokens": 20}}),
    );
    s += "data: [DONE]\n\n";
    s.into_bytes()
}

fn run(parts: &[&[u8]]) -> (Vec<u8>, ToSink) {
    let mut t = ToSink::new(ctx(), |d| {
        crate::providers::openai::stream_error("openai", d)
    });
    let mut out = Vec::new();
    for p in parts {
        t.feed(p, &mut out);
    }
    t.finish(&mut out);
    (out, t)
}

#[test]
fn a_stream_as_messages_events_at_every_split() {
    let up = upstream();
    let (whole, t) = run(&[&up]);
    assert!(t.completed());
    assert_eq!(t.final_usage().unwrap().completion_tokens, 9);
    let msg = accumulate(&events(&whole));
    assert_eq!(
        msg["content"],
        json!([
            {"type": "thinking", "thinking": "Think.", "signature": ""},
            {"type": "text", "text": "Hé, ça va ✓"},
            {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Rome"}},
            {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}},
        ])
    );
    assert_eq!(msg["stop_reason"], "tool_use");
    assert_eq!(msg["usage"]["input_tokens"], 11);
    assert_eq!(msg["usage"]["output_tokens"], 9);
    for i in 0..=up.len() {
        let (split, _) = run(&[&up[..i], &up[i..]]);
        assert_eq!(split, whole, "split at {i}");
    }
}

#[test]
fn errors_and_cut_streams() {
    // An error event: one Anthropic error event, no usage to charge.
    let (out, t) = run(&[b"data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\",\"code\":503}}\n\n"]);
    let evs = events(&out);
    assert_eq!(evs.last().unwrap().0, "error");
    assert!(!t.completed() && t.final_usage().is_none());
    // Cut before the answer finished: an error, not a complete message.
    let up = upstream();
    let (out, t) = run(&[&up[..up.len() / 2]]);
    assert_eq!(events(&out).last().unwrap().0, "error");
    assert!(!t.completed());
    // Finished, then cut before [DONE]: complete.
    let text = String::from_utf8(up.clone()).unwrap();
    let cut = text.find("data: [DONE]").unwrap();
    let (out, t) = run(&[&up[..cut]]);
    assert_eq!(events(&out).last().unwrap().0, "message_stop");
    assert!(t.completed());
    // Not JSON.
    let (out, _) = run(&[b"data: {nope\n\n"]);
    assert_eq!(events(&out).last().unwrap().0, "error");
}
