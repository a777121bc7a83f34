//! Responses the gateway keeps in the shared store (Redis; `store/tollgate.lua`'s
//! `tg_response_*`), so that `previous_response_id` works for every provider and on every
//! replica, and `GET`/`DELETE /v1/responses/{id}` find what any replica made.
//!
//! Each turn is kept as the client's input items of that turn and the response object the client
//! got (its `output` holds the turn's output items), linked to the turn it continued. A request
//! that continues a response this replica cannot route to its holder reads the chain back (oldest
//! turn first) and goes on with the whole conversation as its `input`: every turn's input items,
//! then that turn's output items, then its own input; `previous_response_id` removed. What it
//! sends is what OpenAI itself would have put in front of the model (instructions, tools and
//! options are the request's own: OpenAI does not carry them over either).
//!
//! Pure: the filter (`filter/kept_responses.rs`) makes the calls.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::json::{self, Text};

/// What a request kept in the store adds: the turn it continues and its own input items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub prev: Option<String>,
    /// The request's `input` as items (a JSON array's text): a string input is one user message.
    pub input: Vec<u8>,
}

/// The turn a Responses request adds to its conversation, unless it asked not to be stored
/// (`store: false`) or its body is not one the gateway could read (the request is refused
/// elsewhere).
pub fn turn_of(body: &[u8]) -> Option<Turn> {
    let fields = json::split_object(body).ok()?;
    if json::get(&fields, "store").is_some_and(|v| v.get() == "false") {
        return None;
    }
    let input = input_items(json::get(&fields, "input")?)?;
    let prev = json::get(&fields, "previous_response_id")
        .and_then(|v| serde_json::from_str::<String>(v.get()).ok());
    Some(Turn { prev, input })
}

/// `input` as an array of items: a string is one user message.
fn input_items(raw: &RawValue) -> Option<Vec<u8>> {
    if let Ok(text) = serde_json::from_str::<Text>(raw.get()) {
        let item = serde_json::json!([{"role": "user", "content": text.as_str()}]);
        return Some(json::to_vec(&item));
    }
    raw.get()
        .trim_start()
        .starts_with('[')
        .then(|| raw.get().as_bytes().to_vec())
}

