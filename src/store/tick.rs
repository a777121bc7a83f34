//! The process's periodic job with the shared store (the engine's `tg_sync`; until then a
//! heartbeat), independent of traffic and run once per Envoy process per period, whichever worker
//! runs it.
//!
//! Hosts wake several times a period (every worker VM's root context in proxy-wasm; a timer
//! thread and the main thread in the dynamic module). On each wake the host's [`TickDriver`]
//! (`host::tick`) tries to [`claim`] the period through one compare-and-swap on a small shared
//! record, so exactly one wake per period asks the [`Ticker`] for a call, and no new call starts
//! while one is in flight anywhere in the process.

use serde_json::Value;

use super::remote::{self, CallError, Exchange, Request};
use super::{decode_u64s, encode_u64s, update, Store, StoreError};

/// What one periodic job does. The ticker keeps its state in the shared store (the worker that
/// runs a period changes from period to period), and the driver keeps the call in flight.
pub trait Ticker: Send + Sync {
    /// This process's turn: the call to make now, if any.
    fn tick(&self, ctx: &TickCtx) -> Option<Exchange>;
    /// How that call ended (an answer, or why none came).
    fn done(&self, ctx: &TickCtx, call: &Request, result: &Result<Value, CallError>);
    /// Envoy is stopping: a last call, best effort (see ARCHITECTURE.md for what each host
    /// allows). By default none.
    fn last(&self, _ctx: &TickCtx) -> Option<Exchange> {
        None
    }
}

/// What a ticker sees of the process.
pub struct TickCtx<'a> {
    pub store: &'a dyn Store,
    /// Wall-clock time, milliseconds since the Unix epoch (never deciding a window: the store's
    /// clock does that).
    pub now_ms: u64,
    /// This Envoy process's replica id.
    pub replica: &'a str,
}

/// The shared record electing one wake per period: `[owner, next_due_ms, busy_until_ms]`.
pub const TICK_KEY: &str = "tollgate.store.tick";
const TICK_VERSION: u8 = 1;

/// Claims this period for `me` if it is due and no call is in flight: the next period is due
/// `period_ms` after this one was (so wakes a little late do not drift the schedule), and the
/// process counts as busy for `busy_ms` (the call's longest wait) unless [`release`]d sooner.
pub fn claim(store: &dyn Store, me: u64, now_ms: u64, period_ms: u64, busy_ms: u64) -> bool {
    update::<_, ()>(store, TICK_KEY, |cur| {
        let [_, next_due, busy_until] = decode_u64s::<3>(TICK_VERSION, cur);
        if now_ms < busy_until || now_ms < next_due {
            return Err(());
        }
        // On schedule, or (a period missed: a long call, a pause) a fresh start from now.
        let next = if next_due == 0 || now_ms >= next_due.saturating_add(period_ms) {
            now_ms.saturating_add(period_ms)
        } else {
            next_due.saturating_add(period_ms)
        };
        let record = encode_u64s(TICK_VERSION, &[me, next, now_ms.saturating_add(busy_ms)]);
        Ok((record, ()))
    })
    .is_ok()
}

/// `me`'s call is over: the next due period may start at once.
pub fn release(store: &dyn Store, me: u64) {
    let _ = update::<_, ()>(store, TICK_KEY, |cur| {
        let [owner, next_due, _] = decode_u64s::<3>(TICK_VERSION, cur);
        if owner != me {
            return Err(());
        }
        Ok((encode_u64s(TICK_VERSION, &[owner, next_due, 0]), ()))
    });
}

/// `[owner, at_ms]`: who made the last call of a stop, and when.
const LAST_KEY: &str = "tollgate.store.last";

