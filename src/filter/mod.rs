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
mod endpoint;
mod fleet_admit;
mod key_read;
mod response;
mod routed;
mod settle;
mod spend_logs;
pub mod store_call;
mod upstream;

use std::sync::Arc;

use crate::auth::{self, Principal};
use crate::config::Config;
use crate::error::ApiError;
use crate::host::{Action, HttpHost};
use crate::ingress::ClientApi;
use crate::keys::admin::{self, AdminCtx, AdminOp};
use crate::providers::{self, Operation};
use crate::quota::{Charge, Estimate};
use crate::router;
use crate::router::attempts::{self};
use crate::stats;
use attempt::{attempt_headers, local_failure, AttemptCtx};
use endpoint::{body_refusal, classify, json_model, op_name, path_decode, Endpoint, Unread};
use response::{json_reply, keep_allowed_response_headers, send_error};
use routed::{ResponsePlan, Routed, Via};
use settle::finish_attempt;
use upstream::{client_api_headers, prepare_upstream_headers, strip_client_headers, BudgetCtx};

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
    role: Role,
    state: State,
    /// An attempt answered locally still owes its deployment's health record an end.
    unfinished_attempt: Option<(Box<AttemptCtx>, Option<usize>)>,
    /// A store call the stream waits for (see `store_call`).
    waiting: Option<Box<store_call::Waiting>>,
    /// The master key asked the body phase to wait for the store first (`store_call::PROBE_HEADER`).
    store_probe: bool,
    /// Keys read from the store for this stream (see `key_read`).
    keys: key_read::KeyState,
    /// The API the client speaks (from the path; behind the attempt listener, from the
    /// gateway's routing header): what answers and errors are rendered in.
    api: ClientApi,
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
}

impl HttpFilter {
    pub fn new(config: Arc<Config>, role: Role) -> Self {
        HttpFilter {
            config,
            role,
            state: State::Start,
            unfinished_attempt: None,
            waiting: None,
            store_probe: false,
            keys: key_read::KeyState::default(),
            api: ClientApi::Chat,
        }
    }

    /// Refuses the request with an OpenAI-shaped error (and extra headers), counting it.
    fn refuse(
        &mut self,
        host: &mut dyn HttpHost,
        err: &ApiError,
        extra: &[(&str, String)],
    ) -> Action {
        if self.role == Role::Gateway {
            let labels = match &self.state {
                // Labels name the provider only: a template's is its filled copy's.
                State::Routed(r) => r.labels(r.deployment.and_then(|i| self.config.deployment(i))),
                _ => stats::Labels::UNKNOWN,
            };
            host.increment_counter(&stats::requests(&labels, self.api.name(), err.status), 1);
        }
        if let State::Routed(r) = std::mem::replace(&mut self.state, State::Done) {
            let mut r = *r;
            // A refused request has not run: an admission it holds is released without charge.
            if let Some(a) = r.admission.take() {
                let now = host.now_ms() / 1000;
                let fleet_mode = self.config.store.is_some();
                let config = Arc::clone(&self.config);
                accounting::settle(
                    host,
                    &config,
                    &r.principal,
                    &a,
                    fleet_mode,
                    now,
                    Charge::default(),
                );
            }
            if let Via::Attempt(a) = r.via {
                self.unfinished_attempt = Some((a, r.deployment));
            }
        }
        send_error(host, &self.config.secrets, err, extra, self.api);
        Action::Pause
    }

    fn reply_error(&mut self, host: &mut dyn HttpHost, err: &ApiError) -> Action {
        self.refuse(host, err, &[])
    }

