//! A stream as the Messages API sends it: `message_start`, a `ping`, content blocks
//! (`content_block_start`, `content_block_delta` with `text_delta`, `thinking_delta`,
//! `signature_delta` or `input_json_delta`, `content_block_stop`), then `message_delta` with
//! `stop_reason` and usage, and `message_stop`; or an `error` event.
//!
//! Providers report content as it comes; Anthropic's blocks do not interleave, so a change of kind
//! (text after thinking, a new tool call) closes the open block and opens the next. A fragment of
//! a tool call's arguments that comes after its block was closed (OpenAI-compatible servers may
//! interleave parallel calls) is sent with that block's index, which the SDKs accumulate by.

use serde::Serialize;

use super::{stop_reason, UsageOut};
use crate::error::ApiError;
use crate::ingress::ChatSink;
use crate::openai::{FinishReason, ResponseCtx, Usage};

/// The most tool-call blocks whose indexes are remembered for late fragments.
const MAX_TOOL_BLOCKS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Thinking,
    Redacted,
    Tool(usize),
}

/// Writes one response's Messages API events. Only choice 0 exists in this API.
#[derive(Debug)]
pub struct EventWriter {
    ctx: ResponseCtx,
    started: bool,
    /// The open block: its kind and index.
    open: Option<(Kind, usize)>,
    next_index: usize,
    /// Tool calls' block indexes, by the provider's tool index.
    tool_blocks: Vec<(usize, usize)>,
    stop: Option<FinishReason>,
    usage: Option<Usage>,
    done: bool,
    completed: bool,
}

#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: StartMessage<'a>,
}

#[derive(Serialize)]
struct StartMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: [(); 0],
    stop_reason: Option<()>,
    stop_sequence: Option<()>,
    usage: UsageOut,
}

#[derive(Serialize)]
struct BlockStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
    content_block: StartBlock<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock<'a> {
    Text {
        text: &'static str,
    },
    Thinking {
        thinking: &'static str,
        signature: &'static str,
    },
    RedactedThinking {
        data: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Empty,
    },
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct BlockDelta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
    delta: Delta<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type")]
enum Delta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
}

#[derive(Serialize)]
struct BlockStop {
    #[serde(rename = "type")]
    kind: &'static str,
    index: usize,
}

#[derive(Serialize)]
struct MessageDelta {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopDelta,
    usage: UsageOut,
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

#[derive(Serialize)]
struct Simple {
    #[serde(rename = "type")]
    kind: &'static str,
}

fn event<T: Serialize>(out: &mut Vec<u8>, name: &str, data: &T) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    crate::json::write(out, data);
    out.extend_from_slice(b"\n\n");
}

impl EventWriter {
    pub fn new(ctx: ResponseCtx) -> Self {
        EventWriter {
            ctx,
            started: false,
            open: None,
            next_index: 0,
            tool_blocks: Vec::new(),
            stop: None,
            usage: None,
            done: false,
            completed: false,
        }
    }

    /// `message_start` and a `ping`, once, before anything else.
    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        event(
            out,
            "message_start",
            &MessageStart {
                kind: "message_start",
                message: StartMessage {
                    id: &self.ctx.id,
                    kind: "message",
                    role: "assistant",
                    model: &self.ctx.model,
                    content: [],
                    stop_reason: None,
                    stop_sequence: None,
                    usage: UsageOut::default(),
                },
            },
        );
        event(out, "ping", &Simple { kind: "ping" });
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((_, index)) = self.open.take() {
            event(
                out,
                "content_block_stop",
                &BlockStop {
                    kind: "content_block_stop",
                    index,
                },
            );
        }
    }

    /// Opens a block of `kind` unless it is the open one; returns its index.
    fn open(&mut self, out: &mut Vec<u8>, kind: Kind, block: StartBlock<'_>) -> usize {
        if let Some((k, index)) = self.open {
            if k == kind {
                return index;
            }
        }
        self.ensure_started(out);
        self.close(out);
        let index = self.next_index;
        self.next_index = self.next_index.saturating_add(1);
        event(
            out,
            "content_block_start",
            &BlockStart {
                kind: "content_block_start",
                index,
                content_block: block,
            },
        );
        self.open = Some((kind, index));
        index
    }

    fn delta(&mut self, out: &mut Vec<u8>, index: usize, delta: Delta<'_>) {
        event(
            out,
            "content_block_delta",
            &BlockDelta {
                kind: "content_block_delta",
                index,
                delta,
            },
        );
    }

    fn live(&self, index: usize) -> bool {
        index == 0 && !self.done
    }
}