/// Claims the one last call of a stop: every worker's root context hears Envoy stopping (or a
/// configuration being replaced, which looks the same to the filter) within moments, and one of
/// them makes the call; a stop `window_ms` later is another stop.
pub fn claim_last(store: &dyn Store, me: u64, now_ms: u64, window_ms: u64) -> bool {
    update::<_, ()>(store, LAST_KEY, |cur| {
        let [owner, at] = decode_u64s::<2>(TICK_VERSION, cur);
        if owner != 0 && now_ms < at.saturating_add(window_ms) {
            return Err(());
        }
        Ok((encode_u64s(TICK_VERSION, &[me.max(1), now_ms]), ()))
    })
    .is_ok()
}

/// Where the process's replica id lives: written once at start, read on use.
pub const REPLICA_KEY: &str = "tollgate.store.replica";

/// The replica id of this Envoy process: 16 hex characters, random at its start, the same for
/// every worker. Written by the first worker to look; `random` is that worker's candidate.
///
/// proxy-wasm's shared data has no create-if-absent (a compare-and-swap on an absent key always
/// wins), so two workers starting at the same instant may both write; the later write stands and
/// every reader after it sees that one. So the id is read where it is used (once per call), never
/// kept from start-up.
pub fn ensure_replica(store: &dyn Store, random: [u8; 32]) -> String {
    if let Some(id) = replica(store) {
        return id;
    }
    let id = crate::hex::encode(random.into_iter().take(8));
    if let Err(StoreError::Unavailable) = store.set(REPLICA_KEY, id.as_bytes(), None) {
        log::warn!("tollgate: could not record the replica id in shared data");
    }
    replica(store).unwrap_or(id)
}

/// This process's replica id, once [`ensure_replica`] ran.
pub fn replica(store: &dyn Store) -> Option<String> {
    let v = store.get(REPLICA_KEY)?;
    let id = String::from_utf8(v.value).ok()?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// The minimal periodic job until the engine's sync replaces it, and the shape of that sync: one
/// `tg_sync` per period with nothing to settle (`parties: []`), which renews the replica's
/// heartbeat in the store (`tg:replicas`). A call is tagged `(replica, seq)`; an unanswered one is
/// sent again, unchanged, until it is acknowledged (the library applies each seq once).
#[derive(Debug, Clone)]
pub struct Heartbeat {
    /// `replica_ttl_ms`: how long the store counts this replica alive after a sync.
    pub ttl_ms: u64,
    /// `sync_timeout_ms`.
    pub timeout_ms: u64,
    /// The library to load if Redis lacks `tg_sync` (the engine's; none for the heartbeat alone).
    pub library: Option<&'static str>,
}

/// `[acknowledged seq, pending seq, pending ttl_ms, last acknowledged at ms]`.
pub const HEARTBEAT_KEY: &str = "tollgate.store.heartbeat";

/// The heartbeat's state, as kept in the shared store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeartbeatState {
    pub acked: u64,
    /// Sent and not yet acknowledged (0: none).
    pub pending: u64,
    pub pending_ttl_ms: u64,
    pub last_ok_ms: u64,
}

impl HeartbeatState {
    pub fn load(store: &dyn Store) -> Self {
        let v = store
            .get(HEARTBEAT_KEY)
            .map(|v| v.value)
            .unwrap_or_default();
        let [acked, pending, pending_ttl_ms, last_ok_ms] = decode_u64s::<4>(TICK_VERSION, &v);
        HeartbeatState {
            acked,
            pending,
            pending_ttl_ms,
            last_ok_ms,
        }
    }

    fn encode(&self) -> Vec<u8> {
        encode_u64s(
            TICK_VERSION,
            &[
                self.acked,
                self.pending,
                self.pending_ttl_ms,
                self.last_ok_ms,
            ],
        )
    }
}

