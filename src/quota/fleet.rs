//! Budgets and rate limits that hold across Envoy replicas, without a round trip per request.
//!
//! Each replica holds a *lease* of every busy party's fleet-wide allowance (budget, the minute's
//! requests and tokens, parallel slots), granted by the store (the Redis library
//! `store/tollgate.lua`), and admits against it locally, in the ledger below (kept in the shared
//! store beside the local counters, so every worker of the replica sees it). On the tick, one sync
//! per replica carries what each ledger settled since the last one, releases what it no longer
//! needs and asks for what it expects to need, sized to its recent demand and to its share of what
//! is left fleet-wide: as a budget runs out, leases shrink to nothing and each admission asks the
//! store (`tg_admit`), so the fleet never admits past a limit.
//!
//! Only the replica shrinks its lease: it releases room it does not hold, locally, before the sync
//! leaves. The store answers in amounts granted, never in absolute leases, so replies of `tg_sync`
//! and `tg_admit` that cross on the way apply in any order and add up to what the store holds.
//!
//! Pure: no I/O. The filter reads and writes ledgers through the shared store, builds the sync
//! from them on the tick, and makes the store calls (`filter`, `host`).

use serde::{Deserialize, Serialize};

use super::{Estimate, Limits, Refusal, Scope, Snapshot};

/// A replica's part of a party's fleet-wide allowance, as the store granted it: budget (micro-USD,
/// including what it settled and has not had acknowledged yet), requests and tokens of minute `m`
/// (Unix minutes, the store's clock), parallel slots.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub b: u64,
    pub r: u64,
    pub t: u64,
    pub p: u64,
    pub m: u64,
}

/// The fleet-wide state of a party, as of the store's last reply.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fleet {
    /// Spend in the current budget window, and in all time (micro-USD).
    pub spend: u64,
    pub lifetime: u64,
    pub window_start: u64,
    /// Budget leased to replicas (all of them), when the store says.
    pub leased: u64,
    /// Requests and tokens counted in `minute` (admitted or leased).
    pub minute: u64,
    pub requests: u64,
    pub tokens: u64,
    /// Replicas alive, when the store says (at least 1).
    pub replicas: u64,
}

/// One party's ledger on this replica.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ledger {
    pub lease: Lease,
    pub fleet: Fleet,
    /// The store's clock minus this replica's, milliseconds (two's complement in the record).
    pub clock_offset_ms: i64,
    /// Requests in flight on this replica: their reservations and slots.
    pub reserved: u64,
    pub tokens_reserved: u64,
    pub in_flight: u64,
    /// Requests and settled tokens of `local_minute`, counted against the lease of that minute.
    pub local_minute: u64,
    pub requests_used: u64,
    pub tokens_used: u64,
    /// Settled since the store last acknowledged; `frozen_*` are the part sent in the sync on
    /// its way (acknowledged, or sent again unchanged, when its reply comes).
    pub unsynced_spend: u64,
    pub unsynced_tokens: u64,
    pub frozen_spend: u64,
    pub frozen_tokens: u64,
    /// Demand since the last sync (sums of estimates, requests, the most requests in flight),
    /// and its smoothed value per tick (what the next lease is sized to).
    pub demand_b: u64,
    pub demand_r: u64,
    pub demand_t: u64,
    pub peak_p: u64,
    pub smooth_b: u64,
    pub smooth_r: u64,
    pub smooth_t: u64,
    /// Until when (the store's clock, ms) a refusal by the store is believed without asking.
    pub refused_until_ms: u64,
    pub refused: u64,
    /// When (this replica's clock, ms) the store last confirmed the lease: its last sync reply,
    /// or a `tg_admit` grant. A lease older than the caller's limit may have been reclaimed by
    /// the store (it counts a replica dead `replica_ttl_ms` after its last sync) and is not used.
    pub confirmed_ms: u64,
    /// Budget of the lease held for requests waiting for the store (see [`Shortfall::AskFleet`]).
    pub held: u64,
    /// A sync found the party idle and is dropping it from the parties it reports (see
    /// `fleet::next_sync`): the next admission or settlement takes the mark and tracks the
    /// party again. Only the ledger tells a worker: no request reads anything more for it.
    pub untracked: bool,
}

const VERSION: u8 = 1;
/// Fields of a ledger record. `untracked`, the last, was added without a new version: a record
/// written before it decodes with the field at zero.
const FIELDS: usize = 36;

