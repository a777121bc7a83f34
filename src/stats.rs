//! Metric names. proxy-wasm metrics carry no tags, so the tags are encoded in the name as
//! `.tag.value` segments, always in the order team, key_alias, model, provider
//! (`tollgate.requests_total.team.search.key_alias.search-prod.model.gpt-4.1.provider.openai.api.chat.status.2xx`),
//! and the bootstrap's `stats_config.stats_tags` regexes ([`STATS_TAGS`]) turn them back into
//! Prometheus labels. A value may contain dots: each variable segment ends at the fixed name of the
//! next one. Token types follow the OpenTelemetry GenAI vocabulary (`input`, `output`, `cached_input`).

use crate::openai::Usage;

/// Label value for "no such thing": no key, no team, or refused before a deployment was chosen.
pub const NONE: &str = "-";

/// `key_alias` of every key without series of its own (`per_key_metrics`), so the number of
/// series does not grow with the number of keys.
pub const OTHER_KEYS: &str = "(other)";

/// `(tag name, regex)`: the first capture group is removed from the name, the second is the value.
pub const STATS_TAGS: [(&str, &str); 10] = [
    ("deployment", r"(\.deployment\.(.+))$"),
    (
        "team",
        r"^wasmcustom\.tollgate\.\w+(\.team\.(.+?))\.key_alias\.",
    ),
    ("key_alias", r"(\.key_alias\.(.+?))(?:\.model\.|$)"),
    ("model", r"(\.model\.(.+?))\.provider\."),
    ("provider", r"(\.provider\.([^.]+))(?:\.|$)"),
    ("api", r"(\.api\.(chat|messages|responses))\.status\."),
    ("status", r"(\.status\.(\dxx))$"),
    ("token_type", r"(\.type\.(input|output|cached_input))$"),
    (
        "call",
        r"^wasmcustom\.tollgate\.store_calls_total(\.call\.(.+?))\.outcome\.",
    ),
    ("outcome", r"(\.outcome\.(\w+))$"),
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

/// Which metric: its name's first segment and which tags follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Requests by the status class the client saw (`.status.Nxx`).
    Requests,
    /// Token usage (`.type.input|output|cached_input`).
    Tokens,
    /// Spend charged, micro-USD.
    Spend,
    /// Requests served by a deployment with no known price (charged 0).
    Unpriced,
    /// Requests refused by an RPM, TPM or parallel limit.
    RateLimited,
    /// Requests refused because a budget is spent (or its reservation does not fit).
    BudgetRefused,
    /// Requests admitted while their key or team was over its soft budget.
    SoftBudgetExceeded,
    /// Time from the request reaching the filter to the upstream's response headers (histogram).
    UpstreamLatency,
    /// Time from the request reaching the filter to the first streamed body bytes (histogram).
    TimeToFirstToken,
    /// Another attempt in the same group after a retryable failure (model, provider).
    RouterRetries,
    /// A move to the next group of a fallback chain (model, provider).
    RouterFallbacks,
    /// Cooldowns a deployment entered (deployment).
    Cooldowns,
    /// 0 while a deployment is healthy, 1 while it cools down (gauge; deployment).
    DeploymentCooling,
    /// Budget left for a key (gauge, micro-USD; team, key alias).
    KeyBudgetRemaining,
    /// Budget left for a team (gauge, micro-USD; team).
    TeamBudgetRemaining,
    ProxyBudgetRemaining,
    /// Answers whose usage was missing or could not be charged (model, provider): each was
    /// charged its reservation.
    UsageUnusable,
    /// Calls to the shared store, by what was called and how it ended (`ok`, or the error's kind).
    StoreCalls,
    /// 1 while the shared store answers, 0 since a call went unanswered (gauge).
    StoreUp,
}

