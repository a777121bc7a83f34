//! LiteLLM's team management (`/team/new`, `/team/update`, `/team/block`, `/team/unblock`,
//! `/team/delete`, `/team/info`, `/team/list`), master key only, kept like the admin API's keys:
//! a team's record in shared data (`tollgate.team.<id>`) overrides the config's, a tombstone hides
//! it, and with a store every write goes through Redis first (`team:<id>` in `tg_key_put`).
//!
//! Semantics (LiteLLM's where it has them):
//! - `/team/new` takes an id of `[A-Za-z0-9_.:-]` (absent: a UUID); an id a live team or a config
//!   team has (deleted or not) is a 400 `team_exists`. A team deleted and created again starts
//!   from zero, with none of the old team's keys.
//! - `/team/update` of a config team writes an override, as `/key/update` does for a config key;
//!   config teams come back from the config only if the override goes (never, through the API).
//! - `/team/delete` deletes the teams and their keys (LiteLLM's "delete team and associated team
//!   keys"): the keys this replica knows get tombstones, and every other key of the team (made on
//!   another replica) is refused everywhere as a deleted key, because a key goes with the team
//!   generation it joined.

use serde_json::{json, Map, Value};

use super::admin::{self, query_param, AdminCtx};
use super::{
    apply_team_fields, find_team, is_team_id, team_store_key, time, TeamDef, TEAM_FIELDS,
    TEAM_INDEX_KEY,
};
use crate::error::ApiError;
use crate::quota;
use crate::store::{update, Store, UpdateError};

/// LiteLLM's team fields Tollgate keeps and shows without acting on them.
const KEPT_FIELDS: &[&str] = &["members_with_roles", "organization_id", "tags"];

/// Creates the (empty) team index before any admin call can race to create it.
pub fn ensure_index(store: &dyn Store) {
    if store.get(TEAM_INDEX_KEY).is_none() {
        let _ = store.set(TEAM_INDEX_KEY, b"[]", None);
    }
}

fn not_found(team_id: &str) -> ApiError {
    ApiError::not_found(format!("Team not found, passed team_id={team_id}"))
        .with_param("team_id")
        .with_code("team_not_found")
}

fn required_team_id(m: &Map<String, Value>) -> Result<String, ApiError> {
    admin::required_string(m, "team_id")
}

/// The live team `team_id` names.
pub fn lookup(ctx: &AdminCtx, team_id: &str) -> Result<TeamDef, ApiError> {
    find_team(&ctx.config.teams, ctx.store, team_id).ok_or_else(|| not_found(team_id))
}

fn check_fields(m: &Map<String, Value>, op: &str) -> Result<(), ApiError> {
    admin::check_fields_of(m, &[TEAM_FIELDS, KEPT_FIELDS], op)
}

/// The fields of a team, the LiteLLM ones Tollgate only keeps included.
fn apply_fields(def: &mut TeamDef, m: &Map<String, Value>) -> Result<(), ApiError> {
    let errs = apply_team_fields(def, m);
    if let Some((f, msg)) = errs.into_iter().next() {
        return Err(ApiError::invalid_param(
            &f,
            format!("Invalid '{f}': {msg}."),
        ));
    }
    if let (Some(soft), Some(max)) = (def.soft_budget, def.max_budget) {
        if soft > max {
            return Err(ApiError::invalid_param(
                "soft_budget",
                format!("Invalid 'soft_budget': {soft} is above max_budget {max}."),
            ));
        }
    }
    let bad = |f: &str, what: &str| ApiError::invalid_param(f, format!("Invalid '{f}': {what}."));
    match m.get("members_with_roles") {
        None => {}
        Some(Value::Null) => def.members_with_roles.clear(),
        Some(Value::Array(a)) if a.iter().all(Value::is_object) => {
            def.members_with_roles = a.clone()
        }
        Some(_) => return Err(bad("members_with_roles", "must be a list of objects")),
    }
    match m.get("organization_id") {
        None => {}
        Some(Value::Null) => def.organization_id = None,
        Some(Value::String(s)) => def.organization_id = Some(s.clone()),
        Some(_) => return Err(bad("organization_id", "must be a string")),
    }
    match m.get("tags") {
        None => {}
        Some(Value::Null) => def.tags.clear(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            def.tags = a
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        }
        Some(_) => return Err(bad("tags", "must be a list of strings")),
    }
    Ok(())
}

fn check_models(ctx: &AdminCtx, def: &TeamDef) -> Result<(), ApiError> {
    if let Some(m) = def.models.iter().find(|m| !ctx.config.allowable(m)) {
        return Err(ApiError::invalid_param(
            "models",
            format!("Model '{m}' is not a model_name in the gateway config, nor a name a wildcard model_name matches."),
        ));
    }
    Ok(())
}