/// What an admission needs when the lease cannot hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shortfall {
    /// A limit the fleet has reached, as far as this replica knows: refused without asking.
    Refused(Refusal),
    /// The lease cannot hold this request: ask the store to admit it (`tg_admit`). `have` is the
    /// budget room the lease had, held for this request until the store answers (so the store
    /// grants only the rest): a fragment too small for a request is not stranded beside it.
    /// `extra` is the lease it asks for on top, for the requests that follow until the next sync
    /// (a burst's start, a new minute), so that they need not ask too.
    AskFleet { have: u64, extra: Amounts },
}

/// Which limit a store refusal was about (`refusal.kind` of `tg_admit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Budget,
    Requests,
    Tokens,
    Parallel,
}

/// How many ticks of recent demand a lease holds beyond what is committed.
const LEASE_TICKS: u64 = 8;
/// A request that asks the store asks for more only if this replica's share of what is left
/// holds at least this many requests.
const PREFETCH_MIN_REQUESTS: u64 = 16;
/// A refusal by the store is believed this long before asking again.
const REFUSAL_MEMORY_MS: u64 = 250;
/// After its minute ends, what a lease has left of that minute's requests and tokens stays
/// usable (counted in that minute, which the store counted it in when it granted it) until the
/// store grants the new minute's, with the next sync, and at most this long. Without it every
/// replica would ask the store (`tg_admit`) for each request in the first tick of each minute.
/// The fixed window of a rate limit thus takes requests for up to this long past its minute's end.
pub const MINUTE_GRACE_MS: u64 = 1_000;

impl Ledger {
    pub fn encode(&self) -> Vec<u8> {
        let l = self.lease;
        let f = self.fleet;
        crate::store::encode_u64s(
            VERSION,
            &[
                l.b,
                l.r,
                l.t,
                l.p,
                l.m,
                self.refused,
                f.spend,
                f.lifetime,
                f.window_start,
                f.leased,
                f.minute,
                f.requests,
                f.tokens,
                f.replicas,
                self.clock_offset_ms as u64,
                self.reserved,
                self.tokens_reserved,
                self.in_flight,
                self.local_minute,
                self.requests_used,
                self.tokens_used,
                self.unsynced_spend,
                self.unsynced_tokens,
                self.frozen_spend,
                self.frozen_tokens,
                self.demand_b,
                self.demand_r,
                self.demand_t,
                self.peak_p,
                self.smooth_b,
                self.smooth_r,
                self.smooth_t,
                self.refused_until_ms,
                self.confirmed_ms,
                self.held,
                u64::from(self.untracked),
            ],
        )
    }

    /// Decodes a ledger; an absent or unreadable one is a party this replica holds nothing of.
    pub fn decode(bytes: &[u8]) -> Ledger {
        let v = crate::store::decode_u64s::<FIELDS>(VERSION, bytes);
        let [b, r, t, p, m, refused, spend, lifetime, window_start, leased, minute, requests, tokens, replicas, offset, reserved, tokens_reserved, in_flight, local_minute, requests_used, tokens_used, unsynced_spend, unsynced_tokens, frozen_spend, frozen_tokens, demand_b, demand_r, demand_t, peak_p, smooth_b, smooth_r, smooth_t, refused_until_ms, confirmed_ms, held, untracked] =
            v;
        Ledger {
            lease: Lease { b, r, t, p, m },
            fleet: Fleet {
                spend,
                lifetime,
                window_start,
                leased,
                minute,
                requests,
                tokens,
                replicas,
            },
            clock_offset_ms: offset as i64,
            reserved,
            tokens_reserved,
            in_flight,
            local_minute,
            requests_used,
            tokens_used,
            unsynced_spend,
            unsynced_tokens,
            frozen_spend,
            frozen_tokens,
            demand_b,
            demand_r,
            demand_t,
            peak_p,
            smooth_b,
            smooth_r,
            smooth_t,
            refused_until_ms,
            refused,
            confirmed_ms,
            held,
            untracked: untracked != 0,
        }
    }

