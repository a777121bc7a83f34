//! Responses API conversations kept in the shared store (a store configured; see
//! [`crate::ingress::responses::kept`]): every turn a Responses client makes through the gateway
//! is written to the store when its answer is whole (`tg_response_put`, before the client gets
//! the answer's end, so that the next turn finds it on any replica), and a turn that continues a
//! response (`previous_response_id`) this replica cannot route to the deployment holding it reads
//! its conversation back (`tg_response_chain`, in the body phase) and goes on with it whole.
//!
//! A request that may reach a deployment serving the API itself (OpenAI, Azure) goes on as it
//! came when the store does not have the conversation: the deployment may. Any other gets
//! OpenAI's 404 (`previous_response_not_found`), or a 503 while the store does not answer.

use serde_json::Value;

use super::routed::Via;
use super::store_call::Then;
use super::{HttpFilter, State};
use crate::auth;
use crate::error::ApiError;
use crate::host::{Action, HttpHost};
use crate::ingress::responses::kept::{self, Chain, Turn};
use crate::store::remote::{self, CallError, Exchange};

/// What a Responses request keeps in the store, from its headers phase to its end.
#[derive(Debug, Default)]
pub(super) struct Keeping {
    /// `previous_response_id`, when this replica cannot route the request to the deployment
    /// holding it: its conversation is read from the store in the body phase.
    pub continues: Option<String>,
    /// The body was read for its turn (and its conversation asked for).
    pub read: bool,
    /// The turn to keep once answered; `None`: the client asked not to (`store: false`).
    pub turn: Option<Turn>,
    /// The response object the client got, once whole.
    pub response: Option<Vec<u8>>,
    /// The turn was written (or tried).
    pub written: bool,
}

/// Responses whose ids are shorter than this are not kept: an id the gateway made without a
/// request id to make it from would be the same for every response.
const MIN_ID_LEN: usize = 8;

fn exchange(
    call: Result<remote::Request, remote::EncodeError>,
    timeout_ms: u64,
) -> Option<Exchange> {
    Some(Exchange::new(call.ok()?).with_library(crate::fleet::LIBRARY, timeout_ms))
}

/// OpenAI's answer to a `previous_response_id` it does not have.
fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Previous response with id '{id}' not found."))
        .with_param("previous_response_id")
        .with_code("previous_response_not_found")
}

impl HttpFilter {
    /// The body phase of a Responses request the store keeps: its turn noted, and the
    /// conversation it continues asked of the store (`Some`: the stream waits for it).
    pub(super) fn read_conversation(
        &mut self,
        host: &mut dyn HttpHost,
        body_size: usize,
    ) -> Option<Action> {
        let store = self.config.store.as_ref()?;
        let (max_bytes, timeout) = (store.response_max_bytes, store.call_timeout_ms);
        let State::Routed(r) = &mut self.state else {
            return None;
        };
        let k = r.keeping.as_mut().filter(|k| !k.read)?;
        k.read = true;
        let body = host.request_body(body_size).unwrap_or_default();
        k.turn = kept::turn_of(&body);
        let id = k.continues.take()?;
        let max_bytes = max_bytes.to_string();
        let args: [&[u8]; 2] = [id.as_bytes(), max_bytes.as_bytes()];
        let call = remote::fcall("tg_response_chain", &[], &args, timeout);
        let Some(e) =
            exchange(call, timeout).filter(|_| !crate::host::tick::store_down(host.store()))
        else {
            let down = Err(CallError::NotSent("store down".into()));
            return Some(self.conversation_read(host, body_size, &id, down));
        };
        Some(self.wait_for_store(host, e, Then::Conversation { body_size, id }))
    }

