//! `--features work`: Tollgate's own work per request inside (2n), for bench/decompose.py.
//!
//! `work tollgate`: every callback of Tollgate's filter on the request `make bench` sends to (4m)
//! (OpenAI in, Anthropic out, the virtual key admitted and charged with its team, metrics,
//! response headers), on the in-memory host of Tollgate's unit tests instead of Envoy.
//! `work spin <n>` / `work spin match`: a loop of multiplications on registers, `n` rounds or as
//! many as take as long as one `work tollgate` request on an idle core. Comparing the two in Envoy
//! separates what Tollgate's code costs by its length from what it costs by the memory it touches.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashMap;
use serde_json::json;
use tollgate::config::{self, Config, Strictness};
use tollgate::filter::{body_metadata, HttpFilter, Role};
use tollgate::host::mock::MockHost;
use tollgate::quota::{self, Scope};
use tollgate::store::MemoryStore;

const CHAT_REQUEST: &[u8] = include_bytes!("../../fixtures/chat_request.json");
const ANTHROPIC_RESPONSE: &[u8] = include_bytes!("../../fixtures/anthropic_response.json");

pub enum Work {
    None,
    Tollgate(Box<Tollgate>),
    Spin(u64),
}

impl Work {
    /// The work a `work <name> <value>` line asks for; `None` (the config is refused) if the
    /// line is wrong or Tollgate's work is not what (4m) does.
    pub fn from_config(name: &str, value: &str) -> Option<Work> {
        let work = match name {
            "tollgate" => Tollgate::new().map(|t| Work::Tollgate(Box::new(t))),
            "spin" if value == "match" => Tollgate::new().map(|t| Work::Spin(spin_matching(&t))),
            "spin" => value.parse().map(Work::Spin).map_err(|e| e.to_string()),
            _ => Err(format!("unknown work '{name}'")),
        };
        work.map_err(|e| eprintln!("work: {e}")).ok()
    }

    pub fn run(&self) {
        match self {
            Work::None => {}
            Work::Tollgate(t) => {
                black_box(t.run());
            }
            Work::Spin(n) => {
                black_box(spin(*n));
            }
        }
    }
}

/// The gateway (bench/bench.yaml's Anthropic deployment, key and team) and its shared store.
pub struct Tollgate {
    config: Arc<Config>,
    store: MemoryStore,
    body: Vec<u8>,
    /// `Bearer` and bench.yaml's `client_key`.
    authorization: String,
}

impl Tollgate {
    fn new() -> Result<Self, String> {
        // bench/bench.yaml's gateway, as `make bench` renders it, the mock at an unused port.
        let spec: serde_json::Value = serde_yaml_ng::from_str(include_str!("../../bench.yaml"))
            .map_err(|e| format!("bench/bench.yaml: {e}"))?;
        let text = spec["gateway"]
            .to_string()
            .replace("MOCK", "http://127.0.0.1:9");
        let env: HashMap<String, String> = HashMap::new();
        let report = config::load_json(text.as_bytes(), &env, Strictness::Serve);
        let config = report
            .config
            .ok_or(format!("configuration refused: {:?}", report.errors))?;
        let store = MemoryStore::default();
        let now = 1_790_000_000;
        for token in config.keys.keys() {
            quota::ensure_record(&store, &quota::record_key(Scope::Key, token), now);
        }
        for team in config.teams.keys() {
            quota::ensure_record(&store, &quota::record_key(Scope::Team, team), now);
        }
        let mut body: serde_json::Value = serde_json::from_slice(CHAT_REQUEST).unwrap_or_default();
        body["model"] = json!("claude-bench");
        let t = Tollgate {
            config: Arc::new(config),
            store,
            body: serde_json::to_vec(&body).unwrap_or_default(),
            authorization: format!("Bearer {}", spec["client_key"].as_str().unwrap_or_default()),
        };
        // The work must be the real path: a translated completion, no local reply.
        let host = t.request();
        let translated = host.response_body.starts_with(br#"{"id":"chatcmpl-"#);
        let path = host.request_headers.iter().find(|(k, _)| k == ":path");
        if host.reply.is_some()
            || !translated
            || path.map(|(_, v)| v.as_str()) != Some("/anthropic/v1/messages")
        {
            return Err(format!(
                "Tollgate did not take the (4m) path: reply {:?}",
                host.reply
            ));
        }
        Ok(t)
    }

    fn run(&self) -> usize {
        self.request().response_body.len()
    }

    /// One request through every callback, as the module form sees it (body fields read from the
    /// bodies it holds).
    fn request(&self) -> MockHost {
        let mut host = MockHost::request(
            "POST",
            "/v1/chat/completions",
            &[
                ("content-type", "application/json"),
                ("authorization", &self.authorization),
            ],
        );
        host.store = self.store.clone();
        host.now_ms = 1_790_000_000_000;
        host.request_body = self.body.clone();
        for (k, v) in body_metadata::request_metadata(Some("application/json"), &self.body) {
            host.properties
                .insert(format!("metadata.filter_metadata.tollgate.{k}"), v);
        }
        for (k, v) in body_metadata::response_usage(Some("application/json"), ANTHROPIC_RESPONSE) {
            host.properties
                .insert(format!("metadata.filter_metadata.tollgate_usage.{k}"), v);
        }
        host.properties
            .insert("response.code_details".into(), b"via_upstream".to_vec());
        let mut f = HttpFilter::new(Arc::clone(&self.config), Role::Gateway);
        f.on_request_headers(&mut host, false);
        let n = host.request_body.len();
        f.on_request_body(&mut host, n, true);
        host.response_headers = vec![
            (":status".into(), "200".into()),
            ("content-type".into(), "application/json".into()),
            (
                "content-length".into(),
                ANTHROPIC_RESPONSE.len().to_string(),
            ),
        ];
        f.on_response_headers(&mut host, false);
        host.response_body = ANTHROPIC_RESPONSE.to_vec();
        let n = host.response_body.len();
        f.on_response_body(&mut host, n, true);
        f.on_done(&mut host);
        host
    }
}

#[inline(never)]
fn spin(n: u64) -> u64 {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..n {
        x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i));
    }
    x
}

/// Spin rounds that take as long as one `work tollgate` request, both timed hot on this thread
/// (Envoy's main thread, before the workers start). Logged, for the report.
fn spin_matching(t: &Tollgate) -> u64 {
    let time = |f: &dyn Fn(), n: u32| {
        for _ in 0..n / 4 {
            f();
        }
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed().as_nanos() as f64 / f64::from(n)
    };
    let request = time(
        &|| {
            black_box(t.run());
        },
        5_000,
    );
    let round = time(
        &|| {
            black_box(spin(10_000));
        },
        1_000,
    ) / 10_000.0;
    let rounds = (request / round) as u64;
    eprintln!("work: one Tollgate request takes {request:.0} ns hot; spinning {rounds} rounds of {round:.3} ns");
    rounds
}
