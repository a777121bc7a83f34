//! `GET /v1/responses/{id}` (and `.../input_items`) and `DELETE /v1/responses/{id}`: a response a
//! deployment made and keeps (the Responses API passed through to OpenAI or Azure) is asked of
//! that deployment, with its credentials, and its answer relayed under the alias the response was
//! made for. An id the gateway does not remember (see [`crate::router::sticky`]), or one made for
//! a model the caller's key may not use, is OpenAI's 404. No spend. A response read back as its
//! event stream (`?stream=true`) is relayed event by event, under the alias too.

use crate::auth;
use crate::error::ApiError;
use crate::host::{Action, HttpHost};
use crate::providers::{self, openai::responses, StreamTranslator};
use crate::router::sticky;

use super::endpoint::path_decode;
use super::kept_responses::KeptCall;
use super::response::{envoy_error, keep_allowed_response_headers};
use super::upstream::strip_client_headers;
use super::{HttpFilter, Next, State, CLUSTER_HEADER};

/// A stored-response call on its way: what its answer needs.
pub(super) struct Stored {
    id: String,
    alias: String,
    /// The holding deployment's provider, named in an error event of a replay it broke.
    provider: &'static str,
    delete: bool,
    answer: Answer,
    status: u16,
}

/// How the answer's body goes on, decided from its headers.
enum Answer {
    /// JSON: buffered, scrubbed and (a 2xx) relayed under the alias.
    Json,
    /// A retrieved response's event stream (a 2xx `text/event-stream`): relayed event by event
    /// as it comes, each lifecycle event's response under the alias, each event scrubbed whole.
    Events(Box<responses::PassthroughStream>),
    /// Anything else: chunk by chunk, scrubbed.
    Raw,
}

impl HttpFilter {
    /// The headers phase of a stored-response call: the caller authenticated, the response
    /// found, and the request sent to the deployment holding it.
    pub(super) fn route_stored_response(
        &self,
        host: &mut dyn HttpHost,
        id: &str,
        tail: &str,
        now: u64,
        end_of_stream: bool,
    ) -> Result<Next, ApiError> {
        if let Some(token) = self.key_to_read(host).filter(|_| end_of_stream) {
            return Ok(Next::ReadKey(token));
        }
        let principal = self.authenticate(host, now)?;
        let id = path_decode(id);
        let not_found = || ApiError::not_found(format!("Response with id '{id}' not found."));
        let delete = host.request_header(":method").as_deref() == Some("DELETE");
        let Some(held) = sticky::recall(host.store(), &id, now) else {
            // Not one this replica passed through: the store may keep it (a request without a
            // body can wait for it here).
            if self.config.store.is_some() && end_of_stream {
                let path = host.request_header(":path").unwrap_or_default();
                return Ok(Next::KeptResponse(Box::new(KeptCall {
                    id,
                    delete,
                    items: !tail.is_empty(),
                    query: path
                        .split_once('?')
                        .map(|(_, q)| q.to_string())
                        .unwrap_or_default(),
                    principal,
                })));
            }
            return Err(not_found());
        };
        // A key sees only responses made for models it may use; the others do not exist for it.
        let held = Some(held)
            .filter(|h| auth::check_model(&principal, &h.alias).is_ok())
            .ok_or_else(not_found)?;
        let d = self
            .config
            .deployments
            .iter()
            .find(|d| d.id == held.deployment)
            .ok_or_else(not_found)?;
        let base = d.provider.responses_path(&d.target).ok_or_else(not_found)?;
        let path = host.request_header(":path").unwrap_or_default();
        let query = path.split_once('?').map(|(_, q)| q);
        // Split the deployment's own query (Azure's `api-version`) from its path.
        let (base_path, base_query) = match base.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (base.as_str(), None),
        };
        let queries: Vec<&str> = base_query.into_iter().chain(query).collect();
        let mut upstream = format!("{base_path}/{}{tail}", held.id);
        if !queries.is_empty() {
            upstream.push('?');
            upstream.push_str(&queries.join("&"));
        }
        strip_client_headers(host, &[]);
        host.set_request_header(CLUSTER_HEADER, &d.cluster);
        host.set_request_header(":path", &upstream);
        host.set_request_header(":authority", &d.authority);
        host.set_request_header(
            "user-agent",
            concat!("tollgate/", env!("CARGO_PKG_VERSION")),
        );
        if let Some(ms) = d.balance.timeout_ms {
            host.set_request_header("x-envoy-upstream-rq-timeout-ms", &ms.to_string());
        }
        for (name, value) in &d.headers {
            host.set_request_header(name, value);
        }
        Ok(Next::StoredResponse(Box::new(Stored {
            id: held.id,
            alias: held.alias,
            provider: d.provider.name(),
            delete,
            answer: Answer::Raw,
            status: 0,
        })))
    }

    pub(super) fn stored_response_headers(&mut self, host: &mut dyn HttpHost) -> Action {
        let State::StoredResponse(s) = &mut self.state else {
            return Action::Continue;
        };
        let status: u16 = host
            .response_header(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(502);
        let details = host
            .property(&["response", "code_details"])
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        if details.as_deref() != Some("via_upstream") {
            // Envoy answered itself (connect failure, timeout): an OpenAI-shaped reply instead.
            let err = envoy_error(status, details.as_deref().unwrap_or(""), None);
            return self.reply_error(host, &err);
        }
        s.status = status;
        let content_type = host.response_header("content-type").unwrap_or_default();
        s.answer = if content_type.starts_with("application/json") {
            Answer::Json
        } else if content_type.starts_with("text/event-stream") && (200..300).contains(&status) {
            let alias = s.alias.clone();
            Answer::Events(Box::new(responses::PassthroughStream::replay(
                s.provider, alias,
            )))
        } else {
            Answer::Raw
        };
        if (200..300).contains(&status) && s.delete {
            sticky::forget(host.store(), &s.id);
        }
        keep_allowed_response_headers(
            host,
            &providers::RESPONSE_HEADERS,
            &self.config.secrets,
            false,
        );
        Action::Continue
    }

    pub(super) fn stored_response_body(
        &mut self,
        host: &mut dyn HttpHost,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let State::StoredResponse(s) = &mut self.state else {
            return Action::Continue;
        };
        if matches!(s.answer, Answer::Json) && !end_of_stream {
            return Action::Pause;
        }
        let body = host.response_body(body_size).unwrap_or_default();
        let mut out = match &mut s.answer {
            Answer::Json if (200..300).contains(&s.status) && !s.delete => {
                responses::stored(&body, &s.alias).unwrap_or(body)
            }
            Answer::Events(events) => {
                let mut out = Vec::with_capacity(body.len().saturating_add(64));
                events.feed(&body, &mut out);
                if end_of_stream {
                    events.finish(&mut out);
                }
                out
            }
            _ => body,
        };
        // Whatever the provider put in its answer (an error echoing a key), no secret goes on;
        // events are whole in `out`, so none is split across chunks there.
        self.config.secrets.scrub(&mut out);
        host.replace_response_body(body_size, &out);
        let forget =
            (s.delete && end_of_stream && (200..300).contains(&s.status)).then(|| s.id.clone());
        match forget {
            // The store's copy goes too, before the client hears it is deleted.
            Some(id) => self.forget_kept(host, &id),
            None => Action::Continue,
        }
    }
}
