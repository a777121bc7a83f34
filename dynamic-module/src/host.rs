//! [`HttpHost`] over Envoy's dynamic-module ABI: each call is a direct call into Envoy on the
//! stream's worker thread, with no VM to cross and no copy of a header map to read one header.

use std::cell::{Cell, RefCell};
use std::io::Read;
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use tollgate::filter::{body_metadata, USAGE_NAMESPACE};
use tollgate::host::{HttpCall, HttpHost, TickHost};
use tollgate::stats::{Family, Kind, Metric};
use tollgate::store::remote::Answer;
use tollgate::store::{ProcessStore, Store};

use crate::abi::{self, EnvoyBuffer, FilterEnvoyPtr, ModuleBuffer};

/// Keys, usage counters and routing health: one map for the whole Envoy process, shared by every
/// worker thread and every filter instance (as a wasm `vm_id`'s shared data is).
pub static STORE: LazyLock<ProcessStore> = LazyLock::new(ProcessStore::default);

/// The ids Envoy gave the metric families when the filter config was created (metrics can only
/// be defined then); `None` for a family Envoy refused.
pub type MetricIds = [Option<usize>; Family::ALL.len()];

/// Defines every family as one tagged metric (its labels become Envoy tags, hence Prometheus
/// labels, without `stats_tags` regexes).
pub fn define_metrics(config: abi::FilterConfigEnvoyPtr) -> MetricIds {
    let mut ids: MetricIds = [None; Family::ALL.len()];
    for (slot, family) in ids.iter_mut().zip(Family::ALL) {
        let names: Vec<ModuleBuffer> = family
            .tag_names()
            .iter()
            .map(|n| ModuleBuffer::of(n.as_bytes()))
            .collect();
        let name = ModuleBuffer::of(family.base_name().as_bytes());
        let mut id = 0usize;
        // SAFETY: `config` is the pointer Envoy passed to config_new, the buffers outlive the call.
        let result = unsafe {
            let define = match family.kind() {
                Kind::Counter => {
                    abi::envoy_dynamic_module_callback_http_filter_config_define_counter
                }
                Kind::Gauge => abi::envoy_dynamic_module_callback_http_filter_config_define_gauge,
                Kind::Histogram => {
                    abi::envoy_dynamic_module_callback_http_filter_config_define_histogram
                }
            };
            define(config, name, names.as_ptr(), names.len(), &mut id)
        };
        if result == abi::METRICS_SUCCESS {
            *slot = Some(id);
        } else {
            log::warn!(
                "tollgate: Envoy refused to define metric '{}' (result {result})",
                family.base_name()
            );
        }
    }
    ids
}

/// Which way a hook's headers and body go.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

impl Side {
    /// The bytes received in this hook.
    fn received(self) -> abi::BodyType {
        match self {
            Side::Request => abi::RECEIVED_REQUEST_BODY,
            Side::Response => abi::RECEIVED_RESPONSE_BODY,
        }
    }

    /// The bytes buffered by earlier hooks (or filters).
    fn buffered(self) -> abi::BodyType {
        match self {
            Side::Request => abi::BUFFERED_REQUEST_BODY,
            Side::Response => abi::BUFFERED_RESPONSE_BODY,
        }
    }
}

#[derive(Clone, Copy)]
enum Typed {
    String,
    Number,
    Bool,
}

/// The host of one HTTP stream, valid during one of its hooks.
pub struct NativeHost<'a> {
    pub filter: FilterEnvoyPtr,
    pub metrics: &'a MetricIds,
    /// A request header was written in this hook: the route must be matched again (the filter
    /// picks the cluster by a header), as proxy-wasm does by itself.
    pub request_headers_changed: bool,
    /// A metadata namespace (`tollgate` for a held request, `tollgate_usage` for a held
    /// response) computed from the body, instead of read from what `json_to_metadata` wrote.
    pub body_metadata: Option<(&'static str, body_metadata::Entries)>,
    /// The request body, already read in this hook: handed to the filter instead of a re-read.
    pub held_request_body: RefCell<Option<Vec<u8>>>,
    /// Where this hook's body lies, once asked (it does not move until the filter replaces it).
    body_layout: Cell<Option<BodyLayout>>,
    /// The length of the body the filter wrote in this hook.
    written_body_len: Cell<Option<(Side, usize)>>,
    /// A held body's side, whose `content-length` is written once the filter is done with it:
    /// the filter's removal of the old length is then not sent (the new one replaces it).
    pub length_follows: Option<Side>,
    /// The filter asked to remove that side's `content-length` in this hook.
    pub length_removed: bool,
    /// The response's header names, read once in a hook that removes some: most of the
    /// provider headers the filter removes are not there, and a read is cheaper than a removal.
    response_names: RefCell<Option<Vec<Vec<u8>>>>,
}

