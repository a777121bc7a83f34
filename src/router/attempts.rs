//! One request's routing state across its attempts. Envoy retries an attempt with the same request
//! headers, so what earlier attempts learned (which deployments failed, which fallback chain is in
//! use) is kept in shared data, in a fixed ring of slots: shared data has no delete and no TTL, so
//! a key per request would grow without bound. A slot is free when released, or stale.

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError};

/// Slots in the ring; a request occupies one while it has attempts in flight.
pub const SLOTS: u64 = 4096;
/// Slots probed from a request's home slot before giving up.
const PROBES: u64 = 16;
/// A slot untouched this long belongs to a request that is long gone.
const STALE_MS: u64 = 20 * 60 * 1000;

/// Which chain of groups the request is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Track {
    /// The requested group, then `fallbacks` / `default_fallbacks`.
    Normal,
    /// `context_window_fallbacks`, after a context-length error or a failed pre-call check.
    ContextWindow,
    /// `content_policy_fallbacks`, after a content-policy refusal.
    ContentPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptState {
    pub request_id: String,
    pub updated_ms: u64,
    pub track: Track,
    /// The groups of the current track, in order; `pos` is the one being tried.
    pub chain: Vec<String>,
    pub pos: usize,
    /// Deployments tried in the current group.
    pub tried: Vec<usize>,
    /// Attempts in the current group.
    pub group_attempts: u32,
    pub retries: u32,
    pub fallbacks: u32,
    /// Retries spent per retry_policy class: rate limit, server error, timeout.
    pub class_retries: [u32; 3],
    /// The deployment of the attempt in flight.
    pub current: Option<usize>,
}

impl AttemptState {
    pub fn new(request_id: &str, chain: Vec<String>) -> Self {
        AttemptState {
            request_id: request_id.to_string(),
            updated_ms: 0,
            track: Track::Normal,
            chain,
            pos: 0,
            tried: Vec::new(),
            group_attempts: 0,
            retries: 0,
            fallbacks: 0,
            class_retries: [0; 3],
            current: None,
        }
    }

    /// A new group starts with nothing tried and, as in LiteLLM, its own retry budget.
    fn enter_group(&mut self) {
        self.tried.clear();
        self.group_attempts = 0;
        self.class_retries = [0; 3];
    }

    pub fn group(&self) -> Option<&str> {
        self.chain.get(self.pos).map(String::as_str)
    }

    /// Moves to the next group of the chain; false when there is none.
    pub fn next_group(&mut self) -> bool {
        if self.pos + 1 >= self.chain.len() {
            return false;
        }
        self.pos += 1;
        self.enter_group();
        true
    }

    /// Switches to another track (its chain starts with the first fallback).
    pub fn switch(&mut self, track: Track, chain: Vec<String>) -> bool {
        if chain.is_empty() || self.track == track {
            return false;
        }
        self.track = track;
        self.chain = chain;
        self.pos = 0;
        self.enter_group();
        true
    }
}

fn home(request_id: &str) -> u64 {
    // FNV-1a: spreads request ids (UUIDs) over the ring.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in request_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % SLOTS
}

fn slot_key(slot: u64) -> String {
    format!("tollgate.attempt.{slot}")
}

/// The request's state, if an earlier attempt saved one.
pub fn load(store: &dyn Store, request_id: &str) -> Option<AttemptState> {
    let start = home(request_id);
    (0..PROBES).find_map(|k| {
        let v = store.get(&slot_key((start + k) % SLOTS))?;
        let s: AttemptState = serde_json::from_slice(&v.value).ok()?;
        (s.request_id == request_id).then_some(s)
    })
}

/// Saves the request's state in its slot (or a free one); false when the ring has no room near
/// home, in which case later attempts start over without memory (logged by the caller).
pub fn save(store: &dyn Store, state: &mut AttemptState, now_ms: u64) -> bool {
    state.updated_ms = now_ms;
    let Ok(bytes) = serde_json::to_vec(state) else {
        return false;
    };
    let start = home(&state.request_id);
    for _ in 0..4 {
        let mut free = None;
        for k in 0..PROBES {
            let slot = (start + k) % SLOTS;
            let current = store.get(&slot_key(slot));
            let occupant = current
                .as_ref()
                .and_then(|v| serde_json::from_slice::<AttemptState>(&v.value).ok());
            match occupant {
                Some(o) if o.request_id == state.request_id => {
                    free = Some((slot, current.map(|v| v.cas)));
                    break;
                }
                Some(o) if now_ms.saturating_sub(o.updated_ms) < STALE_MS => {}
                _ => {
                    if free.is_none() {
                        free = Some((slot, current.map(|v| v.cas)));
                    }
                }
            }
        }
        let Some((slot, cas)) = free else {
            return false;
        };
        match store.set(&slot_key(slot), &bytes, cas) {
            Ok(()) => return true,
            Err(StoreError::Conflict) => continue,
            Err(StoreError::Unavailable) => return false,
        }
    }
    false
}

/// Frees the request's slot once it is over.
pub fn release(store: &dyn Store, request_id: &str) {
    let start = home(request_id);
    for k in 0..PROBES {
        let key = slot_key((start + k) % SLOTS);
        if let Some(v) = store.get(&key) {
            if serde_json::from_slice::<AttemptState>(&v.value)
                .is_ok_and(|s| s.request_id == request_id)
            {
                let _ = store.set(&key, b"", Some(v.cas));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn saves_loads_and_releases() {
        let store = MemoryStore::default();
        let mut s = AttemptState::new("req-1", vec!["smart".into(), "backup".into()]);
        s.tried.push(3);
        assert!(save(&store, &mut s, 1000));
        assert_eq!(load(&store, "req-1").unwrap().tried, vec![3]);
        assert!(load(&store, "req-2").is_none());
        release(&store, "req-1");
        assert!(load(&store, "req-1").is_none());
    }

    #[test]
    fn colliding_requests_take_neighbouring_slots_and_stale_ones_are_reused() {
        let store = MemoryStore::default();
        // Fill the home slot's whole probe window with live requests of the same home.
        let ids: Vec<String> = (0..100_000)
            .map(|n| format!("r{n}"))
            .filter(|id| home(id) == home("r0"))
            .take(PROBES as usize + 1)
            .collect();
        for id in ids.iter().take(PROBES as usize) {
            assert!(save(&store, &mut AttemptState::new(id, vec![]), 1000));
        }
        let last = ids.last().unwrap();
        assert!(
            !save(&store, &mut AttemptState::new(last, vec![]), 2000),
            "no room while all are live"
        );
        assert!(
            save(
                &store,
                &mut AttemptState::new(last, vec![]),
                1000 + STALE_MS + 1
            ),
            "stale slots are reused"
        );
        for id in ids.iter().take(PROBES as usize) {
            release(&store, id);
        }
    }

    #[test]
    fn chains_and_tracks() {
        let mut s = AttemptState::new("r", vec!["a".into(), "b".into()]);
        s.tried.push(1);
        assert!(s.next_group());
        assert_eq!((s.group(), s.tried.len()), (Some("b"), 0));
        assert!(!s.next_group());
        assert!(s.switch(Track::ContextWindow, vec!["long".into()]));
        assert_eq!(s.group(), Some("long"));
        assert!(!s.switch(Track::ContextWindow, vec!["other".into()]));
    }
}
