//! Budgets and rate limits for keys and teams, kept in the store every worker shares.
//!
//! Each key and each team has one record of counters; an admission or a settlement is one
//! compare-and-swap loop over it, so all counters of a scope change together. Money is in
//! micro-USD. To keep concurrent requests from overshooting a budget, admission reserves the
//! request's worst-case cost (and tokens) and settlement replaces the reservation by the actual
//! cost: a request whose reservation does not fit is refused.

use crate::store::{update, Store, UpdateError};

/// A scope's limits, as configured or generated. `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_budget: Option<u64>,
    /// Budget window in seconds; `None`: the budget never resets.
    pub budget_duration: Option<u64>,
    pub soft_budget: Option<u64>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub parallel: Option<u64>,
}

/// The shared record of one key or team.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Start of the current budget window (Unix seconds).
    pub window_start: u64,
    /// Spend in the current budget window.
    pub spend: u64,
    /// Cost reserved by requests in flight.
    pub reserved: u64,
    pub lifetime_spend: u64,
    /// The minute (Unix seconds / 60) the request and token counts belong to.
    pub minute: u64,
    pub requests: u64,
    pub tokens: u64,
    pub tokens_reserved: u64,
    pub in_flight: u64,
}

const FIELDS: usize = 9;
const VERSION: u8 = 1;

impl Counters {
    pub fn encode(&self) -> Vec<u8> {
        crate::store::encode_u64s(
            VERSION,
            &[
                self.window_start,
                self.spend,
                self.reserved,
                self.lifetime_spend,
                self.minute,
                self.requests,
                self.tokens,
                self.tokens_reserved,
                self.in_flight,
            ],
        )
    }

    /// Decodes a record; an absent or unreadable one is a fresh scope.
    pub fn decode(bytes: &[u8]) -> Counters {
        let v = crate::store::decode_u64s::<FIELDS>(VERSION, bytes);
        let [window_start, spend, reserved, lifetime_spend, minute, requests, tokens, tokens_reserved, in_flight] =
            v;
        Counters {
            window_start,
            spend,
            reserved,
            lifetime_spend,
            minute,
            requests,
            tokens,
            tokens_reserved,
            in_flight,
        }
    }

    /// Starts new windows lazily when the current ones have passed.
    fn roll(&mut self, l: &Limits, now: u64) {
        match l.budget_duration {
            Some(d) if d > 0 => {
                if self.window_start == 0 || now >= self.window_start.saturating_add(d) {
                    // Keep windows aligned to the first one, so resets are predictable.
                    let elapsed = now.saturating_sub(self.window_start);
                    self.window_start = if self.window_start == 0 {
                        now
                    } else {
                        self.window_start + elapsed / d * d
                    };
                    self.spend = 0;
                }
            }
            _ => {
                if self.window_start == 0 {
                    self.window_start = now;
                }
            }
        }
        let minute = now / 60;
        if minute != self.minute {
            self.minute = minute;
            self.requests = 0;
            self.tokens = 0;
            self.tokens_reserved = 0;
        }
    }

    /// When the budget window resets, if it does.
    pub fn budget_reset_at(&self, l: &Limits) -> Option<u64> {
        l.budget_duration
            .map(|d| self.window_start.saturating_add(d))
    }
}

/// What a request may cost at most, reserved at admission.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub cost: u64,
    pub tokens: u64,
}

/// What a request actually cost, charged at settlement.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    pub cost: u64,
    pub tokens: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Key,
    Team,
    /// The whole gateway: `litellm_settings.max_budget` and
    /// `general_settings.global_max_parallel_requests`, whoever the caller is.
    Proxy,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::Team => "team",
            Scope::Proxy => "proxy",
        }
    }

    /// What a refusal names: "this key", "this team", or the proxy-wide cap.
    pub fn described(self) -> &'static str {
        match self {
            Scope::Key => "this key",
            Scope::Team => "this team",
            Scope::Proxy => "the whole proxy (a proxy-wide cap)",
        }
    }
}

/// The proxy-wide record's store key (`tollgate.usage.proxy.all`).
pub const PROXY_RECORD: &str = "tollgate.usage.proxy.all";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The budget is spent, or this request's reservation does not fit what is left.
    Budget {
        scope: Scope,
        spend: u64,
        reserved: u64,
        max: u64,
        needed: u64,
        reset_at: Option<u64>,
    },
    Parallel {
        scope: Scope,
        limit: u64,
    },
    Requests {
        scope: Scope,
        limit: u64,
        reset_secs: u64,
    },
    Tokens {
        scope: Scope,
        limit: u64,
        used: u64,
        needed: u64,
        reset_secs: u64,
    },
    /// The shared store could not be updated: fail closed rather than lose a count.
    Store,
}