    /// The store's clock, from this replica's.
    pub fn fleet_now_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_add_signed(self.clock_offset_ms)
    }

    /// Starts the minute's request and token counts afresh when the store's minute moved on,
    /// unless the lease of the minute just ended is still in its grace (see
    /// [`MINUTE_GRACE_MS`]): then requests keep counting in that minute, against its lease.
    fn roll(&mut self, fleet_now_ms: u64) {
        let minute = fleet_now_ms / 60_000;
        if minute != self.local_minute && !self.in_grace(fleet_now_ms) {
            self.local_minute = minute;
            self.requests_used = 0;
            self.tokens_used = 0;
            self.tokens_reserved = 0;
        }
    }

    /// Whether, at `fleet_now_ms`, the minute just ended still counts requests against its
    /// lease: within [`MINUTE_GRACE_MS`] of its end, until the store grants the new minute.
    fn in_grace(&self, fleet_now_ms: u64) -> bool {
        fleet_now_ms / 60_000 == self.local_minute.saturating_add(1)
            && fleet_now_ms % 60_000 < MINUTE_GRACE_MS
            && self.lease.m == self.local_minute
            && (self.lease.r > 0 || self.lease.t > 0)
    }

    /// The lease's requests and tokens count only in their minute.
    fn minute_lease(&self) -> (u64, u64) {
        if self.lease.m == self.local_minute {
            (self.lease.r, self.lease.t)
        } else {
            (0, 0)
        }
    }

    /// Budget the lease still has room for.
    fn budget_room(&self) -> u64 {
        self.lease
            .b
            .saturating_sub(self.reserved)
            .saturating_sub(self.unsynced_spend)
            .saturating_sub(self.held)
    }

    /// Budget (of `max`) a request could still be reserved from fleet-wide, as far as this
    /// replica knows: its lease's room and the pool no replica holds, as of the store's last
    /// answer, and never more than `max` less the spend it knows. The store's admission checks
    /// it again atomically; a stale view only makes a request ask the store.
    pub fn budget_left(&self, max: u64) -> u64 {
        let pool = max
            .saturating_sub(self.fleet.spend)
            .saturating_sub(self.fleet.leased);
        pool.saturating_add(self.budget_room())
            .min(max.saturating_sub(self.known_spend()))
    }

    /// Spend fleet-wide as far as this replica knows: the store's, plus what it settled since.
    pub fn known_spend(&self) -> u64 {
        self.fleet.spend.saturating_add(
            self.unsynced_spend
                .saturating_sub(self.frozen_spend.min(self.unsynced_spend)),
        )
    }

    /// Admits a request against the lease, if it holds it; else says what it takes. A lease the
    /// store confirmed more than `lease_max_age_ms` ago holds nothing (the store may have given
    /// it to others meanwhile).
    pub fn admit(
        &mut self,
        l: &Limits,
        scope: Scope,
        now_ms: u64,
        est: Estimate,
        lease_max_age_ms: u64,
    ) -> Result<Snapshot, Shortfall> {
        let fleet_now = self.fleet_now_ms(now_ms);
        self.roll(fleet_now);
        let (lease_r, lease_t) = self.minute_lease();
        let reset_secs = 60 - (fleet_now / 1000) % 60;
        if let Some(max) = l.max_budget {
            let spend = self.known_spend();
            if spend >= max {
                return Err(Shortfall::Refused(Refusal::Budget {
                    scope,
                    spend,
                    reserved: self.reserved,
                    max,
                    needed: est.cost,
                    reset_at: l
                        .budget_duration
                        .map(|d| self.fleet.window_start.saturating_add(d)),
                }));
            }
        }
        // A party without limits needs no lease at all.
        let limited =
            l.max_budget.is_some() || l.parallel.is_some() || l.rpm.is_some() || l.tpm.is_some();
        let fresh = now_ms.saturating_sub(self.confirmed_ms) <= lease_max_age_ms;
        let fits = !limited
            || fresh
                && l.max_budget.is_none_or(|_| est.cost <= self.budget_room())
                && l.parallel.is_none_or(|_| self.in_flight < self.lease.p)
                && l.rpm.is_none_or(|_| self.requests_used < lease_r)
                && l.tpm.is_none_or(|_| {
                    self.tokens_used
                        .saturating_add(self.tokens_reserved)
                        .saturating_add(est.tokens)
                        <= lease_t
                });
        if !fits {
            if self.refused_until_ms > fleet_now {
                if let Some(r) = self.remembered_refusal(l, scope, est, reset_secs) {
                    return Err(Shortfall::Refused(r));
                }
            }
            // The lease's budget room (if it may be used) goes toward this request.
            let have = if fresh && l.max_budget.is_some() {
                self.budget_room().min(est.cost)
            } else {
                0
            };
            self.held = self.held.saturating_add(have);
            let extra = self.prefetch(l, fleet_now, est);
            return Err(Shortfall::AskFleet { have, extra });
        }
        Ok(self.take(l, fleet_now, est, reset_secs))
    }

    /// Lease to ask for with a request the store must admit: two ticks of the party's demand (the
    /// smoothed one, or this tick's if higher), within this replica's share of what is left, and
    /// nothing unless that share holds [`PREFETCH_MIN_REQUESTS`] or before the store said how many replicas
    /// share the party. Only limited dimensions; parallel slots come
    /// with each request.
    fn prefetch(&self, l: &Limits, fleet_now: u64, est: Estimate) -> Amounts {
        // Before the store has said how many replicas share the party, this one's share is
        // unknown: it asks for the request alone.
        if self.fleet.replicas == 0 {
            return Amounts::default();
        }
        let replicas = self.fleet.replicas;
        // Far from the limit only: a lease asked for ahead of demand that the demand does not
        // use is stranded on this replica until the next syncs release it, and others are
        // refused meanwhile.
        let share = |left: u64, unit: u64| {
            let s = left / replicas.saturating_mul(2).max(2);
            if s < unit.max(1).saturating_mul(PREFETCH_MIN_REQUESTS) {
                0
            } else {
                s
            }
        };
        let minute = fleet_now / 60_000;
        let this_minute = |n: u64| if self.fleet.minute == minute { n } else { 0 };
        let ticks = |smooth: u64, now: u64, unit: u64| smooth.max(now).max(unit).saturating_mul(2);
        let mut extra = Amounts::default();
        if let Some(max) = l.max_budget {
            let left = max
                .saturating_sub(self.fleet.spend)
                .saturating_sub(self.fleet.leased)
                .saturating_sub(est.cost);
            extra.b = ticks(self.smooth_b, self.demand_b, est.cost).min(share(left, est.cost));
        }
        if let Some(rpm) = l.rpm {
            let left = rpm
                .saturating_sub(this_minute(self.fleet.requests))
                .saturating_sub(1);
            extra.r = ticks(self.smooth_r, self.demand_r, 1).min(share(left, 1));
        }
        if let Some(tpm) = l.tpm {
            let left = tpm
                .saturating_sub(this_minute(self.fleet.tokens))
                .saturating_sub(est.tokens);
            extra.t = ticks(self.smooth_t, self.demand_t, est.tokens).min(share(left, est.tokens));
        }
        extra
    }

    /// A refusal the store gave lately, for the limit it named.
    fn remembered_refusal(
        &self,
        l: &Limits,
        scope: Scope,
        est: Estimate,
        reset_secs: u64,
    ) -> Option<Refusal> {
        match self.refused {
            // A request smaller than what the store said is left may still fit (one capped to
            // it): the store decides.
            1 => l
                .max_budget
                .filter(|&max| est.cost > self.budget_left(max))
                .map(|max| Refusal::Budget {
                    scope,
                    spend: self.known_spend(),
                    reserved: self.fleet.leased,
                    max,
                    needed: est.cost,
                    reset_at: l
                        .budget_duration
                        .map(|d| self.fleet.window_start.saturating_add(d)),
                }),
            2 => l.rpm.map(|limit| Refusal::Requests {
                scope,
                limit,
                reset_secs,
            }),
            3 => l.tpm.map(|limit| Refusal::Tokens {
                scope,
                limit,
                used: self.fleet.tokens,
                needed: est.tokens,
                reset_secs,
            }),
            4 => l.parallel.map(|limit| Refusal::Parallel { scope, limit }),
            _ => None,
        }
    }

    /// Commits an admitted request to the ledger.
    fn take(&mut self, l: &Limits, fleet_now: u64, est: Estimate, reset_secs: u64) -> Snapshot {
        self.reserved = self.reserved.saturating_add(est.cost);
        self.tokens_reserved = self.tokens_reserved.saturating_add(est.tokens);
        self.in_flight = self.in_flight.saturating_add(1);
        self.requests_used = self.requests_used.saturating_add(1);
        self.demand_b = self.demand_b.saturating_add(est.cost);
        self.demand_r = self.demand_r.saturating_add(1);
        self.demand_t = self.demand_t.saturating_add(est.tokens);
        self.peak_p = self.peak_p.max(self.in_flight);
        let minute = fleet_now / 60_000;
        let fleet_counted = |n: u64| if self.fleet.minute == minute { n } else { 0 };
        let requests = fleet_counted(self.fleet.requests).max(self.requests_used);
        let tokens = fleet_counted(self.fleet.tokens)
            .max(self.tokens_used.saturating_add(self.tokens_reserved));
        let spend = self.known_spend();
        Snapshot {
            spend,
            max_budget: l.max_budget,
            rpm: l.rpm,
            remaining_requests: l.rpm.map(|r| r.saturating_sub(requests)),
            tpm: l.tpm,
            remaining_tokens: l.tpm.map(|t| t.saturating_sub(tokens)),
            reset_secs,
            soft_budget_exceeded: l.soft_budget.is_some_and(|s| spend >= s),
            minute: self.local_minute,
        }
    }

    /// The store admitted the request (`tg_admit`): its lease grew by what the store `granted`
    /// (this request less the budget `have` held for it, plus any extra it asked for; by this
    /// request alone when the reply does not say), in the store's minute `minute`; the request
    /// is committed here.
    pub fn admitted_by_fleet(
        &mut self,
        l: &Limits,
        now_ms: u64,
        est: Estimate,
        grant: FleetGrant,
        lease_max_age_ms: u64,
    ) -> Snapshot {
        let FleetGrant {
            have,
            granted,
            minute,
            fleet,
        } = grant;
        // A lease held from before, not confirmed lately, may be the store's no more: this grant
        // does not vouch for it (the next sync does, or resets it).
        let vouched = self.lease == Lease::default()
            || now_ms.saturating_sub(self.confirmed_ms) <= lease_max_age_ms;
        self.held = self.held.saturating_sub(have);
        self.grant(
            granted.unwrap_or(Amounts {
                b: est.cost.saturating_sub(have),
                r: 1,
                t: est.tokens,
                p: 1,
            }),
            minute,
        );
        if let Some(f) = fleet {
            self.fleet = f;
        }
        if vouched {
            self.confirmed_ms = self.confirmed_ms.max(now_ms);
        }
        let fleet_now = self.fleet_now_ms(now_ms);
        self.roll(fleet_now);
        let reset_secs = 60 - (fleet_now / 1000) % 60;
        self.take(l, fleet_now, est, reset_secs)
    }

    /// The store could not be asked (it is down, `failure_mode: local`): the request is admitted
    /// against what this replica knows, without a lease: the fleet's last known spend plus what
    /// it settled since for the budget, and its own counts against the whole rpm, tpm and
    /// parallel limits. What it settles reaches the store with the next sync that gets through.
    pub fn admit_unleased(
        &mut self,
        l: &Limits,
        scope: Scope,
        now_ms: u64,
        est: Estimate,
    ) -> Result<Snapshot, Refusal> {
        let fleet_now = self.fleet_now_ms(now_ms);
        self.roll(fleet_now);
        let reset_secs = 60 - (fleet_now / 1000) % 60;
        if let Some(max) = l.max_budget {
            let spend = self.known_spend();
            if spend.saturating_add(self.reserved).saturating_add(est.cost) > max {
                return Err(Refusal::Budget {
                    scope,
                    spend,
                    reserved: self.reserved,
                    max,
                    needed: est.cost,
                    reset_at: l
                        .budget_duration
                        .map(|d| self.fleet.window_start.saturating_add(d)),
                });
            }
        }
        let used = super::Used {
            in_flight: self.in_flight,
            requests: self.requests_used,
            tokens: self.tokens_used.saturating_add(self.tokens_reserved),
        };
        super::check_rates(l, scope, used, est, reset_secs)?;
        Ok(self.take(l, fleet_now, est, reset_secs))
    }

    /// The store refused the request: believed for a moment, so that a flood of requests past a
    /// limit does not become a flood of store calls.
    pub fn refused_by_fleet(&mut self, now_ms: u64, kind: Kind, fleet: Option<Fleet>) {
        if let Some(f) = fleet {
            self.fleet = f;
        }
        self.refused_until_ms = self.fleet_now_ms(now_ms).saturating_add(REFUSAL_MEMORY_MS);
        self.refused = match kind {
            Kind::Budget => 1,
            Kind::Requests => 2,
            Kind::Tokens => 3,
            Kind::Parallel => 4,
        };
    }

    /// The store did not admit the request (refused, or did not answer): the budget held for it
    /// is the lease's again.
    pub fn unhold(&mut self, have: u64) {
        self.held = self.held.saturating_sub(have);
    }

    /// Adds what the store granted; requests and tokens count in the store's `minute`.
    fn grant(&mut self, g: Amounts, minute: u64) {
        if minute != self.lease.m {
            if minute < self.lease.m {
                // A grant for a minute already past here: nothing of it is usable.
                self.lease.b = self.lease.b.saturating_add(g.b);
                self.lease.p = self.lease.p.saturating_add(g.p);
                return;
            }
            self.lease.m = minute;
            self.lease.r = 0;
            self.lease.t = 0;
        }
        self.lease.b = self.lease.b.saturating_add(g.b);
        self.lease.r = self.lease.r.saturating_add(g.r);
        self.lease.t = self.lease.t.saturating_add(g.t);
        self.lease.p = self.lease.p.saturating_add(g.p);
    }

    /// Undoes an admission another party refused (the request never ran).
    pub fn unadmit(&mut self, admitted_minute: u64, est: Estimate) {
        self.reserved = self.reserved.saturating_sub(est.cost);
        self.in_flight = self.in_flight.saturating_sub(1);
        if admitted_minute == self.local_minute {
            self.tokens_reserved = self.tokens_reserved.saturating_sub(est.tokens);
            self.requests_used = self.requests_used.saturating_sub(1);
        }
        self.demand_b = self.demand_b.saturating_sub(est.cost);
        self.demand_r = self.demand_r.saturating_sub(1);
        self.demand_t = self.demand_t.saturating_sub(est.tokens);
    }

    /// A request is over: its reservation replaced by what it cost, its slot freed.
    pub fn settle(&mut self, admitted_minute: u64, est: Estimate, cost: u64, tokens: u64) {
        self.reserved = self.reserved.saturating_sub(est.cost);
        self.in_flight = self.in_flight.saturating_sub(1);
        if admitted_minute == self.local_minute {
            self.tokens_reserved = self.tokens_reserved.saturating_sub(est.tokens);
            self.tokens_used = self.tokens_used.saturating_add(tokens);
        }
        self.unsynced_spend = self.unsynced_spend.saturating_add(cost);
        self.unsynced_tokens = self.unsynced_tokens.saturating_add(tokens);
    }

    /// Whether the ledger has anything to tell the store, or anything leased.
    pub fn active(&self) -> bool {
        self.unsynced_spend > 0
            || self.in_flight > 0
            || self.lease != Lease::default()
                && (self.lease.b > 0 || self.lease.p > 0 || self.lease.r > 0 || self.lease.t > 0)
            || self.demand_r > 0
            || self.smooth_r > 0
    }

    /// The ledger's part of the tick's sync: freezes what it settled, releases what it no longer
    /// needs (before the sync leaves), and says what it wants. Called only when no sync of this
    /// replica is on its way (a lost one is sent again as it was).
    pub fn sync(&mut self, l: &Limits, now_ms: u64) -> PartySync {
        let fleet_now = self.fleet_now_ms(now_ms);
        self.roll(fleet_now);
        // Demand per tick: up at once when it rises, down by a quarter a tick when it falls
        // (a burst is leased for from the next tick; an idle party gives its lease back).
        let smooth = |old: u64, new: u64| new.max(old.saturating_mul(3) / 4);
        self.smooth_b = smooth(self.smooth_b, self.demand_b);
        self.smooth_r = smooth(self.smooth_r, self.demand_r);
        self.smooth_t = smooth(self.smooth_t, self.demand_t);
        let peak_p = self.peak_p;
        self.demand_b = 0;
        self.demand_r = 0;
        self.demand_t = 0;
        self.peak_p = self.in_flight;
        self.frozen_spend = self.unsynced_spend;
        self.frozen_tokens = self.unsynced_tokens;

        let replicas = self.fleet.replicas.max(1);
        // Each replica may take its share of half of what is left fleet-wide beyond its own lease,
        // if that share holds a few of its requests; near a limit it holds none, and every
        // admission goes to the store, which admits exactly what is left (a fragment of a lease
        // too small for a request would otherwise be lost to every replica).
        let share = |left: u64, unit: u64| {
            let s = left / replicas.saturating_mul(2).max(2);
            if s < unit.saturating_mul(4) {
                0
            } else {
                s
            }
        };
        let per_request = |total: u64| total / self.smooth_r.max(1);
        // A lease moves toward `desired` by what the replica releases now (room it does not
        // hold: safe whatever it admits before the reply) or asks to grow (the store grants what
        // is left): never an absolute value the store would apply after later grants.
        let step = |lease: &mut u64, desired: u64| -> (u64, u64) {
            if desired < *lease {
                let release = *lease - desired;
                *lease = desired;
                (release, 0)
            } else {
                (0, desired - *lease)
            }
        };
        let (mut release, mut grow) = (Amounts::default(), Amounts::default());
        if let Some(max) = l.max_budget {
            let committed = self.reserved.saturating_add(self.unsynced_spend);
            let left = max
                .saturating_sub(self.fleet.spend)
                .saturating_sub(self.fleet.leased.saturating_sub(self.lease.b));
            let room = (self.smooth_b.saturating_mul(LEASE_TICKS))
                .min(share(left, per_request(self.smooth_b)));
            (release.b, grow.b) = step(&mut self.lease.b, committed.saturating_add(room));
        }
        // In a minute's grace (see [`MINUTE_GRACE_MS`]) the lease of the minute just ended keeps
        // serving until the reply: the sync asks for the new minute's from nothing, and the
        // store, which dropped the old one's, grants it in the new minute.
        let grace = self.in_grace(fleet_now);
        let minute = if grace {
            fleet_now / 60_000
        } else {
            self.local_minute
        };
        if self.lease.m != minute && !grace {
            // The store drops a past minute's requests and tokens; so does the replica.
            self.lease.r = 0;
            self.lease.t = 0;
            self.lease.m = minute;
        }
        let (mut lease_r, mut lease_t, requests_used, tokens_used) = if grace {
            (0, 0, 0, 0)
        } else {
            (
                self.lease.r,
                self.lease.t,
                self.requests_used,
                self.tokens_used.saturating_add(self.tokens_reserved),
            )
        };
        if let Some(rpm) = l.rpm {
            let left = if self.fleet.minute == minute {
                rpm.saturating_sub(self.fleet.requests.saturating_sub(lease_r))
            } else {
                rpm
            };
            let room = (self.smooth_r.saturating_mul(LEASE_TICKS)).min(share(left, 1));
            (release.r, grow.r) = step(&mut lease_r, requests_used.saturating_add(room));
        }
        if let Some(tpm) = l.tpm {
            let left = if self.fleet.minute == minute {
                tpm.saturating_sub(self.fleet.tokens.saturating_sub(lease_t))
            } else {
                tpm
            };
            let room = (self.smooth_t.saturating_mul(LEASE_TICKS))
                .min(share(left, per_request(self.smooth_t)));
            (release.t, grow.t) = step(&mut lease_t, tokens_used.saturating_add(room));
        }
        if !grace {
            (self.lease.r, self.lease.t) = (lease_r, lease_t);
        }
        if let Some(parallel) = l.parallel {
            let left = parallel.saturating_sub(self.lease.p);
            let desired = peak_p
                .max(self.in_flight)
                .saturating_add(1)
                .min(self.in_flight.saturating_add(share(left, 1).max(1)))
                .max(self.in_flight);
            (release.p, grow.p) = step(&mut self.lease.p, desired);
        }
        // A dimension without a limit needs no lease: whatever the store granted there (with
        // `tg_admit`, which grants every dimension) goes back, so no count piles up in the store.
        if l.max_budget.is_none() {
            (release.b, grow.b) = step(&mut self.lease.b, 0);
        }
        if l.rpm.is_none() {
            (release.r, grow.r) = step(&mut self.lease.r, 0);
        }
        if l.tpm.is_none() {
            (release.t, grow.t) = step(&mut self.lease.t, 0);
        }
        if l.parallel.is_none() {
            (release.p, grow.p) = step(&mut self.lease.p, 0);
        }
        PartySync {
            spent: self.frozen_spend,
            tokens: self.frozen_tokens,
            release,
            grow,
            minute,
        }
    }

    /// The store's reply to the sync (applied once per sync, however often it was sent): the
    /// spend it reported is acknowledged (the store took it off the lease), what it granted added,
    /// and the fleet's state and clock taken. A replica the store had given up for dead holds
    /// nothing of its old lease: it starts again from what is committed here.
    pub fn synced(&mut self, now_ms: u64, store_now_ms: u64, reply: &PartyReply) {
        self.lease.b = self.lease.b.saturating_sub(self.frozen_spend);
        self.unsynced_spend = self.unsynced_spend.saturating_sub(self.frozen_spend);
        self.unsynced_tokens = self.unsynced_tokens.saturating_sub(self.frozen_tokens);
        self.frozen_spend = 0;
        self.frozen_tokens = 0;
        if reply.reset {
            self.lease = Lease::default();
        }
        self.grant(reply.granted, reply.m);
        self.fleet = reply.fleet();
        self.confirmed_ms = now_ms;
        if store_now_ms > 0 {
            self.clock_offset_ms = i64::try_from(store_now_ms)
                .unwrap_or(i64::MAX)
                .saturating_sub(i64::try_from(now_ms).unwrap_or(i64::MAX));
        }
    }
}