impl ChatSink for EventWriter {
    fn ctx(&self) -> &ResponseCtx {
        &self.ctx
    }

    fn completed(&self) -> bool {
        self.completed
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn start(&mut self, out: &mut Vec<u8>, index: usize) {
        if self.live(index) {
            self.ensure_started(out);
        }
    }

    fn text(&mut self, out: &mut Vec<u8>, index: usize, text: &str) {
        if !self.live(index) || text.is_empty() {
            return;
        }
        let at = self.open(out, Kind::Text, StartBlock::Text { text: "" });
        self.delta(out, at, Delta::Text { text });
    }

    fn reasoning(&mut self, out: &mut Vec<u8>, index: usize, text: &str) {
        if !self.live(index) || text.is_empty() {
            return;
        }
        let at = self.open(
            out,
            Kind::Thinking,
            StartBlock::Thinking {
                thinking: "",
                signature: "",
            },
        );
        self.delta(out, at, Delta::Thinking { thinking: text });
    }

    fn reasoning_signature(&mut self, out: &mut Vec<u8>, index: usize, signature: &str) {
        if !self.live(index) || signature.is_empty() {
            return;
        }
        let at = self.open(
            out,
            Kind::Thinking,
            StartBlock::Thinking {
                thinking: "",
                signature: "",
            },
        );
        self.delta(out, at, Delta::Signature { signature });
        // A signature ends its block of reasoning: what follows is another block.
        self.close(out);
    }

    fn redacted_reasoning(&mut self, out: &mut Vec<u8>, index: usize, data: &str) {
        if !self.live(index) {
            return;
        }
        // A block of its own, whole in its start.
        self.open(out, Kind::Redacted, StartBlock::RedactedThinking { data });
        self.close(out);
    }

    fn tool_call_start(
        &mut self,
        out: &mut Vec<u8>,
        index: usize,
        tool_index: usize,
        id: &str,
        name: &str,
    ) {
        if !self.live(index) {
            return;
        }
        // A second start of the same call (a provider repeating itself) opens nothing new.
        if matches!(self.open, Some((Kind::Tool(t), _)) if t == tool_index) {
            return;
        }
        let at = self.open(
            out,
            Kind::Tool(tool_index),
            StartBlock::ToolUse {
                id,
                name,
                input: Empty {},
            },
        );
        if self.tool_blocks.len() < MAX_TOOL_BLOCKS {
            self.tool_blocks.push((tool_index, at));
        }
    }

    fn tool_call_args(&mut self, out: &mut Vec<u8>, index: usize, tool_index: usize, args: &str) {
        if !self.live(index) || args.is_empty() {
            return;
        }
        let at = match self.open {
            Some((Kind::Tool(t), at)) if t == tool_index => Some(at),
            _ => self
                .tool_blocks
                .iter()
                .rev()
                .find(|(t, _)| *t == tool_index)
                .map(|&(_, at)| at),
        };
        // Arguments of a call that never started have no block to go to.
        if let Some(at) = at {
            self.delta(out, at, Delta::InputJson { partial_json: args });
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>, index: usize, reason: FinishReason) {
        if !self.live(index) || self.stop.is_some() {
            return;
        }
        self.ensure_started(out);
        self.close(out);
        self.stop = Some(reason);
    }

    fn has_finished(&self, index: usize) -> bool {
        index == 0 && self.stop.is_some()
    }

    fn usage(&mut self, _out: &mut Vec<u8>, usage: &Usage) {
        if !self.done {
            self.usage = Some(*usage);
        }
    }

    fn done(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.ensure_started(out);
        self.close(out);
        let reason = self.stop.unwrap_or(if self.tool_blocks.is_empty() {
            FinishReason::Stop
        } else {
            FinishReason::ToolCalls
        });
        event(
            out,
            "message_delta",
            &MessageDelta {
                kind: "message_delta",
                delta: StopDelta {
                    stop_reason: stop_reason(reason),
                    stop_sequence: None,
                },
                usage: self.usage.as_ref().map(UsageOut::from).unwrap_or_default(),
            },
        );
        event(
            out,
            "message_stop",
            &Simple {
                kind: "message_stop",
            },
        );
        self.done = true;
        self.completed = true;
    }

    fn error(&mut self, out: &mut Vec<u8>, err: &ApiError) {
        if self.done {
            return;
        }
        self.done = true;
        out.extend_from_slice(b"event: error\ndata: ");
        out.extend_from_slice(&super::error_json(err));
        out.extend_from_slice(b"\n\n");
    }
}

#[cfg(test)]
mod tests;
