//! The request's path through the gateway, one method per host callback. Pure: it talks to Envoy
//! only through [`HttpHost`], so native tests drive it with a mock host.
//!
//! Envoy 1.40 fixes what happens where (see ARCHITECTURE.md): request headers are final after the
//! headers phase, so routing uses the `model` that Envoy's `json_to_metadata` filter extracted
//! before this filter runs; the body is rewritten (and the request admitted against its key's
//! limits) in the body phase, while Envoy's buffer filter holds the request back from the router;
//! response headers are decided from headers alone and the body is translated in the body phase,
//! chunk by chunk when streaming; `on_done` settles the cost however the stream ended.
//!
//! The same filter runs in two roles. The **gateway** (on the listener clients reach) authenticates,
//! admits and accounts. A model group with one deployment and no retries or fallbacks is routed
//! **directly**: the gateway translates for it. Any other group is handed to the **attempt**
//! listener (in-process, behind Envoy's retry policy): there, per attempt, the filter chooses a
//! deployment, translates, and on a failure tells Envoy whether to try again.

mod accounting;
mod attempt;
pub mod body_metadata;
mod count_tokens;
mod endpoint;
mod fleet_admit;
mod gateway;
pub mod kept_responses;
mod key_read;
mod management;
mod response;
mod routed;
mod settle;
mod spend_logs;
pub mod store_call;
mod stored_response;
mod upstream;

use std::sync::Arc;

use crate::auth::Principal;
use crate::config::Config;
use crate::error::ApiError;
use crate::host::{Action, HttpHost};
use crate::ingress::ClientApi;
use crate::keys::admin::AdminOp;
use crate::providers::{self, Operation, Provider};
use crate::router::attempts;
use attempt::AttemptCtx;
use endpoint::{body_refusal, Unread};
use response::{json_reply, keep_allowed_response_headers};
use routed::Routed;
use settle::finish_attempt;

/// The request header the route matches on to pick the deployment's cluster (`cluster_header`).
pub const CLUSTER_HEADER: &str = "x-tollgate-cluster";
/// Present on requests the gateway hands to the attempt listener (the route matches on it).
pub const ATTEMPT_HEADER: &str = attempt::ATTEMPT_ID;
/// Set by an attempt that wants another (the handing-off route retries on it).
pub const ATTEMPT_RETRY_HEADER: &str = attempt::RETRY;
/// Dynamic metadata namespace written by `json_to_metadata` in front of the filter.
pub const METADATA_NAMESPACE: &str = "tollgate";
/// Dynamic metadata namespace holding a non-streaming response's usage (see `render`).
pub const USAGE_NAMESPACE: &str = "tollgate_usage";
/// Dynamic metadata namespace holding an error response's fields, in the attempt listener.
pub const ERROR_NAMESPACE: &str = "tollgate_error";
/// Dynamic metadata namespace (the dynamic module) of the request's spend record for the access
/// log; the `.wasm` writes filter state `wasm.tollgate.<field>` instead.
pub const LOG_NAMESPACE: &str = "tollgate_log";
/// The spend record's fields an access log shows (see `render`).
pub const LOG_FIELDS: [&str; 12] = [
    "request_id",
    "key_alias",
    "key_hash",
    "team_id",
    "model_group",
    "model_id",
    "provider",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost",
    "status",
];
/// The attempt listener's root id (the gateway's is `tollgate`).
pub const ATTEMPT_ROOT_ID: &str = "tollgate_attempt";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Gateway,
    Attempt,
}

pub struct HttpFilter {
    config: Arc<Config>,
    /// The role this filter plays, with what only that role keeps across the stream's callbacks.
    role: RoleState,
    state: State,
    /// The API the client speaks (from the path; behind the attempt listener, from the
    /// gateway's routing header): what answers and errors are rendered in.
    api: ClientApi,
}

/// A filter's role and its own state: the gateway's (`filter/gateway.rs`: key reads, store
/// calls the stream waits for) or an attempt's (`filter/attempt.rs`).
enum RoleState {
    Gateway(Box<Gateway>),
    Attempt(Attempt),
}

/// What the gateway role keeps across a stream's callbacks.
#[derive(Default)]
struct Gateway {
    /// A store call the stream waits for (see `store_call`).
    waiting: Option<Box<store_call::Waiting>>,
    /// The master key asked the body phase to wait for the store first (`store_call::PROBE_HEADER`).
    store_probe: bool,
    /// Keys read from the store for this stream (see `key_read`).
    keys: key_read::KeyState,
    /// The stream's store call was made from its response phase (see `kept_responses`).
    response_waits: bool,
}

