//! The one encoder of OpenAI `chat.completion.chunk` server-sent events that every provider's
//! stream translator writes through.

use serde::Serialize;

use super::response::{FinishReason, FunctionSer, ResponseCtx, ToolCallSer, Usage};
use crate::error::ApiError;
use crate::ingress::ChatSink;
use crate::json;

/// Writes OpenAI SSE chunks for one response; remembers what was already sent so the stream is
/// well-formed whatever the provider does (role first, one usage chunk, one `[DONE]`).
#[derive(Debug)]
pub struct ChunkWriter {
    ctx: ResponseCtx,
    role_sent: Vec<bool>,
    finished: Vec<bool>,
    usage_sent: bool,
    done: bool,
    /// Ended by `[DONE]` (the provider's stream completed), not by an error.
    completed: bool,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: Option<&'a str>,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<&'a Usage>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: usize,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<FinishReason>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallSer<'a>; 1]>,
}

impl ChunkWriter {
    pub fn new(ctx: ResponseCtx) -> Self {
        ChunkWriter {
            ctx,
            role_sent: Vec::new(),
            finished: Vec::new(),
            usage_sent: false,
            done: false,
            completed: false,
        }
    }

    fn flag(v: &mut Vec<bool>, index: usize) -> bool {
        if v.len() <= index {
            v.resize(index.saturating_add(1), false);
        }
        match v.get_mut(index) {
            Some(f) => std::mem::replace(f, true),
            None => true,
        }
    }

    fn emit(&self, out: &mut Vec<u8>, choices: Vec<ChunkChoice<'_>>, usage: Option<&Usage>) {
        out.extend_from_slice(b"data: ");
        json::write(
            out,
            &Chunk {
                id: &self.ctx.id,
                object: "chat.completion.chunk",
                created: self.ctx.created,
                model: &self.ctx.model,
                system_fingerprint: None,
                choices,
                usage,
            },
        );
        out.extend_from_slice(b"\n\n");
    }

    fn delta(&mut self, out: &mut Vec<u8>, index: usize, mut delta: Delta<'_>) {
        if self.done {
            return;
        }
        if !Self::flag(&mut self.role_sent, index) {
            delta.role = Some("assistant");
        }
        self.emit(
            out,
            vec![ChunkChoice {
                index,
                delta,
                logprobs: None,
                finish_reason: None,
            }],
            None,
        );
    }
}

impl ChatSink for ChunkWriter {
    fn ctx(&self) -> &ResponseCtx {
        &self.ctx
    }

    /// True once the stream ended normally with `[DONE]`.
    fn completed(&self) -> bool {
        self.completed
    }

    /// True once `[DONE]` or an error event ended the stream.
    fn is_done(&self) -> bool {
        self.done
    }

    /// The opening chunk (`role: assistant`, empty content), as OpenAI sends it first.
    fn start(&mut self, out: &mut Vec<u8>, index: usize) {
        if self.role_sent.get(index).copied().unwrap_or(false) {
            return;
        }
        self.delta(
            out,
            index,
            Delta {
                content: Some(""),
                ..Default::default()
            },
        );
    }

    fn text(&mut self, out: &mut Vec<u8>, index: usize, text: &str) {
        if text.is_empty() {
            return;
        }
        self.delta(
            out,
            index,
            Delta {
                content: Some(text),
                ..Default::default()
            },
        );
    }

    fn reasoning(&mut self, out: &mut Vec<u8>, index: usize, text: &str) {
        if text.is_empty() {
            return;
        }
        self.delta(
            out,
            index,
            Delta {
                reasoning_content: Some(text),
                ..Default::default()
            },
        );
    }

    /// The first chunk of a tool call: its id and name, arguments still empty.
    fn tool_call_start(
        &mut self,
        out: &mut Vec<u8>,
        index: usize,
        tool_index: usize,
        id: &str,
        name: &str,
    ) {
        let call = ToolCallSer {
            index: Some(tool_index),
            id: Some(id),
            kind: Some("function"),
            function: FunctionSer {
                name: Some(name),
                arguments: "",
            },
        };
        self.delta(
            out,
            index,
            Delta {
                tool_calls: Some([call]),
                ..Default::default()
            },
        );
    }

