//! Tollgate as an Envoy dynamic module (`envoy.filters.http.dynamic_modules`): the same filter as
//! the `.wasm` (the pure core in the `tollgate` crate), compiled natively and driven by Envoy's
//! dynamic-module hooks instead of proxy-wasm's. What differs is only the host: headers, bodies
//! and metadata are direct calls into Envoy, the shared store is one map in this process, and
//! metrics are tagged Envoy stats.
//!
//! Envoy calls `on_http_filter_config_new` on the main thread, once per filter in the bootstrap
//! (the gateway, and the attempt listener's filter by its `filter_name`); each stream's hooks run
//! on its worker thread. Every hook catches panics: one that unwound into Envoy would abort the
//! process.

mod abi;
mod host;

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tollgate::config::{self, Config, ProcessEnv, Strictness};
use tollgate::error::ApiError;
use tollgate::filter::{
    body_metadata, HttpFilter, Role, ATTEMPT_ROOT_ID, METADATA_NAMESPACE, USAGE_NAMESPACE,
};
use tollgate::host::{Action, HttpHost};
use tollgate::quota::{self, Scope};
use tollgate::router::health;

use abi::{FilterConfigEnvoyPtr, FilterConfigModulePtr, FilterEnvoyPtr, FilterModulePtr};
use host::{MetricIds, NativeHost, STORE};

/// One filter of the bootstrap: its parsed configuration, role and metric ids, shared by the
/// workers' streams.
struct FilterConfig {
    config: Arc<Config>,
    role: Role,
    metrics: MetricIds,
}

/// One HTTP stream.
struct Filter {
    shared: Arc<FilterConfig>,
    /// `None` after a panic: the stream's later hooks let it finish without the filter.
    stream: Option<Stream>,
}

struct Stream {
    filter: HttpFilter,
    /// The gateway's request headers are held until the body is in (see `run_deferred`).
    deferred: bool,
    /// The gateway's (non-streamed) response headers are held until the body is in (see
    /// `run_deferred_response`).
    response_deferred: bool,
}

/// Forwards the `log` crate's records to Envoy's log (the `dynamic_modules` logger).
struct EnvoyLogger;

impl log::Log for EnvoyLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        // SAFETY: a plain query with no pointers.
        unsafe { abi::envoy_dynamic_module_callback_log_enabled(level(metadata.level())) }
    }
    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        // SAFETY: Envoy copies the message during the call.
        unsafe {
            abi::envoy_dynamic_module_callback_log(
                level(record.level()),
                abi::ModuleBuffer::of(message.as_bytes()),
            )
        }
    }
    fn flush(&self) {}
}

fn level(l: log::Level) -> abi::LogLevel {
    match l {
        log::Level::Error => abi::LOG_ERROR,
        log::Level::Warn => abi::LOG_WARN,
        log::Level::Info => abi::LOG_INFO,
        log::Level::Debug => abi::LOG_DEBUG,
        log::Level::Trace => abi::LOG_TRACE,
    }
}

static LOGGER: EnvoyLogger = EnvoyLogger;

/// The ABI version this module was written against (Envoy only warns on a mismatch).
static ABI_VERSION: &[u8] = b"v0.2.0\0";

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
    ABI_VERSION.as_ptr()
}

/// Parses and validates the configuration once, creates the usage and health records before any
/// request can touch them, and defines the metrics. A configuration with errors returns null,
/// which makes Envoy refuse the filter (and so refuse to start), with the errors in its log.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: FilterConfigEnvoyPtr,
    name: abi::EnvoyBuffer,
    config: abi::EnvoyBuffer,
) -> FilterConfigModulePtr {
    let made = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: Envoy owns both buffers for the duration of this call; they are copied.
        let (name, text) = unsafe { (name.to_vec(), config.to_vec()) };
        new_config(config_envoy, &name, &text)
    }));
    match made {
        Ok(Some(c)) => Arc::into_raw(Arc::new(c)).cast(),
        Ok(None) => std::ptr::null(),
        Err(_) => {
            log::error!("tollgate: refusing to start: the configuration could not be loaded");
            std::ptr::null()
        }
    }
}

