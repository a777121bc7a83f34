//! LiteLLM-compatible key management, answered by the filter itself (master key only). Keys
//! created here live in shared data: every worker of this Envoy process sees them at once, and
//! they are gone when the process restarts (config keys come back from the config).

use base64::Engine;
use serde_json::{json, Map, Value};

use super::{
    apply_key_fields, def_store_key, find, find_team, hash_key, is_hash, key_name, team_of, teams,
    time, KeyDef, INDEX_KEY, KEY_FIELDS,
};
use crate::config::Config;
use crate::error::ApiError;
use crate::quota;
use crate::store::{update, Store, UpdateError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminOp {
    Generate,
    Update,
    Delete,
    Block,
    Unblock,
    Info,
    List,
    TeamNew,
    TeamUpdate,
    TeamDelete,
    TeamBlock,
    TeamUnblock,
    TeamInfo,
    TeamList,
}

impl AdminOp {
    /// The operation for a path, with the method it takes.
    pub fn from_path(path: &str) -> Option<(AdminOp, &'static str)> {
        Some(match path {
            "/key/generate" => (AdminOp::Generate, "POST"),
            "/key/update" => (AdminOp::Update, "POST"),
            "/key/delete" => (AdminOp::Delete, "POST"),
            "/key/block" => (AdminOp::Block, "POST"),
            "/key/unblock" => (AdminOp::Unblock, "POST"),
            "/key/info" => (AdminOp::Info, "GET"),
            "/key/list" => (AdminOp::List, "GET"),
            "/team/new" => (AdminOp::TeamNew, "POST"),
            "/team/update" => (AdminOp::TeamUpdate, "POST"),
            "/team/delete" => (AdminOp::TeamDelete, "POST"),
            "/team/block" => (AdminOp::TeamBlock, "POST"),
            "/team/unblock" => (AdminOp::TeamUnblock, "POST"),
            "/team/info" => (AdminOp::TeamInfo, "GET"),
            "/team/list" => (AdminOp::TeamList, "GET"),
            _ => return None,
        })
    }

    pub fn has_body(self) -> bool {
        !matches!(
            self,
            AdminOp::Info | AdminOp::List | AdminOp::TeamInfo | AdminOp::TeamList
        )
    }

    /// Whether the call changes keys (with a shared store, it writes through it).
    pub fn writes(self) -> bool {
        self.has_body()
    }
}

/// The hash of the key `GET /key/info` asks about.
pub fn info_target(op: AdminOp, query: &str) -> Option<String> {
    if op != AdminOp::Info {
        return None;
    }
    let key = query_param(query, "key")?;
    Some(if is_hash(&key) { key } else { hash_key(&key) })
}

pub struct AdminCtx<'a> {
    pub config: &'a Config,
    pub store: &'a dyn Store,
    pub now: u64,
    /// 32 random bytes for a new key.
    pub random: [u8; 32],
}

pub fn handle(op: AdminOp, ctx: &AdminCtx, query: &str, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let out = match op {
        AdminOp::Generate => generate(ctx, &object(body)?)?,
        AdminOp::Update => update_key(ctx, &object(body)?)?,
        AdminOp::Delete => delete(ctx, &object(body)?)?,
        AdminOp::Block => set_blocked(ctx, &object(body)?, true)?,
        AdminOp::Unblock => set_blocked(ctx, &object(body)?, false)?,
        AdminOp::Info => return info(ctx, query, None),
        AdminOp::List => list(ctx, query)?,
        AdminOp::TeamNew => teams::new_team(ctx, &object(body)?)?,
        AdminOp::TeamUpdate => teams::update_team(ctx, &object(body)?)?,
        AdminOp::TeamDelete => teams::delete(ctx, &object(body)?)?,
        AdminOp::TeamBlock => teams::set_blocked(ctx, &object(body)?, true)?,
        AdminOp::TeamUnblock => teams::set_blocked(ctx, &object(body)?, false)?,
        AdminOp::TeamInfo => return teams::info(ctx, query, None),
        AdminOp::TeamList => teams::list(ctx, query)?,
    };
    Ok(serde_json::to_vec(&out).unwrap_or_default())
}

