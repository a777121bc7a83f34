//! Who is calling: the master key, a virtual key (with its team), or nobody on an open gateway.

use crate::config::Config;
use crate::error::ApiError;
use crate::host::HttpHost;
use crate::keys::{self, time, KeyDef, TeamDef};
use crate::quota::{self, Limits, Party, Scope};
use crate::store::Store;

/// The caller, once authenticated.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// No master key is configured and no key was presented: the gateway is open.
    Anonymous,
    Master,
    Key(Box<KeyPrincipal>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyPrincipal {
    pub def: KeyDef,
    pub team: Option<TeamDef>,
    /// The key's quota record and limits, then its team's: admission and settlement both use
    /// them, so they are worked out once (record names formatted, durations parsed).
    key_record: (String, Limits),
    team_record: Option<(String, Limits)>,
}

impl KeyPrincipal {
    pub fn new(def: KeyDef, team: Option<TeamDef>) -> Self {
        let key_record = (def.usage_record(), def.limits());
        let team_record = def.team_id.as_ref().map(|t| match &team {
            Some(team) => (team.usage_record(), team.limits()),
            None => (quota::record_key(Scope::Team, t), Limits::default()),
        });
        KeyPrincipal {
            def,
            team,
            key_record,
            team_record,
        }
    }

    /// Gives a key without its own `max_parallel_requests` the gateway's default
    /// (`general_settings.max_parallel_requests`).
    pub fn with_default_parallel(mut self, parallel: Option<u64>) -> Self {
        if self.key_record.1.parallel.is_none() {
            self.key_record.1.parallel = parallel;
        }
        self
    }

    /// The key's scope in admission and settlement.
    pub fn key_party(&self) -> Party<'_> {
        Party {
            scope: Scope::Key,
            key: &self.key_record.0,
            limits: &self.key_record.1,
        }
    }

    /// The key's team's scope, if it has a team.
    pub fn team_party(&self) -> Option<Party<'_>> {
        self.team_record.as_ref().map(|(key, limits)| Party {
            scope: Scope::Team,
            key,
            limits,
        })
    }
}

impl Principal {
    /// `(team, key_alias)`: the caller's team and how its key is shown (`x-tollgate-key-alias`).
    pub fn labels(&self) -> (&str, &str) {
        match self {
            Principal::Anonymous => (crate::stats::NONE, crate::stats::NONE),
            Principal::Master => (crate::stats::NONE, "master"),
            Principal::Key(k) => (
                k.def.team_id.as_deref().unwrap_or(crate::stats::NONE),
                k.def.key_alias.as_deref().unwrap_or(&k.def.key_name),
            ),
        }
    }

    /// `(team, key_alias)` labels for metrics: a key without series of its own
    /// ([`KeyDef::own_metrics`]) is counted under [`crate::stats::OTHER_KEYS`].
    pub fn metric_labels(&self) -> (&str, &str) {
        match self {
            Principal::Key(k) if !k.def.own_metrics() => (
                k.def.team_id.as_deref().unwrap_or(crate::stats::NONE),
                crate::stats::OTHER_KEYS,
            ),
            _ => self.labels(),
        }
    }
}

/// Headers a client may carry its key in: the OpenAI SDK's `Authorization: Bearer`, the Azure
/// SDK's `api-key`, and Anthropic-style `x-api-key`.
pub fn presented_key(host: &dyn HttpHost) -> Option<String> {
    if let Some(v) = host.request_header("authorization") {
        let v = v.trim();
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim();
        if !token.is_empty() {
            return Some(token.to_string());
        }
    }
    ["api-key", "x-api-key"]
        .iter()
        .filter_map(|h| host.request_header(h))
        .map(|v| v.trim().to_string())
        .find(|v| !v.is_empty())
}

pub fn authenticate(
    config: &Config,
    store: &dyn Store,
    host: &dyn HttpHost,
    now_secs: u64,
) -> Result<Principal, ApiError> {
    authenticate_credential(config, store, &credential(config, host), None, now_secs)
}

/// The key a request presents, read from its headers once: none, the master key, or a virtual
/// key by its hash (only hashes are kept: lookups compare digests, which reveal nothing about
/// near misses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    None,
    Master,
    Token(String),
}

impl Credential {
    /// The virtual key's hash, if one was presented.
    pub fn token(&self) -> Option<&str> {
        match self {
            Credential::Token(t) => Some(t),
            _ => None,
        }
    }
}

pub fn credential(config: &Config, host: &dyn HttpHost) -> Credential {
    match presented_key(host) {
        None => Credential::None,
        Some(p) if is_master(config, &p) => Credential::Master,
        Some(p) => Credential::Token(keys::hash_key(&p)),
    }
}

/// [`authenticate`] from the credential already read; `found`: the key's definition if the
/// caller looked it up in this callback already (else it is looked up here).
pub fn authenticate_credential(
    config: &Config,
    store: &dyn Store,
    credential: &Credential,
    found: Option<KeyDef>,
    now_secs: u64,
) -> Result<Principal, ApiError> {
    match credential {
        Credential::None => match config.master_key {
            None => Ok(Principal::Anonymous),
            Some(_) => Err(ApiError::authentication(
                "Missing API key. Send it as 'Authorization: Bearer <key>' (or the 'api-key' header).",
            )
            .with_code("missing_api_key")),
        },
        Credential::Master => Ok(Principal::Master),
        Credential::Token(token) => {
            let def = found
                .filter(|d| d.token == *token)
                .or_else(|| keys::find(&config.keys, store, token));
            authenticate_def(config, store, def, now_secs)
        }
    }
}

