//! Anthropic's answers to a client of the same API (the Messages API), relayed as they come: the
//! only change is `model`, which names the client's alias as every answer of the gateway does
//! (and a field every message has, when an Anthropic-compatible upstream leaves it out).
//! Usage is read on the way for spend; a stream that breaks off ends with an `error` event the
//! client's SDK raises, never a silently truncated message.

use super::{StreamUsage, UsageIn};
use crate::error::ApiError;
use crate::ingress::anthropic::error_json;
use crate::json;
use crate::openai::{usage_object, ResponseCtx, Usage};
use crate::providers::{StreamTranslator, Translated};
use crate::stream::sse::SseDecoder;

/// A `message` object with the alias as its `model` and every field a message has: those the
/// upstream sent kept as they came, the missing ones added with the value a `message_start` gives
/// them (`id`: the gateway's own). An Anthropic-compatible upstream may leave some out, and the
/// SDKs build the final message on them (the Python SDK appends each block to `content`).
fn message_with_model(fields: &json::Fields, alias: &str, id: &str, size: usize) -> Vec<u8> {
    let mut id_json = Vec::with_capacity(id.len().saturating_add(2));
    json::write_str(&mut id_json, id);
    let defaults: [(&str, &[u8]); 7] = [
        ("id", &id_json),
        ("type", b"\"message\""),
        ("role", b"\"assistant\""),
        ("content", b"[]"),
        ("stop_reason", b"null"),
        ("stop_sequence", b"null"),
        ("usage", br#"{"input_tokens":0,"output_tokens":0}"#),
    ];
    with_model_and_cap(fields, alias, None, &defaults, size)
}

/// A JSON object with its top-level `model` replaced by `alias` (added if missing), `max_tokens`
/// lowered to `cap` when it is over it, and each of `defaults` (a key and its JSON value) added
/// when the object has no such key.
fn with_model_and_cap(
    fields: &json::Fields,
    alias: &str,
    cap: Option<u64>,
    defaults: &[(&str, &[u8])],
    size: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(size.saturating_add(alias.len()));
    out.push(b'{');
    let mut first = true;
    let mut seen = false;
    for (key, value) in fields {
        if !std::mem::replace(&mut first, false) {
            out.push(b',');
        }
        json::write_str(&mut out, key.as_str());
        out.push(b':');
        if key.as_str() == "model" {
            seen = true;
            json::write_str(&mut out, alias);
        } else if let (Some(cap), "max_tokens") = (cap, key.as_str()) {
            let asked = serde_json::from_str::<u64>(value.get()).unwrap_or(u64::MAX);
            json::write(&mut out, &asked.min(cap));
        } else {
            out.extend_from_slice(value.get().as_bytes());
        }
    }
    if !seen {
        if !std::mem::replace(&mut first, false) {
            out.push(b',');
        }
        out.extend_from_slice(b"\"model\":");
        json::write_str(&mut out, alias);
    }
    for (key, value) in defaults {
        if json::get(fields, key).is_none() {
            out.push(b',');
            json::write_str(&mut out, key);
            out.push(b':');
            out.extend_from_slice(value);
        }
    }
    out.push(b'}');
    out
}

/// A Messages request for an Anthropic deployment: the client's body with the deployment's model,
/// and its `max_tokens` lowered to `cap` (what a budget can still pay) when there is one.
pub fn request(body: &[u8], model: &str, cap: Option<u64>) -> Result<Vec<u8>, ApiError> {
    let fields = json::split_object(body).map_err(json::body_error)?;
    Ok(request_from(&fields, model, cap, body.len()))
}

/// [`request`] from the body's fields, already split (`size`: the body's length).
pub fn request_from(fields: &json::Fields, model: &str, cap: Option<u64>, size: usize) -> Vec<u8> {
    with_model_and_cap(fields, model, cap, &[], size)
}

/// A whole `message`, relayed with the alias as its model.
pub fn response(body: &[u8], ctx: &ResponseCtx) -> Result<Translated, ApiError> {
    let fields = json::split_object(body).map_err(|_| {
        ApiError::bad_gateway("anthropic returned a response that is not a JSON object")
    })?;
    let is_message = json::get(&fields, "type").is_some_and(|t| t.get() == "\"message\"");
    if !is_message
        || !json::get(&fields, "content").is_some_and(|v| v.get().trim_start().starts_with('['))
    {
        return Err(ApiError::bad_gateway(
            "anthropic returned a JSON object that is not a message with `content`: no answer",
        ));
    }
    let usage = usage_object::<UsageIn>(json::get(&fields, "usage"))
        .ok()
        .flatten()
        .and_then(UsageIn::to_openai);
    Ok(Translated {
        body: message_with_model(&fields, &ctx.model, &ctx.id, body.len()),
        usage,
    })
}

/// Relays Anthropic's SSE events (re-framed one by one, `message_start`'s model replaced).
pub struct PassthroughStream {
    sse: SseDecoder,
    state: State,
}

struct State {
    alias: String,
    /// The gateway's message id, for an upstream `message_start` without one.
    id: String,
    usage: StreamUsage,
    stop_reason_seen: bool,
    done: bool,
    completed: bool,
}

impl PassthroughStream {
    pub fn new(ctx: ResponseCtx) -> Self {
        PassthroughStream {
            sse: SseDecoder::default(),
            state: State {
                alias: ctx.model,
                id: ctx.id,
                usage: StreamUsage::default(),
                stop_reason_seen: false,
                done: false,
                completed: false,
            },
        }
    }
}

fn frame(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}

impl State {
    fn fail(&mut self, out: &mut Vec<u8>, err: &ApiError) {
        self.done = true;
        frame(out, "error", &error_json(err));
    }

    fn on_event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.done || data.is_empty() {
            return;
        }
        let Ok(fields) = json::split_object(data) else {
            self.fail(
                out,
                &ApiError::bad_gateway("anthropic sent a stream event the gateway could not read"),
            );
            return;
        };
        // Every event of the Messages API names its type in its data, as its SSE event name
        // does: the data's is the one relayed. An event without one carries nothing a client
        // can use.
        let Some(kind) = json::get(&fields, "type")
            .and_then(|t| serde_json::from_str::<json::Text>(t.get()).ok())
        else {
            return;
        };
        let kind = kind.as_str();
        let name = kind;
        match kind {
            "message_start" => {
                let message = json::get(&fields, "message");
                let inner = message.and_then(|m| json::split_object(m.get().as_bytes()).ok());
                self.usage
                    .merge(inner.as_ref().and_then(|m| json::get(m, "usage")));
                match inner {
                    Some(m) => {
                        let rewritten = message_with_model(&m, &self.alias, &self.id, data.len());
                        let mut ev = Vec::with_capacity(rewritten.len().saturating_add(40));
                        ev.extend_from_slice(b"{\"type\":\"message_start\",\"message\":");
                        ev.extend_from_slice(&rewritten);
                        ev.push(b'}');
                        frame(out, name, &ev);
                    }
                    None => frame(out, name, data),
                }
                return;
            }
            "message_delta" => {
                self.usage.merge(json::get(&fields, "usage"));
                self.stop_reason_seen |= json::get(&fields, "delta")
                    .and_then(|d| json::split_object(d.get().as_bytes()).ok())
                    .and_then(|d| json::get(&d, "stop_reason").map(|r| !json::is_null(r)))
                    .unwrap_or(false);
            }
            "message_stop" => {
                self.done = true;
                self.completed = true;
            }
            "error" => self.done = true,
            _ => {}
        }
        frame(out, name, data);
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if self.stop_reason_seen {
            // The message was whole; only its last event was lost on the way.
            self.done = true;
            self.completed = true;
            frame(out, "message_stop", br#"{"type":"message_stop"}"#);
        } else {
            self.fail(
                out,
                &ApiError::bad_gateway(
                    "the anthropic stream ended before the message was complete",
                ),
            );
        }
    }
}

impl StreamTranslator for PassthroughStream {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let PassthroughStream { sse, state } = self;
        if state.done {
            return;
        }
        if sse.feed(chunk, |ev| state.on_event(ev.data, out)).is_err() && !state.done {
            state.fail(
                out,
                &ApiError::bad_gateway(
                    "anthropic sent a stream event larger than the gateway accepts",
                ),
            );
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let PassthroughStream { sse, state } = self;
        if !state.done {
            sse.finish(|ev| state.on_event(ev.data, out));
        }
        state.end(out);
    }

    fn final_usage(&self) -> Option<Usage> {
        self.completed().then(|| self.state.usage.get()).flatten()
    }

    fn completed(&self) -> bool {
        self.state.completed || self.state.stop_reason_seen
    }
}

#[cfg(test)]
mod tests;
