//! What a request may cost, admitting it against its key's and team's limits, and charging what it
//! did cost: the parts of the pipeline that deal in money and limits.

use std::borrow::Cow;

use crate::auth::Principal;
use crate::config::{Config, Deployment};
use crate::error::ApiError;
use crate::host::HttpHost;
use crate::keys::time;
use crate::openai::request::PromptText;
use crate::openai::Usage;
use crate::pricing;
use crate::providers::Operation;
use crate::quota::{self, Admission, Charge, Estimate, Refusal};
use crate::stats;

/// Output tokens assumed when neither the request nor the model table caps them.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 4096;

/// Whether the deployment has a price: without one its requests are charged 0 (and counted).
pub fn is_priced(d: &Deployment) -> bool {
    d.model_info
        .is_some_and(|m| m.price != pricing::Price::default())
}

/// Cost in micro-USD: rounded to the nearest micro-dollar, but never free when tokens were used.
pub fn micro_cost(d: &Deployment, usage: &Usage) -> u64 {
    let Some(info) = &d.model_info else { return 0 };
    let pico = pricing::cost_pico(&info.price, usage);
    let micro = (pico + 500_000) / 1_000_000;
    let micro = if micro == 0 && pico > 0 { 1 } else { micro };
    u64::try_from(micro).unwrap_or(u64::MAX)
}

/// Bytes of text counted as one prompt token. English text is about 4 bytes a token in
/// OpenAI's, Anthropic's and Gemini's tokenizers, code and CJK text 2 to 3.5: 3 over-estimates
/// most prompts a little. No tokenizer makes more than one token of a byte, so text is at most
/// this many times its estimate.
pub const PROMPT_BYTES_PER_TOKEN: u64 = 3;
/// Tokens a provider adds around each message (role markers, separators; OpenAI's are 3 or 4),
/// and once per request (the reply's priming).
pub const MESSAGE_OVERHEAD_TOKENS: u64 = 4;
pub const REQUEST_OVERHEAD_TOKENS: u64 = 3;
/// Tokens an image is counted as, whatever its size: OpenAI's high-detail images are at most
/// 1,445 tokens for gpt-4o (low detail 85), Anthropic's about 1,600 at the most it keeps
/// (1.15 megapixels), Gemini's 258 per 768-pixel tile.
pub const IMAGE_TOKENS: u64 = 1600;
/// The least output the gateway caps a request to when the budget left cannot pay for all of
/// it: a request that cannot have this much (or what it asked, if less) is refused instead.
pub const MIN_CAPPED_OUTPUT_TOKENS: u64 = 16;

/// The response header that says the gateway capped the request's output (its value: the cap
/// per completion) because the budget left could not pay for more.
pub const MAX_TOKENS_CAPPED: &str = "x-tollgate-max-tokens-capped";

/// What a request asks of a provider, as far as its cost goes: read once from its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// The body's length in bytes: no tokenizer makes a token from less than a byte, so the
    /// prompt cannot be longer (what a provider's usage is checked against).
    pub body_len: u64,
    /// The prompt tokens reserved: estimated from the prompt's text ([`Ask::with_prompt`]), else
    /// the body's length.
    pub prompt_tokens: u64,
    /// `max_completion_tokens` or `max_tokens`, when the client capped the output (or the
    /// gateway did, see [`cap_output`]).
    pub max_output: Option<u64>,
    /// Completions asked for (`n`, or `best_of` where a server generates that many), at least 1.
    pub choices: u64,
    pub op: Operation,
}

impl Ask {
    pub fn chat(body_len: usize, max_output: Option<u64>, choices: u64) -> Ask {
        Ask {
            body_len: body_len as u64,
            prompt_tokens: body_len as u64,
            max_output,
            choices: choices.max(1),
            op: Operation::Chat,
        }
    }

    pub fn embeddings(body_len: usize) -> Ask {
        Ask {
            body_len: body_len as u64,
            prompt_tokens: body_len as u64,
            max_output: None,
            choices: 1,
            op: Operation::Embeddings,
        }
    }

    /// The ask with its prompt estimated from the prompt's text rather than bounded by the body:
    /// see [`prompt_tokens`].
    pub fn with_prompt(self, text: &PromptText) -> Ask {
        Ask {
            prompt_tokens: prompt_tokens(text, self.body_len),
            ..self
        }
    }

