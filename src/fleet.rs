//! The replica's side of the fleet's shared state: what it keeps in its own shared store so that
//! every worker sees it, and the one sync per tick that carries it to the store (Redis, through
//! `store/tollgate.lua`'s `tg_sync`) and brings back what the store granted.
//!
//! Records, in the shared store of the replica:
//! - `tollgate.fleet.parties`: the parties (keys, teams) this replica has admitted requests for,
//!   with their limits (JSON; bounded): what the next sync covers.
//! - `tollgate.fleet.ledger.<party>`: each party's [`Ledger`].
//! - `tollgate.fleet.sync`: the sequence number, and the sync on its way (its payload, sent again
//!   unchanged until its reply arrives: the store applies each sequence number once).
//!
//! Pure: the host makes the call on its tick ([`next_sync`]) and hands back the reply
//! ([`synced`]).

use serde::{Deserialize, Serialize};

use crate::quota::fleet::{Ledger, PartyReply, PartySync, WireLimits};
use crate::quota::Limits;
use crate::store::{update, Store};

/// The parties the next sync reports. A party leaves it when a sync finds it idle, and marks its
/// ledger `untracked` first, so that a worker's memory of what it saw tracked stays true without
/// reading the list: the ledger each request reads anyway says when it no longer is.
pub const PARTIES: &str = "tollgate.fleet.parties";
pub const SYNC: &str = "tollgate.fleet.sync";
/// The payload of the sync on its way, as sent (kept apart from [`SYNC`]: written once, never
/// escaped into another JSON document; it holds the spend records and may be large).
const PAYLOAD: &str = "tollgate.fleet.sync.payload";
const LEDGER_PREFIX: &str = "tollgate.fleet.ledger.";

/// The most parties one replica tracks; beyond it, a party is admitted by the store request by
/// request (`tg_admit`) rather than leased.
pub const MAX_PARTIES: usize = 10_000;

/// The store key of a party's ledger.
pub fn ledger_key(party: &str) -> String {
    [LEDGER_PREFIX, party].concat()
}

/// The fleet's id of a party: its local usage record's name without the common prefix
/// (`key.<token>[.<generation>]`, `team.<id>`).
pub fn party_id(record: &str) -> &str {
    record.strip_prefix("tollgate.usage.").unwrap_or(record)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyEntry {
    pub id: String,
    pub limits: StoredLimits,
}

/// [`Limits`] as the parties record keeps them.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLimits {
    #[serde(default)]
    pub max_budget: Option<u64>,
    #[serde(default)]
    pub duration: Option<u64>,
    #[serde(default)]
    pub soft_budget: Option<u64>,
    #[serde(default)]
    pub rpm: Option<u64>,
    #[serde(default)]
    pub tpm: Option<u64>,
    #[serde(default)]
    pub parallel: Option<u64>,
}

impl From<&Limits> for StoredLimits {
    fn from(l: &Limits) -> Self {
        StoredLimits {
            max_budget: l.max_budget,
            duration: l.budget_duration,
            soft_budget: l.soft_budget,
            rpm: l.rpm,
            tpm: l.tpm,
            parallel: l.parallel,
        }
    }
}

impl From<&StoredLimits> for Limits {
    fn from(l: &StoredLimits) -> Self {
        Limits {
            max_budget: l.max_budget,
            budget_duration: l.duration,
            soft_budget: l.soft_budget,
            rpm: l.rpm,
            tpm: l.tpm,
            parallel: l.parallel,
        }
    }
}

fn read_parties(bytes: &[u8]) -> Vec<PartyEntry> {
    serde_json::from_slice(bytes).unwrap_or_default()
}

thread_local! {
    /// Parties this worker saw in [`PARTIES`] (with these limits): the list is read (and parsed)
    /// only when a party or its limits are new to the worker, or its ledger says a sync dropped it.
    static TRACKED: std::cell::RefCell<(u64, std::collections::HashMap<String, StoredLimits>)> =
        std::cell::RefCell::new((0, std::collections::HashMap::new()));
}

