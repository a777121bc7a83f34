//! A whole answer as a Messages API `message` object.

use serde::Serialize;
use serde_json::value::RawValue;

use super::{stop_reason, UsageOut};
use crate::openai::{Completion, ResponseCtx};

#[derive(Serialize)]
struct MessageOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<BlockOut<'a>>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<()>,
    usage: UsageOut,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockOut<'a> {
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    RedactedThinking {
        data: &'a str,
    },
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Input<'a>,
    },
}

/// A tool call's input: its arguments' JSON object, or `{}` when they are not one.
#[derive(Serialize)]
#[serde(untagged)]
enum Input<'a> {
    Raw(&'a RawValue),
    Empty(serde_json::Map<String, serde_json::Value>),
}

/// Serializes the first choice of `c` as an Anthropic `message` (the Messages API has no `n`):
/// reasoning first (with its signature), then text, then tool calls as `tool_use` blocks whose
/// `input` is the arguments' JSON object (`{}` when the provider's arguments are not one).
pub fn message_json(c: &Completion, ctx: &ResponseCtx) -> Vec<u8> {
    let choice = c.choices.first();
    let args: Vec<Option<Box<RawValue>>> = choice
        .map(|ch| {
            ch.tool_calls
                .iter()
                .map(|t| {
                    serde_json::from_str::<Box<RawValue>>(&t.arguments)
                        .ok()
                        .filter(|r| r.get().trim_start().starts_with('{'))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut content = Vec::new();
    let mut size = 256usize;
    if let Some(ch) = choice {
        if let Some(r) = ch.reasoning.as_deref() {
            content.push(BlockOut::Thinking {
                thinking: r,
                signature: ch.reasoning_signature.as_deref().unwrap_or(""),
            });
            size = size.saturating_add(r.len());
        }
        for data in &ch.redacted_reasoning {
            content.push(BlockOut::RedactedThinking { data });
            size = size.saturating_add(data.len());
        }
        match ch.content.as_deref() {
            Some(text) if !text.is_empty() || ch.tool_calls.is_empty() => {
                content.push(BlockOut::Text { text });
                size = size.saturating_add(text.len());
            }
            _ => {}
        }
        for (t, raw) in ch.tool_calls.iter().zip(&args) {
            content.push(BlockOut::ToolUse {
                id: &t.id,
                name: &t.name,
                input: raw
                    .as_deref()
                    .map_or_else(|| Input::Empty(serde_json::Map::new()), Input::Raw),
            });
            size = size.saturating_add(t.arguments.len());
        }
    }
    crate::json::to_vec_sized(
        &MessageOut {
            id: &ctx.id,
            kind: "message",
            role: "assistant",
            model: &ctx.model,
            content,
            stop_reason: choice.and_then(|ch| ch.finish_reason).map(stop_reason),
            stop_sequence: None,
            usage: UsageOut::from(&c.usage),
        },
        size,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::{Choice, FinishReason, ToolCallOut, Usage};
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
    fn tool_use_with_thinking_and_cache_usage() {
        let c = Completion::single(
            Choice {
                content: Some("Let me check.".into()),
                reasoning: Some("The user wants weather.".into()),
                reasoning_signature: Some("EqQBCkYIAxgC".into()),
                tool_calls: vec![
                    ToolCallOut {
                        id: "toolu_1".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city": "Paris"}"#.into(),
                    },
                    ToolCallOut {
                        id: "toolu_2".into(),
                        name: "noop".into(),
                        arguments: "not json".into(),
                    },
                ],
                finish_reason: Some(FinishReason::ToolCalls),
                ..Default::default()
            },
            Usage {
                prompt_tokens: 100,
                completion_tokens: 20,
                cached_tokens: 60,
                cache_creation_tokens: 30,
                reasoning_tokens: 5,
            },
        );
        let v: serde_json::Value = serde_json::from_slice(&message_json(&c, &ctx())).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "msg_01", "type": "message", "role": "assistant", "model": "claude",
                "content": [
                    {"type": "thinking", "thinking": "The user wants weather.", "signature": "EqQBCkYIAxgC"},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "noop", "input": {}},
                ],
                "stop_reason": "tool_use", "stop_sequence": null,
                "usage": {"input_tokens": 10, "cache_creation_input_tokens": 30,
                          "cache_read_input_tokens": 60, "output_tokens": 20},
            })
        );
    }

    #[test]
    fn plain_and_empty_answers() {
        let c = Completion::single(
            Choice {
                content: Some(String::new()),
                finish_reason: Some(FinishReason::Length),
                ..Default::default()
            },
            Usage::default(),
        );
        let v: serde_json::Value = serde_json::from_slice(&message_json(&c, &ctx())).unwrap();
        assert_eq!(v["content"], json!([{"type": "text", "text": ""}]));
        assert_eq!(v["stop_reason"], "max_tokens");
        let v: serde_json::Value =
            serde_json::from_slice(&message_json(&Completion::default(), &ctx())).unwrap();
        assert_eq!(v["content"], json!([]));
        assert!(v["stop_reason"].is_null());
    }
}
