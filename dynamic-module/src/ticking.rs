//! The process's periodic job with the shared store, in the dynamic module. Envoy gives a module
//! no per-process timer, but a filter config can schedule events on the main thread (its
//! scheduler may be committed to from any thread) and make callouts there. So a thread of the
//! module's wakes a few times a period and commits an event; on the main thread the core's
//! [`TickDriver`] claims the period and sends the call, whose answer comes to the config's
//! callout hook.
//!
//! When the config is destroyed (Envoy stopping, or the config replaced), Envoy cancels the
//! config's callouts as soon as the destroy hook returns, so the job's last call goes over a
//! socket of the module's own, blocking the main thread for at most `sync_timeout_ms`.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tollgate::config::store::StoreSettings;
use tollgate::config::Config;
use tollgate::host::tick::TickDriver;
use tollgate::host::TickHost;
use tollgate::store::remote::{self, Answer, Request};
use tollgate::store::tick;

use crate::abi;
use crate::host::{random_bytes, ConfigHost, MetricIds, STORE};

/// The only event the module schedules.
const TICK_EVENT: u64 = 1;

/// A pointer Envoy lets other threads use (the scheduler commits from any thread; the config
/// pointer is only used on the main thread, in hooks where it is live).
#[derive(Clone, Copy)]
struct Shared(*mut std::ffi::c_void);

// SAFETY: see `Shared`: Envoy documents the config scheduler as thread-safe, and the config
// pointer is only dereferenced by Envoy on the main thread.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

pub struct Ticking {
    driver: Mutex<TickDriver>,
    settings: StoreSettings,
    config_envoy: Shared,
    timer: Mutex<Option<Timer>>,
}

struct Timer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: JoinHandle<()>,
    scheduler: Shared,
}

impl Ticking {
    /// Starts the job for a gateway config with a store (on the main thread, in config_new).
    pub fn start(config_envoy: abi::FilterConfigEnvoyPtr, config: &Config) -> Option<Ticking> {
        let settings = config.store.clone()?;
        // The main thread creates configs one at a time: the first writes the id, no race.
        let random = random_bytes();
        tick::ensure_replica(&*STORE, random);
        let mut me = [0u8; 8];
        me.copy_from_slice(random.get(8..16).unwrap_or(&[1; 8]));
        let driver = tollgate::host::tick::driver(config, u64::from_le_bytes(me))?;
        let wake = Duration::from_millis(driver.wake_ms());
        // SAFETY: `config_envoy` is the config Envoy is creating; the scheduler is deleted in
        // `stop`, after the thread that uses it has ended.
        let scheduler = Shared(unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(config_envoy)
        });
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("tollgate-tick".into())
                .spawn(move || run_timer(&stop, wake, scheduler))
        };
        let timer = match thread {
            Ok(thread) => Some(Timer {
                stop,
                thread,
                scheduler,
            }),
            Err(e) => {
                log::error!("tollgate: could not start the store's timer thread: {e}");
                // SAFETY: made above, unused by any thread.
                unsafe {
                    abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
                        scheduler.0,
                    )
                };
                None
            }
        };
        Some(Ticking {
            driver: Mutex::new(driver),
            settings,
            config_envoy: Shared(config_envoy),
            timer: Mutex::new(timer),
        })
    }

    /// A scheduled event on the main thread.
    pub fn wake(&self, config_envoy: abi::FilterConfigEnvoyPtr, metrics: &MetricIds) {
        let mut host = ConfigHost {
            config: config_envoy,
            metrics,
        };
        if let Ok(mut d) = self.driver.lock() {
            d.on_wake(&mut host);
        }
    }

    /// The answer to the job's callout, on the main thread.
    pub fn answer(&self, config_envoy: abi::FilterConfigEnvoyPtr, metrics: &MetricIds, a: Answer) {
        let mut host = ConfigHost {
            config: config_envoy,
            metrics,
        };
        if let Ok(mut d) = self.driver.lock() {
            d.on_answer(&mut host, a);
        }
    }

    /// The config is being destroyed: the timer ends, then the last call goes out on a socket.
    pub fn stop(&self, metrics: &MetricIds) {
        let timer = self.timer.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = timer {
            let (flag, wakeup) = &*t.stop;
            if let Ok(mut stopped) = flag.lock() {
                *stopped = true;
            }
            wakeup.notify_all();
            if t.thread.join().is_err() {
                log::warn!("tollgate: the store's timer thread panicked");
            }
            // SAFETY: the only thread using it has ended.
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
                    t.scheduler.0,
                )
            };
        }
        let host = ConfigHost {
            config: self.config_envoy.0,
            metrics,
        };
        let Ok(mut d) = self.driver.lock() else {
            return;
        };
        let Some(mut exchange) = d.take_last(&host) else {
            return;
        };
        let deadline = Instant::now() + Duration::from_millis(self.settings.sync_timeout_ms);
        let result = loop {
            let answer = post(&self.settings, exchange.request(), deadline);
            if let Some(result) = exchange.answer(&answer) {
                break result;
            }
        };
        match &result {
            Ok(_) => log::info!(
                "tollgate: the store's last {} before stopping was answered",
                exchange.call().what
            ),
            Err(e) => log::warn!(
                "tollgate: the store's last {} before stopping failed: {e}",
                exchange.call().what
            ),
        }
        let call = exchange.call().clone();
        // No metrics here: Envoy is tearing the config down.
        let mut quiet = Quiet(&host);
        d.last_done(&mut quiet, &call, &result);
    }
}