/// Makes sure the next sync covers `party` (with its current limits). Nothing read when this
/// worker already saw it covered: every request but a party's first on this worker (or after a
/// limit changed), unless `dropped` (its ledger's `untracked` mark, which the caller took).
pub fn track(store: &dyn Store, party: &str, limits: &Limits, dropped: bool) -> bool {
    let wanted = StoredLimits::from(limits);
    let store_id = store.identity();
    let seen = !dropped
        && TRACKED.with(|t| {
            let t = t.borrow();
            t.0 == store_id && t.1.get(party) == Some(&wanted)
        });
    if seen {
        return true;
    }
    let tracked = track_in_list(store, party, &wanted, dropped);
    if tracked {
        TRACKED.with(|t| {
            let mut t = t.borrow_mut();
            if t.0 != store_id || t.1.len() >= MAX_PARTIES {
                *t = (store_id, std::collections::HashMap::new());
            }
            t.1.insert(party.to_string(), wanted);
        });
    }
    tracked
}

/// Whether `party`'s ledger still carries the mark of a sync that found it idle.
fn still_untracked(store: &dyn Store, party: &str) -> bool {
    store
        .get(&ledger_key(party))
        .is_none_or(|v| Ledger::decode(&v.value).untracked)
}

/// Puts `party` in the list. `rewrite`: written even when it is there, so that a sync dropping
/// it meanwhile (it read the list, and the party's mark, before the caller took the mark) finds
/// its write conflicting, and reads both again.
fn track_in_list(store: &dyn Store, party: &str, wanted: &StoredLimits, rewrite: bool) -> bool {
    if let Some(v) = store.get(PARTIES).filter(|_| !rewrite) {
        if read_parties(&v.value)
            .iter()
            .any(|p| p.id == party && p.limits == *wanted)
        {
            return true;
        }
    }
    update::<_, ()>(store, PARTIES, |bytes| {
        let mut parties = read_parties(bytes);
        let full = parties.len() >= MAX_PARTIES;
        match parties.iter_mut().find(|p| p.id == party) {
            Some(p) => p.limits = wanted.clone(),
            None if full => return Err(()),
            None => parties.push(PartyEntry {
                id: party.to_string(),
                limits: wanted.clone(),
            }),
        }
        Ok((serde_json::to_vec(&parties).unwrap_or_default(), ()))
    })
    .is_ok()
}

/// A party's entry in a sync: its id and limits, and its ledger's part.
#[derive(Debug, Serialize)]
struct PartyOut<'a> {
    id: &'a str,
    limits: WireLimits,
    #[serde(flatten)]
    sync: PartySync,
}

#[derive(Debug, Serialize)]
struct Payload<'a> {
    /// The library version this filter speaks to: another one refuses the sync (the filter then
    /// loads its own and sends it again).
    library: &'static str,
    ttl_ms: u64,
    parties: Vec<PartyOut<'a>>,
    /// The key change log's cursor (none before the first answer: the store answers with the
    /// latest one).
    #[serde(skip_serializing_if = "Option::is_none")]
    changes_after: Option<String>,
    /// Cooldowns this replica started since its last sync (the fleet's clock).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cooldowns: Vec<crate::router::health::FleetCooldown>,
    /// Responses API responses relayed here since the last sync, and which deployment holds each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    responses: Vec<crate::router::sticky::Held>,
    /// The fleet's responses stream's cursor (none before the first answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    responses_after: Option<String>,
    /// How many spend records Redis keeps (the records since the last sync follow the payload,
    /// one per line: see `spend_log::Taken::append_to`).
    spend_log_keep: u64,
}

/// The sync record: the last sequence number used, and the sync on its way.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRecord {
    pub seq: u64,
    /// Sync `seq` is on its way (its payload in [`PAYLOAD`]) until its reply arrives: `Some(false)`
    /// while the payload is being built, `Some(true)` once it is written.
    #[serde(default)]
    pub pending: Option<bool>,
}

