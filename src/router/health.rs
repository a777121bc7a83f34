//! What every worker knows about a deployment: requests in flight, recent latency, tokens this
//! minute, failures this minute and cooldown. One shared record per deployment, updated with the
//! same bounded compare-and-swap loops as the quota counters.

use crate::config::router::RouterSettings;
use crate::store::{update, Store};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Unix milliseconds until which the deployment is skipped; 0 when healthy.
    pub cooldown_until_ms: u64,
    /// The minute (Unix seconds / 60) `fails` counts in.
    pub fail_minute: u64,
    pub fails: u64,
    pub in_flight: u64,
    /// Moving averages in milliseconds; 0 until measured.
    pub latency_ms: u64,
    pub ttft_ms: u64,
    /// The minute `tokens` counts in.
    pub token_minute: u64,
    pub tokens: u64,
}

const FIELDS: usize = 8;
const VERSION: u8 = 1;

impl Health {
    pub fn encode(&self) -> Vec<u8> {
        crate::store::encode_u64s(
            VERSION,
            &[
                self.cooldown_until_ms,
                self.fail_minute,
                self.fails,
                self.in_flight,
                self.latency_ms,
                self.ttft_ms,
                self.token_minute,
                self.tokens,
            ],
        )
    }

    pub fn decode(bytes: &[u8]) -> Health {
        let v = crate::store::decode_u64s::<FIELDS>(VERSION, bytes);
        let [cooldown_until_ms, fail_minute, fails, in_flight, latency_ms, ttft_ms, token_minute, tokens] =
            v;
        Health {
            cooldown_until_ms,
            fail_minute,
            fails,
            in_flight,
            latency_ms,
            ttft_ms,
            token_minute,
            tokens,
        }
    }

    pub fn cooling(&self, now_ms: u64) -> bool {
        self.cooldown_until_ms > now_ms
    }

    /// Tokens used in the current minute (0 once the minute has passed).
    pub fn tokens_this_minute(&self, now_ms: u64) -> u64 {
        if self.token_minute == now_ms / 60_000 {
            self.tokens
        } else {
            0
        }
    }
}

/// How an attempt ended, for the deployment's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success {
        latency_ms: u64,
        ttft_ms: Option<u64>,
        tokens: u64,
    },
    /// Counts towards `allowed_fails`; `cool_now` starts a cooldown at once (401, 404, a 429
    /// when the group has other deployments).
    Failure { cool_now: bool },
    /// Ended without telling anything about the deployment (the client went away).
    Neutral,
}

pub fn store_key(deployment_id: &str) -> String {
    format!("tollgate.deployment.{deployment_id}")
}

/// Weight of a new latency sample in the moving average.
const EWMA_NEW: u64 = 3;
const EWMA_OLD: u64 = 7;

fn average(old: u64, sample: u64) -> u64 {
    if old == 0 {
        sample.max(1)
    } else {
        ((old.saturating_mul(EWMA_OLD)).saturating_add(sample.saturating_mul(EWMA_NEW))
            / (EWMA_OLD + EWMA_NEW))
            .max(1)
    }
}

/// Applies an attempt's end; returns true when it started a cooldown.
pub fn apply(h: &mut Health, outcome: Outcome, settings: &RouterSettings, now_ms: u64) -> bool {
    h.in_flight = h.in_flight.saturating_sub(1);
    match outcome {
        Outcome::Success {
            latency_ms,
            ttft_ms,
            tokens,
        } => {
            h.latency_ms = average(h.latency_ms, latency_ms);
            if let Some(t) = ttft_ms {
                h.ttft_ms = average(h.ttft_ms, t);
            }
            let minute = now_ms / 60_000;
            if h.token_minute != minute {
                h.token_minute = minute;
                h.tokens = 0;
            }
            h.tokens = h.tokens.saturating_add(tokens);
            false
        }
        Outcome::Failure { cool_now } => {
            let minute = now_ms / 60_000;
            if h.fail_minute != minute {
                h.fail_minute = minute;
                h.fails = 0;
            }
            h.fails = h.fails.saturating_add(1);
            if !settings.cooldowns || h.cooling(now_ms) {
                return false;
            }
            if cool_now || h.fails >= u64::from(settings.allowed_fails.max(1)) {
                h.cooldown_until_ms =
                    now_ms.saturating_add(settings.cooldown_secs.saturating_mul(1000));
                h.fails = 0;
                return true;
            }
            false
        }
        Outcome::Neutral => false,
    }
}

pub fn read(store: &dyn Store, deployment_id: &str) -> Health {
    store
        .get(&store_key(deployment_id))
        .map(|v| Health::decode(&v.value))
        .unwrap_or_default()
}

