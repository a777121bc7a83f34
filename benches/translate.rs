//! Native micro-benchmarks of the translators on the hot path (`make bench` runs them).
//!
//! Inputs are the same bytes the load test sends and the mock provider answers with
//! (`bench/fixtures/`): a ~1 KB chat request, an OpenAI and an Anthropic completion, and an
//! Anthropic SSE stream with 50 content deltas. Deployments come from a real LiteLLM config
//! through `config::load`, as the filter builds them.
//!
//! `admission` is the virtual-key bookkeeping each request does in shared data: admit in the key's
//! and the team's scope (budget, RPM/TPM, parallel: one read-modify-CAS each), then settle both,
//! against the in-memory store that has the host's semantics.

// Benchmark setup failing is a broken benchmark, not a runtime condition to recover from.
#![allow(clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hashbrown::HashMap;
use serde_json::json;

use std::sync::Arc;

use tollgate::config::{self, Config, Deployment, Strictness};
use tollgate::filter::{body_metadata, HttpFilter, Role};
use tollgate::host::{Action, HttpHost};
use tollgate::openai::{parse_chat, ResponseCtx};
use tollgate::providers::RequestOptions;
use tollgate::quota::{self, Scope};
use tollgate::stats::{Metric, MetricCache};

const CHAT_REQUEST: &[u8] = include_bytes!("../bench/fixtures/chat_request.json");
const OPENAI_RESPONSE: &[u8] = include_bytes!("../bench/fixtures/openai_response.json");
const ANTHROPIC_RESPONSE: &[u8] = include_bytes!("../bench/fixtures/anthropic_response.json");
const ANTHROPIC_STREAM: &[u8] = include_bytes!("../bench/fixtures/anthropic_stream.sse");
/// Content deltas in `ANTHROPIC_STREAM`; per-event figures divide by this.
const STREAM_EVENTS: u64 = 50;

fn gateway() -> Config {
    let doc = json!({"model_list": [
        {"model_name": "openai", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-bench"}},
        {"model_name": "anthropic", "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_key": "sk-bench"}},
        {"model_name": "gemini", "litellm_params": {"model": "gemini/gemini-2.5-flash", "api_key": "bench"}},
        {"model_name": "bedrock", "litellm_params": {"model": "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0",
            "aws_region_name": "us-east-1", "aws_access_key_id": "AKIABENCH", "aws_secret_access_key": "bench"}}
    ]});
    let env: HashMap<String, String> = HashMap::new();
    let report = config::load(&doc, &env, Strictness::Serve);
    report
        .config
        .unwrap_or_else(|| panic!("bench config refused: {:?}", report.errors))
}

fn deployment<'c>(config: &'c Config, alias: &str) -> &'c Deployment {
    config
        .deployments
        .iter()
        .find(|d| d.alias == alias)
        .unwrap_or_else(|| panic!("no deployment {alias}"))
}

fn ctx(include_usage: bool) -> ResponseCtx {
    ResponseCtx {
        id: "chatcmpl-bench".into(),
        created: 1_741_569_952,
        model: "claude".into(),
        include_usage,
        api: Default::default(),
    }
}

/// Splits an SSE body after each blank line: one chunk per event, as a slow upstream delivers it.
fn sse_events(stream: &[u8]) -> Vec<&[u8]> {
    let mut events = Vec::new();
    let mut rest = stream;
    while let Some(end) = rest.windows(2).position(|w| w == b"\n\n") {
        let (event, tail) = rest.split_at(end + 2);
        events.push(event);
        rest = tail;
    }
    if !rest.is_empty() {
        events.push(rest);
    }
    events
}

