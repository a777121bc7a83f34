//! Metric names. proxy-wasm metrics carry no tags, so the tags are encoded in the name as
//! `.tag.value` segments, always in the order team, key_alias, model, provider
//! (`tollgate.requests_total.team.search.key_alias.search-prod.model.gpt-4.1.provider.openai.status.2xx`),
//! and the bootstrap's `stats_config.stats_tags` regexes ([`STATS_TAGS`]) turn them back into
//! Prometheus labels. A value may contain dots: each variable segment ends at the fixed name of the
//! next one. Token types follow the OpenTelemetry GenAI vocabulary (`input`, `output`, `cached_input`).

use crate::openai::Usage;

/// Label value for "no such thing": no key, no team, or refused before a deployment was chosen.
pub const NONE: &str = "-";

/// `(tag name, regex)`: the first capture group is removed from the name, the second is the value.
pub const STATS_TAGS: [(&str, &str); 7] = [
    ("deployment", r"(\.deployment\.(.+))$"),
    (
        "team",
        r"^wasmcustom\.tollgate\.\w+(\.team\.(.+?))\.key_alias\.",
    ),
    ("key_alias", r"(\.key_alias\.(.+?))(?:\.model\.|$)"),
    ("model", r"(\.model\.(.+?))\.provider\."),
    ("provider", r"(\.provider\.([^.]+))(?:\.|$)"),
    ("status", r"(\.status\.(\dxx))$"),
    ("token_type", r"(\.type\.(input|output|cached_input))$"),
];

#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    pub team: &'a str,
    pub key_alias: &'a str,
    pub model: &'a str,
    pub provider: &'a str,
}

impl Labels<'static> {
    /// A request refused before anything about it was known.
    pub const UNKNOWN: Labels<'static> = Labels {
        team: NONE,
        key_alias: NONE,
        model: NONE,
        provider: NONE,
    };
}

fn name(metric: &str, l: &Labels) -> String {
    format!(
        "tollgate.{metric}.team.{}.key_alias.{}.model.{}.provider.{}",
        l.team, l.key_alias, l.model, l.provider
    )
}

/// Requests by the status class the client saw.
pub fn requests(l: &Labels, status: u16) -> String {
    format!("{}.status.{}xx", name("requests_total", l), status / 100)
}

/// Counter increments for a response's token usage; cached input is part of input, as in OpenAI.
pub fn token_counts(l: &Labels, u: &Usage) -> [(String, u64); 3] {
    let base = name("tokens_total", l);
    [
        (format!("{base}.type.input"), u.prompt_tokens),
        (format!("{base}.type.output"), u.completion_tokens),
        (format!("{base}.type.cached_input"), u.cached_tokens),
    ]
}

/// Spend charged, micro-USD.
pub fn spend(l: &Labels) -> String {
    name("spend_micro_usd", l)
}

/// Requests served by a deployment with no known price (charged 0).
pub fn unpriced(l: &Labels) -> String {
    name("unpriced_requests_total", l)
}

/// Requests refused by an RPM, TPM or parallel limit.
pub fn rate_limited(l: &Labels) -> String {
    name("rate_limited_total", l)
}

/// Requests refused because a budget is spent (or its reservation does not fit).
pub fn budget_refused(l: &Labels) -> String {
    name("budget_refused_total", l)
}

/// Requests admitted while their key or team was over its soft budget.
pub fn soft_budget_exceeded(l: &Labels) -> String {
    name("soft_budget_exceeded_total", l)
}

/// Time from the request reaching the filter to the upstream's response headers.
pub fn upstream_latency(l: &Labels) -> String {
    name("upstream_latency_ms", l)
}

/// Time from the request reaching the filter to the first streamed body bytes.
pub fn time_to_first_token(l: &Labels) -> String {
    name("time_to_first_token_ms", l)
}

/// Router metrics: by the client's model alias and the provider of the deployment that failed.
#[derive(Debug, Clone, Copy)]
pub struct RouterLabels<'a> {
    pub model: &'a str,
    pub provider: &'a str,
}

/// Another attempt in the same group after a retryable failure.
pub fn retries(l: &RouterLabels) -> String {
    format!(
        "tollgate.router_retries_total.model.{}.provider.{}",
        l.model, l.provider
    )
}

/// A move to the next group of a fallback chain.
pub fn fallbacks(l: &RouterLabels) -> String {
    format!(
        "tollgate.router_fallbacks_total.model.{}.provider.{}",
        l.model, l.provider
    )
}

/// Cooldowns a deployment entered.
pub fn cooldowns(deployment_id: &str) -> String {
    format!("tollgate.router_cooldowns_total.deployment.{deployment_id}")
}

/// 0 while a deployment is healthy, 1 while it cools down (gauge).
pub fn deployment_cooling(deployment_id: &str) -> String {
    format!("tollgate.deployment_cooling.deployment.{deployment_id}")
}

/// Budget left for a key (gauge, micro-USD).
pub fn key_budget_remaining(team: &str, key_alias: &str) -> String {
    format!("tollgate.key_budget_remaining_micro_usd.team.{team}.key_alias.{key_alias}")
}

/// Budget left for a team (gauge, micro-USD).
pub fn team_budget_remaining(team: &str) -> String {
    format!("tollgate.team_budget_remaining_micro_usd.team.{team}.key_alias.{NONE}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_tags() {
        let l = Labels {
            team: "search",
            key_alias: "search.prod",
            model: "gpt-4.1",
            provider: "openai",
        };
        assert_eq!(
            requests(&l, 429),
            "tollgate.requests_total.team.search.key_alias.search.prod.model.gpt-4.1.provider.openai.status.4xx"
        );
        let t = token_counts(
            &l,
            &Usage {
                prompt_tokens: 7,
                completion_tokens: 3,
                cached_tokens: 2,
                ..Default::default()
            },
        );
        assert!(t[2].0.ends_with(".provider.openai.type.cached_input") && t[2].1 == 2);
        assert_eq!(
            team_budget_remaining("t"),
            "tollgate.team_budget_remaining_micro_usd.team.t.key_alias.-"
        );
    }
}
