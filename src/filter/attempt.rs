//! The attempt listener's side of routing: which deployment this attempt goes to, and after a
//! failure whether Envoy should try again (and where the next attempt will go).

use crate::config::Config;
use crate::error::ApiError;
use crate::host::HttpHost;
use crate::providers::Operation;
use crate::router::attempts::{self, AttemptState, Track};
use crate::router::classify::{self, Next, Seen};
use crate::router::health::{self, Outcome};
use crate::router::{self, Ask, Choice};
use crate::stats;

/// Request headers the gateway sets for the attempt listener.
pub const ATTEMPT_ID: &str = "x-tollgate-attempt-id";
pub const ALIAS: &str = "x-tollgate-alias";
pub const STREAM: &str = "x-tollgate-stream";
pub const OPERATION: &str = "x-tollgate-op";
/// The API the client speaks (`chat`, `messages`): what the attempt renders its answer in.
pub const CLIENT_API: &str = "x-tollgate-client-api";
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
