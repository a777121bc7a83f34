//! The gateway role: the filter on the listener clients reach. It reads what the client asks
//! for, answers its own endpoints, authenticates, routes a model request (translating for a
//! group's one deployment, or handing the request to the attempt listener) and admits it
//! against its key's and team's limits.

use std::sync::Arc;

use crate::auth::{self, Principal};
use crate::error::ApiError;
use crate::host::{Action, HttpHost};
use crate::ingress::ClientApi;
use crate::providers::Operation;
use crate::quota::Estimate;
use crate::router::{self, sticky};
use crate::stats;

use super::endpoint::{body_refusal, classify, json_model, op_name, path_decode, Endpoint, Unread};
use super::kept_responses::Keeping;
use super::response::json_reply;
use super::routed::Via;
use super::upstream::{
    client_api_headers, client_betas, prepare_upstream_headers, strip_client_headers, BudgetCtx,
};
use super::{accounting, attempt, body_metadata, HttpFilter, Next, State, METADATA_NAMESPACE};

impl HttpFilter {
    /// Decides everything about the upstream request that lives in headers: what the client asks
    /// for, who it is, which model group serves it, and whether the gateway translates for the
    /// group's one deployment or hands the request to the attempt listener.
    pub(super) fn route_gateway(
        &self,
        host: &mut dyn HttpHost,
        end_of_stream: bool,
    ) -> Result<Next, ApiError> {
        let method = host.request_header(":method").unwrap_or_default();
        let path = host.request_header(":path").unwrap_or_default();
        let now = host.now_ms() / 1000;
        let mut path_alias = None;
        let mut count_tokens = false;
        let op = match classify(&method, &path) {
            Endpoint::CountTokens => {
                count_tokens = true;
                Operation::Chat
            }
            Endpoint::Api(op) => op,
            Endpoint::Messages | Endpoint::Responses => Operation::Chat,
            Endpoint::Deployment(op, alias) => {
                path_alias = Some(alias.to_string());
                op
            }
            Endpoint::Admin(op) => return self.route_admin(host, op, &path, now, end_of_stream),
            Endpoint::StoredResponse(id, tail) => {
                return self.route_stored_response(host, id, tail, now, end_of_stream)
            }
            local => return self.answer_locally(host, local, &method, &path, now, end_of_stream),
        };
        // A key this replica has not seen since it last changed is read from the store in the
        // body phase, and the request authenticated there.
        // The key is read from the headers and hashed once, and looked up once.
        let credential = auth::credential(&self.config, host);
        let mut found = None;
        let deferred_key = self.key_to_defer(host, &credential, &mut found);
        let principal = match &deferred_key {
            Some(_) => Principal::Anonymous,
            None => {
                auth::authenticate_credential(&self.config, host.store(), &credential, found, now)
                    .map_err(|e| self.key_error(e))?
            }
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

        // A Responses turn continuing one a deployment of the group holds goes there, and only
        // there: no other deployment has the conversation.
        let previous = match self.api {
            ClientApi::Responses => {
                meta(host, "previous_response_id").and_then(|id| String::from_utf8(id).ok())
            }
            _ => None,
        };
        let sticky = previous
            .as_deref()
            .and_then(|id| self.holder(host, id, &members, now));
        // With a store, the turn is kept there, and a conversation this replica cannot route to
        // its holder is read back from it (see `kept_responses`).
        let keeping =
            (self.api == ClientApi::Responses && self.config.store.is_some()).then(|| {
                Box::new(Keeping {
                    continues: previous.filter(|_| sticky.is_none()),
                    ..Keeping::default()
                })
            });
        // A response the gateway makes (any provider but OpenAI's and Azure's, which make their
        // own) is named at random, not from the request id a client may choose: the store keeps
        // responses by name.
        let response_id = (self.api == ClientApi::Responses).then(|| {
            let random = host.random_bytes();
            format!(
                "resp_{}",
                crate::hex::encode(random.iter().take(24).copied())
            )
        });
        let (via, deployment, betas) =
            if sticky.is_none() && self.config.router.needs_attempts(&alias, members.len()) {
                self.hand_off(host, &alias, op, stream);
                if let Some(id) = &response_id {
                    host.set_request_header(attempt::RESPONSE_ID, id);
                }
                (Via::Attempts, None, 0)
            } else {
                let index = sticky
                    .or_else(|| members.first().copied())
                    .ok_or_else(|| router::unknown_model(&alias))?;
                let d = self
                    .config
                    .serving(index, &alias)
                    .ok_or_else(|| router::unknown_model(&alias))?;
                let betas = client_betas(host, self.api, &d);
                prepare_upstream_headers(host, &d, op, stream, &self.config, self.api);
                (Via::Direct, Some(index), betas)
            };
        let mut routed = self.new_routed(host, op, via, None, principal, alias, stream);
        routed.anthropic_beta = betas;
        if let Some(id) = response_id {
            routed.ctx.id = id;
        }
        if let Some(index) = deployment {
            let name = routed.ctx.model.clone();
            routed.serve_with(&self.config, index, &name);
        }
        routed.deferred_key = deferred_key;
        routed.keeping = keeping;
        Ok(Next::Routed(Box::new(routed)))
    }

    /// The member of the group holding response `id` (it made it, serving the Responses API
    /// itself), if the gateway remembers it.
    fn holder(&self, host: &dyn HttpHost, id: &str, members: &[usize], now: u64) -> Option<usize> {
        let held = sticky::recall(host.store(), id, now)?;
        members.iter().copied().find(|&i| {
            self.config.deployment(i).is_some_and(|d| {
                d.id == held.deployment && d.provider.responses_path(&d.target).is_some()
            })
        })
    }

    /// Hands the request to the attempt listener: the client's headers stripped as for any
    /// deployment, and the routing headers the attempts read set.
    fn hand_off(&self, host: &mut dyn HttpHost, alias: &str, op: Operation, stream: bool) {
        // Each attempt decides for its own deployment what of the client's API headers goes on.
        let body_bytes = host.request_header("content-length");
        strip_client_headers(host, client_api_headers(self.api));
        if let Some(n) = body_bytes {
            host.set_request_header(attempt::BODY_BYTES, &n);
        }
        let random = host.random_bytes();
        let id = crate::hex::encode(random.iter().take(12).copied());
        host.set_request_header(attempt::ATTEMPT_ID, &id);
        host.set_request_header(attempt::ALIAS, alias);
        host.set_request_header(attempt::STREAM, if stream { "1" } else { "0" });
        host.set_request_header(attempt::OPERATION, op_name(op));
        host.set_request_header(attempt::CLIENT_API, self.api.name());
    }

    /// The endpoints the gateway answers itself (models, health, spend logs, the store's health)
    /// and the requests it cannot route (a wrong method, an unknown path).
    fn answer_locally(
        &self,
        host: &mut dyn HttpHost,
        endpoint: Endpoint,
        method: &str,
        path: &str,
        now: u64,
        end_of_stream: bool,
    ) -> Result<Next, ApiError> {
        let path_only = path.split('?').next().unwrap_or(path);
        match endpoint {
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
                Ok(Next::Replied)
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
                Ok(Next::Replied)
            }
            Endpoint::Health => {
                json_reply(host, br#"{"status":"healthy"}"#);
                Ok(Next::Replied)
            }
            Endpoint::SpendLogs => {
                if self.authenticate(host, now)? != Principal::Master {
                    return Err(ApiError::permission("Spend logs require the master key.")
                        .with_code("not_master_key"));
                }
                let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
                Ok(Next::SpendLogs(query.to_string()))
            }
            Endpoint::StoreHealth => {
                if auth::authenticate(&self.config, host.store(), host, now)? != Principal::Master {
                    return Err(ApiError::permission(
                        "The store's health check requires the master key.",
                    )
                    .with_code("not_master_key"));
                }
                Ok(Next::StoreHealth)
            }
            Endpoint::WrongMethod(expected) => Err(ApiError::new(
                405,
                "invalid_request_error",
                format!("Method {method} is not allowed on {path_only}; use {expected}."),
            )
            .with_code("method_not_allowed")),
            // Endpoint::Unknown (the routed endpoints do not come here).
            _ => Err(ApiError::not_found(format!(
                "Invalid URL ({method} {path_only}). Tollgate serves POST /v1/chat/completions, \
                 POST /v1/messages (Anthropic's Messages API), POST /v1/responses (OpenAI's Responses API), GET and DELETE /v1/responses/{{id}}, POST /v1/embeddings, GET /v1/models, \
                 GET /v1/models/{{model}}, Azure OpenAI's \
                 POST /openai/deployments/{{model}}/chat/completions and .../embeddings, \
                 /key/... and /team/... (key and team management), GET /spend/logs and \
                 GET /health/liveliness."
            ))
            .with_code("unknown_url")),
        }
    }

    /// The caller, from this replica's keys (see [`key_read`] for a key it could not read).
    pub(super) fn authenticate(
        &self,
        host: &dyn HttpHost,
        now: u64,
    ) -> Result<Principal, ApiError> {
        auth::authenticate(&self.config, host.store(), host, now).map_err(|e| self.key_error(e))
    }

    /// The gateway admits the request against its key's and team's limits: at once, or after
    /// asking the store (fleet mode), or refused.
    pub(super) fn admit(
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
    pub(super) fn admitted(
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
    pub(super) fn refuse_admission(
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
}