fn requests(c: &mut Criterion) {
    let config = gateway();
    let mut g = c.benchmark_group("request");
    g.throughput(Throughput::Bytes(CHAT_REQUEST.len() as u64));
    // parse_chat alone: the share every provider pays.
    g.bench_function("parse_chat", |b| {
        b.iter(|| parse_chat(black_box(CHAT_REQUEST)).map(|r| r.messages.len()))
    });
    // What the gateway runs on a body Envoy's JSON parser (or the module's same check) took.
    g.bench_function("parse_chat_routed", |b| {
        b.iter(|| {
            tollgate::openai::request::parse_chat_known(
                black_box(CHAT_REQUEST),
                tollgate::json::Known::EnvoyJson,
            )
            .map(|r| r.messages.len())
        })
    });
    // The dynamic module's headers phase: what json_to_metadata finds in the body.
    g.bench_function("request_metadata", |b| {
        b.iter(|| {
            tollgate::filter::body_metadata::request_metadata(
                Some("application/json"),
                black_box(CHAT_REQUEST),
            )
            .len()
        })
    });
    for alias in ["openai", "anthropic", "gemini", "bedrock"] {
        let d = deployment(&config, alias);
        g.bench_function(alias, |b| {
            b.iter(|| {
                let req = parse_chat(black_box(CHAT_REQUEST)).expect("fixture parses");
                d.provider
                    .chat_request(&req, &d.target, RequestOptions::default())
                    .expect("fixture translates")
            })
        });
    }
    g.finish();
}

fn responses(c: &mut Criterion) {
    let config = gateway();
    let mut g = c.benchmark_group("response");
    for (alias, body) in [
        ("openai", OPENAI_RESPONSE),
        ("anthropic", ANTHROPIC_RESPONSE),
    ] {
        let d = deployment(&config, alias);
        let ctx = ctx(false);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(alias, |b| {
            b.iter(|| {
                d.provider
                    .chat_response(black_box(body), &ctx)
                    .expect("fixture translates")
            })
        });
    }
    g.finish();
}

fn streams(c: &mut Criterion) {
    let config = gateway();
    let d = deployment(&config, "anthropic");
    let events = sse_events(ANTHROPIC_STREAM);
    let mut g = c.benchmark_group("stream");
    // Criterion reports time per iteration; per event is that divided by the 50 deltas.
    g.throughput(Throughput::Elements(STREAM_EVENTS));
    // The whole stream in one chunk: how the direct_response mock delivers it.
    g.bench_function("anthropic_one_chunk", |b| {
        b.iter(|| {
            let mut t = d.provider.chat_stream(ctx(true));
            let mut out = Vec::with_capacity(16 * 1024);
            t.feed(black_box(ANTHROPIC_STREAM), &mut out);
            t.finish(&mut out);
            out
        })
    });
    // One chunk per event: how a real upstream, generating tokens, delivers it.
    g.bench_function("anthropic_chunk_per_event", |b| {
        b.iter(|| {
            let mut t = d.provider.chat_stream(ctx(true));
            let mut total = 0;
            for e in &events {
                // The filter replaces each chunk in place, so each gets its own output buffer.
                let mut out = Vec::new();
                t.feed(black_box(e), &mut out);
                total += out.len();
            }
            let mut out = Vec::new();
            t.finish(&mut out);
            total + out.len()
        })
    });
    g.finish();
}

fn short() -> Criterion {
    // `make bench` has ten minutes for everything, builds included; these settle within a second.
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(50)
}

fn admission(c: &mut Criterion) {
    use tollgate::quota::{Charge, Estimate, Limits, Party};
    use tollgate::store::MemoryStore;
    let store = MemoryStore::default();
    let key_id = quota::record_key(Scope::Key, "bench-key");
    let team_id = quota::record_key(Scope::Team, "bench-team");
    let limits = Limits {
        max_budget: Some(quota::micro(1_000_000.0)),
        budget_duration: Some(30 * 86_400),
        soft_budget: None,
        rpm: Some(u64::MAX / 4),
        tpm: Some(u64::MAX / 4),
        parallel: Some(10_000),
    };
    let now = 1_790_000_000;
    quota::ensure_record(&store, &key_id, now);
    quota::ensure_record(&store, &team_id, now);
    let key = Party {
        scope: Scope::Key,
        key: &key_id,
        limits: &limits,
    };
    let team = Party {
        scope: Scope::Team,
        key: &team_id,
        limits: &limits,
    };
    let est = Estimate {
        cost: 2_000,
        tokens: 1_200,
    };
    let actual = Charge {
        cost: 1_500,
        tokens: 900,
    };
    let mut g = c.benchmark_group("admission");
    g.bench_function("key_and_team", |b| {
        b.iter(|| {
            let a = quota::admit_all(&store, &key, Some(&team), now, est).expect("admitted");
            let minute = a.key.map_or(0, |s| s.minute);
            black_box(quota::settle_one(&store, &key, now, minute, est, actual));
            black_box(quota::settle_one(&store, &team, now, minute, est, actual));
        })
    });
    g.finish();
}

