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
    let record = find(&config.keys, &store, &hash_key(&key))
        .unwrap()
        .usage_record();
    assert!(
        record.starts_with(&format!(
            "{}.",
            quota::record_key(Scope::Key, &hash_key(&key))
        )) && store.get(&record).is_some(),
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

fn ctx<'a>(config: &'a Config, store: &'a MemoryStore, random: u8) -> AdminCtx<'a> {
    AdminCtx {
        config,
        store,
        now: 1_800_000_000,
        random: [random; 32],
    }
}

#[test]
fn the_master_key_is_no_virtual_key() {
    let config = config();
    let store = MemoryStore::default();
    let e = call(
        &ctx(&config, &store, 1),
        AdminOp::Generate,
        "",
        json!({"key": "sk-master"}),
    )
    .unwrap_err();
    assert_eq!((e.status, e.param.as_deref()), (400, Some("key")));
    assert!(e.message.contains("master key"), "{}", e.message);
    assert!(store.keys().is_empty(), "{:?}", store.keys());
}

#[test]
fn key_aliases_are_unique() {
    let config = config();
    let store = MemoryStore::default();
    crate::keys::ensure_index(&store);
    let c = ctx(&config, &store, 1);
    let dup = |r: Result<Value, ApiError>| {
        let e = r.unwrap_err();
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some("key_alias")),
            "{e:?}"
        );
        assert_eq!(
            e.message,
            format!(
                "Key with alias '{}' already exists. Unique key aliases across all keys are required.",
                if e.message.contains("'cfg'") { "cfg" } else { "a1" }
            )
        );
    };
    // The config's alias, then a generated one.
    dup(call(&c, AdminOp::Generate, "", json!({"key_alias": "cfg"})));
    let a1 = call(&c, AdminOp::Generate, "", json!({"key_alias": "a1"})).unwrap();
    let before = store.keys().len();
    dup(call(
        &ctx(&config, &store, 2),
        AdminOp::Generate,
        "",
        json!({"key_alias": "a1"}),
    ));
    assert_eq!(store.keys().len(), before, "a refused key writes nothing");
    // /key/update: another key's alias is refused, the key's own is not.
    let a2 = call(
        &ctx(&config, &store, 3),
        AdminOp::Generate,
        "",
        json!({"key_alias": "a2"}),
    )
    .unwrap();
    dup(call(
        &c,
        AdminOp::Update,
        "",
        json!({"key": a2["key"], "key_alias": "a1"}),
    ));
    dup(call(
        &c,
        AdminOp::Update,
        "",
        json!({"key": a2["key"], "key_alias": "cfg"}),
    ));
    call(
        &c,
        AdminOp::Update,
        "",
        json!({"key": a1["key"], "key_alias": "a1", "rpm_limit": 5}),
    )
    .unwrap();
    // An alias is free again once its key is renamed or deleted (a config key's too).
    call(
        &c,
        AdminOp::Update,
        "",
        json!({"key": a1["key"], "key_alias": "renamed"}),
    )
    .unwrap();
    call(
        &ctx(&config, &store, 4),
        AdminOp::Generate,
        "",
        json!({"key_alias": "a1"}),
    )
    .unwrap();
    call(&c, AdminOp::Delete, "", json!({"key_aliases": ["cfg"]})).unwrap();
    call(
        &ctx(&config, &store, 5),
        AdminOp::Generate,
        "",
        json!({"key_alias": "cfg"}),
    )
    .unwrap();
    let list = call(&c, AdminOp::List, "return_full_object=true", Value::Null).unwrap();
    let mut aliases: Vec<&str> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_alias"].as_str().unwrap())
        .collect();
    aliases.sort_unstable();
    assert_eq!(aliases, ["a1", "a2", "cfg", "renamed"]);
}

/// A key deleted while a request is in flight, then created again with the same value, starts
/// from zero: the late settlement lands in the deleted key's record, not in the new one.
#[test]
fn a_recreated_key_starts_from_zero() {
    use crate::auth::KeyPrincipal;
    use crate::quota::{admit_all, settle_one, Charge, Estimate};
    let config = config();
    let store = MemoryStore::default();
    crate::keys::ensure_index(&store);
    let body = json!({"key": "sk-recreated-key-0001", "max_budget": 1.0});
    call(
        &ctx(&config, &store, 1),
        AdminOp::Generate,
        "",
        body.clone(),
    )
    .unwrap();
    let old = KeyPrincipal::new(
        find(&config.keys, &store, &hash_key("sk-recreated-key-0001")).unwrap(),
        None,
    );
    let est = Estimate {
        cost: 500,
        tokens: 10,
    };
    let admitted = admit_all(&store, &old.key_party(), None, 1_800_000_000, est).unwrap();
    call(
        &ctx(&config, &store, 1),
        AdminOp::Delete,
        "",
        json!({"keys": ["sk-recreated-key-0001"]}),
    )
    .unwrap();
    let new = call(&ctx(&config, &store, 2), AdminOp::Generate, "", body).unwrap();
    // The old request ends after the key was created again.
    settle_one(
        &store,
        &old.key_party(),
        1_800_000_001,
        admitted.key.map_or(0, |s| s.minute),
        est,
        Charge {
            cost: 400,
            tokens: 10,
        },
    )
    .unwrap();
    let info = call(
        &ctx(&config, &store, 2),
        AdminOp::Info,
        "key=sk-recreated-key-0001",
        Value::Null,
    )
    .unwrap();
    assert_eq!(new["spend"], 0.0);
    assert_eq!(
        (
            info["info"]["spend"].clone(),
            info["info"]["reserved_spend"].clone(),
            info["info"]["current_parallel_requests"].clone()
        ),
        (json!(0.0), json!(0.0), json!(0))
    );
}