    /// The store answered (or did not) what conversation the request continues: the request goes
    /// on with it, as it came, or is answered.
    pub(super) fn conversation_read(
        &mut self,
        host: &mut dyn HttpHost,
        body_size: usize,
        id: &str,
        result: Result<Value, CallError>,
    ) -> Action {
        let max_bytes = self
            .config
            .store
            .as_ref()
            .map_or(0, |s| s.response_max_bytes);
        let config = std::sync::Arc::clone(&self.config);
        let State::Routed(r) = &mut self.state else {
            return Action::Continue;
        };
        // A deployment serving the API itself may hold what the store does not.
        let native = match r.via {
            Via::Attempts => super::accounting::reachable(&config, &r.ctx.model)
                .iter()
                .any(|d| d.provider.responses_path(&d.target).is_some()),
            _ => r
                .served(&config)
                .is_some_and(|d| d.provider.responses_path(&d.target).is_some()),
        };
        let chain = match result {
            Ok(Value::String(text)) => kept::chain(&text, id, max_bytes),
            Ok(other) => Err(format!("tg_response_chain answered {other}")),
            Err(e) => Err(e.to_string()),
        };
        let chain = match chain {
            // A key reads only conversations made for models it may use; the others do not
            // exist for it.
            Ok(Chain::Items { alias, .. }) if auth::check_model(&r.principal, &alias).is_err() => {
                Ok(Chain::NotKept)
            }
            other => other,
        };
        match chain {
            Ok(Chain::Items { items, .. }) => {
                let body = host.request_body(body_size).unwrap_or_default();
                let expanded = match kept::expand(&body, &items) {
                    Ok(b) => b,
                    Err(e) => return self.reply_error(host, &e),
                };
                if !host.replace_request_body(body_size, &expanded) {
                    let e = ApiError::server("could not replace the request body");
                    return self.reply_error(host, &e);
                }
                self.routed_body(host, expanded.len())
            }
            _ if native => self.routed_body(host, body_size),
            Ok(Chain::NotKept) => self.reply_error(host, &not_found(id)),
            Ok(Chain::Unreadable(message)) => {
                let e = ApiError::invalid_param("previous_response_id", message)
                    .with_code("previous_response_not_found");
                self.reply_error(host, &e)
            }
            Err(why) => {
                log::warn!("tollgate: could not read a conversation from the store: {why}");
                self.reply_error(
                    host,
                    &super::store_call::unavailable(&CallError::NotSent(why)),
                )
            }
        }
    }

    /// The answer of a Responses request the store keeps is whole: its turn is written before
    /// the client gets the answer's end (`Some`: the response waits for the store).
    pub(super) fn keep_response(&mut self, host: &mut dyn HttpHost) -> Option<Action> {
        let store = self.config.store.as_ref()?;
        let (ttl, timeout) = (store.response_ttl_s, store.call_timeout_ms);
        let State::Routed(r) = &mut self.state else {
            return None;
        };
        let ok = r.answered && r.status.is_some_and(|s| (200..300).contains(&s));
        let k = r.keeping.as_mut().filter(|k| !k.written)?;
        k.written = true;
        let (turn, response) = (k.turn.take().filter(|_| ok)?, k.response.take()?);
        let id = kept::response_id(&response).filter(|id| id.len() >= MIN_ID_LEN)?;
        let record = kept::record(&turn, &response);
        // webdis cannot carry an empty argument: `-` is none.
        let prev = turn.prev.unwrap_or_else(|| "-".into());
        let ttl = ttl.to_string();
        let args: [&[u8]; 4] = [
            id.as_bytes(),
            prev.as_bytes(),
            r.ctx.model.as_bytes(),
            ttl.as_bytes(),
        ];
        let call = remote::fcall_tail("tg_response_put", &[], &args, &record, timeout);
        let e = match call {
            Ok(_) if crate::host::tick::store_down(host.store()) => Err("the store is down".into()),
            Ok(call) => Ok(Exchange::new(call).with_library(crate::fleet::LIBRARY, timeout)),
            Err(e) => Err(e.to_string()),
        };
        let e = match e {
            Ok(e) => e,
            Err(why) => {
                log::warn!("tollgate: a Responses API turn was not kept: {why}");
                return None;
            }
        };
        self.gateway_mut()?.response_waits = true;
        Some(self.wait_for_store(host, e, Then::KeptResponse))
    }

    /// A response its deployment deleted is deleted from the store too (the response waits).
    pub(super) fn forget_kept(&mut self, host: &mut dyn HttpHost, id: &str) -> Action {
        let Some(timeout) = self.config.store.as_ref().map(|s| s.call_timeout_ms) else {
            return Action::Continue;
        };
        let del = remote::fcall("tg_response_delete", &[], &[id.as_bytes()], timeout);
        let Some(e) =
            exchange(del, timeout).filter(|_| !crate::host::tick::store_down(host.store()))
        else {
            log::warn!("tollgate: a deleted response stays in the store: the store is down");
            return Action::Continue;
        };
        if let Some(g) = self.gateway_mut() {
            g.response_waits = true;
        }
        self.wait_for_store(host, e, Then::KeptForgotten)
    }