/// `bench/bench.yaml`'s gateway, the file `make bench` renders for targets (3) to (5), with the
/// mock's address at an unused port (nothing here connects).
fn bench_gateway() -> Config {
    gateway_config(false)
}

/// [`bench_gateway`], with `tollgate_settings.store` set when `fleet` (as `make bench`'s (4f)):
/// budgets and limits admitted against the replica's leases.
fn gateway_config(fleet: bool) -> Config {
    let spec: serde_json::Value = serde_yaml_ng::from_str(include_str!("../bench/bench.yaml"))
        .unwrap_or_else(|e| panic!("bench/bench.yaml: {e}"));
    let mut gateway = spec
        .get("gateway")
        .cloned()
        .unwrap_or_else(|| panic!("bench/bench.yaml: no gateway"));
    if fleet {
        if let Some(g) = gateway.as_object_mut() {
            g.insert(
                "tollgate_settings".into(),
                json!({"store": {"url": "http://127.0.0.1:9"}}),
            );
        }
    }
    let text = gateway.to_string().replace("MOCK", "http://127.0.0.1:9");
    let env: HashMap<String, String> = HashMap::new();
    let report = config::load_json(text.as_bytes(), &env, Strictness::Serve);
    report
        .config
        .unwrap_or_else(|| panic!("bench config refused: {:?}", report.errors))
}