fn write(ctx: &AdminCtx, def: &TeamDef) -> Result<(), ApiError> {
    let bytes = serde_json::to_vec(def)
        .map_err(|e| ApiError::server(format!("could not store the team: {e}")))?;
    ctx.store
        .set(&team_store_key(&def.team_id), &bytes, None)
        .map_err(|_| ApiError::server("The shared key store refused the write."))?;
    index_team(ctx, &def.team_id, def.deleted && !def.from_config)
}

/// Adds `team_id` to the team index (or removes it), one compare-and-swap.
fn index_team(ctx: &AdminCtx, team_id: &str, remove: bool) -> Result<(), ApiError> {
    let result = update::<_, ()>(ctx.store, TEAM_INDEX_KEY, |bytes| {
        let mut index: Vec<String> = serde_json::from_slice(bytes).unwrap_or_default();
        let at = index.iter().position(|t| t == team_id);
        match (at, remove) {
            (Some(i), true) => {
                index.remove(i);
            }
            (None, false) => index.push(team_id.to_string()),
            _ => {}
        }
        Ok((serde_json::to_vec(&index).unwrap_or_default(), ()))
    });
    result.map_err(|e| match e {
        UpdateError::Refused(()) | UpdateError::Contention | UpdateError::Unavailable => {
            ApiError::server("The shared key store refused the write.")
        }
    })
}

/// A version 4 UUID from 16 random bytes (LiteLLM's default team id).
fn uuid4(random: &[u8]) -> String {
    let mut out = String::with_capacity(36);
    for (i, b) in random
        .iter()
        .copied()
        .chain(std::iter::repeat(0))
        .take(16)
        .enumerate()
    {
        let b = match i {
            6 => (b & 0x0f) | 0x40,
            8 => (b & 0x3f) | 0x80,
            _ => b,
        };
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push_str(&crate::hex::encode([b]));
    }
    out
}

pub fn new_team(ctx: &AdminCtx, m: &Map<String, Value>) -> Result<Value, ApiError> {
    check_fields(m, "/team/new")?;
    let team_id =
        match m.get("team_id") {
            None | Some(Value::Null) => uuid4(ctx.random.get(..16).unwrap_or_default()),
            Some(Value::String(s)) if is_team_id(s) => s.clone(),
            Some(_) => return Err(ApiError::invalid_param(
                "team_id",
                "Invalid 'team_id': 1 to 200 characters of letters, digits, '_', '.', ':' and '-'.",
            )),
        };
    if ctx.config.teams.contains_key(&team_id)
        || find_team(&ctx.config.teams, ctx.store, &team_id).is_some()
    {
        return Err(ApiError::invalid_param(
            "team_id",
            format!("Team id = {team_id} already exists. Please use a different team id."),
        )
        .with_code("team_exists"));
    }
    let mut def = TeamDef {
        team_id,
        created_at: ctx.now,
        generation: Some(crate::hex::encode(
            ctx.random.get(16..).unwrap_or_default().iter().copied(),
        )),
        ..Default::default()
    };
    apply_fields(&mut def, m)?;
    check_models(ctx, &def)?;
    // A fresh generation names a record no request has touched: it starts at zero.
    quota::ensure_record(ctx.store, &def.usage_record(), ctx.now);
    write(ctx, &def)?;
    Ok(team_json(ctx, &def))
}

pub fn update_team(ctx: &AdminCtx, m: &Map<String, Value>) -> Result<Value, ApiError> {
    check_fields(m, "/team/update")?;
    let mut def = lookup(ctx, &required_team_id(m)?)?;
    apply_fields(&mut def, m)?;
    check_models(ctx, &def)?;
    quota::ensure_record(ctx.store, &def.usage_record(), ctx.now);
    write(ctx, &def)?;
    Ok(json!({"team_id": def.team_id, "data": team_json(ctx, &def)}))
}

pub fn set_blocked(
    ctx: &AdminCtx,
    m: &Map<String, Value>,
    blocked: bool,
) -> Result<Value, ApiError> {
    let mut def = lookup(ctx, &admin::only_field(m, "team_id")?)?;
    def.blocked = blocked;
    write(ctx, &def)?;
    Ok(team_json(ctx, &def))
}

pub fn delete(ctx: &AdminCtx, m: &Map<String, Value>) -> Result<Value, ApiError> {
    if let Some(k) = m.keys().find(|k| k.as_str() != "team_ids") {
        return Err(ApiError::invalid_param(
            k,
            format!("Unknown field '{k}' for /team/delete (use 'team_ids')."),
        ));
    }
    let ids: Vec<String> = match m.get("team_ids") {
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect(),
        None | Some(Value::Null) => {
            return Err(ApiError::invalid_param(
                "team_ids",
                "Missing required parameter: 'team_ids' (a list of team ids).",
            ))
        }
        Some(_) => {
            return Err(ApiError::invalid_param(
                "team_ids",
                "Invalid 'team_ids': must be a non-empty list of strings.",
            ))
        }
    };
    // Every team must exist before anything is deleted (LiteLLM checks them all first).
    let mut teams = Vec::with_capacity(ids.len());
    for id in &ids {
        teams.push(lookup(ctx, id)?);
    }
    let mut deleted_keys = Vec::new();
    for mut team in teams {
        for key in admin::all_keys(ctx)
            .into_iter()
            .filter(|k| k.team_id.as_deref() == Some(team.team_id.as_str()))
        {
            deleted_keys.push(Value::from(key.token.clone()));
            admin::delete_def(ctx, key)?;
        }
        team.deleted = true;
        write(ctx, &team)?;
    }
    Ok(json!({"deleted_teams": ids, "deleted_keys": deleted_keys}))
}

