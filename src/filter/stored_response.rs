//! `GET /v1/responses/{id}` (and `.../input_items`) and `DELETE /v1/responses/{id}`: a response a
//! deployment made and keeps (the Responses API passed through to OpenAI or Azure) is asked of
//! that deployment, with its credentials, and its answer relayed under the alias the response was
//! made for. An id the gateway does not remember (see [`crate::router::sticky`]), or one made for
//! a model the caller's key may not use, is OpenAI's 404. No spend.

use crate::auth;
use crate::error::ApiError;
use crate::host::{Action, HttpHost};
use crate::providers::{self, openai::responses};
use crate::router::sticky;

use super::endpoint::path_decode;
use super::response::{envoy_error, keep_allowed_response_headers};
use super::upstream::strip_client_headers;
use super::{HttpFilter, Next, State, CLUSTER_HEADER};

/// A stored-response call on its way: what its answer needs.
pub(super) struct Stored {
    id: String,
    alias: String,
    delete: bool,
    /// The answer is JSON: buffered, scrubbed and (a 2xx) relayed under the alias. Anything
    /// else (a retrieved response's event stream) goes on chunk by chunk.
    json: bool,
    status: u16,
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
        // A key sees only responses made for models it may use; the others do not exist for it.
        let held = sticky::recall(host.store(), &id, now)
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
        let delete = host.request_header(":method").as_deref() == Some("DELETE");
        Ok(Next::StoredResponse(Box::new(Stored {
            id: held.id,
            alias: held.alias,
            delete,
            json: false,
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
        s.json = host
            .response_header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json"));
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
        let State::StoredResponse(s) = &self.state else {
            return Action::Continue;
        };
        if s.json && !end_of_stream {
            return Action::Pause;
        }
        let body = host.response_body(body_size).unwrap_or_default();
        let mut out = match s.json && (200..300).contains(&s.status) && !s.delete {
            true => responses::stored(&body, &s.alias).unwrap_or(body),
            false => body,
        };
        // Whatever the provider put in its answer (an error echoing a key), no secret goes on.
        self.config.secrets.scrub(&mut out);
        host.replace_response_body(body_size, &out);
        Action::Continue
    }
}