    /// The output cap per completion on deployment `d`: the client's (or the gateway's), else
    /// the one its provider sends (Anthropic's), else the model's, else
    /// [`DEFAULT_MAX_OUTPUT_TOKENS`].
    fn per_choice(&self, d: &Deployment) -> u64 {
        self.max_output
            .or_else(|| d.provider.default_max_output())
            .or_else(|| d.model_info.and_then(|m| m.max_output_tokens))
            .unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS)
    }

    /// Output tokens the deployment can generate for this request: the cap per completion
    /// times the completions its provider generates.
    fn output_tokens(&self, d: &Deployment) -> u64 {
        if self.op != Operation::Chat {
            return 0;
        }
        self.per_choice(d)
            .saturating_mul(d.provider.output_choices(self.choices))
    }
}

/// The prompt tokens of a chat request, estimated from its text: [`PROMPT_BYTES_PER_TOKEN`]
/// bytes a token, plus each message's and the request's overhead and [`IMAGE_TOKENS`] per
/// image. A part whose tokens its text does not tell (audio, a file) makes it the body's
/// length, the bound; never more than that bound plus the images (which a URL can carry in a
/// few bytes).
pub fn prompt_tokens(text: &PromptText, body_len: u64) -> u64 {
    let images = text.images.saturating_mul(IMAGE_TOKENS);
    if text.opaque {
        return body_len.saturating_add(images);
    }
    let estimate = text
        .bytes
        .div_ceil(PROMPT_BYTES_PER_TOKEN)
        .saturating_add(text.messages.saturating_mul(MESSAGE_OVERHEAD_TOKENS))
        .saturating_add(REQUEST_OVERHEAD_TOKENS);
    estimate.min(body_len).saturating_add(images)
}

/// What a request is reserved at admission: its prompt estimate ([`Ask::prompt_tokens`]) and
/// the most output it can generate ([`Ask::output_tokens`]), at the deployment's prices.
pub fn estimate(d: &Deployment, ask: &Ask) -> Estimate {
    let prompt = ask.prompt_tokens;
    let output = ask.output_tokens(d);
    let usage = Usage {
        prompt_tokens: prompt,
        completion_tokens: output,
        ..Default::default()
    };
    Estimate {
        cost: micro_cost(d, &usage),
        tokens: prompt.saturating_add(output),
    }
}

/// The deployments a routed request could reach: its group's, then any fallback chain's, since
/// any attempt may be the one that serves it.
pub fn reachable<'c>(config: &'c Config, alias: &str) -> Vec<Cow<'c, Deployment>> {
    let r = &config.router;
    let mut groups: Vec<&str> = vec![alias];
    let chains = [
        r.fallback_chain(alias),
        r.context_window_fallbacks
            .get(alias)
            .cloned()
            .unwrap_or_default(),
        r.content_policy_fallbacks
            .get(alias)
            .cloned()
            .unwrap_or_default(),
    ];
    for g in chains.iter().flatten() {
        if !groups.contains(&g.as_str()) {
            groups.push(g);
        }
    }
    groups
        .iter()
        .flat_map(|g| {
            config
                .group(g)
                .unwrap_or(&[])
                .iter()
                .filter_map(move |&i| config.serving(i, g))
        })
        .collect()
}

/// The worst estimate over deployments.
pub fn estimate_worst(ds: &[Cow<Deployment>], ask: &Ask) -> Estimate {
    ds.iter().fold(Estimate::default(), |worst, d| {
        let e = estimate(d, ask);
        Estimate {
            cost: worst.cost.max(e.cost),
            tokens: worst.tokens.max(e.tokens),
        }
    })
}

/// The worst case over every deployment a routed request could reach ([`reachable`]).
pub fn estimate_group(config: &Config, alias: &str, ask: &Ask) -> Estimate {
    estimate_worst(&reachable(config, alias), ask)
}

