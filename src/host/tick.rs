//! Drives the process's periodic job ([`Ticker`]) for a host, the same way in both: the host's
//! timer wakes [`TickDriver::on_wake`] a few times a period, the driver claims the period in the
//! shared store (so one wake per process per period goes on), sends the ticker's call, and hands
//! the answer back to the ticker. Also what every store call shares, request path included:
//! its metrics and the log line when the store stops (or starts again) answering.

use crate::config::store::StoreSettings;
use crate::config::Config;
use crate::stats;
use crate::store::remote::{Answer, CallError, Endpoint, Exchange, Request};
use crate::store::tick::{self, TickCtx, Ticker};
use crate::store::{decode_u64s, encode_u64s, update, Store};

use super::{HttpCall, TickHost};

/// Sends `request` to the store's endpoint through `dispatch` (a stream's or the process's).
pub fn send_request(
    endpoint: &Endpoint,
    request: &Request,
    dispatch: impl FnOnce(&HttpCall) -> Result<(), String>,
) -> Result<(), CallError> {
    let headers = endpoint.headers(request);
    dispatch(&HttpCall {
        cluster: &endpoint.cluster,
        headers: &headers,
        body: &request.body,
        timeout_ms: request.timeout_ms,
    })
    .map_err(CallError::NotSent)
}

/// The metrics of one finished store request: its counter (by what was called and how it ended)
/// and the value of `tollgate_store_up` after it (1: Redis answered, even with an error).
pub fn call_metrics<'a>(
    what: &'a str,
    outcome: Result<(), &CallError>,
) -> (stats::Metric<'a>, u64) {
    match outcome {
        Ok(()) => (stats::store_calls(what, "ok"), 1),
        Err(e) => (
            stats::store_calls(what, e.kind()),
            u64::from(e.redis_answered()),
        ),
    }
}

/// `[state (1 up, 2 down), since ms]`: whether the store answered the process's last call.
const STATE_KEY: &str = "tollgate.store.state";

/// Notes whether the store answered; logs once per change for the whole process (every worker
/// sees the same record), not once per failed call.
pub fn note_store_state(store: &dyn Store, now_ms: u64, outcome: Result<(), &CallError>) {
    let up = match outcome {
        Ok(()) => true,
        Err(e) => e.redis_answered(),
    };
    let state = if up { 1 } else { 2 };
    let changed = update::<_, ()>(store, STATE_KEY, |cur| {
        let [was, _] = decode_u64s::<2>(1, cur);
        if was == state {
            return Err(());
        }
        Ok((encode_u64s(1, &[state, now_ms]), was))
    });
    // The first record says nothing unless the store is down.
    if let Ok(was) = changed {
        match outcome {
            Err(e) if !up => log::warn!("tollgate: the shared store does not answer: {e}"),
            _ if was != 0 => log::warn!("tollgate: the shared store answers again"),
            _ => {}
        }
    }
}

/// Whether the last call of this process to finish found the store unreachable: requests then
/// do not wait for a call of their own (the periodic job finds out when it is back).
pub fn store_down(store: &dyn Store) -> bool {
    store
        .get(STATE_KEY)
        .is_some_and(|v| decode_u64s::<2>(1, &v.value)[0] == 2)
}

/// The driver of this configuration's periodic job, for a host that runs it (the gateway's
/// filter; the attempt listener's shares the process and runs none). `None` without a store.
/// `me` tells this driver from the others of the process (random per VM or config).
pub fn driver(config: &Config, me: u64) -> Option<TickDriver> {
    let store = config.store.as_ref()?;
    let ticker = Box::new(crate::fleet::FleetSync {
        ttl_ms: store.replica_ttl_ms,
        timeout_ms: store.sync_timeout_ms,
        spend_log_keep: store.spend_log_keep,
    });
    Some(TickDriver::new(ticker, store, me))
}

/// A call this driver sent and waits for.
struct InFlight {
    exchange: Exchange,
}