/// The store's record of a turn (`tg_response_put`'s): `<n> <input><response>`.
pub fn record(turn: &Turn, response: &[u8]) -> Vec<u8> {
    let response = response.trim_ascii();
    let mut out = Vec::with_capacity(turn.input.len() + response.len() + 12);
    out.extend_from_slice(turn.input.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(&turn.input);
    out.extend_from_slice(response);
    out
}

/// The `response` object of a stream's last lifecycle event (`response.completed`, or
/// `response.incomplete`), if `events` (whole SSE events, as the gateway writes them to the
/// client) hold it.
pub fn final_response(events: &[u8]) -> Option<Vec<u8>> {
    const NAMES: [&[u8]; 2] = [
        b"event: response.completed\ndata: ",
        b"event: response.incomplete\ndata: ",
    ];
    let start = NAMES.iter().find_map(|name| {
        events
            .windows(name.len())
            .position(|w| w == *name)
            .map(|at| at + name.len())
    })?;
    let data = events.get(start..)?;
    let data = data.split(|&b| b == b'\n').next()?;
    let fields = json::split_object(data).ok()?;
    Some(json::get(&fields, "response")?.get().as_bytes().to_vec())
}

/// A response object as the client sees it when the gateway keeps it: `store` true and
/// `previous_response_id` the turn it continues (what OpenAI echoes; a translated response, or
/// one OpenAI made from the conversation read back, would say otherwise). `None`: not an object.
pub fn echoed(response: &[u8], previous: Option<&str>) -> Option<Vec<u8>> {
    let fields = json::split_object(response).ok()?;
    let mut out = Vec::with_capacity(response.len() + 64);
    out.push(b'{');
    let put = |out: &mut Vec<u8>, key: &str, value: &[u8]| {
        if out.len() > 1 {
            out.push(b',');
        }
        json::write_str(out, key);
        out.push(b':');
        out.extend_from_slice(value);
    };
    let previous = match previous {
        Some(p) => json::to_vec(p),
        None => b"null".to_vec(),
    };
    let (mut store_seen, mut previous_seen) = (false, false);
    for (key, value) in &fields {
        match key.as_str() {
            "store" => {
                store_seen = true;
                put(&mut out, "store", b"true");
            }
            "previous_response_id" => {
                previous_seen = true;
                put(&mut out, "previous_response_id", &previous);
            }
            k => put(&mut out, k, value.get().as_bytes()),
        }
    }
    if !store_seen {
        put(&mut out, "store", b"true");
    }
    if !previous_seen {
        put(&mut out, "previous_response_id", &previous);
    }
    out.push(b'}');
    Some(out)
}

/// Whole SSE events (as the gateway writes them to the client) with each lifecycle event's
/// `response` [`echoed`]; `None` when none has one (nothing to change).
pub fn echoed_events(events: &[u8], previous: Option<&str>) -> Option<Vec<u8>> {
    const DATA: &[u8] = b"data: ";
    if !events.windows(12).any(|w| w == b"\"response\":{") {
        return None;
    }
    let mut out = Vec::with_capacity(events.len() + 128);
    let mut changed = false;
    for event in events.split_inclusive(|&b| b == b'\n') {
        // An event is `event: <name>\ndata: <json>\n\n`: only data lines change.
        let Some(data) = event.strip_prefix(DATA) else {
            out.extend_from_slice(event);
            continue;
        };
        let body = data.strip_suffix(b"\n").unwrap_or(data);
        let rewritten = json::split_object(body).ok().and_then(|fields| {
            let response = json::get(&fields, "response")?;
            let r = echoed(response.get().as_bytes(), previous)?;
            Some(json::with_field(&fields, "response", &r, body.len()))
        });
        match rewritten {
            Some(ev) => {
                changed = true;
                out.extend_from_slice(DATA);
                out.extend_from_slice(&ev);
                if body.len() < data.len() {
                    out.push(b'\n');
                }
            }
            None => out.extend_from_slice(event),
        }
    }
    changed.then_some(out)
}

/// A response object's `id`.
pub fn response_id(response: &[u8]) -> Option<String> {
    let fields = json::split_object(response).ok()?;
    serde_json::from_str(json::get(&fields, "id")?.get()).ok()
}

/// What the store holds of a conversation (`tg_response_chain`'s answer).
#[derive(Debug, PartialEq, Eq)]
pub enum Chain {
    /// The store does not keep the response.
    NotKept,
    /// The response is kept, but its conversation cannot be read whole: why, for the client.
    Unreadable(String),
    /// The conversation's items, oldest first (a JSON array's text), and the model name its
    /// newest turn was made for.
    Items { alias: String, items: Vec<u8> },
}

#[derive(Deserialize)]
struct ChainIn<'a> {
    found: bool,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default, borrow)]
    turns: Vec<TurnIn<'a>>,
    #[serde(default)]
    refused: Option<String>,
    #[serde(default)]
    missing: Option<String>,
}

#[derive(Deserialize)]
struct TurnIn<'a> {
    #[serde(borrow)]
    input: &'a RawValue,
    #[serde(borrow)]
    response: &'a RawValue,
}

/// The JSON text inside an array's brackets, if `raw` is an array and not empty.
fn inner(raw: &str) -> Option<&str> {
    let t = raw.trim();
    let t = t.strip_prefix('[')?.strip_suffix(']')?.trim();
    (!t.is_empty()).then_some(t)
}

