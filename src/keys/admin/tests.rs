use super::*;
use crate::config::{load, Strictness};
use crate::store::MemoryStore;
use hashbrown::HashMap;

fn config() -> Config {
    let doc = json!({
        "model_list": [{"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-p", "api_base": "http://127.0.0.1:1/v1"}}],
        "general_settings": {"master_key": "sk-master"},
        "teams": [{"team_id": "search", "max_budget": 100.0}],
        "keys": [{"key": "sk-config-key-1", "key_alias": "cfg", "team_id": "search", "max_budget": 1.0}]
    });
    let r = load(&doc, &HashMap::<String, String>::new(), Strictness::Serve);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    r.config.unwrap()
}

fn call(ctx: &AdminCtx, op: AdminOp, query: &str, body: Value) -> Result<Value, ApiError> {
    let bytes = serde_json::to_vec(&body).unwrap();
    handle(op, ctx, query, &bytes).map(|b| serde_json::from_slice(&b).unwrap())
}

#[test]
fn key_lifecycle() {
    let config = config();
    let store = MemoryStore::default();
    let ctx = AdminCtx {
        config: &config,
        store: &store,
        now: 1_800_000_000,
        random: [7; 32],
    };
    let g = call(&ctx, AdminOp::Generate, "", json!({"key_alias": "a1", "team_id": "search", "max_budget": 2.5, "budget_duration": "30d", "models": ["gpt"], "duration": "1h", "metadata": {"owner": "me"}})).unwrap();
    let key = g["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("sk-") && key.len() > 20);
    assert_eq!(g["token"], hash_key(&key));
    assert_eq!(g["expires"], "2027-01-15T09:00:00Z");
    assert_eq!(g["spend"], 0.0);
    assert!(
        store
            .get(&quota::record_key(Scope::Key, &hash_key(&key)))
            .is_some(),
        "usage record created with the key"
    );

    let info = call(&ctx, AdminOp::Info, &format!("key={key}"), Value::Null).unwrap();
    assert_eq!(info["info"]["key_alias"], "a1");
    assert_eq!(info["info"]["max_budget"], 2.5);
    assert!(
        info["info"].get("key").is_none(),
        "the key itself is shown only once"
    );
    let by_hash = call(
        &ctx,
        AdminOp::Info,
        &format!("key={}", hash_key(&key)),
        Value::Null,
    )
    .unwrap();
    assert_eq!(by_hash, info);

    let u = call(
        &ctx,
        AdminOp::Update,
        "",
        json!({"key": key, "rpm_limit": 10, "max_budget": null}),
    )
    .unwrap();
    assert_eq!(
        (u["rpm_limit"].clone(), u["max_budget"].clone()),
        (json!(10), Value::Null)
    );
    let b = call(&ctx, AdminOp::Block, "", json!({"key": key})).unwrap();
    assert_eq!(b["blocked"], true);
    assert_eq!(
        call(&ctx, AdminOp::Unblock, "", json!({"key": key})).unwrap()["blocked"],
        false
    );

    let list = call(&ctx, AdminOp::List, "", Value::Null).unwrap();
    assert_eq!(list["total_count"], 2, "{list}");
    let full = call(
        &ctx,
        AdminOp::List,
        "return_full_object=true&key_alias=cfg",
        Value::Null,
    )
    .unwrap();
    assert_eq!(full["keys"][0]["source"], "config");

    let d = call(&ctx, AdminOp::Delete, "", json!({"keys": [key]})).unwrap();
    assert_eq!(d["deleted_keys"][0], hash_key(&key));
    assert_eq!(
        call(&ctx, AdminOp::Info, &format!("key={key}"), Value::Null)
            .unwrap_err()
            .status,
        404
    );
    // Deleting a config key hides it too.
    call(&ctx, AdminOp::Delete, "", json!({"key_aliases": ["cfg"]})).unwrap();
    assert_eq!(
        call(&ctx, AdminOp::List, "", Value::Null).unwrap()["total_count"],
        0
    );
}

#[test]
fn bad_admin_input_is_refused_and_changes_nothing() {
    let config = config();
    let store = MemoryStore::default();
    let ctx = AdminCtx {
        config: &config,
        store: &store,
        now: 1_800_000_000,
        random: [7; 32],
    };
    let cases = [
        (AdminOp::Generate, json!({"max_budget": -1}), "max_budget"),
        (AdminOp::Generate, json!({"max_budgt": 1}), "max_budgt"),
        (AdminOp::Generate, json!({"rpm_limit": "many"}), "rpm_limit"),
        (
            AdminOp::Generate,
            json!({"budget_duration": "forever"}),
            "budget_duration",
        ),
        (AdminOp::Generate, json!({"team_id": "nope"}), "team_id"),
        (AdminOp::Generate, json!({"models": ["nope"]}), "models"),
        (AdminOp::Generate, json!({"key": "short"}), "key"),
        (AdminOp::Generate, json!({"key": "sk-config-key-1"}), "key"),
        (
            AdminOp::Generate,
            json!({"duration": "1d", "expires": "2030-01-01"}),
            "duration",
        ),
        (AdminOp::Update, json!({"rpm_limit": 1}), "key"),
        (
            AdminOp::Update,
            json!({"key": "sk-unknown-key-000", "rpm_limit": 1}),
            "key",
        ),
        (
            AdminOp::Block,
            json!({"key": "sk-config-key-1", "extra": 1}),
            "extra",
        ),
        (AdminOp::Delete, json!({}), "keys"),
        (AdminOp::Delete, json!({"keys": "sk-config-key-1"}), "keys"),
    ];
    for (op, body, param) in cases {
        let e = call(&ctx, op, "", body.clone()).unwrap_err();
        assert!((400..500).contains(&e.status), "{body}: {e:?}");
        assert_eq!(e.param.as_deref(), Some(param), "{body}: {}", e.message);
    }
    for raw in [&b"{bad"[..], b"[1]", b"\"x\""] {
        assert_eq!(
            handle(AdminOp::Generate, &ctx, "", raw).unwrap_err().status,
            400
        );
    }
    assert_eq!(
        call(&ctx, AdminOp::Info, "", Value::Null)
            .unwrap_err()
            .param
            .as_deref(),
        Some("key")
    );
    assert_eq!(
        call(&ctx, AdminOp::List, "page=0", Value::Null)
            .unwrap_err()
            .param
            .as_deref(),
        Some("page")
    );
    assert!(
        store.keys().is_empty(),
        "refused calls wrote {:?}",
        store.keys()
    );
}
