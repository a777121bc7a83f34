//! The attempt role: the filter on the in-process attempt listener, behind Envoy's retry policy.
//! Per attempt it chooses the deployment (moving along the fallback chains), prepares the
//! request for it, and after a failure tells Envoy whether to try again (and where the next
//! attempt will go); the gateway's routing headers and this attempt's response headers are
//! the two roles' protocol.

use crate::auth::Principal;
use crate::config::Config;
use crate::error::ApiError;
use crate::host::HttpHost;
use crate::providers::Operation;
use crate::router::attempts::{self, AttemptState, Track};
use crate::router::classify::{self, Next, Seen};
use crate::router::health::{self, Outcome};
use crate::router::{self, Ask, Choice};
use crate::stats;

use super::routed::Via;
use super::upstream::{client_betas, prepare_upstream_headers};
use super::{accounting, HttpFilter};

/// Request headers the gateway sets for the attempt listener.
pub const ATTEMPT_ID: &str = "x-tollgate-attempt-id";
pub const ALIAS: &str = "x-tollgate-alias";
pub const STREAM: &str = "x-tollgate-stream";
pub const OPERATION: &str = "x-tollgate-op";
/// The API the client speaks (`chat`, `messages`): what the attempt renders its answer in.
pub const CLIENT_API: &str = "x-tollgate-client-api";
/// The name of the response the attempt makes, when it makes one (Responses API clients): chosen
/// by the gateway, so that every attempt's answer has the same.
pub const RESPONSE_ID: &str = "x-tollgate-response-id";
/// The client body's length, for the attempt's context check: the body handed off goes without
/// `content-length` (the gateway may rewrite it, capping its output).
pub const BODY_BYTES: &str = "x-tollgate-body-bytes";
/// Response header telling the gateway's router to make another attempt.
pub const RETRY: &str = "x-tollgate-retry";
/// Response headers telling the client what happened.
pub const MODEL_ID: &str = "x-tollgate-model-id";
pub const RETRIES: &str = "x-tollgate-attempted-retries";
pub const FALLBACKS: &str = "x-tollgate-attempted-fallbacks";
/// Response header (the gateway removes it) naming the model name a model template (`openai/*`)
/// was filled from, so the gateway prices what the attempt served.
pub const SERVED_NAME: &str = "x-tollgate-served-name";

/// What an attempt carries from its headers phase to its end.
pub struct AttemptCtx {
    pub attempt_id: String,
    pub state: AttemptState,
    /// The request's alias (the client's model), for log lines and context chains.
    pub alias: String,
    /// The name the deployment's model template was filled from (the group being tried).
    pub served_name: Option<String>,
    /// A failure already updated the deployment's health.
    pub outcome_recorded: bool,
    /// This attempt told the gateway to try again (so the request is not over).
    pub retry_signaled: bool,
}

/// Chooses the deployment for this attempt, moving along the fallback chains as the request's
/// state and the deployments' health require.
pub fn choose(
    config: &Config,
    host: &mut dyn HttpHost,
    alias: &str,
    op: Operation,
    stream: bool,
    prompt_tokens: u64,
    state: &mut AttemptState,
) -> Result<usize, ApiError> {
    let now_ms = host.now_ms();
    // Each step moves forward on a finite chain; the bound only guards against a loop.
    for _ in 0..64 {
        let Some(group) = state.group().map(str::to_string) else {
            break;
        };
        let random = u64::from_le_bytes(
            host.random_bytes()
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .unwrap_or([0; 8]),
        );
        let ask = Ask {
            alias: &group,
            op,
            prompt_tokens,
            stream,
            now_ms,
            tried: &state.tried,
            random,
        };
        let store = host.store();
        let choice = router::choose(config, &ask, &|d| health::read(store, &d.id))?;
        publish_health(config, host, &group, now_ms);
        match choice {
            Choice::Deployment(d) => return Ok(d),
            Choice::ContextTooLong => {
                let chain = context_chain(config, &group, alias);
                if state.switch(Track::ContextWindow, chain) {
                    state.fallbacks += 1;
                    log::warn!("tollgate: model '{alias}': prompt too long for '{group}', using context_window_fallbacks");
                    continue;
                }
                return Err(ApiError::invalid_param(
                    "messages",
                    format!("The prompt (about {prompt_tokens} tokens) is longer than the context window of every deployment of '{group}'."),
                )
                .with_code("context_length_exceeded"));
            }
            Choice::NoneAvailable => {
                if state.next_group() {
                    state.fallbacks += 1;
                    log::warn!(
                        "tollgate: model '{alias}': every deployment of '{group}' is cooling down, falling back to '{}'",
                        state.group().unwrap_or_default()
                    );
                    continue;
                }
                break;
            }
        }
    }
    Err(ApiError::rate_limit(format!(
        "No deployments available for model '{alias}': every deployment is cooling down after failures. Retry in a few seconds."
    ))
    .with_code("no_deployments_available"))
}

