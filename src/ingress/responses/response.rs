//! A whole answer as a Responses API `response` object.

use serde::Serialize;

use super::request::REDACTED_PREFIX;
use super::{call_id, item_id, status, Echo, UsageOut, ECHO};
use crate::openai::{Completion, ResponseCtx};

/// The `response` object, whole (a completed answer) or as a stream's lifecycle events carry it.
#[derive(Serialize)]
pub(crate) struct ResponseOut<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created_at: u64,
    pub status: &'static str,
    pub error: Option<ErrorOut<'a>>,
    pub incomplete_details: Option<Incomplete>,
    pub model: &'a str,
    pub output: Vec<ItemOut<'a>>,
    pub usage: Option<UsageOut>,
    #[serde(flatten)]
    pub echo: &'a Echo,
}

#[derive(Serialize)]
pub(crate) struct ErrorOut<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

#[derive(Serialize)]
pub(crate) struct Incomplete {
    pub reason: &'static str,
}

/// An output item.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ItemOut<'a> {
    /// `encrypted_content`: the provider's signature of the reasoning, or its redacted reasoning
    /// after [`REDACTED_PREFIX`], for the client to send back (see `request.rs`).
    Reasoning {
        id: &'a str,
        summary: Vec<SummaryOut<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        encrypted_content: Option<&'a str>,
    },
    Message {
        id: &'a str,
        status: &'static str,
        role: &'static str,
        content: Vec<TextPart<'a>>,
    },
    FunctionCall {
        id: &'a str,
        call_id: &'a str,
        name: &'a str,
        arguments: &'a str,
        status: &'static str,
    },
}

#[derive(Serialize)]
pub(crate) struct SummaryOut<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: &'a str,
}

/// An `output_text` content part.
#[derive(Serialize)]
pub(crate) struct TextPart<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: &'a str,
    pub annotations: [(); 0],
    pub logprobs: [(); 0],
}

impl<'a> TextPart<'a> {
    pub fn new(text: &'a str) -> Self {
        TextPart {
            kind: "output_text",
            text,
            annotations: [],
            logprobs: [],
        }
    }
}

impl<'a> SummaryOut<'a> {
    pub fn new(text: &'a str) -> Self {
        SummaryOut {
            kind: "summary_text",
            text,
        }
    }
}

