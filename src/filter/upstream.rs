//! The request as it goes upstream: its headers rewritten for the chosen deployment (the
//! client's credentials and telemetry removed), and its body read, bounded against the key's
//! budget and translated into the deployment's native form.

use crate::config::{Config, Deployment};
use crate::error::ApiError;
use crate::host::HttpHost;
use crate::ingress::ClientApi;
use crate::json::Known;
use crate::openai;
use crate::providers::{self, Operation, RequestOptions};
use crate::quota::Estimate;

use std::sync::Arc;

use crate::host::Action;

use super::routed::{Routed, Via};
use super::{accounting, HttpFilter, Role, State, CLUSTER_HEADER};

/// Client request headers that may go upstream; everything else (credentials, cookies, SDK
/// telemetry, the client's own provider headers) is removed.
const FORWARDED_HEADERS: [&str; 9] = [
    "content-type",
    "x-request-id",
    "traceparent",
    "tracestate",
    "baggage",
    "b3",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-envoy-expected-rq-timeout-ms",
];

/// The deployment's native body for a chat request.
pub(super) fn provider_request(
    d: &Deployment,
    req: &openai::ChatRequest,
    anthropic_beta: u32,
) -> Result<Vec<u8>, ApiError> {
    d.provider.chat_request(
        req,
        &d.target,
        RequestOptions {
            drop_params: d.drop_params,
            anthropic_beta,
        },
    )
}

/// What the body phase knows of how a request is admitted, for [`chat_ask`].
pub(super) struct BudgetCtx {
    pub role: Role,
    pub handed_off: bool,
    pub lease_max_age: Option<u64>,
    pub now_ms: u64,
}

/// A chat request's bounds (`ask`: its prompt estimated from its text, its output cap) and its
/// worst case over the deployments that may serve it (any of the group's, handed off), with the
/// output cap the gateway sets: near the end of a budget the output is capped to what is left,
/// and the caller writes the cap into the body that goes on.
pub(super) fn chat_ask(
    host: &dyn HttpHost,
    config: &Config,
    routed: &mut Routed,
    mut ask: accounting::Ask,
    d: Option<&Deployment>,
    b: &BudgetCtx,
) -> Result<(Estimate, Option<u64>), ApiError> {
    let ds = match (b.handed_off, d) {
        (true, _) => accounting::reachable(config, &routed.ctx.model),
        (false, Some(d)) => vec![std::borrow::Cow::Borrowed(d)],
        (false, None) => return Err(ApiError::server("no deployment chosen")),
    };
    let mut cap = None;
    if b.role == Role::Gateway {
        let room =
            accounting::budget_room(host, config, &routed.principal, b.lease_max_age, b.now_ms);
        if let Some(c) = room.and_then(|room| accounting::cap_output(&ds, &ask, room)) {
            cap = Some(c);
            ask.max_output = Some(c);
            routed.output_capped = Some(c);
        }
    }
    routed.ask = Some(ask);
    Ok((accounting::estimate_worst(&ds, &ask), cap))
}

/// A Responses API request made the deployment's. One that serves the API itself (OpenAI,
/// Azure), and the gateway handing it to the attempt listener, send the client's body with the
/// deployment's model (and `max_output_tokens` lowered to a budget's cap), read only for its
/// bounds ([`crate::ingress::responses::request::read_native`]); any other deployment gets the
/// chat completions form ([`crate::ingress::responses::request`]) translated as for an OpenAI
/// client, bounded and capped the same way.
pub(super) fn responses_request(
    host: &dyn HttpHost,
    body: &[u8],
    routed: &mut Routed,
    d: Option<&Deployment>,
    config: &Config,
    b: &BudgetCtx,
) -> Result<(Option<Vec<u8>>, Estimate), ApiError> {
    let native = d.is_some_and(|d| d.provider.responses_path(&d.target).is_some());
    if b.handed_off || native {
        let r = crate::ingress::responses::request::read_native(body)?;
        routed.check_body(r.model.as_str(), Some(r.stream))?;
        let ask = accounting::Ask::chat(body.len(), r.max_output_tokens, 1).with_prompt(&r.prompt);
        let (estimate, cap) = chat_ask(host, config, routed, ask, d, b)?;
        let request = |model: &str| providers::openai::responses::request(body, model, cap);
        return match (b.handed_off, d) {
            (true, _) => Ok((
                cap.map(|_| request(&routed.ctx.model)).transpose()?,
                estimate,
            )),
            (false, Some(d)) => Ok((Some(request(&d.target.model)?), estimate)),
            (false, None) => Err(ApiError::server("no deployment chosen")),
        };
    }
    let r = crate::ingress::responses::parse(body)?;
    routed.check_body(r.model.as_str(), Some(r.stream))?;
    let mut req = openai::parse_chat(&r.chat)?;
    let ask = accounting::Ask::chat(body.len(), req.max_output_tokens(), req.choices())
        .with_prompt(&req.prompt_text());
    let (estimate, cap) = chat_ask(host, config, routed, ask, d, b)?;
    req.output_cap = cap;
    match d {
        Some(d) => Ok((Some(provider_request(d, &req, 0)?), estimate)),
        None => Err(ApiError::server("no deployment chosen")),
    }
}