impl Heartbeat {
    /// The next call: the pending seq again (a lost answer), or the next seq with `ttl_ms`.
    fn next(&self, ctx: &TickCtx, ttl_ms: u64) -> Option<Exchange> {
        let (seq, ttl) = update::<_, ()>(ctx.store, HEARTBEAT_KEY, |cur| {
            let [acked, pending, pending_ttl, last_ok] = decode_u64s::<4>(TICK_VERSION, cur);
            let mut s = HeartbeatState {
                acked,
                pending,
                pending_ttl_ms: pending_ttl,
                last_ok_ms: last_ok,
            };
            if s.pending <= s.acked {
                s.pending = s.acked + 1;
                s.pending_ttl_ms = ttl_ms;
            }
            Ok((s.encode(), (s.pending, s.pending_ttl_ms)))
        })
        .ok()?;
        let payload = format!(r#"{{"ttl_ms":{ttl},"parties":[]}}"#);
        let seq = seq.to_string();
        let call = remote::fcall(
            "tg_sync",
            &[],
            &[ctx.replica.as_bytes(), seq.as_bytes(), payload.as_bytes()],
            self.timeout_ms,
        )
        .ok()?;
        let exchange = Exchange::new(call);
        Some(match self.library {
            Some(source) => exchange.with_library(source, self.timeout_ms),
            None => exchange,
        })
    }
}

impl Ticker for Heartbeat {
    fn tick(&self, ctx: &TickCtx) -> Option<Exchange> {
        self.next(ctx, self.ttl_ms)
    }

    fn done(&self, ctx: &TickCtx, _call: &Request, result: &Result<Value, CallError>) {
        let Ok(Value::String(text)) = result else {
            return;
        };
        // The library answers `{"seq": n, ...}` for the seq it applied (or had applied).
        let seq = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("seq").and_then(Value::as_u64));
        let Some(seq) = seq else {
            log::warn!("tollgate: the store's tg_sync answer has no seq; sending it again");
            return;
        };
        let _ = update::<_, ()>(ctx.store, HEARTBEAT_KEY, |cur| {
            let [acked, pending, pending_ttl, last_ok] = decode_u64s::<4>(TICK_VERSION, cur);
            let mut s = HeartbeatState {
                acked,
                pending,
                pending_ttl_ms: pending_ttl,
                last_ok_ms: last_ok,
            };
            if seq != s.pending || seq <= s.acked {
                return Err(());
            }
            s.acked = seq;
            s.last_ok_ms = ctx.now_ms;
            Ok((s.encode(), ()))
        });
    }

    /// A flush: the pending sync again if one is unacknowledged (a sent payload never changes),
    /// else the next. Not a "leaving" sync: the filter cannot tell Envoy stopping from its
    /// configuration being replaced while the process goes on.
    fn last(&self, ctx: &TickCtx) -> Option<Exchange> {
        self.next(ctx, self.ttl_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn ctx<'a>(store: &'a MemoryStore, now_ms: u64, replica: &'a str) -> TickCtx<'a> {
        TickCtx {
            store,
            now_ms,
            replica,
        }
    }

    /// Four workers waking every quarter period at their own phase, for 10 s of 250 ms periods:
    /// 40 claims in all, each period once, none while a call is in flight.
    #[test]
    fn one_claim_per_period_however_many_workers_wake() {
        let store = MemoryStore::default();
        let period = 250;
        let mut claims = Vec::new();
        let phases = [0u64, 17, 101, 180];
        let mut t = 1_000_000u64;
        let end = t + 10_000;
        while t < end {
            for (w, phase) in phases.iter().enumerate() {
                if (t + phase) % (period / 4) == 0 && claim(&store, w as u64 + 1, t, period, 1000) {
                    claims.push(t);
                    // The call is answered 5 ms later.
                    release(&store, w as u64 + 1);
                }
            }
            t += 1;
        }
        assert!((39..=41).contains(&claims.len()), "{}", claims.len());
        for pair in claims.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                (period - period / 4..=period + period / 4).contains(&gap),
                "{gap}"
            );
        }
        // A call in flight holds the next period back until it is released or times out.
        let s = MemoryStore::default();
        assert!(claim(&s, 1, 0, 100, 1000));
        assert!(!claim(&s, 2, 150, 100, 1000));
        assert!(!claim(&s, 2, 999, 100, 1000));
        assert!(claim(&s, 2, 1000, 100, 1000));
        release(&s, 1); // not the owner: nothing changes
        assert!(!claim(&s, 3, 1100, 100, 1000));
        release(&s, 2);
        assert!(claim(&s, 3, 1100, 100, 1000));
        assert!(claim_last(&s, 7, 5000, 1000));
        assert!(!claim_last(&s, 8, 5500, 1000));
        assert!(claim_last(&s, 8, 6000, 1000));
    }