/// The output cap per completion that lets a request's reservation fit in `room` (micro-USD)
/// on every deployment it may reach, when its own does not: the most output the budget left
/// can pay, within what the request asked and each model allows. `None` when the request fits
/// as it is, or when even [`MIN_CAPPED_OUTPUT_TOKENS`] (or the request's own smaller cap)
/// does not fit: it is then admitted, or refused, as it is.
pub fn cap_output(ds: &[Cow<Deployment>], ask: &Ask, room: u64) -> Option<u64> {
    if ask.op != Operation::Chat || ds.is_empty() || estimate_worst(ds, ask).cost <= room {
        return None;
    }
    // Never above what any deployment would send without the cap.
    let most = ds.iter().map(|d| ask.per_choice(d)).min()?;
    let fits = |n: u64| {
        let capped = Ask {
            max_output: Some(n),
            ..*ask
        };
        estimate_worst(ds, &capped).cost <= room
    };
    let least = MIN_CAPPED_OUTPUT_TOKENS.min(most);
    if !fits(least) {
        return None;
    }
    // The cost grows with the cap: the largest that fits, by bisection.
    let (mut lo, mut hi) = (least, most);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// The budget a request may still be reserved from: the least of its parties' (key, team,
/// proxy) budgets left, after spend and what requests in flight reserved; `None` when none of
/// them has a budget. Read without a write: admission checks it again atomically. With a
/// fleet (`lease_max_age_ms` given), what this replica knows is left fleet-wide: its lease's
/// room and the pool no replica holds, as of the store's last answer.
pub fn budget_room(
    host: &dyn HttpHost,
    config: &Config,
    principal: &Principal,
    lease_max_age_ms: Option<u64>,
    now_ms: u64,
) -> Option<u64> {
    let store = host.store();
    parties(config, principal)
        .iter()
        .filter_map(|p| {
            let max = p.limits.max_budget?;
            Some(match lease_max_age_ms {
                Some(_) => crate::fleet::budget_left(store, p, max),
                None => {
                    let c = quota::read(store, p.key, p.limits, now_ms / 1000);
                    max.saturating_sub(c.spend).saturating_sub(c.reserved)
                }
            })
        })
        .min()
}

/// A context window assumed where the model's is unknown: larger than any model's.
const UNKNOWN_CONTEXT_TOKENS: u64 = 10_000_000;

/// Counts from one provider differ from another's by a little (tool-use system prompts, image
/// tiles, thinking): reported usage may exceed the request's bounds by this much before it is
/// refused.
const USAGE_SLACK_TOKENS: u64 = 4096;

/// Whether a provider's reported usage can be charged: each count within what the request could
/// produce (twice its bound, plus slack: providers count differently, but never by orders of
/// magnitude), and the parts within their wholes. `Err` says why not.
pub fn check_usage(d: &Deployment, ask: &Ask, u: &Usage) -> Result<(), &'static str> {
    let context = d
        .model_info
        .and_then(|m| m.max_input_tokens)
        .unwrap_or(UNKNOWN_CONTEXT_TOKENS);
    let bound = |tokens: u64| tokens.saturating_mul(2).saturating_add(USAGE_SLACK_TOKENS);
    if u.prompt_tokens > bound(ask.body_len.max(context)) {
        return Err("more prompt tokens than the request could hold");
    }
    let output = if ask.op == Operation::Chat {
        match ask.max_output {
            Some(_) => ask.output_tokens(d),
            // Uncapped: the model's own limit if known, else its context.
            None => ask.output_tokens(d).max(context),
        }
    } else {
        0
    };
    if u.completion_tokens > bound(output) {
        return Err("more output tokens than the request allows");
    }
    if u.cached_tokens.saturating_add(u.cache_creation_tokens) > u.prompt_tokens {
        return Err("more cached tokens than prompt tokens");
    }
    if u.reasoning_tokens > u.completion_tokens {
        return Err("more reasoning tokens than output tokens");
    }
    Ok(())
}

