use super::*;
use crate::ingress::ClientApi;
use proptest::prelude::*;
use serde_json::{json, Value};

fn ctx() -> ResponseCtx {
    ResponseCtx {
        id: "resp_0a1b".into(),
        created: 1_741_476_542,
        model: "claude".into(),
        include_usage: false,
        api: ClientApi::Responses,
    }
}

/// Splits a stream into (event name, data) pairs, checking the SSE framing, that each event's
/// `type` is its name and that sequence numbers count from 0 without a gap.
fn events(out: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(out).unwrap();
    assert!(text.is_empty() || text.ends_with("\n\n"), "{text}");
    let evs: Vec<(String, Value)> = text
        .split_terminator("\n\n")
        .map(|e| {
            let (name, data) = e.split_once('\n').unwrap();
            let name = name.strip_prefix("event: ").unwrap().to_string();
            let data: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], name.as_str());
            (name, data)
        })
        .collect();
    for (i, (_, d)) in evs.iter().enumerate() {
        assert_eq!(d["sequence_number"], i, "sequence numbers: {evs:?}");
    }
    evs
}

/// Replays the events as the `openai` SDK's `responses.stream()` state does, checking what it
/// checks (a `response.created` first, the same response id throughout, content only for added
/// items, each item done once with its identity, no unfinished item at completion); returns the
/// snapshot built from the deltas and the final response the terminal event carried.
fn accumulate(evs: &[(String, Value)]) -> (Value, Value) {
    let mut snap = Value::Null;
    let mut done: Vec<bool> = Vec::new();
    let mut last = Value::Null;
    for (name, d) in evs {
        if snap.is_null() {
            assert_eq!(name, "response.created", "response.created first");
            snap = d["response"].clone();
            assert_eq!(snap["output"], json!([]));
            continue;
        }
        if let Some(r) = d.get("response") {
            assert_eq!(r["id"], snap["id"], "lifecycle response identity");
        }
        match name.as_str() {
            "response.in_progress" => {}
            "response.output_item.added" => {
                let output = snap["output"].as_array_mut().unwrap();
                assert_eq!(d["output_index"], output.len(), "items in order");
                output.push(d["item"].clone());
                done.push(false);
            }
            "response.content_part.added" => {
                let i = d["output_index"].as_u64().unwrap() as usize;
                let item = &mut snap["output"][i];
                assert_eq!(item["id"], d["item_id"]);
                item["content"]
                    .as_array_mut()
                    .unwrap()
                    .push(d["part"].clone());
            }
            "response.output_text.delta" => {
                let i = d["output_index"].as_u64().unwrap() as usize;
                assert!(!done[i]);
                let part = &mut snap["output"][i]["content"]
                    [d["content_index"].as_u64().unwrap() as usize];
                assert_eq!(part["type"], "output_text");
                part["text"] = json!(
                    part["text"].as_str().unwrap().to_string() + d["delta"].as_str().unwrap()
                );
            }
            "response.function_call_arguments.delta" => {
                let i = d["output_index"].as_u64().unwrap() as usize;
                let item = &mut snap["output"][i];
                assert_eq!(item["type"], "function_call");
                item["arguments"] = json!(
                    item["arguments"].as_str().unwrap().to_string() + d["delta"].as_str().unwrap()
                );
            }
            "response.reasoning_summary_part.added" => {
                let i = d["output_index"].as_u64().unwrap() as usize;
                snap["output"][i]["summary"]
                    .as_array_mut()
                    .unwrap()
                    .push(d["part"].clone());
            }
            "response.reasoning_summary_text.delta" => {
                let i = d["output_index"].as_u64().unwrap() as usize;
                let part = &mut snap["output"][i]["summary"][0];
                part["text"] = json!(
                    part["text"].as_str().unwrap().to_string() + d["delta"].as_str().unwrap()
                );
            }
            "response.output_text.done" | "response.content_part.done" => {
                let i = d["output_index"].as_u64().unwrap() as usize;
                let text = d.get("text").unwrap_or(&d["part"]["text"]);
                assert_eq!(snap["output"][i]["content"][0]["text"], *text, "{name}");
            }
            "response.reasoning_summary_text.done" | "response.reasoning_summary_part.done" => {
                let i = d["output_index"].as_u64().unwrap() as usize;
                let text = d.get("text").unwrap_or(&d["part"]["text"]);
                assert_eq!(snap["output"][i]["summary"][0]["text"], *text, "{name}");
            }
            "response.function_call_arguments.done" => {
                let i = d["output_index"].as_u64().unwrap() as usize;
                assert_eq!(snap["output"][i]["arguments"], d["arguments"]);
            }
            "response.output_item.done" => {
                let i = d["output_index"].as_u64().unwrap() as usize;
                assert!(!done[i], "one done per item");
                done[i] = true;
                let (added, item) = (&snap["output"][i], &d["item"]);
                assert_eq!((&added["type"], &added["id"]), (&item["type"], &item["id"]));
                assert_eq!(item["status"].as_str().unwrap_or("completed"), "completed");
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                if name != "response.failed" {
                    assert!(done.iter().all(|d| *d), "unfinished output items");
                }
                last = d["response"].clone();
            }
            "error" => {
                assert!(d["error"]["message"].is_string());
                assert_eq!(d["message"], d["error"]["message"]);
            }
            other => panic!("{other}"),
        }
    }
    (snap, last)
}