/// What the attempt role keeps across a stream's callbacks.
#[derive(Default)]
struct Attempt {
    /// An attempt answered locally still owes its deployment's health record an end.
    unfinished: Option<(Box<AttemptCtx>, Option<usize>)>,
}

enum State {
    /// Nothing decided yet.
    Start,
    /// Answered locally, or not ours: let everything pass.
    Done,
    /// A key-management call waiting for its body.
    Admin(AdminOp),
    /// A key-management call writing through the shared store.
    AdminFleet(Box<key_read::AdminFlow>),
    /// A body Envoy's `json_to_metadata` could not read a model from (`body_error`, or nothing
    /// extracted): refused from the body phase with what the gateway's own parse finds wrong in
    /// it, so both forms give the same answer.
    Unparsable(Operation, Unread),
    Routed(Box<Routed>),
    /// `POST /v1/messages/count_tokens` for a deployment that is not Anthropic's: an estimate,
    /// answered once the body is in.
    CountTokens,
    /// `POST /v1/messages/count_tokens` for an Anthropic deployment: asked of its own endpoint
    /// (the client's body with the deployment's model), the answer relayed. No spend.
    CountTokensUpstream(String),
    /// `GET`/`DELETE /v1/responses/{id}...`, asked of the deployment holding the response.
    StoredResponse(Box<stored_response::Stored>),
}

impl HttpFilter {
    pub fn new(config: Arc<Config>, role: Role) -> Self {
        HttpFilter {
            config,
            role: match role {
                Role::Gateway => RoleState::Gateway(Box::default()),
                Role::Attempt => RoleState::Attempt(Attempt::default()),
            },
            state: State::Start,
            api: ClientApi::Chat,
        }
    }

    pub fn on_request_headers(&mut self, host: &mut dyn HttpHost, end_of_stream: bool) -> Action {
        // Read before routing removes the client's headers.
        let probe = self.probe_asked(host);
        self.api = match self.role() {
            Role::Gateway => ClientApi::of_path(&host.request_header(":path").unwrap_or_default()),
            Role::Attempt => {
                ClientApi::from_name(&host.request_header(attempt::CLIENT_API).unwrap_or_default())
            }
        };
        let next = match self.role() {
            Role::Gateway => self
                .route_gateway(host, end_of_stream)
                .map_err(|e| (e, None)),
            Role::Attempt => self.route_attempt(host),
        };
        self.enter(host, next, probe)
    }

    pub fn on_request_body(
        &mut self,
        host: &mut dyn HttpHost,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let waits_for_body = matches!(
            self.state,
            State::Admin(_)
                | State::CountTokens
                | State::CountTokensUpstream(_)
                | State::Unparsable(..)
                | State::Routed(_)
        );
        if !waits_for_body {
            return Action::Continue;
        }
        if !end_of_stream {
            // Buffer until the whole body is here (json_to_metadata has usually buffered it already).
            return Action::Pause;
        }
        match self.state {
            State::Admin(op) => self.admin_body(host, op, body_size),
            State::CountTokens | State::CountTokensUpstream(_) => {
                self.count_tokens_body(host, body_size)
            }
            State::Unparsable(op, why) => {
                let body = host.request_body(body_size).unwrap_or_default();
                self.reply_error(host, &body_refusal(op, why, &body))
            }
            _ => self.routed_body(host, body_size),
        }
    }

    pub fn on_response_headers(&mut self, host: &mut dyn HttpHost, end_of_stream: bool) -> Action {
        match self.state {
            State::CountTokensUpstream(_) => {
                // Anthropic's own count, relayed (its errors are in the client's shape already).
                let allowed = providers::anthropic::ANTHROPIC.response_headers();
                keep_allowed_response_headers(host, allowed, &self.config.secrets, false);
                Action::Continue
            }
            State::Routed(_) => self.response_headers(host, end_of_stream),
            State::StoredResponse(_) => self.stored_response_headers(host),
            _ => Action::Continue,
        }
    }

    pub fn on_response_body(
        &mut self,
        host: &mut dyn HttpHost,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        if let State::StoredResponse(_) = self.state {
            return self.stored_response_body(host, body_size, end_of_stream);
        }
        self.response_body(host, body_size, end_of_stream)
    }

