use super::*;
use crate::ingress::anthropic::testing::{accumulate, events};
use proptest::prelude::*;
use serde_json::json;

fn ctx() -> ResponseCtx {
    ResponseCtx {
        id: "msg_01".into(),
        created: 1,
        model: "claude".into(),
        include_usage: false,
        api: crate::ingress::ClientApi::Messages,
    }
}

#[test]
fn text_stream_event_sequence() {
    let mut w = EventWriter::new(ctx());
    let mut out = Vec::new();
    w.start(&mut out, 0);
    w.text(&mut out, 0, "Hel");
    w.text(&mut out, 0, "lo");
    w.finish(&mut out, 0, FinishReason::Stop);
    w.usage(
        &mut out,
        &Usage {
            prompt_tokens: 12,
            completion_tokens: 2,
            ..Default::default()
        },
    );
    w.done(&mut out);
    w.done(&mut out);
    assert!(w.completed());
    let evs = events(&out);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        evs[0].1["message"],
        json!({"id": "msg_01", "type": "message", "role": "assistant", "model": "claude",
               "content": [], "stop_reason": null, "stop_sequence": null,
               "usage": {"input_tokens": 0, "cache_creation_input_tokens": 0,
                         "cache_read_input_tokens": 0, "output_tokens": 0}})
    );
    assert_eq!(
        evs[2].1["content_block"],
        json!({"type": "text", "text": ""})
    );
    assert_eq!(
        evs[6].1,
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"input_tokens": 12, "cache_creation_input_tokens": 0,
                         "cache_read_input_tokens": 0, "output_tokens": 2}})
    );
    let msg = accumulate(&evs);
    assert_eq!(msg["content"], json!([{"type": "text", "text": "Hello"}]));
}

#[test]
fn thinking_text_and_parallel_tools() {
    let mut w = EventWriter::new(ctx());
    let mut out = Vec::new();
    w.reasoning(&mut out, 0, "Two ");
    w.reasoning(&mut out, 0, "cities.");
    w.reasoning_signature(&mut out, 0, "EqQBCkYI");
    w.redacted_reasoning(&mut out, 0, "EmwKAhgB");
    w.text(&mut out, 0, "Checking.");
    w.tool_call_start(&mut out, 0, 0, "toolu_1", "weather");
    w.tool_call_args(&mut out, 0, 0, "{\"city\":");
    w.tool_call_start(&mut out, 0, 1, "toolu_2", "weather");
    // A fragment of the first call after the second began: sent to the first's block.
    w.tool_call_args(&mut out, 0, 0, "\"Paris\"}");
    w.tool_call_args(&mut out, 0, 1, "{\"city\":\"Rome\"}");
    w.tool_call_args(&mut out, 0, 7, "{\"orphan\":1}");
    w.finish(&mut out, 0, FinishReason::ToolCalls);
    w.done(&mut out);
    let msg = accumulate(&events(&out));
    assert_eq!(
        msg["content"],
        json!([
            {"type": "thinking", "thinking": "Two cities.", "signature": "EqQBCkYI"},
            {"type": "redacted_thinking", "data": "EmwKAhgB"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {"city": "Rome"}},
        ])
    );
    assert_eq!(msg["stop_reason"], "tool_use");
}

#[test]
fn error_ends_the_stream() {
    let mut w = EventWriter::new(ctx());
    let mut out = Vec::new();
    w.text(&mut out, 0, "partial");
    w.error(&mut out, &ApiError::bad_gateway("upstream broke"));
    w.text(&mut out, 0, "more");
    w.done(&mut out);
    assert!(w.is_done() && !w.completed());
    let evs = events(&out);
    let last = evs.last().unwrap();
    assert_eq!(
        last.1,
        json!({"type": "error", "error": {"type": "api_error", "message": "upstream broke"}})
    );
    assert!(evs.iter().all(|(n, _)| n != "message_stop"));
}