    /// Whether the stream's store call was made from its response phase: the host resumes the
    /// response, not the request, once it is answered.
    pub fn resumes_response(&self) -> bool {
        self.gateway().is_some_and(|g| g.response_waits)
    }
}

/// `GET`/`DELETE /v1/responses/{id}[/input_items]` for a response this replica does not hold
/// itself: asked of the store.
#[derive(Debug, Clone, PartialEq)]
pub struct KeptCall {
    pub id: String,
    pub delete: bool,
    /// `/input_items`: the turn's input items, as OpenAI lists them.
    pub items: bool,
    /// The request's query (`order`, `limit` for the input items).
    pub query: String,
    pub principal: crate::auth::Principal,
}

/// The store's answer to `tg_response_get`.
#[derive(serde::Deserialize)]
struct KeptIn<'a> {
    found: bool,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default, borrow)]
    response: Option<&'a serde_json::value::RawValue>,
    #[serde(default, borrow)]
    input: Option<&'a serde_json::value::RawValue>,
}

/// OpenAI's answer for a response it does not have.
fn response_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Response with id '{id}' not found."))
}

impl HttpFilter {
    /// Reads a kept response from the store (the headers phase waits: the request has no body).
    pub(super) fn ask_kept(&mut self, host: &mut dyn HttpHost, call: Box<KeptCall>) -> Action {
        let timeout = self.config.store.as_ref().map_or(0, |s| s.call_timeout_ms);
        let get = remote::fcall("tg_response_get", &[], &[call.id.as_bytes()], timeout);
        match exchange(get, timeout).filter(|_| !crate::host::tick::store_down(host.store())) {
            Some(e) => self.wait_for_store(host, e, Then::KeptRead(call)),
            None => {
                let down = CallError::NotSent("store down".into());
                self.reply_error(host, &super::store_call::unavailable(&down))
            }
        }
    }

    /// The store answered what it keeps of a response: relayed, deleted, or OpenAI's 404.
    pub(super) fn kept_read(
        &mut self,
        host: &mut dyn HttpHost,
        call: &KeptCall,
        result: Result<Value, CallError>,
    ) -> Action {
        let text = match result {
            Ok(Value::String(text)) => text,
            Ok(other) => {
                let why = CallError::NotSent(format!("tg_response_get answered {other}"));
                return self.reply_error(host, &super::store_call::unavailable(&why));
            }
            Err(e) => return self.reply_error(host, &super::store_call::unavailable(&e)),
        };
        let kept: Option<KeptIn> = serde_json::from_str(&text).ok();
        // A key sees only responses made for models it may use; the others do not exist for it.
        let found = kept.filter(|k| {
            k.found
                && k.alias
                    .as_deref()
                    .is_some_and(|a| auth::check_model(&call.principal, a).is_ok())
        });
        let Some(k) = found else {
            return self.reply_error(host, &response_not_found(&call.id));
        };
        if call.delete {
            let timeout = self.config.store.as_ref().map_or(0, |s| s.call_timeout_ms);
            let del = remote::fcall("tg_response_delete", &[], &[call.id.as_bytes()], timeout);
            return match exchange(del, timeout) {
                Some(e) => self.wait_for_store(host, e, Then::KeptDeleted(call.id.clone())),
                None => self.reply_error(host, &ApiError::server("could not encode a store call")),
            };
        }
        let body = match (call.items, k.input, k.response) {
            (true, Some(input), _) => input_items(input.get(), &call.id, &call.query),
            (false, _, Some(r)) => r.get().as_bytes().to_vec(),
            _ => return self.reply_error(host, &response_not_found(&call.id)),
        };
        super::json_reply(host, &body);
        self.state = State::Done;
        Action::Pause
    }

    /// The store deleted a kept response (or it was gone already).
    pub(super) fn kept_deleted(
        &mut self,
        host: &mut dyn HttpHost,
        id: &str,
        result: Result<Value, CallError>,
    ) -> Action {
        match result {
            Ok(Value::String(text)) if text.contains(r#""deleted":true"#) => {
                let body = serde_json::json!({"id": id, "object": "response", "deleted": true});
                super::json_reply(host, &crate::json::to_vec(&body));
                self.state = State::Done;
                Action::Pause
            }
            Ok(Value::String(_)) => self.reply_error(host, &response_not_found(id)),
            Ok(other) => {
                let why = CallError::NotSent(format!("tg_response_delete answered {other}"));
                self.reply_error(host, &super::store_call::unavailable(&why))
            }
            Err(e) => self.reply_error(host, &super::store_call::unavailable(&e)),
        }
    }
}

