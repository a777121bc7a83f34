//! A stream as the Responses API sends it: typed events, each with its `sequence_number`.
//!
//! `response.created` and `response.in_progress` first; then per output item
//! `response.output_item.added`, its content (`response.content_part.added`, then
//! `response.output_text.delta`s, `.done`, `response.content_part.done` for a message;
//! `response.reasoning_summary_part.added`, `response.reasoning_summary_text.delta`s and their
//! `.done`s for reasoning; `response.function_call_arguments.delta`s and `.done` for a function
//! call) and `response.output_item.done`; last `response.completed` (or `response.incomplete`,
//! for an answer cut by its output cap or a content filter) with the whole response and its
//! usage. A failure ends the stream with `response.failed` and an `error` event.
//!
//! Providers report content as it comes. A message, a reasoning item and a function call each
//! have their own output item; a change of kind closes the open message or reasoning item and
//! opens the next. Function call items stay open until the answer ends, so that fragments of
//! parallel calls that OpenAI-compatible servers interleave still reach their own item. The
//! `.done` events and `response.completed` carry the whole text, as OpenAI's do: the writer
//! keeps what it sent, which the answer's output cap bounds.

use serde::Serialize;

use super::request::REDACTED_PREFIX;
use super::response::{ErrorOut, Incomplete, ItemOut, ResponseOut, SummaryOut, TextPart};
use super::{call_id, item_id, status, UsageOut, ECHO};
use crate::error::ApiError;
use crate::ingress::ChatSink;
use crate::openai::{FinishReason, ResponseCtx, Usage};

/// The most function calls one answer's stream keeps items for.
const MAX_CALLS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Reasoning,
    /// Anthropic's redacted thinking: a reasoning item with no summary, whole when added.
    Redacted,
    Message,
    Call(usize),
}

#[derive(Debug)]
struct Item {
    kind: Kind,
    id: String,
    /// The text, reasoning or arguments sent so far.
    text: String,
    call_id: String,
    name: String,
    /// A reasoning item's `encrypted_content` (see `response.rs`).
    encrypted: Option<String>,
    done: bool,
}

impl Item {
    fn out(&self, open_status: &'static str) -> ItemOut<'_> {
        let status = if self.done { "completed" } else { open_status };
        match self.kind {
            Kind::Reasoning => ItemOut::Reasoning {
                id: &self.id,
                summary: if self.done {
                    vec![SummaryOut::new(&self.text)]
                } else {
                    Vec::new()
                },
                encrypted_content: self.encrypted.as_deref().filter(|_| self.done),
            },
            Kind::Redacted => ItemOut::Reasoning {
                id: &self.id,
                summary: Vec::new(),
                encrypted_content: self.encrypted.as_deref().filter(|_| self.done),
            },
            Kind::Message => ItemOut::Message {
                id: &self.id,
                status,
                role: "assistant",
                content: if self.done {
                    vec![TextPart::new(&self.text)]
                } else {
                    Vec::new()
                },
            },
            Kind::Call(_) => ItemOut::FunctionCall {
                id: &self.id,
                call_id: &self.call_id,
                name: &self.name,
                arguments: if self.done { &self.text } else { "" },
                status,
            },
        }
    }
}

/// Writes one response's Responses API events. Only choice 0 exists in this API.
#[derive(Debug)]
pub struct EventWriter {
    ctx: ResponseCtx,
    seq: u64,
    started: bool,
    items: Vec<Item>,
    /// The open message or reasoning item, by index into `items` (its `output_index`).
    open: Option<usize>,
    stop: Option<FinishReason>,
    usage: Option<Usage>,
    done: bool,
    completed: bool,
}

#[derive(Serialize)]
struct Lifecycle<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
struct ItemEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    output_index: usize,
    item: ItemOut<'a>,
}

#[derive(Serialize)]
struct PartEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    content_index: usize,
    part: TextPart<'a>,
}

#[derive(Serialize)]
struct SummaryPartEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    summary_index: usize,
    part: SummaryOut<'a>,
}