/// Which body buffers hold a side's body in this hook, and how many chunks each holds.
#[derive(Clone, Copy)]
struct BodyLayout {
    side: Side,
    parts: [Option<abi::BodyType>; 2],
    chunks: [usize; 2],
}

impl<'a> NativeHost<'a> {
    pub fn new(filter: FilterEnvoyPtr, metrics: &'a MetricIds) -> Self {
        NativeHost {
            filter,
            metrics,
            request_headers_changed: false,
            body_metadata: None,
            held_request_body: RefCell::new(None),
            length_follows: None,
            length_removed: false,
            body_layout: Cell::new(None),
            written_body_len: Cell::new(None),
            response_names: RefCell::new(None),
        }
    }

    /// Sets the stream's buffer limit (one for both directions): a body held past it is Envoy's
    /// own 413 or 500.
    pub fn set_buffer_limit(&self, limit: u64) {
        // SAFETY: `filter` is live for this hook.
        unsafe { abi::envoy_dynamic_module_callback_http_set_buffer_limit(self.filter, limit) }
    }

    /// The hook is over.
    pub fn end_hook(&mut self) {
        if std::mem::take(&mut self.request_headers_changed) {
            // SAFETY: `filter` is live for this hook.
            unsafe { abi::envoy_dynamic_module_callback_http_clear_route_cache(self.filter) }
        }
    }

    fn header(&self, map: abi::HeaderType, name: &str) -> Option<String> {
        let mut value = EnvoyBuffer::empty();
        let mut count = 0usize;
        // SAFETY: `filter` is live for this hook; the value is copied before it returns.
        unsafe {
            abi::envoy_dynamic_module_callback_http_get_header(
                self.filter,
                map,
                ModuleBuffer::of(name.as_bytes()),
                &mut value,
                0,
                &mut count,
            )
            .then(|| String::from_utf8_lossy(value.as_slice()).into_owned())
        }
    }

    /// A header map's names, once each (a header with several values is listed once per value).
    fn header_names(&self, map: abi::HeaderType) -> Vec<Vec<u8>> {
        // SAFETY: `filter` is live for this hook; names are copied before it returns.
        unsafe {
            let n = abi::envoy_dynamic_module_callback_http_get_headers_size(self.filter, map);
            let empty = abi::EnvoyHttpHeader {
                key_ptr: std::ptr::null(),
                key_length: 0,
                value_ptr: std::ptr::null(),
                value_length: 0,
            };
            let mut headers = vec![empty; n];
            if n == 0
                || !abi::envoy_dynamic_module_callback_http_get_headers(
                    self.filter,
                    map,
                    headers.as_mut_ptr(),
                )
            {
                return Vec::new();
            }
            let mut names: Vec<Vec<u8>> = headers
                .iter()
                .map(|h| {
                    EnvoyBuffer {
                        ptr: h.key_ptr,
                        length: h.key_length,
                    }
                    .to_vec()
                })
                .collect();
            names.dedup();
            names
        }
    }

