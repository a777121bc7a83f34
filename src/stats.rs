//! Metric names. proxy-wasm metrics carry no tags, so the tags are encoded in the name as
//! `.tag.value` segments (`tollgate.requests_total.model.gpt-4.1.provider.openai.status.2xx`) and
//! the bootstrap's `stats_config.stats_tags` regexes (see [`STATS_TAGS`]) turn them back into
//! Prometheus labels: `tollgate_requests_total{model="gpt-4.1",provider="openai",status="2xx"}`.
//! Token types follow the OpenTelemetry GenAI vocabulary (`input`, `output`, `cached_input`).

use crate::openai::Usage;

/// Label value for requests refused before a deployment was chosen.
pub const NONE: &str = "-";

/// `(tag name, regex)`: the first capture group is removed from the name, the second is the value.
/// A model alias may contain dots, so its value runs up to the `.provider.` segment that always follows.
pub const STATS_TAGS: [(&str, &str); 4] = [
    (
        "model",
        r"^wasmcustom\.tollgate\.\w+(\.model\.(.+?))\.provider\.",
    ),
    ("provider", r"(\.provider\.([^.]+))(?:\.|$)"),
    ("status", r"(\.status\.(\dxx))$"),
    ("token_type", r"(\.type\.(input|output|cached_input))$"),
];

#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    pub model: &'a str,
    pub provider: &'a str,
}

/// Requests by the status class the client saw.
pub fn requests(l: Labels, status: u16) -> String {
    format!(
        "tollgate.requests_total.model.{}.provider.{}.status.{}xx",
        l.model,
        l.provider,
        status / 100
    )
}

fn tokens(l: Labels, kind: &str) -> String {
    format!(
        "tollgate.tokens_total.model.{}.provider.{}.type.{kind}",
        l.model, l.provider
    )
}

/// Counter increments for a response's token usage; cached input is part of input, as in OpenAI.
pub fn token_counts(l: Labels, u: &Usage) -> [(String, u64); 3] {
    [
        (tokens(l, "input"), u.prompt_tokens),
        (tokens(l, "output"), u.completion_tokens),
        (tokens(l, "cached_input"), u.cached_tokens),
    ]
}

/// Time from the request reaching the filter to the upstream's response headers.
pub fn upstream_latency(l: Labels) -> String {
    format!(
        "tollgate.upstream_latency_ms.model.{}.provider.{}",
        l.model, l.provider
    )
}

/// Time from the request reaching the filter to the first streamed body bytes.
pub fn time_to_first_token(l: Labels) -> String {
    format!(
        "tollgate.time_to_first_token_ms.model.{}.provider.{}",
        l.model, l.provider
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_tags() {
        let l = Labels {
            model: "gpt-4.1",
            provider: "openai",
        };
        assert_eq!(
            requests(l, 429),
            "tollgate.requests_total.model.gpt-4.1.provider.openai.status.4xx"
        );
        let t = token_counts(
            l,
            &Usage {
                prompt_tokens: 7,
                completion_tokens: 3,
                cached_tokens: 2,
                ..Default::default()
            },
        );
        assert_eq!(
            t[2],
            (
                "tollgate.tokens_total.model.gpt-4.1.provider.openai.type.cached_input".to_string(),
                2
            )
        );
    }
}