fn read_sync(store: &dyn Store) -> SyncRecord {
    store
        .get(SYNC)
        .and_then(|v| serde_json::from_slice(&v.value).ok())
        .unwrap_or_default()
}

/// The tick's call: `(seq, payload)` for `tg_sync`. A sync whose reply never came is sent again
/// unchanged (the store applies a sequence number once); otherwise every tracked party's ledger
/// freezes what it settled, releases what it does not need and asks for what it will, and the
/// parties that have nothing left to say are forgotten.
pub fn next_sync(
    store: &dyn Store,
    ttl_ms: u64,
    now_ms: u64,
    spend_log_keep: u64,
) -> Option<(u64, String)> {
    let current = store.get(SYNC);
    let record: SyncRecord = current
        .as_ref()
        .and_then(|v| serde_json::from_slice(&v.value).ok())
        .unwrap_or_default();
    if record.pending == Some(true) {
        let payload = store
            .get(PAYLOAD)
            .and_then(|v| String::from_utf8(v.value).ok())?;
        return Some((record.seq, payload));
    }
    // Claim the next sequence number before touching a ledger: releases are applied to the
    // ledgers as the payload is built, and must reach the store.
    let seq = record.seq.saturating_add(1);
    let claim = SyncRecord {
        seq,
        pending: Some(false),
    };
    store
        .set(
            SYNC,
            &serde_json::to_vec(&claim).ok()?,
            current.map(|v| v.cas),
        )
        .ok()?;
    let parties = store
        .get(PARTIES)
        .map(|v| read_parties(&v.value))
        .unwrap_or_default();
    let mut out = Vec::with_capacity(parties.len());
    let mut idle = Vec::new();
    for p in &parties {
        let limits = Limits::from(&p.limits);
        let sync = update::<_, ()>(store, &ledger_key(&p.id), |bytes| {
            let mut ledger = Ledger::decode(bytes);
            let active = ledger.active();
            let s = ledger.sync(&limits, now_ms);
            // Idle: marked in the same write, so that a request that touches the ledger after
            // it tracks the party again.
            ledger.untracked = !active && s.is_empty();
            Ok((ledger.encode(), (s, active)))
        });
        match sync {
            Ok((s, true)) => out.push(PartyOut {
                id: &p.id,
                limits: WireLimits::from(&limits),
                sync: s,
            }),
            Ok((s, false)) if !s.is_empty() => out.push(PartyOut {
                id: &p.id,
                limits: WireLimits::from(&limits),
                sync: s,
            }),
            _ => idle.push(p.id.clone()),
        }
    }
    if !idle.is_empty() {
        // Only parties still marked: one a request touched since took the mark, and either
        // found itself in the list (and stays) or adds itself back after this write (a write
        // between this read and this write makes it conflict, and the list is read again).
        let _ = update::<_, ()>(store, PARTIES, |bytes| {
            let mut parties = read_parties(bytes);
            parties.retain(|p| !(idle.contains(&p.id) && still_untracked(store, &p.id)));
            Ok((serde_json::to_vec(&parties).unwrap_or_default(), ()))
        });
    }
    let taken = crate::spend_log::take(store, crate::spend_log::PER_SYNC);
    let mut payload = serde_json::to_string(&Payload {
        library: library_version(),
        ttl_ms,
        parties: out,
        changes_after: crate::keys::fleet::cursor(store),
        cooldowns: crate::router::health::take_shared(store),
        responses: crate::router::sticky::take_shared(store),
        responses_after: crate::router::sticky::cursor(store),
        spend_log_keep,
    })
    .ok()?;
    taken.append_to(&mut payload);
    store.set(PAYLOAD, payload.as_bytes(), None).ok()?;
    let next = SyncRecord {
        seq,
        pending: Some(true),
    };
    store
        .set(
            SYNC,
            &serde_json::to_vec(&next).ok()?,
            store.get(SYNC).map(|v| v.cas),
        )
        .ok()?;
    Some((seq, payload))
}

