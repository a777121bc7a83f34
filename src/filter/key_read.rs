//! Keys across replicas (a store configured; see `keys::fleet`): a key this replica has not seen
//! since its last change is read from the store (`tg_key_get`) before the request is
//! authenticated, and the admin API writes through the store (`tg_key_put`) before it answers.
//!
//! Where the request waits: a request without a body (`GET /v1/models`, `/key/info`) in its
//! headers phase, then the headers phase runs again; an API request in its body phase (proxy-wasm
//! cannot wait in the headers phase of a request with a body), authenticated there, so its
//! headers phase routes it without a principal.

use serde_json::Value;

use super::store_call::Then;
use super::{json_reply, HttpFilter, State};
use crate::auth::{self, Credential};
use crate::error::ApiError;
use crate::host::{Action, HttpHost};
use crate::keys::admin::{self, AdminCtx, AdminOp};
use crate::keys::{self, fleet, KeyDef};
use crate::store::remote::{self, CallError, Exchange};

/// The key read the stream waits for.
#[derive(Debug)]
pub struct KeyRead {
    token: String,
    /// [`fleet::read_started`] when it was sent.
    started: u64,
}

/// A key-management call that writes through the store: the keys it reads first, then what a dry
/// run would write, one `tg_key_put` each, then the call itself, answered.
#[derive(Debug)]
pub struct AdminFlow {
    op: AdminOp,
    body: Vec<u8>,
    now: u64,
    random: [u8; 32],
    reads: Vec<String>,
    puts: Option<Vec<(String, Vec<u8>)>>,
}

/// What the stream learnt about keys from the store.
#[derive(Debug, Default)]
pub struct KeyState {
    pub waiting: Option<KeyRead>,
    /// The key was read (or the read failed) for this request: not again.
    pub done: bool,
    /// Likewise its team (a team's token is `team:<id>`).
    pub team_done: bool,
    /// The read failed: a key unknown here may exist, so it is not refused as invalid.
    pub failed: bool,
}

fn get_call(token: &str, timeout_ms: u64) -> Option<Exchange> {
    let call = remote::fcall("tg_key_get", &[], &[token.as_bytes()], timeout_ms).ok()?;
    Some(Exchange::new(call).with_library(crate::fleet::LIBRARY, timeout_ms))
}