/// The scope's state right after admission, for response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub spend: u64,
    pub max_budget: Option<u64>,
    pub rpm: Option<u64>,
    pub remaining_requests: Option<u64>,
    pub tpm: Option<u64>,
    pub remaining_tokens: Option<u64>,
    /// Seconds until the request and token counts reset.
    pub reset_secs: u64,
    pub soft_budget_exceeded: bool,
    pub minute: u64,
}

/// What a scope holds against its rate limits: requests in flight, and this minute's requests
/// and tokens (used and reserved).
#[derive(Debug, Clone, Copy)]
pub struct Used {
    pub in_flight: u64,
    pub requests: u64,
    pub tokens: u64,
}

/// The parallel, rpm and tpm checks of one admission (the local counters' and the fleet
/// ledger's without a lease alike), in that order.
pub fn check_rates(
    l: &Limits,
    scope: Scope,
    used: Used,
    est: Estimate,
    reset_secs: u64,
) -> Result<(), Refusal> {
    if let Some(limit) = l.parallel {
        if used.in_flight >= limit {
            return Err(Refusal::Parallel { scope, limit });
        }
    }
    if let Some(limit) = l.rpm {
        if used.requests >= limit {
            return Err(Refusal::Requests {
                scope,
                limit,
                reset_secs,
            });
        }
    }
    if let Some(limit) = l.tpm {
        if used.tokens.saturating_add(est.tokens) > limit {
            return Err(Refusal::Tokens {
                scope,
                limit,
                used: used.tokens,
                needed: est.tokens,
                reset_secs,
            });
        }
    }
    Ok(())
}

/// Checks and applies one admission to a scope's counters.
pub fn admit(
    c: &mut Counters,
    l: &Limits,
    scope: Scope,
    now: u64,
    est: Estimate,
) -> Result<Snapshot, Refusal> {
    c.roll(l, now);
    let reset_secs = 60 - now % 60;
    if let Some(max) = l.max_budget {
        if c.spend >= max || c.spend.saturating_add(c.reserved).saturating_add(est.cost) > max {
            return Err(Refusal::Budget {
                scope,
                spend: c.spend,
                reserved: c.reserved,
                max,
                needed: est.cost,
                reset_at: c.budget_reset_at(l),
            });
        }
    }
    check_rates(
        l,
        scope,
        Used {
            in_flight: c.in_flight,
            requests: c.requests,
            tokens: c.tokens.saturating_add(c.tokens_reserved),
        },
        est,
        reset_secs,
    )?;
    c.reserved = c.reserved.saturating_add(est.cost);
    c.in_flight = c.in_flight.saturating_add(1);
    c.requests = c.requests.saturating_add(1);
    c.tokens_reserved = c.tokens_reserved.saturating_add(est.tokens);
    Ok(Snapshot {
        spend: c.spend,
        max_budget: l.max_budget,
        rpm: l.rpm,
        remaining_requests: l.rpm.map(|r| r.saturating_sub(c.requests)),
        tpm: l.tpm,
        remaining_tokens: l
            .tpm
            .map(|t| t.saturating_sub(c.tokens.saturating_add(c.tokens_reserved))),
        reset_secs,
        soft_budget_exceeded: l.soft_budget.is_some_and(|s| c.spend >= s),
        minute: c.minute,
    })
}

/// Undoes an admission that a later scope refused (the request never ran).
pub fn unadmit(c: &mut Counters, admitted_minute: u64, est: Estimate) {
    c.reserved = c.reserved.saturating_sub(est.cost);
    c.in_flight = c.in_flight.saturating_sub(1);
    if c.minute == admitted_minute {
        c.requests = c.requests.saturating_sub(1);
        c.tokens_reserved = c.tokens_reserved.saturating_sub(est.tokens);
    }
}

/// Replaces a request's reservation by its actual cost and frees its parallel slot.
pub fn settle(
    c: &mut Counters,
    l: &Limits,
    now: u64,
    admitted_minute: u64,
    est: Estimate,
    actual: Charge,
) {
    c.reserved = c.reserved.saturating_sub(est.cost);
    c.in_flight = c.in_flight.saturating_sub(1);
    if c.minute == admitted_minute {
        c.tokens_reserved = c.tokens_reserved.saturating_sub(est.tokens);
    }
    c.roll(l, now);
    c.spend = c.spend.saturating_add(actual.cost);
    c.lifetime_spend = c.lifetime_spend.saturating_add(actual.cost);
    c.tokens = c.tokens.saturating_add(actual.tokens);
}

/// Store key of a scope's counters.
pub fn record_key(scope: Scope, id: &str) -> String {
    ["tollgate.usage.", scope.name(), ".", id].concat()
}

/// One scope taking part in an admission: its store key and limits.
#[derive(Debug, Clone, Copy)]
pub struct Party<'a> {
    pub scope: Scope,
    pub key: &'a str,
    pub limits: &'a Limits,
}

