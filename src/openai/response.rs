//! OpenAI response shapes that provider translators build: completions, usage, finish reasons.

use serde::Serialize;

use crate::json;

/// What the client sees in `model`, `id` and `created`, fixed when the request was routed.
#[derive(Debug, Clone, Default)]
pub struct ResponseCtx {
    pub id: String,
    pub created: u64,
    /// The alias the client asked for; responses name it, never the provider's model id.
    pub model: String,
    /// The client asked for a final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// Token counts in OpenAI's terms. Cached and cache-creation tokens are part of `prompt_tokens`;
/// reasoning tokens are part of `completion_tokens`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cache_creation_tokens: u64,
    pub reasoning_tokens: u64,
}

impl Serialize for Usage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct PromptDetails {
            cached_tokens: u64,
        }
        #[derive(Serialize)]
        struct CompletionDetails {
            reasoning_tokens: u64,
        }
        #[derive(Serialize)]
        struct Out {
            prompt_tokens: u64,
            completion_tokens: u64,
            total_tokens: u64,
            prompt_tokens_details: PromptDetails,
            completion_tokens_details: CompletionDetails,
        }
        Out {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self.prompt_tokens.saturating_add(self.completion_tokens),
            prompt_tokens_details: PromptDetails {
                cached_tokens: self.cached_tokens,
            },
            completion_tokens_details: CompletionDetails {
                reasoning_tokens: self.reasoning_tokens,
            },
        }
        .serialize(s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
        }
    }
}

impl Serialize for FinishReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolCallOut {
    pub id: String,
    pub name: String,
    /// The arguments as a JSON document in a string, as OpenAI returns them.
    pub arguments: String,
}

/// One choice of a translated completion.
#[derive(Debug, Clone, Default)]
pub struct Choice {
    pub content: Option<String>,
    pub reasoning: Option<String>,
    pub tool_calls: Vec<ToolCallOut>,
    pub finish_reason: Option<FinishReason>,
}

/// A provider's non-streaming answer in OpenAI terms, before serialization.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    pub choices: Vec<Choice>,
    pub usage: Usage,
}

#[derive(Serialize)]
struct CompletionOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChoiceOut<'a>>,
    usage: &'a Usage,
    system_fingerprint: Option<&'a str>,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: usize,
    message: MessageOut<'a>,
    logprobs: Option<()>,
    finish_reason: Option<FinishReason>,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: Option<&'a str>,
    refusal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallSer<'a>>,
}

#[derive(Serialize)]
pub(crate) struct ToolCallSer<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionSer<'a>,
}

#[derive(Serialize)]
pub(crate) struct FunctionSer<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub arguments: &'a str,
}

impl Completion {
    /// A single-choice completion.
    pub fn single(choice: Choice, usage: Usage) -> Self {
        Completion {
            choices: vec![choice],
            usage,
        }
    }

    /// Serializes as an OpenAI `chat.completion` object.
    pub fn to_json(&self, ctx: &ResponseCtx) -> Vec<u8> {
        let choices = self
            .choices
            .iter()
            .enumerate()
            .map(|(index, c)| ChoiceOut {
                index,
                message: MessageOut {
                    role: "assistant",
                    content: c.content.as_deref(),
                    refusal: None,
                    reasoning_content: c.reasoning.as_deref(),
                    tool_calls: c
                        .tool_calls
                        .iter()
                        .map(|t| ToolCallSer {
                            index: None,
                            id: Some(&t.id),
                            kind: Some("function"),
                            function: FunctionSer {
                                name: Some(&t.name),
                                arguments: &t.arguments,
                            },
                        })
                        .collect(),
                },
                logprobs: None,
                finish_reason: c.finish_reason,
            })
            .collect();
        let text: usize = self
            .choices
            .iter()
            .map(|c| {
                let calls: usize = c.tool_calls.iter().map(|t| t.arguments.len()).sum();
                let own = |s: &Option<String>| s.as_ref().map_or(0, String::len);
                own(&c.content) + own(&c.reasoning) + calls
            })
            .sum();
        json::to_vec_sized(
            &CompletionOut {
                id: &ctx.id,
                object: "chat.completion",
                created: ctx.created,
                model: &ctx.model,
                choices,
                usage: &self.usage,
                system_fingerprint: None,
            },
            text.saturating_add(256),
        )
    }
}

/// A tool-call id for providers that do not give one (Gemini), unique within the response.
pub fn tool_call_id(response_id: &str, index: usize) -> String {
    let tail: String = response_id
        .chars()
        .rev()
        .take(12)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("call_{tail}{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_shape() {
        let ctx = ResponseCtx {
            id: "chatcmpl-1".into(),
            created: 7,
            model: "claude".into(),
            include_usage: false,
        };
        let c = Completion::single(
            Choice {
                content: None,
                tool_calls: vec![ToolCallOut {
                    id: "t1".into(),
                    name: "f".into(),
                    arguments: "{}".into(),
                }],
                finish_reason: Some(FinishReason::ToolCalls),
                ..Default::default()
            },
            Usage {
                prompt_tokens: 10,
                completion_tokens: 5,
                cached_tokens: 3,
                ..Default::default()
            },
        );
        let v: serde_json::Value = serde_json::from_slice(&c.to_json(&ctx)).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "claude");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert!(v["choices"][0]["message"]["content"].is_null());
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
            "f"
        );
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["type"],
            "function"
        );
        assert_eq!(v["usage"]["total_tokens"], 15);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 3);
    }
}