/// How a family is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Family {
    /// Every family: a host whose metrics carry tags (Envoy's dynamic modules) defines them all
    /// up front, one tagged metric each.
    pub const ALL: [Family; 19] = [
        Family::Requests,
        Family::Tokens,
        Family::Spend,
        Family::Unpriced,
        Family::RateLimited,
        Family::BudgetRefused,
        Family::SoftBudgetExceeded,
        Family::UpstreamLatency,
        Family::TimeToFirstToken,
        Family::RouterRetries,
        Family::RouterFallbacks,
        Family::Cooldowns,
        Family::DeploymentCooling,
        Family::KeyBudgetRemaining,
        Family::TeamBudgetRemaining,
        Family::ProxyBudgetRemaining,
        Family::UsageUnusable,
        Family::StoreCalls,
        Family::StoreUp,
    ];

    /// The family's position in [`Family::ALL`] (its declaration order).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn kind(self) -> Kind {
        match self {
            Family::UpstreamLatency | Family::TimeToFirstToken => Kind::Histogram,
            Family::DeploymentCooling
            | Family::KeyBudgetRemaining
            | Family::TeamBudgetRemaining
            | Family::ProxyBudgetRemaining
            | Family::StoreUp => Kind::Gauge,
            _ => Kind::Counter,
        }
    }

    /// The name of a tagged metric of this family (`tollgate.requests_total`).
    pub fn base_name(self) -> &'static str {
        self.prefix()
    }

    /// The tag names of a tagged metric of this family: its label values' tags, then the tail's.
    pub fn tag_names(self) -> Vec<&'static str> {
        let mut names = self.tags().to_vec();
        match self {
            Family::Requests => names.extend(["api", "status"]),
            Family::Tokens => names.push("token_type"),
            _ => {}
        }
        names
    }

    fn prefix(self) -> &'static str {
        match self {
            Family::Requests => "tollgate.requests_total",
            Family::Tokens => "tollgate.tokens_total",
            Family::Spend => "tollgate.spend_micro_usd",
            Family::Unpriced => "tollgate.unpriced_requests_total",
            Family::RateLimited => "tollgate.rate_limited_total",
            Family::BudgetRefused => "tollgate.budget_refused_total",
            Family::SoftBudgetExceeded => "tollgate.soft_budget_exceeded_total",
            Family::UpstreamLatency => "tollgate.upstream_latency_ms",
            Family::TimeToFirstToken => "tollgate.time_to_first_token_ms",
            Family::RouterRetries => "tollgate.router_retries_total",
            Family::RouterFallbacks => "tollgate.router_fallbacks_total",
            Family::Cooldowns => "tollgate.router_cooldowns_total",
            Family::DeploymentCooling => "tollgate.deployment_cooling",
            Family::KeyBudgetRemaining => "tollgate.key_budget_remaining_micro_usd",
            Family::TeamBudgetRemaining => "tollgate.team_budget_remaining_micro_usd",
            Family::ProxyBudgetRemaining => "tollgate.proxy_budget_remaining_micro_usd",
            Family::UsageUnusable => "tollgate.usage_unusable_total",
            Family::StoreCalls => "tollgate.store_calls_total",
            Family::StoreUp => "tollgate.store_up",
        }
    }

    /// The tag names of the family's label values, in order.
    fn tags(self) -> &'static [&'static str] {
        match self {
            Family::RouterRetries | Family::RouterFallbacks | Family::UsageUnusable => {
                &["model", "provider"]
            }
            Family::Cooldowns | Family::DeploymentCooling => &["deployment"],
            Family::KeyBudgetRemaining => &["team", "key_alias"],
            // The team gauge carries key alias `-` so the team regex (which ends at
            // `.key_alias.`) extracts it.
            Family::TeamBudgetRemaining => &["team", "key_alias"],
            Family::StoreCalls => &["call", "outcome"],
            Family::StoreUp | Family::ProxyBudgetRemaining => &[],
            _ => &["team", "key_alias", "model", "provider"],
        }
    }
}