/// `tg_sync`'s reply, as far as the parties go.
#[derive(Debug, Default, Deserialize)]
pub struct Reply {
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub now_ms: u64,
    #[serde(default)]
    pub parties: Vec<PartyReplyEntry>,
    /// Key changes after the cursor sent, the cursor after them, and whether some were lost.
    #[serde(default)]
    pub changes: Vec<crate::keys::fleet::Change>,
    #[serde(default)]
    pub changes_cursor: Option<String>,
    #[serde(default)]
    pub changes_lost: bool,
    /// The fleet's cooldowns now.
    #[serde(default)]
    pub cooldowns: Vec<crate::router::health::FleetCooldown>,
    /// Responses other replicas relayed since the cursor sent, and the cursor after them.
    #[serde(default)]
    pub responses: Vec<crate::router::sticky::Held>,
    #[serde(default)]
    pub responses_cursor: Option<String>,
    /// Spend records the store could not read (not `<key> <JSON object>` lines): skipped.
    #[serde(default)]
    pub spend_logs_refused: u64,
}

#[derive(Debug, Default, Deserialize)]
pub struct PartyReplyEntry {
    pub id: String,
    #[serde(flatten)]
    pub reply: PartyReply,
}

/// Applies the reply to sync `seq`: each party's ledger takes what the store granted and its
/// state, and the sync is no longer pending. A reply to another sequence number changes nothing.
pub fn synced(store: &dyn Store, seq: u64, reply: &Reply, now_ms: u64) -> bool {
    let record = read_sync(store);
    if record.seq != seq || record.pending.is_none() || (reply.seq != 0 && reply.seq != seq) {
        return false;
    }
    for p in &reply.parties {
        let _ = update::<_, ()>(store, &ledger_key(&p.id), |bytes| {
            let mut ledger = Ledger::decode(bytes);
            ledger.synced(now_ms, reply.now_ms, &p.reply);
            Ok((ledger.encode(), ()))
        });
    }
    let done = SyncRecord { seq, pending: None };
    match serde_json::to_vec(&done) {
        Ok(bytes) => store
            .set(SYNC, &bytes, store.get(SYNC).map(|v| v.cas))
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests;

// ------------------------------------------------------------------------------------------------
// Admission and settlement against the ledgers (the request path in fleet mode).

use crate::quota::fleet::{Amounts, Fleet, FleetGrant, Kind, Shortfall};
use crate::quota::{Estimate, Party, Refusal, Snapshot};

/// What the ledgers say about a request, party by party (the key's, then its team's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    /// Every party's lease held it: committed in each ledger.
    Local(Vec<Snapshot>),
    /// Some parties' leases could not hold it: the store must admit it there (`tg_admit`), by
    /// index into the parties given. The others are committed meanwhile (undone if the store
    /// refuses).
    Ask {
        local: Vec<Option<Snapshot>>,
        ask: Vec<usize>,
        /// Per party asked, the budget its lease holds for the request and the lease it asks
        /// for on top (`Shortfall::AskFleet`).
        have: Vec<u64>,
        extra: Vec<Amounts>,
    },
}

fn ledger_update<T>(
    store: &dyn Store,
    party: &Party,
    f: impl FnMut(&mut Ledger) -> T,
) -> Option<T> {
    let mut f = f;
    update::<_, ()>(store, &ledger_key(party_id(party.key)), |bytes| {
        let mut g = Ledger::decode(bytes);
        let out = f(&mut g);
        Ok((g.encode(), out))
    })
    .ok()
}

/// Admits a request in each party's ledger. A party whose fleet-wide limit is reached refuses it
/// (and what the others committed is undone); `Err(Refusal::Store)` when the shared store
/// could not be updated.
pub fn admit(
    store: &dyn Store,
    parties: &[&Party],
    now_ms: u64,
    est: Estimate,
    lease_max_age_ms: u64,
) -> Result<Admitted, Refusal> {
    let mut local = Vec::with_capacity(parties.len());
    let mut ask = Vec::new();
    let mut have = Vec::new();
    let mut extra = Vec::new();
    for (i, p) in parties.iter().enumerate() {
        let step = ledger_update(store, p, |g| {
            let dropped = std::mem::take(&mut g.untracked);
            (
                dropped,
                g.admit(p.limits, p.scope, now_ms, est, lease_max_age_ms),
            )
        })
        .map(|(dropped, step)| {
            track(store, party_id(p.key), p.limits, dropped);
            step
        });
        match step {
            Some(Ok(snap)) => local.push(Some(snap)),
            Some(Err(Shortfall::AskFleet { have: h, extra: x })) => {
                local.push(None);
                ask.push(i);
                have.push(h);
                extra.push(x);
            }
            other => {
                unadmit(store, parties, &local, est);
                unhold(store, parties, &ask, &have);
                return Err(match other {
                    Some(Err(Shortfall::Refused(r))) => r,
                    _ => Refusal::Store,
                });
            }
        }
    }
    if ask.is_empty() {
        Ok(Admitted::Local(local.into_iter().flatten().collect()))
    } else {
        Ok(Admitted::Ask {
            local,
            ask,
            have,
            extra,
        })
    }
}

/// What this replica knows is left of a party's budget `max` fleet-wide ([`Ledger::budget_left`]).
pub fn budget_left(store: &dyn Store, party: &Party, max: u64) -> u64 {
    let ledger = store
        .get(&ledger_key(party_id(party.key)))
        .map(|v| Ledger::decode(&v.value))
        .unwrap_or_default();
    ledger.budget_left(max)
}

/// Gives back the budget the asked parties' leases held for a request the store did not admit.
pub fn unhold(store: &dyn Store, parties: &[&Party], ask: &[usize], have: &[u64]) {
    for (&i, &h) in ask.iter().zip(have) {
        if let (Some(p), true) = (parties.get(i), h > 0) {
            let _ = ledger_update(store, p, |g| g.unhold(h));
        }
    }
}

/// Undoes what `admit` committed for parties whose snapshot is given (the request never ran).
pub fn unadmit(store: &dyn Store, parties: &[&Party], snaps: &[Option<Snapshot>], est: Estimate) {
    for (p, snap) in parties.iter().zip(snaps) {
        if let Some(s) = snap {
            let _ = ledger_update(store, p, |g| g.unadmit(s.minute, est));
        }
    }
}

/// The store admitted the request for this party (`tg_admit`): committed in its ledger.
pub fn admitted_by_fleet(
    store: &dyn Store,
    party: &Party,
    now_ms: u64,
    est: Estimate,
    grant: FleetGrant,
    lease_max_age_ms: u64,
) -> Option<Snapshot> {
    ledger_update(store, party, |g| {
        g.admitted_by_fleet(party.limits, now_ms, est, grant, lease_max_age_ms)
    })
}

/// The store refused the request for this party: remembered briefly.
pub fn refused_by_fleet(
    store: &dyn Store,
    party: &Party,
    now_ms: u64,
    kind: Kind,
    fleet: Option<Fleet>,
) {
    let _ = ledger_update(store, party, |g| g.refused_by_fleet(now_ms, kind, fleet));
}

/// A request is over: each party's reservation replaced by what it cost.
pub fn settle(
    store: &dyn Store,
    parties: &[(&Party, u64)],
    est: Estimate,
    cost: u64,
    tokens: u64,
) -> Vec<Option<Ledger>> {
    if parties.is_empty() {
        return Vec::new();
    }
    parties
        .iter()
        .map(|(p, minute)| {
            let ledger = ledger_update(store, p, |g| {
                let dropped = std::mem::take(&mut g.untracked);
                g.settle(*minute, est, cost, tokens);
                (dropped, *g)
            });
            // A sync that found the party idle between its admission and now has dropped it:
            // what this settles must still reach the store. Else the admission tracked it and it
            // still is (a drop would have left the mark).
            ledger.map(|(dropped, g)| {
                if dropped {
                    track(store, party_id(p.key), p.limits, true);
                }
                g
            })
        })
        .collect()
}

// ------------------------------------------------------------------------------------------------
// The tick: `tg_sync` through the host's periodic job.

use crate::store::remote::{self as remote_store, CallError, Exchange, Request};
use crate::store::tick::{TickCtx, Ticker};

/// The Redis Functions library this filter speaks to (loaded by the filter when Redis lacks it,
/// or holds another version).
pub const LIBRARY: &str = include_str!("store/tollgate.lua");

/// The library's version, from its `local VERSION = '...'` line: sent with each sync, so that a
/// library of another version refuses it and the filter loads its own.
pub fn library_version() -> &'static str {
    LIBRARY
        .lines()
        .find_map(|l| l.trim().strip_prefix("local VERSION = '"))
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or("0")
}