    fn set_header(&self, map: abi::HeaderType, name: &str, value: Option<&str>) {
        let value = value.map_or(ModuleBuffer::null(), |v| ModuleBuffer::of(v.as_bytes()));
        // SAFETY: as above; Envoy copies the key and value.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                self.filter,
                map,
                ModuleBuffer::of(name.as_bytes()),
                value,
            )
        };
        if !ok {
            log::warn!("tollgate: could not write header '{name}'");
        }
    }

    /// Where this hook's body is: the bytes received in this hook, those buffered by earlier
    /// hooks (or filters), or both (buffered first), with their chunk counts. At the end of a
    /// buffered body Envoy has already moved the last chunk into the buffer.
    fn layout(&self, side: Side) -> BodyLayout {
        if let Some(l) = self.body_layout.get().filter(|l| l.side == side) {
            return l;
        }
        // SAFETY: `filter` is live for this hook.
        let same = unsafe {
            match side {
                Side::Request => {
                    abi::envoy_dynamic_module_callback_http_received_buffered_request_body(
                        self.filter,
                    )
                }
                Side::Response => {
                    abi::envoy_dynamic_module_callback_http_received_buffered_response_body(
                        self.filter,
                    )
                }
            }
        };
        // The received data may be the buffer an earlier filter built: then it is read once.
        let parts = [Some(side.buffered()), (!same).then_some(side.received())];
        let mut chunks = [0; 2];
        for (n, part) in chunks.iter_mut().zip(parts) {
            if let Some(t) = part {
                // SAFETY: `filter` is live for this hook.
                *n = unsafe {
                    abi::envoy_dynamic_module_callback_http_get_body_chunks_size(self.filter, t)
                };
            }
        }
        let layout = BodyLayout {
            side,
            parts,
            chunks,
        };
        self.body_layout.set(Some(layout));
        layout
    }

    /// Whether the response is a stream (its headers must not wait for its end).
    pub fn response_is_stream(&self) -> bool {
        self.header(abi::RESPONSE_HEADER, "content-type")
            .map(|ct| ct.to_ascii_lowercase())
            .is_some_and(|ct| {
                ct.starts_with("text/event-stream")
                    || ct.starts_with("application/vnd.amazon.eventstream")
            })
    }

    /// The size of the body this hook sees (what [`NativeHost::body`] would return).
    pub fn body_len(&self, side: Side) -> usize {
        if let Some((_, n)) = self.written_body_len.get().filter(|(s, _)| *s == side) {
            return n;
        }
        let layout = self.layout(side);
        layout
            .parts
            .into_iter()
            .zip(layout.chunks)
            .filter(|(_, chunks)| *chunks > 0)
            .filter_map(|(part, _)| part)
            // SAFETY: `filter` is live for this hook.
            .map(|t| unsafe {
                abi::envoy_dynamic_module_callback_http_get_body_size(self.filter, t)
            })
            .sum()
    }

    fn body(&self, side: Side) -> Vec<u8> {
        let layout = self.layout(side);
        let mut out = Vec::new();
        for (part, n) in layout.parts.into_iter().zip(layout.chunks) {
            let Some(t) = part.filter(|_| n > 0) else {
                continue;
            };
            let mut chunks = vec![EnvoyBuffer::empty(); n];
            // SAFETY: `filter` is live; the chunks are copied before anything changes the body.
            unsafe {
                if abi::envoy_dynamic_module_callback_http_get_body_chunks(
                    self.filter,
                    t,
                    chunks.as_mut_ptr(),
                ) {
                    for c in chunks {
                        out.extend_from_slice(c.as_slice());
                    }
                }
            }
        }
        out
    }

    fn replace_body(&self, side: Side, body: &[u8]) -> bool {
        let layout = self.layout(side);
        let [buffered, _] = layout.chunks;
        // The limit bounds what the client or provider sent; what the filter writes in its place
        // (a translation) may be longer, and must not be refused for it.
        let length = body.len() as u64;
        // SAFETY: `filter` is live for this hook.
        if length > unsafe { abi::envoy_dynamic_module_callback_http_get_buffer_limit(self.filter) }
        {
            self.set_buffer_limit(length);
        }
        // SAFETY: `filter` is live for this hook; Envoy copies the appended bytes.
        let ok = unsafe {
            for (part, n) in layout.parts.into_iter().zip(layout.chunks) {
                if let Some(t) = part.filter(|_| n > 0) {
                    abi::envoy_dynamic_module_callback_http_drain_body(self.filter, t, usize::MAX);
                }
            }
            let target = if buffered > 0 {
                side.buffered()
            } else {
                side.received()
            };
            body.is_empty()
                || abi::envoy_dynamic_module_callback_http_append_body(
                    self.filter,
                    target,
                    ModuleBuffer::of(body),
                )
        };
        self.body_layout.set(None);
        self.written_body_len.set(ok.then_some((side, body.len())));
        ok
    }

    /// A removal of the `content-length` that `length_follows` will write anyway: noted, not sent.
    fn length_is_written_later(&mut self, side: Side, name: &str) -> bool {
        let later = self.length_follows == Some(side) && name == "content-length";
        self.length_removed |= later;
        later
    }

    /// Whether the response has a header named `name` (the names read once per hook).
    fn response_has(&self, name: &str) -> bool {
        let Ok(mut names) = self.response_names.try_borrow_mut() else {
            return true;
        };
        names
            .get_or_insert_with(|| self.header_names(abi::RESPONSE_HEADER))
            .iter()
            .any(|n| n == name.as_bytes())
    }

    /// Keeps the response's names in step with a write, once they have been read.
    fn response_written(&self, name: &str, present: bool) {
        if let Ok(mut names) = self.response_names.try_borrow_mut() {
            if let Some(names) = names.as_mut() {
                names.retain(|n| n != name.as_bytes());
                if present {
                    names.push(name.as_bytes().to_vec());
                }
            }
        }
    }

    /// Whether a dynamic metadata namespace has `key`, whatever its type.
    fn has_metadata(&self, ns: ModuleBuffer, key: &str) -> bool {
        // SAFETY: `filter` is live for this hook; the keys are compared before it returns.
        unsafe {
            let n = abi::envoy_dynamic_module_callback_http_get_metadata_keys_count(
                self.filter,
                abi::METADATA_DYNAMIC,
                ns,
            );
            if n == 0 {
                return false;
            }
            let mut keys = vec![EnvoyBuffer::empty(); n];
            abi::envoy_dynamic_module_callback_http_get_metadata_keys(
                self.filter,
                abi::METADATA_DYNAMIC,
                ns,
                keys.as_mut_ptr(),
            ) && keys.iter().any(|k| k.as_slice() == key.as_bytes())
        }
    }

    /// A dynamic metadata value in the byte form the proxy-wasm host gives (and the filter
    /// reads): a string as its bytes, a number as a little-endian f64, a bool as one byte, and
    /// anything else (a list, a struct) as a byte no string equals. Envoy logs an error for each
    /// typed read of a value of another type, so the key's usual type is tried first.
    fn metadata(&self, namespace: &str, key: &str) -> Option<Vec<u8>> {
        let ns = ModuleBuffer::of(namespace.as_bytes());
        if !self.has_metadata(ns, key) {
            return None;
        }
        let k = ModuleBuffer::of(key.as_bytes());
        let order = if matches!(
            key,
            "stream" | "body_error" | "model_missing" | "not_object"
        ) {
            [Typed::Bool, Typed::String, Typed::Number]
        } else if namespace == USAGE_NAMESPACE {
            [Typed::Number, Typed::String, Typed::Bool]
        } else {
            [Typed::String, Typed::Number, Typed::Bool]
        };
        for typed in order {
            // SAFETY: `filter` is live for this hook; a string is copied before it returns.
            unsafe {
                match typed {
                    Typed::String => {
                        let mut s = EnvoyBuffer::empty();
                        if abi::envoy_dynamic_module_callback_http_get_metadata_string(
                            self.filter,
                            abi::METADATA_DYNAMIC,
                            ns,
                            k,
                            &mut s,
                        ) {
                            let v = s.to_vec();
                            // An empty value reads as absent, as it does through proxy-wasm.
                            return (!v.is_empty()).then_some(v);
                        }
                    }
                    Typed::Number => {
                        let mut n = 0f64;
                        if abi::envoy_dynamic_module_callback_http_get_metadata_number(
                            self.filter,
                            abi::METADATA_DYNAMIC,
                            ns,
                            k,
                            &mut n,
                        ) {
                            return Some(n.to_le_bytes().to_vec());
                        }
                    }
                    Typed::Bool => {
                        let mut b = false;
                        if abi::envoy_dynamic_module_callback_http_get_metadata_bool(
                            self.filter,
                            abi::METADATA_DYNAMIC,
                            ns,
                            k,
                            &mut b,
                        ) {
                            return Some(vec![u8::from(b)]);
                        }
                    }
                }
            }
        }
        Some(vec![0xff])
    }

    fn record(&self, metric: &Metric, value: u64) -> bool {
        let record = match metric.family.kind() {
            Kind::Counter => abi::envoy_dynamic_module_callback_http_filter_increment_counter,
            Kind::Gauge => abi::envoy_dynamic_module_callback_http_filter_set_gauge,
            Kind::Histogram => {
                abi::envoy_dynamic_module_callback_http_filter_record_histogram_value
            }
        };
        // SAFETY: `filter` is live for this hook.
        unsafe { record_with(self.metrics, metric, value, self.filter, record) }
    }
}