fn put_call(op: AdminOp, token: &str, record: &[u8], timeout_ms: u64) -> Option<Exchange> {
    let (name, expect): (&str, &str) = match op {
        AdminOp::Generate | AdminOp::TeamNew => ("put", r#"{"absent":true}"#),
        AdminOp::Block | AdminOp::TeamBlock => ("block", "null"),
        AdminOp::Unblock | AdminOp::TeamUnblock => ("unblock", "null"),
        AdminOp::Delete | AdminOp::TeamDelete => ("delete", "null"),
        _ => ("put", "null"),
    };
    let args: [&[u8]; 4] = [token.as_bytes(), record, name.as_bytes(), expect.as_bytes()];
    let call = remote::fcall("tg_key_put", &[], &args, timeout_ms).ok()?;
    Some(Exchange::new(call).with_library(crate::fleet::LIBRARY, timeout_ms))
}

/// Whether a team token names a team the store can hold (see `keys::is_team_id`).
fn storable(token: &str) -> bool {
    token
        .strip_prefix(keys::TEAM_TOKEN_PREFIX)
        .is_some_and(keys::is_team_id)
}

/// The keys an admin call names (they are read before it runs, so that a key made on another
/// replica can be updated, blocked or deleted here).
fn admin_targets(op: AdminOp, body: &[u8]) -> Vec<String> {
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let token = |k: &str| {
        if keys::is_hash(k) {
            k.to_string()
        } else {
            keys::hash_key(k)
        }
    };
    let team = |k: &str| m.get(k).and_then(Value::as_str).map(keys::team_token);
    match op {
        AdminOp::Update => m
            .get("key")
            .and_then(Value::as_str)
            .map(token)
            .into_iter()
            .chain(team("team_id").filter(|t| storable(t)))
            .collect(),
        AdminOp::Generate => team("team_id")
            .filter(|t| storable(t))
            .into_iter()
            .collect(),
        AdminOp::Block | AdminOp::Unblock => m
            .get("key")
            .and_then(Value::as_str)
            .map(token)
            .into_iter()
            .collect(),
        AdminOp::TeamNew | AdminOp::TeamUpdate | AdminOp::TeamBlock | AdminOp::TeamUnblock => {
            team("team_id").into_iter().collect()
        }
        AdminOp::TeamDelete => m
            .get("team_ids")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(keys::team_token)
                    .take(64)
                    .collect()
            })
            .unwrap_or_default(),
        AdminOp::Delete => m
            .get("keys")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(token)
                    .take(64)
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

impl HttpFilter {
    /// The hash of the virtual key the request presents, when this replica must read it from the
    /// store before trusting its copy.
    pub(super) fn key_to_read(&self, host: &dyn HttpHost) -> Option<String> {
        let credential = auth::credential(&self.config, host);
        self.key_to_read_for(host, &credential, &mut None)
    }

    /// [`Self::key_to_read`] for the credential the request presents; the key's definition, if
    /// this looked it up, is left in `found` for the authentication that follows.
    pub(super) fn key_to_read_for(
        &self,
        host: &dyn HttpHost,
        credential: &Credential,
        found: &mut Option<KeyDef>,
    ) -> Option<String> {
        // An open gateway (no master key, no keys) has no keys to read: the API cannot make any.
        let open = self.config.master_key.is_none() && self.config.keys.is_empty();
        let done = self.gateway().is_none_or(|g| g.keys.done);
        if self.config.store.is_none() || done || open {
            return None;
        }
        let token = credential.token()?;
        let mut marks = None;
        self.token_to_read_in(host, token.to_string(), &mut marks)
            .or_else(|| self.team_to_read(host, token, &mut marks, found))
    }

    /// `token` (a key's, or a team's `team:<id>`), when this replica must read it from the store
    /// first.
    pub(super) fn token_to_read(&self, host: &dyn HttpHost, token: String) -> Option<String> {
        self.token_to_read_in(host, token, &mut None)
    }

    /// [`Self::token_to_read`] with the store's key marks read once for the request's checks
    /// (`marks`: read by the first that needs them).
    fn token_to_read_in(
        &self,
        host: &dyn HttpHost,
        token: String,
        marks: &mut Option<fleet::Marks>,
    ) -> Option<String> {
        let team = token.starts_with(keys::TEAM_TOKEN_PREFIX);
        let done = self
            .gateway()
            .is_none_or(|g| if team { g.keys.team_done } else { g.keys.done });
        if self.config.store.is_none() || done {
            return None;
        }
        let marks = marks.get_or_insert_with(|| fleet::Marks::read(host.store()));
        fleet::needs_read_with(host.store(), marks, &token, host.now_ms()).then_some(token)
    }

    /// The team of the key `token` as this replica knows it, when it must be read from the store
    /// first (a team made, changed or deleted through another replica).
    fn team_to_read(
        &self,
        host: &dyn HttpHost,
        token: &str,
        marks: &mut Option<fleet::Marks>,
        found: &mut Option<KeyDef>,
    ) -> Option<String> {
        let def = found.insert(keys::find(&self.config.keys, host.store(), token)?);
        let team = keys::team_token(def.team_id.as_deref()?);
        self.token_to_read_in(host, team, marks)
    }

    /// Reads `token` from the store and waits; `then` says what happens next.
    pub(super) fn read_key(
        &mut self,
        host: &mut dyn HttpHost,
        token: String,
        then: Then,
    ) -> Action {
        let timeout = self.config.store.as_ref().map_or(0, |s| s.call_timeout_ms);
        let started = fleet::read_started(host.store());
        let exchange = if crate::host::tick::store_down(host.store()) {
            None
        } else {
            get_call(&token, timeout)
        };
        if let Some(g) = self.gateway_mut() {
            g.keys.waiting = Some(KeyRead { token, started });
        }
        match exchange {
            Some(e) => self.wait_for_store(host, e, then),
            None => self.key_answered(host, then, Err(CallError::NotSent("store down".into()))),
        }
    }

    /// The store's answer to the key read: installed, then the request goes on.
    pub(super) fn key_answered(
        &mut self,
        host: &mut dyn HttpHost,
        then: Then,
        result: Result<Value, CallError>,
    ) -> Action {
        let read = self.gateway_mut().and_then(|g| g.keys.waiting.take());
        if let Some(read) = read {
            let team = read.token.starts_with(keys::TEAM_TOKEN_PREFIX);
            if let Some(g) = self.gateway_mut() {
                if team {
                    g.keys.team_done = true;
                } else {
                    g.keys.done = true;
                }
            }
            let installed = match &result {
                Ok(Value::String(text)) if team => fleet::install_team(
                    host.store(),
                    &self.config.teams,
                    &read.token,
                    text,
                    read.started,
                    host.now_ms(),
                )
                .map_err(|e| e.0),
                Ok(Value::String(text)) => fleet::install(
                    host.store(),
                    &self.config.keys,
                    &read.token,
                    text,
                    read.started,
                    host.now_ms(),
                )
                .map_err(|e| e.0),
                Ok(other) => Err(format!("tg_key_get answered {other}")),
                Err(e) => Err(e.to_string()),
            };
            if let Err(why) = installed {
                log::warn!("tollgate: could not read a key from the store: {why}");
                if let Some(g) = self.gateway_mut() {
                    g.keys.failed = true;
                }
            }
        }
        match then {
            Then::KeyHeaders => self.on_request_headers(host, true),
            Then::KeyBody { body_size } => self.authenticate_in_body(host, body_size),
            Then::AdminRead => self.admin_step(host),
            _ => Action::Continue,
        }
    }

    /// A key error, as the request should see it: a key unknown here while the store could not
    /// be read may exist, so the client is told to try again rather than that its key is invalid.
    pub(super) fn key_error(&self, e: ApiError) -> ApiError {
        let failed = self.gateway().is_some_and(|g| g.keys.failed);
        if failed && e.code.as_deref() == Some("invalid_api_key") {
            ApiError::new(
                503,
                "api_error",
                "The gateway's shared store did not answer, and this gateway has not seen this key yet.",
            )
            .with_code("store_unavailable")
        } else {
            e
        }
    }

    /// The hash of the presented key, when the request must wait for a store read (of the key,
    /// or of its team) before it is authenticated.
    pub(super) fn key_to_defer(
        &self,
        host: &dyn HttpHost,
        credential: &Credential,
        found: &mut Option<KeyDef>,
    ) -> Option<String> {
        self.key_to_read_for(host, credential, found)?;
        credential.token().map(str::to_string)
    }

    /// The body phase of a request whose key is read there: its key, then its team, are read if
    /// this replica must; then it is authenticated, and on.
    pub(super) fn authenticate_in_body(
        &mut self,
        host: &mut dyn HttpHost,
        body_size: usize,
    ) -> Action {
        let now = host.now_ms() / 1000;
        let State::Routed(routed) = &self.state else {
            return Action::Continue;
        };
        let Some(token) = routed.deferred_key.clone() else {
            return self.on_request_body(host, body_size, true);
        };
        let mut marks = None;
        let next = self
            .token_to_read_in(host, token.clone(), &mut marks)
            .or_else(|| self.team_to_read(host, &token, &mut marks, &mut None));
        if let Some(next) = next {
            return self.read_key(host, next, Then::KeyBody { body_size });
        }
        let State::Routed(routed) = &mut self.state else {
            return Action::Continue;
        };
        routed.deferred_key = None;
        let checked = auth::authenticate_token(&self.config, host.store(), &token, now)
            .and_then(|p| auth::check_model(&p, &routed.ctx.model).map(|()| p));
        match checked {
            Ok(p) => {
                routed.principal = p;
                self.on_request_body(host, body_size, true)
            }
            Err(e) => {
                let e = self.key_error(e);
                self.reply_error(host, &e)
            }
        }
    }

    /// A key-management call with a store: reads, dry run, writes through, then runs.
    pub(super) fn admin_through_store(
        &mut self,
        host: &mut dyn HttpHost,
        op: AdminOp,
        body: Vec<u8>,
    ) -> Action {
        // A team's record in the store is named by its id: a config team's id that cannot be
        // (see `keys::is_team_id`) can only be changed in the config.
        let mut reads = admin_targets(op, &body);
        let team_op = matches!(
            op,
            AdminOp::TeamNew
                | AdminOp::TeamUpdate
                | AdminOp::TeamDelete
                | AdminOp::TeamBlock
                | AdminOp::TeamUnblock
        );
        if let Some(t) = reads.iter().filter(|_| team_op).find_map(|t| {
            t.strip_prefix(keys::TEAM_TOKEN_PREFIX)
                .filter(|id| !keys::is_team_id(id))
        }) {
            let e = ApiError::invalid_param(
                "team_id",
                format!("Team '{t}' cannot be changed through the API with a shared store: its id is not 1 to 200 of letters, digits, '_', '.', ':' and '-'. Change it in the config."),
            );
            return self.reply_error(host, &e);
        }
        reads.retain(|t| fleet::needs_read(host.store(), t, host.now_ms()));
        reads.dedup();
        let flow = AdminFlow {
            op,
            body,
            now: host.now_ms() / 1000,
            random: host.random_bytes(),
            reads,
            puts: None,
        };
        self.state = State::AdminFleet(Box::new(flow));
        self.admin_step(host)
    }

    fn admin_step(&mut self, host: &mut dyn HttpHost) -> Action {
        let timeout = self.config.store.as_ref().map_or(0, |s| s.call_timeout_ms);
        let State::AdminFleet(flow) = &mut self.state else {
            return Action::Pause;
        };
        if let Some(token) = flow.reads.pop() {
            if let Some(g) = self.gateway_mut() {
                g.keys.done = false;
            }
            return self.read_key(host, token, Then::AdminRead);
        }
        if flow.puts.is_none() {
            let overlay = fleet::Overlay::new(host.store());
            let ctx = AdminCtx {
                config: &self.config,
                store: &overlay,
                now: flow.now,
                random: flow.random,
            };
            if let Err(e) = admin::handle(flow.op, &ctx, "", &flow.body) {
                return self.reply_error(host, &e);
            }
            let mut puts = fleet::written_keys(&overlay);
            puts.reverse();
            flow.puts = Some(puts);
        }
        let next = flow.puts.as_mut().and_then(Vec::pop);
        if let Some((token, record)) = next {
            let op = flow.op;
            return match put_call(op, &token, &record, timeout) {
                Some(e) => self.wait_for_store(host, e, Then::AdminPut),
                None => self.reply_error(
                    host,
                    &ApiError::invalid_request("The key's record is too large to store."),
                ),
            };
        }
        // Everything is in the store: the call itself, here.
        let ctx = AdminCtx {
            config: &self.config,
            store: host.store(),
            now: flow.now,
            random: flow.random,
        };
        match admin::handle(flow.op, &ctx, "", &flow.body) {
            Ok(out) => {
                json_reply(host, &out);
                self.state = State::Done;
                Action::Pause
            }
            Err(e) => self.reply_error(host, &e),
        }
    }

    /// The store's answer to one key write.
    pub(super) fn admin_put_answered(
        &mut self,
        host: &mut dyn HttpHost,
        result: Result<Value, CallError>,
    ) -> Action {
        let answer: Value = match &result {
            Ok(Value::String(text)) => serde_json::from_str(text).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        let field = |f: &str| answer.get(f).cloned().unwrap_or(Value::Null);
        if field("ok") == true {
            return self.admin_step(host);
        }
        let e = match field("error").as_str() {
            Some("alias_taken") => {
                let alias = field("alias");
                let alias = alias.as_str().unwrap_or_default();
                ApiError::invalid_param(
                    "key_alias",
                    format!("Key with alias '{alias}' already exists. Unique key aliases across all keys are required."),
                )
                .with_code("key_alias_exists")
            }
            Some("key_exists") => match &self.state {
                State::AdminFleet(flow) if flow.op == AdminOp::TeamNew => {
                    let id = serde_json::from_slice::<Value>(&flow.body)
                        .ok()
                        .and_then(|b| b.get("team_id").and_then(Value::as_str).map(String::from))
                        .unwrap_or_default();
                    ApiError::invalid_param(
                        "team_id",
                        format!("Team id = {id} already exists. Please use a different team id."),
                    )
                    .with_code("team_exists")
                }
                _ => ApiError::invalid_param("key", "This key already exists.")
                    .with_code("key_exists"),
            },
            _ => {
                let why = match &result {
                    Err(e) => e.to_string(),
                    Ok(v) => format!("it answered {v}"),
                };
                log::warn!("tollgate: the store did not take a key write: {why}");
                ApiError::new(
                    503,
                    "api_error",
                    "The gateway's shared store did not take the key change; nothing was changed. Try again.",
                )
                .with_code("store_unavailable")
            }
        };
        self.reply_error(host, &e)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{load, Config, Strictness};
    use crate::filter::Role;
    use crate::host::mock::MockHost;
    use crate::store::remote::Answer;
    use hashbrown::HashMap;
    use serde_json::json;

    fn config() -> Arc<Config> {
        let doc = json!({
            "model_list": [
                {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-provider-secret", "api_base": "http://127.0.0.1:9001/v1"}}
            ],
            "general_settings": {"master_key": "sk-master"},
            "tollgate_settings": {"store": {"url": "http://127.0.0.1:7379", "call_timeout_ms": 150}}
        });
        let r = load(&doc, &HashMap::new(), Strictness::Serve);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        Arc::new(r.config.unwrap())
    }

    fn chat(key: &str) -> MockHost {
        let auth = format!("Bearer {key}");
        let mut h = MockHost::request(
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
        )
        .metadata("model", b"gpt");
        h.request_body = br#"{"model":"gpt","messages":[{"role":"user","content":"hi"}]}"#.to_vec();
        h
    }

    /// webdis's answer carrying a function's JSON text.
    fn fcall(text: &str) -> Answer {
        Answer::Response {
            status: 200,
            body: serde_json::to_vec(&json!({ "FCALL": text })).unwrap(),
        }
    }

    fn record(key: &str, blocked: bool) -> String {
        serde_json::to_string(&keys::KeyDef {
            token: keys::hash_key(key),
            key_name: keys::key_name(key),
            blocked,
            ..Default::default()
        })
        .unwrap()
    }

    /// The headers phase routes without a principal; the body phase reads the key, then goes on.
    #[test]
    fn an_unseen_key_is_read_in_the_body_phase() {
        for (i, (answer, want)) in [
            (
                fcall(&format!(
                    r#"{{"key":{}}}"#,
                    record("sk-made-elsewhere-0", false)
                )),
                None,
            ),
            (
                fcall(&format!(
                    r#"{{"key":{}}}"#,
                    record("sk-made-elsewhere-1", true)
                )),
                Some(403),
            ),
            (fcall(r#"{"key":null}"#), Some(401)),
            (Answer::Unanswered, Some(503)),
            (fcall("garbage"), Some(503)),
            (fcall(r#"{"error":"token must be a key hash"}"#), Some(503)),
        ]
        .into_iter()
        .enumerate()
        {
            // A key of its own each time: a worker remembers a key the store does not have.
            let key = &format!("sk-made-elsewhere-{i}");
            let mut f = HttpFilter::new(config(), Role::Gateway);
            let mut h = chat(key);
            let action = f.on_request_headers(&mut h, false);
            assert_eq!(action, Action::Continue, "{:?}", h.reply);
            assert!(h.reply.is_none() && h.calls.is_empty());
            let n = h.request_body.len();
            assert_eq!(f.on_request_body(&mut h, n, true), Action::Pause);
            let call = String::from_utf8(h.calls[0].body.clone()).unwrap();
            assert!(call.starts_with("FCALL/tg_key_get/0/"), "{call}");
            assert!(call.ends_with(&keys::hash_key(key)), "{call}");
            let action = f.on_http_call_done(&mut h, answer);
            match want {
                None => {
                    assert_eq!(action, Action::Continue);
                    assert!(h.reply.is_none());
                    let sent: Value = serde_json::from_slice(&h.request_body).unwrap();
                    assert_eq!(sent["model"], "gpt-4o-mini");
                }
                Some(status) => {
                    assert_eq!(action, Action::Pause);
                    assert_eq!(
                        h.reply.as_ref().unwrap().0,
                        status,
                        "{i}: {:?}",
                        h.reply_json()
                    );
                    if status == 503 {
                        assert_eq!(h.reply_json()["error"]["code"], "store_unavailable");
                    }
                }
            }
        }
    }

    /// Once seen (after the first sync gave a cursor), a key's requests read nothing remote; a
    /// change to it makes the next one read it again.
    #[test]
    fn a_seen_key_is_not_read_again_until_it_changes() {
        let key = "sk-made-elsewhere-5678";
        let mut h = chat(key);
        fleet::apply_changes(&h.store, &[], Some("1-0"), false);
        let run = |h: &mut MockHost, answer: Option<Answer>| {
            // A new request on the same replica (its shared data).
            let store = h.store.clone();
            *h = chat(key);
            h.store = store;
            let mut f = HttpFilter::new(config(), Role::Gateway);
            f.on_request_headers(h, false);
            let n = h.request_body.len();
            let action = f.on_request_body(h, n, true);
            match answer {
                Some(a) => f.on_http_call_done(h, a),
                None => action,
            }
        };
        let answer = fcall(&format!(r#"{{"key":{}}}"#, record(key, false)));
        assert_eq!(
            run(&mut h, Some(answer)),
            Action::Continue,
            "{:?}",
            h.reply_json()
        );
        assert_eq!(h.calls.len(), 1);
        assert_eq!(run(&mut h, None), Action::Continue);
        assert!(h.calls.is_empty());
        let change = fleet::Change {
            token: keys::hash_key(key),
            ..Default::default()
        };
        fleet::apply_changes(&h.store, &[change], Some("2-0"), false);
        assert_eq!(run(&mut h, None), Action::Pause);
        assert_eq!(h.calls.len(), 1);
    }

    fn generate(body: Value) -> (HttpFilter, MockHost) {
        let mut f = HttpFilter::new(config(), Role::Gateway);
        let mut h = MockHost::request(
            "POST",
            "/key/generate",
            &[("authorization", "Bearer sk-master")],
        );
        h.request_body = serde_json::to_vec(&body).unwrap();
        assert_eq!(f.on_request_headers(&mut h, false), Action::Continue);
        let n = h.request_body.len();
        assert_eq!(f.on_request_body(&mut h, n, true), Action::Pause);
        (f, h)
    }

    /// `/key/generate` writes the key to the store first; it exists here only once the store
    /// took it, and a refusal by the store changes nothing here.
    #[test]
    fn the_admin_api_writes_through_the_store() {
        let (mut f, mut h) = generate(json!({"key_alias": "a", "key": "sk-custom-123456"}));
        assert!(h.reply.is_none());
        let token = keys::hash_key("sk-custom-123456");
        let call = String::from_utf8(h.calls[0].body.clone()).unwrap();
        assert!(
            call.starts_with(&format!("FCALL/tg_key_put/0/{token}/")),
            "{call}"
        );
        assert!(keys::find(&hashbrown::HashMap::new(), &h.store, &token).is_none());
        f.on_http_call_done(&mut h, fcall(r#"{"ok":true,"id":"1-0"}"#));
        assert_eq!(h.reply.as_ref().unwrap().0, 200);
        assert_eq!(h.reply_json()["key"], "sk-custom-123456");
        assert!(keys::find(&hashbrown::HashMap::new(), &h.store, &token).is_some());

        for (answer, status, code) in [
            (
                fcall(r#"{"ok":false,"error":"alias_taken","alias":"a"}"#),
                400,
                "key_alias_exists",
            ),
            (
                fcall(r#"{"ok":false,"error":"key_exists"}"#),
                400,
                "key_exists",
            ),
            (Answer::Unanswered, 503, "store_unavailable"),
            (fcall("[1,2"), 503, "store_unavailable"),
        ] {
            let (mut f, mut h) = generate(json!({"key_alias": "a", "key": "sk-custom-999999"}));
            f.on_http_call_done(&mut h, answer);
            assert_eq!(h.reply.as_ref().unwrap().0, status);
            assert_eq!(h.reply_json()["error"]["code"], code);
            let token = keys::hash_key("sk-custom-999999");
            assert!(keys::find(&hashbrown::HashMap::new(), &h.store, &token).is_none());
        }
        // A call the dry run refuses never reaches the store.
        let (_, h) = generate(json!({"max_budget": "lots"}));
        assert!(h.calls.is_empty());
        assert_eq!(h.reply.as_ref().unwrap().0, 400);
    }

    fn team_record(id: &str, blocked: bool) -> String {
        serde_json::to_string(&keys::TeamDef {
            team_id: id.into(),
            blocked,
            generation: Some("g1".into()),
            ..Default::default()
        })
        .unwrap()
    }

    /// A key of a team made on another replica: the key is read, then its team, in the body
    /// phase; a blocked team refuses it (403 `team_blocked`), a team gone refuses it as unknown.
    #[test]
    fn an_unseen_team_is_read_after_its_key() {
        for (i, (team_answer, want)) in [
            (
                fcall(&format!(r#"{{"key":{}}}"#, team_record("ml0", false))),
                None,
            ),
            (
                fcall(&format!(r#"{{"key":{}}}"#, team_record("ml1", true))),
                Some(403),
            ),
            (fcall(r#"{"key":null}"#), Some(401)),
            (Answer::Unanswered, Some(503)),
        ]
        .into_iter()
        .enumerate()
        {
            let key = &format!("sk-team-member-{i}");
            let mut def: keys::KeyDef = serde_json::from_str(&record(key, false)).unwrap();
            // A team of its own each time: a worker remembers a team the store does not have.
            let team = format!("ml{i}");
            def.team_id = Some(team.clone());
            def.team_generation = Some("g1".into());
            let key_answer = fcall(&json!({"key": def}).to_string());
            let mut f = HttpFilter::new(config(), Role::Gateway);
            let mut h = chat(key);
            assert_eq!(f.on_request_headers(&mut h, false), Action::Continue);
            let n = h.request_body.len();
            assert_eq!(f.on_request_body(&mut h, n, true), Action::Pause);
            assert_eq!(
                f.on_http_call_done(&mut h, key_answer),
                Action::Pause,
                "{i} {:?}",
                h.reply_json()
            );
            assert_eq!(
                h.calls.len(),
                2,
                "{i} {:?} {:?}",
                h.reply,
                h.calls
                    .iter()
                    .map(|c| String::from_utf8_lossy(&c.body).to_string())
                    .collect::<Vec<_>>()
            );
            let call = String::from_utf8(h.calls[1].body.clone()).unwrap();
            assert!(
                call.ends_with(&format!("/tg_key_get/0/team%3A{team}")),
                "{call}"
            );
            let action = f.on_http_call_done(&mut h, team_answer);
            match want {
                None => assert_eq!(action, Action::Continue, "{:?}", h.reply_json()),
                Some(status) => {
                    assert_eq!(
                        h.reply.as_ref().unwrap().0,
                        status,
                        "{i}: {:?}",
                        h.reply_json()
                    );
                    if status == 403 {
                        assert_eq!(h.reply_json()["error"]["code"], "team_blocked");
                    }
                }
            }
        }
    }

    /// `/team/new` writes the team through the store (`tg_key_put`, token `team:<id>`, absent
    /// expected); a team the store has already is a 400 `team_exists`, and nothing changes here.
    #[test]
    fn team_writes_go_through_the_store() {
        let new = |body: Value| {
            let mut f = HttpFilter::new(config(), Role::Gateway);
            let mut h = MockHost::request(
                "POST",
                "/team/new",
                &[("authorization", "Bearer sk-master")],
            );
            h.request_body = serde_json::to_vec(&body).unwrap();
            assert_eq!(f.on_request_headers(&mut h, false), Action::Continue);
            let n = h.request_body.len();
            assert_eq!(f.on_request_body(&mut h, n, true), Action::Pause);
            (f, h)
        };
        // Ids no other test uses: a worker (a test thread) remembers teams the store lacks.
        let (mut f, mut h) = new(json!({"team_id": "written", "max_budget": 3}));
        // The team is read first (it may exist elsewhere), then written.
        let read = String::from_utf8(h.calls[0].body.clone()).unwrap();
        assert!(read.ends_with("/tg_key_get/0/team%3Awritten"), "{read}");
        f.on_http_call_done(&mut h, fcall(r#"{"key":null}"#));
        let put = String::from_utf8(h.calls[1].body.clone()).unwrap();
        assert!(
            put.starts_with("FCALL/tg_key_put/0/team%3Awritten/"),
            "{put}"
        );
        assert!(put.contains("absent"), "{put}");
        assert!(keys::find_team(&HashMap::new(), &h.store, "written").is_none());
        f.on_http_call_done(&mut h, fcall(r#"{"ok":true,"id":"1-0"}"#));
        assert_eq!(h.reply.as_ref().unwrap().0, 200, "{:?}", h.reply_json());
        assert_eq!(h.reply_json()["team_id"], "written");
        assert!(keys::find_team(&HashMap::new(), &h.store, "written").is_some());

        let (mut f, mut h) = new(json!({"team_id": "written-once"}));
        f.on_http_call_done(&mut h, fcall(r#"{"key":null}"#));
        f.on_http_call_done(&mut h, fcall(r#"{"ok":false,"error":"key_exists"}"#));
        assert_eq!(h.reply.as_ref().unwrap().0, 400);
        assert_eq!(h.reply_json()["error"]["code"], "team_exists");
        assert!(keys::find_team(&HashMap::new(), &h.store, "written-once").is_none());
    }
}
