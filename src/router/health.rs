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
    update::<bool, ()>(store, &store_key(deployment_id), |bytes| {
        let mut h = Health::decode(bytes);
        let cooled = apply(&mut h, outcome, settings, now_ms);
        Ok((h.encode(), cooled))
    })
    .unwrap_or(false)
}

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
}
