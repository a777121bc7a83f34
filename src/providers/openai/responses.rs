//! OpenAI's Responses API for a client of the same API, on a deployment that serves it (OpenAI,
//! Azure OpenAI): the request goes with the deployment's model (and `max_output_tokens` lowered
//! to what a budget can still pay), answers and events are relayed as they come with `model`
//! naming the client's alias. Usage is read on the way for spend; a stream that breaks off ends
//! with `response.failed` and an `error` event the client's SDK raises, never a silently
//! truncated response.

use serde::Deserialize;

use crate::error::ApiError;
use crate::json::{self, Fields};
use crate::openai::{usage_object, Count, ResponseCtx, Usage, UsageCheck};
use crate::providers::{StreamTranslator, Translated};
use crate::stream::sse::SseDecoder;

#[derive(Deserialize, Default)]
struct UsageIn {
    #[serde(default)]
    input_tokens: Count,
    #[serde(default)]
    output_tokens: Count,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Deserialize, Default)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: Count,
}

#[derive(Deserialize, Default)]
struct OutputDetails {
    #[serde(default)]
    reasoning_tokens: Count,
}

/// A response's `usage`: `Ok(None)` when it has none, `Err` when it cannot be charged.
fn usage(fields: &Fields) -> Result<Option<Usage>, ()> {
    let Some(u) = usage_object::<UsageIn>(json::get(fields, "usage"))? else {
        return Ok(None);
    };
    let mut c = UsageCheck::default();
    let usage = Usage {
        prompt_tokens: c.take(u.input_tokens),
        completion_tokens: c.take(u.output_tokens),
        cached_tokens: c.take(u.input_tokens_details.unwrap_or_default().cached_tokens),
        cache_creation_tokens: 0,
        reasoning_tokens: c.take(u.output_tokens_details.unwrap_or_default().reasoning_tokens),
    };
    c.result(usage)
}

/// A JSON object with its top-level `model` set to `model` (added if missing) and, with a
/// `cap`, `max_output_tokens` lowered to it (added if missing).
fn rewrite(fields: &Fields, model: &str, cap: Option<u64>, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size.saturating_add(model.len()).saturating_add(32));
    out.push(b'{');
    let (mut model_seen, mut cap_seen) = (false, false);
    for (key, value) in fields {
        if out.len() > 1 {
            out.push(b',');
        }
        json::write_str(&mut out, key.as_str());
        out.push(b':');
        match (key.as_str(), cap) {
            ("model", _) => {
                model_seen = true;
                json::write_str(&mut out, model);
            }
            ("max_output_tokens", Some(cap)) if !json::is_null(value) => {
                cap_seen = true;
                let asked = serde_json::from_str::<u64>(value.get()).unwrap_or(u64::MAX);
                json::write(&mut out, &asked.min(cap));
            }
            _ => out.extend_from_slice(value.get().as_bytes()),
        }
    }
    let mut add = |name: &str, write: &dyn Fn(&mut Vec<u8>)| {
        if out.len() > 1 {
            out.push(b',');
        }
        json::write_str(&mut out, name);
        out.push(b':');
        write(&mut out);
    };
    if !model_seen {
        add("model", &|o| json::write_str(o, model));
    }
    if let (Some(cap), false) = (cap, cap_seen) {
        add("max_output_tokens", &|o| json::write(o, &cap));
    }
    out.push(b'}');
    out
}

/// A Responses request for a deployment serving the API: the client's body with the
/// deployment's model, and `max_output_tokens` lowered to `cap` when there is one.
pub fn request(body: &[u8], model: &str, cap: Option<u64>) -> Result<Vec<u8>, ApiError> {
    let fields = json::split_object(body).map_err(json::body_error)?;
    Ok(rewrite(&fields, model, cap, body.len()))
}

/// A whole `response`, relayed with the alias as its model.
pub fn response(provider: &str, body: &[u8], ctx: &ResponseCtx) -> Result<Translated, ApiError> {
    let fields = json::split_object(body).map_err(|_| {
        ApiError::bad_gateway(format!(
            "{provider} returned a response that is not a JSON object"
        ))
    })?;
    let is_response = json::get(&fields, "object").is_some_and(|o| o.get() == "\"response\"");
    if !is_response
        || !json::get(&fields, "output").is_some_and(|v| v.get().trim_start().starts_with('['))
    {
        return Err(ApiError::bad_gateway(format!(
            "{provider} returned a JSON object that is not a response with `output`: no answer"
        )));
    }
    Ok(Translated {
        body: rewrite(&fields, &ctx.model, None, body.len()),
        usage: usage(&fields).ok().flatten(),
    })
}

/// A stored response read back (`GET /v1/responses/{id}`), relayed with the alias it was made
/// under as its model; `None` when the body is not a JSON object (relayed as it is).
pub fn stored(body: &[u8], alias: &str) -> Option<Vec<u8>> {
    let fields = json::split_object(body).ok()?;
    json::get(&fields, "model")?;
    Some(rewrite(&fields, alias, None, body.len()))
}

/// The `id` of a response object (a whole body as relayed).
pub fn response_id(body: &[u8]) -> Option<String> {
    let fields = json::split_object(body).ok()?;
    serde_json::from_str(json::get(&fields, "id")?.get()).ok()
}