/// A stream's or a config's metric callback (they take the same arguments).
type RecordFn = unsafe extern "C" fn(
    *mut std::ffi::c_void,
    usize,
    *const ModuleBuffer,
    usize,
    u64,
) -> abi::MetricsResult;

/// Records `value` for `metric` through `record`, with the metric's tag values as labels.
///
/// # Safety
/// `target` must be the live stream or config `record` expects.
unsafe fn record_with(
    metrics: &MetricIds,
    metric: &Metric,
    value: u64,
    target: *mut std::ffi::c_void,
    record: RecordFn,
) -> bool {
    let Some(Some(id)) = metrics.get(metric.family.index()) else {
        return false;
    };
    let mut scratch = [0u8; 3];
    let (values, n) = metric.tag_values(&mut scratch);
    let labels = values.map(|v| ModuleBuffer::of(v.as_bytes()));
    let n = n.min(labels.len());
    // SAFETY: the caller vouches for `target`; the labels outlive the call.
    let result = unsafe { record(target, *id, labels.as_ptr(), n, value) };
    result == abi::METRICS_SUCCESS
}

/// A call's headers as Envoy takes them (borrowing the call's strings).
fn module_headers(headers: &[(&str, &str)]) -> Vec<abi::ModuleHttpHeader> {
    headers
        .iter()
        .map(|(k, v)| abi::ModuleHttpHeader {
            key_ptr: k.as_ptr(),
            key_length: k.len(),
            value_ptr: v.as_ptr(),
            value_length: v.len(),
        })
        .collect()
}

