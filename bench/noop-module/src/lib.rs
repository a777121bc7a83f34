//! The do-nothing dynamic module for `make bench` rows (2m) and (2n).
//!
//! With an empty filter config (2m) it holds each request until its body is in and calls nothing
//! in Envoy. With a config (2n) it also asks of Envoy, per request, the work Tollgate's module
//! asks of it on (4m), without any of Tollgate's own work: the request body read and put back,
//! the request headers written and the route matched again, the response held until its end,
//! its body read and put back and its headers written. The config is one line per header:
//! `request <name> <value>` or `response <name> <value>`.
//!
//! Built with `--features work` (bench/decompose.py), a line `work tollgate` also runs Tollgate's
//! whole filter per request on the in-memory host the unit tests use (`work.rs`), and
//! `work spin match` spins for as long as that takes on an idle core: (2n) plus Tollgate's own
//! work, with no calls into Envoy beyond (2n)'s, and (2n) plus the same time of work that touches
//! no memory.

use std::ffi::c_void;

type Ptr = *const c_void;

/// A non-null pointer for Envoy to hold in (2m): the module keeps no state.
static STATE: u8 = 0;

fn state() -> Ptr {
    std::ptr::addr_of!(STATE).cast()
}

/// A buffer as Envoy passes it (pointer, length).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Buffer {
    ptr: *const u8,
    length: usize,
}

impl Buffer {
    fn of(bytes: &[u8]) -> Self {
        Buffer {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }

    /// # Safety
    /// `ptr` must point at `length` readable bytes (or be null) for the slice's life.
    unsafe fn as_slice<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(self.ptr, self.length)
        }
    }
}

