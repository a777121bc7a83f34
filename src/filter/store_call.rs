//! A request that waits for the shared store: the filter sends one call for the stream (a
//! [`Exchange`], which loads the function library and retries if Redis lacks it), returns `Pause`,
//! and decides when the host hands the answer to [`HttpFilter::on_http_call_done`]: answer the
//! client, or go on with the request. What the answer is for is a [`Then`]; the engine adds its
//! own (an admission near a limit, an unknown key).
//!
//! proxy-wasm can wait this way in the body phase (Envoy's buffer filter holds the request) and,
//! for a request without a body, in the headers phase; the dynamic module in either.

use serde_json::Value;

use super::{HttpFilter, State};
use crate::error::ApiError;
use crate::host::tick::{call_metrics, note_store_state, send_request};
use crate::host::{Action, HttpHost};
use crate::stats;
use crate::store::remote::{self, Answer, CallError, Exchange};
use crate::store::tick;

/// `GET /tollgate/store/health` (master key): one call to the store, answered with its result.
pub const HEALTH_PATH: &str = "/tollgate/store/health";

/// A request header that makes a master-key API request wait, in its body phase, for one store
/// call before it goes on (or a 503 when the store does not answer): a test aid for the body
/// phase's wait-and-resume, harmless since only the master key can use it.
pub const PROBE_HEADER: &str = "x-tollgate-store-probe";

/// The function library whose presence the health check reports.
pub const LIBRARY_NAME: &str = "tollgate";

/// What a store answer is for.
#[derive(Debug, Clone, PartialEq)]
pub enum Then {
    /// `GET /tollgate/store/health`: answered with the store's state.
    Health { started_ms: u64 },
    /// [`PROBE_HEADER`]: the body phase runs again once the store answered.
    Probe { body_size: usize },
    /// A request the store admits or refuses (`tg_admit`), then goes on or is answered.
    Admit { body_size: usize },
    /// A key read (`tg_key_get`) for a request without a body: its headers phase runs again.
    KeyHeaders,
    /// A key read for an API request: authenticated, then its body phase runs again.
    KeyBody { body_size: usize },
    /// A key-management call's read of a key it names.
    AdminRead,
    /// A key-management call's write of a key (`tg_key_put`).
    AdminPut,
    /// `GET /spend/logs`: answered with the records.
    SpendLogs,
    /// `GET /key/info` (its query): answered with the key and the fleet's spend.
    KeyInfo { query: String },
    /// `GET /team/info` (its query): answered with the team and the fleet's spend.
    TeamInfo { query: String },
    /// A Responses request's conversation (`tg_response_chain`): its body phase goes on with it.
    Conversation { body_size: usize, id: String },
    /// A Responses turn written (`tg_response_put`): the response goes on.
    KeptResponse,
    /// A kept response read (`tg_response_get`): answered with it, or deleted.
    KeptRead(Box<super::kept_responses::KeptCall>),
    /// A kept response deleted (`tg_response_delete`, its id): answered.
    KeptDeleted(String),
    /// The store's copy of a response its deployment deleted, deleted: the response goes on.
    KeptForgotten,
}

/// The stream's call in flight.
#[derive(Debug)]
pub struct Waiting {
    exchange: Exchange,
    then: Then,
}

/// `FUNCTION LIST LIBRARYNAME tollgate`: read-only, and webdis shows one entry per library found
/// (it cannot render the entries themselves).
fn health_call(timeout_ms: u64) -> Exchange {
    let body = format!("FUNCTION/LIST/LIBRARYNAME/{LIBRARY_NAME}").into_bytes();
    Exchange::new(remote::Request {
        what: "function_list",
        path: "/".to_string(),
        body,
        timeout_ms,
    })
}

impl HttpFilter {
    /// `GET /tollgate/store/health`, already authenticated as the master key.
    pub(super) fn store_health(&mut self, host: &mut dyn HttpHost) -> Action {
        let Some(store) = &self.config.store else {
            let e = ApiError::not_found(
                "No shared store is configured (tollgate_settings.store): this gateway's state is its own.",
            )
            .with_code("store_not_configured");
            return self.reply_error(host, &e);
        };
        let call = health_call(store.call_timeout_ms);
        self.state = State::Done;
        let started_ms = host.now_ms();
        self.wait_for_store(host, call, Then::Health { started_ms })
    }

    /// Whether the client asked for the store probe (it counts only for the master key). Read
    /// only when a store is configured.
    pub(super) fn probe_asked(&self, host: &dyn HttpHost) -> bool {
        self.role() == super::Role::Gateway
            && self.config.store.is_some()
            && host.request_header(PROBE_HEADER).is_some()
    }