/// The fixed last segment of some families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tail {
    None,
    /// `.api.<client API>.status.Nxx`: the API the client spoke (`chat`, `messages`, `responses`) and the
    /// status class (the code divided by 100), so each pair is one metric.
    Status(&'static str, u16),
    /// `.type.<token type>`.
    TokenType(&'static str),
}

/// One metric, named by its family and label values without building the name: what the host
/// looks its id up by, so a request's metrics cost no formatting once each name is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric<'a> {
    pub family: Family,
    /// Label values in the order of the family's tags (unused slots are empty).
    pub values: [&'a str; 4],
    pub tail: Tail,
}

impl Metric<'_> {
    fn new<'a>(family: Family, values: [&'a str; 4], tail: Tail) -> Metric<'a> {
        Metric {
            family,
            values,
            tail,
        }
    }

    /// The metric's full name, tags encoded as `.tag.value` segments (see the module docs).
    pub fn name(&self) -> String {
        let mut out = String::with_capacity(96);
        out.push_str(self.family.prefix());
        for (tag, value) in self.family.tags().iter().zip(self.values) {
            out.push('.');
            out.push_str(tag);
            out.push('.');
            out.push_str(value);
        }
        match self.tail {
            Tail::None => {}
            Tail::Status(api, class) => {
                out.push_str(".api.");
                out.push_str(api);
                out.push_str(".status.");
                out.push_str(&class.to_string());
                out.push_str("xx");
            }
            Tail::TokenType(t) => {
                out.push_str(".type.");
                out.push_str(t);
            }
        }
        out
    }
}

impl<'a> Metric<'a> {
    /// The values of [`Family::tag_names`], in order; `status_class` is scratch space for the
    /// status tail's text (`2xx`), so no allocation is needed.
    pub fn tag_values<'s>(&'s self, status_class: &'s mut [u8; 3]) -> ([&'s str; 6], usize) {
        let n = self.family.tags().len();
        let mut out = [""; 6];
        for (slot, v) in out.iter_mut().zip(self.values.iter().take(n)) {
            *slot = v;
        }
        let (api, tail) = match self.tail {
            Tail::None => (None, None),
            Tail::Status(api, class) => {
                *status_class = [b'0' + (class % 10) as u8, b'x', b'x'];
                (Some(api), std::str::from_utf8(status_class).ok())
            }
            Tail::TokenType(t) => (None, Some(t)),
        };
        let mut n = n;
        for t in [api, tail].into_iter().flatten() {
            if let Some(slot) = out.get_mut(n) {
                *slot = t;
                n += 1;
            }
        }
        (out, n)
    }
}

fn labelled<'a>(family: Family, l: &Labels<'a>, tail: Tail) -> Metric<'a> {
    Metric::new(family, [l.team, l.key_alias, l.model, l.provider], tail)
}

/// Requests by the API the client spoke and the status class it saw.
pub fn requests<'a>(l: &Labels<'a>, api: &'static str, status: u16) -> Metric<'a> {
    labelled(Family::Requests, l, Tail::Status(api, status / 100))
}

/// Counter increments for a response's token usage; cached input is part of input, as in OpenAI.
pub fn token_counts<'a>(l: &Labels<'a>, u: &Usage) -> [(Metric<'a>, u64); 3] {
    let t = |kind| labelled(Family::Tokens, l, Tail::TokenType(kind));
    [
        (t("input"), u.prompt_tokens),
        (t("output"), u.completion_tokens),
        (t("cached_input"), u.cached_tokens),
    ]
}

/// Spend charged, micro-USD.
pub fn spend<'a>(l: &Labels<'a>) -> Metric<'a> {
    labelled(Family::Spend, l, Tail::None)
}

/// Requests served by a deployment with no known price (charged 0).
pub fn unpriced<'a>(l: &Labels<'a>) -> Metric<'a> {
    labelled(Family::Unpriced, l, Tail::None)
}

/// Requests refused by an RPM, TPM or parallel limit.
pub fn rate_limited<'a>(l: &Labels<'a>) -> Metric<'a> {
    labelled(Family::RateLimited, l, Tail::None)
}

/// Requests refused because a budget is spent (or its reservation does not fit).
pub fn budget_refused<'a>(l: &Labels<'a>) -> Metric<'a> {
    labelled(Family::BudgetRefused, l, Tail::None)
}

/// Requests admitted while their key or team was over its soft budget.
pub fn soft_budget_exceeded<'a>(l: &Labels<'a>) -> Metric<'a> {
    labelled(Family::SoftBudgetExceeded, l, Tail::None)
}