/// What a party's ledger sends in the tick's sync (the design's `parties[]` entry, without the
/// party's id and limits, which the caller adds). The store applies it once: subtracts `spent`
/// and `release` from the replica's lease, then grants what is left of `grow`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PartySync {
    /// Micro-USD and tokens settled since the last acknowledged sync.
    pub spent: u64,
    pub tokens: u64,
    /// Lease the replica gave up (it no longer counts on it), and lease it asks for on top.
    pub release: Amounts,
    pub grow: Amounts,
    /// The minute (the store's clock, as the replica knows it) its requests and tokens are of:
    /// the store ignores a release of another minute's.
    #[serde(rename = "m")]
    pub minute: u64,
}

impl PartySync {
    /// Nothing to report, release or ask for.
    pub fn is_empty(&self) -> bool {
        self.spent == 0
            && self.tokens == 0
            && self.release == Amounts::default()
            && self.grow == Amounts::default()
    }
}

/// What `tg_admit` gave one party of a request it admitted: the budget the lease held for it
/// (`have`), what the store added to the lease (if the reply says), in the store's `minute`, and
/// the party's fleet-wide state.
#[derive(Debug, Default, Clone, Copy)]
pub struct FleetGrant {
    pub have: u64,
    pub granted: Option<Amounts>,
    pub minute: u64,
    pub fleet: Option<Fleet>,
}

