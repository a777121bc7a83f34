//! Proxy-wide caps: `litellm_settings.max_budget` / `budget_duration` (the spend of every call
//! through the gateway), `general_settings.global_max_parallel_requests` (requests in flight
//! across the gateway) and `general_settings.max_parallel_requests` (the parallel limit of a
//! virtual key that sets none of its own).

use serde_json::{Map, Value};

use super::walker::{join, Walker};
use crate::keys::time;
use crate::quota::{self, Limits, Party, Scope};

/// The proxy-wide scope: admitted and settled for every proxied request, whoever the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyCap {
    pub limits: Limits,
}

impl ProxyCap {
    pub fn party(&self) -> Party<'_> {
        Party {
            scope: Scope::Proxy,
            key: quota::PROXY_RECORD,
            limits: &self.limits,
        }
    }
}

/// The caps as configured: the proxy-wide scope (`None`: no proxy-wide cap), and the default
/// parallel limit of virtual keys.
pub(super) fn read(
    w: &mut Walker,
    litellm: &Map<String, Value>,
    general: &Map<String, Value>,
) -> (Option<ProxyCap>, Option<u64>) {
    let max_budget = w.number(litellm, "max_budget", "litellm_settings", 0.0);
    let duration = duration(w, litellm, "budget_duration", "litellm_settings");
    if duration.is_some() && max_budget.is_none() {
        w.warn(
            "litellm_settings.budget_duration",
            "has no effect without litellm_settings.max_budget",
        );
    }
    let global = count(
        w,
        general,
        "global_max_parallel_requests",
        "general_settings",
    );
    let per_key = count(w, general, "max_parallel_requests", "general_settings");
    let cap = (max_budget.is_some() || global.is_some()).then(|| ProxyCap {
        limits: Limits {
            max_budget: max_budget.map(quota::micro),
            budget_duration: duration.filter(|_| max_budget.is_some()),
            parallel: global,
            ..Default::default()
        },
    });
    (cap, per_key)
}

/// A whole number at least 1 (a limit of requests).
fn count(w: &mut Walker, map: &Map<String, Value>, key: &str, path: &str) -> Option<u64> {
    let x = w.number(map, key, path, 1.0)?;
    if x.fract() != 0.0 || x > u32::MAX as f64 {
        w.error(
            &join(path, key),
            format!("must be a whole number of requests, not {x}"),
        );
        return None;
    }
    Some(x as u64)
}

/// A LiteLLM duration (`30s`, `5m`, `24h`, `30d`, `1w`, `1mo`), in seconds.
fn duration(w: &mut Walker, map: &Map<String, Value>, key: &str, path: &str) -> Option<u64> {
    let s = w.string(map, key, path)?;
    match time::parse_duration(&s) {
        Some(secs) if secs > 0 => Some(secs),
        _ => {
            w.error(
                &join(path, key),
                format!("'{s}' is not a duration like 30s, 5m, 24h, 30d, 1w or 1mo"),
            );
            None
        }
    }
}