/// `GET /key/info`; `fleet`: the key's party as the shared store has it (`tg_party_get`), whose
/// spend is the fleet's.
pub fn info(ctx: &AdminCtx, query: &str, fleet: Option<&Value>) -> Result<Vec<u8>, ApiError> {
    let key = query_param(query, "key")
        .ok_or_else(|| ApiError::invalid_param("key", "Pass the key (or its hash) as ?key=."))?;
    let def = lookup(ctx, &key)?;
    let mut info = key_json(ctx, &def, None);
    if let (Some(f), Some(m)) = (fleet, info.as_object_mut()) {
        let usd = |field: &str| quota::usd(f.get(field).and_then(Value::as_u64).unwrap_or(0));
        m.insert("spend".into(), Value::from(usd("spend")));
        m.insert("lifetime_spend".into(), Value::from(usd("lifetime")));
        m.insert("spend_scope".into(), Value::from("fleet"));
    }
    let out = json!({"key": def.token, "info": info});
    Ok(serde_json::to_vec(&out).unwrap_or_default())
}

fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::invalid_request(
            "The request body must be a JSON object.",
        )),
        Err(e) => Err(ApiError::invalid_request(format!(
            "We could not parse the JSON body of your request: {e}"
        ))
        .with_code("invalid_json")),
    }
}

pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b,
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Refuses fields outside `allowed`: a typo in an admin call must not silently do nothing.
fn check_fields(m: &Map<String, Value>, allowed: &[&str], op: &str) -> Result<(), ApiError> {
    check_fields_of(m, &[allowed, KEY_FIELDS], op)
}

/// Refuses fields outside every list of `allowed`.
pub(crate) fn check_fields_of(
    m: &Map<String, Value>,
    allowed: &[&[&str]],
    op: &str,
) -> Result<(), ApiError> {
    match m
        .keys()
        .find(|k| !allowed.iter().any(|a| a.contains(&k.as_str())))
    {
        Some(k) => Err(ApiError::invalid_param(
            k,
            format!("Unknown or unsupported field '{k}' for {op}."),
        )),
        None => Ok(()),
    }
}

fn field_errors(errs: Vec<(String, String)>) -> Result<(), ApiError> {
    match errs.into_iter().next() {
        Some((f, msg)) => Err(ApiError::invalid_param(
            &f,
            format!("Invalid '{f}': {msg}."),
        )),
        None => Ok(()),
    }
}

/// Resolves the `key` a caller passed (the key itself or its hash) to its current definition.
fn lookup(ctx: &AdminCtx, key: &str) -> Result<KeyDef, ApiError> {
    let token = if is_hash(key) {
        key.to_string()
    } else {
        hash_key(key)
    };
    live(ctx, &token).ok_or_else(|| {
        ApiError::not_found("Key not found (it was never created, or it was deleted).")
            .with_param("key")
            .with_code("key_not_found")
    })
}

fn required_key(m: &Map<String, Value>) -> Result<String, ApiError> {
    required_string(m, "key")
}

/// The one field a call takes (block, unblock), a non-empty string; any other field is refused.
pub(crate) fn only_field(m: &Map<String, Value>, name: &str) -> Result<String, ApiError> {
    if let Some(k) = m.keys().find(|k| k.as_str() != name) {
        return Err(ApiError::invalid_param(
            k,
            format!("Unknown field '{k}': this call takes only '{name}'."),
        ));
    }
    required_string(m, name)
}

/// A body field that must be a non-empty string (`key`, `team_id`).
pub(crate) fn required_string(m: &Map<String, Value>, name: &str) -> Result<String, ApiError> {
    match m.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(ApiError::invalid_param(
            name,
            format!("Invalid '{name}': must be a non-empty string."),
        )),
        None => Err(ApiError::invalid_param(
            name,
            format!("Missing required parameter: '{name}'."),
        )),
    }
}

/// A key's current definition, unless it or its team was deleted.
fn live(ctx: &AdminCtx, token: &str) -> Option<KeyDef> {
    find(&ctx.config.keys, ctx.store, token)
        .filter(|d| team_of(&ctx.config.teams, ctx.store, d).is_ok())
}

