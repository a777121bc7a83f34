//! Chooses the deployment that serves a request: for a group routed directly, its one deployment;
//! for a group routed per attempt, the best healthy deployment by the configured strategy.

pub mod attempts;
pub mod classify;
pub mod health;
pub mod sticky;

use crate::config::router::Strategy;
use crate::config::{Config, Deployment, Mode};
use crate::error::ApiError;
use crate::providers::Operation;
use health::Health;

pub fn unknown_model(alias: &str) -> ApiError {
    ApiError::not_found(format!(
        "The model `{alias}` does not exist or you do not have access to it. Call GET /v1/models to list the models this gateway serves."
    ))
    .with_param("model")
    .with_code("model_not_found")
}

/// The deployments of a group able to serve the operation, in config order.
pub fn members(config: &Config, alias: &str, op: Operation) -> Result<Vec<usize>, ApiError> {
    let group = config.group(alias).ok_or_else(|| unknown_model(alias))?;
    let serving: Vec<usize> = group
        .iter()
        .copied()
        .filter(|&i| {
            config
                .deployment(i)
                .is_some_and(|d| serves(d.mode, d.provider.supports(op), op))
        })
        .collect();
    if serving.is_empty() {
        return Err(ApiError::invalid_param(
            "model",
            format!("The model `{alias}` does not serve {}.", op.name()),
        )
        .with_code("unsupported_operation"));
    }
    Ok(serving)
}

/// The first deployment of the group able to serve the operation (directly routed groups have one).
pub fn pick(config: &Config, alias: &str, op: Operation) -> Result<usize, ApiError> {
    members(config, alias, op)?
        .first()
        .copied()
        .ok_or_else(|| unknown_model(alias))
}

fn serves(mode: Mode, provider_supports: bool, op: Operation) -> bool {
    provider_supports
        && matches!(
            (mode, op),
            (Mode::Any, _)
                | (Mode::Chat, Operation::Chat)
                | (Mode::Embedding, Operation::Embeddings)
        )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Deployment(usize),
    /// Every deployment is too small for the prompt (pre-call check).
    ContextTooLong,
    /// Every deployment is cooling down.
    NoneAvailable,
}

/// What the choice needs to know about the request.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub alias: &'a str,
    pub op: Operation,
    /// Estimated prompt tokens, for the pre-call context check.
    pub prompt_tokens: u64,
    pub stream: bool,
    pub now_ms: u64,
    /// Deployments already tried for this request: avoided while others remain.
    pub tried: &'a [usize],
    pub random: u64,
}

/// The best deployment of a group for one attempt.
pub fn choose(
    config: &Config,
    ask: &Ask,
    health: &dyn Fn(&Deployment) -> Health,
) -> Result<Choice, ApiError> {
    let settings = &config.router;
    let mut context_skipped = false;
    let mut ok: Vec<(usize, Health)> = Vec::new();
    for i in members(config, ask.alias, ask.op)? {
        let Some(d) = config.deployment(i) else {
            continue;
        };
        let h = health(d);
        if settings.cooldowns && h.cooling(ask.now_ms) {
            continue;
        }
        // A wildcard deployment's limits are those of the model the name fills it with.
        let limit = config
            .model_info(i, ask.alias)
            .and_then(|m| m.max_input_tokens);
        if settings.pre_call_checks && limit.is_some_and(|max| ask.prompt_tokens > max) {
            context_skipped = true;
            continue;
        }
        ok.push((i, h));
    }
    if ok.is_empty() {
        return Ok(if context_skipped {
            Choice::ContextTooLong
        } else {
            Choice::NoneAvailable
        });
    }
    // A retry goes to another deployment while the group has one.
    let fresh: Vec<(usize, Health)> = ok
        .iter()
        .copied()
        .filter(|(i, _)| !ask.tried.contains(i))
        .collect();
    let mut pool = if fresh.is_empty() { ok } else { fresh };
    // LiteLLM's `order`: the lowest tier with a candidate is used first.
    let order = |i: usize| {
        config
            .deployment(i)
            .and_then(|d| d.balance.order)
            .unwrap_or(u64::MAX)
    };
    let tier = pool
        .iter()
        .map(|(i, _)| order(*i))
        .min()
        .unwrap_or(u64::MAX);
    pool.retain(|(i, _)| order(*i) == tier);
    let pick = match settings.strategy {
        Strategy::SimpleShuffle => weighted(config, &pool, ask.random),
        Strategy::LeastBusy => lowest(&pool, ask.random, |_, h| h.in_flight as f64),
        Strategy::LatencyBased => lowest(&pool, ask.random, |_, h| {
            // Unmeasured deployments go first, so every one gets measured.
            (if ask.stream && h.ttft_ms > 0 {
                h.ttft_ms
            } else {
                h.latency_ms
            }) as f64
        }),
        Strategy::UsageBased => lowest(&pool, ask.random, |i, h| {
            let used = h.tokens_this_minute(ask.now_ms) as f64;
            match config.deployment(i).and_then(|d| d.balance.tpm) {
                Some(tpm) if tpm > 0 => used / tpm as f64,
                _ => used,
            }
        }),
        Strategy::CostBased => lowest(&pool, ask.random, |i, _| {
            config
                .model_info(i, ask.alias)
                .map(|m| m.price)
                .filter(|p| *p != crate::pricing::Price::default())
                .map(|p| p.input.saturating_add(p.output) as f64)
                .unwrap_or(f64::MAX)
        }),
    };
    Ok(pick
        .map(Choice::Deployment)
        .unwrap_or(Choice::NoneAvailable))
}

fn weighted(config: &Config, pool: &[(usize, Health)], random: u64) -> Option<usize> {
    let weight = |i: usize| {
        config
            .deployment(i)
            .map(|d| d.balance.shuffle_weight())
            .unwrap_or(1.0)
    };
    let total: f64 = pool.iter().map(|(i, _)| weight(*i)).sum();
    let mut point = (random as f64 / u64::MAX as f64) * total;
    for (i, _) in pool {
        let w = weight(*i);
        if point < w {
            return Some(*i);
        }
        point -= w;
    }
    pool.last().map(|(i, _)| *i)
}

/// The candidate with the lowest score; ties are broken at random so load spreads.
fn lowest(
    pool: &[(usize, Health)],
    random: u64,
    score: impl Fn(usize, &Health) -> f64,
) -> Option<usize> {
    let n = pool.len();
    if n == 0 {
        return None;
    }
    let start = (random % n as u64) as usize;
    let mut best: Option<(usize, f64)> = None;
    for k in 0..n {
        let Some((i, h)) = pool.get((start + k) % n) else {
            continue;
        };
        let s = score(*i, h);
        if best.is_none_or(|(_, b)| s < b) {
            best = Some((*i, s));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests;