/// A turn's input items as OpenAI lists them (`GET /v1/responses/{id}/input_items`): each with an
/// id, a plain-text message's content as an `input_text` part; newest first unless the query
/// says `order=asc`, at most `limit` (default 20, 1 to 100).
fn input_items(input: &str, response_id: &str, query: &str) -> Vec<u8> {
    let mut items: Vec<Value> = serde_json::from_str(input).unwrap_or_default();
    for (i, item) in items.iter_mut().enumerate() {
        let Some(m) = item.as_object_mut() else {
            continue;
        };
        if let Some(Value::String(text)) = m.get("content").cloned() {
            let kind = match m.get("role").and_then(Value::as_str) {
                Some("assistant") => "output_text",
                _ => "input_text",
            };
            m.insert(
                "content".into(),
                serde_json::json!([{"type": kind, "text": text}]),
            );
        }
        if !m.contains_key("type") {
            m.insert("type".into(), "message".into());
        }
        if !m.contains_key("id") {
            let id = crate::ingress::responses::item_id(response_id, "msg", i);
            m.insert("id".into(), id.into());
        }
    }
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    if param("order") != Some("asc") {
        items.reverse();
    }
    let limit = param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let has_more = items.len() > limit;
    items.truncate(limit);
    let id_of = |v: Option<&Value>| v.and_then(|i| i.get("id")).cloned();
    let body = serde_json::json!({
        "object": "list",
        "data": items,
        "first_id": id_of(items.first()),
        "last_id": id_of(items.last()),
        "has_more": has_more,
    });
    crate::json::to_vec(&body)
}

#[cfg(test)]
mod tests {
    use super::input_items;
    use crate::config::{load, Strictness};
    use crate::filter::{HttpFilter, Role};
    use crate::host::mock::MockHost;
    use crate::host::Action;
    use crate::store::remote::Answer;
    use hashbrown::HashMap;
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn filter() -> HttpFilter {
        let doc = json!({
            "model_list": [{"model_name": "claude", "litellm_params": {
                "model": "anthropic/claude-sonnet-4-5", "api_key": "sk-ant-secret",
                "api_base": "http://127.0.0.1:9002"}}],
            "general_settings": {"master_key": "sk-master"},
            "tollgate_settings": {"store": {"url": "http://127.0.0.1:7379"}}
        });
        let r = load(&doc, &HashMap::new(), Strictness::Serve);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        HttpFilter::new(Arc::new(r.config.unwrap()), Role::Gateway)
    }

    fn turn_two() -> MockHost {
        let mut h = MockHost::request(
            "POST",
            "/v1/responses",
            &[
                ("authorization", "Bearer sk-master"),
                ("content-type", "application/json"),
            ],
        )
        .metadata("model", b"claude")
        .metadata("previous_response_id", b"resp_first");
        h.request_body =
            br#"{"model":"claude","input":"beta words","previous_response_id":"resp_first"}"#
                .to_vec();
        h
    }

    /// webdis's answer to an `FCALL` whose function answered `reply`.
    fn fcall(reply: &str) -> Answer {
        Answer::Response {
            status: 200,
            body: json!({ "FCALL": reply }).to_string().into_bytes(),
        }
    }

    fn call_body(h: &MockHost, i: usize) -> String {
        String::from_utf8_lossy(&h.calls[i].body).into_owned()
    }

