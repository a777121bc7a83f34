//! The proxy-wasm ABI calls the filter makes, returning errors instead of panicking.
//!
//! proxy-wasm-rust-sdk 0.2.5 panics on any status it does not expect (even `NotFound` from
//! `set_map_value`), and a panic kills the worker's VM. These bindings call the same host
//! functions and hand every status back to the caller.

use std::ptr::{null, null_mut};

pub const REQUEST_HEADERS: u32 = 0;
pub const RESPONSE_HEADERS: u32 = 2;
pub const REQUEST_BODY: u32 = 0;
pub const RESPONSE_BODY: u32 = 1;
pub const PLUGIN_CONFIGURATION: u32 = 7;
/// The headers and body of an HTTP call's response (`dispatch_http_call`).
pub const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
pub const HTTP_CALL_RESPONSE_BODY: u32 = 4;
/// `proxy_continue_stream`'s stream: the request.
const STREAM_REQUEST: u32 = 0;
const STREAM_RESPONSE: u32 = 1;

const OK: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_value(
        map: u32,
        key: *const u8,
        key_len: usize,
        out: *mut *mut u8,
        out_len: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map: u32, out: *mut *mut u8, out_len: *mut usize) -> u32;
    fn proxy_replace_header_map_value(
        map: u32,
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: *const u8, key_len: usize) -> u32;
    fn proxy_get_buffer_bytes(
        buffer: u32,
        start: usize,
        max: usize,
        out: *mut *mut u8,
        out_len: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_len: usize,
    ) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_len: usize,
        value: *const u8,
        value_len: usize,
    ) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_len: usize,
        out: *mut *mut u8,
        out_len: *mut usize,
    ) -> u32;
    #[allow(clippy::too_many_arguments)]
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_len: usize,
        body: *const u8,
        body_len: usize,
        headers: *const u8,
        headers_len: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_get_current_time_nanoseconds(out: *mut u64) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_len: usize, out_id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_len: usize,
        out: *mut *mut u8,
        out_len: *mut usize,
        out_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_len: usize,
        value: *const u8,
        value_len: usize,
        cas: u32,
    ) -> u32;
    fn proxy_continue_stream(stream: u32) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_done() -> u32;
}

/// Lets a request that waited (a `Pause`) go on.
pub fn resume_request() -> Result<(), u32> {
    // SAFETY: a plain value.
    match unsafe { proxy_continue_stream(STREAM_REQUEST) } {
        OK => Ok(()),
        other => Err(other),
    }
}

/// Lets a response that waited (a `Pause`) go on.
pub fn resume_response() -> Result<(), u32> {
    // SAFETY: a plain value.
    match unsafe { proxy_continue_stream(STREAM_RESPONSE) } {
        OK => Ok(()),
        other => Err(other),
    }
}

/// Makes the host call the root context's `on_tick` every `period_ms`.
pub fn set_tick_period(period_ms: u32) -> Result<(), u32> {
    // SAFETY: a plain value.
    match unsafe { proxy_set_tick_period_milliseconds(period_ms) } {
        OK => Ok(()),
        other => Err(other),
    }
}

/// A root context whose `on_done` returned false says it is done now.
pub fn done() -> Result<(), u32> {
    // SAFETY: no arguments.
    match unsafe { proxy_done() } {
        OK => Ok(()),
        other => Err(other),
    }
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn random_get(buf: *mut u8, len: usize) -> u16;
}

pub const GAUGE: u32 = 1;
const CAS_MISMATCH: u32 = 8;

/// A shared-data value and its CAS version; `None` when the key is absent.
pub fn get_shared(key: &str) -> Option<(Vec<u8>, u32)> {
    let mut ptr = null_mut();
    let mut len = 0;
    let mut cas = 0u32;
    // SAFETY: pointers refer to live locals; the host writes an owned allocation into them.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut ptr, &mut len, &mut cas) };
    if status != OK {
        return None;
    }
    // SAFETY: on OK the host returned an allocation of `len` bytes (or null for empty).
    Some((unsafe { take(ptr, len) }.unwrap_or_default(), cas))
}

pub enum SetShared {
    Ok,
    CasMismatch,
    Failed(u32),
}

pub fn set_shared(key: &str, value: &[u8], cas: u32) -> SetShared {
    // SAFETY: pointers and lengths describe live borrowed slices.
    match unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    } {
        OK => SetShared::Ok,
        CAS_MISMATCH => SetShared::CasMismatch,
        other => SetShared::Failed(other),
    }
}

/// Random bytes from the host (WASI `random_get`).
pub fn random_bytes() -> [u8; 32] {
    let mut buf = [0u8; 32];
    // SAFETY: the host fills exactly `buf.len()` bytes of a live local.
    let status = unsafe { random_get(buf.as_mut_ptr(), buf.len()) };
    if status != 0 {
        // Never hand out a predictable key: mix the clock in so a failure is at least not constant.
        let t = now_ns().to_le_bytes();
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= t.get(i % 8).copied().unwrap_or(0);
        }
    }
    buf
}

pub const COUNTER: u32 = 0;
pub const HISTOGRAM: u32 = 2;

pub fn define_metric(kind: u32, name: &str) -> Option<u32> {
    let mut id = 0u32;
    // SAFETY: the name slice is live for the call; the host writes one u32 into a live local.
    let status = unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) };
    (status == OK).then_some(id)
}

pub fn increment_metric(id: u32, delta: u64) -> bool {
    // SAFETY: plain values only.
    unsafe { proxy_increment_metric(id, i64::try_from(delta).unwrap_or(i64::MAX)) == OK }
}