/// An in-memory [`HttpHost`] holding one request as Envoy hands it to the filter (after
/// `json_to_metadata`), the mock provider's answer, and the shared store.
struct BenchHost {
    request_headers: Vec<(String, String)>,
    response_headers: Vec<(String, String)>,
    request_body: Vec<u8>,
    response_body: Vec<u8>,
    properties: Vec<(String, Vec<u8>)>,
    store: tollgate::store::MemoryStore,
    metrics: MetricCache,
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn set_header(h: &mut Vec<(String, String)>, name: &str, value: &str) {
    h.retain(|(k, _)| k != name);
    h.push((name.to_string(), value.to_string()));
}

impl HttpHost for BenchHost {
    fn request_header(&self, name: &str) -> Option<String> {
        header(&self.request_headers, name).map(str::to_string)
    }
    fn request_header_names(&self) -> Vec<String> {
        self.request_headers
            .iter()
            .map(|(k, _)| k.clone())
            .collect()
    }
    fn set_request_header(&mut self, name: &str, value: &str) {
        set_header(&mut self.request_headers, name, value)
    }
    fn remove_request_header(&mut self, name: &str) {
        self.request_headers.retain(|(k, _)| k != name)
    }
    fn response_header(&self, name: &str) -> Option<String> {
        header(&self.response_headers, name).map(str::to_string)
    }
    fn response_header_names(&self) -> Vec<String> {
        self.response_headers
            .iter()
            .map(|(k, _)| k.clone())
            .collect()
    }
    fn set_response_header(&mut self, name: &str, value: &str) {
        set_header(&mut self.response_headers, name, value)
    }
    fn remove_response_header(&mut self, name: &str) {
        self.response_headers.retain(|(k, _)| k != name)
    }
    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        self.request_body.get(..size).map(<[u8]>::to_vec)
    }
    fn replace_request_body(&mut self, _size: usize, body: &[u8]) -> bool {
        self.request_body = body.to_vec();
        true
    }
    fn response_body(&self, size: usize) -> Option<Vec<u8>> {
        self.response_body.get(..size).map(<[u8]>::to_vec)
    }
    fn replace_response_body(&mut self, _size: usize, body: &[u8]) -> bool {
        self.response_body = body.to_vec();
        true
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let key = path.join(".");
        self.properties
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }
    fn send_reply(&mut self, status: u16, _headers: &[(&str, &str)], body: &[u8]) {
        panic!(
            "unexpected local reply {status}: {}",
            String::from_utf8_lossy(body)
        );
    }
    fn now_ms(&self) -> u64 {
        1_790_000_000_000
    }
    // As the filter's host does: each metric's id looked up by its labels, defined once.
    fn increment_counter(&mut self, metric: &Metric, delta: u64) {
        black_box((self.metrics.id(metric, |_| Some(1)), delta));
    }
    fn record_histogram(&mut self, metric: &Metric, value: u64) {
        black_box((self.metrics.id(metric, |_| Some(2)), value));
    }
    fn set_gauge(&mut self, metric: &Metric, value: u64) {
        black_box((self.metrics.id(metric, |_| Some(3)), value));
    }
    fn store(&self) -> &dyn tollgate::store::Store {
        &self.store
    }
    // As the `.wasm`'s host keeps them: gathered by the worker, written to the ring in batches.
    fn keep_spend_record(&mut self, record: &tollgate::spend_log::Record) -> bool {
        if tollgate::spend_log::buffer(record) {
            return tollgate::spend_log::flush_local(&self.store) == 0;
        }
        true
    }
    fn random_bytes(&mut self) -> [u8; 32] {
        [7; 32]
    }
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Where the filter's metadata comes from.
#[derive(Clone, Copy)]
enum Metadata {
    /// Envoy's `json_to_metadata` filters wrote it (the `.wasm`): given, not computed.
    Given,
    /// The dynamic module computes it from the bodies it holds (`body_metadata`).
    FromBodies,
}

/// One whole request through the filter's callbacks, as Envoy drives them for targets (3), (4)
/// and (7): `path` says which API the client speaks.
#[allow(clippy::too_many_arguments)]
fn whole_request(
    config: &Arc<Config>,
    store: &tollgate::store::MemoryStore,
    metrics: &mut MetricCache,
    path: &str,
    alias: &str,
    body: &[u8],
    answer: &[u8],
    usage: &[(&str, f64)],
    metadata: Metadata,
) -> usize {
    let mut properties = vec![(
        "response.code_details".to_string(),
        b"via_upstream".to_vec(),
    )];
    let entries = |namespace: &str, entries: Vec<(&str, Vec<u8>)>| {
        entries
            .into_iter()
            .map(|(k, v)| (format!("metadata.filter_metadata.{namespace}.{k}"), v))
            .collect::<Vec<_>>()
    };
    match metadata {
        Metadata::Given => {
            let given = vec![
                ("model", alias.as_bytes().to_vec()),
                ("model_value", alias.as_bytes().to_vec()),
            ];
            properties.extend(entries("tollgate", given));
            let usage: Vec<(&str, Vec<u8>)> = usage
                .iter()
                .map(|(k, v)| (*k, v.to_le_bytes().to_vec()))
                .collect();
            properties.extend(entries("tollgate_usage", usage));
        }
        Metadata::FromBodies => {
            let scanned = body_metadata::request_metadata(Some("application/json"), body);
            properties.extend(entries("tollgate", scanned));
            properties.extend(entries(
                "tollgate_usage",
                body_metadata::response_usage(Some("application/json"), answer),
            ));
        }
    }
    let content_length = body.len().to_string();
    let mut host = BenchHost {
        request_headers: owned(&[
            (":authority", "127.0.0.1:4000"),
            (":path", path),
            (":method", "POST"),
            (":scheme", "http"),
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {BENCH_KEY}")),
            ("content-length", &content_length),
            ("x-forwarded-proto", "http"),
            ("x-request-id", "3f1c2a9e-5b7d-4e2f-9a10-6c8d7e5f4a3b"),
        ]),
        response_headers: Vec::new(),
        request_body: body.to_vec(),
        response_body: Vec::new(),
        properties,
        store: store.clone(),
        metrics: std::mem::take(metrics),
    };
    let mut f = HttpFilter::new(Arc::clone(config), Role::Gateway);
    assert_eq!(f.on_request_headers(&mut host, false), Action::Continue);
    let n = host.request_body.len();
    assert_eq!(f.on_request_body(&mut host, n, true), Action::Continue);
    host.response_headers = owned(&[
        (":status", "200"),
        ("content-type", "application/json"),
        ("content-length", "602"),
        ("date", "Sat, 22 Nov 2026 00:51:00 GMT"),
        ("server", "envoy"),
        ("x-envoy-upstream-service-time", "0"),
    ]);
    assert_eq!(f.on_response_headers(&mut host, false), Action::Continue);
    host.response_body = answer.to_vec();
    let n = host.response_body.len();
    assert_eq!(f.on_response_body(&mut host, n, true), Action::Continue);
    f.on_done(&mut host);
    *metrics = std::mem::take(&mut host.metrics);
    host.response_body.len()
}

/// The filter's whole request path (targets 3 and 4) natively, with an in-memory host: every
/// callback, authentication, admission and settlement in both scopes, translation both ways,
/// metric names, response headers. What Tollgate's own code costs per request, before V8.
fn whole(c: &mut Criterion) {
    let config = Arc::new(bench_gateway());
    let store = tollgate::store::MemoryStore::default();
    let now = 1_790_000_000;
    for token in config.keys.keys() {
        quota::ensure_record(&store, &quota::record_key(Scope::Key, token), now);
    }
    for team in config.teams.keys() {
        quota::ensure_record(&store, &quota::record_key(Scope::Team, team), now);
    }
    let request = |alias: &str| {
        let mut body: serde_json::Value = serde_json::from_slice(CHAT_REQUEST).expect("fixture");
        if let Some(m) = body.as_object_mut() {
            m.insert("model".into(), json!(alias));
        }
        serde_json::to_vec(&body).expect("serializes")
    };
    let openai_body = request("gpt-bench");
    let anthropic_body = request("claude-bench");
    let mut metrics = MetricCache::default();
    let mut g = c.benchmark_group("filter");
    g.bench_function("passthrough", |b| {
        b.iter(|| {
            whole_request(
                &config,
                &store,
                &mut metrics,
                CHAT_PATH,
                "gpt-bench",
                &openai_body,
                OPENAI_RESPONSE,
                &[
                    ("prompt_tokens", 171.0),
                    ("completion_tokens", 46.0),
                    ("cached_tokens", 0.0),
                ],
                Metadata::Given,
            )
        })
    });
    let anthropic_usage = [
        ("input_tokens", 171.0),
        ("output_tokens", 46.0),
        ("cache_read_input_tokens", 0.0),
        ("cache_creation_input_tokens", 0.0),
    ];
    // Target (4f): (4) with the shared store configured, in the steady state: the key's and the
    // team's leases hold every request, so no request waits on the store.
    let fleet_config = Arc::new(gateway_config(true));
    let fleet_store = tollgate::store::MemoryStore::default();
    lease_all(&fleet_config, &fleet_store);
    for (name, metadata, config, store) in [
        ("anthropic_virtual_key", Metadata::Given, &config, &store),
        (
            "anthropic_virtual_key_module",
            Metadata::FromBodies,
            &config,
            &store,
        ),
        (
            "anthropic_virtual_key_fleet",
            Metadata::Given,
            &fleet_config,
            &fleet_store,
        ),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                whole_request(
                    config,
                    store,
                    &mut metrics,
                    CHAT_PATH,
                    "claude-bench",
                    &anthropic_body,
                    ANTHROPIC_RESPONSE,
                    &anthropic_usage,
                    metadata,
                )
            })
        });
    }
    // Target (7): the same conversation in Anthropic's Messages API, to the Anthropic deployment
    // (pass-through), with the virtual key.
    let messages_body = messages_request("claude-bench");
    g.bench_function("messages_passthrough", |b| {
        b.iter(|| {
            whole_request(
                &config,
                &store,
                &mut metrics,
                "/v1/messages",
                "claude-bench",
                &messages_body,
                ANTHROPIC_RESPONSE,
                &anthropic_usage,
                Metadata::Given,
            )
        })
    });
    g.finish();
}

