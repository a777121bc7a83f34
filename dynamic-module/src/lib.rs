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
mod ticking;

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tollgate::config::{Config, ProcessEnv};
use tollgate::error::ApiError;
use tollgate::filter::{
    body_metadata, HttpFilter, Role, ATTEMPT_ROOT_ID, METADATA_NAMESPACE, USAGE_NAMESPACE,
};
use tollgate::host::{Action, HttpHost};

use abi::{FilterConfigEnvoyPtr, FilterConfigModulePtr, FilterEnvoyPtr, FilterModulePtr};
use host::{MetricIds, NativeHost, Side, STORE};

/// One filter of the bootstrap: its parsed configuration, role and metric ids, shared by the
/// workers' streams.
struct FilterConfig {
    config: Arc<Config>,
    role: Role,
    metrics: MetricIds,
    /// The process's periodic job with the shared store (the gateway's config, with a store).
    ticking: Option<ticking::Ticking>,
}

/// One HTTP stream.
struct Filter {
    shared: Arc<FilterConfig>,
    stream: Stream,
    /// The filter panicked in an earlier hook: the stream's later hooks let it finish without
    /// the filter, except the last, which still tries to settle the request (release its
    /// admission and parallel slot).
    poisoned: bool,
}

/// Which hook `with_filter` runs, for what a panic in it means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hook {
    /// The request path: a panic answers 500 (the request must not go upstream unchecked).
    Request,
    Response,
    /// The stream is over: runs even after a panic.
    Done,
}

struct Stream {
    filter: HttpFilter,
    /// The gateway's request headers, and its non-streamed response headers, are held until
    /// their body is in (see `run_held`); indexed by [`Side`].
    held: [bool; 2],
    /// `tollgate_settings.max_request_body_bytes`: the stream's buffer limit while the gateway
    /// holds a request.
    request_limit: u64,
    /// A held request (or response) waits for a store call: once it goes on, its body's length
    /// is written (what `run_held` does for one that goes on at once).
    waiting_held: Option<Side>,
}

fn hook(side: Side) -> Hook {
    match side {
        Side::Request => Hook::Request,
        Side::Response => Hook::Response,
    }
}

impl Stream {
    fn held(&mut self, side: Side) -> &mut bool {
        let [request, response] = &mut self.held;
        match side {
            Side::Request => request,
            Side::Response => response,
        }
    }

    fn headers(&mut self, host: &mut NativeHost, side: Side, end_of_stream: bool) -> Action {
        match side {
            Side::Request => self.filter.on_request_headers(host, end_of_stream),
            Side::Response => self.filter.on_response_headers(host, end_of_stream),
        }
    }