/// An attempt starts on the deployment (least-busy counts it).
pub fn start(store: &dyn Store, deployment_id: &str) {
    let _ = update::<(), ()>(store, &store_key(deployment_id), |bytes| {
        let mut h = Health::decode(bytes);
        h.in_flight = h.in_flight.saturating_add(1);
        Ok((h.encode(), ()))
    });
}

/// An attempt ended; returns true when the deployment just started cooling down.
pub fn finish(
    store: &dyn Store,
    deployment_id: &str,
    outcome: Outcome,
    settings: &RouterSettings,
    now_ms: u64,
) -> bool {
    let cooled = update::<(bool, u64), ()>(store, &store_key(deployment_id), |bytes| {
        let mut h = Health::decode(bytes);
        let cooled = apply(&mut h, outcome, settings, now_ms);
        Ok((h.encode(), (cooled, h.cooldown_until_ms)))
    });
    match cooled {
        Ok((true, until_ms)) => {
            share(store, deployment_id, until_ms);
            true
        }
        _ => false,
    }
}

// ------------------------------------------------------------------------------------------------
// Cooldowns across replicas (a shared store configured): each cooldown a replica starts is sent
// with its next `tg_sync`, and every sync brings back the fleet's cooldowns, which the replica's
// records take on. The fleet's clock is Redis's: a replica converts with the offset it saw in
// its last sync's answer.

/// Cooldowns started here that the next sync carries: JSON `[[deployment, until_ms], ...]`
/// (this replica's clock), one per deployment.
const SHARE: &str = "tollgate.router.cooldowns";
/// The fleet clock's offset from this replica's, in ms (signed, as text), from the last sync.
const CLOCK_OFFSET: &str = "tollgate.router.clock_offset";
/// Bounded by the deployments of the config; this is a guard against a config that has more.
const SHARE_MAX: usize = 1024;

fn share(store: &dyn Store, deployment_id: &str, until_ms: u64) {
    let _ = update::<(), ()>(store, SHARE, |bytes| {
        let mut list: Vec<(String, u64)> = serde_json::from_slice(bytes).unwrap_or_default();
        let full = list.len() >= SHARE_MAX;
        match list.iter_mut().find(|(d, _)| d == deployment_id) {
            Some(entry) => entry.1 = entry.1.max(until_ms),
            None if full => return Err(()),
            None => list.push((deployment_id.to_string(), until_ms)),
        }
        Ok((serde_json::to_vec(&list).unwrap_or_default(), ()))
    });
}

/// A cooldown as `tg_sync` takes and answers it (the fleet's clock).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FleetCooldown {
    pub deployment: String,
    pub until_ms: u64,
}

fn clock_offset(store: &dyn Store) -> i64 {
    store
        .get(CLOCK_OFFSET)
        .and_then(|v| std::str::from_utf8(&v.value).ok()?.parse().ok())
        .unwrap_or(0)
}

/// The cooldowns this replica started since the last sync, in the fleet's clock; taken: the
/// sync that carries them is sent until it is answered.
pub fn take_shared(store: &dyn Store) -> Vec<FleetCooldown> {
    let offset = clock_offset(store);
    let taken = update::<Vec<(String, u64)>, ()>(store, SHARE, |bytes| {
        let list: Vec<(String, u64)> = serde_json::from_slice(bytes).unwrap_or_default();
        if list.is_empty() {
            return Err(());
        }
        Ok((b"[]".to_vec(), list))
    });
    taken
        .unwrap_or_default()
        .into_iter()
        .map(|(deployment, until)| FleetCooldown {
            deployment,
            until_ms: until.saturating_add_signed(offset),
        })
        .collect()
}

/// The fleet's cooldowns, from a sync's answer (`fleet_now_ms`: Redis's clock when it
/// answered): each known deployment cools down here until then, unless it already does longer.
/// Returns the deployments that started cooling here.
pub fn apply_fleet(
    store: &dyn Store,
    cooldowns: &[FleetCooldown],
    fleet_now_ms: u64,
    now_ms: u64,
) -> Vec<String> {
    if fleet_now_ms > 0 {
        let offset = i128::from(fleet_now_ms) - i128::from(now_ms);
        let offset = i64::try_from(offset).unwrap_or(0).to_string();
        if store
            .get(CLOCK_OFFSET)
            .is_none_or(|v| v.value != offset.as_bytes())
        {
            let _ = store.set(CLOCK_OFFSET, offset.as_bytes(), None);
        }
    }
    let mut started = Vec::new();
    for c in cooldowns {
        let key = store_key(&c.deployment);
        if store.get(&key).is_none() {
            continue; // not a deployment of this replica's config
        }
        let left = c.until_ms.saturating_sub(fleet_now_ms);
        if left == 0 {
            continue;
        }
        let until = now_ms.saturating_add(left);
        let cooled = update::<bool, ()>(store, &key, |bytes| {
            let mut h = Health::decode(bytes);
            if h.cooldown_until_ms >= until.saturating_sub(COOLDOWN_SLACK_MS) {
                return Err(());
            }
            let was = h.cooling(now_ms);
            h.cooldown_until_ms = until;
            Ok((h.encode(), !was))
        });
        if cooled == Ok(true) {
            started.push(c.deployment.clone());
        }
    }
    started
}