/// Budget (micro-USD), requests, tokens, parallel slots.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amounts {
    #[serde(default)]
    pub b: u64,
    #[serde(default)]
    pub r: u64,
    #[serde(default)]
    pub t: u64,
    #[serde(default)]
    pub p: u64,
}

/// The store's reply for one party (`tg_sync`'s `parties[]`; `tg_admit`'s body).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct PartyReply {
    /// What the store added to the replica's lease (requests and tokens in minute `m`).
    #[serde(default)]
    pub granted: Amounts,
    #[serde(default)]
    pub m: u64,
    /// The store had reclaimed this replica's leases (it was taken for dead).
    #[serde(default)]
    pub reset: bool,
    #[serde(default)]
    pub spend: u64,
    #[serde(default)]
    pub lifetime: u64,
    #[serde(default)]
    pub window_start: u64,
    #[serde(default)]
    pub leased: u64,
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub tokens: u64,
    #[serde(default)]
    pub replicas: u64,
}

impl PartyReply {
    pub fn fleet(&self) -> Fleet {
        Fleet {
            spend: self.spend,
            lifetime: self.lifetime,
            window_start: self.window_start,
            leased: self.leased,
            minute: self.m,
            requests: self.requests,
            tokens: self.tokens,
            replicas: self.replicas.max(1),
        }
    }
}

/// The limits as the store takes them with each call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WireLimits {
    pub max_budget: Option<u64>,
    pub duration: Option<u64>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub parallel: Option<u64>,
}

impl From<&Limits> for WireLimits {
    fn from(l: &Limits) -> Self {
        WireLimits {
            max_budget: l.max_budget,
            duration: l.budget_duration,
            rpm: l.rpm,
            tpm: l.tpm,
            parallel: l.parallel,
        }
    }
}

#[cfg(test)]
mod tests;