#[test]
fn a_stream_without_content_or_finish_is_still_a_message() {
    let mut w = EventWriter::new(ctx());
    let mut out = Vec::new();
    w.tool_call_start(&mut out, 0, 0, "toolu_1", "f");
    w.done(&mut out);
    let msg = accumulate(&events(&out));
    assert_eq!(msg["stop_reason"], "tool_use");
    assert_eq!(msg["content"][0]["input"], json!({}));
    let mut w = EventWriter::new(ctx());
    let mut out = Vec::new();
    w.done(&mut out);
    let msg = accumulate(&events(&out));
    assert_eq!(msg["content"], json!([]));
    assert_eq!(msg["stop_reason"], "end_turn");
}

#[derive(Debug, Clone)]
enum Call {
    Start(usize),
    Text(usize, String),
    Reasoning(String),
    Signature(String),
    Redacted(String),
    ToolStart(usize, String),
    ToolArgs(usize, String),
    Finish(u8),
    Usage(u64, u64),
    Done,
    Error,
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        (0usize..2).prop_map(Call::Start),
        (0usize..2, ".{0,8}").prop_map(|(i, s)| Call::Text(i, s)),
        ".{0,8}".prop_map(Call::Reasoning),
        ".{0,8}".prop_map(Call::Signature),
        ".{0,8}".prop_map(Call::Redacted),
        (0usize..3, ".{0,8}").prop_map(|(i, s)| Call::ToolStart(i, s)),
        (0usize..3, ".{0,8}").prop_map(|(i, s)| Call::ToolArgs(i, s)),
        (0u8..4).prop_map(Call::Finish),
        (0u64..1000, 0u64..1000).prop_map(|(a, b)| Call::Usage(a, b)),
        Just(Call::Done),
        Just(Call::Error),
    ]
}

proptest! {
    /// Whatever a translator reports, in any order, the client gets well-formed events: valid
    /// JSON, message_start first, deltas only to started blocks, each block stopped once, and
    /// at most one end (message_stop or error), after which nothing.
    #[test]
    fn any_sequence_is_a_well_formed_stream(calls in proptest::collection::vec(call(), 0..40)) {
        let mut w = EventWriter::new(ctx());
        let mut out = Vec::new();
        for c in calls {
            match c {
                Call::Start(i) => w.start(&mut out, i),
                Call::Text(i, s) => w.text(&mut out, i, &s),
                Call::Reasoning(s) => w.reasoning(&mut out, 0, &s),
                Call::Signature(s) => w.reasoning_signature(&mut out, 0, &s),
                Call::Redacted(s) => w.redacted_reasoning(&mut out, 0, &s),
                Call::ToolStart(t, s) => w.tool_call_start(&mut out, 0, t, &s, "f"),
                Call::ToolArgs(t, s) => w.tool_call_args(&mut out, 0, t, &s),
                Call::Finish(r) => w.finish(&mut out, 0, [FinishReason::Stop, FinishReason::Length,
                    FinishReason::ToolCalls, FinishReason::ContentFilter][r as usize]),
                Call::Usage(a, b) => w.usage(&mut out, &Usage { prompt_tokens: a, completion_tokens: b,
                    ..Default::default() }),
                Call::Done => w.done(&mut out),
                Call::Error => w.error(&mut out, &ApiError::server("x")),
            }
        }
        w.done(&mut out);
        let evs = events(&out);
        let ends = evs.iter().filter(|(n, _)| n == "message_stop" || n == "error").count();
        prop_assert_eq!(ends, 1);
        let end = evs.iter().position(|(n, _)| n == "message_stop" || n == "error").unwrap();
        prop_assert_eq!(end, evs.len() - 1);
        if evs[0].0 != "error" {
            prop_assert_eq!(evs[0].0.as_str(), "message_start");
            if evs[end].0 == "message_stop" {
                accumulate(&evs);
            } else {
                accumulate(&evs[..end]);
            }
        }
    }
}