/// The replica's sync with the store, once per tick: the ledgers' reports and wants out, grants
/// and the fleet's state back (see [`next_sync`], [`synced`]).
#[derive(Debug, Clone)]
pub struct FleetSync {
    /// `replica_ttl_ms`: how long the store counts this replica alive after a sync.
    pub ttl_ms: u64,
    /// `sync_timeout_ms`.
    pub timeout_ms: u64,
    /// `spend_log_keep`.
    pub spend_log_keep: u64,
}

impl FleetSync {
    fn exchange(&self, ctx: &TickCtx) -> Option<Exchange> {
        let (seq, payload) = next_sync(ctx.store, self.ttl_ms, ctx.now_ms, self.spend_log_keep)?;
        let seq = seq.to_string();
        // The payload (and the spend records after it) is the PUT's body, sent as it is.
        let call = remote_store::fcall_tail(
            "tg_sync",
            &[],
            &[ctx.replica.as_bytes(), seq.as_bytes()],
            payload.as_bytes(),
            self.timeout_ms,
        )
        .ok()?;
        Some(Exchange::new(call).with_library(LIBRARY, self.timeout_ms))
    }
}

impl Ticker for FleetSync {
    fn tick(&self, ctx: &TickCtx) -> Option<Exchange> {
        self.exchange(ctx)
    }