/// A Messages API request read (errors name its fields as Anthropic's API does) and made the
/// deployment's. An Anthropic deployment gets the client's body with its model (and `max_tokens`
/// lowered to a budget's cap), and so does the attempt listener, whose attempts each do this for
/// their own deployment: read for its bounds alone ([`crate::ingress::anthropic::read_native`]),
/// not translated. Any other deployment gets the chat completions form
/// ([`crate::ingress::anthropic::request`]) translated as for an OpenAI client, bounded and capped
/// the same way.
pub(super) fn messages_request(
    host: &dyn HttpHost,
    body: &[u8],
    routed: &mut Routed,
    d: Option<&Deployment>,
    config: &Config,
    b: &BudgetCtx,
) -> Result<(Option<Vec<u8>>, Estimate), ApiError> {
    let native = match (b.handed_off, d) {
        (true, _) => None,
        (false, Some(d)) if d.provider.name() == "anthropic" => Some(d.target.model.as_str()),
        (false, Some(d)) => {
            let m = crate::ingress::anthropic::parse(body)?;
            routed.check_body(m.model.as_str(), Some(m.stream))?;
            let mut req = openai::parse_chat(&m.chat)?;
            let ask = accounting::Ask::chat(body.len(), req.max_output_tokens(), req.choices())
                .with_prompt(&req.prompt_text());
            let (estimate, cap) = chat_ask(host, config, routed, ask, Some(d), b)?;
            req.output_cap = cap;
            return Ok((
                Some(provider_request(d, &req, routed.anthropic_beta)?),
                estimate,
            ));
        }
        (false, None) => return Err(ApiError::server("no deployment chosen")),
    };
    // The body goes as it came: read, not translated.
    let m = crate::ingress::anthropic::read_native(body)?;
    routed.check_body(m.model.as_str(), Some(m.stream))?;
    let ask = accounting::Ask::chat(body.len(), Some(m.max_tokens), 1).with_prompt(&m.prompt);
    let (estimate, cap) = chat_ask(host, config, routed, ask, d, b)?;
    let out = |model: &str| {
        providers::anthropic::passthrough::request_from(&m.fields, model, cap, body.len())
    };
    Ok(match native {
        Some(model) => (Some(out(model)), estimate),
        // Handed off: the client's body goes on as it is, with the cap if there is one.
        None => (cap.map(|_| out(&routed.ctx.model)), estimate),
    })
}

/// The client's headers of its own API that go to a deployment of the same API.
pub(super) fn client_api_headers(api: ClientApi) -> &'static [&'static str] {
    match api {
        ClientApi::Messages => &["anthropic-version", "anthropic-beta"],
        ClientApi::Chat | ClientApi::Responses => &[],
    }
}

/// A Messages client's `anthropic-beta` flags the deployment takes in its request body, read in
/// the headers phase for the body phase; the others are dropped and logged
/// ([`providers::anthropic_beta`]).
pub(super) fn client_betas(host: &dyn HttpHost, api: ClientApi, d: &Deployment) -> u32 {
    match (api, host.request_header("anthropic-beta")) {
        (ClientApi::Messages, Some(h)) => {
            providers::anthropic_beta(&h, d.provider, &d.target.model, &d.id)
        }
        _ => 0,
    }
}

/// Removes every client header not on the allow-list (credentials, cookies, SDK telemetry,
/// client-supplied `x-tollgate-*`), and `content-length`: the body may be rewritten. `also`
/// names headers of the client's API that go on too.
pub(super) fn strip_client_headers(host: &mut dyn HttpHost, also: &[&str]) {
    for name in host.request_header_names() {
        let keep = name.starts_with(':')
            || FORWARDED_HEADERS.contains(&name.as_str())
            || also.contains(&name.as_str())
            || name.starts_with("x-b3-");
        if !keep {
            host.remove_request_header(&name);
        }
    }
}

/// Rewrites the request's headers for the chosen deployment. Must run in the headers phase:
/// Envoy does not let a wasm filter change request headers after it.
pub(super) fn prepare_upstream_headers(
    host: &mut dyn HttpHost,
    d: &Deployment,
    op: Operation,
    stream: bool,
    config: &Config,
    api: ClientApi,
) {
    // A client of the deployment's own API keeps the headers of that API (Anthropic's version and
    // beta flags, for a Messages client of an Anthropic deployment).
    let native = api == ClientApi::Messages && d.provider.name() == "anthropic";
    strip_client_headers(host, if native { client_api_headers(api) } else { &[] });
    host.set_request_header(CLUSTER_HEADER, &d.cluster);
    // A Responses client of a deployment serving that API itself goes to it there.
    let path = match api {
        ClientApi::Responses => d.provider.responses_path(&d.target),
        _ => None,
    };
    host.set_request_header(
        ":path",
        &path.unwrap_or_else(|| d.provider.path(&d.target, op, stream)),
    );
    host.set_request_header(":authority", &d.authority);
    host.set_request_header("content-type", "application/json");
    host.set_request_header(
        "user-agent",
        concat!("tollgate/", env!("CARGO_PKG_VERSION")),
    );
    // A deployment's own timeout (LiteLLM's `timeout` / `stream_timeout`) bounds this request.
    let stream_timeout = config
        .router
        .stream_timeout_secs
        .map(|s| (s * 1000.0).round() as u64);
    let timeout = if stream {
        d.balance
            .stream_timeout_ms
            .or(stream_timeout)
            .or(d.balance.timeout_ms)
    } else {
        d.balance.timeout_ms
    };
    if let Some(ms) = timeout {
        host.set_request_header("x-envoy-upstream-rq-timeout-ms", &ms.to_string());
    }
    for (name, value) in &d.headers {
        host.set_request_header(name, value);
    }
}