    fn body(&mut self, host: &mut NativeHost, side: Side, size: usize, end: bool) -> Action {
        match side {
            Side::Request => self.filter.on_request_body(host, size, end),
            Side::Response => self.filter.on_response_body(host, size, end),
        }
    }
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
    let c = tollgate::host::configure(text, &ProcessEnv, &*STORE, host::now_secs())?;
    let metrics = host::define_metrics(config_envoy);
    tollgate::host::log_configured(&c, started.elapsed().as_micros() as u64, "dynamic module");
    let ticking = match role {
        Role::Gateway => ticking::Ticking::start(config_envoy, &c),
        Role::Attempt => None,
    };
    Some(FilterConfig {
        config: Arc::new(c),
        role,
        metrics,
        ticking,
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(
    config: FilterConfigModulePtr,
) {
    if config.is_null() {
        return;
    }
    // SAFETY: made by Arc::into_raw in config_new; Envoy destroys it once.
    let shared = unsafe { Arc::from_raw(config.cast::<FilterConfig>()) };
    if let Some(t) = &shared.ticking {
        // Stop the timer, then the job's last call (Envoy cancels the config's callouts as soon
        // as this hook returns, so it is sent over a socket of the module's own).
        let stopped = catch_unwind(AssertUnwindSafe(|| t.stop(&shared.metrics)));
        if stopped.is_err() {
            log::error!("tollgate: stopping the store's periodic job panicked");
        }
    }
    drop(shared);
}

/// The config's timer fired (on the main thread): the periodic job's turn, maybe.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    config_envoy: FilterConfigEnvoyPtr,
    config: FilterConfigModulePtr,
    _event_id: u64,
) {
    // SAFETY: `config` came from config_new and lives until config_destroy.
    let Some(shared) = (unsafe { config.cast::<FilterConfig>().as_ref() }) else {
        return;
    };
    if let Some(t) = &shared.ticking {
        if catch_unwind(AssertUnwindSafe(|| t.wake(config_envoy, &shared.metrics))).is_err() {
            log::error!("tollgate: the store's periodic job panicked");
        }
    }
}

/// The answer to the config's callout (the periodic job's call).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    config_envoy: FilterConfigEnvoyPtr,
    config: FilterConfigModulePtr,
    _callout_id: u64,
    result: u32,
    headers: *const abi::EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const abi::EnvoyBuffer,
    body_chunks_size: usize,
) {
    let callout = Callout {
        result,
        headers,
        headers_size,
        body_chunks,
        body_chunks_size,
    };
    config_callout_done(config_envoy, config, &callout);
}

/// A callout's result as Envoy hands it to a hook (valid during the hook).
struct Callout {
    result: u32,
    headers: *const abi::EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const abi::EnvoyBuffer,
    body_chunks_size: usize,
}

impl Callout {
    fn answer(&self) -> tollgate::store::remote::Answer {
        // SAFETY: Envoy's pointers, valid for the hook that received them.
        unsafe {
            host::callout_answer(
                self.result,
                self.headers,
                self.headers_size,
                self.body_chunks,
                self.body_chunks_size,
            )
        }
    }
}

fn config_callout_done(
    config_envoy: FilterConfigEnvoyPtr,
    config: FilterConfigModulePtr,
    callout: &Callout,
) {
    // SAFETY: `config` came from config_new and lives until config_destroy.
    let Some(shared) = (unsafe { config.cast::<FilterConfig>().as_ref() }) else {
        return;
    };
    let Some(t) = &shared.ticking else {
        return;
    };
    let done = catch_unwind(AssertUnwindSafe(|| {
        t.answer(config_envoy, &shared.metrics, callout.answer());
    }));
    if done.is_err() {
        log::error!("tollgate: the store's periodic job panicked");
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
    let request_limit = shared.config.settings.max_request_body_bytes;
    // Never null: Envoy 1.40 does not expect it.
    Box::into_raw(Box::new(Filter {
        shared,
        stream: Stream {
            filter,
            held: [false; 2],
            request_limit,
            waiting_held: None,
        },
        poisoned: false,
    }))
    .cast::<c_void>()
    .cast_const()
}

/// Runs one hook of a stream's filter, catching a panic (see [`Hook`]).
fn with_filter<R>(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    hook: Hook,
    on_missing: R,
    f: impl FnOnce(&mut Stream, &mut NativeHost, Role) -> R,
) -> R {
    // SAFETY: `module` is the Box made in filter_new; Envoy calls one stream's hooks on one
    // thread, one at a time, until filter_destroy.
    let Some(state) = (unsafe { module.cast_mut().cast::<Filter>().as_mut() }) else {
        return on_missing;
    };
    if state.poisoned && hook != Hook::Done {
        return on_missing;
    }
    let mut host = NativeHost::new(envoy, &state.shared.metrics);
    let (stream, role) = (&mut state.stream, state.shared.role);
    let result = catch_unwind(AssertUnwindSafe(|| f(stream, &mut host, role)));
    host.end_hook();
    match result {
        Ok(r) => r,
        Err(_) => {
            state.poisoned = true;
            log::error!("tollgate: the filter panicked; this stream continues without it");
            if hook == Hook::Request {
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

/// A headers hook. The gateway holds the request headers until the body is in, and the headers
/// of a response that is not a stream (see `run_held`). A held request's body is held to
/// `max_request_body_bytes` by Envoy itself: the stream's buffer limit is set to it here, before
/// any body arrives (an HTTP/2 stream starts with its flow-control window as the limit, 256 MiB
/// by default, and the route may have raised it for the response), so one byte more is Envoy's
/// 413, on every protocol. The router sets the route's `request_body_buffer_limit` (the
/// response's limit) once the request is in.
fn on_headers(envoy: FilterEnvoyPtr, module: FilterModulePtr, side: Side, end: bool) -> u32 {
    let on_missing = match side {
        Side::Request => abi::HEADERS_STOP_ITERATION,
        Side::Response => abi::HEADERS_CONTINUE,
    };
    with_filter(envoy, module, hook(side), on_missing, |s, host, role| {
        // The gateway holds requests (to route on the body); both roles hold non-streamed
        // responses, so that a body that is no answer can still become a 502 (and, in the
        // attempt listener, another attempt) before the headers go.
        let hold = !end
            && match side {
                Side::Request => role == Role::Gateway,
                Side::Response => !host.response_is_stream(),
            };
        if hold {
            if side == Side::Request {
                host.set_buffer_limit(s.request_limit);
            }
            *s.held(side) = true;
            return abi::HEADERS_STOP_ITERATION;
        }
        headers_status(s.headers(host, side, end))
    })
}

/// A body hook: buffers a held body until its end, or hands each chunk to the filter.
fn on_body(envoy: FilterEnvoyPtr, module: FilterModulePtr, side: Side, end: bool) -> u32 {
    let on_missing = match side {
        Side::Request => abi::BODY_STOP_ITERATION_AND_BUFFER,
        Side::Response => abi::BODY_CONTINUE,
    };
    with_filter(envoy, module, hook(side), on_missing, |s, host, _| {
        if *s.held(side) {
            if !end {
                return abi::BODY_STOP_ITERATION_AND_BUFFER;
            }
            return body_status(run_held(s, host, side));
        }
        let size = host.body_len(side);
        body_status(s.body(host, side, size, end))
    })
}

/// A trailers hook: a body followed by trailers never ends itself, so a held one runs here.
fn on_trailers(envoy: FilterEnvoyPtr, module: FilterModulePtr, side: Side) -> u32 {
    with_filter(
        envoy,
        module,
        hook(side),
        abi::TRAILERS_CONTINUE,
        |s, host, _| {
            if *s.held(side) && run_held(s, host, side) == Action::Pause {
                abi::TRAILERS_STOP_ITERATION
            } else {
                abi::TRAILERS_CONTINUE
            }
        },
    )
}

/// A held request or response, once its whole body is in: the filter's headers phase, then its
/// body phase, in one hook. The headers were held (their hook returned StopIteration), so the
/// headers phase can still rewrite them (pick the route, put the cost in the response), and
/// nothing goes on until the filter has seen the body: what proxy-wasm needs Envoy's
/// `json_to_metadata` and buffer filters for. The fields those would have put in metadata come
/// from the body: `model` and `stream` from a request, the provider's usage from a response.
fn run_held(s: &mut Stream, host: &mut NativeHost, side: Side) -> Action {
    *s.held(side) = false;
    if side == Side::Request && host.body_len(side) as u64 > s.request_limit {
        // Envoy refuses a held body past the limit as it buffers it, but hands over the last
        // chunk (with the end of the stream) without buffering it first.
        let e = ApiError::body_too_large(s.request_limit);
        host.send_reply(
            e.status,
            &[("content-type", "application/json")],
            &e.to_json(),
        );
        return Action::Pause;
    }
    let body = match side {
        Side::Request => host.request_body(0),
        Side::Response => host.response_body(0),
    }
    .unwrap_or_default();
    let size = body.len();
    match side {
        Side::Request => {
            let content_type = host.request_header("content-type");
            let fields = body_metadata::request_metadata(content_type.as_deref(), &body);
            host.body_metadata = Some((METADATA_NAMESPACE, fields));
            host.held_request_body.replace(Some(body));
        }
        Side::Response => {
            let content_type = host.response_header("content-type");
            let fields = body_metadata::response_usage(content_type.as_deref(), &body);
            host.body_metadata = Some((USAGE_NAMESPACE, fields));
        }
    }
    // The whole body is known before the headers go: its length is written below, rather than
    // letting Envoy send it chunked, so the filter's removal of the old one (as it must when
    // headers go first) is held back.
    host.length_follows = Some(side);
    let action = match s.headers(host, side, false) {
        Action::Continue => s.body(host, side, size, true),
        Action::Pause => Action::Pause,
    };
    host.length_follows = None;
    if action == Action::Pause && s.filter.waits_for_store() {
        // Its length is written when it goes on (see the callout hook).
        s.waiting_held = Some(side);
    }
    if action == Action::Continue {
        let length = host.body_len(side).to_string();
        match side {
            Side::Request => host.set_request_header("content-length", &length),
            Side::Response => host.set_response_header("content-length", &length),
        }
    } else if host.length_removed {
        match side {
            Side::Request => host.remove_request_header("content-length"),
            Side::Response => host.remove_response_header("content-length"),
        }
    }
    action
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    on_headers(envoy, module, Side::Request, end_of_stream)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    on_body(envoy, module, Side::Request, end_of_stream)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
) -> u32 {
    on_trailers(envoy, module, Side::Request)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    on_headers(envoy, module, Side::Response, end_of_stream)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    on_body(envoy, module, Side::Response, end_of_stream)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
) -> u32 {
    on_trailers(envoy, module, Side::Response)
}

/// The stream is over, however it ended: charge, release, record (proxy-wasm's `on_log`).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
) {
    with_filter(envoy, module, Hook::Done, (), |s, host, _| {
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

/// The answer to a stream's store call: the filter decides; a request it lets go on continues
/// (its held body's length written first).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    _callout_id: u64,
    result: u32,
    headers: *const abi::EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const abi::EnvoyBuffer,
    body_chunks_size: usize,
) {
    let callout = Callout {
        result,
        headers,
        headers_size,
        body_chunks,
        body_chunks_size,
    };
    stream_callout_done(envoy, module, &callout);
}

fn stream_callout_done(envoy: FilterEnvoyPtr, module: FilterModulePtr, callout: &Callout) {
    let answer = callout.answer();
    // A call made from the response phase (a Responses turn kept) holds the response.
    let side = with_filter(envoy, module, Hook::Done, Side::Request, |s, _, _| match s
        .filter
        .resumes_response()
    {
        true => Side::Response,
        false => Side::Request,
    });
    let resume = with_filter(envoy, module, hook(side), false, |s, host, _| {
        if s.filter.on_http_call_done(host, answer) != Action::Continue {
            if !s.filter.waits_for_store() {
                s.waiting_held = None;
            }
            return false;
        }
        if s.waiting_held.take() == Some(side) {
            let length = host.body_len(side).to_string();
            match side {
                Side::Request => host.set_request_header("content-length", &length),
                Side::Response => host.set_response_header("content-length", &length),
            }
        }
        true
    });
    if resume {
        // SAFETY: `envoy` is the stream Envoy handed to this hook.
        unsafe {
            match side {
                Side::Request => {
                    abi::envoy_dynamic_module_callback_http_filter_continue_decoding(envoy)
                }
                Side::Response => {
                    abi::envoy_dynamic_module_callback_http_filter_continue_encoding(envoy)
                }
            }
        }
    }
}

// Hooks Envoy requires of every HTTP filter module; Tollgate starts no streams or scheduled
// work of a stream's, and does not react to watermarks.

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