    fn done(&self, ctx: &TickCtx, _call: &Request, result: &Result<serde_json::Value, CallError>) {
        let Ok(serde_json::Value::String(text)) = result else {
            // No answer: the same sync goes again on the next tick.
            return;
        };
        let mut reply: Reply = match serde_json::from_str(text) {
            Ok(r) => r,
            Err(_) => {
                log::warn!(
                    "tollgate: the store's tg_sync answer is not a sync reply; sending it again"
                );
                return;
            }
        };
        let seq = read_sync(ctx.store).seq;
        if reply.seq != seq {
            log::warn!(
                "tollgate: the store answered sync {} while {seq} is pending; sending it again",
                reply.seq
            );
            return;
        }
        if synced(ctx.store, seq, &reply, ctx.now_ms) {
            if reply.spend_logs_refused > 0 {
                log::warn!(
                    "tollgate: the store refused {} spend records of sync {seq} (not one record per line)",
                    reply.spend_logs_refused
                );
            }
            crate::keys::fleet::apply_changes(
                ctx.store,
                &reply.changes,
                reply.changes_cursor.as_deref(),
                reply.changes_lost,
            );
            for d in crate::router::health::apply_fleet(
                ctx.store,
                &reply.cooldowns,
                reply.now_ms,
                ctx.now_ms,
            ) {
                log::warn!("tollgate: deployment '{d}' cools down: another replica cooled it down");
            }
            crate::router::sticky::apply_fleet(
                ctx.store,
                std::mem::take(&mut reply.responses),
                reply.responses_cursor.as_deref(),
            );
        }
    }

    /// A flush: the pending sync again if one is unacknowledged, else the next.
    fn last(&self, ctx: &TickCtx) -> Option<Exchange> {
        self.exchange(ctx)
    }
}

