//! The seam between the pure core and the host. [`HttpHost`] is everything the request pipeline
//! asks of Envoy; `envoy` implements it over the proxy-wasm ABI (without the SDK's panicking
//! wrappers), the `tollgate-dynamic-module` crate over Envoy's dynamic-module ABI, and `mock` in
//! memory for native tests. [`configure`] is the start-up step every host shares.
//!
//! Calls to the shared store leave through the host too: a stream's [`HttpHost::dispatch_call`]
//! (its answer comes back to `HttpFilter::on_http_call_done`), and the process's periodic job,
//! which a host drives through [`tick::TickDriver`] over a [`TickHost`].

#[cfg(all(target_arch = "wasm32", not(test)))]
pub mod abi;
#[cfg(all(target_arch = "wasm32", not(test)))]
pub mod envoy;
#[cfg(any(test, feature = "mock-host"))]
pub mod mock;
pub mod pairs;
pub mod tick;

use crate::config::{self, Config, Env, Strictness};
use crate::quota;
use crate::router::health;
use crate::stats::Metric;
use crate::store::Store;

/// Loads the plugin configuration the way every host does at start: parsed and validated once,
/// warnings and errors to the log (by field path), and the usage and health records created in
/// the shared store before any request can touch them (see `quota::ensure_record`). `None`: the
/// host must refuse to start (the errors are logged, then a line saying so).
pub fn configure(text: &[u8], env: &dyn Env, store: &dyn Store, now_secs: u64) -> Option<Config> {
    let report = config::load_json(text, env, Strictness::Serve);
    for w in &report.warnings {
        log::warn!("tollgate config warning: {w}");
    }
    for e in &report.errors {
        log::error!("tollgate config error: {e}");
    }
    let Some(c) = report.config else {
        log::error!(
            "tollgate: refusing to start: {} configuration error(s), listed above",
            report.errors.len()
        );
        return None;
    };
    for def in c.keys.values() {
        quota::ensure_record(store, &def.usage_record(), now_secs);
    }
    crate::keys::ensure_index(store);
    crate::keys::teams::ensure_index(store);
    for team in c.teams.values() {
        quota::ensure_record(store, &team.usage_record(), now_secs);
    }
    if c.proxy.is_some() {
        quota::ensure_record(store, quota::PROXY_RECORD, now_secs);
    }
    for d in &c.deployments {
        health::ensure(store, &d.id);
    }
    Some(c)
}

/// The log line that says a configuration is in service, with how long loading it took.
pub fn log_configured(c: &Config, micros: u64, host: &str) {
    log::info!(
        "tollgate: configured {} deployments in {} model groups in {}.{:03} ms ({host})",
        c.deployments.len(),
        c.model_names.len(),
        micros / 1000,
        micros % 1000
    );
}

/// What the request pipeline needs from the host for one HTTP stream. Calls never panic: a
/// failed header write is logged by the implementation and otherwise ignored.
pub trait HttpHost {
    fn request_header(&self, name: &str) -> Option<String>;
    /// Every request header name, for removing all but an allow-list before going upstream.
    fn request_header_names(&self) -> Vec<String>;
    fn set_request_header(&mut self, name: &str, value: &str);
    fn remove_request_header(&mut self, name: &str);
    fn response_header(&self, name: &str) -> Option<String>;
    /// Every response header name, for removing all but an allow-list before the client sees them.
    fn response_header_names(&self) -> Vec<String>;
    /// Whether the response headers can still change in the response body phase: a host that
    /// held them until the whole body was in (the dynamic module does; proxy-wasm cannot).
    fn response_headers_held(&self) -> bool {
        false
    }
    fn set_response_header(&mut self, name: &str, value: &str);
    fn remove_response_header(&mut self, name: &str);
    /// The request body buffered so far (`size` bytes).
    fn request_body(&self, size: usize) -> Option<Vec<u8>>;
    fn replace_request_body(&mut self, size: usize, body: &[u8]) -> bool;
    /// The response body buffered so far, or the current chunk when streaming.
    fn response_body(&self, size: usize) -> Option<Vec<u8>>;
    fn replace_response_body(&mut self, size: usize, body: &[u8]) -> bool;
    /// An Envoy attribute, e.g. `["metadata","filter_metadata","tollgate","model"]`.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Answers the client directly (the request goes no further).
    fn send_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]);
    /// Wall-clock time, milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Adds to a counter, defining it on first use (names: see `stats`).
    fn increment_counter(&mut self, metric: &Metric, delta: u64);
    /// Records one sample in a histogram, defining it on first use.
    fn record_histogram(&mut self, metric: &Metric, value: u64);
    /// Sets a gauge, defining it on first use.
    fn set_gauge(&mut self, metric: &Metric, value: u64);
    /// The key-value store all workers share (keys, usage counters).
    fn store(&self) -> &dyn crate::store::Store;
    /// Fresh random bytes (new keys).
    fn random_bytes(&mut self) -> [u8; 32];
    /// Puts a field of the request's spend record where Envoy's access log reads it (proxy-wasm:
    /// filter state `wasm.tollgate.<name>`; the dynamic module: dynamic metadata
    /// `tollgate_log:<name>`). A host without access logs ignores it.
    fn set_log_field(&mut self, _name: &str, _value: &str) {}
    /// Keeps a request's spend record until the tick sends it (see `spend_log`): by default
    /// written to the ring at once. False when it was dropped (the ring is full).
    fn keep_spend_record(&mut self, record: &crate::spend_log::Record) -> bool {
        crate::spend_log::push(self.store(), record)
    }
    /// Starts an HTTP call for this stream; its answer reaches `HttpFilter::on_http_call_done`
    /// (the stream waits if the callback returned `Pause`). `Err`: the host could not start it
    /// (its reason). A host that makes no calls says so.
    fn dispatch_call(&mut self, _call: &HttpCall) -> Result<(), String> {
        Err("this host makes no HTTP calls".into())
    }
}

/// An HTTP call to one of Envoy's clusters (the shared store's webdis), as the core builds it:
/// the host sends it as it is and hands back the whole response, or that none came.
#[derive(Debug, Clone, Copy)]
pub struct HttpCall<'a> {
    pub cluster: &'a str,
    /// Including `:method`, `:path` and `:authority` (Envoy adds `content-length`).
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    pub timeout_ms: u64,
}

/// What the periodic job needs from the host: the process's shared store, a clock, calls (the
/// answer goes to [`tick::TickDriver::on_answer`]) and metrics. proxy-wasm: a worker VM's root
/// context; the dynamic module: the filter config on Envoy's main thread.
pub trait TickHost {
    fn store(&self) -> &dyn crate::store::Store;
    /// Wall-clock time, milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Starts a call; `Err`: the host could not (its reason, for the log).
    fn dispatch_call(&mut self, call: &HttpCall) -> Result<(), String>;
    fn increment_counter(&mut self, metric: &Metric, delta: u64);
    fn set_gauge(&mut self, metric: &Metric, value: u64);
}

/// What a callback tells the host to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}