/// Reads the store's answer to `tg_response_chain(id)`; `Err` for an answer that is not one.
pub fn chain(reply: &str, id: &str, max_bytes: u64) -> Result<Chain, String> {
    let c: ChainIn = serde_json::from_str(reply).map_err(|e| format!("unreadable chain: {e}"))?;
    if !c.found {
        return Ok(Chain::NotKept);
    }
    if let Some(why) = c.refused {
        let message = match why.as_str() {
            "missing" => format!(
                "Response '{id}' continues response '{}', which is no longer stored: send the whole conversation in `input` instead.",
                c.missing.unwrap_or_default()
            ),
            "too_large" => format!(
                "The conversation that ends with response '{id}' is larger than this gateway keeps for one request ({max_bytes} bytes): send the part of it the model needs in `input` instead."
            ),
            _ => format!(
                "The conversation that ends with response '{id}' has more turns than this gateway reads back: send the part of it the model needs in `input` instead."
            ),
        };
        return Ok(Chain::Unreadable(message));
    }
    let alias = c.alias.ok_or("a chain without alias")?;
    let mut items = Vec::new();
    let mut push = |part: &str| {
        items.push(if items.is_empty() { b'[' } else { b',' });
        items.extend_from_slice(part.as_bytes());
    };
    for t in &c.turns {
        if let Some(i) = inner(t.input.get()) {
            push(i);
        }
        let fields = json::split_object(t.response.get().as_bytes())
            .map_err(|_| "a kept response that is not an object")?;
        if let Some(o) = json::get(&fields, "output").and_then(|o| inner(o.get())) {
            push(o);
        }
    }
    if items.is_empty() {
        items.push(b'[');
    }
    items.push(b']');
    Ok(Chain::Items { alias, items })
}