fn new_config(
    config_envoy: FilterConfigEnvoyPtr,
    name: &[u8],
    text: &[u8],
) -> Option<FilterConfig> {
    let started = std::time::Instant::now();
    let role = if name == ATTEMPT_ROOT_ID.as_bytes() {
        Role::Attempt
    } else {
        Role::Gateway
    };
    let report = config::load_json(text, &ProcessEnv, Strictness::Serve);
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
    let now = host::now_secs();
    for token in c.keys.keys() {
        quota::ensure_record(&*STORE, &quota::record_key(Scope::Key, token), now);
    }
    for team in c.teams.keys() {
        quota::ensure_record(&*STORE, &quota::record_key(Scope::Team, team), now);
    }
    for d in &c.deployments {
        health::ensure(&*STORE, &d.id);
    }
    let metrics = host::define_metrics(config_envoy);
    let micros = started.elapsed().as_micros();
    log::info!(
        "tollgate: configured {} deployments in {} model groups in {}.{:03} ms (dynamic module)",
        c.deployments.len(),
        c.model_names.len(),
        micros / 1000,
        micros % 1000
    );
    Some(FilterConfig {
        config: Arc::new(c),
        role,
        metrics,
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config: FilterConfigModulePtr,
) {
    if !config.is_null() {
        // SAFETY: made by Arc::into_raw in config_new; Envoy destroys it once.
        drop(unsafe { Arc::from_raw(config.cast::<FilterConfig>()) });
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: FilterConfigModulePtr,
    _filter_envoy: FilterEnvoyPtr,
) -> FilterModulePtr {
    // SAFETY: `config` came from config_new and outlives its filters; this adds a reference.
    let shared = unsafe {
        let ptr = config.cast::<FilterConfig>();
        Arc::increment_strong_count(ptr);
        Arc::from_raw(ptr)
    };
    let filter = HttpFilter::new(Arc::clone(&shared.config), shared.role);
    // Never null: Envoy 1.40 does not expect it.
    Box::into_raw(Box::new(Filter {
        shared,
        stream: Some(Stream {
            filter,
            deferred: false,
            response_deferred: false,
        }),
    }))
    .cast::<c_void>()
    .cast_const()
}

/// Runs one hook of a stream's filter, catching a panic. A panic in the request path answers 500
/// (the request must not go upstream unchecked); elsewhere the stream goes on without the filter.
fn with_filter<R>(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    request_path: bool,
    on_missing: R,
    f: impl FnOnce(&mut Stream, &mut NativeHost, Role) -> R,
) -> R {
    // SAFETY: `module` is the Box made in filter_new; Envoy calls one stream's hooks on one
    // thread, one at a time, until filter_destroy.
    let Some(state) = (unsafe { module.cast_mut().cast::<Filter>().as_mut() }) else {
        return on_missing;
    };
    let shared = Arc::clone(&state.shared);
    let mut host = NativeHost::new(envoy, &shared.metrics);
    let Some(stream) = state.stream.as_mut() else {
        return on_missing;
    };
    let result = catch_unwind(AssertUnwindSafe(|| f(stream, &mut host, shared.role)));
    host.end_hook();
    match result {
        Ok(r) => r,
        Err(_) => {
            state.stream = None;
            log::error!("tollgate: the filter panicked; this stream continues without it");
            if request_path {
                let e = ApiError::new(
                    500,
                    "api_error",
                    "The gateway failed to process the request.",
                );
                host.send_reply(500, &[("content-type", "application/json")], &e.to_json());
            }
            on_missing
        }
    }
}

fn headers_status(a: Action) -> u32 {
    match a {
        Action::Continue => abi::HEADERS_CONTINUE,
        Action::Pause => abi::HEADERS_STOP_ITERATION,
    }
}

fn body_status(a: Action) -> u32 {
    match a {
        Action::Continue => abi::BODY_CONTINUE,
        Action::Pause => abi::BODY_STOP_ITERATION_AND_BUFFER,
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    with_filter(
        envoy,
        module,
        true,
        abi::HEADERS_STOP_ITERATION,
        |s, host, role| {
            if role == Role::Gateway && !end_of_stream {
                s.deferred = true;
                return abi::HEADERS_STOP_ITERATION;
            }
            headers_status(s.filter.on_request_headers(host, end_of_stream))
        },
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    with_filter(
        envoy,
        module,
        true,
        abi::BODY_STOP_ITERATION_AND_BUFFER,
        |s, host, _| {
            if s.deferred {
                if !end_of_stream {
                    return abi::BODY_STOP_ITERATION_AND_BUFFER;
                }
                return body_status(run_deferred(s, host));
            }
            let size = host.body_len(abi::RECEIVED_REQUEST_BODY, abi::BUFFERED_REQUEST_BODY);
            body_status(s.filter.on_request_body(host, size, end_of_stream))
        },
    )
}

/// The gateway's request, once its whole body is in: the filter's headers phase, then its body
/// phase, in one hook. The request headers were held (the headers hook returned StopIteration),
/// so the headers phase can still rewrite them and pick the route, and the router sees nothing
/// until the filter has accepted the request: what proxy-wasm needs Envoy's `json_to_metadata`
/// and buffer filters for. The fields those would have put in metadata come from the body.
fn run_deferred(s: &mut Stream, host: &mut NativeHost) -> Action {
    s.deferred = false;
    let body = host.request_body(0).unwrap_or_default();
    let content_type = host.request_header("content-type");
    host.body_metadata = Some((
        METADATA_NAMESPACE,
        body_metadata::request_metadata(content_type.as_deref(), &body),
    ));
    let size = body.len();
    host.held_request_body = Some(body);
    match s.filter.on_request_headers(host, false) {
        Action::Continue => s.filter.on_request_body(host, size, true),
        Action::Pause => Action::Pause,
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
) -> u32 {
    // A request with trailers never ends its body: a held request runs here, body buffered.
    with_filter(
        envoy,
        module,
        true,
        abi::TRAILERS_STOP_ITERATION,
        |s, host, _| {
            if s.deferred && run_deferred(s, host) == Action::Pause {
                abi::TRAILERS_STOP_ITERATION
            } else {
                abi::TRAILERS_CONTINUE
            }
        },
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    with_filter(
        envoy,
        module,
        false,
        abi::HEADERS_CONTINUE,
        |s, host, role| {
            if role == Role::Gateway && !end_of_stream && !host.response_is_stream() {
                s.response_deferred = true;
                return abi::HEADERS_STOP_ITERATION;
            }
            headers_status(s.filter.on_response_headers(host, end_of_stream))
        },
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    with_filter(envoy, module, false, abi::BODY_CONTINUE, |s, host, _| {
        if s.response_deferred {
            if !end_of_stream {
                return abi::BODY_STOP_ITERATION_AND_BUFFER;
            }
            return body_status(run_deferred_response(s, host));
        }
        let size = host.body_len(abi::RECEIVED_RESPONSE_BODY, abi::BUFFERED_RESPONSE_BODY);
        body_status(s.filter.on_response_body(host, size, end_of_stream))
    })
}

/// A whole non-streamed response: the filter's response-headers phase, then its body phase, in
/// one hook, with the provider's usage read from the body (what the `json_to_metadata` behind
/// the `.wasm` extracts), so the cost can still go in the headers.
fn run_deferred_response(s: &mut Stream, host: &mut NativeHost) -> Action {
    s.response_deferred = false;
    let body = host.response_body(0).unwrap_or_default();
    host.body_metadata = Some((USAGE_NAMESPACE, body_metadata::response_usage(&body)));
    let size = body.len();
    match s.filter.on_response_headers(host, false) {
        Action::Continue => s.filter.on_response_body(host, size, true),
        Action::Pause => Action::Pause,
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
) -> u32 {
    with_filter(
        envoy,
        module,
        false,
        abi::TRAILERS_CONTINUE,
        |s, host, _| {
            if s.response_deferred && run_deferred_response(s, host) == Action::Pause {
                abi::TRAILERS_STOP_ITERATION
            } else {
                abi::TRAILERS_CONTINUE
            }
        },
    )
}

/// The stream is over, however it ended: charge, release, record (proxy-wasm's `on_log`).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
) {
    with_filter(envoy, module, false, (), |s, host, _| {
        s.filter.on_done(host)
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(module: FilterModulePtr) {
    if !module.is_null() {
        // SAFETY: made by Box::into_raw in filter_new; Envoy destroys it once.
        drop(unsafe { Box::from_raw(module.cast_mut().cast::<Filter>()) });
    }
}

// Hooks Envoy requires of every HTTP filter module; Tollgate starts no callouts, streams or
// scheduled work, and does not react to watermarks.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _callout_id: u64,
    _result: u32,
    _headers: *const abi::EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *const abi::EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _stream_id: u64,
    _headers: *const abi::EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _stream_id: u64,
    _data: *const abi::EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _stream_id: u64,
    _trailers: *const abi::EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
) {
}