/// Time from the request reaching the filter to the upstream's response headers.
pub fn upstream_latency<'a>(l: &Labels<'a>) -> Metric<'a> {
    labelled(Family::UpstreamLatency, l, Tail::None)
}

/// Time from the request reaching the filter to the first streamed body bytes.
pub fn time_to_first_token<'a>(l: &Labels<'a>) -> Metric<'a> {
    labelled(Family::TimeToFirstToken, l, Tail::None)
}

/// Router metrics: by the client's model alias and the provider of the deployment that failed.
#[derive(Debug, Clone, Copy)]
pub struct RouterLabels<'a> {
    pub model: &'a str,
    pub provider: &'a str,
}

/// Another attempt in the same group after a retryable failure.
pub fn retries<'a>(l: &RouterLabels<'a>) -> Metric<'a> {
    Metric::new(
        Family::RouterRetries,
        [l.model, l.provider, "", ""],
        Tail::None,
    )
}

/// An answer whose usage was missing or could not be charged: it was charged its reservation.
pub fn usage_unusable<'a>(l: &RouterLabels<'a>) -> Metric<'a> {
    Metric::new(
        Family::UsageUnusable,
        [l.model, l.provider, "", ""],
        Tail::None,
    )
}

/// A move to the next group of a fallback chain.
pub fn fallbacks<'a>(l: &RouterLabels<'a>) -> Metric<'a> {
    Metric::new(
        Family::RouterFallbacks,
        [l.model, l.provider, "", ""],
        Tail::None,
    )
}

/// Cooldowns a deployment entered.
pub fn cooldowns(deployment_id: &str) -> Metric<'_> {
    Metric::new(Family::Cooldowns, [deployment_id, "", "", ""], Tail::None)
}

/// 0 while a deployment is healthy, 1 while it cools down (gauge).
pub fn deployment_cooling(deployment_id: &str) -> Metric<'_> {
    Metric::new(
        Family::DeploymentCooling,
        [deployment_id, "", "", ""],
        Tail::None,
    )
}

/// Budget left for a key (gauge, micro-USD).
pub fn key_budget_remaining<'a>(team: &'a str, key_alias: &'a str) -> Metric<'a> {
    Metric::new(
        Family::KeyBudgetRemaining,
        [team, key_alias, "", ""],
        Tail::None,
    )
}

/// Budget left for a team (gauge, micro-USD).
pub fn team_budget_remaining(team: &str) -> Metric<'_> {
    Metric::new(
        Family::TeamBudgetRemaining,
        [team, NONE, "", ""],
        Tail::None,
    )
}

/// Budget left under the proxy-wide cap (`litellm_settings.max_budget`; gauge, micro-USD).
pub fn proxy_budget_remaining() -> Metric<'static> {
    Metric::new(Family::ProxyBudgetRemaining, ["", "", "", ""], Tail::None)
}

/// One call to the shared store: what was called (`tg_sync`, `function_load`, ...) and how it
/// ended (`ok`, or `store::remote::CallError::kind`).
pub fn store_calls<'a>(call: &'a str, outcome: &'a str) -> Metric<'a> {
    Metric::new(Family::StoreCalls, [call, outcome, "", ""], Tail::None)
}

/// 1 while the shared store answers, 0 since a call went unanswered.
pub fn store_up() -> Metric<'static> {
    Metric::new(Family::StoreUp, ["", "", "", ""], Tail::None)
}

/// A [`Metric`] with its label values owned: the key the host remembers an id under.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MetricKey {
    family: Family,
    values: [String; 4],
    tail: Tail,
}

impl std::hash::Hash for MetricKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        hash_parts(
            h,
            self.family,
            self.values.each_ref().map(String::as_str),
            self.tail,
        );
    }
}

impl std::hash::Hash for Metric<'_> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        hash_parts(h, self.family, self.values, self.tail);
    }
}

