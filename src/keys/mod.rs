//! Virtual keys and teams (LiteLLM's field names): definitions from the config and from the admin
//! API, one validator for both, lookup by key hash. Only SHA-256 hashes of keys are kept.

pub mod admin;
pub mod fleet;
pub mod teams;
pub mod time;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::quota::{self, Limits};
use crate::store::Store;

/// A key's definition. `token` is the hex SHA-256 of the key, as LiteLLM calls it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyDef {
    pub token: String,
    /// How the key is shown: `sk-...abcd` (LiteLLM's `key_name`).
    pub key_name: String,
    pub key_alias: Option<String>,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    /// Allowed model aliases; empty means all.
    pub models: Vec<String>,
    pub max_budget: Option<f64>,
    pub budget_duration: Option<String>,
    pub soft_budget: Option<f64>,
    pub rpm_limit: Option<u64>,
    pub tpm_limit: Option<u64>,
    pub max_parallel_requests: Option<u64>,
    /// Unix seconds.
    pub expires: Option<u64>,
    pub blocked: bool,
    pub metadata: Map<String, Value>,
    pub tags: Vec<String>,
    /// Whether the key's metrics carry its own `key_alias` label (Tollgate's field; absent: yes
    /// for a config key, no for one the admin API created, whose requests are counted under
    /// [`crate::stats::OTHER_KEYS`]): the number of series stays bounded however many keys
    /// are generated.
    #[serde(default)]
    pub per_key_metrics: Option<bool>,
    pub created_at: u64,
    /// Defined in the gateway config (true) or created through the admin API.
    pub from_config: bool,
    /// Deleted through the admin API (a tombstone hides a config key too).
    #[serde(default)]
    pub deleted: bool,
    /// Set when the admin API creates the key, and part of its usage record's name: a key
    /// deleted and then created again with the same value starts from zero, even while a request
    /// of the deleted one is still in flight (it settles into the old record).
    #[serde(default)]
    pub generation: Option<String>,
    /// The [`TeamDef::generation`] of the team the key joined (none for a config team): a key
    /// of a team that was deleted stays refused even if a team with the same id is created again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_generation: Option<String>,
}

/// A team (LiteLLM's field names): from the config's `teams:` or the admin API's `/team/new`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TeamDef {
    pub team_id: String,
    pub team_alias: Option<String>,
    pub models: Vec<String>,
    pub max_budget: Option<f64>,
    pub budget_duration: Option<String>,
    pub soft_budget: Option<f64>,
    pub rpm_limit: Option<u64>,
    pub tpm_limit: Option<u64>,
    pub max_parallel_requests: Option<u64>,
    pub blocked: bool,
    pub metadata: Map<String, Value>,
    /// LiteLLM's team fields Tollgate keeps and shows but does not act on.
    pub members_with_roles: Vec<Value>,
    pub organization_id: Option<String>,
    pub tags: Vec<String>,
    /// Unix seconds (0 for a config team).
    pub created_at: u64,
    pub from_config: bool,
    /// Deleted through the admin API (a tombstone hides a config team too).
    pub deleted: bool,
    /// Set by `/team/new` and part of the team's usage record and of its keys
    /// ([`KeyDef::team_generation`]): a team deleted and created again starts from zero.
    pub generation: Option<String>,
}

pub fn hash_key(key: &str) -> String {
    crate::hex::encode(Sha256::digest(key.as_bytes()))
}

/// `sk-...abcd`: enough to recognise a key, nothing to use it.
pub fn key_name(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let head: String = key.chars().take(3).collect();
    format!("{head}...{tail}")
}

