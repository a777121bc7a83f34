//! `tollgate_settings.store`: the shared store (Redis behind a webdis sidecar) that makes several
//! Envoy processes one gateway, and the LiteLLM Redis fields a LiteLLM config may carry instead.

use serde_json::{Map, Value};

use super::walker::{join, kind, SecretRef, Walker};
use crate::store::remote::Endpoint;

/// The Envoy cluster of the webdis sidecar (provider clusters are `tollgate_<host>_<port>`, so no
/// provider can take this name).
pub const STORE_CLUSTER: &str = "tollgate_store";

/// Fields of `tollgate_settings.store`.
pub const FIELDS: &[&str] = &[
    "url",
    "auth",
    "failure_mode",
    "tick_ms",
    "sync_timeout_ms",
    "call_timeout_ms",
    "replica_ttl_ms",
    "spend_log_keep",
    "response_ttl_s",
    "response_max_bytes",
];

/// What the gateway does for virtual-key traffic while the store does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// Admit against this replica's own counters (the single-process behaviour) and settle with
    /// the store once it answers again.
    Local,
    /// Refuse virtual-key traffic with a 503; the master key still works.
    Closed,
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `url` as written (`http://host:port`).
    pub url: String,
    pub host: String,
    pub port: u16,
    /// The cluster, `:authority` and basic-auth header of every call.
    pub endpoint: Endpoint,
    /// `auth` as written: `tollgate webdis-config` writes its value into webdis's ACL.
    pub auth: Option<SecretRef>,
    pub failure_mode: FailureMode,
    /// The period of the process's sync with the store.
    pub tick_ms: u64,
    /// How long a sync may take before it counts as failed (and is sent again next period).
    pub sync_timeout_ms: u64,
    /// How long a request waits for a call of its own (an admission near a limit, an unknown key).
    pub call_timeout_ms: u64,
    /// How long the store counts a replica alive after its last sync.
    pub replica_ttl_ms: u64,
    /// Spend log records kept in Redis (the newest; `XADD MAXLEN ~`).
    pub spend_log_keep: u64,
    /// How long a Responses API response is kept after the newest turn of its conversation.
    pub response_ttl_s: u64,
    /// The most a conversation read back for `previous_response_id` may hold (its turns' input
    /// items and response objects, in bytes).
    pub response_max_bytes: u64,
}

impl StoreSettings {
    /// How long a lease the store confirmed may be used without hearing from the store again:
    /// the store may count this replica dead `replica_ttl_ms` after it received its last sync,
    /// which may have taken up to `sync_timeout_ms` to come back (always more than `tick_ms`).
    pub fn lease_max_age_ms(&self) -> u64 {
        self.replica_ttl_ms.saturating_sub(self.sync_timeout_ms)
    }
}

pub const DEFAULT_TICK_MS: u64 = 250;
pub const DEFAULT_SYNC_TIMEOUT_MS: u64 = 1000;
pub const DEFAULT_CALL_TIMEOUT_MS: u64 = 200;
pub const DEFAULT_REPLICA_TTL_MS: u64 = 3000;
pub const DEFAULT_SPEND_LOG_KEEP: u64 = 100_000;
pub const DEFAULT_RESPONSE_TTL_S: u64 = 7 * 24 * 3600;
pub const DEFAULT_RESPONSE_MAX_BYTES: u64 = 4 << 20;

/// The Redis a LiteLLM config names (`router_settings` or `general_settings`: `redis_host`,
/// `redis_port`, `redis_password`), for `tollgate webdis-config`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LitellmRedis {
    /// As written (`os.environ/NAME` unresolved).
    pub host: Option<String>,
    pub port: Option<String>,
    pub password: Option<String>,
}

/// Why Tollgate does not use LiteLLM's Redis fields, and what it needs instead.
const REDIS_FIELD_HINT: &str = "is read only by `tollgate webdis-config`: Tollgate does not connect to Redis itself (an Envoy filter can only make HTTP calls); Envoy replicas share keys, budgets and limits through webdis in front of Redis: set tollgate_settings.store.url to the webdis sidecar (e.g. http://127.0.0.1:7379) and store.auth, and write the sidecar's config with `tollgate webdis-config`";