    /// Turn two: its conversation is read in the body phase and sent whole; its answer waits for
    /// the store's write, then goes on.
    #[test]
    fn a_turn_reads_its_conversation_and_is_written_before_its_end() {
        let mut f = filter();
        let mut h = turn_two();
        assert_eq!(f.on_request_headers(&mut h, false), Action::Continue);
        let n = h.request_body.len();
        assert_eq!(f.on_request_body(&mut h, n, true), Action::Pause);
        assert_eq!(h.calls.len(), 1);
        assert!(call_body(&h, 0).contains("tg_response_chain/0/resp_first/"));
        let chain = json!({"found": true, "alias": "claude", "turns": [
            {"input": [{"role": "user", "content": "alpha words"}],
             "response": {"id": "resp_first", "output": [{"type": "message", "role": "assistant",
                 "content": [{"type": "output_text", "text": "echo: alpha words"}]}]}}]});
        assert_eq!(
            f.on_http_call_done(&mut h, fcall(&chain.to_string())),
            Action::Continue
        );
        assert!(h.reply.is_none(), "{:?}", h.reply);
        let sent: Value = serde_json::from_slice(&h.request_body).unwrap();
        let text = sent["messages"].to_string();
        assert!(
            text.find("alpha words") < text.find("echo: alpha words"),
            "{sent}"
        );
        assert!(
            text.find("echo: alpha words") < text.find("beta words"),
            "{sent}"
        );

        h.response_headers = vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "application/json".into()),
        ];
        h.properties
            .insert("response.code_details".into(), b"via_upstream".to_vec());
        let answer = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"echo: beta words"}],"stop_reason":"end_turn","usage":{"input_tokens":9,"output_tokens":3}}"#;
        assert_eq!(f.on_response_headers(&mut h, false), Action::Continue);
        h.response_body = answer.to_vec();
        let n = h.response_body.len();
        assert_eq!(f.on_response_body(&mut h, n, true), Action::Pause);
        assert!(f.resumes_response());
        assert_eq!(h.calls.len(), 2);
        let put = call_body(&h, 1);
        let path = h.calls[1]
            .headers
            .iter()
            .find(|(k, _)| k == ":path")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        assert!(path.contains("tg_response_put/0/resp_"), "{path}");
        assert!(path.contains("/resp_first/claude/"), "{path}");
        assert!(
            put.starts_with(r#"40 [{"content":"beta words","role":"user"}]{"id":"resp_"#),
            "{put}"
        );
        assert_eq!(
            f.on_http_call_done(&mut h, fcall(r#"{"ok":true}"#)),
            Action::Continue
        );
        let got: Value = serde_json::from_slice(&h.response_body).unwrap();
        assert_eq!(got["output"][0]["content"][0]["text"], "echo: beta words");
    }

    /// What the store answers decides: nothing kept is OpenAI's 404; garbage, an error or no
    /// answer is a 503; a key that may not use the conversation's model does not see it.
    #[test]
    fn store_answers_that_are_not_a_conversation_are_refused_in_openais_shape() {
        let cases = [
            (
                fcall(r#"{"found":false}"#),
                404,
                "previous_response_not_found",
            ),
            (fcall("garbage"), 503, "store_unavailable"),
            (
                fcall(r#"{"error":"id must be a response id"}"#),
                503,
                "store_unavailable",
            ),
            (Answer::Unanswered, 503, "store_unavailable"),
            (
                fcall(r#"{"found":true,"refused":"missing","missing":"resp_0"}"#),
                400,
                "previous_response_not_found",
            ),
        ];
        for (answer, status, code) in cases {
            let mut f = filter();
            let mut h = turn_two();
            f.on_request_headers(&mut h, false);
            let n = h.request_body.len();
            assert_eq!(f.on_request_body(&mut h, n, true), Action::Pause);
            f.on_http_call_done(&mut h, answer);
            let (got, _, _) = h.reply.as_ref().expect("answered");
            assert_eq!(*got, status);
            assert_eq!(h.reply_json()["error"]["code"], code);
        }
    }

    #[test]
    fn input_items_are_listed_as_openai_lists_them() {
        let input = r#"[{"role":"user","content":"one"},{"type":"function_call_output","call_id":"c","output":"x"}]"#;
        let v: Value = serde_json::from_slice(&input_items(input, "resp_ab", "")).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["has_more"], false);
        let data = v["data"].as_array().unwrap();
        assert_eq!(data[0]["type"], "function_call_output");
        assert_eq!(
            data[1],
            json!({"type": "message", "id": "msg_ab0", "role": "user",
                   "content": [{"type": "input_text", "text": "one"}]})
        );
        assert_eq!(v["first_id"], data[0]["id"]);
        let v: Value =
            serde_json::from_slice(&input_items(input, "resp_ab", "order=asc&limit=1")).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 1);
        assert_eq!(v["data"][0]["id"], "msg_ab0");
        assert_eq!(v["has_more"], true);
        let v: Value = serde_json::from_slice(&input_items("garbage", "r", "")).unwrap();
        assert_eq!(v["data"], json!([]));
    }
}