/// A cooldown the fleet reports within this much of the one a record has is the same one (the
/// clocks' conversion rounds): not written again.
const COOLDOWN_SLACK_MS: u64 = 50;

/// Creates the record before traffic can touch it (see `quota::ensure_record` for why).
pub fn ensure(store: &dyn Store, deployment_id: &str) {
    let key = store_key(deployment_id);
    if store.get(&key).is_none() {
        let _ = store.set(&key, &Health::default().encode(), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldown_after_allowed_fails_within_a_minute() {
        let s = RouterSettings {
            allowed_fails: 3,
            cooldown_secs: 30,
            ..Default::default()
        };
        let mut h = Health::default();
        let now = 600_000;
        h.in_flight = 3;
        assert!(!apply(
            &mut h,
            Outcome::Failure { cool_now: false },
            &s,
            now
        ));
        assert!(!apply(
            &mut h,
            Outcome::Failure { cool_now: false },
            &s,
            now + 1
        ));
        assert!(apply(
            &mut h,
            Outcome::Failure { cool_now: false },
            &s,
            now + 2
        ));
        assert!(h.cooling(now + 29_000) && !h.cooling(now + 30_002));
        assert_eq!(h.in_flight, 0);
        // Failures in different minutes do not add up.
        let mut h = Health::default();
        apply(&mut h, Outcome::Failure { cool_now: false }, &s, 0);
        apply(&mut h, Outcome::Failure { cool_now: false }, &s, 30_000);
        assert!(!apply(
            &mut h,
            Outcome::Failure { cool_now: false },
            &s,
            60_001
        ));
        assert!(apply(
            &mut Health::default(),
            Outcome::Failure { cool_now: true },
            &s,
            0
        ));
        let off = RouterSettings {
            cooldowns: false,
            ..s
        };
        assert!(!apply(
            &mut Health::default(),
            Outcome::Failure { cool_now: true },
            &off,
            0
        ));
    }

    #[test]
    fn latency_average_and_tokens() {
        let s = RouterSettings::default();
        let mut h = Health::default();
        apply(
            &mut h,
            Outcome::Success {
                latency_ms: 100,
                ttft_ms: Some(40),
                tokens: 10,
            },
            &s,
            60_000,
        );
        assert_eq!((h.latency_ms, h.ttft_ms, h.tokens), (100, 40, 10));
        apply(
            &mut h,
            Outcome::Success {
                latency_ms: 200,
                ttft_ms: None,
                tokens: 5,
            },
            &s,
            61_000,
        );
        assert_eq!((h.latency_ms, h.ttft_ms, h.tokens), (130, 40, 15));
        assert_eq!(h.tokens_this_minute(119_999), 15);
        assert_eq!(h.tokens_this_minute(120_000), 0);
        assert_eq!(Health::decode(&h.encode()), h);
    }

    #[test]
    fn cooldowns_go_to_the_fleet_once_and_come_back_in_local_time() {
        let store = crate::store::MemoryStore::default();
        let s = RouterSettings {
            cooldown_secs: 30,
            allowed_fails: 1,
            ..Default::default()
        };
        ensure(&store, "a");
        ensure(&store, "b");
        assert!(take_shared(&store).is_empty());
        assert!(finish(
            &store,
            "a",
            Outcome::Failure { cool_now: true },
            &s,
            1_000
        ));
        // The fleet's clock runs 500 ms ahead of this replica's (learnt from a sync's answer).
        assert!(apply_fleet(&store, &[], 1_700, 1_200).is_empty());
        let sent = take_shared(&store);
        assert_eq!(
            sent,
            vec![FleetCooldown {
                deployment: "a".into(),
                until_ms: 31_500
            }]
        );
        assert!(take_shared(&store).is_empty(), "taken once");
        // Back from the fleet: another replica's cooldown of b, ours of a, and an unknown one.
        let fleet = vec![
            FleetCooldown {
                deployment: "b".into(),
                until_ms: 12_000,
            },
            sent[0].clone(),
            FleetCooldown {
                deployment: "elsewhere".into(),
                until_ms: 99_000,
            },
        ];
        let started = apply_fleet(&store, &fleet, 2_000, 1_500);
        assert_eq!(started, vec!["b".to_string()]);
        assert_eq!(read(&store, "b").cooldown_until_ms, 11_500);
        assert_eq!(read(&store, "a").cooldown_until_ms, 31_000);
        assert!(store.get(&store_key("elsewhere")).is_none());
        assert!(
            take_shared(&store).is_empty(),
            "what the fleet said is not sent back"
        );
    }
}