    /// The stream is over, however it ended (completed, refused, reset, client gone). The gateway
    /// charges what the request cost and frees its slots: a request that reached the provider but
    /// never delivered its usage (a stream cut off, a client gone before the response) is charged
    /// its reservation, never zero; an error response is charged nothing. An attempt records how
    /// its deployment did and, when it was the request's last, frees the request's routing state.
    pub fn on_done(&mut self, host: &mut dyn HttpHost) {
        let unfinished = match &mut self.role {
            RoleState::Attempt(a) => a.unfinished.take(),
            RoleState::Gateway(_) => None,
        };
        if let Some((a, deployment)) = unfinished {
            finish_attempt(&self.config, host, &a, deployment, None);
            return;
        }
        self.settle(host);
    }
}

impl HttpFilter {
    /// The role this filter plays.
    fn role(&self) -> Role {
        match self.role {
            RoleState::Gateway(_) => Role::Gateway,
            RoleState::Attempt(_) => Role::Attempt,
        }
    }

    /// The gateway role's own state; `None` in the attempt listener, which keeps none of it.
    fn gateway(&self) -> Option<&Gateway> {
        match &self.role {
            RoleState::Gateway(g) => Some(g),
            RoleState::Attempt(_) => None,
        }
    }

    fn gateway_mut(&mut self) -> Option<&mut Gateway> {
        match &mut self.role {
            RoleState::Gateway(g) => Some(g),
            RoleState::Attempt(_) => None,
        }
    }
}

impl HttpFilter {
    /// Enters what the headers phase decided: the state the body phase starts from, or a reply.
    /// `probe`: the client asked the body phase to wait for the store first.
    fn enter(
        &mut self,
        host: &mut dyn HttpHost,
        next: Result<Next, (ApiError, Option<Box<AttemptCtx>>)>,
        probe: bool,
    ) -> Action {
        match next {
            Ok(Next::Routed(routed)) => {
                if let RoleState::Gateway(g) = &mut self.role {
                    g.store_probe = probe && routed.principal == Principal::Master;
                }
                self.state = State::Routed(routed);
                Action::Continue
            }
            Ok(Next::StoreHealth) => self.store_health(host),
            Ok(Next::SpendLogs(query)) => self.spend_logs(host, &query),
            Ok(Next::KeyInfo(query)) => self.key_info(host, &query),
            Ok(Next::TeamInfo(query)) => self.team_info(host, &query),
            Ok(Next::ReadKey(token)) => self.read_key(host, token, store_call::Then::KeyHeaders),
            Ok(Next::AwaitBody(op)) => {
                self.state = State::Admin(op);
                Action::Continue
            }
            Ok(Next::Unparsable(op, why)) => {
                self.state = State::Unparsable(op, why);
                Action::Continue
            }
            Ok(Next::CountTokens) => {
                self.state = State::CountTokens;
                Action::Continue
            }
            Ok(Next::StoredResponse(s)) => {
                self.state = State::StoredResponse(s);
                Action::Continue
            }
            Ok(Next::KeptResponse(call)) => {
                self.state = State::Done;
                self.ask_kept(host, call)
            }
            Ok(Next::CountTokensUpstream(model)) => {
                self.state = State::CountTokensUpstream(model);
                Action::Continue
            }
            Ok(Next::Replied) => {
                self.state = State::Done;
                Action::Pause
            }
            Err((e, attempt)) => {
                if let Some(a) = attempt {
                    // No deployment was chosen: nothing to record, but the request is over.
                    attempts::release(host.store(), &a.attempt_id);
                }
                self.reply_error(host, &e)
            }
        }
    }
}

/// What the headers phase decided.
enum Next {
    Routed(Box<Routed>),
    AwaitBody(AdminOp),
    /// Refuse the body once it is in (see [`State::Unparsable`]).
    Unparsable(Operation, Unread),
    Replied,
    /// `GET /tollgate/store/health` by the master key: answered after a store call.
    StoreHealth,
    /// A request without a body whose key must be read from the store first: the headers
    /// phase runs again once it is (see `key_read`).
    ReadKey(String),
    /// `GET /spend/logs` (its query) by the master key: answered after a store call.
    SpendLogs(String),
    /// `GET /key/info` (its query) with a store: answered with the fleet's spend.
    KeyInfo(String),
    /// `GET /team/info` with a store: the team's fleet-wide spend first.
    TeamInfo(String),
    /// See [`State::CountTokens`] and [`State::CountTokensUpstream`].
    CountTokens,
    CountTokensUpstream(String),
    /// See [`State::StoredResponse`].
    StoredResponse(Box<stored_response::Stored>),
    /// A response the store keeps (see `kept_responses`): read, then answered.
    KeptResponse(Box<kept_responses::KeptCall>),
}

#[cfg(test)]
mod tests;