/// True for a 64-character lower-case hex digest.
pub fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether an alias is allowed by a models list (empty, or LiteLLM's `all-proxy-models`, means all).
pub fn allows(models: &[String], alias: &str) -> bool {
    models.is_empty()
        || models.iter().any(|m| {
            m == alias
                || m == "all-proxy-models"
                || m == "*"
                || (crate::wildcard::is_pattern(m) && crate::wildcard::matches(m, alias))
        })
}

/// A scope's limits from its LiteLLM fields (money in USD, durations as strings).
fn limits(
    max_budget: Option<f64>,
    budget_duration: Option<&str>,
    soft_budget: Option<f64>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    parallel: Option<u64>,
) -> Limits {
    Limits {
        max_budget: max_budget.map(quota::micro),
        budget_duration: budget_duration.and_then(time::parse_duration),
        soft_budget: soft_budget.map(quota::micro),
        rpm,
        tpm,
        parallel,
    }
}

impl KeyDef {
    /// Whether the key has metric series of its own (see [`KeyDef::per_key_metrics`]).
    pub fn own_metrics(&self) -> bool {
        self.per_key_metrics.unwrap_or(self.from_config)
    }

    /// Store key of the key's usage counters (see [`KeyDef::generation`]).
    pub fn usage_record(&self) -> String {
        match &self.generation {
            Some(g) => quota::record_key(quota::Scope::Key, &format!("{}.{g}", self.token)),
            None => quota::record_key(quota::Scope::Key, &self.token),
        }
    }

    pub fn limits(&self) -> Limits {
        limits(
            self.max_budget,
            self.budget_duration.as_deref(),
            self.soft_budget,
            self.rpm_limit,
            self.tpm_limit,
            self.max_parallel_requests,
        )
    }
}

impl TeamDef {
    /// Store key of the team's usage counters (see [`TeamDef::generation`]).
    pub fn usage_record(&self) -> String {
        match &self.generation {
            Some(g) => quota::record_key(quota::Scope::Team, &format!("{}.{g}", self.team_id)),
            None => quota::record_key(quota::Scope::Team, &self.team_id),
        }
    }

    pub fn limits(&self) -> Limits {
        limits(
            self.max_budget,
            self.budget_duration.as_deref(),
            self.soft_budget,
            self.rpm_limit,
            self.tpm_limit,
            self.max_parallel_requests,
        )
    }
}

/// A field problem: (field name, message). Config turns it into a path-named issue, the admin
/// API into a 400 naming the parameter.
pub type FieldError = (String, String);

/// Fields of a key that the config and the admin API share, with their meaning.
pub const KEY_FIELDS: &[&str] = &[
    "key_alias",
    "team_id",
    "user_id",
    "models",
    "max_budget",
    "budget_duration",
    "soft_budget",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
    "expires",
    "blocked",
    "metadata",
    "tags",
    "per_key_metrics",
];

pub const TEAM_FIELDS: &[&str] = &[
    "team_id",
    "team_alias",
    "models",
    "max_budget",
    "budget_duration",
    "soft_budget",
    "rpm_limit",
    "tpm_limit",
    "max_parallel_requests",
    "blocked",
    "metadata",
];

fn opt_string(
    m: &Map<String, Value>,
    f: &str,
    errs: &mut Vec<FieldError>,
) -> Option<Option<String>> {
    match m.get(f)? {
        Value::Null => Some(None),
        Value::String(s) if !s.trim().is_empty() => Some(Some(s.clone())),
        Value::String(_) => {
            errs.push((f.into(), "must not be empty".into()));
            None
        }
        _ => {
            errs.push((f.into(), "must be a string".into()));
            None
        }
    }
}

fn opt_money(m: &Map<String, Value>, f: &str, errs: &mut Vec<FieldError>) -> Option<Option<f64>> {
    match m.get(f)? {
        Value::Null => Some(None),
        Value::Number(n) => match n.as_f64() {
            Some(x) if x.is_finite() && x >= 0.0 => Some(Some(x)),
            _ => {
                errs.push((
                    f.into(),
                    format!("must be a non-negative number of USD, not {n}"),
                ));
                None
            }
        },
        _ => {
            errs.push((f.into(), "must be a number (USD)".into()));
            None
        }
    }
}

fn opt_count(m: &Map<String, Value>, f: &str, errs: &mut Vec<FieldError>) -> Option<Option<u64>> {
    match m.get(f)? {
        Value::Null => Some(None),
        Value::Number(n) => match n.as_u64() {
            Some(x) => Some(Some(x)),
            None => {
                errs.push((f.into(), format!("must be a non-negative integer, not {n}")));
                None
            }
        },
        _ => {
            errs.push((f.into(), "must be an integer".into()));
            None
        }
    }
}

fn opt_duration(
    m: &Map<String, Value>,
    f: &str,
    errs: &mut Vec<FieldError>,
) -> Option<Option<String>> {
    let s = opt_string(m, f, errs)?;
    match s {
        Some(d) if time::parse_duration(&d).is_none() => {
            errs.push((
                f.into(),
                format!("'{d}' is not a duration like 30s, 5m, 24h, 30d, 1w or 1mo"),
            ));
            None
        }
        other => Some(other),
    }
}

fn opt_strings(m: &Map<String, Value>, f: &str, errs: &mut Vec<FieldError>) -> Option<Vec<String>> {
    match m.get(f)? {
        Value::Null => Some(Vec::new()),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    _ => {
                        errs.push((f.into(), "must be a list of strings".into()));
                        return None;
                    }
                }
            }
            Some(out)
        }
        _ => {
            errs.push((f.into(), "must be a list of strings".into()));
            None
        }
    }
}