    #[test]
    fn the_replica_id_is_written_once_and_read_by_all() {
        let s = MemoryStore::default();
        assert_eq!(replica(&s), None);
        let a = ensure_replica(&s, [0xab; 32]);
        assert_eq!(a, "abababababababab");
        assert_eq!(ensure_replica(&s, [0x01; 32]), a);
        assert_eq!(replica(&s), Some(a));
        s.set(REPLICA_KEY, b"not hex", None).unwrap();
        assert_eq!(replica(&s), None);
    }

    fn answer(text: &str) -> Result<Value, CallError> {
        Ok(Value::from(text))
    }

    #[test]
    fn heartbeats_resend_the_same_seq_until_acknowledged() {
        let s = MemoryStore::default();
        let h = Heartbeat {
            ttl_ms: 3000,
            timeout_ms: 1000,
            library: None,
        };
        let c = ctx(&s, 10, "0123456789abcdef");
        let x = h.tick(&c).unwrap();
        let body = String::from_utf8(x.request().body.clone()).unwrap();
        assert_eq!(
            body,
            "FCALL/tg_sync/0/0123456789abcdef/1/%7B%22ttl_ms%22%3A3000%2C%22parties%22%3A%5B%5D%7D"
        );
        assert_eq!(x.request().timeout_ms, 1000);
        // Unanswered: the same seq and payload again.
        h.done(&c, x.request(), &Err(CallError::Unanswered));
        let again = h.tick(&c).unwrap();
        assert_eq!(again.request(), x.request());
        // An answer for another seq, or without one, acknowledges nothing.
        h.done(&c, again.request(), &answer(r#"{"seq":9}"#));
        h.done(&c, again.request(), &answer("garbage"));
        assert_eq!(HeartbeatState::load(&s).acked, 0);
        let c = ctx(&s, 20, "0123456789abcdef");
        h.done(&c, again.request(), &answer(r#"{"seq":1,"now_ms":5}"#));
        assert_eq!(
            HeartbeatState::load(&s),
            HeartbeatState {
                acked: 1,
                pending: 1,
                pending_ttl_ms: 3000,
                last_ok_ms: 20
            }
        );
        let next = h.tick(&c).unwrap();
        assert!(String::from_utf8(next.request().body.clone())
            .unwrap()
            .contains("/2/"));
        // Stopping with seq 2 unacknowledged: seq 2 again, unchanged; once acknowledged, the next.
        assert_eq!(h.last(&c).unwrap().request(), next.request());
        h.done(&c, next.request(), &answer(r#"{"seq":2}"#));
        let last = String::from_utf8(h.last(&c).unwrap().request().body.clone()).unwrap();
        assert!(last.contains("/3/%7B%22ttl_ms%22%3A3000%2C"), "{last}");
        // With a library, a missing function is loaded.
        let with = Heartbeat {
            library: Some("#!lua name=tollgate"),
            ..h
        };
        let mut x = with.tick(&c).unwrap();
        let missing = remote::Answer::Response {
            status: 200,
            body: br#"{"FCALL":[false,"ERR Function not found"]}"#.to_vec(),
        };
        assert_eq!(x.answer(&missing), None);
        assert_eq!(x.request().what, "function_load");
    }
}