    /// A fragment of a tool call's arguments.
    fn tool_call_args(
        &mut self,
        out: &mut Vec<u8>,
        index: usize,
        tool_index: usize,
        arguments: &str,
    ) {
        if arguments.is_empty() {
            return;
        }
        let call = ToolCallSer {
            index: Some(tool_index),
            id: None,
            kind: None,
            function: FunctionSer {
                name: None,
                arguments,
            },
        };
        self.delta(
            out,
            index,
            Delta {
                tool_calls: Some([call]),
                ..Default::default()
            },
        );
    }

    /// The chunk carrying `finish_reason`; sent once per choice.
    fn finish(&mut self, out: &mut Vec<u8>, index: usize, reason: FinishReason) {
        if self.done || Self::flag(&mut self.finished, index) {
            return;
        }
        Self::flag(&mut self.role_sent, index);
        self.emit(
            out,
            vec![ChunkChoice {
                index,
                delta: Delta::default(),
                logprobs: None,
                finish_reason: Some(reason),
            }],
            None,
        );
    }

    fn has_finished(&self, index: usize) -> bool {
        self.finished.get(index).copied().unwrap_or(false)
    }

    /// The final usage chunk (`choices: []`), only when the client asked for it.
    fn usage(&mut self, out: &mut Vec<u8>, usage: &Usage) {
        if self.done || self.usage_sent || !self.ctx.include_usage {
            return;
        }
        self.usage_sent = true;
        self.emit(out, Vec::new(), Some(usage));
    }

    /// `data: [DONE]`, once.
    fn done(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        self.completed = true;
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    /// An error in the middle of a stream: one `data: {"error":...}` event, then nothing more.
    fn error(&mut self, out: &mut Vec<u8>, err: &ApiError) {
        if self.done {
            return;
        }
        self.done = true;
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&err.to_json());
        out.extend_from_slice(b"\n\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(out: &[u8]) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(out)
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn well_formed_stream() {
        let mut w = ChunkWriter::new(ResponseCtx {
            id: "c1".into(),
            created: 1,
            model: "m".into(),
            include_usage: true,
            api: Default::default(),
        });
        let mut out = Vec::new();
        w.text(&mut out, 0, "Hel");
        w.text(&mut out, 0, "lo");
        w.tool_call_start(&mut out, 0, 0, "call_1", "f");
        w.tool_call_args(&mut out, 0, 0, "{\"a\":");
        w.finish(&mut out, 0, FinishReason::ToolCalls);
        w.finish(&mut out, 0, FinishReason::Stop);
        w.usage(
            &mut out,
            &Usage {
                prompt_tokens: 3,
                completion_tokens: 2,
                ..Default::default()
            },
        );
        w.done(&mut out);
        w.done(&mut out);
        let ev = events(&out);
        assert_eq!(ev.len(), 6);
        assert_eq!(ev[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(ev[0]["choices"][0]["delta"]["content"], "Hel");
        assert!(ev[1]["choices"][0]["delta"].get("role").is_none());
        assert_eq!(
            ev[2]["choices"][0]["delta"]["tool_calls"][0]["id"],
            "call_1"
        );
        assert_eq!(
            ev[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"a\":"
        );
        assert_eq!(ev[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(ev[5]["choices"].as_array().unwrap().len(), 0);
        assert_eq!(ev[5]["usage"]["total_tokens"], 5);
        assert_eq!(String::from_utf8_lossy(&out).matches("[DONE]").count(), 1);
    }

    #[test]
    fn no_usage_unless_asked() {
        let mut w = ChunkWriter::new(ResponseCtx::default());
        let mut out = Vec::new();
        w.usage(&mut out, &Usage::default());
        assert!(out.is_empty());
    }
}