/// A delta, or the `.done` with the whole text (`text` or `arguments` by event).
#[derive(Serialize)]
struct TextEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<[(); 0]>,
}

impl<'a> TextEvent<'a> {
    fn new(kind: &'static str, item_id: &'a str, output_index: usize) -> Self {
        TextEvent {
            kind,
            sequence_number: 0,
            item_id,
            output_index,
            content_index: None,
            summary_index: None,
            delta: None,
            text: None,
            arguments: None,
            logprobs: None,
        }
    }
}

#[derive(Serialize)]
struct ErrorEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sequence_number: u64,
    code: &'a str,
    message: &'a str,
    param: Option<&'a str>,
    /// The error as OpenAI's SDKs look for it in any streamed event (they raise it).
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    code: &'a str,
    message: &'a str,
    param: Option<&'a str>,
}

/// Appends one event; its `sequence_number` is the writer's next.
fn event<T: Serialize>(out: &mut Vec<u8>, seq: &mut u64, name: &str, data: &T) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    crate::json::write(out, data);
    out.extend_from_slice(b"\n\n");
    *seq = seq.saturating_add(1);
}

impl EventWriter {
    pub fn new(ctx: ResponseCtx) -> Self {
        EventWriter {
            ctx,
            seq: 0,
            started: false,
            items: Vec::new(),
            open: None,
            stop: None,
            usage: None,
            done: false,
            completed: false,
        }
    }