/// Checks what the key names; joins the key to its team's generation.
fn check_references(ctx: &AdminCtx, def: &mut KeyDef) -> Result<(), ApiError> {
    def.team_generation = None;
    if let Some(team) = &def.team_id {
        let Some(t) = find_team(&ctx.config.teams, ctx.store, team) else {
            return Err(ApiError::invalid_param(
                "team_id",
                format!("Team '{team}' does not exist: create it with /team/new, or define it under teams in the gateway config."),
            )
            .with_code("team_not_found"));
        };
        def.team_generation = t.generation;
    }
    if let Some(m) = def.models.iter().find(|m| !ctx.config.allowable(m)) {
        return Err(ApiError::invalid_param(
            "models",
            format!("Model '{m}' is not a model_name in the gateway config, nor a name a wildcard model_name matches."),
        ));
    }
    Ok(())
}

fn apply_duration(def: &mut KeyDef, m: &Map<String, Value>, now: u64) -> Result<(), ApiError> {
    match m.get("duration") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(d)) => {
            if m.get("expires").is_some_and(|e| !e.is_null()) {
                return Err(ApiError::invalid_param(
                    "duration",
                    "Pass either 'duration' or 'expires', not both.",
                ));
            }
            let secs = time::parse_duration(d).ok_or_else(|| {
                ApiError::invalid_param(
                    "duration",
                    format!("Invalid 'duration': '{d}' is not like 30s, 5m, 24h, 30d, 1w or 1mo."),
                )
            })?;
            def.expires = Some(now.saturating_add(secs));
            Ok(())
        }
        Some(_) => Err(ApiError::invalid_param(
            "duration",
            "Invalid 'duration': must be a string like 30d.",
        )),
    }
}

fn write(ctx: &AdminCtx, def: &KeyDef) -> Result<(), ApiError> {
    let bytes = serde_json::to_vec(def)
        .map_err(|e| ApiError::server(format!("could not store the key: {e}")))?;
    ctx.store
        .set(&def_store_key(&def.token), &bytes, None)
        .map_err(|_| ApiError::server("The shared key store refused the write."))
}

/// The key index's entries: `(token, alias)` of every key whose definition the admin API wrote.
type Index = Vec<(String, Option<String>)>;

fn read_index(ctx: &AdminCtx) -> Index {
    ctx.store
        .get(INDEX_KEY)
        .and_then(|v| serde_json::from_slice(&v.value).ok())
        .unwrap_or_default()
}

/// Records `def` in the key index, refusing an alias another live key has (LiteLLM's rule and
/// message). One compare-and-swap over the index, so two admin calls racing for one alias on
/// different workers cannot both win. A deleted generated key leaves the index; a deleted config
/// key stays in it without an alias (its config alias no longer counts).
fn index_key(ctx: &AdminCtx, def: &KeyDef) -> Result<(), ApiError> {
    let alias = def.key_alias.as_deref().filter(|_| !def.deleted);
    let result = update(ctx.store, INDEX_KEY, |bytes| {
        let mut index: Index = serde_json::from_slice(bytes).unwrap_or_default();
        if let Some(alias) = alias {
            let in_index = |token: &str| index.iter().any(|(t, _)| t == token);
            let taken = index
                .iter()
                .any(|(t, a)| *t != def.token && a.as_deref() == Some(alias))
                || ctx.config.keys.values().any(|c| {
                    c.token != def.token
                        && c.key_alias.as_deref() == Some(alias)
                        && !in_index(&c.token)
                });
            if taken {
                return Err(ApiError::invalid_param(
                    "key_alias",
                    format!("Key with alias '{alias}' already exists. Unique key aliases across all keys are required."),
                )
                .with_code("key_alias_exists"));
            }
        }
        let entry = (def.token.clone(), alias.map(str::to_string));
        let at = index.iter().position(|(t, _)| *t == def.token);
        match (at, def.deleted && !def.from_config) {
            (Some(i), true) => {
                index.remove(i);
            }
            (Some(i), false) => {
                if let Some(slot) = index.get_mut(i) {
                    *slot = entry;
                }
            }
            (None, true) => {}
            (None, false) => index.push(entry),
        }
        Ok((serde_json::to_vec(&index).unwrap_or_default(), ()))
    });
    result.map_err(|e| match e {
        UpdateError::Refused(e) => e,
        UpdateError::Contention | UpdateError::Unavailable => {
            ApiError::server("The shared key store refused the write.")
        }
    })
}