fn write(f: impl FnOnce(&mut EventWriter, &mut Vec<u8>)) -> Vec<(String, Value)> {
    let mut w = EventWriter::new(ctx());
    let mut out = Vec::new();
    f(&mut w, &mut out);
    events(&out)
}

#[test]
fn text_stream_in_order() {
    let evs = write(|w, out| {
        w.start(out, 0);
        w.text(out, 0, "Hel");
        w.text(out, 0, "lo");
        w.finish(out, 0, FinishReason::Stop);
        w.usage(
            out,
            &Usage {
                prompt_tokens: 12,
                completion_tokens: 2,
                ..Default::default()
            },
        );
        w.done(out);
        assert!(w.completed() && w.is_done());
    });
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    assert_eq!(evs[0].1["response"]["status"], "in_progress");
    assert_eq!(evs[0].1["response"]["model"], "claude");
    assert_eq!(
        evs[2].1["item"],
        json!({"type": "message", "id": "msg_0a1b0", "status": "in_progress", "role": "assistant", "content": []})
    );
    let (snap, last) = accumulate(&evs);
    assert_eq!(snap["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(last["status"], "completed");
    assert_eq!(
        last["output"],
        json!([{"type": "message", "id": "msg_0a1b0", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}]}])
    );
    assert_eq!(last["usage"]["input_tokens"], 12);
    assert_eq!(last["usage"]["output_tokens"], 2);
    assert_eq!(last["usage"]["total_tokens"], 14);
}

#[test]
fn reasoning_then_text_then_parallel_calls() {
    let evs = write(|w, out| {
        w.reasoning(out, 0, "think");
        w.reasoning(out, 0, "ing");
        w.reasoning_signature(out, 0, "sig");
        w.text(out, 0, "Checking both.");
        w.tool_call_start(out, 0, 0, "call_a", "weather");
        w.tool_call_start(out, 0, 1, "call_b", "time");
        // Interleaved fragments of the two calls, as OpenAI-compatible servers may send them.
        w.tool_call_args(out, 0, 0, "{\"city\":");
        w.tool_call_args(out, 0, 1, "{\"tz\":\"CET\"}");
        w.tool_call_args(out, 0, 0, "\"Paris\"}");
        w.tool_call_start(out, 0, 0, "call_a", "weather");
        w.finish(out, 0, FinishReason::ToolCalls);
        w.done(out);
    });
    let (snap, last) = accumulate(&evs);
    assert_eq!(snap["output"].as_array().unwrap().len(), 4);
    assert_eq!(last["output"][0]["type"], "reasoning");
    assert_eq!(last["output"][0]["summary"][0]["text"], "thinking");
    assert_eq!(last["output"][1]["content"][0]["text"], "Checking both.");
    assert_eq!(
        last["output"][2],
        json!({"type": "function_call", "id": "fc_0a1b2", "call_id": "call_a", "name": "weather",
               "arguments": "{\"city\":\"Paris\"}", "status": "completed"})
    );
    assert_eq!(last["output"][3]["call_id"], "call_b");
    assert_eq!(last["output"][3]["arguments"], "{\"tz\":\"CET\"}");
    assert_eq!(snap["output"][2]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(last["status"], "completed");
}

#[test]
fn a_cut_answer_ends_incomplete() {
    let evs = write(|w, out| {
        w.text(out, 0, "Once");
        w.finish(out, 0, FinishReason::Length);
        w.done(out);
    });
    let (name, last) = evs.last().unwrap();
    assert_eq!(name, "response.incomplete");
    assert_eq!(last["response"]["status"], "incomplete");
    assert_eq!(
        last["response"]["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    accumulate(&evs);
}

#[test]
fn a_failure_ends_the_stream_with_response_failed_and_an_error() {
    let evs = write(|w, out| {
        w.text(out, 0, "Par");
        w.error(out, &ApiError::bad_gateway("the provider's stream broke"));
        w.text(out, 0, "more");
        w.done(out);
        assert!(w.is_done() && !w.completed());
    });
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[names.len() - 2..], ["response.failed", "error"]);
    let failed = &evs[evs.len() - 2].1["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["message"], "the provider's stream broke");
    let err = &evs.last().unwrap().1;
    assert_eq!(err["message"], "the provider's stream broke");
    accumulate(&evs);
}

#[test]
fn choices_past_the_first_and_empty_pieces_write_nothing() {
    let evs = write(|w, out| {
        w.text(out, 1, "other choice");
        w.text(out, 0, "");
        w.tool_call_args(out, 0, 3, "{}");
        w.done(out);
    });
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.completed"
        ]
    );
    assert_eq!(evs[2].1["response"]["output"], json!([]));
}

#[derive(Debug, Clone)]
enum Call {
    Text(String),
    Reasoning(String),
    ToolStart(usize),
    ToolArgs(usize, String),
    Finish(u8),
    Usage(u64),
    Error,
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        "[a-zé\"\\\\ ]{0,6}".prop_map(Call::Text),
        "[a-z ]{0,6}".prop_map(Call::Reasoning),
        (0usize..4).prop_map(Call::ToolStart),
        ((0usize..4), "[{}\":a-z]{0,5}").prop_map(|(i, s)| Call::ToolArgs(i, s)),
        (0u8..4).prop_map(Call::Finish),
        (0u64..1000).prop_map(Call::Usage),
        Just(Call::Error),
    ]
}