/// LiteLLM's Redis fields (acted on only by `tollgate webdis-config`), each with a warning that
/// says what Tollgate needs instead.
pub const LITELLM_REDIS_FIELDS: &[&str] =
    &["redis_host", "redis_port", "redis_password", "redis_url"];

/// Reads `tollgate_settings.store` (when present) and warns about LiteLLM's Redis fields.
pub(crate) fn settings(
    w: &mut Walker,
    tollgate: &Map<String, Value>,
    sections: [(&str, &Map<String, Value>); 3],
) -> (Option<StoreSettings>, LitellmRedis) {
    let redis = litellm_redis(w, sections);
    let store = match tollgate.get("store") {
        None | Some(Value::Null) => None,
        Some(v) => w
            .object(v, "tollgate_settings.store")
            .and_then(|m| store(w, m)),
    };
    (store, redis)
}

fn store(w: &mut Walker, m: &Map<String, Value>) -> Option<StoreSettings> {
    const PATH: &str = "tollgate_settings.store";
    w.check_fields(m, PATH, FIELDS, &[]);
    let url_path = join(PATH, "url");
    let url = match m.get("url") {
        // `tollgate render` builds the store's cluster from it: an unset variable is an error in
        // check mode too.
        Some(Value::String(_)) => w.cluster_string(m, "url", PATH),
        None | Some(Value::Null) => {
            w.error(
                &url_path,
                "is required: the webdis sidecar's address, e.g. http://127.0.0.1:7379",
            );
            None
        }
        Some(other) => {
            w.error(&url_path, format!("must be a string, not {}", kind(other)));
            None
        }
    };
    let parsed = url.as_deref().and_then(|u| match super::parse_base_url(u) {
        Ok(p) if p.tls => {
            w.error(&url_path, format!("'{u}' is https: webdis speaks plain HTTP, so run it beside Envoy (bound to loopback) and give its http:// address"));
            None
        }
        Ok(p) if !p.path.is_empty() => {
            w.error(&url_path, format!("'{u}' has a path: give only http://host:port"));
            None
        }
        Ok(p) => Some(p),
        Err(msg) if msg.contains("credentials") => {
            w.error(
                &url_path,
                format!("'{u}' {msg}: put webdis's user:password in store.auth"),
            );
            None
        }
        Err(msg) => {
            w.error(&url_path, format!("'{u}' {msg}"));
            None
        }
    });

    let auth_path = join(PATH, "auth");
    let auth = w.secret_ref(m, "auth", PATH);
    let auth_value = auth.as_ref().and_then(|r| {
        if matches!(r, SecretRef::Literal(_)) {
            w.warn(&auth_path, "is written in the config, which `tollgate render` copies into Envoy's configuration: give it as os.environ/NAME");
        }
        w.secret_value(r, &auth_path)
    });
    if let Some(a) = &auth_value {
        if a.split_once(':').is_none_or(|(user, _)| user.is_empty()) {
            w.error(
                &auth_path,
                "must be user:password (webdis's http_basic_auth)",
            );
        }
    }

    let failure_mode = match w.string(m, "failure_mode", PATH).as_deref() {
        None | Some("local") => FailureMode::Local,
        Some("closed") => FailureMode::Closed,
        Some(other) => {
            w.error(
                &join(PATH, "failure_mode"),
                format!("'{other}' is not a failure mode: local (admit against this replica's counters) or closed (refuse virtual keys)"),
            );
            FailureMode::Local
        }
    };
    let tick_ms = millis(w, m, "tick_ms", 10, 60_000, DEFAULT_TICK_MS);
    let sync_timeout_ms = millis(w, m, "sync_timeout_ms", 10, 60_000, DEFAULT_SYNC_TIMEOUT_MS);
    let call_timeout_ms = millis(w, m, "call_timeout_ms", 10, 60_000, DEFAULT_CALL_TIMEOUT_MS);
    let replica_ttl_ms = millis(
        w,
        m,
        "replica_ttl_ms",
        100,
        3_600_000,
        DEFAULT_REPLICA_TTL_MS,
    );
    let spend_log_keep = millis(
        w,
        m,
        "spend_log_keep",
        1,
        100_000_000,
        DEFAULT_SPEND_LOG_KEEP,
    );
    let response_ttl_s = millis(
        w,
        m,
        "response_ttl_s",
        1,
        30 * 24 * 3600,
        DEFAULT_RESPONSE_TTL_S,
    );
    let response_max_bytes = millis(
        w,
        m,
        "response_max_bytes",
        1024,
        64 << 20,
        DEFAULT_RESPONSE_MAX_BYTES,
    );
    // A live replica must not look dead while one sync is slow: its heartbeat must outlast a
    // period plus the longest sync.
    if replica_ttl_ms <= tick_ms.saturating_add(sync_timeout_ms) {
        w.error(
            &join(PATH, "replica_ttl_ms"),
            format!("must be more than tick_ms + sync_timeout_ms ({} ms): a replica whose sync is slow would be taken for dead", tick_ms + sync_timeout_ms),
        );
    }
    let p = parsed?;
    Some(StoreSettings {
        url: url.unwrap_or_default(),
        endpoint: Endpoint::new(STORE_CLUSTER, &p.authority, auth_value.as_deref()),
        host: p.host,
        port: p.port,
        auth,
        failure_mode,
        tick_ms,
        sync_timeout_ms,
        call_timeout_ms,
        replica_ttl_ms,
        spend_log_keep,
        response_ttl_s,
        response_max_bytes,
    })
}