fn opt_bool(m: &Map<String, Value>, f: &str, errs: &mut Vec<FieldError>) -> Option<bool> {
    match m.get(f)? {
        Value::Null => Some(false),
        Value::Bool(b) => Some(*b),
        _ => {
            errs.push((f.into(), "must be true or false".into()));
            None
        }
    }
}

/// A flag whose absence means "the default": `null` resets it.
fn opt_flag(m: &Map<String, Value>, f: &str, errs: &mut Vec<FieldError>) -> Option<Option<bool>> {
    match m.get(f)? {
        Value::Null => Some(None),
        Value::Bool(b) => Some(Some(*b)),
        _ => {
            errs.push((f.into(), "must be true or false".into()));
            None
        }
    }
}

fn opt_object(
    m: &Map<String, Value>,
    f: &str,
    errs: &mut Vec<FieldError>,
) -> Option<Map<String, Value>> {
    match m.get(f)? {
        Value::Null => Some(Map::new()),
        Value::Object(o) => Some(o.clone()),
        _ => {
            errs.push((f.into(), "must be a mapping".into()));
            None
        }
    }
}

/// Sets each listed field that is present in `m` with its reader (absent fields stay as they
/// are: the admin API's update uses the same code); problems go to `errs`.
macro_rules! apply_fields {
    ($def:ident, $m:ident, $errs:ident, $($field:ident => $reader:ident),* $(,)?) => {
        $(if let Some(v) = $reader($m, stringify!($field), &mut $errs) {
            $def.$field = v;
        })*
    };
}

/// Applies the key fields present in `m` to `def`. `expires` is an RFC 3339 timestamp.
pub fn apply_key_fields(def: &mut KeyDef, m: &Map<String, Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    apply_fields!(def, m, errs,
        key_alias => opt_string, team_id => opt_string, user_id => opt_string,
        models => opt_strings, tags => opt_strings,
        max_budget => opt_money, soft_budget => opt_money, budget_duration => opt_duration,
        rpm_limit => opt_count, tpm_limit => opt_count, max_parallel_requests => opt_count,
        blocked => opt_bool, metadata => opt_object, per_key_metrics => opt_flag,
    );
    match m.get("expires") {
        None => {}
        Some(Value::Null) => def.expires = None,
        Some(Value::String(s)) => match time::parse_rfc3339(s) {
            Some(t) => def.expires = Some(t),
            None => errs.push((
                "expires".into(),
                format!("'{s}' is not an RFC 3339 timestamp like 2027-01-01T00:00:00Z"),
            )),
        },
        Some(_) => errs.push((
            "expires".into(),
            "must be an RFC 3339 timestamp string".into(),
        )),
    }
    if let (Some(soft), Some(max)) = (def.soft_budget, def.max_budget) {
        if soft > max {
            errs.push((
                "soft_budget".into(),
                format!("{soft} is above max_budget {max}"),
            ));
        }
    }
    errs
}

pub fn apply_team_fields(def: &mut TeamDef, m: &Map<String, Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    apply_fields!(def, m, errs,
        team_alias => opt_string, models => opt_strings,
        max_budget => opt_money, soft_budget => opt_money, budget_duration => opt_duration,
        rpm_limit => opt_count, tpm_limit => opt_count, max_parallel_requests => opt_count,
        blocked => opt_bool, metadata => opt_object,
    );
    errs
}

/// Store key of a key's definition written through the admin API (it overrides the config).
pub fn def_store_key(token: &str) -> String {
    ["tollgate.key.", token].concat()
}

/// Store key of the index of keys whose definition the admin API wrote: `[token, alias]` pairs
/// (alias `null` for none, or for a deleted config key), for listing keys and for keeping aliases
/// unique with one compare-and-swap.
pub const INDEX_KEY: &str = "tollgate.keys";

/// Creates the (empty) key index if it does not exist yet, before any admin call can race to
/// create it (see `quota::ensure_record`).
pub fn ensure_index(store: &dyn Store) {
    if store.get(INDEX_KEY).is_none() {
        let _ = store.set(INDEX_KEY, b"[]", None);
    }
}

/// The prefix that tells a team's token from a key's in the shared store's records and change
/// log (`team:<team_id>`; a key's token is its hash).
pub const TEAM_TOKEN_PREFIX: &str = "team:";