fn generate(ctx: &AdminCtx, m: &Map<String, Value>) -> Result<Value, ApiError> {
    check_fields(m, &["key", "duration"], "/key/generate")?;
    if let (Some(Value::String(k)), Some(master)) = (m.get("key"), &ctx.config.master_key) {
        if k == master {
            // The master key wins authentication: such a key could never be used as itself.
            return Err(ApiError::invalid_param(
                "key",
                "Invalid 'key': this is the gateway's master key; a virtual key must differ from it.",
            )
            .with_code("key_is_master_key"));
        }
    }
    let key = match m.get("key") {
        None | Some(Value::Null) => {
            let tail = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ctx.random.get(..24).unwrap_or(&ctx.random));
            format!("sk-{tail}")
        }
        Some(Value::String(k)) if k.starts_with("sk-") && k.len() >= 12 => k.clone(),
        Some(_) => return Err(ApiError::invalid_param("key", "Invalid 'key': a custom key must be a string starting with 'sk-', at least 12 characters.")),
    };
    let token = hash_key(&key);
    if find(&ctx.config.keys, ctx.store, &token).is_some() {
        return Err(
            ApiError::invalid_param("key", "This key already exists.").with_code("key_exists")
        );
    }
    let mut def = KeyDef {
        token: token.clone(),
        key_name: key_name(&key),
        created_at: ctx.now,
        generation: Some(crate::hex::encode(
            ctx.random.get(24..).unwrap_or_default().iter().copied(),
        )),
        ..Default::default()
    };
    field_errors(apply_key_fields(&mut def, m))?;
    apply_duration(&mut def, m, ctx.now)?;
    check_references(ctx, &mut def)?;
    index_key(ctx, &def)?;
    // A fresh generation names a record no request has touched: it starts at zero.
    quota::ensure_record(ctx.store, &def.usage_record(), ctx.now);
    if let Some(team) = def
        .team_id
        .as_deref()
        .and_then(|t| find_team(&ctx.config.teams, ctx.store, t))
    {
        quota::ensure_record(ctx.store, &team.usage_record(), ctx.now);
    }
    if let Err(e) = write(ctx, &def) {
        let _ = index_key(
            ctx,
            &KeyDef {
                deleted: true,
                ..def
            },
        );
        return Err(e);
    }
    Ok(key_json(ctx, &def, Some(&key)))
}

fn update_key(ctx: &AdminCtx, m: &Map<String, Value>) -> Result<Value, ApiError> {
    check_fields(m, &["key", "duration"], "/key/update")?;
    let mut def = lookup(ctx, &required_key(m)?)?;
    field_errors(apply_key_fields(&mut def, m))?;
    apply_duration(&mut def, m, ctx.now)?;
    check_references(ctx, &mut def)?;
    index_key(ctx, &def)?;
    if let Some(team) = def
        .team_id
        .as_deref()
        .and_then(|t| find_team(&ctx.config.teams, ctx.store, t))
    {
        quota::ensure_record(ctx.store, &team.usage_record(), ctx.now);
    }
    write(ctx, &def)?;
    Ok(key_json(ctx, &def, None))
}

fn set_blocked(ctx: &AdminCtx, m: &Map<String, Value>, blocked: bool) -> Result<Value, ApiError> {
    let mut def = lookup(ctx, &only_field(m, "key")?)?;
    def.blocked = blocked;
    write(ctx, &def)?;
    Ok(key_json(ctx, &def, None))
}

fn delete(ctx: &AdminCtx, m: &Map<String, Value>) -> Result<Value, ApiError> {
    if let Some(k) = m
        .keys()
        .find(|k| !matches!(k.as_str(), "keys" | "key_aliases"))
    {
        return Err(ApiError::invalid_param(
            k,
            format!("Unknown field '{k}' for /key/delete (use 'keys' or 'key_aliases')."),
        ));
    }
    let strings = |f: &str| -> Result<Vec<String>, ApiError> {
        match m.get(f) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str().map(String::from).ok_or_else(|| {
                        ApiError::invalid_param(
                            f,
                            format!("Invalid '{f}': must be a list of strings."),
                        )
                    })
                })
                .collect(),
            Some(_) => Err(ApiError::invalid_param(
                f,
                format!("Invalid '{f}': must be a list of strings."),
            )),
        }
    };
    let mut defs = Vec::new();
    for k in strings("keys")? {
        defs.push(lookup(ctx, &k)?);
    }
    for alias in strings("key_aliases")? {
        let def = all_keys(ctx)
            .into_iter()
            .find(|d| d.key_alias.as_deref() == Some(alias.as_str()))
            .ok_or_else(|| {
                ApiError::not_found(format!("No key has the alias '{alias}'."))
                    .with_param("key_aliases")
            })?;
        defs.push(def);
    }
    if defs.is_empty() {
        return Err(ApiError::invalid_param(
            "keys",
            "Pass the keys to delete in 'keys' (or 'key_aliases').",
        ));
    }
    let mut deleted = Vec::new();
    for def in defs {
        deleted.push(Value::from(def.token.clone()));
        delete_def(ctx, def)?;
    }
    Ok(json!({ "deleted_keys": deleted }))
}

