//! The proxy-wasm contexts: the root context loads the configuration once per worker VM; each HTTP
//! context hands its callbacks to the pure [`HttpFilter`] through [`EnvoyHost`].

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action as HostAction, ContextType, LogLevel};

use super::pairs::{HeaderCache, Write};
use super::tick::TickDriver;
use super::{abi, Action, HttpCall, HttpHost, TickHost};
use crate::config::{Config, ProcessEnv};
use crate::error::ApiError;
use crate::filter::{HttpFilter, Role, ATTEMPT_ROOT_ID};
use crate::stats::{Metric, MetricCache};
use crate::store::remote::Answer;
use crate::store::{tick, Store, StoreError, Versioned};

pub fn start() {
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root {
            config: None,
            role: Role::Gateway,
            metrics: Rc::default(),
            tick: None,
        })
    });
}

struct Root {
    config: Option<Arc<Config>>,
    /// The gateway, or the attempt listener's filter (by the plugin's `root_id`).
    role: Role,
    /// Metric ids of this worker's VM, shared by its streams.
    metrics: Rc<RefCell<MetricCache>>,
    /// The process's periodic job with the shared store (the gateway's root contexts, one per
    /// worker VM, each with a driver; the shared record elects one per period).
    tick: Option<TickDriver>,
}