    fn response<'a>(
        &'a self,
        status: &'static str,
        error: Option<ErrorOut<'a>>,
    ) -> ResponseOut<'a> {
        let finished = matches!(status, "completed" | "incomplete" | "failed");
        let incomplete = (status == "incomplete")
            .then(|| super::status(self.stop).1)
            .flatten()
            .map(|reason| Incomplete { reason });
        ResponseOut {
            id: &self.ctx.id,
            object: "response",
            created_at: self.ctx.created,
            status,
            error,
            incomplete_details: incomplete,
            model: &self.ctx.model,
            output: if finished {
                self.items.iter().map(|i| i.out("incomplete")).collect()
            } else {
                Vec::new()
            },
            usage: if finished {
                self.usage.as_ref().map(UsageOut::from)
            } else {
                None
            },
            echo: &ECHO,
        }
    }

    fn lifecycle(&mut self, out: &mut Vec<u8>, kind: &'static str, status: &'static str) {
        let mut seq = self.seq;
        let data = Lifecycle {
            kind,
            sequence_number: seq,
            response: self.response(status, None),
        };
        event(out, &mut seq, kind, &data);
        self.seq = seq;
    }

    /// `response.created` and `response.in_progress`, once, before anything else.
    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        self.lifecycle(out, "response.created", "in_progress");
        self.lifecycle(out, "response.in_progress", "in_progress");
    }

    /// Adds an output item of `kind` and sends its `output_item.added` (and a message's or
    /// reasoning's first part); returns its index.
    fn add(&mut self, out: &mut Vec<u8>, kind: Kind, call_id: String, name: &str) -> usize {
        self.ensure_started(out);
        let index = self.items.len();
        let prefix = match kind {
            Kind::Reasoning | Kind::Redacted => "rs",
            Kind::Message => "msg",
            Kind::Call(_) => "fc",
        };
        self.items.push(Item {
            kind,
            id: item_id(&self.ctx.id, prefix, index),
            text: String::new(),
            call_id,
            name: name.to_string(),
            encrypted: None,
            done: false,
        });
        let Some(item) = self.items.last() else {
            return index;
        };
        let seq = &mut self.seq;
        let n = *seq;
        event(
            out,
            seq,
            "response.output_item.added",
            &ItemEvent {
                kind: "response.output_item.added",
                sequence_number: n,
                output_index: index,
                item: item.out("in_progress"),
            },
        );
        match kind {
            Kind::Message => {
                let n = *seq;
                event(
                    out,
                    seq,
                    "response.content_part.added",
                    &PartEvent {
                        kind: "response.content_part.added",
                        sequence_number: n,
                        item_id: &item.id,
                        output_index: index,
                        content_index: 0,
                        part: TextPart::new(""),
                    },
                );
            }
            Kind::Reasoning => {
                let n = *seq;
                event(
                    out,
                    seq,
                    "response.reasoning_summary_part.added",
                    &SummaryPartEvent {
                        kind: "response.reasoning_summary_part.added",
                        sequence_number: n,
                        item_id: &item.id,
                        output_index: index,
                        summary_index: 0,
                        part: SummaryOut::new(""),
                    },
                );
            }
            Kind::Call(_) | Kind::Redacted => {}
        }
        index
    }

    /// Ends item `index`: its `.done` events with the whole text, then `output_item.done`.
    fn end_item(&mut self, out: &mut Vec<u8>, index: usize) {
        let Some(item) = self.items.get_mut(index) else {
            return;
        };
        if item.done {
            return;
        }
        item.done = true;
        let item: &Item = item;
        let seq = &mut self.seq;
        match item.kind {
            Kind::Message => {
                let mut ev = TextEvent::new("response.output_text.done", &item.id, index);
                ev.sequence_number = *seq;
                ev.content_index = Some(0);
                ev.text = Some(&item.text);
                ev.logprobs = Some([]);
                event(out, seq, ev.kind, &ev);
                let n = *seq;
                event(
                    out,
                    seq,
                    "response.content_part.done",
                    &PartEvent {
                        kind: "response.content_part.done",
                        sequence_number: n,
                        item_id: &item.id,
                        output_index: index,
                        content_index: 0,
                        part: TextPart::new(&item.text),
                    },
                );
            }
            Kind::Reasoning => {
                let mut ev =
                    TextEvent::new("response.reasoning_summary_text.done", &item.id, index);
                ev.sequence_number = *seq;
                ev.summary_index = Some(0);
                ev.text = Some(&item.text);
                event(out, seq, ev.kind, &ev);
                let n = *seq;
                event(
                    out,
                    seq,
                    "response.reasoning_summary_part.done",
                    &SummaryPartEvent {
                        kind: "response.reasoning_summary_part.done",
                        sequence_number: n,
                        item_id: &item.id,
                        output_index: index,
                        summary_index: 0,
                        part: SummaryOut::new(&item.text),
                    },
                );
            }
            Kind::Redacted => {}
            Kind::Call(_) => {
                let mut ev =
                    TextEvent::new("response.function_call_arguments.done", &item.id, index);
                ev.sequence_number = *seq;
                ev.arguments = Some(&item.text);
                event(out, seq, ev.kind, &ev);
            }
        }
        let n = *seq;
        event(
            out,
            seq,
            "response.output_item.done",
            &ItemEvent {
                kind: "response.output_item.done",
                sequence_number: n,
                output_index: index,
                item: item.out("completed"),
            },
        );
    }

    fn close_open(&mut self, out: &mut Vec<u8>) {
        if let Some(index) = self.open.take() {
            self.end_item(out, index);
        }
    }

    /// The open item of `kind` (a message or reasoning), opened if need be.
    fn open(&mut self, out: &mut Vec<u8>, kind: Kind) -> usize {
        if let Some(index) = self.open {
            if self.items.get(index).is_some_and(|i| i.kind == kind) {
                return index;
            }
        }
        self.close_open(out);
        let index = self.add(out, kind, String::new(), "");
        self.open = Some(index);
        index
    }

    /// Appends `text` to item `at` and sends it as that item's `kind` of delta.
    fn delta(&mut self, out: &mut Vec<u8>, at: usize, kind: &'static str, text: &str) {
        let Some(item) = self.items.get_mut(at) else {
            return;
        };
        item.text.push_str(text);
        let mut ev = TextEvent::new(kind, &item.id, at);
        match item.kind {
            Kind::Message => {
                ev.content_index = Some(0);
                ev.logprobs = Some([]);
            }
            Kind::Reasoning => ev.summary_index = Some(0),
            Kind::Call(_) | Kind::Redacted => {}
        }
        ev.delta = Some(text);
        ev.sequence_number = self.seq;
        event(out, &mut self.seq, kind, &ev);
    }

    fn call_item(&self, tool_index: usize) -> Option<usize> {
        self.items
            .iter()
            .rposition(|i| i.kind == Kind::Call(tool_index))
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
        let at = self.open(out, Kind::Message);
        self.delta(out, at, "response.output_text.delta", text);
    }

    fn reasoning(&mut self, out: &mut Vec<u8>, index: usize, text: &str) {
        if !self.live(index) || text.is_empty() {
            return;
        }
        let at = self.open(out, Kind::Reasoning);
        self.delta(out, at, "response.reasoning_summary_text.delta", text);
    }

    /// Kept on the open reasoning item (opened if the reasoning had no text): its
    /// `output_item.done` and the completed response carry it as `encrypted_content`.
    fn reasoning_signature(&mut self, out: &mut Vec<u8>, index: usize, signature: &str) {
        if !self.live(index) || signature.is_empty() {
            return;
        }
        let at = self.open(out, Kind::Reasoning);
        if let Some(item) = self.items.get_mut(at) {
            item.encrypted
                .get_or_insert_with(String::new)
                .push_str(signature);
        }
    }

    /// A reasoning item of its own, with no summary and the data after `REDACTED_PREFIX` as its
    /// `encrypted_content`.
    fn redacted_reasoning(&mut self, out: &mut Vec<u8>, index: usize, data: &str) {
        if !self.live(index) || self.items.len() >= MAX_CALLS {
            return;
        }
        self.close_open(out);
        let at = self.add(out, Kind::Redacted, String::new(), "");
        if let Some(item) = self.items.get_mut(at) {
            item.encrypted = Some(format!("{REDACTED_PREFIX}{data}"));
        }
        self.end_item(out, at);
    }

    fn tool_call_start(
        &mut self,
        out: &mut Vec<u8>,
        index: usize,
        tool_index: usize,
        id: &str,
        name: &str,
    ) {
        if !self.live(index) || self.call_item(tool_index).is_some() {
            return;
        }
        if self.items.len() >= MAX_CALLS {
            return;
        }
        self.close_open(out);
        let call = call_id(id, &self.ctx.id, tool_index);
        self.add(out, Kind::Call(tool_index), call, name);
    }

    fn tool_call_args(&mut self, out: &mut Vec<u8>, index: usize, tool_index: usize, args: &str) {
        if !self.live(index) || args.is_empty() {
            return;
        }
        // Arguments of a call that never started have no item to go to.
        let Some(at) = self.call_item(tool_index) else {
            return;
        };
        self.delta(out, at, "response.function_call_arguments.delta", args);
    }

    fn finish(&mut self, out: &mut Vec<u8>, index: usize, reason: FinishReason) {
        if !self.live(index) || self.stop.is_some() {
            return;
        }
        self.ensure_started(out);
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
        for i in 0..self.items.len() {
            self.end_item(out, i);
        }
        self.open = None;
        let (status, _) = status(self.stop);
        let kind = if status == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.lifecycle(out, kind, status);
        self.done = true;
        self.completed = true;
    }

    fn error(&mut self, out: &mut Vec<u8>, err: &ApiError) {
        if self.done {
            return;
        }
        self.ensure_started(out);
        self.done = true;
        let code = err.code.as_deref().unwrap_or(err.kind);
        let mut seq = self.seq;
        let failed = Lifecycle {
            kind: "response.failed",
            sequence_number: seq,
            response: self.response(
                "failed",
                Some(ErrorOut {
                    code,
                    message: &err.message,
                }),
            ),
        };
        event(out, &mut seq, "response.failed", &failed);
        let n = seq;
        event(
            out,
            &mut seq,
            "error",
            &ErrorEvent {
                kind: "error",
                sequence_number: n,
                code,
                message: &err.message,
                param: err.param.as_deref(),
                error: ErrorDetail {
                    kind: err.kind,
                    code,
                    message: &err.message,
                    param: err.param.as_deref(),
                },
            },
        );
        self.seq = seq;
    }
}

#[cfg(test)]
mod tests;