fn context_chain(config: &Config, group: &str, alias: &str) -> Vec<String> {
    let chains = &config.router.context_window_fallbacks;
    chains
        .get(group)
        .or_else(|| chains.get(alias))
        .cloned()
        .unwrap_or_default()
}

/// Keeps each deployment's cooling gauge current (0 healthy, 1 cooling down).
fn publish_health(config: &Config, host: &mut dyn HttpHost, group: &str, now_ms: u64) {
    for &i in config.group(group).unwrap_or(&[]) {
        if let Some(d) = config.deployment(i) {
            let cooling = health::read(host.store(), &d.id).cooling(now_ms);
            host.set_gauge(&stats::deployment_cooling(&d.id), u64::from(cooling));
        }
    }
}

/// A failed attempt: records it against the deployment and decides whether the gateway should
/// make another attempt. Returns true when it should (the state is saved for that attempt).
pub fn after_failure(
    config: &Config,
    host: &mut dyn HttpHost,
    a: &mut AttemptCtx,
    seen: &Seen,
) -> bool {
    let Some(d) = a.state.current.and_then(|i| config.deployment(i)) else {
        return false;
    };
    let settings = &config.router;
    let class = classify::classify(seen);
    let group_size = a
        .state
        .group()
        .and_then(|g| config.group(g))
        .map(<[usize]>::len)
        .unwrap_or(1);
    let now_ms = host.now_ms();
    // A wildcard deployment's 404 is about the model the client named, not the deployment.
    let effect = if d.is_template() && class == classify::Class::NotFound {
        None
    } else {
        classify::health_effect(class, group_size > 1)
    };
    if let Some(cool_now) = effect {
        if health::finish(
            host.store(),
            &d.id,
            Outcome::Failure { cool_now },
            settings,
            now_ms,
        ) {
            log::warn!(
                "tollgate: deployment '{}' cools down for {}s after {class:?}",
                d.id,
                settings.cooldown_secs
            );
            host.increment_counter(&stats::cooldowns(&d.id), 1);
            host.set_gauge(&stats::deployment_cooling(&d.id), 1);
        }
    } else {
        health::finish(host.store(), &d.id, Outcome::Neutral, settings, now_ms);
    }
    a.outcome_recorded = true;
    let spent = classify::policy_slot(class)
        .and_then(|s| a.state.class_retries.get(s).copied())
        .unwrap_or(0);
    let labels = stats::RouterLabels {
        model: config.metric_model(&a.alias),
        provider: d.provider.name(),
    };
    let again = match classify::next(settings, class, spent) {
        Next::Retry => {
            if let Some(slot) =
                classify::policy_slot(class).and_then(|s| a.state.class_retries.get_mut(s))
            {
                *slot += 1;
            }
            a.state.retries += 1;
            host.increment_counter(&stats::retries(&labels), 1);
            true
        }
        Next::Fallback(track) => {
            let from = a.state.group().unwrap_or_default().to_string();
            let moved = match track {
                Track::Normal => a.state.next_group(),
                Track::ContextWindow => a
                    .state
                    .switch(track, context_chain(config, &from, &a.alias)),
                Track::ContentPolicy => {
                    let chains = &settings.content_policy_fallbacks;
                    let chain = chains
                        .get(&from)
                        .or_else(|| chains.get(&a.alias))
                        .cloned()
                        .unwrap_or_default();
                    a.state.switch(track, chain)
                }
            };
            if moved {
                a.state.fallbacks += 1;
                host.increment_counter(&stats::fallbacks(&labels), 1);
                log::warn!(
                    "tollgate: model '{}': falling back from '{from}' to '{}' after {class:?} from deployment '{}'",
                    a.alias,
                    a.state.group().unwrap_or_default(),
                    d.id
                );
            }
            moved
        }
        Next::GiveUp => false,
    };
    if again && !attempts::save(host.store(), &mut a.state, now_ms) {
        log::warn!(
            "tollgate: no room to remember request {}'s attempts; not retrying it",
            a.attempt_id
        );
        return false;
    }
    a.retry_signaled = again;
    again
}