/// Relays a Responses event stream: events re-framed one by one, the `response` object of
/// lifecycle events with the alias as its model, usage read from the terminal event. The same
/// relay serves a stored response's events read back ([`PassthroughStream::replay`]).
pub struct PassthroughStream {
    sse: SseDecoder,
    state: State,
}

struct State {
    provider: &'static str,
    alias: String,
    usage: Option<Usage>,
    /// The next sequence number, for an event the gateway adds.
    next_seq: u64,
    response_id: Option<String>,
    done: bool,
    completed: bool,
    /// Events of a stored response read back, not a response being made (see
    /// [`PassthroughStream::replay`]).
    replay: bool,
}

fn frame(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
}

impl PassthroughStream {
    pub fn new(provider: &'static str, ctx: ResponseCtx) -> Self {
        Self::relay(provider, ctx.model, false)
    }

    /// A stored response's events read back (`GET /v1/responses/{id}?stream=true`), relayed
    /// under the alias the response was made for. The holder replays what it has (after
    /// `starting_after`, possibly nothing), so a stream that ends before a terminal event ends as
    /// the holder ended it; one the gateway cannot relay ends with an `error` event alone, never
    /// a `response.failed` that would misstate the stored response.
    pub fn replay(provider: &'static str, alias: String) -> Self {
        Self::relay(provider, alias, true)
    }

    fn relay(provider: &'static str, alias: String, replay: bool) -> Self {
        PassthroughStream {
            sse: SseDecoder::default(),
            state: State {
                provider,
                alias,
                usage: None,
                next_seq: 0,
                response_id: None,
                done: false,
                completed: false,
                replay,
            },
        }
    }
}

impl State {
    /// Ends the stream as failed: `response.failed` (not for a replay: the stored response did
    /// not fail), then an `error` event.
    fn fail(&mut self, out: &mut Vec<u8>, err: &ApiError) {
        self.done = true;
        let code = err.code.as_deref().unwrap_or(err.kind);
        let mut seq = self.next_seq;
        if !self.replay {
            let id = self.response_id.as_deref().unwrap_or("");
            let failed = serde_json::json!({
                "type": "response.failed", "sequence_number": seq,
                "response": {"id": id, "object": "response", "status": "failed", "model": self.alias,
                             "output": [], "error": {"code": code, "message": err.message}},
            });
            frame(out, "response.failed", &json::to_vec_sized(&failed, 256));
            seq = seq.saturating_add(1);
        }
        let error = serde_json::json!({
            "type": "error", "sequence_number": seq,
            "code": code, "message": err.message, "param": err.param,
            "error": {"type": err.kind, "code": code, "message": err.message, "param": err.param},
        });
        frame(out, "error", &json::to_vec_sized(&error, 256));
    }

    fn on_event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.done || data.is_empty() {
            return;
        }
        let Ok(fields) = json::split_object(data) else {
            let err = ApiError::bad_gateway(format!(
                "{} sent a stream event the gateway could not read",
                self.provider
            ));
            self.fail(out, &err);
            return;
        };
        if let Some(n) = json::get(&fields, "sequence_number")
            .and_then(|n| serde_json::from_str::<u64>(n.get()).ok())
        {
            self.next_seq = n.saturating_add(1);
        }
        // Every event names its type in its data, as its SSE event name does.
        let Some(kind) = json::get(&fields, "type")
            .and_then(|t| serde_json::from_str::<json::Text>(t.get()).ok())
        else {
            return;
        };
        let kind = kind.as_str();
        let response = json::get(&fields, "response")
            .and_then(|r| json::split_object(r.get().as_bytes()).ok());
        let Some(response) = response else {
            if kind == "error" {
                self.done = true;
            }
            frame(out, kind, data);
            return;
        };
        if self.response_id.is_none() {
            self.response_id = json::get(&response, "id")
                .and_then(|i| serde_json::from_str::<String>(i.get()).ok());
        }
        match kind {
            "response.completed" | "response.incomplete" => {
                self.usage = usage(&response).ok().flatten();
                self.done = true;
                self.completed = true;
            }
            "response.failed" => {
                self.usage = usage(&response).ok().flatten();
                self.done = true;
            }
            _ => {}
        }
        // The event with its response's model replaced, every other field as it came.
        let size = json::get(&fields, "response").map_or(0, |r| r.get().len());
        let r = rewrite(&response, &self.alias, None, size);
        let ev = json::with_field(&fields, "response", &r, data.len());
        frame(out, kind, &ev);
    }
}

impl StreamTranslator for PassthroughStream {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let PassthroughStream { sse, state } = self;
        if state.done {
            return;
        }
        if sse.feed(chunk, |ev| state.on_event(ev.data, out)).is_err() && !state.done {
            let err = ApiError::bad_gateway(format!(
                "{} sent a stream event larger than the gateway accepts",
                state.provider
            ));
            state.fail(out, &err);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let PassthroughStream { sse, state } = self;
        if !state.done {
            sse.finish(|ev| state.on_event(ev.data, out));
        }
        if !state.done && !state.replay {
            let err = ApiError::bad_gateway(format!(
                "the {} stream ended before the response was complete",
                state.provider
            ));
            state.fail(out, &err);
        }
    }

    fn final_usage(&self) -> Option<Usage> {
        self.state.completed.then_some(self.state.usage).flatten()
    }

    fn completed(&self) -> bool {
        self.state.completed
    }

    fn response_id(&self) -> Option<&str> {
        self.state.response_id.as_deref()
    }
}

#[cfg(test)]
mod tests;