/// A non-streaming response's usage from the metadata `json_to_metadata` extracted (numbers as
/// little-endian f64; a value of another JSON type spoils the usage, as in the body), in OpenAI
/// terms, whichever provider's field names are present. It mirrors
/// the providers' own usage mapping; the charge itself uses the translated body's usage.
pub fn usage_from_metadata(get: impl Fn(&str) -> Option<Vec<u8>>) -> Option<Usage> {
    // A field present but not a count spoils the whole usage, as it does in the body.
    let bad = std::cell::Cell::new(false);
    let n = |key: &str| -> Option<u64> {
        // A number is eight bytes; anything else (a string, a list) is no count.
        let Ok(bytes) = <[u8; 8]>::try_from(get(key)?.as_slice()) else {
            bad.set(true);
            return None;
        };
        match crate::openai::Count::from_f64(f64::from_le_bytes(bytes)) {
            crate::openai::Count::Is(n) => Some(n),
            _ => {
                bad.set(true);
                None
            }
        }
    };
    let z = |key: &str| n(key).unwrap_or(0);
    let usage = if let Some(prompt) = n("prompt_tokens") {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: z("completion_tokens"),
            cached_tokens: z("cached_tokens"),
            ..Default::default()
        }
    } else if let Some(input) = n("input_tokens") {
        let (read, write) = (
            z("cache_read_input_tokens"),
            z("cache_creation_input_tokens"),
        );
        Usage {
            prompt_tokens: input.saturating_add(read).saturating_add(write),
            completion_tokens: z("output_tokens"),
            cached_tokens: read,
            cache_creation_tokens: write,
            ..Default::default()
        }
    } else if let Some(input) = n("inputTokens") {
        let (read, write) = (z("cacheReadInputTokens"), z("cacheWriteInputTokens"));
        Usage {
            prompt_tokens: input.saturating_add(read).saturating_add(write),
            completion_tokens: z("outputTokens"),
            cached_tokens: read,
            cache_creation_tokens: write,
            ..Default::default()
        }
    } else if let Some(prompt) = n("promptTokenCount") {
        let thoughts = z("thoughtsTokenCount");
        Usage {
            prompt_tokens: prompt.saturating_add(z("toolUsePromptTokenCount")),
            completion_tokens: z("candidatesTokenCount").saturating_add(thoughts),
            cached_tokens: z("cachedContentTokenCount"),
            reasoning_tokens: thoughts,
            ..Default::default()
        }
    } else {
        return None;
    };
    (!bad.get()).then_some(usage)
}

/// The parties a request is admitted in: a virtual key's key and team, then the proxy-wide
/// scope when a proxy-wide cap is configured (whoever the caller). Empty: nothing to admit.
pub fn parties<'a>(config: &'a Config, principal: &'a Principal) -> Vec<quota::Party<'a>> {
    let mut list = Vec::with_capacity(3);
    if let Principal::Key(k) = principal {
        list.push(k.key_party());
        list.extend(k.team_party());
    }
    list.extend(config.proxy.as_ref().map(|p| p.party()));
    list
}

/// Admits a request in its parties' local records, all or none; `None` when it has no party.
pub fn admit(
    host: &dyn HttpHost,
    config: &Config,
    principal: &Principal,
    now: u64,
    est: Estimate,
) -> Result<Option<Admission>, Refusal> {
    let list = parties(config, principal);
    if list.is_empty() {
        return Ok(None);
    }
    let list: Vec<&quota::Party> = list.iter().collect();
    let snaps = quota::admit_parties(host.store(), &list, now, est)?;
    Ok(Some(Admission::of(est, &list, &snaps)))
}

/// What admitting a request takes, when the gateway shares its budgets with a fleet of replicas
/// (`tollgate_settings.store`). Returned once per request and moved straight into its state:
/// boxing the admission would only add an allocation.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Admit {
    /// Admitted (or nothing to admit: no party).
    Done(Option<Admission>),
    /// The store must admit it first for some of its parties (their leases cannot hold it).
    Ask(FleetAsk),
}

/// A request waiting for the store's admission: what its parties' ledgers committed already,
/// and which parties the store is asked for.
#[derive(Debug, Clone)]
pub struct FleetAsk {
    pub local: Vec<Option<quota::Snapshot>>,
    pub ask: Vec<usize>,
    /// Per party asked, the budget its lease holds for the request, and the lease it asks for
    /// on top.
    pub have: Vec<u64>,
    pub extra: Vec<crate::quota::fleet::Amounts>,
    pub estimate: Estimate,
    /// How long a lease confirmed by the store may be used (`StoreSettings::lease_max_age_ms`).
    pub lease_max_age_ms: u64,
}