/// One hash for a metric however its values are held, so a borrowed [`Metric`] finds its owned
/// [`MetricKey`] without allocating.
fn hash_parts<H: std::hash::Hasher>(h: &mut H, family: Family, values: [&str; 4], tail: Tail) {
    use std::hash::Hash;
    family.hash(h);
    for v in values {
        v.hash(h);
    }
    tail.hash(h);
}

impl hashbrown::Equivalent<MetricKey> for Metric<'_> {
    fn equivalent(&self, key: &MetricKey) -> bool {
        self.family == key.family
            && self.tail == key.tail
            && self.values.iter().zip(&key.values).all(|(a, b)| *a == b)
    }
}

/// Metric ids by metric, per worker VM. Defining a metric is a host call that takes Envoy's symbol
/// table lock, so each metric is defined once and its id remembered; a request's metrics then
/// cost one hash lookup each, with no name built. Label values come from requests (model aliases,
/// key aliases), so the map is bounded: when full it starts over, and metrics still in use are
/// defined again (Envoy returns the same underlying stat for the same name).
#[derive(Debug)]
pub struct MetricCache {
    ids: hashbrown::HashMap<MetricKey, u32>,
    capacity: usize,
}

impl Default for MetricCache {
    fn default() -> Self {
        MetricCache::new(MetricCache::CAPACITY)
    }
}

impl MetricCache {
    /// Distinct metrics remembered per worker before the cache starts over.
    pub const CAPACITY: usize = 4096;

