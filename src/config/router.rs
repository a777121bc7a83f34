//! `router_settings` (and their `litellm_settings` twins): strategies, retries, cooldowns,
//! fallback chains, timeouts; and each deployment's balancing fields (`weight`, `rpm`, `tpm`, ...).

use hashbrown::HashMap;
use serde_json::{Map, Value};

use super::walker::{join, kind, Walker};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Random, weighted by `weight`, else `rpm`, else `tpm`.
    SimpleShuffle,
    /// Fewest requests in flight, across all workers.
    LeastBusy,
    /// Lowest recent latency (time to first token for streams).
    LatencyBased,
    /// Lowest share of its `tpm` used this minute.
    UsageBased,
    /// Cheapest by price.
    CostBased,
}

/// Retries per error class (LiteLLM's `retry_policy`); `None` fields fall back to `num_retries`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryPolicy {
    pub rate_limit: Option<u32>,
    pub internal_server: Option<u32>,
    pub timeout: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouterSettings {
    pub strategy: Strategy,
    pub num_retries: u32,
    pub retry_policy: RetryPolicy,
    /// Failures within a minute before a deployment cools down.
    pub allowed_fails: u32,
    pub cooldown_secs: u64,
    pub cooldowns: bool,
    pub fallbacks: HashMap<String, Vec<String>>,
    pub context_window_fallbacks: HashMap<String, Vec<String>>,
    pub content_policy_fallbacks: HashMap<String, Vec<String>>,
    pub default_fallbacks: Vec<String>,
    pub max_fallbacks: u32,
    pub stream_timeout_secs: Option<f64>,
    /// Skip deployments whose context window the prompt would not fit.
    pub pre_call_checks: bool,
}

impl Default for RouterSettings {
    fn default() -> Self {
        RouterSettings {
            strategy: Strategy::SimpleShuffle,
            num_retries: 0,
            retry_policy: RetryPolicy::default(),
            allowed_fails: 3,
            cooldown_secs: 5,
            cooldowns: true,
            fallbacks: HashMap::new(),
            context_window_fallbacks: HashMap::new(),
            content_policy_fallbacks: HashMap::new(),
            default_fallbacks: Vec::new(),
            max_fallbacks: 5,
            stream_timeout_secs: None,
            pre_call_checks: true,
        }
    }
}

/// A deployment's balancing fields from `litellm_params`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Balance {
    pub weight: Option<f64>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// LiteLLM's `order`: lower is tried first; deployments without one come after.
    pub order: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub stream_timeout_ms: Option<u64>,
}

impl Balance {
    /// The weight simple-shuffle uses: `weight`, else `rpm`, else `tpm`, else 1.
    pub fn shuffle_weight(&self) -> f64 {
        self.weight
            .or(self.rpm.map(|r| r as f64))
            .or(self.tpm.map(|t| t as f64))
            .filter(|w| *w > 0.0)
            .unwrap_or(1.0)
    }
}

pub(crate) fn balance(w: &mut Walker, lp: &Map<String, Value>, lp_path: &str) -> Balance {
    let count = |w: &mut Walker, f: &str| w.number(lp, f, lp_path, 0.0).map(|x| x as u64);
    let ms = |w: &mut Walker, f: &str| {
        w.number(lp, f, lp_path, 0.001)
            .map(|s| (s * 1000.0).round() as u64)
    };
    Balance {
        weight: w.number(lp, "weight", lp_path, 0.0),
        rpm: count(w, "rpm"),
        tpm: count(w, "tpm"),
        order: count(w, "order"),
        timeout_ms: ms(w, "timeout"),
        stream_timeout_ms: ms(w, "stream_timeout"),
    }
}

fn count(w: &mut Walker, m: &Map<String, Value>, key: &str, path: &str) -> Option<u32> {
    let v = w.number(m, key, path, 0.0)?;
    if v.fract() != 0.0 || v > f64::from(u32::MAX) {
        w.error(&join(path, key), format!("must be a whole number, not {v}"));
        return None;
    }
    Some(v as u32)
}

/// Reads a field from `router_settings`, else from `litellm_settings` (LiteLLM accepts both).
fn pick<'a>(
    router: &'a Map<String, Value>,
    litellm: &'a Map<String, Value>,
    key: &str,
) -> Option<(&'a Map<String, Value>, &'static str)> {
    if router.contains_key(key) {
        Some((router, "router_settings"))
    } else if litellm.contains_key(key) {
        Some((litellm, "litellm_settings"))
    } else {
        None
    }
}

/// `[{group: [fallback, ...]}, ...]` into a map; every name must be a `model_name`.
fn chains(
    w: &mut Walker,
    v: &Value,
    path: &str,
    exists: &dyn Fn(&str) -> bool,
) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    let Value::Array(items) = v else {
        w.error(
            path,
            format!(
                "must be a list of {{model_name: [fallback model_names]}}, not {}",
                kind(v)
            ),
        );
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let Some(m) = w.object(item, &item_path) else {
            continue;
        };
        for (group, targets) in m {
            let p = join(&item_path, group);
            if !exists(group) {
                w.error(&p, format!("'{group}' is not a model_name in model_list"));
            }
            match names(w, targets, &p, exists) {
                Some(list) => {
                    out.insert(group.clone(), list);
                }
                None => continue,
            }
        }
    }
    out
}