/// Deletes a key: a tombstone (which hides a config key too), out of the index.
pub(super) fn delete_def(ctx: &AdminCtx, mut def: KeyDef) -> Result<(), ApiError> {
    def.deleted = true;
    write(ctx, &def)?;
    index_key(ctx, &def)
}

/// Every live key: the config's and the admin API's (a key whose team was deleted is not).
pub(super) fn all_keys(ctx: &AdminCtx) -> Vec<KeyDef> {
    let mut tokens: Vec<String> = ctx.config.keys.keys().cloned().collect();
    tokens.sort();
    for (t, _) in read_index(ctx) {
        if !tokens.contains(&t) {
            tokens.push(t);
        }
    }
    tokens.iter().filter_map(|t| live(ctx, t)).collect()
}

fn list(ctx: &AdminCtx, query: &str) -> Result<Value, ApiError> {
    let number = |name: &str, default: usize| -> Result<usize, ApiError> {
        match query_param(query, name) {
            None => Ok(default),
            Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ApiError::invalid_param(
                    name,
                    format!("Invalid '{name}': must be a positive integer."),
                )
            }),
        }
    };
    let page = number("page", 1)?;
    let size = number("size", 100)?;
    let full = query_param(query, "return_full_object").is_some_and(|v| v == "true");
    let team = query_param(query, "team_id");
    let alias = query_param(query, "key_alias");
    let keys: Vec<KeyDef> = all_keys(ctx)
        .into_iter()
        .filter(|d| team.as_ref().is_none_or(|t| d.team_id.as_ref() == Some(t)))
        .filter(|d| {
            alias
                .as_ref()
                .is_none_or(|a| d.key_alias.as_ref() == Some(a))
        })
        .collect();
    let total = keys.len();
    let pages = total.div_ceil(size).max(1);
    let items: Vec<Value> = keys
        .iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .map(|d| {
            if full {
                key_json(ctx, d, None)
            } else {
                Value::from(d.token.clone())
            }
        })
        .collect();
    Ok(json!({"keys": items, "total_count": total, "current_page": page, "total_pages": pages}))
}

/// A key as LiteLLM shows it, with its live spend; `key` only right after generation.
pub fn key_json(ctx: &AdminCtx, def: &KeyDef, key: Option<&str>) -> Value {
    let limits = def.limits();
    let c = quota::read(ctx.store, &def.usage_record(), &limits, ctx.now);
    let mut v = json!({
        "token": def.token,
        "key_name": def.key_name,
        "key_alias": def.key_alias,
        "team_id": def.team_id,
        "user_id": def.user_id,
        "models": def.models,
        "spend": quota::usd(c.spend),
        "max_budget": def.max_budget,
        "budget_duration": def.budget_duration,
        "budget_reset_at": c.budget_reset_at(&limits).map(time::format_rfc3339),
        "soft_budget": def.soft_budget,
        "rpm_limit": def.rpm_limit,
        "tpm_limit": def.tpm_limit,
        "max_parallel_requests": def.max_parallel_requests,
        "expires": def.expires.map(time::format_rfc3339),
        "blocked": def.blocked,
        "metadata": def.metadata,
        "tags": def.tags,
        "per_key_metrics": def.own_metrics(),
        "created_at": time::format_rfc3339(def.created_at),
        "lifetime_spend": quota::usd(c.lifetime_spend),
        "reserved_spend": quota::usd(c.reserved),
        "current_parallel_requests": c.in_flight,
        "current_rpm": c.requests,
        "current_tpm": c.tokens,
        "source": if def.from_config { "config" } else { "api" },
    });
    if let (Some(k), Some(m)) = (key, v.as_object_mut()) {
        m.insert("key".into(), Value::from(k));
    }
    v
}

#[cfg(test)]
mod tests;