/// Gives the bench key's and team's ledgers leases larger than any run spends, as the store's
/// answer to an admission that asked it (`tg_admit`) does, after the replica's first sync and its
/// read of the key: the key seen, its parties tracked and leased.
fn lease_all(config: &Config, store: &tollgate::store::MemoryStore) {
    use tollgate::auth::{authenticate_token, Principal};
    use tollgate::fleet;
    use tollgate::quota::fleet::{Amounts, FleetGrant};
    const NOW_MS: u64 = 1_790_000_000_000;
    let token = tollgate::keys::hash_key(BENCH_KEY);
    // The replica's first sync answered (the change log's cursor), then the key and its team
    // read from the store (which overrides neither): both seen, so no request reads them again.
    use tollgate::keys::fleet as key_fleet;
    key_fleet::apply_changes(store, &[], Some("1-0"), false);
    let none = r#"{"key":null}"#;
    let started = key_fleet::read_started(store);
    key_fleet::install(store, &config.keys, &token, none, started, NOW_MS).expect("key read");
    for team in config.teams.keys() {
        let team_token = format!("{}{team}", tollgate::keys::TEAM_TOKEN_PREFIX);
        key_fleet::install_team(store, &config.teams, &team_token, none, started, NOW_MS)
            .expect("team read");
    }
    assert!(
        !key_fleet::needs_read(store, &token, NOW_MS),
        "the bench key is seen"
    );
    let principal = authenticate_token(config, store, &token, NOW_MS / 1000).expect("bench key");
    let Principal::Key(k) = &principal else {
        panic!("the bench key is not a virtual key")
    };
    let parties: Vec<quota::Party> = std::iter::once(k.key_party())
        .chain(k.team_party())
        .collect();
    let list: Vec<&quota::Party> = parties.iter().collect();
    let est = quota::Estimate { cost: 1, tokens: 1 };
    let plenty = u64::MAX / 8;
    // No lease yet: the admission asks the store (`tg_admit`), whose answer grants each party a
    // lease; then the next admission is held by the leases alone.
    let Ok(fleet::Admitted::Ask { ask, .. }) = fleet::admit(store, &list, NOW_MS, est, u64::MAX)
    else {
        panic!("a first admission without leases does not ask the store")
    };
    for party in ask.iter().filter_map(|&i| list.get(i)) {
        let granted = Amounts {
            b: plenty,
            r: plenty,
            t: plenty,
            p: plenty,
        };
        let grant = FleetGrant {
            have: 0,
            granted: Some(granted),
            minute: NOW_MS / 60_000,
            fleet: None,
        };
        fleet::admitted_by_fleet(store, party, NOW_MS, est, grant, u64::MAX).expect("admitted");
    }
    assert!(
        matches!(
            fleet::admit(store, &list, NOW_MS, est, u64::MAX),
            Ok(fleet::Admitted::Local(_))
        ),
        "the bench key's leases hold a request"
    );
}

const BENCH_KEY: &str = "sk-bench-virtual-Hn4c8Rw";

const CHAT_PATH: &str = "/v1/chat/completions";

/// The fixture's conversation as Anthropic's Messages API has it, as `bench/run.py` sends it to
/// target (7).
fn messages_request(alias: &str) -> Vec<u8> {
    let chat: serde_json::Value = serde_json::from_slice(CHAT_REQUEST).expect("fixture");
    let field = |name: &str| chat.get(name).cloned().expect("fixture field");
    let messages = field("messages");
    let (system, turns) = messages
        .as_array()
        .and_then(|m| m.split_first())
        .expect("fixture messages");
    let body = json!({
        "model": alias,
        "max_tokens": field("max_tokens"),
        "temperature": field("temperature"),
        "system": system.get("content"),
        "messages": turns,
        "metadata": {"user_id": field("user")},
    });
    serde_json::to_vec(&body).expect("serializes")
}

criterion_group! {
    name = benches;
    config = short();
    targets = requests, responses, streams, admission, whole
}
criterion_main!(benches);
