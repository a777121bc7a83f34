//! The response's way back: its headers decided from headers alone (the provider's own error,
//! Envoy's local reply, a 200 that is no answer, the attempt's verdict, the gateway's counters
//! and the key's headers), then its body translated into the client's API, whole or chunk by
//! chunk, with no secret in it; and the gateway's own error replies.

use std::sync::Arc;

use crate::config::Deployment;
use crate::error::ApiError;
use crate::host::{Action, HttpHost};
use crate::ingress::responses::kept;
use crate::ingress::ClientApi;
use crate::providers::{self, Operation, Provider};
use crate::quota::Charge;
use crate::router::classify::Seen;
use crate::router::sticky;
use crate::secrets::Secrets;
use crate::stats;

use super::attempt::{self, attempt_headers, local_failure};
use super::routed::{ResponsePlan, Via};
use super::{accounting, body_metadata, RoleState};
use super::{HttpFilter, Role, State, ERROR_NAMESPACE, USAGE_NAMESPACE};

impl HttpFilter {
    /// A routed request's response headers: the status the client sees, what the body will need
    /// (translated whole, streamed, relayed), and for an attempt whether Envoy tries again.
    pub(super) fn response_headers(
        &mut self,
        host: &mut dyn HttpHost,
        end_of_stream: bool,
    ) -> Action {
        let config = Arc::clone(&self.config);
        let role = self.role();
        let State::Routed(routed) = &mut self.state else {
            return Action::Continue;
        };
        let status: u16 = host
            .response_header(":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(502);
        let details = host
            .property(&["response", "code_details"])
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let via_upstream = details.as_deref() == Some("via_upstream");
        routed.headers_ms = Some(host.now_ms());
        if let Via::Attempts = routed.via {
            // The attempt listener named the deployment that answered last.
            host.remove_response_header(attempt::RETRY);
            let served_name = host.response_header(attempt::SERVED_NAME);
            host.remove_response_header(attempt::SERVED_NAME);
            if let Some(id) = host.response_header(attempt::MODEL_ID) {
                match config.deployments.iter().position(|d| d.id == id) {
                    Some(index) => {
                        let name = served_name.unwrap_or_else(|| routed.ctx.model.clone());
                        routed.serve_with(&config, index, &name);
                    }
                    None => routed.deployment = None,
                }
            }
        }
        let d = routed.served(&config);
        let d = d.as_deref();
        if !via_upstream {
            // Envoy answered itself (connect failure, timeout, missing cluster): replace its
            // plain-text reply with an OpenAI-shaped one.
            let err = envoy_error(status, details.as_deref().unwrap_or(""), d);
            if let Via::Attempt(a) = &mut routed.via {
                let extra = local_failure(&config, host, a, status, err.status == 504);
                return self.refuse(host, &err, &extra);
            }
            return self.reply_error(host, &err);
        }
        let translator = routed.translator(d);
        // The provider's error type, when it names one in a header (read before it is removed).
        let error_type = (status >= 400)
            .then(|| translator.and_then(|t| t.error_type_header()))
            .flatten()
            .and_then(|name| host.response_header(name));
        let encoding = host.response_header("content-encoding");
        let allowed = translator.map_or(&providers::RESPONSE_HEADERS[..], |t| t.response_headers());
        let from_attempt = matches!(routed.via, Via::Attempts);
        keep_allowed_response_headers(host, allowed, &config.secrets, from_attempt);
        let Some(translator) = translator else {
            return Action::Continue;
        };
        if status < 400 && !matches!(routed.via, Via::Attempts) {
            let ns = match role {
                Role::Gateway => USAGE_NAMESPACE,
                Role::Attempt => ERROR_NAMESPACE,
            };
            if let Some(err) = broken_answer(host, translator, routed.stream, ns, encoding) {
                // Not an answer but an upstream failure: a 502, retried like one, charged nothing.
                log::warn!(
                    "tollgate: {} (deployment {}): {}",
                    translator.name(),
                    d.map_or("-", |d| d.id.as_str()),
                    config.secrets.scrub_str(&err.message)
                );
                if let Via::Attempt(a) = &mut routed.via {
                    let extra = local_failure(&config, host, a, err.status, false);
                    return self.refuse(host, &err, &extra);
                }
                return self.reply_error(host, &err);
            }
        }
        let client_status = if status >= 400 {
            translator.error_status(status, error_type.as_deref())
        } else {
            status
        };
        if let Via::Attempt(a) = &mut routed.via {
            let again = status >= 400 && {
                let field = |k: &str| {
                    host.property(&["metadata", "filter_metadata", ERROR_NAMESPACE, k])
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                };
                let (code, kind) = (
                    field("error_code"),
                    field("error_type").or_else(|| field("error_status")),
                );
                let message = field("error_message").or_else(|| field("message"));
                // Refused gateway credentials reach the client as a 502 but are the
                // deployment's authentication failure to the router (fallback, cooldown).
                let class_status =
                    if translator.rejects_gateway_credentials(status, error_type.as_deref()) {
                        401
                    } else {
                        client_status
                    };
                let seen = Seen {
                    status: class_status,
                    code: code.as_deref(),
                    kind: kind.as_deref(),
                    message: message.as_deref(),
                    ..Default::default()
                };
                attempt::after_failure(&config, host, a, &seen)
            };
            for (name, value) in attempt_headers(&config, a, again) {
                host.set_response_header(name, &value);
            }
        }
        if status >= 400 && end_of_stream {
            let err = translator.error(status, error_type.as_deref(), b"");
            let extra = match &routed.via {
                Via::Attempt(a) => attempt_headers(&config, a, a.retry_signaled),
                _ => Vec::new(),
            };
            return self.refuse(host, &err, &extra);
        }
        routed.status = Some(client_status);
        if role == Role::Gateway {
            let latency = host.now_ms().saturating_sub(routed.started_ms);
            host.record_histogram(&stats::upstream_latency(&routed.labels(d)), latency);
            host.increment_counter(
                &stats::requests(&routed.labels(d), routed.ctx.api.name(), client_status),
                1,
            );
            if let Some(a) = &routed.admission {
                for (name, value) in accounting::key_headers(&routed.principal, a) {
                    host.set_response_header(name, &value);
                }
            }
            if let Some(cap) = routed.output_capped {
                host.set_response_header(accounting::MAX_TOKENS_CAPPED, &cap.to_string());
            }
            if let (Via::Direct, Some(d)) = (&routed.via, d) {
                host.set_response_header(attempt::MODEL_ID, &d.id);
                host.set_response_header(attempt::RETRIES, "0");
                host.set_response_header(attempt::FALLBACKS, "0");
            }
            if let (true, Some(d), Some(ask), Some(estimate)) = (
                status < 400 && !routed.stream,
                d,
                routed.ask,
                routed.estimate,
            ) {
                let usage = accounting::usage_from_metadata(|key| {
                    host.property(&["metadata", "filter_metadata", USAGE_NAMESPACE, key])
                });
                // What settlement will charge: the usage's cost, or the reservation when the
                // usage is missing or cannot be charged.
                let cost = match usage {
                    Some(u) if accounting::check_usage(d, &ask, &u).is_ok() => {
                        accounting::micro_cost(d, &u)
                    }
                    _ => estimate.cost,
                };
                host.set_response_header(
                    "x-tollgate-response-cost",
                    &format!("{:.6}", crate::quota::usd(cost)),
                );
            }
        }
        if status >= 400 {
            host.set_response_header(":status", &client_status.to_string());
            host.set_response_header("content-type", "application/json");
            routed.response = if matches!(routed.via, Via::Attempts) {
                ResponsePlan::Relay
            } else {
                ResponsePlan::Translate {
                    upstream_error: Some((status, error_type)),
                }
            };
        } else if routed.stream && routed.op == Operation::Chat {
            host.set_response_header("content-type", "text/event-stream");
            host.set_response_header("cache-control", "no-cache");
            routed.response = ResponsePlan::Stream(translator.chat_stream(routed.ctx.clone()));
        } else {
            host.set_response_header("content-type", "application/json");
            if end_of_stream {
                let err = ApiError::bad_gateway(format!(
                    "{} returned an empty response",
                    translator.name()
                ));
                return self.reply_error(host, &err);
            }
            routed.response = ResponsePlan::Translate {
                upstream_error: None,
            };
        }
        Action::Continue
    }

    /// A routed request's response body (a chunk of it, streaming): translated into the client's
    /// API, its usage taken for settlement.
    pub(super) fn response_body(
        &mut self,
        host: &mut dyn HttpHost,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let config = Arc::clone(&self.config);
        let role = self.role();
        let State::Routed(routed) = &mut self.state else {
            return Action::Continue;
        };
        let d = routed.served(&config);
        let d = d.as_deref();
        let Some(translator) = routed.translator(d) else {
            return Action::Continue;
        };
        if routed.first_byte_ms.is_none() && body_size > 0 {
            let now = host.now_ms();
            routed.first_byte_ms = Some(now);
            if role == Role::Gateway && matches!(routed.response, ResponsePlan::Stream(_)) {
                host.record_histogram(
                    &stats::time_to_first_token(&routed.labels(d)),
                    now.saturating_sub(routed.started_ms),
                );
            }
        }
        let usage_known = routed.usage.is_some();
        let mut usage = None;
        // The id of a response a deployment keeps (a Responses client's, passed through).
        let keeps = !routed.response_remembered
            && routed.ctx.api == ClientApi::Responses
            && !matches!(routed.via, Via::Attempts)
            && d.is_some_and(|d| d.provider.responses_path(&d.target).is_some());
        let mut made: Option<String> = None;
        let mut no_answer: Option<ApiError> = None;
        let action = match &mut routed.response {
            ResponsePlan::Pending | ResponsePlan::Relay => Action::Continue,
            ResponsePlan::Stream(t) => {
                let chunk = if body_size > 0 {
                    host.response_body(body_size).unwrap_or_default()
                } else {
                    Vec::new()
                };
                let mut out = Vec::with_capacity(chunk.len().saturating_mul(2).max(64));
                t.feed(&chunk, &mut out);
                if end_of_stream {
                    t.finish(&mut out);
                }
                // Known as soon as the provider's stream completed: the client may stop reading
                // at `[DONE]` and close before the upstream's end of stream reaches us.
                if !usage_known {
                    usage = t.final_usage();
                }
                routed.answered |= t.completed();
                if keeps {
                    made = t.response_id().map(str::to_string);
                }
                // Whatever the provider put in its events (an error echoing a key), no secret
                // reaches the client. Events are whole in `out`, so no secret is split here.
                config.secrets.scrub(&mut out);
                // A kept turn's response says so; the one its last lifecycle event carries is
                // what the store keeps.
                if let Some(k) = routed.keeping.as_mut() {
                    if let Some(turn) = &k.turn {
                        let previous = turn.prev.as_deref();
                        if let Some(e) = kept::echoed_events(&out, previous) {
                            out = e;
                        }
                        if k.response.is_none() {
                            k.response = kept::final_response(&out);
                        }
                    }
                }
                if out != chunk {
                    host.replace_response_body(body_size, &out);
                }
                Action::Continue
            }
            ResponsePlan::Translate { upstream_error } => {
                if !end_of_stream {
                    return Action::Pause;
                }
                let body = host.response_body(body_size).unwrap_or_default();
                let mut out = match upstream_error {
                    Some((status, error_type)) => crate::ingress::error_body(
                        &translator.error(*status, error_type.as_deref(), &body),
                        routed.ctx.api,
                    ),
                    None => {
                        let result = match routed.op {
                            Operation::Chat => translator.chat_response(&body, &routed.ctx),
                            Operation::Embeddings => translator.embeddings_response(
                                &body,
                                routed.embeddings_base64,
                                &routed.ctx,
                            ),
                        };
                        match result {
                            Ok(t) => {
                                usage = t.usage;
                                routed.answered = true;
                                if keeps {
                                    made = providers::openai::responses::response_id(&t.body);
                                }
                                t.body
                            }
                            Err(e) => {
                                log::warn!(
                                    "tollgate: could not translate a {} response: {}",
                                    translator.name(),
                                    config.secrets.scrub_str(&e.message)
                                );
                                no_answer = Some(e);
                                Vec::new()
                            }
                        }
                    }
                };
                if no_answer.is_none() {
                    config.secrets.scrub(&mut out);
                    if let Some(k) = routed.keeping.as_mut() {
                        if let Some(turn) = k.turn.as_ref().filter(|_| upstream_error.is_none()) {
                            if let Some(e) = kept::echoed(&out, turn.prev.as_deref()) {
                                out = e;
                            }
                            k.response = Some(out.clone());
                        }
                    }
                    host.replace_response_body(body_size, &out);
                }
                Action::Continue
            }
        };
        if let Some(e) = no_answer {
            // A success status whose body is no answer: an upstream failure, charged nothing.
            routed.status = Some(e.status);
            if !host.response_headers_held() {
                // The 200 has gone (proxy-wasm cannot hold it until the body is in): a reply now
                // makes Envoy reset the stream, which clients treat as the failure it is.
                send_error(host, &config.secrets, &e, &[], routed.ctx.api);
                return Action::Pause;
            }
            host.set_response_header(":status", &e.status.to_string());
            if let Via::Attempt(a) = &mut routed.via {
                // Still a failure the router can act on: another attempt, or a fallback.
                for (name, value) in local_failure(&config, host, a, e.status, false) {
                    host.set_response_header(name, &value);
                }
            }
            let mut out = crate::ingress::error_body(&e, routed.ctx.api);
            config.secrets.scrub(&mut out);
            host.replace_response_body(body_size, &out);
            return Action::Continue;
        }
        if let (Some(id), Some(d)) = (made, d) {
            routed.response_remembered = true;
            let held = sticky::Held {
                id,
                deployment: d.id.clone(),
                alias: routed.ctx.model.clone(),
                at: host.now_ms() / 1000,
            };
            if config.store.is_some() {
                // The other replicas learn it on the next sync.
                sticky::share(host.store(), &held);
            }
            if !sticky::remember(host.store(), held) {
                log::warn!("tollgate: could not remember which deployment holds a response");
            }
        }
        let usage = usage.filter(|u| {
            let (Some(d), Some(ask)) = (d, &routed.ask) else {
                return true;
            };
            let checked = accounting::check_usage(d, ask, u);
            routed.unusable = checked.err();
            checked.is_ok()
        });
        if let Some(u) = usage {
            routed.usage = Some(u);
            if role == Role::Gateway {
                for (metric, n) in stats::token_counts(&routed.labels(d), &u) {
                    if n > 0 {
                        host.increment_counter(&metric, n);
                    }
                }
            }
        }
        if end_of_stream && role == Role::Gateway {
            if let Some(a) = self.keep_response(host) {
                return a;
            }
        }
        action
    }
}

/// An OpenAI-shaped error for a reply Envoy generated itself instead of the upstream's.
pub(super) fn envoy_error(status: u16, details: &str, d: Option<&Deployment>) -> ApiError {
    let (provider, id, cluster) = match d {
        Some(d) => (d.provider.name(), d.id.as_str(), d.cluster.as_str()),
        None => ("the provider", "-", crate::config::ATTEMPT_CLUSTER),
    };
    if status == 504 || details.contains("timeout") {
        ApiError::new(
            504,
            "api_error",
            format!("The request to {provider} timed out (deployment {id})."),
        )
        .with_code("timeout")
    } else if details == "cluster_not_found" {
        let fix = if d.is_some_and(|d| !d.cluster_is_rendered()) {
            "its model_info.envoy_cluster names it: define it in Envoy's configuration"
        } else {
            "render the Envoy config with `tollgate render`"
        };
        ApiError::server(format!(
            "Gateway misconfigured: Envoy has no cluster named '{cluster}' for deployment {id} ({fix})."
        ))
        .with_code("gateway_misconfigured")
    } else if details.contains("upstream_reset_before_response_started")
        || details.contains("no_healthy_upstream")
        || status == 503
    {
        ApiError::bad_gateway(format!(
            "Could not reach {provider} (deployment {id}): {}.",
            details.replace('_', " ")
        ))
    } else {
        ApiError::from_status(
            status,
            format!(
                "The gateway could not complete the request to {provider}: {}",
                details.replace('_', " ")
            ),
        )
    }
}

/// A success status whose response is no answer: compressed, of the wrong media type (JSON for
/// a stream, a stream or HTML for a non-streamed request), not JSON, or JSON without any of an
/// answer's fields (an error inside a 200). Read from headers and from the markers the response
/// `json_to_metadata` (or the module, from the held body) put in `ns`; the body itself is checked
/// again when it is translated.
pub(super) fn broken_answer(
    host: &dyn HttpHost,
    provider: &dyn Provider,
    stream: bool,
    ns: &str,
    encoding: Option<String>,
) -> Option<ApiError> {
    let name = provider.name();
    if let Some(enc) = encoding.filter(|e| !e.trim().eq_ignore_ascii_case("identity")) {
        return Some(ApiError::bad_gateway(format!(
            "{name} sent a body with content-encoding '{enc}', which the gateway does not decode"
        )));
    }
    let content_type = host.response_header("content-type");
    let media = content_type
        .as_deref()
        .and_then(|ct| ct.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let marker = |key: &str| host.property(&["metadata", "filter_metadata", ns, key]);
    let quoted = || {
        marker(body_metadata::ERROR_MESSAGE)
            .or_else(|| marker(body_metadata::MESSAGE))
            .map(|m| format!(": {}", providers::redact(&String::from_utf8_lossy(&m))))
            .unwrap_or_default()
    };
    let json = body_metadata::is_json(content_type.as_deref());
    if stream {
        if media == provider.stream_media_type() {
            return None;
        }
        let what = if json {
            format!("a JSON body{}", quoted())
        } else if media.is_empty() {
            "a body without a content type".to_string()
        } else {
            format!("a '{media}' body")
        };
        return Some(ApiError::bad_gateway(format!(
            "{name} answered a streamed request with {what} instead of a stream"
        )));
    }
    if !json {
        let what = if media.is_empty() {
            "no content type".to_string()
        } else {
            format!("a '{media}' body")
        };
        return Some(ApiError::bad_gateway(format!(
            "{name} returned {what} instead of JSON"
        )));
    }
    if marker(body_metadata::BODY_ERROR).is_some() {
        return Some(ApiError::bad_gateway(format!(
            "{name} returned a body that is not valid JSON"
        )));
    }
    if marker(body_metadata::NOT_OBJECT).is_some() {
        return Some(ApiError::bad_gateway(format!(
            "{name} returned a JSON body that is not an object"
        )));
    }
    if let Some(m) = marker(body_metadata::ERROR_MESSAGE) {
        return Some(ApiError::bad_gateway(format!(
            "{name} returned an error with status 200: {}",
            providers::redact(&String::from_utf8_lossy(&m))
        )));
    }
    None
}

/// Removes every provider response header not on `allowed` (the provider's
/// [`Provider::response_headers`]), and any whose value holds a secret. Behind the attempt
/// listener the response's `x-tollgate-*` headers are the attempt's own (it removed the
/// provider's before setting them), so they stay.
pub(super) fn keep_allowed_response_headers(
    host: &mut dyn HttpHost,
    allowed: &[&str],
    secrets: &Secrets,
    from_attempt: bool,
) {
    for name in host.response_header_names() {
        let kept =
            allowed.contains(&name.as_str()) || (from_attempt && name.starts_with("x-tollgate-"));
        let leaks = kept
            && !secrets.is_empty()
            && host
                .response_header(&name)
                .is_some_and(|v| secrets.found_in(v.as_bytes()));
        if !kept || (leaks && name != ":status") {
            host.remove_response_header(&name);
        }
    }
}

pub(super) fn send_error(
    host: &mut dyn HttpHost,
    secrets: &Secrets,
    err: &ApiError,
    extra: &[(&str, String)],
    api: ClientApi,
) {
    let mut body = crate::ingress::error_body(err, api);
    secrets.scrub(&mut body);
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    // The OpenAI SDKs retry 429 and 5xx on their own; other errors are final. A refusal may say
    // more (a spent budget must not be retried).
    if err.status != 429 && err.status < 500 && !extra.iter().any(|(k, _)| *k == "x-should-retry") {
        headers.push(("x-should-retry", "false"));
    }
    headers.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
    host.send_reply(err.status, &headers, &body);
}

pub(super) fn json_reply(host: &mut dyn HttpHost, body: &[u8]) {
    host.send_reply(200, &[("content-type", "application/json")], body);
}

impl HttpFilter {
    /// Refuses the request with an OpenAI-shaped error (and extra headers), counting it.
    pub(super) fn refuse(
        &mut self,
        host: &mut dyn HttpHost,
        err: &ApiError,
        extra: &[(&str, String)],
    ) -> Action {
        if self.role() == Role::Gateway {
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
            if let (Via::Attempt(a), RoleState::Attempt(attempt)) = (r.via, &mut self.role) {
                attempt.unfinished = Some((a, r.deployment));
            }
        }
        send_error(host, &self.config.secrets, err, extra, self.api);
        Action::Pause
    }

    pub(super) fn reply_error(&mut self, host: &mut dyn HttpHost, err: &ApiError) -> Action {
        self.refuse(host, err, &[])
    }
}
