//! `POST /v1/messages/count_tokens`: Anthropic's own count when the group's first deployment
//! is Anthropic's (the client's body with the deployment's model, the answer relayed), else the
//! gateway's estimate. No spend either way.

use crate::error::ApiError;
use crate::host::{Action, HttpHost};
use crate::providers::{self, Operation};
use crate::router;

use super::response::json_reply;
use super::upstream::prepare_upstream_headers;
use super::{HttpFilter, Next, State};

impl HttpFilter {
    /// `POST /v1/messages/count_tokens`: Anthropic's own count when the group's first deployment
    /// is Anthropic's, else the gateway's estimate ([`crate::ingress::anthropic::count`]).
    pub(super) fn count_tokens_route(
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
        let path = d.provider.path(&d.target, Operation::Chat, false);
        let (path, query) = path.split_once('?').unwrap_or((&path, ""));
        let sep = if query.is_empty() { "" } else { "?" };
        host.set_request_header(":path", &format!("{path}/count_tokens{sep}{query}"));
        Ok(Next::CountTokensUpstream(d.target.model.clone()))
    }

    /// `POST /v1/messages/count_tokens`'s body is in: estimated, or made Anthropic's and sent on.
    pub(super) fn count_tokens_body(
        &mut self,
        host: &mut dyn HttpHost,
        body_size: usize,
    ) -> Action {
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
}
