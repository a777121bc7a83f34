use super::*;
use crate::config::{load, Strictness};
use hashbrown::HashMap;
use serde_json::json;

fn config(strategy: &str, extra: serde_json::Value) -> Config {
    let mut doc = json!({
        "model_list": [
            {"model_name": "smart", "litellm_params": {"model": "openai/a", "api_key": "k", "api_base": "http://127.0.0.1:1/v1", "weight": 3, "order": 1, "input_cost_per_token": 0.000003, "output_cost_per_token": 0.000006}},
            {"model_name": "smart", "litellm_params": {"model": "openai/b", "api_key": "k", "api_base": "http://127.0.0.1:2/v1", "weight": 1, "order": 1, "tpm": 1000, "input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002}},
            {"model_name": "smart", "litellm_params": {"model": "openai/c", "api_key": "k", "api_base": "http://127.0.0.1:3/v1", "weight": 0, "order": 2}, "model_info": {"max_input_tokens": 100}},
        ],
        "router_settings": {"routing_strategy": strategy}
    });
    if let (Some(m), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    let r = load(&doc, &HashMap::<String, String>::new(), Strictness::Serve);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    r.config.unwrap()
}

fn ask<'a>(tried: &'a [usize], random: u64, prompt_tokens: u64) -> Ask<'a> {
    Ask {
        alias: "smart",
        op: Operation::Chat,
        prompt_tokens,
        stream: false,
        now_ms: 1_000_000,
        tried,
        random,
    }
}

fn picks(
    c: &Config,
    h: &HashMap<usize, Health>,
    tried: &[usize],
    samples: u64,
) -> HashMap<usize, u64> {
    let mut counts = HashMap::new();
    for n in 0..samples {
        let random = n.wrapping_mul(u64::MAX / samples);
        if let Ok(Choice::Deployment(i)) = choose(c, &ask(tried, random, 10), &|d| {
            h.get(&d.index).copied().unwrap_or_default()
        }) {
            *counts.entry(i).or_default() += 1;
        }
    }
    counts
}

#[test]
fn simple_shuffle_follows_weights_within_the_first_order_tier() {
    let c = config("simple-shuffle", json!({}));
    let counts = picks(&c, &HashMap::new(), &[], 4000);
    assert_eq!(
        counts.get(&2),
        None,
        "order 2 is tried only after the order-1 tier"
    );
    let (a, b) = (counts[&0] as f64, counts[&1] as f64);
    assert!((a / (a + b) - 0.75).abs() < 0.02, "{counts:?}");
}

#[test]
fn cooling_and_tried_deployments_are_avoided() {
    let c = config("simple-shuffle", json!({}));
    let mut h = HashMap::new();
    h.insert(
        0,
        Health {
            cooldown_until_ms: 2_000_000,
            ..Default::default()
        },
    );
    assert_eq!(
        picks(&c, &h, &[], 100).keys().copied().collect::<Vec<_>>(),
        vec![1]
    );
    // With 1 tried as well, the other tier serves.
    assert_eq!(
        picks(&c, &h, &[1], 100).keys().copied().collect::<Vec<_>>(),
        vec![2]
    );
    // With everything tried, a retry may reuse a healthy deployment.
    assert!(picks(&c, &h, &[1, 2], 100).keys().all(|k| *k != 0));
    h.insert(
        1,
        Health {
            cooldown_until_ms: 2_000_000,
            ..Default::default()
        },
    );
    h.insert(
        2,
        Health {
            cooldown_until_ms: 2_000_000,
            ..Default::default()
        },
    );
    assert_eq!(
        choose(&c, &ask(&[], 0, 10), &|d| h[&d.index]).unwrap(),
        Choice::NoneAvailable
    );
}

#[test]
fn pre_call_checks_skip_small_context_windows() {
    let c = config("simple-shuffle", json!({}));
    let mut h = HashMap::new();
    h.insert(
        0,
        Health {
            cooldown_until_ms: 2_000_000,
            ..Default::default()
        },
    );
    h.insert(
        1,
        Health {
            cooldown_until_ms: 2_000_000,
            ..Default::default()
        },
    );
    let get = |d: &Deployment| h.get(&d.index).copied().unwrap_or_default();
    assert_eq!(
        choose(&c, &ask(&[], 0, 50), &get).unwrap(),
        Choice::Deployment(2)
    );
    assert_eq!(
        choose(&c, &ask(&[], 0, 500), &get).unwrap(),
        Choice::ContextTooLong
    );
}

#[test]
fn least_busy_latency_usage_and_cost() {
    let mut h = HashMap::new();
    h.insert(
        0,
        Health {
            in_flight: 5,
            latency_ms: 50,
            token_minute: 1_000_000 / 60_000,
            tokens: 100,
            ..Default::default()
        },
    );
    h.insert(
        1,
        Health {
            in_flight: 1,
            latency_ms: 400,
            token_minute: 1_000_000 / 60_000,
            tokens: 900,
            ..Default::default()
        },
    );
    let only = |c: &Config| picks(c, &h, &[], 50).keys().copied().collect::<Vec<_>>();
    assert_eq!(only(&config("least-busy", json!({}))), vec![1]);
    assert_eq!(only(&config("latency-based-routing", json!({}))), vec![0]);
    // 0 has no tpm (100 tokens); 1 has used 900 of 1000 (0.9).
    assert_eq!(only(&config("usage-based-routing", json!({}))), vec![1]);
    assert_eq!(only(&config("cost-based-routing", json!({}))), vec![1]);
}

#[test]
fn fallback_chains_and_needs_attempts() {
    let c = config(
        "simple-shuffle",
        json!({"router_settings": {"fallbacks": [{"smart": ["smart"]}], "default_fallbacks": ["smart"], "max_fallbacks": 3}}),
    );
    assert!(
        c.router.fallback_chain("smart").is_empty(),
        "a group never falls back to itself"
    );
    assert!(c.router.needs_attempts("smart", 3));
    assert!(!crate::config::router::RouterSettings::default().needs_attempts("x", 1));
}

#[test]
fn bad_router_settings_name_the_field() {
    let doc = json!({
        "model_list": [{"model_name": "smart", "litellm_params": {"model": "openai/a", "api_key": "k"}}],
        "router_settings": {"routing_strategy": "fastest", "fallbacks": [{"smart": ["nope"]}], "num_retries": 1.5,
                            "retry_policy": {"RateLimitErrorRetrys": 1}}
    });
    let r = load(&doc, &HashMap::<String, String>::new(), Strictness::Serve);
    let errs: Vec<String> = r.errors.iter().map(|e| e.to_string()).collect();
    for needle in [
        "router_settings.routing_strategy",
        "router_settings.fallbacks[0].smart[0]",
        "router_settings.num_retries",
        "router_settings.retry_policy.RateLimitErrorRetrys",
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(needle)),
            "{needle} in {errs:?}"
        );
    }
}
