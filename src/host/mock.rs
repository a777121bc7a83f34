//! An in-memory host for native tests of the request pipeline.

use std::collections::BTreeMap;

use super::{HttpCall, HttpHost};
use crate::stats::Metric;

/// A local reply: status, headers, body.
pub type Reply = (u16, Vec<(String, String)>, Vec<u8>);

#[derive(Debug, Default)]
pub struct MockHost {
    pub request_headers: Vec<(String, String)>,
    pub response_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    pub response_body: Vec<u8>,
    pub properties: BTreeMap<String, Vec<u8>>,
    pub reply: Option<Reply>,
    pub now_ms: u64,
    pub counters: BTreeMap<String, u64>,
    pub histograms: Vec<(String, u64)>,
    pub gauges: BTreeMap<String, u64>,
    /// Shared by every mock host cloned from the same store, like workers sharing data.
    pub store: crate::store::MemoryStore,
    pub random_counter: u8,
    /// HTTP calls the filter started: cluster, headers, body, timeout.
    pub calls: Vec<SentCall>,
    /// Refuse to start calls (as a host without the store's cluster would).
    pub refuse_calls: bool,
    /// Fields set for the access log.
    pub log_fields: BTreeMap<String, String>,
}

/// An HTTP call as the mock host recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentCall {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

fn get(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

fn set(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    headers.retain(|(k, _)| k != name);
    headers.push((name.to_string(), value.to_string()));
}

impl MockHost {
    /// A request as Envoy presents it after `json_to_metadata` ran.
    pub fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Self {
        let mut h = MockHost {
            now_ms: 1_700_000_000_000,
            ..Default::default()
        };
        h.request_headers.push((":method".into(), method.into()));
        h.request_headers.push((":path".into(), path.into()));
        h.request_headers
            .push((":authority".into(), "gateway".into()));
        h.request_headers
            .push(("x-request-id".into(), "0000-1111".into()));
        for (k, v) in headers {
            h.request_headers.push((k.to_string(), v.to_string()));
        }
        h
    }

    pub fn metadata(mut self, key: &str, value: &[u8]) -> Self {
        self.properties.insert(
            format!("metadata.filter_metadata.tollgate.{key}"),
            value.to_vec(),
        );
        self
    }

    /// What the response `json_to_metadata` would write for this body (usage and markers),
    /// given the response's content type: call before the response-headers phase.
    pub fn response_metadata(&mut self, body: &[u8]) {
        let ct = get(&self.response_headers, "content-type");
        for (k, v) in crate::filter::body_metadata::response_usage(ct.as_deref(), body) {
            self.properties
                .insert(format!("metadata.filter_metadata.tollgate_usage.{k}"), v);
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        get(&self.request_headers, name)
    }

    #[cfg(test)]
    pub fn reply_json(&self) -> serde_json::Value {
        let (_, _, body) = self.reply.as_ref().expect("a local reply");
        serde_json::from_slice(body).expect("JSON reply")
    }
}

impl HttpHost for MockHost {
    fn request_header(&self, name: &str) -> Option<String> {
        get(&self.request_headers, name)
    }
    fn request_header_names(&self) -> Vec<String> {
        self.request_headers
            .iter()
            .map(|(k, _)| k.clone())
            .collect()
    }
    fn set_request_header(&mut self, name: &str, value: &str) {
        set(&mut self.request_headers, name, value)
    }
    fn remove_request_header(&mut self, name: &str) {
        self.request_headers.retain(|(k, _)| k != name)
    }
    fn response_header(&self, name: &str) -> Option<String> {
        get(&self.response_headers, name)
    }
    fn response_header_names(&self) -> Vec<String> {
        self.response_headers
            .iter()
            .map(|(k, _)| k.clone())
            .collect()
    }
    fn set_response_header(&mut self, name: &str, value: &str) {
        set(&mut self.response_headers, name, value)
    }
    fn remove_response_header(&mut self, name: &str) {
        self.response_headers.retain(|(k, _)| k != name)
    }
    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        Some(
            self.request_body
                .get(..size.min(self.request_body.len()))?
                .to_vec(),
        )
    }
    fn replace_request_body(&mut self, _size: usize, body: &[u8]) -> bool {
        self.request_body = body.to_vec();
        true
    }
    fn response_body(&self, size: usize) -> Option<Vec<u8>> {
        Some(
            self.response_body
                .get(..size.min(self.response_body.len()))?
                .to_vec(),
        )
    }
    fn replace_response_body(&mut self, _size: usize, body: &[u8]) -> bool {
        self.response_body = body.to_vec();
        true
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.properties.get(&path.join(".")).cloned()
    }
    fn send_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        self.reply = Some((
            status,
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body.to_vec(),
        ));
    }
    fn now_ms(&self) -> u64 {
        self.now_ms
    }
    fn increment_counter(&mut self, metric: &Metric, delta: u64) {
        *self.counters.entry(metric.name()).or_default() += delta;
    }
    fn record_histogram(&mut self, metric: &Metric, value: u64) {
        self.histograms.push((metric.name(), value));
    }
    fn set_gauge(&mut self, metric: &Metric, value: u64) {
        self.gauges.insert(metric.name(), value);
    }
    fn store(&self) -> &dyn crate::store::Store {
        &self.store
    }
    fn random_bytes(&mut self) -> [u8; 32] {
        self.random_counter = self.random_counter.wrapping_add(1);
        [self.random_counter; 32]
    }
    fn set_log_field(&mut self, name: &str, value: &str) {
        self.log_fields.insert(name.to_string(), value.to_string());
    }
    fn dispatch_call(&mut self, call: &HttpCall) -> Result<(), String> {
        if self.refuse_calls {
            return Err("no such cluster".into());
        }
        self.calls.push(SentCall {
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
}
