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

pub const PARTIES: &str = "tollgate.fleet.parties";
pub const SYNC: &str = "tollgate.fleet.sync";
const LEDGER_PREFIX: &str = "tollgate.fleet.ledger.";

/// The most parties one replica tracks; beyond it, a party is admitted by the store request by
/// request (`tg_admit`) rather than leased.
pub const MAX_PARTIES: usize = 10_000;

/// The store key of a party's ledger.
pub fn ledger_key(party: &str) -> String {
    format!("{LEDGER_PREFIX}{party}")
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

/// Makes sure the next sync covers `party` (with its current limits). One read when it already
/// does, which is every request but a party's first on this replica (or after a limit changed).
pub fn track(store: &dyn Store, party: &str, limits: &Limits) -> bool {
    let wanted = StoredLimits::from(limits);
    if let Some(v) = store.get(PARTIES) {
        if read_parties(&v.value)
            .iter()
            .any(|p| p.id == party && p.limits == wanted)
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
    ttl_ms: u64,
    parties: Vec<PartyOut<'a>>,
}

/// The sync record: the last sequence number used, and the sync on its way.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRecord {
    pub seq: u64,
    /// The payload of sync `seq`, until its reply arrives.
    #[serde(default)]
    pub pending: Option<String>,
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
pub fn next_sync(store: &dyn Store, ttl_ms: u64, now_ms: u64) -> Option<(u64, String)> {
    let current = store.get(SYNC);
    let record: SyncRecord = current
        .as_ref()
        .and_then(|v| serde_json::from_slice(&v.value).ok())
        .unwrap_or_default();
    if let Some(pending) = record.pending.filter(|p| !p.is_empty()) {
        return Some((record.seq, pending));
    }
    // Claim the next sequence number before touching a ledger: releases are applied to the
    // ledgers as the payload is built, and must reach the store.
    let seq = record.seq.saturating_add(1);
    let claim = SyncRecord {
        seq,
        pending: Some(String::new()),
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
        let _ = update::<_, ()>(store, PARTIES, |bytes| {
            let mut parties = read_parties(bytes);
            parties.retain(|p| !idle.contains(&p.id));
            Ok((serde_json::to_vec(&parties).unwrap_or_default(), ()))
        });
    }
    let payload = serde_json::to_string(&Payload {
        ttl_ms,
        parties: out,
    })
    .ok()?;
    let next = SyncRecord {
        seq,
        pending: Some(payload.clone()),
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

use crate::quota::fleet::{Fleet, Kind, Shortfall};
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
) -> Result<Admitted, Refusal> {
    let mut local = Vec::with_capacity(parties.len());
    let mut ask = Vec::new();
    for (i, p) in parties.iter().enumerate() {
        track(store, party_id(p.key), p.limits);
        let step = ledger_update(store, p, |g| g.admit(p.limits, p.scope, now_ms, est));
        match step {
            Some(Ok(snap)) => local.push(Some(snap)),
            Some(Err(Shortfall::AskFleet)) => {
                local.push(None);
                ask.push(i);
            }
            other => {
                unadmit(store, parties, &local, est);
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
        Ok(Admitted::Ask { local, ask })
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
    minute: u64,
    fleet: Option<Fleet>,
) -> Option<Snapshot> {
    ledger_update(store, party, |g| {
        g.admitted_by_fleet(party.limits, now_ms, est, minute, fleet)
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
    parties
        .iter()
        .map(|(p, minute)| {
            ledger_update(store, p, |g| {
                g.settle(*minute, est, cost, tokens);
                *g
            })
        })
        .collect()
}