/// Starts a callout through `start` (a stream's or the config's), with the call's headers and
/// body (Envoy copies them).
fn start_callout(
    call: &HttpCall,
    start: impl FnOnce(*mut u64, ModuleBuffer, *const abi::ModuleHttpHeader, usize, ModuleBuffer) -> u32,
) -> Result<(), String> {
    let headers = module_headers(call.headers);
    let mut id = 0u64;
    let result = start(
        &mut id,
        ModuleBuffer::of(call.cluster.as_bytes()),
        headers.as_ptr(),
        headers.len(),
        ModuleBuffer::of(call.body),
    );
    if result == abi::CALLOUT_INIT_SUCCESS {
        Ok(())
    } else {
        Err(format!("Envoy refused the callout (init result {result})"))
    }
}

/// How a callout ended, read while Envoy still owns its headers and body.
///
/// # Safety
/// The pointers are those Envoy passed to the callout hook (null, or `n` valid entries).
pub unsafe fn callout_answer(
    result: u32,
    headers: *const abi::EnvoyHttpHeader,
    headers_size: usize,
    chunks: *const EnvoyBuffer,
    chunks_size: usize,
) -> Answer {
    match result {
        abi::CALLOUT_SUCCESS => {}
        abi::CALLOUT_EXCEEDED_BUFFER => return Answer::TooLarge,
        _ => return Answer::Unanswered,
    }
    // SAFETY: as the caller vouches.
    let headers: &[abi::EnvoyHttpHeader] = if headers.is_null() || headers_size == 0 {
        &[]
    } else {
        unsafe { std::slice::from_raw_parts(headers, headers_size) }
    };
    let status = headers.iter().find_map(|h| {
        // SAFETY: Envoy's header buffers are live during the hook.
        let (k, v) = unsafe {
            (
                EnvoyBuffer {
                    ptr: h.key_ptr,
                    length: h.key_length,
                }
                .as_slice(),
                EnvoyBuffer {
                    ptr: h.value_ptr,
                    length: h.value_length,
                }
                .as_slice(),
            )
        };
        (k == b":status").then(|| std::str::from_utf8(v).ok()?.parse::<u16>().ok())?
    });
    let Some(status) = status else {
        return Answer::Unanswered;
    };
    // SAFETY: as the caller vouches.
    let chunks: &[EnvoyBuffer] = if chunks.is_null() || chunks_size == 0 {
        &[]
    } else {
        unsafe { std::slice::from_raw_parts(chunks, chunks_size) }
    };
    let mut body = Vec::new();
    for c in chunks {
        // SAFETY: Envoy's body chunks are live during the hook.
        body.extend_from_slice(unsafe { c.as_slice() });
    }
    Answer::Response { status, body }
}