/// The request's body with the conversation `items` in front of its own input and
/// `previous_response_id` removed.
pub fn expand(body: &[u8], items: &[u8]) -> Result<Vec<u8>, ApiError> {
    let fields = json::split_object(body).map_err(json::body_error)?;
    let own = json::get(&fields, "input")
        .and_then(input_items)
        .ok_or_else(|| {
            ApiError::invalid_param(
                "input",
                "Invalid type for 'input': expected a string or an array of input items.",
            )
            .with_code("invalid_type")
        })?;
    let mut out = Vec::with_capacity(body.len() + items.len() + 16);
    out.push(b'{');
    for (key, raw) in &fields {
        if matches!(key.as_str(), "input" | "previous_response_id") {
            continue;
        }
        if out.len() > 1 {
            out.push(b',');
        }
        json::write_str(&mut out, key.as_str());
        out.push(b':');
        out.extend_from_slice(raw.get().as_bytes());
    }
    if out.len() > 1 {
        out.push(b',');
    }
    out.extend_from_slice(b"\"input\":[");
    let prior = std::str::from_utf8(items).ok().and_then(inner);
    let own = std::str::from_utf8(&own).ok().and_then(inner);
    if let Some(p) = prior {
        out.extend_from_slice(p.as_bytes());
    }
    if let Some(o) = own {
        if prior.is_some() {
            out.push(b',');
        }
        out.extend_from_slice(o.as_bytes());
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn a_string_input_is_one_user_message_and_store_false_keeps_nothing() {
        let t = turn_of(br#"{"model":"m","input":"hi","previous_response_id":"resp_1"}"#).unwrap();
        assert_eq!(t.prev.as_deref(), Some("resp_1"));
        let v: Value = serde_json::from_slice(&t.input).unwrap();
        assert_eq!(v, json!([{"role": "user", "content": "hi"}]));
        assert!(turn_of(br#"{"model":"m","input":"hi","store":false}"#).is_none());
        assert!(turn_of(br#"{"model":"m","input":"hi","store":true}"#).is_some());
        assert!(turn_of(br#"{"model":"m","input":7}"#).is_none());
        assert!(turn_of(b"not json").is_none());
        let t = turn_of(br#"{"model":"m","input":[ {"role":"user","content":"a"} ]}"#).unwrap();
        assert_eq!(t.input, br#"[ {"role":"user","content":"a"} ]"#);
        assert_eq!(t.prev, None);
    }

    #[test]
    fn a_record_is_the_input_length_the_input_and_the_response() {
        let t = Turn {
            prev: None,
            input: b"[1]".to_vec(),
        };
        assert_eq!(record(&t, b"  {\"id\":\"r\"}\n"), b"3 [1]{\"id\":\"r\"}");
    }

    #[test]
    fn the_final_response_is_read_from_the_completed_event() {
        let events = b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"x\"}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":9,\"response\":{\"id\":\"resp_9\",\"output\":[]}}\n\n";
        let r = final_response(events).unwrap();
        assert_eq!(r, br#"{"id":"resp_9","output":[]}"#);
        assert_eq!(response_id(&r).as_deref(), Some("resp_9"));
        assert!(final_response(b"event: response.created\ndata: {}\n\n").is_none());
        let incomplete = b"event: response.incomplete\ndata: {\"response\":{\"id\":\"r\"}}\n\n";
        assert_eq!(final_response(incomplete).unwrap(), br#"{"id":"r"}"#);
    }

    #[test]
    fn a_kept_response_says_it_is_stored_and_what_it_continues() {
        let r = br#"{"id":"resp_2","store":false,"previous_response_id":null,"output":[]}"#;
        let v: Value = serde_json::from_slice(&echoed(r, Some("resp_1")).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"id": "resp_2", "store": true, "previous_response_id": "resp_1", "output": []})
        );
        let v: Value = serde_json::from_slice(&echoed(br#"{"id":"r"}"#, None).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"id": "r", "store": true, "previous_response_id": null})
        );
        assert!(echoed(b"[]", None).is_none());
        let events = b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r\",\"store\":false}}\n\nevent: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"x\"}\n\n";
        let out = echoed_events(events, Some("p")).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r\",\"store\":true,\"previous_response_id\":\"p\"}}\n\nevent: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"x\"}\n\n"
        );
        assert!(echoed_events(b"event: a\ndata: {\"delta\":\"x\"}\n\n", None).is_none());
    }

    fn chain_reply(turns: Value) -> String {
        json!({"found": true, "alias": "claude", "turns": turns}).to_string()
    }

    #[test]
    fn a_chain_is_every_turns_input_then_its_output_oldest_first() {
        let reply = chain_reply(json!([
            {"input": [{"role": "user", "content": "one"}], "response": {"id": "r1", "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "1"}]}]}},
            {"input": [], "response": {"id": "r2", "output": []}},
            {"input": [{"role": "user", "content": "two"}], "response": {"id": "r3", "output": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}]}}
        ]));
        let Chain::Items { alias, items } = chain(&reply, "r3", 100).unwrap() else {
            panic!("not items");
        };
        assert_eq!(alias, "claude");
        let v: Value = serde_json::from_slice(&items).unwrap();
        let kinds: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                i.get("content")
                    .and_then(Value::as_str)
                    .or(i["type"].as_str())
                    .unwrap()
            })
            .collect();
        assert_eq!(kinds, ["one", "message", "two", "function_call"]);
    }

    #[test]
    fn a_chain_the_store_refuses_says_why() {
        assert_eq!(chain(r#"{"found":false}"#, "r", 1).unwrap(), Chain::NotKept);
        let missing = chain(
            r#"{"found":true,"refused":"missing","missing":"r0"}"#,
            "r",
            1,
        );
        assert!(matches!(missing, Ok(Chain::Unreadable(m)) if m.contains("'r0'")));
        let large = chain(r#"{"found":true,"refused":"too_large","bytes":9}"#, "r", 5);
        assert!(matches!(large, Ok(Chain::Unreadable(m)) if m.contains("5 bytes")));
        assert!(chain("garbage", "r", 1).is_err());
        assert!(chain(r#"{"found":true,"turns":[]}"#, "r", 1).is_err());
        let bad = chain_reply(json!([{"input": [], "response": [1]}]));
        assert!(chain(&bad, "r", 1).is_err());
    }

    #[test]
    fn expanding_puts_the_conversation_before_the_input_and_drops_the_link() {
        let body = br#"{"model":"m","previous_response_id":"r1","input":"next","tools":[]}"#;
        let out = expand(body, br#"[{"role":"user","content":"first"}]"#).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"model": "m", "tools": [], "input": [
                {"role": "user", "content": "first"},
                {"role": "user", "content": "next"}
            ]})
        );
        let out = expand(br#"{"model":"m","input":[]}"#, b"[]").unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&out).unwrap(),
            json!({"model": "m", "input": []})
        );
        assert!(expand(br#"{"model":"m","input":3}"#, b"[]").is_err());
        assert!(expand(b"[]", b"[]").is_err());
    }
}