/// A whole number of `store.<key>` within `[min, max]`, else `default` (with an error when
/// given and wrong).
fn millis(
    w: &mut Walker,
    m: &Map<String, Value>,
    key: &str,
    min: u64,
    max: u64,
    default: u64,
) -> u64 {
    let path = join("tollgate_settings.store", key);
    let Some(x) = w.number(m, key, "tollgate_settings.store", min as f64) else {
        return default;
    };
    if x.fract() != 0.0 {
        w.error(&path, format!("must be a whole number, not {x}"));
        return default;
    }
    if x > max as f64 {
        w.error(&path, format!("must be at most {max}, not {x}"));
        return default;
    }
    x as u64
}

/// LiteLLM's Redis fields in `router_settings` and `general_settings`, and the Redis of
/// `litellm_settings.cache_params` (LiteLLM's response cache), each warned about.
fn litellm_redis(w: &mut Walker, sections: [(&str, &Map<String, Value>); 3]) -> LitellmRedis {
    let mut out = LitellmRedis::default();
    for (name, section) in sections {
        if name == "litellm_settings" {
            if let Some(Value::Object(cache)) = section.get("cache_params") {
                let fields = ["host", "port", "password", "url"];
                if let Some(f) = fields.iter().find(|f| cache.contains_key(**f)) {
                    w.warn(
                        &join("litellm_settings.cache_params", f),
                        "configures LiteLLM's response cache, which Tollgate does not have: this Redis is not used. Envoy replicas share keys, budgets and limits through tollgate_settings.store (webdis in front of Redis)",
                    );
                }
            }
            continue;
        }
        for field in LITELLM_REDIS_FIELDS {
            if section.contains_key(*field) {
                w.warn(&join(name, field), REDIS_FIELD_HINT);
            }
        }
        // Read as written, never resolved or refused here: the filter does not use them.
        let raw = |key: &str| match section.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        if out.host.is_none() {
            out.host = raw("redis_host");
        }
        if out.port.is_none() {
            out.port = raw("redis_port");
        }
        if out.password.is_none() {
            out.password = raw("redis_password");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{load, Config, Issue, Strictness};
    use super::*;
    use hashbrown::HashMap;
    use serde_json::json;

    fn doc(store: Value) -> Value {
        json!({
            "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-a"}}],
            "tollgate_settings": {"store": store}
        })
    }

    fn env() -> HashMap<String, String> {
        [("STORE_AUTH".to_string(), "tollgate:pw".to_string())]
            .into_iter()
            .collect()
    }

    fn ok(d: Value) -> (Config, Vec<Issue>) {
        let r = load(&d, &env(), Strictness::Serve);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        (r.config.unwrap(), r.warnings)
    }

    fn errors(d: Value, strictness: Strictness) -> Vec<String> {
        let r = load(&d, &env(), strictness);
        r.errors.iter().map(|i| i.to_string()).collect()
    }

    #[test]
    fn reads_the_store_section_with_its_defaults() {
        let (c, _) = ok(
            json!({"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-a"}}]}),
        );
        assert!(c.store.is_none());
        let (c, warnings) = ok(doc(
            json!({"url": "http://127.0.0.1:7379", "auth": "os.environ/STORE_AUTH"}),
        ));
        assert!(
            !warnings
                .iter()
                .any(|w| w.path.starts_with("tollgate_settings")),
            "{warnings:?}"
        );
        let s = c.store.unwrap();
        assert_eq!((s.host.as_str(), s.port), ("127.0.0.1", 7379));
        assert_eq!(s.endpoint.cluster, STORE_CLUSTER);
        assert_eq!(s.endpoint.authority, "127.0.0.1:7379");
        assert!(s
            .endpoint
            .headers(&crate::store::remote::function_list(1))
            .contains(&("authorization", "Basic dG9sbGdhdGU6cHc=")));
        assert_eq!(s.failure_mode, FailureMode::Local);
        assert_eq!(
            (
                s.tick_ms,
                s.sync_timeout_ms,
                s.call_timeout_ms,
                s.replica_ttl_ms,
                s.spend_log_keep
            ),
            (250, 1000, 200, 3000, 100_000)
        );
        assert_eq!(s.auth, Some(SecretRef::Env("STORE_AUTH".into())));
        assert!(c.env_keys.contains(&"STORE_AUTH".to_string()));
        // The credentials are masked wherever a client could see them.
        let mut body = b"x tollgate:pw y".to_vec();
        c.secrets.scrub(&mut body);
        assert!(!String::from_utf8_lossy(&body).contains("tollgate:pw"));

        let (c, _) = ok(doc(
            json!({"url": "http://webdis.local", "failure_mode": "closed",
            "tick_ms": 100, "sync_timeout_ms": "500", "call_timeout_ms": 50, "replica_ttl_ms": 1000,
            "spend_log_keep": 5000}),
        ));
        let s = c.store.unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.endpoint.authority.as_str()),
            ("webdis.local", 80, "webdis.local")
        );
        assert_eq!(s.failure_mode, FailureMode::Closed);
        assert_eq!(
            (
                s.tick_ms,
                s.sync_timeout_ms,
                s.call_timeout_ms,
                s.replica_ttl_ms,
                s.spend_log_keep
            ),
            (100, 500, 50, 1000, 5000)
        );
        assert!(!s
            .endpoint
            .headers(&crate::store::remote::function_list(1))
            .iter()
            .any(|(k, _)| *k == "authorization"));
    }

    #[test]
    fn errors_name_the_store_field() {
        let cases = [
            (json!({}), "tollgate_settings.store.url: is required"),
            (json!({"url": "https://127.0.0.1:7379"}), "tollgate_settings.store.url: 'https://127.0.0.1:7379' is https"),
            (json!({"url": "http://127.0.0.1:7379/x"}), "has a path"),
            (json!({"url": "http://u:p@127.0.0.1:7379"}), "put webdis's user:password in store.auth"),
            (json!({"url": "http://127.0.0.1:0"}), "tollgate_settings.store.url: 'http://127.0.0.1:0' has an invalid port"),
            (json!({"url": "redis://127.0.0.1:6379"}), "must start with http://"),
            (json!({"url": 7379}), "tollgate_settings.store.url: must be a string"),
            (json!({"url": "http://h:1", "auth": "nocolon"}), "tollgate_settings.store.auth: must be user:password"),
            (json!({"url": "http://h:1", "auth": ":pw"}), "tollgate_settings.store.auth: must be user:password"),
            (json!({"url": "http://h:1", "failure_mode": "open"}), "tollgate_settings.store.failure_mode: 'open' is not a failure mode"),
            (json!({"url": "http://h:1", "tick_ms": 5}), "tollgate_settings.store.tick_ms: must be a number >= 10"),
            (json!({"url": "http://h:1", "tick_ms": 12.5}), "tollgate_settings.store.tick_ms: must be a whole number"),
            (json!({"url": "http://h:1", "call_timeout_ms": 60001}), "tollgate_settings.store.call_timeout_ms: must be at most 60000"),
            (json!({"url": "http://h:1", "spend_log_keep": 0}), "tollgate_settings.store.spend_log_keep: must be a number >= 1"),
            (json!({"url": "http://h:1", "replica_ttl_ms": 1250}), "tollgate_settings.store.replica_ttl_ms: must be more than tick_ms + sync_timeout_ms (1250 ms)"),
            (json!({"url": "http://h:1", "tick_msec": 100}), "tollgate_settings.store.tick_msec: is not a field LiteLLM or Tollgate knows (did you mean 'tick_ms'?)"),
            (json!("http://h:1"), "tollgate_settings.store: must be a mapping"),
        ];
        for (store, expected) in cases {
            let errs = errors(doc(store.clone()), Strictness::Serve);
            assert!(
                errs.iter().any(|e| e.contains(expected)),
                "{store}: {errs:?}"
            );
        }
        // The filter needs the secret; `tollgate check` only warns (it lives where Envoy runs).
        let missing = doc(json!({"url": "http://h:1", "auth": "os.environ/NOT_SET"}));
        assert!(errors(missing.clone(), Strictness::Serve)
            .iter()
            .any(|e| e.starts_with("tollgate_settings.store.auth: environment variable NOT_SET")));
        let r = load(&missing, &env(), Strictness::Check);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert!(r
            .warnings
            .iter()
            .any(|w| w.path == "tollgate_settings.store.auth"));
        // The store's cluster is built from the url: an unset variable there is an error in
        // `tollgate check` too, naming the variable (render could not write the cluster).
        let unset_url = doc(json!({"url": "os.environ/STORE_URL_NOT_SET"}));
        let r = load(&unset_url, &env(), Strictness::Check);
        assert!(
            r.errors.iter().any(|e| e.to_string().starts_with(
                "tollgate_settings.store.url: environment variable STORE_URL_NOT_SET is not set"
            ) && e.to_string().contains("tollgate render")),
            "{:?}",
            r.errors
        );
        let mut with_url = env();
        with_url.insert("STORE_URL".into(), "http://127.0.0.1:7380".into());
        let r = load(
            &doc(json!({"url": "os.environ/STORE_URL"})),
            &with_url,
            Strictness::Serve,
        );
        assert_eq!(r.config.unwrap().store.unwrap().port, 7380);
        // Written inline: allowed, with a warning (render copies the config into Envoy's).
        let (_, warnings) = ok(doc(json!({"url": "http://h:1", "auth": "u:p"})));
        assert!(warnings
            .iter()
            .any(|w| w.path == "tollgate_settings.store.auth" && w.message.contains("os.environ")));
    }

    /// LiteLLM's Redis fields load with a warning that says what Tollgate needs, wherever a
    /// LiteLLM config has them; `tollgate webdis-config` reads them.
    #[test]
    fn litellm_redis_fields_are_warnings_that_explain() {
        let d = json!({
            "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-a"}}],
            "router_settings": {"redis_host": "redis.internal", "redis_port": 6380, "redis_password": "os.environ/REDIS_PASSWORD", "redis_url": "redis://x"},
            "general_settings": {"redis_host": "other", "redis_port": "6379", "redis_password": "pw"},
            "litellm_settings": {"cache": true, "cache_params": {"type": "redis", "host": "cache", "port": 6379}}
        });
        let (c, warnings) = ok(d);
        for path in [
            "router_settings.redis_host",
            "router_settings.redis_port",
            "router_settings.redis_password",
            "router_settings.redis_url",
            "general_settings.redis_host",
            "general_settings.redis_port",
            "general_settings.redis_password",
        ] {
            let w: Vec<_> = warnings.iter().filter(|w| w.path == path).collect();
            assert_eq!(w.len(), 1, "{path}: {warnings:?}");
            assert!(
                w[0].message.contains("tollgate_settings.store.url"),
                "{}",
                w[0]
            );
            assert!(w[0].message.contains("webdis"));
        }
        assert!(warnings
            .iter()
            .any(|w| w.path == "litellm_settings.cache_params.host"
                && w.message.contains("response cache")));
        assert_eq!(
            c.litellm_redis,
            LitellmRedis {
                host: Some("redis.internal".into()),
                port: Some("6380".into()),
                password: Some("os.environ/REDIS_PASSWORD".into()),
            }
        );
        assert!(c.store.is_none());
    }
}