/// Admits a request: in this replica's shared records (no store), or against its parties' fleet
/// leases (`lease_max_age_ms` given: the gateway shares its state with a fleet), which may need
/// the store.
pub fn admit_request(
    host: &dyn HttpHost,
    config: &Config,
    principal: &Principal,
    lease_max_age_ms: Option<u64>,
    now_ms: u64,
    est: Estimate,
) -> Result<Admit, Refusal> {
    let Some(lease_max_age_ms) = lease_max_age_ms else {
        return admit(host, config, principal, now_ms / 1000, est).map(Admit::Done);
    };
    let parties = parties(config, principal);
    if parties.is_empty() {
        return Ok(Admit::Done(None));
    }
    let list: Vec<&quota::Party> = parties.iter().collect();
    match crate::fleet::admit(host.store(), &list, now_ms, est, lease_max_age_ms)? {
        crate::fleet::Admitted::Local(snaps) => Ok(Admit::Done(admission_of(est, &list, &snaps))),
        crate::fleet::Admitted::Ask {
            local,
            ask,
            have,
            extra,
        } => Ok(Admit::Ask(FleetAsk {
            local,
            ask,
            have,
            extra,
            estimate: est,
            lease_max_age_ms,
        })),
    }
}

fn admission_of(
    est: Estimate,
    list: &[&quota::Party],
    snaps: &[quota::Snapshot],
) -> Option<Admission> {
    (!snaps.is_empty()).then(|| Admission::of(est, list, snaps))
}

/// The store's call for a waiting request: `tg_admit` for the parties it is asked for.
pub fn fleet_call(
    config: &Config,
    principal: &Principal,
    ask: &FleetAsk,
    replica: &str,
    timeout_ms: u64,
) -> Option<crate::store::remote::Exchange> {
    let parties = parties(config, principal);
    let asked: Vec<(&quota::Party, crate::fleet::AskFor)> = ask
        .ask
        .iter()
        .enumerate()
        .filter_map(|(n, &i)| {
            let f = crate::fleet::AskFor {
                have: ask.have.get(n).copied().unwrap_or(0),
                extra: ask.extra.get(n).copied().unwrap_or_default(),
            };
            parties.get(i).map(|p| (p, f))
        })
        .collect();
    if asked.is_empty() {
        return None;
    }
    crate::fleet::admit_call(replica, &asked, ask.estimate, timeout_ms)
}

/// How the store's admission ended, for a waiting request: admitted (the admission), refused
/// (what the parties' ledgers committed undone), or not answered: admitted against this
/// replica's own knowledge (`failure_mode: local`, `local_fallback`), or refused with a 503.
pub fn fleet_answered(
    host: &dyn HttpHost,
    config: &Config,
    principal: &Principal,
    ask: FleetAsk,
    now_ms: u64,
    answer: Result<&str, ()>,
    local_fallback: bool,
) -> Result<Option<Admission>, Refusal> {
    let parties = parties(config, principal);
    let list: Vec<&quota::Party> = parties.iter().collect();
    let Some(&first) = list.first() else {
        return Ok(None);
    };
    let store = host.store();
    let est = ask.estimate;
    let mut local = ask.local;
    let reply = answer
        .and_then(|text| serde_json::from_str::<crate::fleet::AdmitReply>(text).map_err(|_| ()));
    match reply {
        Ok(r) if r.ok => {
            for (n, (&i, &have)) in ask.ask.iter().zip(&ask.have).enumerate() {
                let (Some(party), Some(slot)) = (list.get(i), local.get_mut(i)) else {
                    continue;
                };
                let reply = r.parties.get(n).map(|p| &p.reply);
                let fleet = reply.map(|p| p.fleet());
                let granted = reply
                    .map(|p| p.granted)
                    .filter(|g| *g != crate::quota::fleet::Amounts::default());
                let grant = crate::quota::fleet::FleetGrant {
                    have,
                    granted,
                    minute: r.m,
                    fleet,
                };
                *slot = crate::fleet::admitted_by_fleet(
                    store,
                    party,
                    now_ms,
                    est,
                    grant,
                    ask.lease_max_age_ms,
                );
            }
        }
        Ok(r) => {
            crate::fleet::unadmit(store, &list, &local, est);
            crate::fleet::unhold(store, &list, &ask.ask, &ask.have);
            let i = ask.ask.get(r.party).copied().unwrap_or(0);
            let party = list.get(i).copied().unwrap_or(first);
            let fleet = r
                .parties
                .get(r.party)
                .map(|p| p.reply.fleet())
                .unwrap_or_default();
            let refusal = r.refusal.unwrap_or_default();
            if let Some(kind) = refusal.kind {
                crate::fleet::refused_by_fleet(store, party, now_ms, kind, Some(fleet));
            }
            return Err(refusal.refusal(party, est, &fleet));
        }
        Err(()) if local_fallback => {
            crate::fleet::unhold(store, &list, &ask.ask, &ask.have);
            for &i in &ask.ask {
                let (Some(party), Some(slot)) = (list.get(i), local.get_mut(i)) else {
                    continue;
                };
                match crate::fleet::admit_unleased(store, party, now_ms, est) {
                    Ok(snap) => *slot = Some(snap),
                    Err(refusal) => {
                        crate::fleet::unadmit(store, &list, &local, est);
                        return Err(refusal);
                    }
                }
            }
        }
        Err(()) => {
            crate::fleet::unadmit(store, &list, &local, est);
            crate::fleet::unhold(store, &list, &ask.ask, &ask.have);
            return Err(Refusal::Store);
        }
    }
    let snaps: Vec<quota::Snapshot> = local.into_iter().flatten().collect();
    if snaps.len() != list.len() {
        return Err(Refusal::Store);
    }
    Ok(admission_of(est, &list, &snaps))
}

