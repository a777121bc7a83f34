use super::*;
use crate::config::{load, Strictness};
use crate::quota::Scope;
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

fn authenticate(config: &Config, store: &MemoryStore, key: &str) -> Result<(), ApiError> {
    crate::auth::authenticate_token(config, store, &hash_key(key), 1_800_000_000).map(|_| ())
}

/// `/team/new` .. `/team/delete` in LiteLLM's shapes, and what a team's state does to its keys.
#[test]
fn team_lifecycle() {
    let config = config();
    let store = MemoryStore::default();
    let ctx = ctx(&config, &store, 3);
    let t = call(&ctx, AdminOp::TeamNew, "", json!({"team_id": "ml", "team_alias": "ML", "max_budget": 5.0, "budget_duration": "30d", "rpm_limit": 60, "models": ["gpt"], "members_with_roles": [{"role": "admin", "user_id": "u1"}], "metadata": {"cost_center": "7"}})).unwrap();
    assert_eq!(
        (
            &t["team_id"],
            &t["team_alias"],
            &t["max_budget"],
            &t["rpm_limit"]
        ),
        (&json!("ml"), &json!("ML"), &json!(5.0), &json!(60))
    );
    assert_eq!(
        (&t["spend"], &t["blocked"], &t["source"]),
        (&json!(0.0), &json!(false), &json!("api"))
    );
    let g = call(&ctx, AdminOp::Generate, "", json!({"team_id": "ml"})).unwrap();
    let key = g["key"].as_str().unwrap().to_string();
    assert!(authenticate(&config, &store, &key).is_ok());

    let info = call(&ctx, AdminOp::TeamInfo, "team_id=ml", Value::Null).unwrap();
    assert_eq!(info["team_id"], "ml");
    assert_eq!(info["team_info"]["max_budget"], 5.0);
    assert_eq!(info["keys"].as_array().unwrap().len(), 1);
    assert_eq!(info["keys"][0]["token"], hash_key(&key));

    let u = call(
        &ctx,
        AdminOp::TeamUpdate,
        "",
        json!({"team_id": "ml", "max_budget": 9.5, "rpm_limit": null}),
    )
    .unwrap();
    assert_eq!(
        (
            &u["team_id"],
            &u["data"]["max_budget"],
            &u["data"]["rpm_limit"]
        ),
        (&json!("ml"), &json!(9.5), &Value::Null)
    );
    assert_eq!(u["data"]["team_alias"], "ML", "fields not passed stay");

    let b = call(&ctx, AdminOp::TeamBlock, "", json!({"team_id": "ml"})).unwrap();
    assert_eq!(b["blocked"], true);
    let e = authenticate(&config, &store, &key).unwrap_err();
    assert_eq!((e.status, e.code.as_deref()), (403, Some("team_blocked")));
    call(&ctx, AdminOp::TeamUnblock, "", json!({"team_id": "ml"})).unwrap();
    assert!(authenticate(&config, &store, &key).is_ok());

    let list = call(&ctx, AdminOp::TeamList, "", Value::Null).unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["team_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ml", "search"]);
    let by_user = call(&ctx, AdminOp::TeamList, "user_id=u1", Value::Null).unwrap();
    assert_eq!(by_user.as_array().unwrap().len(), 1);

    // Deleting a team deletes its keys (LiteLLM's rule).
    let d = call(&ctx, AdminOp::TeamDelete, "", json!({"team_ids": ["ml"]})).unwrap();
    assert_eq!(d["deleted_teams"], json!(["ml"]));
    assert_eq!(d["deleted_keys"], json!([hash_key(&key)]));
    assert_eq!(authenticate(&config, &store, &key).unwrap_err().status, 401);
    assert_eq!(
        call(&ctx, AdminOp::TeamInfo, "team_id=ml", Value::Null)
            .unwrap_err()
            .status,
        404
    );
    assert_eq!(
        call(&ctx, AdminOp::TeamList, "", Value::Null)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// A key the admin API never deleted (made on another replica, say) goes with its team all the
/// same, and stays gone when a team with the same id is created again, which starts from zero.
#[test]
fn a_key_goes_with_its_team_generation() {
    let config = config();
    let store = MemoryStore::default();
    call(
        &ctx(&config, &store, 1),
        AdminOp::TeamNew,
        "",
        json!({"team_id": "ml", "max_budget": 1.0}),
    )
    .unwrap();
    let key = call(
        &ctx(&config, &store, 2),
        AdminOp::Generate,
        "",
        json!({"team_id": "ml"}),
    )
    .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let old = find_team(&config.teams, &store, "ml").unwrap();
    // Delete the team's record only, as a replica that never saw the key would.
    let mut tomb = old.clone();
    tomb.deleted = true;
    store
        .set(
            &super::super::team_store_key("ml"),
            &serde_json::to_vec(&tomb).unwrap(),
            None,
        )
        .unwrap();
    assert_eq!(
        authenticate(&config, &store, &key)
            .unwrap_err()
            .code
            .as_deref(),
        Some("invalid_api_key")
    );
    let again = call(
        &ctx(&config, &store, 9),
        AdminOp::TeamNew,
        "",
        json!({"team_id": "ml"}),
    )
    .unwrap();
    assert_eq!(again["spend"], 0.0);
    let new = find_team(&config.teams, &store, "ml").unwrap();
    assert_ne!(new.generation, old.generation);
    assert_ne!(new.usage_record(), old.usage_record());
    assert!(
        store.get(&new.usage_record()).is_some(),
        "usage record made with the team"
    );
    assert_eq!(authenticate(&config, &store, &key).unwrap_err().status, 401);
    let listed = call(
        &ctx(&config, &store, 9),
        AdminOp::List,
        "team_id=ml",
        Value::Null,
    )
    .unwrap();
    assert_eq!(listed["total_count"], 0);
    // A key made now joins the new team.
    let k2 = call(
        &ctx(&config, &store, 4),
        AdminOp::Generate,
        "",
        json!({"team_id": "ml"}),
    )
    .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(authenticate(&config, &store, &k2).is_ok());
}

/// Config teams: their ids are taken; an update overrides the config (as for config keys); a
/// block refuses their keys; a delete hides them and refuses their keys.
#[test]
fn config_teams_through_the_api() {
    let config = config();
    let store = MemoryStore::default();
    let c = ctx(&config, &store, 5);
    let e = call(&c, AdminOp::TeamNew, "", json!({"team_id": "search"})).unwrap_err();
    assert_eq!((e.status, e.code.as_deref()), (400, Some("team_exists")));
    let u = call(
        &c,
        AdminOp::TeamUpdate,
        "",
        json!({"team_id": "search", "rpm_limit": 7}),
    )
    .unwrap();
    assert_eq!(
        (
            &u["data"]["rpm_limit"],
            &u["data"]["max_budget"],
            &u["data"]["source"]
        ),
        (&json!(7), &json!(100.0), &json!("config"))
    );
    assert!(authenticate(&config, &store, "sk-config-key-1").is_ok());
    call(&c, AdminOp::TeamBlock, "", json!({"team_id": "search"})).unwrap();
    assert_eq!(
        authenticate(&config, &store, "sk-config-key-1")
            .unwrap_err()
            .code
            .as_deref(),
        Some("team_blocked")
    );
    let d = call(&c, AdminOp::TeamDelete, "", json!({"team_ids": ["search"]})).unwrap();
    assert_eq!(d["deleted_keys"], json!([hash_key("sk-config-key-1")]));
    assert_eq!(
        authenticate(&config, &store, "sk-config-key-1")
            .unwrap_err()
            .status,
        401
    );
    let e = call(&c, AdminOp::TeamNew, "", json!({"team_id": "search"})).unwrap_err();
    assert_eq!(
        e.code.as_deref(),
        Some("team_exists"),
        "a config team's id stays reserved"
    );
}

#[test]
fn bad_team_input_is_refused_and_changes_nothing() {
    let config = config();
    let store = MemoryStore::default();
    let c = ctx(&config, &store, 6);
    for (op, body, param) in [
        (AdminOp::TeamNew, json!({"team_id": "has space"}), "team_id"),
        (AdminOp::TeamNew, json!({"team_id": 5}), "team_id"),
        (AdminOp::TeamNew, json!({"max_budget": -1}), "max_budget"),
        (
            AdminOp::TeamNew,
            json!({"budget_duration": "3y"}),
            "budget_duration",
        ),
        (AdminOp::TeamNew, json!({"models": ["nope"]}), "models"),
        (
            AdminOp::TeamNew,
            json!({"model_aliases": {}}),
            "model_aliases",
        ),
        (
            AdminOp::TeamNew,
            json!({"members_with_roles": ["u1"]}),
            "members_with_roles",
        ),
        (AdminOp::TeamUpdate, json!({"max_budget": 1}), "team_id"),
        (
            AdminOp::TeamBlock,
            json!({"team_id": "search", "x": 1}),
            "x",
        ),
        (AdminOp::TeamDelete, json!({}), "team_ids"),
        (
            AdminOp::TeamDelete,
            json!({"team_ids": "search"}),
            "team_ids",
        ),
        (AdminOp::Generate, json!({"team_id": "nope"}), "team_id"),
    ] {
        let e = call(&c, op, "", body.clone()).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some(param)), "{body}");
    }
    for (op, body) in [
        (AdminOp::TeamUpdate, json!({"team_id": "nope"})),
        (AdminOp::TeamUnblock, json!({"team_id": "nope"})),
        (AdminOp::TeamDelete, json!({"team_ids": ["search", "nope"]})),
    ] {
        let e = call(&c, op, "", body.clone()).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_deref()),
            (404, Some("team_not_found")),
            "{body}"
        );
    }
    assert!(
        find_team(&config.teams, &store, "search").is_some(),
        "a failed delete deletes nothing"
    );
    assert_eq!(
        call(&c, AdminOp::TeamInfo, "", Value::Null)
            .unwrap_err()
            .status,
        400
    );
    // Without an id: a UUID, as LiteLLM makes.
    let t = call(&c, AdminOp::TeamNew, "", json!({})).unwrap();
    let id = t["team_id"].as_str().unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(id.as_bytes()[14], b'4');
}