impl HttpFilter {
    /// One attempt, in the attempt listener: chooses its deployment and prepares the request.
    pub(super) fn route_attempt(
        &self,
        host: &mut dyn HttpHost,
    ) -> Result<super::Next, (ApiError, Option<Box<AttemptCtx>>)> {
        let header =
            |host: &dyn HttpHost, name: &str| host.request_header(name).unwrap_or_default();
        let attempt_id = header(host, ATTEMPT_ID);
        let alias = header(host, ALIAS);
        if attempt_id.is_empty() || alias.is_empty() {
            let e = ApiError::server(
                "The attempt listener was reached without the gateway's routing headers.",
            )
            .with_code("gateway_misconfigured");
            return Err((e, None));
        }
        let op = if header(host, OPERATION) == "embeddings" {
            Operation::Embeddings
        } else {
            Operation::Chat
        };
        let stream = header(host, STREAM) == "1";
        let config = &self.config;
        let state = attempts::load(host.store(), &attempt_id).unwrap_or_else(|| {
            let mut chain = vec![alias.clone()];
            chain.extend(config.router.fallback_chain(&alias));
            AttemptState::new(&attempt_id, chain)
        });
        let mut a = Box::new(AttemptCtx {
            attempt_id,
            state,
            alias: alias.clone(),
            served_name: None,
            outcome_recorded: false,
            retry_signaled: false,
        });
        // A rough prompt size for the context check: about four bytes a token.
        let prompt_tokens = header(host, BODY_BYTES)
            .parse::<u64>()
            .or_else(|_| header(host, "content-length").parse::<u64>())
            .unwrap_or(0)
            / 4;
        let index = match choose(
            config,
            host,
            &alias,
            op,
            stream,
            prompt_tokens,
            &mut a.state,
        ) {
            Ok(i) => i,
            Err(e) => return Err((e, Some(a))),
        };
        // The group this attempt serves (a fallback's, perhaps): a model template is filled from it.
        let group = a.state.group().unwrap_or(&alias).to_string();
        let Some(d) = config.serving(index, &group) else {
            return Err((ApiError::server("deployment index out of range"), Some(a)));
        };
        if matches!(d, std::borrow::Cow::Owned(_)) {
            a.served_name = Some(group.clone());
        }
        health::start(host.store(), &d.id);
        a.state.current = Some(index);
        a.state.tried.push(index);
        a.state.group_attempts += 1;
        let now_ms = host.now_ms();
        if !attempts::save(host.store(), &mut a.state, now_ms) {
            log::warn!(
                "tollgate: no room to remember request {}'s attempts",
                a.attempt_id
            );
        }
        let response_id = host
            .request_header(RESPONSE_ID)
            .filter(|id| crate::router::sticky::valid_id(id));
        // The forwarded request carries the gateway's routing headers: drop them with the rest.
        let betas = client_betas(host, self.api, &d);
        prepare_upstream_headers(host, &d, op, stream, config, self.api);
        drop(d);
        let mut routed = self.new_routed(
            host,
            op,
            Via::Attempt(a),
            None,
            Principal::Anonymous,
            alias,
            stream,
        );
        routed.serve_with(config, index, &group);
        routed.anthropic_beta = betas;
        if let Some(id) = response_id {
            routed.ctx.id = id;
        }
        // The gateway accounts from the usage chunk, whether or not its client asked for one.
        routed.ctx.include_usage = true;
        Ok(super::Next::Routed(Box::new(routed)))
    }
}

/// A failure the attempt found itself (Envoy's own reply, a 200 that is no answer), classified
/// as a server error (or a timeout) and recorded against the deployment; returns the attempt's
/// response headers, saying whether Envoy should try again.
pub(super) fn local_failure(
    config: &Config,
    host: &mut dyn HttpHost,
    a: &mut AttemptCtx,
    status: u16,
    timed_out: bool,
) -> accounting::Headers {
    let seen = Seen {
        status,
        local: true,
        timed_out,
        ..Default::default()
    };
    let again = after_failure(config, host, a, &seen);
    attempt_headers(config, a, again)
}

/// The attempt's response headers: which deployment answered, how many retries and fallbacks
/// the request has made, and whether Envoy should try again.
pub(super) fn attempt_headers(config: &Config, a: &AttemptCtx, again: bool) -> accounting::Headers {
    let mut h = Vec::with_capacity(4);
    if let Some(d) = a.state.current.and_then(|i| config.deployment(i)) {
        h.push((MODEL_ID, d.id.clone()));
    }
    if let Some(name) = &a.served_name {
        h.push((SERVED_NAME, name.clone()));
    }
    h.push((RETRIES, a.state.retries.to_string()));
    h.push((FALLBACKS, a.state.fallbacks.to_string()));
    if again {
        h.push((RETRY, "1".to_string()));
    }
    h
}