/// One host's driver of the periodic job (one per worker VM, or per filter config).
pub struct TickDriver {
    ticker: Box<dyn Ticker>,
    endpoint: Endpoint,
    /// This driver's id in the election record (random per VM or config).
    me: u64,
    period_ms: u64,
    /// How long the process counts as busy after a claim, unless the answer comes sooner: the
    /// longest a call may take (a sync, then maybe a library load and the sync again).
    busy_ms: u64,
    in_flight: Option<InFlight>,
    /// Envoy is stopping: no new periods.
    stopping: bool,
}

impl TickDriver {
    pub fn new(ticker: Box<dyn Ticker>, settings: &StoreSettings, me: u64) -> Self {
        TickDriver {
            ticker,
            endpoint: settings.endpoint.clone(),
            me: me.max(1),
            period_ms: settings.tick_ms,
            busy_ms: settings
                .sync_timeout_ms
                .saturating_mul(3)
                .saturating_add(100),
            in_flight: None,
            stopping: false,
        }
    }

    /// How often the host should wake the driver: a quarter period, so the process's period
    /// starts at most that late whichever worker's timer fires first.
    pub fn wake_ms(&self) -> u64 {
        (self.period_ms / 4).max(5)
    }

    /// Whether this driver waits for an answer.
    pub fn waiting(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether Envoy is stopping (no new periods start).
    pub fn stopping(&self) -> bool {
        self.stopping
    }

    /// The host's timer fired.
    pub fn on_wake(&mut self, host: &mut dyn TickHost) {
        if self.stopping || self.in_flight.is_some() {
            return;
        }
        let now_ms = host.now_ms();
        if !tick::claim(host.store(), self.me, now_ms, self.period_ms, self.busy_ms) {
            return;
        }
        let exchange = {
            let Some(replica) = tick::replica(host.store()) else {
                tick::release(host.store(), self.me);
                return;
            };
            let ctx = TickCtx {
                store: host.store(),
                now_ms,
                replica: &replica,
            };
            self.ticker.tick(&ctx)
        };
        match exchange {
            Some(x) => self.send(host, x),
            None => tick::release(host.store(), self.me),
        }
    }

    /// Envoy is stopping: the ticker's last call, once per process. Returns whether a call is in
    /// flight (the host should wait for its answer before it reports itself done).
    pub fn on_stop(&mut self, host: &mut dyn TickHost) -> bool {
        if self.stopping {
            return self.in_flight.is_some();
        }
        self.stopping = true;
        if self.in_flight.is_some() {
            // This driver's own call is still out: its answer completes the job.
            return true;
        }
        if !tick::claim_last(host.store(), self.me, host.now_ms(), self.busy_ms) {
            return false;
        }
        let exchange = {
            let Some(replica) = tick::replica(host.store()) else {
                return false;
            };
            let ctx = TickCtx {
                store: host.store(),
                now_ms: host.now_ms(),
                replica: &replica,
            };
            self.ticker.last(&ctx)
        };
        match exchange {
            Some(x) => {
                log::info!("tollgate: stopping: the store's last {}", x.call().what);
                self.send(host, x);
                self.in_flight.is_some()
            }
            None => false,
        }
    }

    /// The ticker's last call, for a host that sends it itself (the dynamic module, which
    /// cannot wait for a callout once its config is being destroyed): claimed once per process.
    pub fn take_last(&mut self, host: &dyn TickHost) -> Option<Exchange> {
        self.stopping = true;
        if !tick::claim_last(host.store(), self.me, host.now_ms(), self.busy_ms) {
            return None;
        }
        let replica = tick::replica(host.store())?;
        let ctx = TickCtx {
            store: host.store(),
            now_ms: host.now_ms(),
            replica: &replica,
        };
        self.ticker.last(&ctx)
    }

    /// The ticker hears how its last call ended (for a host that sent it itself).
    pub fn last_done(
        &mut self,
        host: &mut dyn TickHost,
        request: &Request,
        result: &Result<serde_json::Value, CallError>,
    ) {
        self.finish(host, request, result);
    }

    fn send(&mut self, host: &mut dyn TickHost, exchange: Exchange) {
        match send_request(&self.endpoint, exchange.request(), |c| {
            host.dispatch_call(c)
        }) {
            Ok(()) => self.in_flight = Some(InFlight { exchange }),
            Err(e) => {
                log::warn!("tollgate: could not send {}: {e}", exchange.request().what);
                self.account(host, exchange.request().what, Err(&e));
                let call = exchange.call().clone();
                self.finish(host, &call, &Err(e));
            }
        }
    }

    /// The answer to the call this driver sent (an answer that is not for it is ignored).
    pub fn on_answer(&mut self, host: &mut dyn TickHost, answer: Answer) {
        let Some(InFlight { mut exchange }) = self.in_flight.take() else {
            return;
        };
        let what = exchange.request().what;
        match exchange.answer(&answer) {
            None => {
                // The library was missing (now loaded), or just loaded: the next request.
                let parsed = crate::store::remote::parse(&answer);
                self.account(host, what, parsed.as_ref().map(|_| ()));
                self.send(host, exchange);
            }
            Some(result) => {
                self.account(host, what, result.as_ref().map(|_| ()));
                let call = exchange.call().clone();
                self.finish(host, &call, &result);
            }
        }
    }

    fn account(&self, host: &mut dyn TickHost, what: &str, outcome: Result<(), &CallError>) {
        let (counter, up) = call_metrics(what, outcome);
        host.increment_counter(&counter, 1);
        host.set_gauge(&stats::store_up(), up);
        note_store_state(host.store(), host.now_ms(), outcome);
    }

    fn finish(
        &mut self,
        host: &mut dyn TickHost,
        call: &Request,
        result: &Result<serde_json::Value, CallError>,
    ) {
        if let Some(replica) = tick::replica(host.store()) {
            let ctx = TickCtx {
                store: host.store(),
                now_ms: host.now_ms(),
                replica: &replica,
            };
            self.ticker.done(&ctx, call, result);
        }
        tick::release(host.store(), self.me);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::store::{FailureMode, STORE_CLUSTER};
    use crate::host::mock::SentCall;
    use crate::stats::Metric;
    use crate::store::tick::{ensure_replica, Heartbeat, HeartbeatState};
    use crate::store::MemoryStore;
    use std::collections::BTreeMap;

    pub(crate) fn settings(tick_ms: u64) -> StoreSettings {
        StoreSettings {
            url: "http://127.0.0.1:7379".into(),
            host: "127.0.0.1".into(),
            port: 7379,
            endpoint: Endpoint::new(STORE_CLUSTER, "127.0.0.1:7379", Some("u:p")),
            auth: None,
            failure_mode: FailureMode::Local,
            tick_ms,
            sync_timeout_ms: 1000,
            call_timeout_ms: 200,
            replica_ttl_ms: 3000,
            spend_log_keep: 100_000,
            response_ttl_s: 3600,
            response_max_bytes: 1 << 20,
        }
    }

    /// A worker's view of the process: the store all workers share, its own clock and calls.
    #[derive(Default)]
    pub(crate) struct TestHost {
        pub store: MemoryStore,
        pub now_ms: u64,
        pub sent: Vec<SentCall>,
        pub refuse: bool,
        pub counters: BTreeMap<String, u64>,
        pub gauges: BTreeMap<String, u64>,
    }

    impl TickHost for TestHost {
        fn store(&self) -> &dyn Store {
            &self.store
        }
        fn now_ms(&self) -> u64 {
            self.now_ms
        }
        fn dispatch_call(&mut self, call: &HttpCall) -> Result<(), String> {
            if self.refuse {
                return Err("no such cluster".into());
            }
            self.sent.push(SentCall {
                cluster: call.cluster.to_string(),
                headers: call
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body: call.body.to_vec(),
                timeout_ms: call.timeout_ms,
            });
            Ok(())
        }
        fn increment_counter(&mut self, metric: &Metric, delta: u64) {
            *self.counters.entry(metric.name()).or_default() += delta;
        }
        fn set_gauge(&mut self, metric: &Metric, value: u64) {
            self.gauges.insert(metric.name(), value);
        }
    }

    fn heartbeat() -> Box<Heartbeat> {
        Box::new(Heartbeat {
            ttl_ms: 3000,
            timeout_ms: 1000,
            library: None,
        })
    }

    fn ok(seq: u64) -> Answer {
        Answer::Response {
            status: 200,
            body: format!(r#"{{"FCALL":"{{\"seq\":{seq}}}"}}"#).into_bytes(),
        }
    }

    /// Two workers wake every quarter period: one call per period, sent with the store's
    /// endpoint and credentials, answered, acknowledged; none while one is in flight.
    #[test]
    fn two_workers_make_one_call_per_period() {
        let shared = MemoryStore::default();
        ensure_replica(&shared, [0x0f; 32]);
        let mut hosts: Vec<TestHost> = (0..2)
            .map(|_| TestHost {
                store: shared.clone(),
                ..Default::default()
            })
            .collect();
        let mut drivers: Vec<TickDriver> = (0..2)
            .map(|i| TickDriver::new(heartbeat(), &settings(100), i + 1))
            .collect();
        assert_eq!(drivers[0].wake_ms(), 25);
        let start = 1_000_000u64;
        for step in 0..40u64 {
            for (i, (d, h)) in drivers.iter_mut().zip(hosts.iter_mut()).enumerate() {
                h.now_ms = start + step * 25 + i as u64 * 7;
                let before = h.sent.len();
                d.on_wake(h);
                if h.sent.len() > before {
                    // Answered at once, except every fourth call, answered a period late.
                    let seq = HeartbeatState::load(&shared).pending;
                    if seq % 4 != 0 {
                        d.on_answer(h, ok(seq));
                    }
                }
                if step % 8 == 7 && d.waiting() {
                    let seq = HeartbeatState::load(&shared).pending;
                    d.on_answer(h, ok(seq));
                }
            }
        }
        let sent: Vec<_> = hosts.iter().flat_map(|h| h.sent.iter()).collect();
        // 1 s of 100 ms periods, less those skipped while a late answer was out.
        assert!((7..=10).contains(&sent.len()), "{}", sent.len());
        let first = sent[0];
        assert_eq!(first.cluster, "tollgate_store");
        assert!(first
            .headers
            .contains(&("authorization".into(), "Basic dTpw".into())));
        assert!(
            String::from_utf8_lossy(&first.body).starts_with("FCALL/tg_sync/0/0f0f0f0f0f0f0f0f/1/")
        );
        assert_eq!(first.timeout_ms, 1000);
        let state = HeartbeatState::load(&shared);
        assert!(state.acked >= 6, "{state:?}");
        let oks: u64 = hosts
            .iter()
            .map(|h| {
                h.counters
                    .get("tollgate.store_calls_total.call.tg_sync.outcome.ok")
                    .copied()
                    .unwrap_or(0)
            })
            .sum();
        assert_eq!(oks, state.acked);
        assert!(hosts
            .iter()
            .any(|h| h.gauges.get("tollgate.store_up") == Some(&1)));
    }

    #[test]
    fn failures_are_counted_and_the_seq_is_sent_again() {
        let mut h = TestHost::default();
        ensure_replica(&h.store, [1; 32]);
        let mut d = TickDriver::new(heartbeat(), &settings(100), 1);
        h.now_ms = 1000;
        d.on_wake(&mut h);
        d.on_answer(&mut h, Answer::Unanswered);
        assert!(!d.waiting());
        h.now_ms = 1100;
        d.on_wake(&mut h);
        d.on_answer(
            &mut h,
            Answer::Response {
                status: 403,
                body: Vec::new(),
            },
        );
        assert_eq!(h.sent.len(), 2);
        assert_eq!(h.sent[0].body, h.sent[1].body);
        assert_eq!(
            h.counters
                .get("tollgate.store_calls_total.call.tg_sync.outcome.unanswered"),
            Some(&1)
        );
        assert_eq!(
            h.counters
                .get("tollgate.store_calls_total.call.tg_sync.outcome.forbidden"),
            Some(&1)
        );
        assert_eq!(h.gauges.get("tollgate.store_up"), Some(&0));
        // A host that cannot send: counted, released, tried again next period.
        h.refuse = true;
        h.now_ms = 1200;
        d.on_wake(&mut h);
        assert!(!d.waiting());
        assert_eq!(
            h.counters
                .get("tollgate.store_calls_total.call.tg_sync.outcome.not_sent"),
            Some(&1)
        );
        h.refuse = false;
        h.now_ms = 1300;
        d.on_wake(&mut h);
        d.on_answer(&mut h, ok(1));
        assert_eq!(HeartbeatState::load(&h.store).acked, 1);
        assert_eq!(h.gauges.get("tollgate.store_up"), Some(&1));
        // A stray answer (none in flight) changes nothing.
        d.on_answer(&mut h, ok(7));
        assert_eq!(HeartbeatState::load(&h.store).acked, 1);
    }

    #[test]
    fn a_missing_library_is_loaded_by_the_tick() {
        let mut h = TestHost::default();
        ensure_replica(&h.store, [2; 32]);
        let ticker = Box::new(Heartbeat {
            ttl_ms: 3000,
            timeout_ms: 1000,
            library: Some("#!lua name=tollgate\n"),
        });
        let mut d = TickDriver::new(ticker, &settings(100), 1);
        h.now_ms = 5000;
        d.on_wake(&mut h);
        d.on_answer(
            &mut h,
            Answer::Response {
                status: 200,
                body: br#"{"FCALL":[false,"ERR Function not found"]}"#.to_vec(),
            },
        );
        assert!(d.waiting());
        assert!(h.sent[1]
            .headers
            .contains(&(":path".into(), "/FUNCTION/LOAD/REPLACE".into())));
        assert!(h.sent[1].body.starts_with(b"#!lua name=tollgate"));
        d.on_answer(
            &mut h,
            Answer::Response {
                status: 200,
                body: br#"{"FUNCTION":"tollgate"}"#.to_vec(),
            },
        );
        assert_eq!(h.sent[2].body, h.sent[0].body);
        d.on_answer(&mut h, ok(1));
        assert_eq!(HeartbeatState::load(&h.store).acked, 1);
        assert_eq!(
            h.counters
                .get("tollgate.store_calls_total.call.tg_sync.outcome.library_missing"),
            Some(&1)
        );
        assert_eq!(
            h.counters
                .get("tollgate.store_calls_total.call.function_load.outcome.ok"),
            Some(&1)
        );
    }

    /// Stopping: one last call per process, whichever workers hear it.
    #[test]
    fn one_last_call_per_process() {
        let shared = MemoryStore::default();
        ensure_replica(&shared, [3; 32]);
        let mut a = TestHost {
            store: shared.clone(),
            now_ms: 10,
            ..Default::default()
        };
        let mut b = TestHost {
            store: shared.clone(),
            now_ms: 10,
            ..Default::default()
        };
        let mut da = TickDriver::new(heartbeat(), &settings(100), 1);
        let mut db = TickDriver::new(heartbeat(), &settings(100), 2);
        assert!(da.on_stop(&mut a));
        assert!(!db.on_stop(&mut b));
        assert_eq!(a.sent.len() + b.sent.len(), 1);
        assert!(String::from_utf8_lossy(&a.sent[0].body).starts_with("FCALL/tg_sync/"));
        // No periods once stopping.
        a.now_ms = 10_000;
        da.on_answer(&mut a, ok(1));
        da.on_wake(&mut a);
        assert_eq!(a.sent.len(), 1);
        assert!(db.take_last(&b).is_none());
    }

    #[test]
    fn the_store_state_is_logged_once_per_change() {
        let s = MemoryStore::default();
        note_store_state(&s, 1, Err(&CallError::Unanswered));
        note_store_state(&s, 2, Err(&CallError::Unavailable));
        assert_eq!(
            decode_u64s::<2>(1, &s.get(STATE_KEY).unwrap().value),
            [2, 1]
        );
        note_store_state(&s, 3, Err(&CallError::Redis("x".into())));
        assert_eq!(
            decode_u64s::<2>(1, &s.get(STATE_KEY).unwrap().value),
            [1, 3]
        );
        note_store_state(&s, 4, Ok(()));
        assert_eq!(
            decode_u64s::<2>(1, &s.get(STATE_KEY).unwrap().value),
            [1, 3]
        );
    }
}
