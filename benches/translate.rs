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

use tollgate::config::{self, Config, Deployment, Strictness};
use tollgate::openai::{parse_chat, ResponseCtx};
use tollgate::providers::RequestOptions;

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
    for alias in ["openai", "anthropic", "gemini", "bedrock"] {
        let d = deployment(&config, alias);
        g.bench_function(alias, |b| {
            b.iter(|| {
                let req = parse_chat(black_box(CHAT_REQUEST)).expect("fixture parses");
                d.provider
                    .chat_request(&req, d, RequestOptions::default())
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
    // `make bench` has ten minutes for everything; these settle well within a second or two.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

fn admission(c: &mut Criterion) {
    use tollgate::quota::{self, Charge, Estimate, Limits, Party, Scope};
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
            let minute = a.key.minute;
            black_box(quota::settle_one(&store, &key, now, minute, est, actual));
            black_box(quota::settle_one(&store, &team, now, minute, est, actual));
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = short();
    targets = requests, responses, streams, admission
}
criterion_main!(benches);