proptest! {
    /// Whatever a translator reports, in whatever order, the stream is one the SDK accepts: valid
    /// JSON events with consecutive sequence numbers, one terminal event, and (when it
    /// completed) a final response whose output is what the deltas built.
    #[test]
    fn any_report_makes_a_well_formed_stream(calls in prop::collection::vec(call(), 0..24)) {
        let mut w = EventWriter::new(ctx());
        let mut out = Vec::new();
        for c in calls {
            match c {
                Call::Text(t) => w.text(&mut out, 0, &t),
                Call::Reasoning(t) => w.reasoning(&mut out, 0, &t),
                Call::ToolStart(i) => w.tool_call_start(&mut out, 0, i, "", "f"),
                Call::ToolArgs(i, s) => w.tool_call_args(&mut out, 0, i, &s),
                Call::Finish(r) => w.finish(&mut out, 0, [FinishReason::Stop, FinishReason::Length,
                    FinishReason::ToolCalls, FinishReason::ContentFilter][r as usize]),
                Call::Usage(n) => w.usage(&mut out, &Usage { prompt_tokens: n, ..Default::default() }),
                Call::Error => w.error(&mut out, &ApiError::bad_gateway("broken")),
            }
        }
        w.done(&mut out);
        let evs = events(&out);
        let terminal = evs.iter().filter(|(n, _)| matches!(n.as_str(),
            "response.completed" | "response.incomplete" | "response.failed")).count();
        prop_assert_eq!(terminal, 1);
        let (snap, last) = accumulate(&evs);
        if w.completed() {
            let built: Vec<Value> = snap["output"].as_array().unwrap().iter().map(|i| {
                (i["type"].clone(), i["id"].clone(), i.get("arguments").cloned(),
                 i["content"].get(0).map(|p| p["text"].clone()))
            }).map(|t| json!([t.0, t.1, t.2, t.3])).collect();
            let fin: Vec<Value> = last["output"].as_array().unwrap().iter().map(|i| {
                json!([i["type"], i["id"], i.get("arguments"), i["content"].get(0).map(|p| p["text"].clone())])
            }).collect();
            prop_assert_eq!(built, fin);
        }
    }
}

/// The signature rides on its reasoning item, redacted thinking is an item of its own: both in
/// their `output_item.done` and in the completed response, as `encrypted_content`.
#[test]
fn signatures_and_redacted_reasoning_are_encrypted_content() {
    let evs = write(|w, out| {
        w.reasoning(out, 0, "Need the tool.");
        w.reasoning_signature(out, 0, "EqQB");
        w.reasoning_signature(out, 0, "CkYI");
        w.redacted_reasoning(out, 0, "EmwK");
        w.tool_call_start(out, 0, 0, "toolu_1", "weather");
        w.tool_call_args(out, 0, 0, "{}");
        // A signature with no reasoning text still gets its item.
        w.reasoning_signature(out, 0, "ErcB");
        w.finish(out, 0, FinishReason::ToolCalls);
        w.done(out);
    });
    let (_, last) = accumulate(&evs);
    let done: Vec<&Value> = evs
        .iter()
        .filter(|(n, _)| n == "response.output_item.done")
        .map(|(_, d)| &d["item"])
        .collect();
    let added = evs
        .iter()
        .find(|(n, _)| n == "response.output_item.added")
        .map(|(_, d)| &d["item"])
        .unwrap();
    assert!(added.get("encrypted_content").is_none());
    assert_eq!(done[0]["encrypted_content"], "EqQBCkYI");
    assert_eq!(done[0]["summary"][0]["text"], "Need the tool.");
    assert_eq!(
        *done[1],
        json!({"type": "reasoning", "id": "rs_0a1b1", "summary": [], "encrypted_content": "redacted:EmwK"})
    );
    assert_eq!(last["output"][0], *done[0]);
    assert_eq!(last["output"][1], *done[1]);
    assert_eq!(last["output"][2]["type"], "function_call");
    assert_eq!(last["output"][3]["type"], "reasoning");
    assert_eq!(last["output"][3]["encrypted_content"], "ErcB");
}
