//! Prices and context limits per deployment. (Interim: configured prices only; the built-in
//! table arrives with the pricing branch.)

use crate::openai::Usage;

/// Pico-USD (1e-12 USD) per token: integers, so sums are exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_creation: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelInfo {
    pub price: Price,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
}

/// The cost of a usage. Prompt tokens include cached and cache-creation tokens.
pub fn cost_pico(p: &Price, u: &Usage) -> u128 {
    let uncached = u
        .prompt_tokens
        .saturating_sub(u.cached_tokens)
        .saturating_sub(u.cache_creation_tokens);
    u128::from(uncached) * u128::from(p.input)
        + u128::from(u.cached_tokens) * u128::from(p.cache_read)
        + u128::from(u.cache_creation_tokens) * u128::from(p.cache_creation)
        + u128::from(u.completion_tokens) * u128::from(p.output)
}

/// USD per token (as configs write it) to pico-USD per token.
pub fn pico_per_token(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1e12).round() as u64
    } else {
        0
    }
}

pub fn builtin(_provider: &str, _model: &str) -> Option<ModelInfo> {
    None
}