/// A routed request's body read and made its deployment's: the body that goes on (`None`: the
/// client's, as it is) and the request's worst case, for admission. Handed to the attempt
/// listener, the client's body goes on (capped if need be): each attempt translates it for its
/// own deployment.
pub(super) fn translate_body(
    host: &dyn HttpHost,
    config: &Config,
    routed: &mut Routed,
    body: &[u8],
    b: &BudgetCtx,
) -> Result<(Option<Vec<u8>>, Estimate), ApiError> {
    let d = routed.served(config);
    let d = d.as_deref();
    match routed.op {
        Operation::Chat if routed.ctx.api == ClientApi::Messages => {
            messages_request(host, body, routed, d, config, b)
        }
        Operation::Chat if routed.ctx.api == ClientApi::Responses => {
            responses_request(host, body, routed, d, config, b)
        }
        // Envoy's JSON parser took this body (json_to_metadata found its model; the module
        // checks by the same rules).
        Operation::Chat => {
            openai::request::parse_chat_known(body, Known::EnvoyJson).and_then(|mut req| {
                routed.check_body(req.model.as_str(), Some(req.stream))?;
                if b.role == Role::Gateway {
                    routed.ctx.include_usage = req.include_usage;
                }
                let ask = accounting::Ask::chat(body.len(), req.max_output_tokens(), req.choices())
                    .with_prompt(&req.prompt_text());
                let (estimate, cap) = chat_ask(host, config, routed, ask, d, b)?;
                req.output_cap = cap;
                match (b.handed_off, d) {
                    // The client's body goes on as it is, with the cap if there is one.
                    (true, _) => Ok((
                        req.output_cap.map(|cap| {
                            providers::openai::rewrite_fields_with(
                                &req.fields,
                                req.model.as_str(),
                                |_| None,
                                None,
                                Some(cap),
                            )
                        }),
                        estimate,
                    )),
                    (false, Some(d)) => Ok((Some(provider_request(d, &req, 0)?), estimate)),
                    (false, None) => Err(ApiError::server("no deployment chosen")),
                }
            })
        }
        Operation::Embeddings => openai::embeddings::parse_embeddings_known(body, Known::EnvoyJson)
            .and_then(|req| {
                routed.check_body(req.model.as_str(), None)?;
                routed.embeddings_base64 = req.base64;
                let ask = accounting::Ask::embeddings(body.len());
                routed.ask = Some(ask);
                match (b.handed_off, d) {
                    (true, _) => Ok((
                        None,
                        accounting::estimate_group(config, &routed.ctx.model, &ask),
                    )),
                    (false, Some(d)) => Ok((
                        Some(d.provider.embeddings_request(&req, &d.target)?),
                        accounting::estimate(d, &ask),
                    )),
                    (false, None) => Err(ApiError::server("no deployment chosen")),
                }
            }),
    }
}

impl HttpFilter {
    /// A routed request's whole body is in: its key read first if this replica must (see
    /// `key_read`), then translated for its deployment and (the gateway) admitted.
    pub(super) fn routed_body(&mut self, host: &mut dyn HttpHost, body_size: usize) -> Action {
        let config = Arc::clone(&self.config);
        let role = self.role();
        let State::Routed(routed) = &mut self.state else {
            return Action::Continue;
        };
        if routed.deferred_key.is_some() {
            return self.authenticate_in_body(host, body_size);
        }
        let probe = match &mut self.role {
            super::RoleState::Gateway(g) => std::mem::take(&mut g.store_probe),
            super::RoleState::Attempt(_) => false,
        };
        if probe {
            return self.probe_store(host, body_size);
        }
        if role == Role::Gateway {
            if let Some(a) = self.read_conversation(host, body_size) {
                return a;
            }
        }
        let State::Routed(routed) = &mut self.state else {
            return Action::Continue;
        };
        let body = host.request_body(body_size).unwrap_or_default();
        let b = BudgetCtx {
            role,
            handed_off: matches!(routed.via, Via::Attempts),
            lease_max_age: config.store.as_ref().map(|s| s.lease_max_age_ms()),
            now_ms: host.now_ms(),
        };
        let (out, estimate) = match translate_body(host, &config, routed, &body, &b) {
            Ok(x) => x,
            Err(e) => return self.reply_error(host, &e),
        };
        if role == Role::Gateway {
            return self.admit(host, body_size, out, estimate, &b);
        }
        self.admitted(host, body_size, out)
    }
}