/// A request that waited for the store's admission is gone before the answer: what its parties'
/// ledgers committed or held for it is undone.
pub fn fleet_abandoned(host: &dyn HttpHost, config: &Config, principal: &Principal, ask: FleetAsk) {
    let parties = parties(config, principal);
    let list: Vec<&quota::Party> = parties.iter().collect();
    crate::fleet::unadmit(host.store(), &list, &ask.local, ask.estimate);
    crate::fleet::unhold(host.store(), &list, &ask.ask, &ask.have);
}

/// Charges a finished request in every party it was admitted in and frees its slots; sets the
/// budget gauges (a key's only when it has series of its own, the team's, the proxy's).
pub fn settle(
    host: &mut dyn HttpHost,
    config: &Config,
    principal: &Principal,
    admission: &Admission,
    fleet_mode: bool,
    now: u64,
    charge: Charge,
) {
    let parties = parties(config, principal);
    let admitted: Vec<(&quota::Party, u64)> = parties
        .iter()
        .filter_map(|p| admission.snapshot(p.scope).map(|s| (p, s.minute)))
        .collect();
    // Each party's spend afterwards, where known.
    let after: Vec<Option<u64>> = if fleet_mode {
        crate::fleet::settle(
            host.store(),
            &admitted,
            admission.estimate,
            charge.cost,
            charge.tokens,
        )
        .into_iter()
        .map(|l| l.map(|l| l.known_spend()))
        .collect()
    } else {
        admitted
            .iter()
            .map(|(p, minute)| {
                quota::settle_one(host.store(), p, now, *minute, admission.estimate, charge)
                    .map(|c| c.spend)
            })
            .collect()
    };
    let (team_label, alias) = principal.metric_labels();
    // A gauge shared by many keys would show whichever settled last: only a key with series of
    // its own has one.
    let own = matches!(principal, Principal::Key(k) if k.def.own_metrics());
    for ((p, _), spend) in admitted.iter().zip(after) {
        let (Some(spend), Some(max)) = (spend, p.limits.max_budget) else {
            continue;
        };
        let gauge = match p.scope {
            quota::Scope::Key if own => stats::key_budget_remaining(team_label, alias),
            quota::Scope::Key => continue,
            quota::Scope::Team => stats::team_budget_remaining(team_label),
            quota::Scope::Proxy => stats::proxy_budget_remaining(),
        };
        host.set_gauge(&gauge, max.saturating_sub(spend));
    }
}

fn duration_header(secs: u64) -> String {
    format!("{secs}s")
}