    /// The body phase of a probed request: one store call first, then the body phase again.
    pub(super) fn probe_store(&mut self, host: &mut dyn HttpHost, body_size: usize) -> Action {
        let timeout = self.config.store.as_ref().map_or(0, |s| s.call_timeout_ms);
        self.wait_for_store(host, health_call(timeout), Then::Probe { body_size })
    }

    /// Sends the exchange's first request for this stream and waits for its answer (`Pause`).
    /// A call the host cannot send is decided at once, as an answer that never came.
    pub fn wait_for_store(
        &mut self,
        host: &mut dyn HttpHost,
        exchange: Exchange,
        then: Then,
    ) -> Action {
        let Some(endpoint) = self.config.store.as_ref().map(|s| s.endpoint.clone()) else {
            return self.store_answered(host, then, Err(CallError::NotSent("no store".into())));
        };
        match send_request(&endpoint, exchange.request(), |c| host.dispatch_call(c)) {
            Ok(()) => match self.gateway_mut() {
                Some(g) => {
                    g.waiting = Some(Box::new(Waiting { exchange, then }));
                    Action::Pause
                }
                // Only the gateway waits for the store; an attempt never asks it.
                None => self.store_answered(
                    host,
                    then,
                    Err(CallError::NotSent(
                        "an attempt does not wait for the store".into(),
                    )),
                ),
            },
            Err(e) => {
                log::warn!("tollgate: could not send {}: {e}", exchange.request().what);
                account(host, exchange.request().what, Err(&e));
                self.store_answered(host, then, Err(e))
            }
        }
    }

    /// How the stream's store call ended (proxy-wasm's `on_http_call_response`, the dynamic
    /// module's callout hook). `Continue`: the request goes on; `Pause`: it was answered here, or
    /// waits for another call.
    pub fn on_http_call_done(&mut self, host: &mut dyn HttpHost, answer: Answer) -> Action {
        let Some(mut waiting) = self.gateway_mut().and_then(|g| g.waiting.take()) else {
            log::warn!("tollgate: an HTTP call answered a stream that waits for none");
            return Action::Pause;
        };
        let what = waiting.exchange.request().what;
        match waiting.exchange.answer(&answer) {
            None => {
                let parsed = remote::parse(&answer);
                account(host, what, parsed.as_ref().map(|_| ()));
                let Waiting { exchange, then } = *waiting;
                self.wait_for_store(host, exchange, then)
            }
            Some(result) => {
                account(host, what, result.as_ref().map(|_| ()));
                self.store_answered(host, waiting.then, result)
            }
        }
    }

    /// Whether the stream waits for a store call.
    pub fn waits_for_store(&self) -> bool {
        self.gateway().is_some_and(|g| g.waiting.is_some())
    }

