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
    /// The API the client speaks: what answers are rendered in.
    pub api: crate::ingress::ClientApi,
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

/// A token count as a provider reported it. Anything but a non-negative integer (a negative or
/// fractional number, a string, a number past 2^53, an object) makes the usage it belongs to
/// unusable: such a response is charged its reservation, never a made-up or overflowing cost.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Missing or `null`.
    #[default]
    Absent,
    Is(u64),
    Bad,
}

/// The largest count read exactly: beyond it a JSON number is no longer an exact integer.
const MAX_COUNT: u64 = 1 << 53;

impl Count {
    pub fn is_bad(self) -> bool {
        self == Count::Bad
    }

    /// The count, 0 when absent (or bad: callers check [`Count::is_bad`] first).
    pub fn or_zero(self) -> u64 {
        match self {
            Count::Is(n) => n,
            _ => 0,
        }
    }

    /// A JSON number read as a float: a count only if it is a whole number within range.
    pub fn from_f64(v: f64) -> Count {
        if v.fract() == 0.0 && (0.0..=MAX_COUNT as f64).contains(&v) {
            Count::Is(v as u64)
        } else {
            Count::Bad
        }
    }

    /// A later report of the same count replaces an earlier one, unless it says nothing.
    pub fn or(self, earlier: Count) -> Count {
        match self {
            Count::Absent => earlier,
            later => later,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a token count")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                Ok(if v <= MAX_COUNT {
                    Count::Is(v)
                } else {
                    Count::Bad
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Ok(Count::Bad),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Count, E> {
                // 12.0 is a count (some servers write floats); 1.5, -1.0, 1e30 and NaN are not.
                Ok(
                    if v.fract() == 0.0 && (0.0..=MAX_COUNT as f64).contains(&v) {
                        Count::Is(v as u64)
                    } else {
                        Count::Bad
                    },
                )
            }
            fn visit_unit<E: de::Error>(self) -> Result<Count, E> {
                Ok(Count::Absent)
            }
            fn visit_none<E: de::Error>(self) -> Result<Count, E> {
                Ok(Count::Absent)
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Count, D::Error> {
                d.deserialize_any(V)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Count, E> {
                Ok(Count::Bad)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Count, E> {
                Ok(Count::Bad)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Count::Bad)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Count, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Count::Bad)
            }
        }
        d.deserialize_any(V)
    }
}

/// A provider's usage object, read on its own so that a malformed one spoils only the usage, not
/// the answer: `Ok(None)` when absent or `null`, `Err(())` when it is not the object expected.
#[allow(clippy::result_unit_err)]
pub fn usage_object<'a, T: serde::Deserialize<'a>>(
    raw: Option<&'a serde_json::value::RawValue>,
) -> Result<Option<T>, ()> {
    match raw {
        None => Ok(None),
        Some(raw) => serde_json::from_str::<Option<T>>(raw.get()).map_err(|_| ()),
    }
}

/// Builds a [`Usage`] from reported counts: `None` when any count is bad, or none was reported.
#[derive(Default)]
pub struct UsageCheck {
    bad: bool,
    any: bool,
}

impl UsageCheck {
    pub fn take(&mut self, c: Count) -> u64 {
        self.bad |= c.is_bad();
        self.any |= matches!(c, Count::Is(_));
        c.or_zero()
    }

    pub fn finish(self, usage: Usage) -> Option<Usage> {
        self.result(usage).ok().flatten()
    }

    /// `Err` when a count was bad, `Ok(None)` when none was reported (a usage object holding
    /// only other fields, as Gemini's first chunks do), else the usage.
    #[allow(clippy::result_unit_err)]
    pub fn result(self, usage: Usage) -> Result<Option<Usage>, ()> {
        match (self.bad, self.any) {
            (true, _) => Err(()),
            (false, false) => Ok(None),
            (false, true) => Ok(Some(usage)),
        }
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
    /// The signature of the reasoning, where the provider signs it (Anthropic, Claude on Bedrock):
    /// a client API that can carry it back (Messages) returns it; chat completions drop it.
    pub reasoning_signature: Option<String>,
    /// Encrypted reasoning blocks (Anthropic's `redacted_thinking`), returned as they came.
    pub redacted_reasoning: Vec<String>,
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

    /// Serializes in the client's API ([`ResponseCtx::api`]).
    pub fn render(&self, ctx: &ResponseCtx) -> Vec<u8> {
        match ctx.api {
            crate::ingress::ClientApi::Chat => self.to_json(ctx),
            crate::ingress::ClientApi::Messages => {
                crate::ingress::anthropic::message_json(self, ctx)
            }
            crate::ingress::ClientApi::Responses => {
                crate::ingress::responses::response_json(self, ctx)
            }
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
    fn counts_are_whole_non_negative_numbers() {
        let c = |s: &str| serde_json::from_str::<Count>(s).unwrap();
        assert_eq!(c("12"), Count::Is(12));
        assert_eq!(c("12.0"), Count::Is(12));
        assert_eq!(c("0"), Count::Is(0));
        assert_eq!(c("null"), Count::Absent);
        for bad in [
            "-1",
            "1.5",
            "1e30",
            "-0.5",
            "\"12\"",
            "[1]",
            "{\"a\":1}",
            "true",
            "9007199254740993",
            "18446744073709551615",
            "9223372036854775808",
        ] {
            assert_eq!(c(bad), Count::Bad, "{bad}");
        }
        #[derive(serde::Deserialize)]
        struct U {
            #[serde(default)]
            a: Count,
        }
        assert_eq!(serde_json::from_str::<U>("{}").unwrap().a, Count::Absent);
        let mut check = UsageCheck::default();
        check.take(Count::Absent);
        assert_eq!(check.finish(Usage::default()), None, "nothing reported");
        let mut check = UsageCheck::default();
        check.take(Count::Is(3));
        check.take(Count::Bad);
        assert_eq!(
            check.finish(Usage::default()),
            None,
            "one bad count spoils it"
        );
    }

    #[test]
    fn completion_shape() {
        let ctx = ResponseCtx {
            id: "chatcmpl-1".into(),
            created: 7,
            model: "claude".into(),
            include_usage: false,
            api: Default::default(),
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