    pub fn on_request_headers(&mut self, host: &mut dyn HttpHost, end_of_stream: bool) -> Action {
        // Read before routing removes the client's headers.
        let probe = self.probe_asked(host);
        self.api = match self.role {
            Role::Gateway => ClientApi::of_path(&host.request_header(":path").unwrap_or_default()),
            Role::Attempt => {
                ClientApi::from_name(&host.request_header(attempt::CLIENT_API).unwrap_or_default())
            }
        };
        let next = match self.role {
            Role::Gateway => self.route(host, end_of_stream),
            Role::Attempt => self.route_attempt(host),
        };
        match next {
            Ok(Next::Routed(routed)) => {
                self.store_probe = probe && routed.principal == Principal::Master;
                self.state = State::Routed(routed);
                Action::Continue
            }
            Ok(Next::StoreHealth) => self.store_health(host),
            Ok(Next::SpendLogs(query)) => self.spend_logs(host, &query),
            Ok(Next::KeyInfo(query)) => match self.key_info_from_fleet(host, &query) {
                Some(action) => action,
                None => {
                    let now = host.now_ms() / 1000;
                    let ctx = AdminCtx {
                        config: &self.config,
                        store: host.store(),
                        now,
                        random: [0; 32],
                    };
                    match admin::info(&ctx, &query, None) {
                        Ok(body) => {
                            json_reply(host, &body);
                            self.state = State::Done;
                            Action::Pause
                        }
                        Err(e) => self.reply_error(host, &e),
                    }
                }
            },
            Ok(Next::TeamInfo(query)) => match self.team_info_from_fleet(host, &query) {
                Some(action) => action,
                None => {
                    let ctx = AdminCtx {
                        config: &self.config,
                        store: host.store(),
                        now: host.now_ms() / 1000,
                        random: [0; 32],
                    };
                    match crate::keys::teams::info(&ctx, &query, None) {
                        Ok(body) => {
                            json_reply(host, &body);
                            self.state = State::Done;
                            Action::Pause
                        }
                        Err(e) => self.reply_error(host, &e),
                    }
                }
            },
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

    /// Decides everything about the upstream request that lives in headers (the gateway).
    fn route(
        &self,
        host: &mut dyn HttpHost,
        end_of_stream: bool,
    ) -> Result<Next, (ApiError, Option<Box<AttemptCtx>>)> {
        self.route_gateway(host, end_of_stream)
            .map_err(|e| (e, None))
    }

    fn route_gateway(
        &self,
        host: &mut dyn HttpHost,
        end_of_stream: bool,
    ) -> Result<Next, ApiError> {
        let method = host.request_header(":method").unwrap_or_default();
        let path = host.request_header(":path").unwrap_or_default();
        let path_only = path.split('?').next().unwrap_or(&path);
        let now = host.now_ms() / 1000;
        let mut path_alias = None;
        let mut count_tokens = false;
        let op = match classify(&method, &path) {
            Endpoint::CountTokens => {
                count_tokens = true;
                Operation::Chat
            }
            Endpoint::Api(op) => op,
            Endpoint::Messages => Operation::Chat,
            Endpoint::Deployment(op, alias) => {
                path_alias = Some(alias.to_string());
                op
            }
            Endpoint::Models => {
                if let Some(token) = self.key_to_read(host).filter(|_| end_of_stream) {
                    return Ok(Next::ReadKey(token));
                }
                let principal = self.authenticate(host, now)?;
                match auth::restricted_models(&principal) {
                    None => json_reply(host, &self.config.models_json),
                    Some(named) => {
                        let may_use = |m: &str| auth::check_model(&principal, m).is_ok();
                        json_reply(host, &self.config.models_json_for(&may_use, &named));
                    }
                }
                return Ok(Next::Replied);
            }
            Endpoint::Model(id) => {
                if let Some(token) = self.key_to_read(host).filter(|_| end_of_stream) {
                    return Ok(Next::ReadKey(token));
                }
                let principal = self.authenticate(host, now)?;
                // SDKs percent-encode the id (`anthropic%2Fclaude-...` for a wildcard's name).
                let id = &path_decode(id);
                if self.config.group(id).is_none() || auth::check_model(&principal, id).is_err() {
                    return Err(ApiError::not_found(format!(
                        "The model `{id}` does not exist or you do not have access to it."
                    ))
                    .with_param("model")
                    .with_code("model_not_found"));
                }
                json_reply(host, &json_model(id));
                return Ok(Next::Replied);
            }
            Endpoint::Health => {
                json_reply(host, br#"{"status":"healthy"}"#);
                return Ok(Next::Replied);
            }
            Endpoint::SpendLogs => {
                if self.authenticate(host, now)? != Principal::Master {
                    return Err(ApiError::permission("Spend logs require the master key.")
                        .with_code("not_master_key"));
                }
                let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
                return Ok(Next::SpendLogs(query.to_string()));
            }
            Endpoint::StoreHealth => {
                if auth::authenticate(&self.config, host.store(), host, now)? != Principal::Master {
                    return Err(ApiError::permission(
                        "The store's health check requires the master key.",
                    )
                    .with_code("not_master_key"));
                }
                return Ok(Next::StoreHealth);
            }
            Endpoint::Admin(op) => {
                if self.config.master_key.is_none() {
                    return Err(ApiError::permission(
                        "Key management needs general_settings.master_key.",
                    )
                    .with_code("no_master_key"));
                }
                // A virtual key may read its own `/key/info` (LiteLLM allows it: how a team
                // checks what its budget has left), and nothing else of key management.
                if op == AdminOp::Info {
                    if let Some(token) = self.key_to_read(host).filter(|_| end_of_stream) {
                        return Ok(Next::ReadKey(token));
                    }
                }
                let mut own_query = None;
                match auth::authenticate(&self.config, host.store(), host, now)? {
                    Principal::Master => {}
                    Principal::Key(k) if op == AdminOp::Info => {
                        let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
                        match admin::info_target(op, query) {
                            Some(t) if t != k.def.token => {
                                return Err(ApiError::permission(
                                    "A virtual key may read only its own /key/info; other keys need the master key.",
                                )
                                .with_code("not_master_key"));
                            }
                            _ => own_query = Some(format!("key={}", k.def.token)),
                        }
                    }
                    _ => {
                        return Err(ApiError::permission(
                            "Key management requires the master key.",
                        )
                        .with_code("not_master_key"));
                    }
                }
                if let Some(query) = own_query {
                    if self.config.store.is_some() {
                        return Ok(Next::KeyInfo(query));
                    }
                    let ctx = AdminCtx {
                        config: &self.config,
                        store: host.store(),
                        now,
                        random: [0; 32],
                    };
                    let body = admin::handle(op, &ctx, &query, b"")?;
                    json_reply(host, &body);
                    return Ok(Next::Replied);
                }
                if op.has_body() {
                    // The body arrives in the body phase; Envoy's buffer filter keeps the router
                    // from acting on the request meanwhile.
                    return Ok(Next::AwaitBody(op));
                }
                let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
                let target = match op {
                    AdminOp::TeamInfo => {
                        crate::keys::teams::info_target(query).map(|t| crate::keys::team_token(&t))
                    }
                    _ => admin::info_target(op, query),
                };
                if let Some(token) = target
                    .and_then(|t| self.token_to_read(host, t))
                    .filter(|_| end_of_stream)
                {
                    return Ok(Next::ReadKey(token));
                }
                if op == AdminOp::Info && self.config.store.is_some() {
                    return Ok(Next::KeyInfo(query.to_string()));
                }
                if op == AdminOp::TeamInfo && self.config.store.is_some() {
                    return Ok(Next::TeamInfo(query.to_string()));
                }
                let ctx = AdminCtx {
                    config: &self.config,
                    store: host.store(),
                    now,
                    random: [0; 32],
                };
                let body = admin::handle(op, &ctx, query, b"")?;
                json_reply(host, &body);
                return Ok(Next::Replied);
            }
            Endpoint::WrongMethod(expected) => {
                return Err(ApiError::new(
                    405,
                    "invalid_request_error",
                    format!("Method {method} is not allowed on {path_only}; use {expected}."),
                )
                .with_code("method_not_allowed"))
            }
            Endpoint::Unknown => {
                return Err(ApiError::not_found(format!(
                "Invalid URL ({method} {path_only}). Tollgate serves POST /v1/chat/completions, \
                     POST /v1/messages (Anthropic's Messages API), POST /v1/embeddings, GET /v1/models, GET /v1/models/{{model}}, Azure OpenAI's \
                     POST /openai/deployments/{{model}}/chat/completions and .../embeddings, \
                     /key/... and /team/... (key and team management), GET /spend/logs and GET /health/liveliness."
            ))
                .with_code("unknown_url"))
            }
        };
        // A key this replica has not seen since it last changed is read from the store in the
        // body phase, and the request authenticated there.
        let deferred_key = self.key_to_defer(host);
        let principal = match &deferred_key {
            Some(_) => Principal::Anonymous,
            None => self.authenticate(host, now)?,
        };

        let meta = |host: &dyn HttpHost, key: &str| {
            host.property(&["metadata", "filter_metadata", METADATA_NAMESPACE, key])
        };
        if meta(host, "body_error").is_some() {
            let ct = host.request_header("content-type").unwrap_or_default();
            if !body_metadata::is_json_content_type(&ct) {
                return Err(ApiError::invalid_request(format!(
                    "Unsupported Content-Type '{ct}': send the request body as JSON with 'Content-Type: application/json'."
                ))
                .with_code("invalid_content_type"));
            }
            if end_of_stream {
                return Err(body_refusal(op, Unread::NotJson, b""));
            }
            // Say what is wrong with the body once it is in (the metadata cannot tell).
            return Ok(Next::Unparsable(op, Unread::NotJson));
        }
        let missing_model = || {
            match &path_alias {
            Some(d) => ApiError::invalid_param("model", format!("send `model` in the body too: the deployment name of the path ('{d}')")),
            None => ApiError::invalid_param("model", "you must provide a model parameter (a non-empty string naming one of GET /v1/models)"),
        }
        };
        let alias = match meta(host, "model") {
            Some(bytes) => {
                // json_to_metadata stringifies numbers and booleans; the typed copy tells them apart.
                if meta(host, "model_value").is_some_and(|typed| typed != bytes) {
                    return Err(ApiError::invalid_param(
                        "model",
                        "Invalid type for 'model': expected a string.",
                    )
                    .with_code("invalid_type"));
                }
                String::from_utf8(bytes)
                    .map_err(|_| ApiError::invalid_param("model", "model must be a UTF-8 string"))?
            }
            None if end_of_stream => {
                return Err(ApiError::invalid_request(
                    "The request has no body: send a JSON object with `model` and `messages`.",
                )
                .with_code("empty_body"))
            }
            None if meta(host, "model_missing").is_some() => return Err(missing_model()),
            // Nothing extracted: an empty-string model, or no json_to_metadata filter in front
            // of Tollgate; the body tells them apart.
            None => return Ok(Next::Unparsable(op, Unread::NoModel)),
        };
        // Azure's form: the path names the deployment, and the body's model (the SDKs send the
        // same name) must agree with it.
        if let Some(d) = path_alias.as_deref().filter(|d| *d != alias) {
            return Err(ApiError::invalid_param(
                "model",
                format!("The body's model '{alias}' is not the deployment in the path ('{d}'): send the same name in both."),
            )
            .with_code("model_mismatch"));
        }
        let stream = matches!(
            meta(host, "stream").as_deref(),
            Some([1]) | Some(b"1") | Some(b"true")
        );
        let members = router::members(&self.config, &alias, op)?;
        if deferred_key.is_none() {
            auth::check_model(&principal, &alias)?;
        }
        if count_tokens {
            return self.count_tokens_route(host, &alias, &members, deferred_key.is_some());
        }

        let (via, deployment) = if self.config.router.needs_attempts(&alias, members.len()) {
            // Each attempt decides for its own deployment what of the client's API headers goes on.
            let body_bytes = host.request_header("content-length");
            strip_client_headers(host, client_api_headers(self.api));
            if let Some(n) = body_bytes {
                host.set_request_header(attempt::BODY_BYTES, &n);
            }
            let random = host.random_bytes();
            let id = crate::hex::encode(random.iter().take(12).copied());
            host.set_request_header(attempt::ATTEMPT_ID, &id);
            host.set_request_header(attempt::ALIAS, &alias);
            host.set_request_header(attempt::STREAM, if stream { "1" } else { "0" });
            host.set_request_header(attempt::OPERATION, op_name(op));
            host.set_request_header(attempt::CLIENT_API, self.api.name());
            (Via::Attempts, None)
        } else {
            let index = members
                .first()
                .copied()
                .ok_or_else(|| router::unknown_model(&alias))?;
            let d = self
                .config
                .serving(index, &alias)
                .ok_or_else(|| router::unknown_model(&alias))?;
            prepare_upstream_headers(host, &d, op, stream, &self.config, self.api);
            (Via::Direct, Some(index))
        };
        let mut routed = self.new_routed(host, op, via, None, principal, alias, stream);
        if let Some(index) = deployment {
            let name = routed.ctx.model.clone();
            routed.serve_with(&self.config, index, &name);
        }
        routed.deferred_key = deferred_key;
        Ok(Next::Routed(Box::new(routed)))
    }

    /// `POST /v1/messages/count_tokens`: Anthropic's own count when the group's first deployment
    /// is Anthropic's, else the gateway's estimate ([`crate::ingress::anthropic::count`]).
    fn count_tokens_route(
        &self,
        host: &mut dyn HttpHost,
        alias: &str,
        members: &[usize],
        key_unread: bool,
    ) -> Result<Next, ApiError> {
        if key_unread {
            // The key is read in the body phase of a routed request only: counting needs no
            // key's limits, but a key must be known to count.
            return Err(ApiError::authentication(
                "This key is not known here yet: send a message first, or retry in a second.",
            ));
        }
        let d = members
            .first()
            .and_then(|&i| self.config.serving(i, alias))
            .ok_or_else(|| router::unknown_model(alias))?;
        if d.provider.name() != "anthropic" {
            return Ok(Next::CountTokens);
        }
        prepare_upstream_headers(host, &d, Operation::Chat, false, &self.config, self.api);
        let path = d.provider.path(&d, Operation::Chat, false);
        let (path, query) = path.split_once('?').unwrap_or((&path, ""));
        let sep = if query.is_empty() { "" } else { "?" };
        host.set_request_header(":path", &format!("{path}/count_tokens{sep}{query}"));
        Ok(Next::CountTokensUpstream(d.model.clone()))
    }

    /// The caller, from this replica's keys (see [`key_read`] for a key it could not read).
    fn authenticate(&self, host: &dyn HttpHost, now: u64) -> Result<Principal, ApiError> {
        auth::authenticate(&self.config, host.store(), host, now).map_err(|e| self.key_error(e))
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

    /// A key-management call's body is in: answered (through the store when it writes and
    /// there is one).
    fn admin_body(&mut self, host: &mut dyn HttpHost, op: AdminOp, body_size: usize) -> Action {
        let body = host.request_body(body_size).unwrap_or_default();
        if self.config.store.is_some() && op.writes() {
            return self.admin_through_store(host, op, body);
        }
        let random = host.random_bytes();
        let ctx = AdminCtx {
            config: &self.config,
            store: host.store(),
            now: host.now_ms() / 1000,
            random,
        };
        let result = admin::handle(op, &ctx, "", &body);
        match result {
            Ok(out) => {
                json_reply(host, &out);
                self.state = State::Done;
                Action::Pause
            }
            Err(e) => self.reply_error(host, &e),
        }
    }

    /// `POST /v1/messages/count_tokens`'s body is in: estimated, or made Anthropic's and sent on.
    fn count_tokens_body(&mut self, host: &mut dyn HttpHost, body_size: usize) -> Action {
        let body = host.request_body(body_size).unwrap_or_default();
        match std::mem::replace(&mut self.state, State::Done) {
            State::CountTokensUpstream(model) => {
                match providers::anthropic::passthrough::request(&body, &model, None) {
                    Ok(out) if host.replace_request_body(body_size, &out) => {
                        self.state = State::CountTokensUpstream(model);
                        Action::Continue
                    }
                    Ok(_) => self.reply_error(
                        host,
                        &ApiError::server("could not replace the request body"),
                    ),
                    Err(e) => self.reply_error(host, &e),
                }
            }
            _ => match crate::ingress::anthropic::count::estimate(&body) {
                Ok(n) => {
                    json_reply(host, format!("{{\"input_tokens\":{n}}}").as_bytes());
                    Action::Pause
                }
                Err(e) => self.reply_error(host, &e),
            },
        }
    }

    /// A routed request's whole body is in: its key read first if this replica must (see
    /// `key_read`), then translated for its deployment and (the gateway) admitted.
    fn routed_body(&mut self, host: &mut dyn HttpHost, body_size: usize) -> Action {
        let config = Arc::clone(&self.config);
        let role = self.role;
        let State::Routed(routed) = &mut self.state else {
            return Action::Continue;
        };
        if routed.deferred_key.is_some() {
            return self.authenticate_in_body(host, body_size);
        }
        if std::mem::take(&mut self.store_probe) {
            return self.probe_store(host, body_size);
        }
        let body = host.request_body(body_size).unwrap_or_default();
        let b = BudgetCtx {
            role,
            handed_off: matches!(routed.via, Via::Attempts),
            lease_max_age: config.store.as_ref().map(|s| s.lease_max_age_ms()),
            now_ms: host.now_ms(),
        };
        let (out, estimate) = match upstream::translate_body(host, &config, routed, &body, &b) {
            Ok(x) => x,
            Err(e) => return self.reply_error(host, &e),
        };
        if role == Role::Gateway {
            return self.admit(host, body_size, out, estimate, &b);
        }
        self.admitted(host, body_size, out)
    }

    /// The gateway admits the request against its key's and team's limits: at once, or after
    /// asking the store (fleet mode), or refused.
    fn admit(
        &mut self,
        host: &mut dyn HttpHost,
        body_size: usize,
        out: Option<Vec<u8>>,
        estimate: Estimate,
        b: &BudgetCtx,
    ) -> Action {
        let config = Arc::clone(&self.config);
        let State::Routed(routed) = &mut self.state else {
            return Action::Continue;
        };
        routed.estimate = Some(estimate);
        match accounting::admit_request(
            host,
            &config,
            &routed.principal,
            b.lease_max_age,
            b.now_ms,
            estimate,
        ) {
            Ok(accounting::Admit::Done(admission)) => routed.admission = admission,
            Ok(accounting::Admit::Ask(ask)) => {
                // The key's or team's lease cannot hold it: the store decides, and the
                // request waits (Envoy's buffer filter holds it back from the router).
                return self.ask_fleet(host, body_size, ask, out);
            }
            Err(refusal) => return self.refuse_admission(host, &refusal),
        }
        self.admitted(host, body_size, out)
    }

    /// The request is admitted: counted if over a soft budget, and its translated body (if any)
    /// goes on. Handed to the attempt listener, the client's body goes as it is: each attempt
    /// translates it for its own deployment.
    fn admitted(
        &mut self,
        host: &mut dyn HttpHost,
        body_size: usize,
        out: Option<Vec<u8>>,
    ) -> Action {
        let config = Arc::clone(&self.config);
        if let State::Routed(routed) = &self.state {
            if routed.admission.is_some_and(|a| a.soft_budget_exceeded()) {
                let d = routed.served(&config);
                host.increment_counter(
                    &stats::soft_budget_exceeded(&routed.labels(d.as_deref())),
                    1,
                );
            }
        }
        if let Some(out) = out {
            if !host.replace_request_body(body_size, &out) {
                return self.reply_error(
                    host,
                    &ApiError::server("could not replace the request body"),
                );
            }
        }
        Action::Continue
    }

    /// A limit refused the request: counted, and answered with the refusal.
    fn refuse_admission(
        &mut self,
        host: &mut dyn HttpHost,
        refusal: &crate::quota::Refusal,
    ) -> Action {
        if let State::Routed(routed) = &self.state {
            let d = routed.served(&self.config);
            let labels = routed.labels(d.as_deref());
            let counter = match refusal {
                crate::quota::Refusal::Budget { .. } => stats::budget_refused(&labels),
                _ => stats::rate_limited(&labels),
            };
            host.increment_counter(&counter, 1);
        }
        let (err, headers) = accounting::refusal(refusal);
        self.refuse(host, &err, &headers)
    }

    pub fn on_response_headers(&mut self, host: &mut dyn HttpHost, end_of_stream: bool) -> Action {
        match self.state {
            State::CountTokensUpstream(_) => {
                // Anthropic's own count, relayed (its errors are in the client's shape already).
                keep_allowed_response_headers(host, &self.config.secrets, false);
                Action::Continue
            }
            State::Routed(_) => self.response_headers(host, end_of_stream),
            _ => Action::Continue,
        }
    }

    pub fn on_response_body(
        &mut self,
        host: &mut dyn HttpHost,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        self.response_body(host, body_size, end_of_stream)
    }

    /// The stream is over, however it ended (completed, refused, reset, client gone). The gateway
    /// charges what the request cost and frees its slots: a request that reached the provider but
    /// never delivered its usage (a stream cut off, a client gone before the response) is charged
    /// its reservation, never zero; an error response is charged nothing. An attempt records how
    /// its deployment did and, when it was the request's last, frees the request's routing state.
    pub fn on_done(&mut self, host: &mut dyn HttpHost) {
        if let Some((a, deployment)) = self.unfinished_attempt.take() {
            finish_attempt(&self.config, host, &a, deployment, None);
            return;
        }
        self.settle(host);
    }
}

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
}

#[cfg(test)]
mod tests;