// The few callbacks (2n) uses, as Envoy 1.40 exports them (see Tollgate's dynamic-module/src/abi.rs).
extern "C" {
    fn envoy_dynamic_module_callback_http_set_header(
        filter: *mut c_void,
        header_type: u32,
        key: Buffer,
        value: Buffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: *mut c_void,
        body_type: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: *mut c_void,
        body_type: u32,
        result: *mut Buffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_drain_body(
        filter: *mut c_void,
        body_type: u32,
        bytes: usize,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_append_body(
        filter: *mut c_void,
        body_type: u32,
        data: Buffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_clear_route_cache(filter: *mut c_void);
}

const REQUEST_HEADERS: u32 = 0;
const RESPONSE_HEADERS: u32 = 2;
/// Received and buffered body, request side; the response side's are these + 2.
const RECEIVED_REQUEST_BODY: u32 = 0;
const BUFFERED_REQUEST_BODY: u32 = 1;

/// (2n)'s headers to write, per side, and the work to do per request.
struct Mechanics {
    request: Vec<(String, String)>,
    response: Vec<(String, String)>,
    #[cfg(feature = "work")]
    work: work::Work,
}

#[cfg(feature = "work")]
mod work;

fn mechanics(config: Ptr) -> Option<&'static Mechanics> {
    if config.is_null() || config == state() {
        return None;
    }
    // SAFETY: any other config pointer is the leaked Mechanics made in config_new.
    Some(unsafe { &*config.cast::<Mechanics>() })
}

/// Reads the body this hook ends (buffered, then received), drains it, and puts the same bytes
/// back where Tollgate's module puts a rewritten body; then writes `headers` and the length.
///
/// # Safety
/// `filter` must be the live filter of the hook that calls this.
unsafe fn rewrite(filter: *mut c_void, response: bool, headers: &[(String, String)]) {
    let side = if response { 2 } else { 0 };
    let (received, buffered) = (RECEIVED_REQUEST_BODY + side, BUFFERED_REQUEST_BODY + side);
    let mut body = Vec::new();
    let mut had_buffer = false;
    for t in [buffered, received] {
        let n = envoy_dynamic_module_callback_http_get_body_chunks_size(filter, t);
        if n == 0 {
            continue;
        }
        had_buffer |= t == buffered;
        let mut chunks = vec![Buffer::of(&[]); n];
        if envoy_dynamic_module_callback_http_get_body_chunks(filter, t, chunks.as_mut_ptr()) {
            for c in chunks {
                body.extend_from_slice(c.as_slice());
            }
        }
        envoy_dynamic_module_callback_http_drain_body(filter, t, usize::MAX);
    }
    let target = if had_buffer { buffered } else { received };
    envoy_dynamic_module_callback_http_append_body(filter, target, Buffer::of(&body));
    let map = if response {
        RESPONSE_HEADERS
    } else {
        REQUEST_HEADERS
    };
    let length = body.len().to_string();
    for (k, v) in headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain([("content-length", length.as_str())])
    {
        envoy_dynamic_module_callback_http_set_header(
            filter,
            map,
            Buffer::of(k.as_bytes()),
            Buffer::of(v.as_bytes()),
        );
    }
    if !response {
        envoy_dynamic_module_callback_http_clear_route_cache(filter);
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    b"v0.2.0\0".as_ptr()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _: *mut c_void,
    _: Buffer,
    config: Buffer,
) -> Ptr {
    // SAFETY: Envoy owns the config bytes for this call; they are parsed before it returns.
    let text = String::from_utf8_lossy(unsafe { config.as_slice() }).into_owned();
    let mut m = Mechanics {
        request: Vec::new(),
        response: Vec::new(),
        #[cfg(feature = "work")]
        work: work::Work::None,
    };
    for line in text.lines() {
        let mut parts = line.splitn(3, ' ');
        let (side, name, value) = (parts.next(), parts.next(), parts.next());
        let (Some(name), Some(value)) = (name, value) else {
            if line.trim().is_empty() {
                continue;
            }
            return std::ptr::null();
        };
        let pair = (name.to_string(), value.to_string());
        match side {
            Some("request") => m.request.push(pair),
            Some("response") => m.response.push(pair),
            #[cfg(feature = "work")]
            Some("work") => match work::Work::from_config(name, value) {
                Some(w) => m.work = w,
                None => return std::ptr::null(),
            },
            // A line this build cannot honour refuses the config (Envoy names the filter).
            _ => return std::ptr::null(),
        }
    }
    #[cfg(feature = "work")]
    let idle = matches!(m.work, work::Work::None);
    #[cfg(not(feature = "work"))]
    let idle = true;
    if m.request.is_empty() && m.response.is_empty() && idle {
        return state();
    }
    Box::into_raw(Box::new(m)).cast::<c_void>().cast_const()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: Ptr) {
    if mechanics(config).is_some() {
        // SAFETY: made by Box::into_raw in config_new; Envoy destroys it once, after its streams.
        drop(unsafe { Box::from_raw(config.cast::<Mechanics>().cast_mut()) });
    }
}

/// The stream's pointer is its config's: (2n) keeps no per-stream state.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(config: Ptr, _: *mut c_void) -> Ptr {
    config
}

/// Holds the request headers until the body is in (StopIteration), unless there is no body.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    _: *mut c_void,
    _: Ptr,
    end_of_stream: bool,
) -> u32 {
    u32::from(!end_of_stream)
}

/// Buffers the body until its end (StopIterationAndBuffer), then lets headers and body go on.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    filter: *mut c_void,
    module: Ptr,
    end_of_stream: bool,
) -> u32 {
    if let (true, Some(m)) = (end_of_stream, mechanics(module)) {
        #[cfg(feature = "work")]
        m.work.run();
        // SAFETY: Envoy calls this hook with its live filter.
        unsafe { rewrite(filter, false, &m.request) };
    }
    u32::from(!end_of_stream)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _: *mut c_void,
    _: Ptr,
) -> u32 {
    0
}

/// (2n) holds a response with a body until its end, as Tollgate does a non-streamed one.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _: *mut c_void,
    module: Ptr,
    end_of_stream: bool,
) -> u32 {
    u32::from(mechanics(module).is_some() && !end_of_stream)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    filter: *mut c_void,
    module: Ptr,
    end_of_stream: bool,
) -> u32 {
    match mechanics(module) {
        None => 0,
        Some(_) if !end_of_stream => 1,
        Some(m) => {
            // SAFETY: Envoy calls this hook with its live filter.
            unsafe { rewrite(filter, true, &m.response) };
            0
        }
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _: *mut c_void,
    _: Ptr,
) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(_: *mut c_void, _: Ptr) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(_: Ptr) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _: *mut c_void,
    _: Ptr,
    _: u64,
    _: u32,
    _: *const c_void,
    _: usize,
    _: *const c_void,
    _: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _: *mut c_void,
    _: Ptr,
    _: u64,
    _: *const c_void,
    _: usize,
    _: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _: *mut c_void,
    _: Ptr,
    _: u64,
    _: *const c_void,
    _: usize,
    _: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _: *mut c_void,
    _: Ptr,
    _: u64,
    _: *const c_void,
    _: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _: *mut c_void,
    _: Ptr,
    _: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _: *mut c_void,
    _: Ptr,
    _: u64,
    _: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(_: *mut c_void, _: Ptr, _: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _: *mut c_void,
    _: Ptr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _: *mut c_void,
    _: Ptr,
) {
}