fn names(
    w: &mut Walker,
    v: &Value,
    path: &str,
    exists: &dyn Fn(&str) -> bool,
) -> Option<Vec<String>> {
    let Value::Array(items) = v else {
        w.error(
            path,
            format!("must be a list of model_names, not {}", kind(v)),
        );
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, t) in items.iter().enumerate() {
        match t {
            Value::String(s) if exists(s) => out.push(s.clone()),
            Value::String(s) => w.error(
                &format!("{path}[{i}]"),
                format!("'{s}' is not a model_name in model_list"),
            ),
            other => w.error(
                &format!("{path}[{i}]"),
                format!("must be a model_name, not {}", kind(other)),
            ),
        }
    }
    Some(out)
}

pub(crate) fn settings(
    w: &mut Walker,
    router: &Map<String, Value>,
    litellm: &Map<String, Value>,
    exists: &dyn Fn(&str) -> bool,
) -> RouterSettings {
    let mut s = RouterSettings::default();
    if let Some(v) = w.string(router, "routing_strategy", "router_settings") {
        s.strategy = match v.as_str() {
            "simple-shuffle" => Strategy::SimpleShuffle,
            "least-busy" => Strategy::LeastBusy,
            "latency-based-routing" => Strategy::LatencyBased,
            "usage-based-routing" | "usage-based-routing-v2" => Strategy::UsageBased,
            "cost-based-routing" => Strategy::CostBased,
            other => {
                w.error(
                    "router_settings.routing_strategy",
                    format!("'{other}' is not one of simple-shuffle, least-busy, latency-based-routing, usage-based-routing, cost-based-routing"),
                );
                s.strategy
            }
        };
    }
    if let Some((m, p)) = pick(router, litellm, "num_retries") {
        s.num_retries = count(w, m, "num_retries", p).unwrap_or(0);
    }
    if let Some(v) = router.get("retry_policy") {
        if let Some(m) = w.object(v, "router_settings.retry_policy") {
            let path = "router_settings.retry_policy";
            w.check_fields(
                m,
                path,
                &[
                    "RateLimitErrorRetries",
                    "InternalServerErrorRetries",
                    "TimeoutErrorRetries",
                ],
                &[
                    "BadRequestErrorRetries",
                    "AuthenticationErrorRetries",
                    "ContentPolicyViolationErrorRetries",
                ],
            );
            s.retry_policy = RetryPolicy {
                rate_limit: count(w, m, "RateLimitErrorRetries", path),
                internal_server: count(w, m, "InternalServerErrorRetries", path),
                timeout: count(w, m, "TimeoutErrorRetries", path),
            };
        }
    }
    if let Some((m, p)) = pick(router, litellm, "allowed_fails") {
        s.allowed_fails = count(w, m, "allowed_fails", p).unwrap_or(s.allowed_fails);
    }
    if let Some((m, p)) = pick(router, litellm, "cooldown_time") {
        s.cooldown_secs = w
            .number(m, "cooldown_time", p, 0.0)
            .map(|x| x.ceil() as u64)
            .unwrap_or(s.cooldown_secs);
    }
    if let Some(b) = w.bool(router, "disable_cooldowns", "router_settings") {
        s.cooldowns = !b;
    }
    for (key, slot) in [
        ("fallbacks", &mut s.fallbacks),
        ("context_window_fallbacks", &mut s.context_window_fallbacks),
        ("content_policy_fallbacks", &mut s.content_policy_fallbacks),
    ] {
        if let Some((m, p)) = pick(router, litellm, key) {
            if let Some(v) = m.get(key).filter(|v| !v.is_null()) {
                *slot = chains(w, v, &join(p, key), exists);
            }
        }
    }
    if let Some((m, p)) = pick(router, litellm, "default_fallbacks") {
        if let Some(v) = m.get("default_fallbacks").filter(|v| !v.is_null()) {
            s.default_fallbacks =
                names(w, v, &join(p, "default_fallbacks"), exists).unwrap_or_default();
        }
    }
    if let Some((m, p)) = pick(router, litellm, "max_fallbacks") {
        s.max_fallbacks = count(w, m, "max_fallbacks", p).unwrap_or(s.max_fallbacks);
    }
    s.stream_timeout_secs = w.number(router, "stream_timeout", "router_settings", 0.001);
    if let Some(b) = w.bool(router, "enable_pre_call_checks", "router_settings") {
        s.pre_call_checks = b;
    }
    s
}

impl RouterSettings {
    /// The fallback groups tried after `group`, in order: its own, then the defaults, without
    /// repeats or itself, at most `max_fallbacks`.
    pub fn fallback_chain(&self, group: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let own = self
            .fallbacks
            .get(group)
            .map(|v| v.as_slice())
            .unwrap_or(&[]);
        for g in own.iter().chain(self.default_fallbacks.iter()) {
            if g != group && !out.contains(g) {
                out.push(g.clone());
            }
        }
        out.truncate(self.max_fallbacks as usize);
        out
    }

    /// Whether requests for `group` need per-attempt routing (several deployments, retries or
    /// fallbacks); other groups go straight to their one deployment.
    pub fn needs_attempts(&self, group: &str, group_size: usize) -> bool {
        group_size > 1
            || self.num_retries > 0
            || self.retry_policy != RetryPolicy::default()
            || !self.fallback_chain(group).is_empty()
            || self.context_window_fallbacks.contains_key(group)
            || self.content_policy_fallbacks.contains_key(group)
    }
}