    pub fn new(capacity: usize) -> Self {
        MetricCache {
            ids: hashbrown::HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The metric's id, calling `define` with its name the first time (or again after the cache
    /// started over). A failed definition is not remembered.
    pub fn id(&mut self, metric: &Metric, define: impl FnOnce(&str) -> Option<u32>) -> Option<u32> {
        if let Some(id) = self.ids.get(metric) {
            return Some(*id);
        }
        let id = define(&metric.name())?;
        if self.ids.len() >= self.capacity {
            self.ids.clear();
        }
        let key = MetricKey {
            family: metric.family,
            values: metric.values.map(str::to_string),
            tail: metric.tail,
        };
        self.ids.insert(key, id);
        Some(id)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tagged host gets the same tags the name encodes, in the order of the family's tag names.
    #[test]
    fn tag_values_follow_tag_names() {
        let l = Labels {
            team: "search",
            key_alias: "prod",
            model: "gpt",
            provider: "openai",
        };
        let mut scratch = [0u8; 3];
        let m = requests(&l, "messages", 429);
        let (values, n) = m.tag_values(&mut scratch);
        assert_eq!(
            Family::Requests.tag_names(),
            ["team", "key_alias", "model", "provider", "api", "status"]
        );
        assert_eq!(
            values[..n],
            ["search", "prod", "gpt", "openai", "messages", "4xx"]
        );
        let [(input, _), ..] = token_counts(&l, &Usage::default());
        let mut scratch = [0u8; 3];
        let (values, n) = input.tag_values(&mut scratch);
        assert_eq!(values[..n], ["search", "prod", "gpt", "openai", "input"]);
        let c = cooldowns("dep-1");
        let mut scratch = [0u8; 3];
        let (values, n) = c.tag_values(&mut scratch);
        assert_eq!(values[..n], ["dep-1"]);
        assert_eq!(Family::Cooldowns.tag_names(), ["deployment"]);
        for (i, f) in Family::ALL.into_iter().enumerate() {
            assert_eq!(f.index(), i);
            assert!(f.tag_names().len() <= 6);
            assert!(f.base_name().starts_with("tollgate."));
        }
        assert_eq!(Family::UpstreamLatency.kind(), Kind::Histogram);
        assert_eq!(Family::DeploymentCooling.kind(), Kind::Gauge);
        assert_eq!(Family::Spend.kind(), Kind::Counter);
    }

    #[test]
    fn names_carry_their_tags() {
        let l = Labels {
            team: "search",
            key_alias: "search.prod",
            model: "gpt-4.1",
            provider: "openai",
        };
        assert_eq!(
            requests(&l, "chat", 429).name(),
            "tollgate.requests_total.team.search.key_alias.search.prod.model.gpt-4.1.provider.openai.api.chat.status.4xx"
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
        assert!(
            t[2].0
                .name()
                .ends_with(".provider.openai.type.cached_input")
                && t[2].1 == 2
        );
        assert_eq!(
            team_budget_remaining("t").name(),
            "tollgate.team_budget_remaining_micro_usd.team.t.key_alias.-"
        );
        assert_eq!(
            key_budget_remaining("t", "k").name(),
            "tollgate.key_budget_remaining_micro_usd.team.t.key_alias.k"
        );
        assert_eq!(
            retries(&RouterLabels {
                model: "m",
                provider: "openai"
            })
            .name(),
            "tollgate.router_retries_total.model.m.provider.openai"
        );
        assert_eq!(
            deployment_cooling("d-1").name(),
            "tollgate.deployment_cooling.deployment.d-1"
        );
        assert_eq!(
            spend(&Labels::UNKNOWN).name(),
            "tollgate.spend_micro_usd.team.-.key_alias.-.model.-.provider.-"
        );
        assert_eq!(
            store_calls("tg_sync", "ok").name(),
            "tollgate.store_calls_total.call.tg_sync.outcome.ok"
        );
        assert_eq!(store_up().name(), "tollgate.store_up");
        assert_eq!(
            proxy_budget_remaining().name(),
            "tollgate.proxy_budget_remaining_micro_usd"
        );
        let mut scratch = [0u8; 3];
        let m = store_calls("function_load", "unanswered");
        let (values, n) = m.tag_values(&mut scratch);
        assert_eq!(values[..n], ["function_load", "unanswered"]);
        assert_eq!(Family::StoreCalls.tag_names(), ["call", "outcome"]);
        assert!(Family::StoreUp.tag_names().is_empty());
    }

    #[test]
    fn metric_ids_are_defined_once_per_metric() {
        let mut cache = MetricCache::new(8);
        let mut defined = Vec::new();
        let mut define = |name: &str| {
            defined.push(name.to_string());
            Some(defined.len() as u32)
        };
        let a = Labels {
            team: "t",
            key_alias: "k",
            model: "gpt",
            provider: "openai",
        };
        let model = String::from("gpt");
        // The same metric from other borrowed strings is the same key.
        let b = Labels { model: &model, ..a };
        assert_eq!(cache.id(&requests(&a, "chat", 200), &mut define), Some(1));
        assert_eq!(cache.id(&requests(&b, "chat", 201), &mut define), Some(1));
        assert_eq!(cache.id(&requests(&a, "chat", 404), &mut define), Some(2));
        assert_eq!(cache.id(&spend(&a), &mut define), Some(3));
        assert_eq!(cache.id(&spend(&b), &mut define), Some(3));
        // Label values that differ only in how they split across tags are different metrics.
        let shifted = Labels {
            team: "tk",
            key_alias: "",
            ..a
        };
        assert_eq!(cache.id(&spend(&shifted), &mut define), Some(4));
        assert_eq!(defined.len(), 4);
        assert_eq!(
            defined[1],
            "tollgate.requests_total.team.t.key_alias.k.model.gpt.provider.openai.api.chat.status.4xx"
        );
        // A failed definition is not remembered: the next use tries again.
        assert_eq!(cache.id(&unpriced(&a), |_| None), None);
        assert_eq!(cache.len(), 4);
        assert_eq!(cache.id(&unpriced(&a), |_| Some(99)), Some(99));
    }

    #[test]
    fn metric_cache_is_bounded() {
        let mut cache = MetricCache::new(3);
        let mut defines = 0;
        let names: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
        for n in &names {
            let l = Labels {
                model: n,
                ..Labels::UNKNOWN
            };
            cache.id(&spend(&l), |_| {
                defines += 1;
                Some(defines)
            });
            assert!(cache.len() <= 3);
        }
        assert_eq!(defines, 10);
        // The most recent metric survived the last start-over and is not defined again.
        let l = Labels {
            model: &names[9],
            ..Labels::UNKNOWN
        };
        assert_eq!(cache.id(&spend(&l), |_| None), Some(10));
    }
}