/// [`TickHost`] of a filter config on Envoy's main thread: the process-wide store, the config's
/// callouts and metrics.
pub struct ConfigHost<'a> {
    pub config: abi::FilterConfigEnvoyPtr,
    pub metrics: &'a MetricIds,
}

impl TickHost for ConfigHost<'_> {
    fn store(&self) -> &dyn Store {
        &*STORE
    }
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
    fn dispatch_call(&mut self, call: &HttpCall) -> Result<(), String> {
        let config = self.config;
        start_callout(call, |id, cluster, headers, n, body| {
            // SAFETY: `config` is live for this hook; Envoy copies what it is handed.
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_config_http_callout(
                    config,
                    id,
                    cluster,
                    headers,
                    n,
                    body,
                    call.timeout_ms,
                )
            }
        })
    }
    fn increment_counter(&mut self, metric: &Metric, delta: u64) {
        // SAFETY: `config` is live for this hook.
        let ok = unsafe {
            record_with(
                self.metrics,
                metric,
                delta,
                self.config,
                abi::envoy_dynamic_module_callback_http_filter_config_increment_counter,
            )
        };
        if !ok {
            log::warn!("tollgate: could not update counter '{}'", metric.name());
        }
    }
    fn set_gauge(&mut self, metric: &Metric, value: u64) {
        // SAFETY: `config` is live for this hook.
        let ok = unsafe {
            record_with(
                self.metrics,
                metric,
                value,
                self.config,
                abi::envoy_dynamic_module_callback_http_filter_config_set_gauge,
            )
        };
        if !ok {
            log::warn!("tollgate: could not set gauge '{}'", metric.name());
        }
    }
}

