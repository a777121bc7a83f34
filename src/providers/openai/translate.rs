//! OpenAI-shaped answers (OpenAI, Azure OpenAI and the OpenAI-compatible family) for a client
//! that speaks another API: read into a [`Completion`], or event by event into the client API's
//! [`ChatSink`]. A chat completions client never comes here: its answers pass through.

use serde::Deserialize;

use super::{parse_usage, Translated};
use crate::error::ApiError;
use crate::ingress::ChatSink;
use crate::json::{self, Text};
use crate::openai::{Choice, Completion, FinishReason, ResponseCtx, ToolCallOut, Usage};
use crate::providers::StreamTranslator;
use crate::stream::sse::SseDecoder;

/// The most tool calls per choice whose start is remembered (a start repeated past it is sent
/// again; arguments are never lost).
const MAX_TOOL_CALLS: usize = 256;

fn finish_reason(s: &str) -> FinishReason {
    match s {
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

#[derive(Deserialize)]
struct ChoiceIn<'a> {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default, borrow)]
    message: Option<MessageIn<'a>>,
    #[serde(default, borrow)]
    delta: Option<MessageIn<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct MessageIn<'a> {
    #[serde(default, borrow)]
    content: Option<Text<'a>>,
    /// Reasoning text: `reasoning_content` (DeepSeek, vLLM, LiteLLM) or `reasoning` (OpenRouter).
    #[serde(default, borrow)]
    reasoning_content: Option<Text<'a>>,
    #[serde(default, borrow)]
    reasoning: Option<Text<'a>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<CallIn<'a>>>,
}

#[derive(Deserialize)]
struct CallIn<'a> {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, borrow)]
    function: Option<FunctionIn<'a>>,
}

#[derive(Deserialize)]
struct FunctionIn<'a> {
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    arguments: Option<Text<'a>>,
}

impl<'a> MessageIn<'a> {
    fn reasoning(&self) -> Option<&Text<'a>> {
        self.reasoning_content.as_ref().or(self.reasoning.as_ref())
    }
}

/// A whole chat completion read into a [`Completion`] and rendered in the client's API.
pub fn response(provider: &str, body: &[u8], ctx: &ResponseCtx) -> Result<Translated, ApiError> {
    let unreadable = || {
        ApiError::bad_gateway(format!(
            "{provider} returned a response the gateway could not read"
        ))
    };
    let fields = json::split_object(body).map_err(|_| unreadable())?;
    let raw = json::get(&fields, "choices").ok_or_else(|| {
        ApiError::bad_gateway(format!(
            "{provider} returned a JSON object without `choices`: no answer"
        ))
    })?;
    let choices: Vec<ChoiceIn> = serde_json::from_str(raw.get()).map_err(|_| unreadable())?;
    let usage = json::get(&fields, "usage")
        .map_or(Ok(None), parse_usage)
        .ok()
        .flatten();
    let mut completion = Completion {
        choices: Vec::with_capacity(choices.len()),
        usage: usage.unwrap_or_default(),
    };
    for c in choices {
        let m = c.message.or(c.delta);
        let mut choice = Choice {
            finish_reason: Some(
                c.finish_reason
                    .as_deref()
                    .map_or(FinishReason::Stop, finish_reason),
            ),
            ..Default::default()
        };
        if let Some(m) = m {
            choice.content = m.content.as_ref().map(|t| t.to_string());
            choice.reasoning = m.reasoning().map(|t| t.to_string());
            for call in m.tool_calls.unwrap_or_default() {
                let f = call.function.unwrap_or(FunctionIn {
                    name: None,
                    arguments: None,
                });
                choice.tool_calls.push(ToolCallOut {
                    id: call.id.map(|t| t.to_string()).unwrap_or_default(),
                    name: f.name.map(|t| t.to_string()).unwrap_or_default(),
                    arguments: f.arguments.map(|t| t.to_string()).unwrap_or_default(),
                });
            }
        }
        completion.choices.push(choice);
    }
    Ok(Translated {
        body: completion.render(ctx),
        usage,
    })
}

/// An OpenAI-shaped SSE stream read chunk by chunk into the client API's sink.
pub struct ToSink {
    sse: SseDecoder,
    state: State,
}

struct State {
    sink: Box<dyn ChatSink>,
    error: fn(&[u8]) -> ApiError,
    usage: Option<Usage>,
    usage_bad: bool,
    usage_final: bool,
    saw_finish: bool,
    /// Per choice: the tool calls (by index) whose start was sent.
    started: Vec<Vec<usize>>,
}