    fn store_answered(
        &mut self,
        host: &mut dyn HttpHost,
        then: Then,
        result: Result<Value, CallError>,
    ) -> Action {
        match then {
            Then::Health { started_ms } => {
                let replica = tick::replica(host.store());
                match result {
                    Ok(v) => {
                        let loaded = v.as_array().is_some_and(|a| !a.is_empty());
                        let body = serde_json::json!({
                            "status": "healthy",
                            "replica": replica,
                            "library": LIBRARY_NAME,
                            "library_loaded": loaded,
                            "latency_ms": host.now_ms().saturating_sub(started_ms),
                        });
                        super::json_reply(host, &crate::json::to_vec(&body));
                        self.state = State::Done;
                        Action::Pause
                    }
                    Err(e) => self.reply_error(host, &unavailable(&e)),
                }
            }
            Then::Probe { body_size } => match result {
                Ok(_) => self.on_request_body(host, body_size, true),
                Err(e) => self.reply_error(host, &unavailable(&e)),
            },
            Then::Admit { body_size } => match &result {
                Ok(Value::String(text)) => self.fleet_answered(host, body_size, Ok(text)),
                _ => self.fleet_answered(host, body_size, Err(())),
            },
            Then::KeyHeaders | Then::KeyBody { .. } | Then::AdminRead => {
                self.key_answered(host, then, result)
            }
            Then::AdminPut => self.admin_put_answered(host, result),
            Then::SpendLogs => self.spend_logs_answered(host, result),
            Then::KeyInfo { query } => self.key_info_answered(host, &query, result),
            Then::TeamInfo { query } => self.team_info_answered(host, &query, result),
            Then::Conversation { body_size, id } => {
                self.conversation_read(host, body_size, &id, result)
            }
            Then::KeptRead(call) => self.kept_read(host, &call, result),
            Then::KeptDeleted(id) => self.kept_deleted(host, &id, result),
            Then::KeptForgotten => {
                if let Err(e) = &result {
                    log::warn!("tollgate: a deleted response stays in the store: {e}");
                }
                Action::Continue
            }
            Then::KeptResponse => {
                let written = match &result {
                    Ok(Value::String(text)) => text.starts_with(r#"{"ok":true"#),
                    _ => false,
                };
                if !written {
                    let why = match &result {
                        Ok(v) => v.to_string(),
                        Err(e) => e.to_string(),
                    };
                    log::warn!("tollgate: a Responses API turn was not kept: {why}");
                }
                Action::Continue
            }
        }
    }
}

/// The store did not answer a call a request waited for (a 503 saying why).
pub(super) fn unavailable(e: &CallError) -> ApiError {
    ApiError::new(
        503,
        "api_error",
        format!("The shared store did not answer: {e}."),
    )
    .with_code("store_unavailable")
}

/// The metrics and the store-state log of one finished request of a stream's call.
fn account(host: &mut dyn HttpHost, what: &str, outcome: Result<(), &CallError>) {
    let (counter, up) = call_metrics(what, outcome);
    host.increment_counter(&counter, 1);
    host.set_gauge(&stats::store_up(), up);
    let now = host.now_ms();
    note_store_state(host.store(), now, outcome);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{load, Config, Strictness};
    use crate::filter::Role;
    use crate::host::mock::MockHost;
    use crate::store::tick::ensure_replica;
    use hashbrown::HashMap;
    use serde_json::json;

    fn config(with_store: bool) -> Arc<Config> {
        let mut doc = json!({
            "model_list": [
                {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-provider-secret", "api_base": "http://127.0.0.1:9001/v1"}}
            ],
            "general_settings": {"master_key": "sk-master"},
            "keys": [{"key": "sk-virtual", "key_alias": "v"}]
        });
        if with_store {
            doc["tollgate_settings"] = json!({"store": {"url": "http://127.0.0.1:7379", "auth": "os.environ/STORE_AUTH", "call_timeout_ms": 150}});
        }
        let env: HashMap<String, String> = [("STORE_AUTH".to_string(), "tollgate:pw".to_string())]
            .into_iter()
            .collect();
        let r = load(&doc, &env, Strictness::Serve);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        Arc::new(r.config.unwrap())
    }

    fn health(key: &str) -> MockHost {
        let auth = format!("Bearer {key}");
        let h = MockHost::request("GET", HEALTH_PATH, &[("authorization", &auth)]);
        ensure_replica(&h.store, [0xcd; 32]);
        h
    }

    fn ok(body: &str) -> Answer {
        Answer::Response {
            status: 200,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_health_check_waits_for_one_call_and_answers_with_it() {
        let mut f = HttpFilter::new(config(true), Role::Gateway);
        let mut h = health("sk-master");
        assert_eq!(f.on_request_headers(&mut h, true), Action::Pause);
        assert!(h.reply.is_none() && f.waits_for_store());
        let call = &h.calls[0];
        assert_eq!(call.cluster, "tollgate_store");
        assert_eq!(call.body, b"FUNCTION/LIST/LIBRARYNAME/tollgate");
        assert_eq!(call.timeout_ms, 150);
        let header = |name: &str| {
            call.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header(":authority"), Some("127.0.0.1:7379"));
        assert_eq!(header("authorization"), Some("Basic dG9sbGdhdGU6cHc="));
        h.now_ms += 4;
        assert_eq!(
            f.on_http_call_done(&mut h, ok(r#"{"FUNCTION":[null]}"#)),
            Action::Pause
        );
        let (status, _, _) = h.reply.as_ref().unwrap();
        assert_eq!(*status, 200);
        assert_eq!(
            h.reply_json(),
            json!({"status": "healthy", "replica": "cdcdcdcdcdcdcdcd", "library": "tollgate",
                   "library_loaded": true, "latency_ms": 4})
        );
        assert_eq!(
            h.counters
                .get("tollgate.store_calls_total.call.function_list.outcome.ok"),
            Some(&1)
        );
        assert_eq!(h.gauges.get("tollgate.store_up"), Some(&1));
        // A stray answer afterwards changes nothing.
        assert_eq!(f.on_http_call_done(&mut h, ok("{}")), Action::Pause);

        let mut f = HttpFilter::new(config(true), Role::Gateway);
        let mut h = health("sk-master");
        f.on_request_headers(&mut h, true);
        f.on_http_call_done(&mut h, ok(r#"{"FUNCTION":[]}"#));
        assert_eq!(h.reply_json()["library_loaded"], false);
    }

    #[test]
    fn an_unanswered_health_check_is_a_503() {
        for refuse in [false, true] {
            let mut f = HttpFilter::new(config(true), Role::Gateway);
            let mut h = health("sk-master");
            h.refuse_calls = refuse;
            let action = f.on_request_headers(&mut h, true);
            if !refuse {
                assert!(h.reply.is_none());
                f.on_http_call_done(&mut h, Answer::Unanswered);
            }
            assert_eq!(action, Action::Pause);
            let (status, _, _) = h.reply.as_ref().unwrap();
            assert_eq!(*status, 503);
            assert_eq!(h.reply_json()["error"]["code"], "store_unavailable");
            assert_eq!(h.gauges.get("tollgate.store_up"), Some(&0));
            let outcome = if refuse { "not_sent" } else { "unanswered" };
            assert_eq!(
                h.counters.get(&format!(
                    "tollgate.store_calls_total.call.function_list.outcome.{outcome}"
                )),
                Some(&1)
            );
        }
    }

    #[test]
    fn the_health_check_needs_the_master_key_and_a_store() {
        let mut f = HttpFilter::new(config(true), Role::Gateway);
        let mut h = health("sk-virtual");
        assert_eq!(f.on_request_headers(&mut h, true), Action::Pause);
        assert_eq!(h.reply.as_ref().unwrap().0, 403);
        assert!(h.calls.is_empty());
        let mut f = HttpFilter::new(config(false), Role::Gateway);
        let mut h = health("sk-master");
        f.on_request_headers(&mut h, true);
        assert_eq!(h.reply.as_ref().unwrap().0, 404);
        assert_eq!(h.reply_json()["error"]["code"], "store_not_configured");
        let mut f = HttpFilter::new(config(true), Role::Gateway);
        let mut h = MockHost::request(
            "POST",
            HEALTH_PATH,
            &[("authorization", "Bearer sk-master")],
        );
        f.on_request_headers(&mut h, true);
        assert_eq!(h.reply.as_ref().unwrap().0, 405);
    }

    fn probed(key: &str) -> MockHost {
        let auth = format!("Bearer {key}");
        let mut h = MockHost::request(
            "POST",
            "/v1/chat/completions",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                (PROBE_HEADER, "1"),
            ],
        )
        .metadata("model", b"gpt");
        h.request_body = br#"{"model":"gpt","messages":[{"role":"user","content":"hi"}]}"#.to_vec();
        h
    }

    /// The probe: the body phase waits for the store, then runs (the body is translated and the
    /// request goes on), or the request is refused when the store does not answer.
    #[test]
    fn the_body_phase_waits_for_the_store_then_goes_on() {
        let mut f = HttpFilter::new(config(true), Role::Gateway);
        let mut h = probed("sk-master");
        assert_eq!(f.on_request_headers(&mut h, false), Action::Continue);
        let n = h.request_body.len();
        assert_eq!(f.on_request_body(&mut h, n, false), Action::Pause);
        assert!(h.calls.is_empty());
        assert_eq!(f.on_request_body(&mut h, n, true), Action::Pause);
        assert_eq!(h.calls.len(), 1);
        assert!(h.request_body.starts_with(br#"{"model":"gpt""#));
        assert_eq!(
            f.on_http_call_done(&mut h, ok(r#"{"FUNCTION":[]}"#)),
            Action::Continue
        );
        assert!(h.reply.is_none());
        let sent: serde_json::Value = serde_json::from_slice(&h.request_body).unwrap();
        assert_eq!(sent["model"], "gpt-4o-mini");

        let mut f = HttpFilter::new(config(true), Role::Gateway);
        let mut h = probed("sk-master");
        f.on_request_headers(&mut h, false);
        f.on_request_body(&mut h, n, true);
        let forbidden = Answer::Response {
            status: 403,
            body: Vec::new(),
        };
        assert_eq!(f.on_http_call_done(&mut h, forbidden), Action::Pause);
        assert_eq!(h.reply.as_ref().unwrap().0, 503);
        assert!(h.reply_json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("403"));

        // Only the master key can make a request wait, and only with a store.
        for (key, store) in [("sk-virtual", true), ("sk-master", false)] {
            let mut f = HttpFilter::new(config(store), Role::Gateway);
            let mut h = probed(key);
            // The config key, as this replica knows it once the store said it has no override.
            let token = crate::keys::hash_key("sk-virtual");
            crate::keys::fleet::apply_changes(&h.store, &[], Some("1-0"), false);
            let started = crate::keys::fleet::read_started(&h.store);
            let keys = &config(true).keys;
            crate::keys::fleet::install(&h.store, keys, &token, r#"{"key":null}"#, started, 0)
                .unwrap();
            f.on_request_headers(&mut h, false);
            assert_eq!(f.on_request_body(&mut h, n, true), Action::Continue);
            assert!(h.calls.is_empty());
        }
    }
}