/// Whether the presented key is the master key.
pub fn is_master(config: &Config, presented: &str) -> bool {
    config
        .master_key
        .as_deref()
        .is_some_and(|m| constant_time_eq(presented.as_bytes(), m.as_bytes()))
}

/// A virtual key, by its hash: its current definition, checked (expiry, blocks).
pub fn authenticate_token(
    config: &Config,
    store: &dyn Store,
    token: &str,
    now_secs: u64,
) -> Result<Principal, ApiError> {
    authenticate_def(
        config,
        store,
        keys::find(&config.keys, store, token),
        now_secs,
    )
}

/// A virtual key's current definition (`None`: no such key), checked.
fn authenticate_def(
    config: &Config,
    store: &dyn Store,
    def: Option<KeyDef>,
    now_secs: u64,
) -> Result<Principal, ApiError> {
    let Some(def) = def else {
        return if config.master_key.is_none() && config.keys.is_empty() {
            Ok(Principal::Anonymous)
        } else {
            Err(ApiError::authentication("Invalid API key provided.").with_code("invalid_api_key"))
        };
    };
    if let Some(expires) = def.expires {
        if now_secs >= expires {
            return Err(ApiError::authentication(format!(
                "The API key expired at {}.",
                time::format_rfc3339(expires)
            ))
            .with_code("key_expired"));
        }
    }
    if def.blocked {
        return Err(ApiError::permission("This API key is blocked.").with_code("key_blocked"));
    }
    // A key goes with its team (LiteLLM deletes a team's keys): refused like a deleted key.
    let team = keys::team_of(&config.teams, store, &def).map_err(|keys::TeamGone| {
        ApiError::authentication("Invalid API key provided (its team was deleted).")
            .with_code("invalid_api_key")
    })?;
    if team.as_ref().is_some_and(|t| t.blocked) {
        return Err(
            ApiError::permission("This API key's team is blocked.").with_code("team_blocked")
        );
    }
    Ok(Principal::Key(Box::new(
        KeyPrincipal::new(def, team).with_default_parallel(config.default_key_parallel),
    )))
}

/// The models a key (and its team) names when it may not use every model, key's first; `None`
/// when the principal may use all.
pub fn restricted_models(principal: &Principal) -> Option<Vec<String>> {
    let Principal::Key(k) = principal else {
        return None;
    };
    let team = k.team.as_ref().map_or(&[][..], |t| t.models.as_slice());
    if k.def.models.is_empty() && team.is_empty() {
        return None;
    }
    Some(k.def.models.iter().chain(team).cloned().collect())
}

/// Refuses a model the key or its team may not use.
pub fn check_model(principal: &Principal, alias: &str) -> Result<(), ApiError> {
    let Principal::Key(k) = principal else {
        return Ok(());
    };
    let refuse = |who: &str, allowed: &[String]| {
        ApiError::permission(format!(
            "This {who} is not allowed to use the model '{alias}'. Allowed models: {}.",
            allowed.join(", ")
        ))
        .with_param("model")
        .with_code("model_not_allowed")
    };
    if !keys::allows(&k.def.models, alias) {
        return Err(refuse("key", &k.def.models));
    }
    if let Some(team) = &k.team {
        if !keys::allows(&team.models, alias) {
            return Err(refuse("key's team", &team.models));
        }
    }
    Ok(())
}

/// Compares without an early exit, so the time taken does not reveal how much of a key matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time() {
        assert!(constant_time_eq(b"sk-abc", b"sk-abc"));
        assert!(!constant_time_eq(b"sk-abc", b"sk-abd"));
        assert!(!constant_time_eq(b"sk-abc", b"sk-abcd"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    /// Metric series per key only for keys marked so (config keys by default): the number of
    /// series stays bounded however many keys the admin API creates.
    #[test]
    fn metric_labels_per_marked_key() {
        let key = |from_config, per_key_metrics| {
            Principal::Key(Box::new(KeyPrincipal::new(
                KeyDef {
                    token: "t".into(),
                    key_name: "sk-...abcd".into(),
                    key_alias: Some("alias".into()),
                    team_id: Some("team".into()),
                    from_config,
                    per_key_metrics,
                    ..Default::default()
                },
                None,
            )))
        };
        let other = ("team", crate::stats::OTHER_KEYS);
        assert_eq!(key(true, None).metric_labels(), ("team", "alias"));
        assert_eq!(key(false, None).metric_labels(), other);
        assert_eq!(key(false, Some(true)).metric_labels(), ("team", "alias"));
        assert_eq!(key(true, Some(false)).metric_labels(), other);
        // The response header still names the key itself.
        assert_eq!(key(false, None).labels(), ("team", "alias"));
        assert_eq!(Principal::Master.metric_labels(), ("-", "master"));
    }
}