pub fn record_metric(id: u32, value: u64) -> bool {
    // SAFETY: plain values only.
    unsafe { proxy_record_metric(id, value) == OK }
}

/// Takes ownership of a buffer the host allocated through `proxy_on_memory_allocate`.
///
/// # Safety
/// `ptr` must be null or a host-returned allocation of exactly `len` bytes.
unsafe fn take(ptr: *mut u8, len: usize) -> Option<Vec<u8>> {
    if ptr.is_null() {
        None
    } else {
        Some(Vec::from_raw_parts(ptr, len, len))
    }
}

pub fn header(map: u32, name: &str) -> Option<Vec<u8>> {
    let mut ptr = null_mut();
    let mut len = 0;
    // SAFETY: pointers refer to live locals; the host writes an owned allocation into them.
    let status =
        unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), &mut ptr, &mut len) };
    if status != OK {
        return None;
    }
    // SAFETY: on OK the host returned an allocation of `len` bytes (or null for empty).
    Some(unsafe { take(ptr, len) }.unwrap_or_default())
}

/// A whole header map, serialized (see `pairs`); `None` if the host has no such map now.
pub fn header_pairs(map: u32) -> Option<Vec<u8>> {
    let mut ptr = null_mut();
    let mut len = 0;
    // SAFETY: as in `header`.
    let status = unsafe { proxy_get_header_map_pairs(map, &mut ptr, &mut len) };
    if status != OK {
        return None;
    }
    // SAFETY: as in `header`.
    Some(unsafe { take(ptr, len) }.unwrap_or_default())
}

pub fn set_header(map: u32, name: &str, value: &str) -> Result<(), u32> {
    // SAFETY: pointers and lengths describe live borrowed slices.
    let status = unsafe {
        proxy_replace_header_map_value(map, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    };
    if status == OK {
        Ok(())
    } else {
        Err(status)
    }
}

pub fn remove_header(map: u32, name: &str) -> Result<(), u32> {
    // SAFETY: as in `set_header`.
    let status = unsafe { proxy_remove_header_map_value(map, name.as_ptr(), name.len()) };
    if status == OK {
        Ok(())
    } else {
        Err(status)
    }
}

pub fn buffer(kind: u32, start: usize, max: usize) -> Option<Vec<u8>> {
    let mut ptr = null_mut();
    let mut len = 0;
    // SAFETY: as in `header`.
    let status = unsafe { proxy_get_buffer_bytes(kind, start, max, &mut ptr, &mut len) };
    if status != OK {
        return None;
    }
    // SAFETY: as in `header`.
    unsafe { take(ptr, len) }
}

pub fn set_buffer(kind: u32, start: usize, size: usize, data: &[u8]) -> Result<(), u32> {
    // SAFETY: as in `set_header`.
    let status = unsafe { proxy_set_buffer_bytes(kind, start, size, data.as_ptr(), data.len()) };
    if status == OK {
        Ok(())
    } else {
        Err(status)
    }
}

pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    property_status(path).ok().flatten()
}

/// Sets a stream property: Envoy keeps it as filter state `wasm.<name>`, which an access log
/// reads as `%FILTER_STATE(wasm.<name>:PLAIN)%`.
pub fn set_property(name: &str, value: &[u8]) -> Result<(), u32> {
    // SAFETY: both buffers are valid for their lengths during the call; the host copies them.
    let status =
        unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
    if status == 0 {
        Ok(())
    } else {
        Err(status)
    }
}

pub const NOT_FOUND: u32 = 1;

/// An attribute, or the host's status when it has none (`NOT_FOUND`: no such attribute; other
/// statuses: it exists but cannot be serialized). `Ok(None)`: present but empty.
pub fn property_status(path: &[&str]) -> Result<Option<Vec<u8>>, u32> {
    let mut serialized = Vec::with_capacity(path.iter().map(|p| p.len() + 1).sum());
    for (i, part) in path.iter().enumerate() {
        if i > 0 {
            serialized.push(0);
        }
        serialized.extend_from_slice(part.as_bytes());
    }
    let mut ptr = null_mut();
    let mut len = 0;
    // SAFETY: as in `header`.
    let status =
        unsafe { proxy_get_property(serialized.as_ptr(), serialized.len(), &mut ptr, &mut len) };
    if status != OK {
        return Err(status);
    }
    // SAFETY: as in `header`.
    Ok(unsafe { take(ptr, len) })
}

pub fn send_local_response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Result<(), u32> {
    let mut map = Vec::with_capacity(
        4 + headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 10)
            .sum::<usize>(),
    );
    map.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (k, v) in headers {
        map.extend_from_slice(&(k.len() as u32).to_le_bytes());
        map.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in headers {
        map.extend_from_slice(k.as_bytes());
        map.push(0);
        map.extend_from_slice(v.as_bytes());
        map.push(0);
    }
    // SAFETY: all pointers describe live slices for the duration of the call.
    let status = unsafe {
        proxy_send_local_response(
            u32::from(status),
            null(),
            0,
            body.as_ptr(),
            body.len(),
            map.as_ptr(),
            map.len(),
            -1,
        )
    };
    if status == OK {
        Ok(())
    } else {
        Err(status)
    }
}

pub fn now_ns() -> u64 {
    let mut t = 0u64;
    // SAFETY: the host writes one u64 into a live local.
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut t) };
    if status == OK {
        t
    } else {
        0
    }
}