impl HttpHost for NativeHost<'_> {
    fn request_header(&self, name: &str) -> Option<String> {
        self.header(abi::REQUEST_HEADER, name)
    }
    fn request_header_names(&self) -> Vec<String> {
        self.header_names(abi::REQUEST_HEADER)
            .into_iter()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .collect()
    }
    fn set_request_header(&mut self, name: &str, value: &str) {
        self.request_headers_changed = true;
        self.set_header(abi::REQUEST_HEADER, name, Some(value));
    }
    fn remove_request_header(&mut self, name: &str) {
        if self.length_is_written_later(Side::Request, name) {
            return;
        }
        self.request_headers_changed = true;
        self.set_header(abi::REQUEST_HEADER, name, None);
    }
    fn response_header(&self, name: &str) -> Option<String> {
        self.header(abi::RESPONSE_HEADER, name)
    }
    fn response_headers_held(&self) -> bool {
        self.length_follows == Some(Side::Response)
    }
    fn response_header_names(&self) -> Vec<String> {
        let Ok(mut names) = self.response_names.try_borrow_mut() else {
            return Vec::new();
        };
        names
            .get_or_insert_with(|| self.header_names(abi::RESPONSE_HEADER))
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    }
    fn set_response_header(&mut self, name: &str, value: &str) {
        self.set_header(abi::RESPONSE_HEADER, name, Some(value));
        self.response_written(name, true);
    }
    fn remove_response_header(&mut self, name: &str) {
        if self.length_is_written_later(Side::Response, name) {
            return;
        }
        if self.response_has(name) {
            self.set_header(abi::RESPONSE_HEADER, name, None);
            self.response_written(name, false);
        }
    }
    fn request_body(&self, _size: usize) -> Option<Vec<u8>> {
        let held = self
            .held_request_body
            .try_borrow_mut()
            .ok()
            .and_then(|mut b| b.take());
        Some(held.unwrap_or_else(|| self.body(Side::Request)))
    }
    fn replace_request_body(&mut self, _size: usize, body: &[u8]) -> bool {
        self.held_request_body.replace(None);
        self.replace_body(Side::Request, body)
    }
    fn response_body(&self, _size: usize) -> Option<Vec<u8>> {
        Some(self.body(Side::Response))
    }
    fn replace_response_body(&mut self, _size: usize, body: &[u8]) -> bool {
        self.replace_body(Side::Response, body)
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        match path {
            ["metadata", "filter_metadata", namespace, key] => match &self.body_metadata {
                Some((ns, fields)) if ns == namespace => fields
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone()),
                _ => self.metadata(namespace, key),
            },
            ["response", "code_details"] => {
                let mut s = EnvoyBuffer::empty();
                // SAFETY: `filter` is live for this hook; the value is copied.
                unsafe {
                    abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                        self.filter,
                        abi::ATTRIBUTE_RESPONSE_CODE_DETAILS,
                        &mut s,
                    )
                    .then(|| s.to_vec())
                }
            }
            _ => None,
        }
    }
    fn send_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        let headers: Vec<abi::ModuleHttpHeader> = headers
            .iter()
            .map(|(k, v)| abi::ModuleHttpHeader {
                key_ptr: k.as_ptr(),
                key_length: k.len(),
                value_ptr: v.as_ptr(),
                value_length: v.len(),
            })
            .collect();
        // SAFETY: `filter` is live for this hook; Envoy copies headers and body.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                self.filter,
                u32::from(status),
                headers.as_ptr(),
                headers.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(b"tollgate"),
            );
        }
    }
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
    fn increment_counter(&mut self, metric: &Metric, delta: u64) {
        if !self.record(metric, delta) {
            log::warn!("tollgate: could not update counter '{}'", metric.name());
        }
    }
    fn record_histogram(&mut self, metric: &Metric, value: u64) {
        if !self.record(metric, value) {
            log::warn!("tollgate: could not record histogram '{}'", metric.name());
        }
    }
    fn set_gauge(&mut self, metric: &Metric, value: u64) {
        if !self.record(metric, value) {
            log::warn!("tollgate: could not set gauge '{}'", metric.name());
        }
    }
    fn store(&self) -> &dyn Store {
        &*STORE
    }
    fn random_bytes(&mut self) -> [u8; 32] {
        random_bytes()
    }
    fn set_log_field(&mut self, name: &str, value: &str) {
        // SAFETY: `filter` is live for this hook; Envoy copies the three buffers.
        unsafe {
            abi::envoy_dynamic_module_callback_http_set_dynamic_metadata_string(
                self.filter,
                ModuleBuffer::of(tollgate::filter::LOG_NAMESPACE.as_bytes()),
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            );
        }
    }
    fn dispatch_call(&mut self, call: &HttpCall) -> Result<(), String> {
        let filter = self.filter;
        start_callout(call, |id, cluster, headers, n, body| {
            // SAFETY: `filter` is live for this hook; Envoy copies what it is handed.
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_http_callout(
                    filter,
                    id,
                    cluster,
                    headers,
                    n,
                    body,
                    call.timeout_ms,
                )
            }
        })
    }
}

/// 32 bytes from the operating system's generator (keys are made from them).
pub fn random_bytes() -> [u8; 32] {
    let mut out = [0u8; 32];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut out));
    if let Err(e) = read {
        // std's hasher keys are seeded from the OS generator too (getrandom).
        log::warn!("tollgate: /dev/urandom unreadable ({e}); using std's random seeds");
        use std::hash::{BuildHasher, RandomState};
        for (i, chunk) in out.chunks_mut(8).enumerate() {
            let v = RandomState::new().hash_one(i).to_le_bytes();
            for (d, s) in chunk.iter_mut().zip(v) {
                *d = s;
            }
        }
    }
    out
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