/// Serializes the first choice of `c` as a `response` (the Responses API has no `n`): a
/// `reasoning` item when the provider reasoned, a `message` with the text, then a
/// `function_call` item per tool call. A response cut by its output cap or a content filter is
/// `incomplete`, with the reason.
pub fn response_json(c: &Completion, ctx: &ResponseCtx) -> Vec<u8> {
    let choice = c.choices.first();
    let (rs_id, msg_id) = (item_id(&ctx.id, "rs", 0), item_id(&ctx.id, "msg", 0));
    let calls: Vec<(String, String)> = choice
        .map(|ch| {
            ch.tool_calls
                .iter()
                .enumerate()
                .map(|(i, t)| (item_id(&ctx.id, "fc", i), call_id(&t.id, &ctx.id, i)))
                .collect()
        })
        .unwrap_or_default();
    // Redacted reasoning, one item each after the reasoning item (`rs_..._1` on).
    let redacted: Vec<(String, String)> = choice
        .map(|ch| {
            ch.redacted_reasoning
                .iter()
                .enumerate()
                .map(|(i, data)| {
                    let id = item_id(&ctx.id, "rs", i.saturating_add(1));
                    (id, format!("{REDACTED_PREFIX}{data}"))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut output = Vec::new();
    let mut size = 1024usize;
    if let Some(ch) = choice {
        let signature = ch.reasoning_signature.as_deref().filter(|s| !s.is_empty());
        let reasoning = ch.reasoning.as_deref().filter(|r| !r.is_empty());
        if reasoning.is_some() || signature.is_some() {
            let r = reasoning.unwrap_or_default();
            output.push(ItemOut::Reasoning {
                id: &rs_id,
                summary: vec![SummaryOut::new(r)],
                encrypted_content: signature,
            });
            size = size
                .saturating_add(r.len())
                .saturating_add(signature.map_or(0, str::len));
        }
        for (id, data) in &redacted {
            output.push(ItemOut::Reasoning {
                id,
                summary: Vec::new(),
                encrypted_content: Some(data),
            });
            size = size.saturating_add(data.len());
        }
        match ch.content.as_deref() {
            Some(text) if !text.is_empty() || ch.tool_calls.is_empty() => {
                output.push(ItemOut::Message {
                    id: &msg_id,
                    status: "completed",
                    role: "assistant",
                    content: vec![TextPart::new(text)],
                });
                size = size.saturating_add(text.len());
            }
            _ => {}
        }
        for (t, (id, call)) in ch.tool_calls.iter().zip(&calls) {
            output.push(ItemOut::FunctionCall {
                id,
                call_id: call,
                name: &t.name,
                arguments: &t.arguments,
                status: "completed",
            });
            size = size.saturating_add(t.arguments.len());
        }
    }
    let (status, incomplete) = status(choice.and_then(|ch| ch.finish_reason));
    crate::json::to_vec_sized(
        &ResponseOut {
            id: &ctx.id,
            object: "response",
            created_at: ctx.created,
            status,
            error: None,
            incomplete_details: incomplete.map(|reason| Incomplete { reason }),
            model: &ctx.model,
            output,
            usage: Some(UsageOut::from(&c.usage)),
            echo: &ECHO,
        },
        size,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::{Choice, FinishReason, ToolCallOut, Usage};
    use serde_json::json;

    pub(crate) fn ctx() -> ResponseCtx {
        ResponseCtx {
            id: "resp_abc".into(),
            created: 1_741_476_542,
            model: "claude".into(),
            include_usage: false,
            api: crate::ingress::ClientApi::Responses,
        }
    }

    #[test]
    fn text_reasoning_and_tool_calls() {
        let c = Completion::single(
            Choice {
                content: Some("Checking.".into()),
                reasoning: Some("The user wants weather.".into()),
                reasoning_signature: Some("sig".into()),
                redacted_reasoning: vec!["EmwK".into()],
                tool_calls: vec![
                    ToolCallOut {
                        id: "toolu_1".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Paris"}"#.into(),
                    },
                    ToolCallOut {
                        id: String::new(),
                        name: "noop".into(),
                        arguments: "{}".into(),
                    },
                ],
                finish_reason: Some(FinishReason::ToolCalls),
            },
            Usage {
                prompt_tokens: 100,
                completion_tokens: 20,
                cached_tokens: 60,
                cache_creation_tokens: 30,
                reasoning_tokens: 5,
            },
        );
        let v: serde_json::Value = serde_json::from_slice(&response_json(&c, &ctx())).unwrap();
        assert_eq!(v["id"], "resp_abc");
        assert_eq!(v["object"], "response");
        assert_eq!(v["created_at"], 1_741_476_542);
        assert_eq!(v["status"], "completed");
        assert_eq!(v["model"], "claude");
        assert!(v["error"].is_null() && v["incomplete_details"].is_null());
        assert_eq!(
            v["output"],
            json!([
                {"type": "reasoning", "id": "rs_abc0", "encrypted_content": "sig",
                 "summary": [{"type": "summary_text", "text": "The user wants weather."}]},
                {"type": "reasoning", "id": "rs_abc1", "summary": [],
                 "encrypted_content": "redacted:EmwK"},
                {"type": "message", "id": "msg_abc0", "status": "completed", "role": "assistant",
                 "content": [{"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []}]},
                {"type": "function_call", "id": "fc_abc0", "call_id": "toolu_1", "name": "get_weather",
                 "arguments": "{\"city\":\"Paris\"}", "status": "completed"},
                {"type": "function_call", "id": "fc_abc1", "call_id": "call_abc1", "name": "noop",
                 "arguments": "{}", "status": "completed"},
            ])
        );
        assert_eq!(
            v["usage"],
            json!({"input_tokens": 100, "input_tokens_details": {"cached_tokens": 60},
                   "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 5},
                   "total_tokens": 120})
        );
        // What the API echoes of the request, at its defaults.
        assert_eq!(v["tools"], json!([]));
        assert_eq!(v["tool_choice"], "auto");
        assert_eq!(v["text"], json!({"format": {"type": "text"}}));
    }

    #[test]
    fn a_cut_answer_is_incomplete() {
        let c = Completion::single(
            Choice {
                content: Some("Once upon".into()),
                finish_reason: Some(FinishReason::Length),
                ..Default::default()
            },
            Usage::default(),
        );
        let v: serde_json::Value = serde_json::from_slice(&response_json(&c, &ctx())).unwrap();
        assert_eq!(v["status"], "incomplete");
        assert_eq!(
            v["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
        assert_eq!(v["output"][0]["content"][0]["text"], "Once upon");
        let v: serde_json::Value =
            serde_json::from_slice(&response_json(&Completion::default(), &ctx())).unwrap();
        assert_eq!(v["output"], json!([]));
        assert_eq!(v["status"], "completed");
    }
}