/// Response headers the filter adds: fixed names, values made per request.
pub type Headers = Vec<(&'static str, String)>;

/// OpenAI-style rate-limit headers from the tighter of the key's and team's snapshots.
pub fn limit_headers(a: &Admission) -> Headers {
    let mut h = Vec::with_capacity(10);
    let snaps = [a.key, a.team, a.proxy];
    let tightest = |pick: &dyn Fn(&quota::Snapshot) -> Option<(u64, u64)>| {
        snaps
            .iter()
            .flatten()
            .filter_map(pick)
            .min_by_key(|(_, remaining)| *remaining)
    };
    let Some(reset) = snaps.iter().flatten().map(|s| s.reset_secs).next() else {
        return h;
    };
    if let Some((limit, remaining)) = tightest(&|s| s.rpm.zip(s.remaining_requests)) {
        h.push(("x-ratelimit-limit-requests", limit.to_string()));
        h.push(("x-ratelimit-remaining-requests", remaining.to_string()));
        h.push(("x-ratelimit-reset-requests", duration_header(reset)));
    }
    if let Some((limit, remaining)) = tightest(&|s| s.tpm.zip(s.remaining_tokens)) {
        h.push(("x-ratelimit-limit-tokens", limit.to_string()));
        h.push(("x-ratelimit-remaining-tokens", remaining.to_string()));
        h.push(("x-ratelimit-reset-tokens", duration_header(reset)));
    }
    h
}

/// The key's headers on an admitted request's response.
pub fn key_headers(principal: &Principal, a: &Admission) -> Headers {
    let Principal::Key(k) = principal else {
        return Vec::new();
    };
    let mut h = limit_headers(a);
    h.push(("x-tollgate-key-alias", principal.labels().1.to_string()));
    if let Some(key) = a.key {
        h.push((
            "x-tollgate-key-spend",
            format!("{:.6}", quota::usd(key.spend)),
        ));
    }
    if let Some(max) = k.def.max_budget {
        h.push(("x-tollgate-key-max-budget", format!("{max}")));
    }
    if a.soft_budget_exceeded() {
        h.push(("x-tollgate-soft-budget-exceeded", "true".into()));
    }
    h
}

/// The OpenAI-shaped refusal for a limit, with the headers that tell a client when to retry.
pub fn refusal(r: &Refusal) -> (ApiError, Headers) {
    match r {
        Refusal::Budget { scope, spend, reserved, max, needed, reset_at } => {
            let when = reset_at.map(|t| format!(" The budget resets at {}.", time::format_rfc3339(t))).unwrap_or_default();
            let msg = if spend >= max {
                format!(
                    "Budget has been exceeded for {}: spend ${:.6}, max budget ${:.6}.{when}",
                    scope.described(),
                    quota::usd(*spend),
                    quota::usd(*max)
                )
            } else {
                format!(
                    "Budget would be exceeded for {}: spend ${:.6} plus ${:.6} reserved by requests in flight plus this request's worst case ${:.6} is over the max budget ${:.6}. Lower max_tokens or wait for requests in flight.{when}",
                    scope.described(),
                    quota::usd(*spend),
                    quota::usd(*reserved),
                    quota::usd(*needed),
                    quota::usd(*max)
                )
            };
            let e = ApiError::new(429, "insufficient_quota", msg).with_code("budget_exceeded");
            (e, vec![("x-should-retry", "false".into())])
        }
        Refusal::Parallel { scope, limit } => (
            ApiError::rate_limit(format!("Too many requests in flight for {}: the limit is {limit}.", scope.described()))
                .with_code("parallel_limit_exceeded"),
            vec![("retry-after", "1".into())],
        ),
        Refusal::Requests { scope, limit, reset_secs } => (
            ApiError::rate_limit(format!(
                "Rate limit reached for {}: {limit} requests per minute. Try again in {reset_secs}s.",
                scope.described()
            ))
            .with_code("rate_limit_exceeded"),
            vec![
                ("retry-after", reset_secs.to_string()),
                ("x-ratelimit-limit-requests", limit.to_string()),
                ("x-ratelimit-remaining-requests", "0".into()),
                ("x-ratelimit-reset-requests", duration_header(*reset_secs)),
            ],
        ),
        Refusal::Tokens { scope, limit, used, needed, reset_secs } => (
            ApiError::rate_limit(format!(
                "Token rate limit reached for {}: {limit} tokens per minute, {used} used or reserved, this request may use up to {needed}. Try again in {reset_secs}s.",
                scope.described()
            ))
            .with_code("rate_limit_exceeded"),
            vec![
                ("retry-after", reset_secs.to_string()),
                ("x-ratelimit-limit-tokens", limit.to_string()),
                ("x-ratelimit-remaining-tokens", limit.saturating_sub(*used).to_string()),
                ("x-ratelimit-reset-tokens", duration_header(*reset_secs)),
            ],
        ),
        Refusal::Store => (
            ApiError::new(503, "api_error", "The gateway's shared counters are busy; retry the request.").with_code("quota_store_busy"),
            vec![("retry-after", "1".into())],
        ),
    }
}