/// The store token of a team.
pub fn team_token(team_id: &str) -> String {
    [TEAM_TOKEN_PREFIX, team_id].concat()
}

/// Whether a team id can be a store token (what `/team/new` accepts): 1 to 200 of
/// `[A-Za-z0-9_.:-]`, as the Redis library's names are.
pub fn is_team_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// Store key of a team's definition written through the admin API (it overrides the config).
pub fn team_store_key(team_id: &str) -> String {
    ["tollgate.team.", team_id].concat()
}

/// Store key of the index of teams whose definition the admin API wrote (a JSON list of ids).
pub const TEAM_INDEX_KEY: &str = "tollgate.teams";

/// The current definition of a team: the admin API's record if any (a tombstone means deleted),
/// else the config's.
pub fn find_team(
    config_teams: &hashbrown::HashMap<String, TeamDef>,
    store: &dyn Store,
    team_id: &str,
) -> Option<TeamDef> {
    if let Some(v) = store
        .get(&team_store_key(team_id))
        .filter(|v| !v.value.is_empty())
    {
        return serde_json::from_slice::<TeamDef>(&v.value)
            .ok()
            .filter(|d| !d.deleted);
    }
    config_teams.get(team_id).cloned()
}

/// A key's team was deleted (see [`team_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TeamGone;

/// The team of a key: `Ok(None)` without one; `Err(TeamGone)` when its team is gone (deleted, or
/// deleted and created again: the key went with the team it joined, as LiteLLM deletes a team's
/// keys).
pub fn team_of(
    config_teams: &hashbrown::HashMap<String, TeamDef>,
    store: &dyn Store,
    def: &KeyDef,
) -> Result<Option<TeamDef>, TeamGone> {
    let Some(id) = &def.team_id else {
        return Ok(None);
    };
    match find_team(config_teams, store, id) {
        Some(t) if t.generation == def.team_generation => Ok(Some(t)),
        _ => Err(TeamGone),
    }
}

/// The current definition of a key: the admin API's record if any (a tombstone means deleted),
/// else the config's. An empty record is none (the shared store has no override of the key).
pub fn find(
    config_keys: &hashbrown::HashMap<String, KeyDef>,
    store: &dyn Store,
    token: &str,
) -> Option<KeyDef> {
    if let Some(v) = store
        .get(&def_store_key(token))
        .filter(|v| !v.value.is_empty())
    {
        return serde_json::from_slice::<KeyDef>(&v.value)
            .ok()
            .filter(|d| !d.deleted);
    }
    config_keys.get(token).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hashes_and_names() {
        assert_eq!(
            hash_key("sk-1234"),
            "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"
        );
        assert!(is_hash(&hash_key("anything")));
        assert!(!is_hash("sk-1234"));
        assert_eq!(key_name("sk-abcdefgh1234"), "sk-...1234");
        assert!(
            allows(&[], "x")
                && allows(&["a".into(), "x".into()], "x")
                && !allows(&["a".into()], "x")
                && allows(&["openai/*".into()], "openai/gpt-4o")
                && !allows(&["openai/*".into()], "anthropic/claude-opus-4-5")
        );
    }

    #[test]
    fn validates_fields() {
        let mut d = KeyDef::default();
        let errs = apply_key_fields(
            &mut d,
            json!({"max_budget": -1, "rpm_limit": 1.5, "budget_duration": "3y", "expires": "soon", "models": "gpt", "metadata": [1], "key_alias": ""})
                .as_object()
                .unwrap(),
        );
        let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
        for f in [
            "max_budget",
            "rpm_limit",
            "budget_duration",
            "expires",
            "models",
            "metadata",
            "key_alias",
        ] {
            assert!(fields.contains(&f), "{f} in {errs:?}");
        }
        let mut d = KeyDef::default();
        let errs = apply_key_fields(
            &mut d,
            json!({"max_budget": 25.0, "soft_budget": 20, "budget_duration": "30d", "rpm_limit": 600, "expires": "2027-01-01T00:00:00Z", "models": ["gpt"]})
                .as_object()
                .unwrap(),
        );
        assert!(errs.is_empty(), "{errs:?}");
        let l = d.limits();
        assert_eq!(
            (l.max_budget, l.soft_budget, l.budget_duration, l.rpm),
            (
                Some(25_000_000),
                Some(20_000_000),
                Some(2_592_000),
                Some(600)
            )
        );
        assert_eq!(d.expires, Some(1_798_761_600));
    }
}