/// The timer thread: an event every `wake` until told to stop.
fn run_timer(stop: &(Mutex<bool>, Condvar), wake: Duration, scheduler: Shared) {
    let (flag, wakeup) = stop;
    let Ok(mut stopped) = flag.lock() else {
        return;
    };
    loop {
        match wakeup.wait_timeout(stopped, wake) {
            Ok((guard, _)) => stopped = guard,
            Err(_) => return,
        }
        if *stopped {
            return;
        }
        // SAFETY: the scheduler outlives this thread (deleted after it is joined).
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                scheduler.0,
                TICK_EVENT,
            )
        };
    }
}

/// One call over a socket of the module's own, by `deadline`.
fn post(settings: &StoreSettings, request: &Request, deadline: Instant) -> Answer {
    let bytes = remote::http1_request(&settings.endpoint, request);
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let addr = (settings.host.as_str(), settings.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next());
    let Some(addr) = addr else {
        return Answer::Unanswered;
    };
    let run = || -> std::io::Result<Answer> {
        let mut s = TcpStream::connect_timeout(&addr, remaining().max(Duration::from_millis(1)))?;
        s.set_write_timeout(Some(remaining().max(Duration::from_millis(1))))?;
        s.write_all(&bytes)?;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if remaining().is_zero() {
                return Ok(Answer::Unanswered);
            }
            s.set_read_timeout(Some(remaining().max(Duration::from_millis(1))))?;
            let n = s.read(&mut buf)?;
            if n == 0 {
                // The connection is closed: whatever came is the answer.
                return Ok(remote::parse_http1_response(&got, true).unwrap_or(Answer::Unanswered));
            }
            got.extend_from_slice(buf.get(..n).unwrap_or_default());
            if let Some(a) = remote::parse_http1_response(&got, false) {
                return Ok(a);
            }
        }
    };
    run().unwrap_or(Answer::Unanswered)
}

/// A host for the last call's bookkeeping: the store and the clock, no callouts or metrics.
struct Quiet<'a>(&'a ConfigHost<'a>);

impl TickHost for Quiet<'_> {
    fn store(&self) -> &dyn tollgate::store::Store {
        self.0.store()
    }
    fn now_ms(&self) -> u64 {
        self.0.now_ms()
    }
    fn dispatch_call(&mut self, _call: &tollgate::host::HttpCall) -> Result<(), String> {
        Err("Envoy is stopping".into())
    }
    fn increment_counter(&mut self, _metric: &tollgate::stats::Metric, _delta: u64) {}
    fn set_gauge(&mut self, _metric: &tollgate::stats::Metric, _value: u64) {}
}