/// The store could not be asked (`failure_mode: local`): admitted against what this replica
/// knows, without a lease ([`Ledger::admit_unleased`]).
pub fn admit_unleased(
    store: &dyn Store,
    party: &Party,
    now_ms: u64,
    est: Estimate,
) -> Result<Snapshot, Refusal> {
    ledger_update(store, party, |g| {
        g.admit_unleased(party.limits, party.scope, now_ms, est)
    })
    .unwrap_or(Err(Refusal::Store))
}

/// `tg_admit`'s reply.
#[derive(Debug, Default, Deserialize)]
pub struct AdmitReply {
    #[serde(default)]
    pub ok: bool,
    #[serde(default)]
    pub m: u64,
    #[serde(default)]
    pub parties: Vec<PartyReplyEntry>,
    /// The index (in the parties asked) of the one that refused, and why.
    #[serde(default)]
    pub party: usize,
    #[serde(default)]
    pub refusal: Option<AdmitRefusal>,
}

#[derive(Debug, Default, Deserialize)]
pub struct AdmitRefusal {
    #[serde(default)]
    pub kind: Option<Kind>,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub used: Option<u64>,
    #[serde(default)]
    pub reset_s: Option<u64>,
}

impl AdmitRefusal {
    /// The refusal a client sees, for this party.
    pub fn refusal(&self, party: &Party, est: Estimate, fleet: &Fleet) -> Refusal {
        let scope = party.scope;
        let reset_secs = self.reset_s.unwrap_or(60);
        match self.kind {
            Some(Kind::Requests) => Refusal::Requests {
                scope,
                limit: self.limit.or(party.limits.rpm).unwrap_or(0),
                reset_secs,
            },
            Some(Kind::Tokens) => Refusal::Tokens {
                scope,
                limit: self.limit.or(party.limits.tpm).unwrap_or(0),
                used: self.used.unwrap_or(fleet.tokens),
                needed: est.tokens,
                reset_secs,
            },
            Some(Kind::Parallel) => Refusal::Parallel {
                scope,
                limit: self.limit.or(party.limits.parallel).unwrap_or(0),
            },
            _ => Refusal::Budget {
                scope,
                spend: fleet.spend,
                reserved: fleet.leased,
                max: self.limit.or(party.limits.max_budget).unwrap_or(0),
                needed: est.cost,
                reset_at: party
                    .limits
                    .budget_duration
                    .map(|d| fleet.window_start.saturating_add(d)),
            },
        }
    }
}

/// What `tg_admit` is asked for one party: the budget its lease holds for the request, and the
/// lease it would like on top.
#[derive(Debug, Clone, Copy, Default)]
pub struct AskFor {
    pub have: u64,
    pub extra: Amounts,
}

/// `tg_admit`'s call for these parties of a request.
pub fn admit_call(
    replica: &str,
    parties: &[(&Party, AskFor)],
    est: Estimate,
    timeout_ms: u64,
) -> Option<Exchange> {
    #[derive(Serialize)]
    struct Asked<'a> {
        id: &'a str,
        limits: WireLimits,
        #[serde(skip_serializing_if = "is_zero")]
        have: u64,
        #[serde(skip_serializing_if = "no_amounts")]
        extra: Amounts,
    }
    fn is_zero(n: &u64) -> bool {
        *n == 0
    }
    fn no_amounts(a: &Amounts) -> bool {
        *a == Amounts::default()
    }
    let asked: Vec<Asked> = parties
        .iter()
        .map(|(p, f)| Asked {
            id: party_id(p.key),
            limits: WireLimits::from(p.limits),
            have: f.have,
            extra: Amounts { p: 0, ..f.extra },
        })
        .collect();
    let parties = serde_json::to_string(&asked).ok()?;
    let estimate = format!(r#"{{"b":{},"t":{}}}"#, est.cost, est.tokens);
    let call = remote_store::fcall(
        "tg_admit",
        &[],
        &[replica.as_bytes(), parties.as_bytes(), estimate.as_bytes()],
        timeout_ms,
    )
    .ok()?;
    Some(Exchange::new(call).with_library(LIBRARY, timeout_ms))
}