impl Root {
    fn tick_host(&self) -> RootHost {
        RootHost {
            metrics: Rc::clone(&self.metrics),
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let mut host = self.tick_host();
        let Some(driver) = &mut self.tick else {
            return;
        };
        driver.on_answer(&mut host, call_answer(body_size));
        if driver.stopping() && !driver.waiting() {
            // `on_done` returned false to wait for this answer.
            if let Err(s) = abi::done() {
                log::warn!("tollgate: could not report the root context done (host status {s})");
            }
        }
    }

    /// Envoy is removing the plugin (the VM is shutting down): the periodic job's last call.
    /// Returning false makes the host wait for `proxy_done`, sent once its answer is in.
    fn on_done(&mut self) -> bool {
        let mut host = self.tick_host();
        match &mut self.tick {
            Some(driver) => !driver.on_stop(&mut host),
            None => true,
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let started = abi::now_ns();
        if abi::property(&["plugin_root_id"]).as_deref() == Some(ATTEMPT_ROOT_ID.as_bytes()) {
            self.role = Role::Attempt;
        }
        let text = abi::buffer(abi::PLUGIN_CONFIGURATION, 0, size).unwrap_or_default();
        let now = abi::now_ns() / 1_000_000_000;
        let Some(c) = super::configure(&text, &ProcessEnv, &SharedData, now) else {
            return false;
        };
        super::log_configured(&c, abi::now_ns().saturating_sub(started) / 1000, "wasm");
        if self.role == Role::Gateway && c.store.is_some() {
            let random = abi::random_bytes();
            tick::ensure_replica(&SharedData, random);
            let mut me = [0u8; 8];
            me.copy_from_slice(random.get(8..16).unwrap_or(&[1; 8]));
            self.tick = super::tick::driver(&c, u64::from_le_bytes(me));
            if let Some(d) = &self.tick {
                let wake = u32::try_from(d.wake_ms()).unwrap_or(u32::MAX);
                if let Err(s) = abi::set_tick_period(wake) {
                    log::error!("tollgate: could not start the store's timer (host status {s})");
                }
            }
        }
        self.config = Some(Arc::new(c));
        true
    }

    fn on_tick(&mut self) {
        let mut host = self.tick_host();
        if self.tick.is_some() {
            let dropped = crate::spend_log::flush_local(host.store());
            if dropped > 0 {
                log::warn!("tollgate: {dropped} spend records dropped: the store has been away and the ring is full");
            }
        }
        if let Some(driver) = &mut self.tick {
            driver.on_wake(&mut host);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Returning None makes the SDK panic; a context without config answers 503 instead.
        Some(Box::new(Http {
            filter: self.config.clone().map(|c| HttpFilter::new(c, self.role)),
            host: EnvoyHost::new(Rc::clone(&self.metrics)),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    filter: Option<HttpFilter>,
    host: EnvoyHost,
}

fn to_host(a: Action) -> HostAction {
    match a {
        Action::Continue => HostAction::Continue,
        Action::Pause => HostAction::Pause,
    }
}

impl Context for Http {
    /// The answer to the stream's store call: the filter decides, and the request goes on if it
    /// says so.
    fn on_http_call_response(
        &mut self,
        _token: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(f) = &mut self.filter else {
            return;
        };
        let action = f.on_http_call_done(&mut self.host, call_answer(body_size));
        self.host.end_callback();
        if action == Action::Continue {
            let (resumed, side) = match f.resumes_response() {
                true => (abi::resume_response(), "response"),
                false => (abi::resume_request(), "request"),
            };
            if let Err(s) = resumed {
                log::warn!("tollgate: could not resume the {side} (host status {s})");
            }
        }
    }
}

/// The response to an HTTP call, read in `on_http_call_response`: no `:status` means no
/// response (a timeout, a reset, a refused connection).
fn call_answer(body_size: usize) -> Answer {
    let status = abi::header(abi::HTTP_CALL_RESPONSE_HEADERS, ":status")
        .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u16>().ok());
    match status {
        Some(status) => Answer::Response {
            status,
            body: abi::buffer(abi::HTTP_CALL_RESPONSE_BODY, 0, body_size).unwrap_or_default(),
        },
        None => Answer::Unanswered,
    }
}

/// Starts an HTTP call from the current context (the SDK routes its answer back to it).
fn dispatch(call: &HttpCall) -> Result<(), String> {
    proxy_wasm::hostcalls::dispatch_http_call(
        call.cluster,
        call.headers.to_vec(),
        Some(call.body),
        Vec::new(),
        std::time::Duration::from_millis(call.timeout_ms),
    )
    .map(|_token| ())
    .map_err(|status| format!("the host refused the call ({status:?})"))
}

/// [`TickHost`] of a worker VM's root context.
struct RootHost {
    metrics: Rc<RefCell<MetricCache>>,
}

impl RootHost {
    fn metric_id(&self, kind: u32, metric: &Metric) -> Option<u32> {
        let mut cache = self.metrics.try_borrow_mut().ok()?;
        cache.id(metric, |name| abi::define_metric(kind, name))
    }
}

impl TickHost for RootHost {
    fn store(&self) -> &dyn Store {
        &SharedData
    }
    fn now_ms(&self) -> u64 {
        abi::now_ns() / 1_000_000
    }
    fn dispatch_call(&mut self, call: &HttpCall) -> Result<(), String> {
        dispatch(call)
    }
    fn increment_counter(&mut self, metric: &Metric, delta: u64) {
        match self.metric_id(abi::COUNTER, metric) {
            Some(id) if abi::increment_metric(id, delta) => {}
            _ => log::warn!("tollgate: could not update counter '{}'", metric.name()),
        }
    }
    fn set_gauge(&mut self, metric: &Metric, value: u64) {
        match self.metric_id(abi::GAUGE, metric) {
            Some(id) if abi::record_metric(id, value) => {}
            _ => log::warn!("tollgate: could not set gauge '{}'", metric.name()),
        }
    }
}

// Each callback ends with `end_callback`: the header writes it made reach the host, and what it
// read (headers, metadata, the clock) is read afresh by the next.
impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> HostAction {
        let action = match &mut self.filter {
            Some(f) => to_host(f.on_request_headers(&mut self.host, end_of_stream)),
            None => {
                let e = ApiError::new(503, "api_error", "The gateway has no valid configuration.");
                self.host
                    .send_reply(503, &[("content-type", "application/json")], &e.to_json());
                HostAction::Pause
            }
        };
        self.host.end_callback();
        action
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> HostAction {
        let action = match &mut self.filter {
            Some(f) => to_host(f.on_request_body(&mut self.host, body_size, end_of_stream)),
            None => HostAction::Continue,
        };
        self.host.end_callback();
        action
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> HostAction {
        let action = match &mut self.filter {
            Some(f) => to_host(f.on_response_headers(&mut self.host, end_of_stream)),
            None => HostAction::Continue,
        };
        self.host.end_callback();
        action
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> HostAction {
        let action = match &mut self.filter {
            Some(f) => to_host(f.on_response_body(&mut self.host, body_size, end_of_stream)),
            None => HostAction::Continue,
        };
        self.host.end_callback();
        action
    }

    /// Called once when the stream is over, however it ended.
    fn on_log(&mut self) {
        if let Some(f) = &mut self.filter {
            f.on_done(&mut self.host);
        }
        self.host.end_callback();
    }
}

/// proxy-wasm shared data: one map per `vm_id` per Envoy process, seen by every worker.
struct SharedData;

impl Store for SharedData {
    fn get(&self, key: &str) -> Option<Versioned> {
        abi::get_shared(key).map(|(value, cas)| Versioned { value, cas })
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match abi::set_shared(key, value, cas.unwrap_or(0)) {
            abi::SetShared::Ok => Ok(()),
            abi::SetShared::CasMismatch => Err(StoreError::Conflict),
            abi::SetShared::Failed(status) => {
                log::warn!("tollgate: shared data write refused (host status {status})");
                Err(StoreError::Unavailable)
            }
        }
    }
}

/// A metadata namespace as read in this callback: its entries, or `None` when the host could
/// not hand it over whole (a value it cannot serialize), so its keys are read one by one.
type Namespace = (String, Option<Vec<(String, Vec<u8>)>>);

/// [`HttpHost`] over the proxy-wasm ABI of the current stream.
///
/// Within one callback it reads each header map and each metadata namespace at most once, as a
/// whole, and reads the clock once; header writes are applied to the map it read and reach the
/// host at the end of the callback as the fewest calls that make the same change (see
/// `pairs::HeaderCache`). A header written before its map was read goes to the host at once.
struct EnvoyHost {
    request_headers: RefCell<Option<HeaderCache>>,
    response_headers: RefCell<Option<HeaderCache>>,
    metadata: RefCell<Vec<Namespace>>,
    now_ns: Cell<Option<u64>>,
    metrics: Rc<RefCell<MetricCache>>,
}

impl EnvoyHost {
    fn new(metrics: Rc<RefCell<MetricCache>>) -> Self {
        EnvoyHost {
            request_headers: RefCell::new(None),
            response_headers: RefCell::new(None),
            metadata: RefCell::new(Vec::new()),
            now_ns: Cell::new(None),
            metrics,
        }
    }

    fn log_failure(what: &str, name: &str, status: u32) {
        log::warn!("tollgate: could not {what} '{name}' (host status {status})");
    }

    fn cache(&self, map: u32) -> &RefCell<Option<HeaderCache>> {
        if map == abi::REQUEST_HEADERS {
            &self.request_headers
        } else {
            &self.response_headers
        }
    }

    /// Reads a header map through its cache, loading it whole on first use in this callback.
    fn read<T>(&self, map: u32, f: impl FnOnce(&HeaderCache) -> T) -> Option<T> {
        let Ok(mut cache) = self.cache(map).try_borrow_mut() else {
            return None;
        };
        if cache.is_none() {
            *cache = abi::header_pairs(map).and_then(|b| HeaderCache::from_serialized(&b));
        }
        cache.as_ref().map(f)
    }

    fn header(&self, map: u32, name: &str) -> Option<String> {
        match self.read(map, |c| c.get(name).map(str::to_string)) {
            Some(value) => value,
            // No map to read whole (or a read in progress): ask for the one header.
            None => abi::header(map, name).map(|v| String::from_utf8_lossy(&v).into_owned()),
        }
    }

    /// A header write: applied to the map read in this callback, or sent at once if none was.
    fn write(&self, map: u32, name: &str, value: Option<&str>) {
        if let Ok(mut cache) = self.cache(map).try_borrow_mut() {
            if let Some(c) = cache.as_mut() {
                match value {
                    Some(v) => c.set(name, v),
                    None => c.remove(name),
                }
                return;
            }
        }
        Self::send_write(map, name, value);
    }

    fn send_write(map: u32, name: &str, value: Option<&str>) {
        let side = if map == abi::REQUEST_HEADERS {
            "request"
        } else {
            "response"
        };
        let result = match value {
            Some(v) => abi::set_header(map, name, v).map_err(|s| ("set", s)),
            None => abi::remove_header(map, name).map_err(|s| ("remove", s)),
        };
        if let Err((verb, s)) = result {
            Self::log_failure(&format!("{verb} {side} header"), name, s);
        }
    }

    /// Sends the header writes of this callback to the host.
    fn flush(&self) {
        for map in [abi::REQUEST_HEADERS, abi::RESPONSE_HEADERS] {
            let writes = match self.cache(map).try_borrow_mut() {
                Ok(mut cache) => cache.as_mut().map(HeaderCache::take_writes),
                Err(_) => None,
            };
            for w in writes.unwrap_or_default() {
                match w {
                    Write::Replace(name, value) => Self::send_write(map, &name, Some(&value)),
                    Write::Remove(name) => Self::send_write(map, &name, None),
                }
            }
        }
    }

    /// The callback is over: pending header writes go to the host, and what was read is forgotten.
    fn end_callback(&self) {
        self.flush();
        for map in [abi::REQUEST_HEADERS, abi::RESPONSE_HEADERS] {
            if let Ok(mut cache) = self.cache(map).try_borrow_mut() {
                *cache = None;
            }
        }
        if let Ok(mut m) = self.metadata.try_borrow_mut() {
            m.clear();
        }
        self.now_ns.set(None);
    }

    /// A key of a dynamic metadata namespace, from the namespace read whole once per callback.
    /// `None` when the host cannot hand the namespace over whole (the key is then read alone).
    fn metadata_value(&self, namespace: &str, key: &str) -> Option<Option<Vec<u8>>> {
        let mut cached = self.metadata.try_borrow_mut().ok()?;
        if !cached.iter().any(|(ns, _)| ns == namespace) {
            let entries = match abi::property_status(&["metadata", "filter_metadata", namespace]) {
                Ok(bytes) => bytes.and_then(|b| {
                    super::pairs::decode(&b).map(|entries| {
                        entries
                            .into_iter()
                            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.to_vec()))
                            .collect()
                    })
                }),
                // No such namespace: none of its keys exist.
                Err(abi::NOT_FOUND) => Some(Vec::new()),
                Err(_) => None,
            };
            cached.push((namespace.to_string(), entries));
        }
        let (_, entries) = cached.iter().find(|(ns, _)| ns == namespace)?;
        let entries = entries.as_ref()?;
        // An empty value reads as absent, as a single-key read does.
        Some(
            entries
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty()),
        )
    }

    fn metric_id(&self, kind: u32, metric: &Metric) -> Option<u32> {
        let mut cache = self.metrics.try_borrow_mut().ok()?;
        cache.id(metric, |name| abi::define_metric(kind, name))
    }
}

impl HttpHost for EnvoyHost {
    fn request_header(&self, name: &str) -> Option<String> {
        self.header(abi::REQUEST_HEADERS, name)
    }
    fn request_header_names(&self) -> Vec<String> {
        self.read(abi::REQUEST_HEADERS, HeaderCache::names)
            .unwrap_or_default()
    }
    fn set_request_header(&mut self, name: &str, value: &str) {
        self.write(abi::REQUEST_HEADERS, name, Some(value));
    }
    fn remove_request_header(&mut self, name: &str) {
        self.write(abi::REQUEST_HEADERS, name, None);
    }
    fn response_header(&self, name: &str) -> Option<String> {
        self.header(abi::RESPONSE_HEADERS, name)
    }
    fn response_header_names(&self) -> Vec<String> {
        self.read(abi::RESPONSE_HEADERS, HeaderCache::names)
            .unwrap_or_default()
    }
    fn set_response_header(&mut self, name: &str, value: &str) {
        self.write(abi::RESPONSE_HEADERS, name, Some(value));
    }
    fn remove_response_header(&mut self, name: &str) {
        self.write(abi::RESPONSE_HEADERS, name, None);
    }
    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        abi::buffer(abi::REQUEST_BODY, 0, size)
    }
    fn replace_request_body(&mut self, size: usize, body: &[u8]) -> bool {
        abi::set_buffer(abi::REQUEST_BODY, 0, size, body).is_ok()
    }
    fn response_body(&self, size: usize) -> Option<Vec<u8>> {
        abi::buffer(abi::RESPONSE_BODY, 0, size)
    }
    fn replace_response_body(&mut self, size: usize, body: &[u8]) -> bool {
        abi::set_buffer(abi::RESPONSE_BODY, 0, size, body).is_ok()
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        if let ["metadata", "filter_metadata", namespace, key] = path {
            if let Some(value) = self.metadata_value(namespace, key) {
                return value;
            }
        }
        abi::property(path)
    }
    /// Gathered in this worker's memory and written as one slot at the worker's next tick (or
    /// once the batch is full): no shared-data call per record.
    fn keep_spend_record(&mut self, record: &crate::spend_log::Record) -> bool {
        if crate::spend_log::buffer(record) {
            return crate::spend_log::flush_local(self.store()) == 0;
        }
        true
    }
    fn set_log_field(&mut self, name: &str, value: &str) {
        let name = format!("tollgate.{name}");
        if let Err(s) = abi::set_property(&name, value.as_bytes()) {
            log::debug!("tollgate: could not set {name} for the access log (host status {s})");
        }
    }
    fn send_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        // Header writes made before the reply reach the host first, as they would have unbatched.
        self.flush();
        if let Err(s) = abi::send_local_response(status, headers, body) {
            log::error!("tollgate: could not send a local reply (host status {s})");
        }
    }
    fn now_ms(&self) -> u64 {
        // One clock read per callback: its steps happen at one instant as far as Tollgate cares.
        let ns = match self.now_ns.get() {
            Some(ns) => ns,
            None => {
                let ns = abi::now_ns();
                self.now_ns.set(Some(ns));
                ns
            }
        };
        ns / 1_000_000
    }
    fn increment_counter(&mut self, metric: &Metric, delta: u64) {
        match self.metric_id(abi::COUNTER, metric) {
            Some(id) if abi::increment_metric(id, delta) => {}
            _ => log::warn!("tollgate: could not update counter '{}'", metric.name()),
        }
    }
    fn record_histogram(&mut self, metric: &Metric, value: u64) {
        match self.metric_id(abi::HISTOGRAM, metric) {
            Some(id) if abi::record_metric(id, value) => {}
            _ => log::warn!("tollgate: could not record histogram '{}'", metric.name()),
        }
    }
    fn set_gauge(&mut self, metric: &Metric, value: u64) {
        match self.metric_id(abi::GAUGE, metric) {
            Some(id) if abi::record_metric(id, value) => {}
            _ => log::warn!("tollgate: could not set gauge '{}'", metric.name()),
        }
    }
    fn store(&self) -> &dyn Store {
        &SharedData
    }
    fn random_bytes(&mut self) -> [u8; 32] {
        abi::random_bytes()
    }
    fn dispatch_call(&mut self, call: &HttpCall) -> Result<(), String> {
        dispatch(call)
    }
}
