//! The proxy-wasm contexts: the root context loads the configuration once per worker VM; each HTTP
//! context hands its callbacks to the pure [`HttpFilter`] through [`EnvoyHost`].

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action as HostAction, ContextType, LogLevel};

use super::{abi, Action, HttpHost};
use crate::config::{self, Config, ProcessEnv, Strictness};
use crate::error::ApiError;
use crate::filter::{HttpFilter, Role, ATTEMPT_ROOT_ID};
use crate::quota::{self, Scope};
use crate::router::health;
use crate::store::{Store, StoreError, Versioned};

pub fn start() {
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root {
            config: None,
            role: Role::Gateway,
        })
    });
}

struct Root {
    config: Option<Rc<Config>>,
    /// The gateway, or the attempt listener's filter (by the plugin's `root_id`).
    role: Role,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let started = abi::now_ns();
        if abi::property(&["plugin_root_id"]).as_deref() == Some(ATTEMPT_ROOT_ID.as_bytes()) {
            self.role = Role::Attempt;
        }
        let text = abi::buffer(abi::PLUGIN_CONFIGURATION, 0, size).unwrap_or_default();
        let report = config::load_json(&text, &ProcessEnv, Strictness::Serve);
        for w in &report.warnings {
            log::warn!("tollgate config warning: {w}");
        }
        for e in &report.errors {
            log::error!("tollgate config error: {e}");
        }
        match report.config {
            Some(c) => {
                let micros = abi::now_ns().saturating_sub(started) / 1000;
                log::info!(
                    "tollgate: configured {} deployments in {} model groups in {}.{:03} ms",
                    c.deployments.len(),
                    c.model_names.len(),
                    micros / 1000,
                    micros % 1000
                );
                // Usage records exist before any request can touch them (see quota::ensure_record).
                let now = abi::now_ns() / 1_000_000_000;
                for token in c.keys.keys() {
                    quota::ensure_record(&SharedData, &quota::record_key(Scope::Key, token), now);
                }
                for team in c.teams.keys() {
                    quota::ensure_record(&SharedData, &quota::record_key(Scope::Team, team), now);
                }
                for d in &c.deployments {
                    health::ensure(&SharedData, &d.id);
                }
                self.config = Some(Rc::new(c));
                true
            }
            None => {
                log::error!(
                    "tollgate: refusing to start: {} configuration error(s), listed above",
                    report.errors.len()
                );
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Returning None makes the SDK panic; a context without config answers 503 instead.
        Some(Box::new(Http {
            filter: self.config.clone().map(|c| HttpFilter::new(c, self.role)),
            host: EnvoyHost,
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

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> HostAction {
        match &mut self.filter {
            Some(f) => to_host(f.on_request_headers(&mut self.host, end_of_stream)),
            None => {
                let e = ApiError::new(503, "api_error", "The gateway has no valid configuration.");
                self.host
                    .send_reply(503, &[("content-type", "application/json")], &e.to_json());
                HostAction::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> HostAction {
        match &mut self.filter {
            Some(f) => to_host(f.on_request_body(&mut self.host, body_size, end_of_stream)),
            None => HostAction::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> HostAction {
        match &mut self.filter {
            Some(f) => to_host(f.on_response_headers(&mut self.host, end_of_stream)),
            None => HostAction::Continue,
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> HostAction {
        match &mut self.filter {
            Some(f) => to_host(f.on_response_body(&mut self.host, body_size, end_of_stream)),
            None => HostAction::Continue,
        }
    }

    /// Called once when the stream is over, however it ended.
    fn on_log(&mut self) {
        if let Some(f) = &mut self.filter {
            f.on_done(&mut self.host);
        }
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

thread_local! {
    /// Metric ids by name, per worker VM: defining a metric is a host call, done once per name.
    static METRIC_IDS: std::cell::RefCell<hashbrown::HashMap<String, u32>> = std::cell::RefCell::new(hashbrown::HashMap::new());
}

/// The id of a metric, defining it the first time this VM sees the name.
fn metric_id(kind: u32, name: &str) -> Option<u32> {
    METRIC_IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        if let Some(id) = ids.get(name) {
            return Some(*id);
        }
        let id = abi::define_metric(kind, name)?;
        ids.insert(name.to_string(), id);
        Some(id)
    })
}

/// [`HttpHost`] over the proxy-wasm ABI of the current stream.
struct EnvoyHost;

impl EnvoyHost {
    fn log_failure(what: &str, name: &str, status: u32) {
        log::warn!("tollgate: could not {what} '{name}' (host status {status})");
    }
}

impl HttpHost for EnvoyHost {
    fn request_header(&self, name: &str) -> Option<String> {
        abi::header(abi::REQUEST_HEADERS, name).map(|v| String::from_utf8_lossy(&v).into_owned())
    }
    fn request_header_names(&self) -> Vec<String> {
        abi::header_names(abi::REQUEST_HEADERS)
    }
    fn set_request_header(&mut self, name: &str, value: &str) {
        if let Err(s) = abi::set_header(abi::REQUEST_HEADERS, name, value) {
            Self::log_failure("set request header", name, s);
        }
    }
    fn remove_request_header(&mut self, name: &str) {
        if let Err(s) = abi::remove_header(abi::REQUEST_HEADERS, name) {
            Self::log_failure("remove request header", name, s);
        }
    }
    fn response_header(&self, name: &str) -> Option<String> {
        abi::header(abi::RESPONSE_HEADERS, name).map(|v| String::from_utf8_lossy(&v).into_owned())
    }
    fn set_response_header(&mut self, name: &str, value: &str) {
        if let Err(s) = abi::set_header(abi::RESPONSE_HEADERS, name, value) {
            Self::log_failure("set response header", name, s);
        }
    }
    fn remove_response_header(&mut self, name: &str) {
        if let Err(s) = abi::remove_header(abi::RESPONSE_HEADERS, name) {
            Self::log_failure("remove response header", name, s);
        }
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
        abi::property(path)
    }
    fn send_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        if let Err(s) = abi::send_local_response(status, headers, body) {
            log::error!("tollgate: could not send a local reply (host status {s})");
        }
    }
    fn now_ms(&self) -> u64 {
        abi::now_ns() / 1_000_000
    }
    fn increment_counter(&mut self, name: &str, delta: u64) {
        match metric_id(abi::COUNTER, name) {
            Some(id) if abi::increment_metric(id, delta) => {}
            _ => log::warn!("tollgate: could not update counter '{name}'"),
        }
    }
    fn record_histogram(&mut self, name: &str, value: u64) {
        match metric_id(abi::HISTOGRAM, name) {
            Some(id) if abi::record_metric(id, value) => {}
            _ => log::warn!("tollgate: could not record histogram '{name}'"),
        }
    }
    fn set_gauge(&mut self, name: &str, value: u64) {
        match metric_id(abi::GAUGE, name) {
            Some(id) if abi::record_metric(id, value) => {}
            _ => log::warn!("tollgate: could not set gauge '{name}'"),
        }
    }
    fn store(&self) -> &dyn Store {
        &SharedData
    }
    fn random_bytes(&mut self) -> [u8; 32] {
        abi::random_bytes()
    }
}