impl ToSink {
    /// `error` reads the provider's in-stream error events.
    pub fn new(ctx: ResponseCtx, error: fn(&[u8]) -> ApiError) -> Self {
        ToSink {
            sse: SseDecoder::default(),
            state: State {
                sink: crate::ingress::sink(ctx),
                error,
                usage: None,
                usage_bad: false,
                usage_final: false,
                saw_finish: false,
                started: Vec::new(),
            },
        }
    }
}

impl State {
    fn on_event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.sink.is_done() || data.is_empty() {
            return;
        }
        if data == b"[DONE]" {
            self.close(out);
            return;
        }
        let Ok(fields) = json::split_object(data) else {
            self.sink.error(
                out,
                &ApiError::bad_gateway("the provider sent a malformed stream event"),
            );
            return;
        };
        if json::get(&fields, "error").is_some_and(|e| !json::is_null(e))
            && json::get(&fields, "choices").is_none()
        {
            let e = (self.error)(data);
            self.sink.error(out, &e);
            return;
        }
        if let Some(u) = json::get(&fields, "usage").filter(|u| !json::is_null(u)) {
            match parse_usage(u) {
                Ok(Some(u)) => self.usage = Some(u),
                Ok(None) => {}
                Err(()) => self.usage_bad = true,
            }
            self.usage_final |= json::get(&fields, "choices").is_none_or(|c| {
                let t = c.get().trim();
                t == "[]" || t.starts_with('[') && t.get(1..).is_some_and(|r| r.trim() == "]")
            });
        }
        let Some(raw) = json::get(&fields, "choices") else {
            return;
        };
        let Ok(choices) = serde_json::from_str::<Vec<ChoiceIn>>(raw.get()) else {
            self.sink.error(
                out,
                &ApiError::bad_gateway(
                    "the provider sent a stream event the gateway could not read",
                ),
            );
            return;
        };
        for c in choices {
            self.on_choice(c, out);
        }
    }

    fn on_choice(&mut self, c: ChoiceIn<'_>, out: &mut Vec<u8>) {
        let i = c.index.unwrap_or(0);
        if let Some(d) = c.delta.or(c.message) {
            if let Some(r) = d.reasoning() {
                self.sink.reasoning(out, i, r);
            }
            if let Some(t) = &d.content {
                self.sink.text(out, i, t);
            }
            for (n, call) in d.tool_calls.unwrap_or_default().into_iter().enumerate() {
                let t = call.index.unwrap_or(n);
                let (name, args) = match call.function {
                    Some(f) => (f.name, f.arguments),
                    None => (None, None),
                };
                if call.id.is_some() || name.is_some() {
                    if self.started.len() <= i && i < MAX_TOOL_CALLS {
                        self.started.resize_with(i.saturating_add(1), Vec::new);
                    }
                    let seen = self.started.get(i).is_some_and(|s| s.contains(&t));
                    if !seen {
                        self.sink.tool_call_start(
                            out,
                            i,
                            t,
                            call.id.as_deref().unwrap_or(""),
                            name.as_deref().unwrap_or(""),
                        );
                        if let Some(s) =
                            self.started.get_mut(i).filter(|s| s.len() < MAX_TOOL_CALLS)
                        {
                            s.push(t);
                        }
                    }
                }
                if let Some(a) = &args {
                    self.sink.tool_call_args(out, i, t, a);
                }
            }
        }
        if let Some(r) = c.finish_reason.as_deref() {
            self.saw_finish = true;
            self.sink.finish(out, i, finish_reason(r));
        }
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some(u) = self.usage.filter(|_| !self.usage_bad) {
            self.sink.usage(out, &u);
        }
        self.sink.done(out);
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        if self.sink.is_done() {
            return;
        }
        if self.saw_finish || self.usage_final {
            self.close(out);
        } else {
            self.sink.error(
                out,
                &ApiError::bad_gateway(
                    "the provider's stream ended before the answer was complete",
                ),
            );
        }
    }
}

impl StreamTranslator for ToSink {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let ToSink { sse, state } = self;
        let result = sse.feed(chunk, |ev| state.on_event(ev.data, out));
        if result.is_err() && !state.sink.is_done() {
            state.sink.error(
                out,
                &ApiError::bad_gateway(
                    "the provider sent a stream event larger than the gateway accepts",
                ),
            );
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let ToSink { sse, state } = self;
        sse.finish(|ev| state.on_event(ev.data, out));
        state.end(out);
    }

    fn final_usage(&self) -> Option<Usage> {
        let s = &self.state;
        if s.usage_bad || !(s.sink.completed() || s.usage_final) {
            return None;
        }
        s.usage
    }

    fn completed(&self) -> bool {
        self.state.sink.completed()
    }
}

#[cfg(test)]
mod tests;