/// The outcome of admitting a request in all its scopes: each scope's snapshot, for those the
/// request was admitted in (a master key or open gateway has no key; the proxy scope exists only
/// when a proxy-wide cap is configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub estimate: Estimate,
    pub key: Option<Snapshot>,
    pub team: Option<Snapshot>,
    pub proxy: Option<Snapshot>,
}

impl Admission {
    /// The admission of parties admitted together, each snapshot in its party's scope.
    pub fn of(estimate: Estimate, parties: &[&Party], snaps: &[Snapshot]) -> Admission {
        let mut a = Admission {
            estimate,
            key: None,
            team: None,
            proxy: None,
        };
        for (p, s) in parties.iter().zip(snaps) {
            *a.slot(p.scope) = Some(*s);
        }
        a
    }

    fn slot(&mut self, scope: Scope) -> &mut Option<Snapshot> {
        match scope {
            Scope::Key => &mut self.key,
            Scope::Team => &mut self.team,
            Scope::Proxy => &mut self.proxy,
        }
    }

    /// The snapshot of a scope the request was admitted in.
    pub fn snapshot(&self, scope: Scope) -> Option<Snapshot> {
        match scope {
            Scope::Key => self.key,
            Scope::Team => self.team,
            Scope::Proxy => self.proxy,
        }
    }

    /// Whether any of its scopes is over its soft budget.
    pub fn soft_budget_exceeded(&self) -> bool {
        [self.key, self.team, self.proxy]
            .iter()
            .flatten()
            .any(|s| s.soft_budget_exceeded)
    }
}

fn store_refusal(e: UpdateError<Refusal>) -> Refusal {
    match e {
        UpdateError::Refused(r) => r,
        UpdateError::Contention | UpdateError::Unavailable => Refusal::Store,
    }
}

/// Admits a request in every party, in order, all or none: a refusal undoes what the parties
/// before it admitted. Returns their snapshots in the parties' order.
pub fn admit_parties(
    store: &dyn Store,
    parties: &[&Party],
    now: u64,
    est: Estimate,
) -> Result<Vec<Snapshot>, Refusal> {
    let mut snaps: Vec<Snapshot> = Vec::with_capacity(parties.len());
    for p in parties {
        let r = update(store, p.key, |bytes| {
            let mut c = Counters::decode(bytes);
            let snap = admit(&mut c, p.limits, p.scope, now, est)?;
            Ok((c.encode(), snap))
        });
        match r {
            Ok(s) => snaps.push(s),
            Err(e) => {
                for (done, snap) in parties.iter().zip(&snaps) {
                    let _ = update::<(), ()>(store, done.key, |bytes| {
                        let mut c = Counters::decode(bytes);
                        unadmit(&mut c, snap.minute, est);
                        Ok((c.encode(), ()))
                    });
                }
                return Err(store_refusal(e));
            }
        }
    }
    Ok(snaps)
}

/// Admits a request in its key's scope, then its team's; undoes the key's if the team refuses.
pub fn admit_all(
    store: &dyn Store,
    key: &Party,
    team: Option<&Party>,
    now: u64,
    est: Estimate,
) -> Result<Admission, Refusal> {
    let list: Vec<&Party> = std::iter::once(key).chain(team).collect();
    let snaps = admit_parties(store, &list, now, est)?;
    Ok(Admission::of(est, &list, &snaps))
}

/// Settles a request in one scope; returns the scope's counters afterwards.
pub fn settle_one(
    store: &dyn Store,
    party: &Party,
    now: u64,
    admitted_minute: u64,
    est: Estimate,
    actual: Charge,
) -> Option<Counters> {
    update::<_, ()>(store, party.key, |bytes| {
        let mut c = Counters::decode(bytes);
        settle(&mut c, party.limits, now, admitted_minute, est, actual);
        Ok((c.encode(), c))
    })
    .ok()
}

/// Creates a scope's record if it does not exist yet. Called before any request can touch it
/// (configuration load, key generation): shared data accepts any CAS on an absent key, so a
/// record first created by two racing updates could lose one of them.
pub fn ensure_record(store: &dyn Store, key: &str, now: u64) {
    if store.get(key).is_none() {
        let c = Counters {
            window_start: now,
            minute: now / 60,
            ..Default::default()
        };
        let _ = store.set(key, &c.encode(), None);
    }
}

/// Reads a scope's counters as they would be now (windows rolled, nothing written).
pub fn read(store: &dyn Store, key: &str, l: &Limits, now: u64) -> Counters {
    let mut c = store
        .get(key)
        .map(|v| Counters::decode(&v.value))
        .unwrap_or_default();
    c.roll(l, now);
    c
}

/// Micro-USD as dollars for JSON and headers.
pub fn usd(micro: u64) -> f64 {
    micro as f64 / 1_000_000.0
}

/// Dollars (from config or the admin API) as micro-USD, rounded to the nearest micro-dollar.
pub fn micro(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1_000_000.0).round() as u64
    } else {
        0
    }
}

pub mod fleet;

#[cfg(test)]
mod tests;