/// Every live team: the config's and the admin API's, by id.
pub fn all_teams(ctx: &AdminCtx) -> Vec<TeamDef> {
    let mut ids: Vec<String> = ctx.config.teams.keys().cloned().collect();
    let index: Vec<String> = ctx
        .store
        .get(TEAM_INDEX_KEY)
        .and_then(|v| serde_json::from_slice(&v.value).ok())
        .unwrap_or_default();
    for id in index {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids.sort();
    ids.iter()
        .filter_map(|id| find_team(&ctx.config.teams, ctx.store, id))
        .collect()
}

/// The team `GET /team/info?team_id=` asks about.
pub fn info_target(query: &str) -> Option<String> {
    query_param(query, "team_id").filter(|t| !t.is_empty())
}

/// `GET /team/info`; `fleet`: the team's party as the shared store has it, whose spend is the
/// fleet's.
pub fn info(ctx: &AdminCtx, query: &str, fleet: Option<&Value>) -> Result<Vec<u8>, ApiError> {
    let team_id = info_target(query)
        .ok_or_else(|| ApiError::invalid_param("team_id", "Pass the team as ?team_id=."))?;
    let def = lookup(ctx, &team_id)?;
    let mut info = team_json(ctx, &def);
    if let (Some(f), Some(m)) = (fleet, info.as_object_mut()) {
        let usd = |field: &str| quota::usd(f.get(field).and_then(Value::as_u64).unwrap_or(0));
        m.insert("spend".into(), Value::from(usd("spend")));
        m.insert("lifetime_spend".into(), Value::from(usd("lifetime")));
        m.insert("spend_scope".into(), Value::from("fleet"));
    }
    let keys: Vec<Value> = admin::all_keys(ctx)
        .iter()
        .filter(|k| k.team_id.as_deref() == Some(team_id.as_str()))
        .map(|k| admin::key_json(ctx, k, None))
        .collect();
    let out = json!({
        "team_id": def.team_id,
        "team_info": info,
        "keys": keys,
        "team_memberships": [],
    });
    Ok(serde_json::to_vec(&out).unwrap_or_default())
}

/// `GET /team/list` (LiteLLM's `user_id` and `organization_id` filters): a JSON array of teams.
pub fn list(ctx: &AdminCtx, query: &str) -> Result<Value, ApiError> {
    let user = query_param(query, "user_id");
    let org = query_param(query, "organization_id");
    let teams: Vec<Value> = all_teams(ctx)
        .iter()
        .filter(|t| {
            user.as_ref().is_none_or(|u| {
                t.members_with_roles
                    .iter()
                    .any(|m| m.get("user_id").and_then(Value::as_str) == Some(u))
            })
        })
        .filter(|t| {
            org.as_ref().is_none_or(|o| match o.as_str() {
                "default_organization" => t.organization_id.is_none(),
                o => t.organization_id.as_deref() == Some(o),
            })
        })
        .map(|t| team_json(ctx, t))
        .collect();
    Ok(Value::Array(teams))
}

/// A team as LiteLLM shows it (`LiteLLM_TeamTable`), with its live spend.
pub fn team_json(ctx: &AdminCtx, def: &TeamDef) -> Value {
    let limits = def.limits();
    let c = quota::read(ctx.store, &def.usage_record(), &limits, ctx.now);
    json!({
        "team_id": def.team_id,
        "team_alias": def.team_alias,
        "organization_id": def.organization_id,
        "members_with_roles": def.members_with_roles,
        "metadata": def.metadata,
        "models": def.models,
        "spend": quota::usd(c.spend),
        "max_budget": def.max_budget,
        "budget_duration": def.budget_duration,
        "budget_reset_at": c.budget_reset_at(&limits).map(time::format_rfc3339),
        "soft_budget": def.soft_budget,
        "rpm_limit": def.rpm_limit,
        "tpm_limit": def.tpm_limit,
        "max_parallel_requests": def.max_parallel_requests,
        "blocked": def.blocked,
        "tags": def.tags,
        "created_at": (def.created_at > 0).then(|| time::format_rfc3339(def.created_at)),
        "lifetime_spend": quota::usd(c.lifetime_spend),
        "reserved_spend": quota::usd(c.reserved),
        "current_parallel_requests": c.in_flight,
        "current_rpm": c.requests,
        "current_tpm": c.tokens,
        "source": if def.from_config { "config" } else { "api" },
    })
}
