//! The gateway configuration: LiteLLM's `config.yaml` (as YAML or JSON), validated once and
//! turned into lookup tables. The same code runs in the filter's root context and in
//! `tollgate check` / `tollgate render`.

mod aws;
pub mod caps;
mod known;
mod model_info;
pub mod router;
pub mod store;
mod walker;

use std::borrow::Cow;

use hashbrown::HashMap;
use serde_json::{Map, Value};

use crate::json;
use crate::keys::{self, KeyDef, TeamDef};
use crate::providers::{self, Endpoint, Params, Provider, Signing, Target};
use crate::wildcard;
pub use walker::SecretRef;
use walker::{join, kind, Walker};

/// Where environment variables come from: the process in the CLI, the VM's WASI environment
/// (Envoy's `host_env_keys`) in the filter, a map in tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;

    /// Whether a file exists, for `tollgate check`'s look at AWS credential files (the filter
    /// never asks; a VM sees no files).
    fn file_exists(&self, _path: &str) -> bool {
        false
    }
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn file_exists(&self, path: &str) -> bool {
        std::path::Path::new(path).is_file()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// How strictly to treat a missing environment variable: the filter refuses to start, while
/// `tollgate check` on a build machine only warns (the secrets live where Envoy runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    Serve,
    Check,
}

/// A problem found in the configuration, named by its field path (`model_list[2].litellm_params.model`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Serves `/v1/chat/completions` (and embeddings when the provider can).
    Any,
    Chat,
    Embedding,
}

/// One `model_list` entry, ready to serve.
#[derive(Clone)]
pub struct Deployment {
    pub index: usize,
    /// `model_name`: the alias clients send.
    pub alias: String,
    /// `model_info.id`, or `<alias>.<n>` for the n-th deployment of the alias.
    pub id: String,
    pub provider: &'static dyn Provider,
    /// What the provider reads: its model id (what follows `provider/`), the base URL's path,
    /// `api_version`.
    pub target: Target,
    /// The Envoy cluster the request is routed to: Tollgate's own (`tollgate_<host>_<port>`,
    /// rendered by `tollgate render`) or the one `model_info.envoy_cluster` names.
    pub cluster: String,
    /// `:authority` of upstream requests.
    pub authority: String,
    /// Headers added to every upstream request (credentials: never logged).
    pub headers: Vec<(String, String)>,
    pub drop_params: bool,
    pub mode: Mode,
    /// Prices and context window, resolved at load: the built-in entry for the model (or
    /// `base_model`) with `model_info` / `litellm_params` overrides. `None` when nothing is known;
    /// a known context window without a price has a zero price. Either way an unpriced deployment
    /// was reported by a warning and is charged 0.
    pub model_info: Option<crate::pricing::ModelInfo>,
    /// `weight`, `rpm`, `tpm`, `order`, `timeout`, `stream_timeout` from `litellm_params`.
    pub balance: router::Balance,
    /// A model with `*` (`openai/*`), filled from the client's model name per request (see
    /// [`Config::serving`]): the prices and limits its configuration states, laid over the
    /// built-in entry of each model it serves. `None` for other deployments, and when
    /// `base_model` fixes the prices.
    pub wildcard_pricing: Option<crate::pricing::Partial>,
}

impl Deployment {
    /// Whether the provider's model id is filled from the client's model name (`openai/*`).
    pub fn is_template(&self) -> bool {
        wildcard::is_pattern(&self.target.model)
    }
}

impl Deployment {
    /// Whether `tollgate render` writes this deployment's cluster (else it is the user's own,
    /// named by `model_info.envoy_cluster`).
    pub fn cluster_is_rendered(&self) -> bool {
        self.cluster.starts_with(CLUSTER_PREFIX)
    }
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("alias", &self.alias)
            .field("id", &self.id)
            .field("provider", &self.provider.name())
            .field("model", &self.target.model)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// A wildcard `model_name` and its deployments (a model group reached by pattern).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub name: String,
    pub members: Vec<usize>,
}

/// A distinct upstream: one Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub signing: Option<Signing>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub drop_params: bool,
    /// Whole-request timeout for upstream calls, seconds (LiteLLM's default is 600).
    pub request_timeout_secs: f64,
    /// Largest request body Envoy accepts, over every protocol the listener speaks.
    pub max_request_body_bytes: u64,
    /// Largest non-streamed response body Envoy holds for the filter; never below
    /// `max_request_body_bytes` (Envoy keeps one buffer limit per stream).
    pub max_response_body_bytes: u64,
    /// Seconds a client has to send its request headers (0: unbounded).
    pub request_headers_timeout_secs: f64,
    /// Seconds a client has to send its whole request (0: unbounded); the response, however
    /// long it streams, is not bounded by it.
    pub request_receive_timeout_secs: f64,
    /// Client connections Envoy keeps open at once, over every listener.
    pub max_downstream_connections: u64,
    /// Where the gateway's access log goes: `stdout`, `stderr` or a file path (`None`: no
    /// access log). One JSON line per request, with its spend record's fields.
    pub access_log: Option<String>,
}

#[derive(Debug)]
pub struct Config {
    pub deployments: Vec<Deployment>,
    /// Alias -> deployment indices, in config order.
    pub groups: HashMap<String, Vec<usize>>,
    /// Aliases in first-seen order (wildcard patterns not included).
    pub model_names: Vec<String>,
    /// Wildcard `model_name`s (`*`, `anthropic/*`), most specific first: a name no group has
    /// reaches the first that matches it.
    pub patterns: Vec<Pattern>,
    /// What `GET /v1/models` lists: the aliases, then the models each wildcard is known to
    /// serve (from the price table), without repeats.
    pub listed_models: Vec<String>,
    /// The same, for lookups.
    pub listed_set: hashbrown::HashSet<String>,
    /// The `GET /v1/models` body for callers allowed every model, built once.
    pub models_json: Vec<u8>,
    pub master_key: Option<String>,
    pub clusters: Vec<Cluster>,
    /// Environment variables the filter reads: Envoy's `host_env_keys`.
    pub env_keys: Vec<String>,
    pub settings: Settings,
    /// Virtual keys from the config, by token (SHA-256 of the key).
    pub keys: HashMap<String, KeyDef>,
    pub teams: HashMap<String, TeamDef>,
    pub router: router::RouterSettings,
    /// Every secret in the configuration, masked in whatever a client sees.
    pub secrets: crate::secrets::Secrets,
    /// The shared store (`tollgate_settings.store`); `None`: this process's state is its own.
    pub store: Option<store::StoreSettings>,
    /// The Redis a LiteLLM config names, for `tollgate webdis-config`.
    pub litellm_redis: store::LitellmRedis,
    /// The proxy-wide cap (`litellm_settings.max_budget`,
    /// `general_settings.global_max_parallel_requests`); `None`: none is configured.
    pub proxy: Option<caps::ProxyCap>,
    /// `general_settings.max_parallel_requests`: the parallel limit of a virtual key without
    /// its own `max_parallel_requests`.
    pub default_key_parallel: Option<u64>,
}

/// The outcome of loading: a usable config when there are no errors, plus every issue found.
#[derive(Debug)]
pub struct Report {
    pub config: Option<Config>,
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
}

pub const DEFAULT_TIMEOUT_SECS: f64 = 600.0;
pub const DEFAULT_MAX_BODY_BYTES: u64 = 32 << 20;
/// Large enough for an embeddings batch at OpenAI's limits (2,048 inputs of 3,072 dimensions, in
/// base64 as the SDKs ask: about 34 MB).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 << 20;
pub const DEFAULT_REQUEST_HEADERS_TIMEOUT_SECS: f64 = 10.0;
pub const DEFAULT_REQUEST_RECEIVE_TIMEOUT_SECS: f64 = 60.0;
pub const DEFAULT_MAX_DOWNSTREAM_CONNECTIONS: u64 = 10_000;
/// Every cluster Tollgate renders is named with this prefix; a cluster of the user's
/// (`model_info.envoy_cluster`) may not be.
pub const CLUSTER_PREFIX: &str = "tollgate_";
/// The cluster of the attempt listener (model groups with retries or fallbacks).
pub const ATTEMPT_CLUSTER: &str = "tollgate_attempts";
/// Envoy's buffer limits are 32-bit.
const MAX_BUFFER_BYTES: u64 = u32::MAX as u64;

/// Parses the plugin configuration as Envoy hands it over (JSON text).
pub fn load_json(text: &[u8], env: &dyn Env, strictness: Strictness) -> Report {
    match serde_json::from_slice::<Value>(text) {
        Ok(doc) => load(&doc, env, strictness),
        Err(e) => Report {
            config: None,
            errors: vec![Issue {
                path: String::new(),
                message: format!("configuration is not valid JSON: {e}"),
            }],
            warnings: Vec::new(),
        },
    }
}

/// Validates a configuration document and builds the lookup tables.
pub fn load(doc: &Value, env: &dyn Env, strictness: Strictness) -> Report {
    let mut w = Walker {
        errors: Vec::new(),
        warnings: Vec::new(),
        env,
        strictness,
        env_keys: Vec::new(),
        secrets: Vec::new(),
    };
    let config = build(doc, &mut w);
    let config = if w.errors.is_empty() { config } else { None };
    Report {
        config,
        errors: w.errors,
        warnings: w.warnings,
    }
}

fn build(doc: &Value, w: &mut Walker) -> Option<Config> {
    let root = w.object(doc, "(top level)")?;
    w.check_fields(root, "", known::TOP_ACTED_ON, known::TOP_KNOWN);

    let empty = Map::new();
    let litellm = section(
        w,
        root,
        "litellm_settings",
        known::LITELLM_SETTINGS_ACTED_ON,
        known::LITELLM_SETTINGS_KNOWN,
    )
    .unwrap_or(&empty);
    let general = section(
        w,
        root,
        "general_settings",
        known::GENERAL_ACTED_ON,
        known::GENERAL_KNOWN,
    )
    .unwrap_or(&empty);
    let router = section(
        w,
        root,
        "router_settings",
        known::ROUTER_ACTED_ON,
        known::ROUTER_KNOWN,
    )
    .unwrap_or(&empty);
    let tollgate =
        section(w, root, "tollgate_settings", known::TOLLGATE_ACTED_ON, &[]).unwrap_or(&empty);
    callbacks(w, litellm);
    if let Some(v) = root.get("environment_variables") {
        if let Some(m) = w.object(v, "environment_variables") {
            if !m.is_empty() {
                w.warn(
                    "environment_variables",
                    "is ignored: give Envoy these variables in its environment instead",
                );
            }
        }
    }

    let (store, litellm_redis) = store::settings(
        w,
        tollgate,
        [
            ("router_settings", router),
            ("general_settings", general),
            ("litellm_settings", litellm),
        ],
    );

    let (proxy, default_key_parallel) = caps::read(w, litellm, general);
    let drop_params = w
        .bool(litellm, "drop_params", "litellm_settings")
        .unwrap_or(false);
    let timeout = w
        .number(litellm, "request_timeout", "litellm_settings", 0.001)
        .or_else(|| w.number(router, "timeout", "router_settings", 0.001))
        .unwrap_or(DEFAULT_TIMEOUT_SECS);
    let max_body = w
        .number(
            tollgate,
            "max_request_body_bytes",
            "tollgate_settings",
            1024.0,
        )
        .or_else(|| {
            w.number(general, "max_request_size_mb", "general_settings", 0.001)
                .map(|mb| mb * 1048576.0)
        })
        .map(|x| x as u64)
        .unwrap_or(DEFAULT_MAX_BODY_BYTES);
    let max_body_path = if tollgate.contains_key("max_request_body_bytes") {
        "tollgate_settings.max_request_body_bytes"
    } else {
        "general_settings.max_request_size_mb"
    };
    let max_body = at_most(w, max_body, MAX_BUFFER_BYTES, max_body_path);
    let max_response = response_limit(w, tollgate, max_body);
    let headers_timeout = w
        .number(
            tollgate,
            "request_headers_timeout",
            "tollgate_settings",
            0.0,
        )
        .unwrap_or(DEFAULT_REQUEST_HEADERS_TIMEOUT_SECS);
    let receive_timeout = w
        .number(
            tollgate,
            "request_receive_timeout",
            "tollgate_settings",
            0.0,
        )
        .unwrap_or(DEFAULT_REQUEST_RECEIVE_TIMEOUT_SECS);
    let access_log = w
        .string(tollgate, "access_log", "tollgate_settings")
        .filter(|p| !p.is_empty() && p != "off");
    if let Some(p) = &access_log {
        if !matches!(p.as_str(), "stdout" | "stderr") && !p.starts_with('/') {
            w.error(
                "tollgate_settings.access_log",
                format!("must be stdout, stderr, off or an absolute file path, not '{p}'"),
            );
        }
    }
    let max_connections = w
        .number(
            tollgate,
            "max_downstream_connections",
            "tollgate_settings",
            1.0,
        )
        .map(|x| {
            at_most(
                w,
                x as u64,
                u64::from(u32::MAX),
                "tollgate_settings.max_downstream_connections",
            )
        })
        .unwrap_or(DEFAULT_MAX_DOWNSTREAM_CONNECTIONS);

    let master_key = match w.secret_ref(general, "master_key", "general_settings") {
        Some(r) => {
            let v = w.secret_value(&r, "general_settings.master_key");
            if let Some(k) = &v {
                if !k.starts_with("sk-") {
                    w.warn("general_settings.master_key", "LiteLLM requires master keys to start with 'sk-'; Tollgate accepts this one");
                }
            }
            v
        }
        None => {
            w.warn(
                "general_settings.master_key",
                "is not set: the gateway accepts every request without authentication",
            );
            None
        }
    };

    let mut deployments = Vec::new();
    let mut clusters: Vec<Cluster> = Vec::new();
    match root.get("model_list") {
        None | Some(Value::Null) => w.error("model_list", "is required: list at least one model"),
        Some(Value::Array(list)) => {
            if list.is_empty() {
                w.error("model_list", "is empty: list at least one model");
            }
            for (i, entry) in list.iter().enumerate() {
                let path = format!("model_list[{i}]");
                if let Some(d) = deployment(
                    w,
                    entry,
                    &path,
                    deployments.len(),
                    drop_params,
                    &mut clusters,
                ) {
                    deployments.push(d);
                }
            }
        }
        Some(other) => w.error("model_list", format!("must be a list, not {}", kind(other))),
    }

    let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
    let mut model_names = Vec::new();
    let mut patterns: Vec<Pattern> = Vec::new();
    for d in &mut deployments {
        let members = if wildcard::is_pattern(&d.alias) {
            let at = match patterns.iter().position(|p| p.name == d.alias) {
                Some(at) => at,
                None => {
                    patterns.push(Pattern {
                        name: d.alias.clone(),
                        members: Vec::new(),
                    });
                    patterns.len() - 1
                }
            };
            match patterns.get_mut(at) {
                Some(p) => &mut p.members,
                None => continue,
            }
        } else {
            let members = groups.entry(d.alias.clone()).or_default();
            if members.is_empty() {
                model_names.push(d.alias.clone());
            }
            members
        };
        if d.id.is_empty() {
            d.id = format!("{}.{}", d.alias, members.len());
        }
        members.push(d.index);
    }
    // The most specific pattern first; equal ones in config order (the sort is stable).
    patterns.sort_by_key(|p| std::cmp::Reverse(wildcard::specificity(&p.name)));
    let mut ids: Vec<&str> = deployments.iter().map(|d| d.id.as_str()).collect();
    ids.sort_unstable();
    if let Some(dup) = ids
        .windows(2)
        .find(|p| p.first() == p.get(1))
        .and_then(|p| p.first())
    {
        w.error(
            "model_list",
            format!("model_info.id '{dup}' is used by more than one deployment"),
        );
    }

    let names = Names {
        groups: &groups,
        patterns: &patterns,
        deployments: &deployments,
    };
    let router = router::settings(w, router, litellm, &|n| names.group(n).is_some());
    let teams = teams(w, root.get("teams"));
    let keys = keys(w, root.get("keys"), &teams, &names, master_key.as_deref());
    let listed_models = names.listed(&model_names);
    let models_json = models_list_json(&listed_models);
    Some(Config {
        patterns,
        listed_set: listed_models.iter().cloned().collect(),
        listed_models,
        keys,
        teams,
        router,
        deployments,
        groups,
        model_names,
        models_json,
        master_key,
        clusters,
        store,
        litellm_redis,
        proxy,
        default_key_parallel,
        env_keys: std::mem::take(&mut w.env_keys),
        secrets: crate::secrets::Secrets::new(&w.secrets),
        settings: Settings {
            drop_params,
            request_timeout_secs: timeout,
            max_request_body_bytes: max_body,
            max_response_body_bytes: max_response,
            request_headers_timeout_secs: headers_timeout,
            request_receive_timeout_secs: receive_timeout,
            max_downstream_connections: max_connections,
            access_log,
        },
    })
}

/// `tollgate_settings.max_response_body_bytes`, never below the request limit: Envoy keeps one
/// buffer limit per stream, and the request's must hold until the body is in.
fn response_limit(w: &mut Walker, tollgate: &Map<String, Value>, max_body: u64) -> u64 {
    const PATH: &str = "tollgate_settings.max_response_body_bytes";
    let configured = w
        .number(
            tollgate,
            "max_response_body_bytes",
            "tollgate_settings",
            1024.0,
        )
        .map(|x| at_most(w, x as u64, MAX_BUFFER_BYTES, PATH));
    if configured.is_some_and(|r| r < max_body) {
        w.warn(
            PATH,
            format!("is below the request body limit, so responses up to {max_body} bytes (max_request_body_bytes) are buffered: Envoy keeps one buffer limit per stream"),
        );
    }
    configured
        .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES)
        .max(max_body)
}

/// `value`, or `max` with an error naming `path` when it is larger.
fn at_most(w: &mut Walker, value: u64, max: u64, path: &str) -> u64 {
    if value > max {
        w.error(path, format!("must be at most {max}, not {value}"));
        return max;
    }
    value
}

/// `teams:` (a Tollgate section; LiteLLM keeps teams in its database).
fn teams(w: &mut Walker, v: Option<&Value>) -> HashMap<String, TeamDef> {
    let mut out = HashMap::new();
    let list = match v {
        None | Some(Value::Null) => return out,
        Some(Value::Array(list)) => list,
        Some(other) => {
            w.error("teams", format!("must be a list, not {}", kind(other)));
            return out;
        }
    };
    for (i, item) in list.iter().enumerate() {
        let path = format!("teams[{i}]");
        let Some(m) = w.object(item, &path) else {
            continue;
        };
        w.check_fields(m, &path, keys::TEAM_FIELDS, &[]);
        let team_id = match m.get("team_id") {
            Some(Value::String(t)) if !t.trim().is_empty() => t.clone(),
            _ => {
                w.error(&join(&path, "team_id"), "is required: a non-empty string");
                continue;
            }
        };
        let mut def = TeamDef {
            team_id: team_id.clone(),
            from_config: true,
            ..Default::default()
        };
        for (f, msg) in keys::apply_team_fields(&mut def, m) {
            w.error(&join(&path, &f), msg);
        }
        if out.insert(team_id.clone(), def).is_some() {
            w.error(
                &join(&path, "team_id"),
                format!("team '{team_id}' is defined twice"),
            );
        }
    }
    out
}

/// `keys:` (a Tollgate section; LiteLLM creates keys through its API and database). A key is
/// given as `key` (usually `os.environ/NAME`) or as `key_hash: sha256:<hex>`; only its hash is kept.
fn keys(
    w: &mut Walker,
    v: Option<&Value>,
    teams: &HashMap<String, TeamDef>,
    names: &Names,
    master_key: Option<&str>,
) -> HashMap<String, KeyDef> {
    let mut out: HashMap<String, KeyDef> = HashMap::new();
    let mut aliases: HashMap<String, usize> = HashMap::new();
    let list = match v {
        None | Some(Value::Null) => return out,
        Some(Value::Array(list)) => list,
        Some(other) => {
            w.error("keys", format!("must be a list, not {}", kind(other)));
            return out;
        }
    };
    for (i, item) in list.iter().enumerate() {
        let path = format!("keys[{i}]");
        let Some(m) = w.object(item, &path) else {
            continue;
        };
        let mut allowed: Vec<&str> = keys::KEY_FIELDS.to_vec();
        allowed.extend(["key", "key_hash"]);
        w.check_fields(m, &path, &allowed, &[]);
        let (token, name) = match (w.secret_ref(m, "key", &path), m.get("key_hash")) {
            (Some(r), None) => match w.secret_value(&r, &join(&path, "key")) {
                Some(k) if master_key == Some(k.as_str()) => {
                    w.error(
                        &join(&path, "key"),
                        "is the master key: a virtual key must differ from it",
                    );
                    continue;
                }
                Some(k) => (keys::hash_key(&k), keys::key_name(&k)),
                None => continue,
            },
            (None, Some(Value::String(h))) => {
                match h.strip_prefix("sha256:").map(str::to_ascii_lowercase) {
                    Some(hex) if keys::is_hash(&hex) => {
                        let name = format!("sha256:{}...", hex.get(..8).unwrap_or(""));
                        (hex, name)
                    }
                    _ => {
                        w.error(&join(&path, "key_hash"), "must be sha256:<64 hex digits>");
                        continue;
                    }
                }
            }
            (Some(_), Some(_)) => {
                w.error(&path, "give either key or key_hash, not both");
                continue;
            }
            (None, _) => {
                if !m.contains_key("key") {
                    w.error(
                        &join(&path, "key"),
                        "is required (or key_hash: sha256:<hex>)",
                    );
                }
                continue;
            }
        };
        let mut def = KeyDef {
            token: token.clone(),
            key_name: name,
            from_config: true,
            ..Default::default()
        };
        for (f, msg) in keys::apply_key_fields(&mut def, m) {
            w.error(&join(&path, &f), msg);
        }
        if let Some(team) = &def.team_id {
            if !teams.contains_key(team) {
                w.error(
                    &join(&path, "team_id"),
                    format!("team '{team}' is not defined under teams"),
                );
            }
        }
        for model in &def.models {
            if !names.allowable(model) {
                w.error(
                    &join(&path, "models"),
                    format!("'{model}' is not a model_name in model_list, nor a name a wildcard model_name matches"),
                );
            }
        }
        if let Some(alias) = &def.key_alias {
            match aliases.get(alias) {
                Some(first) => w.error(
                    &join(&path, "key_alias"),
                    format!("'{alias}' is also the alias of keys[{first}]: aliases must be unique"),
                ),
                None => {
                    aliases.insert(alias.clone(), i);
                }
            }
        }
        if out.insert(token, def).is_some() {
            w.error(&path, "this key is listed twice");
        }
    }
    out
}

/// One of LiteLLM's settings sections (any field loads, see `Walker::check_litellm_fields`), or
/// Tollgate's own (`tollgate_settings`: an unknown field is an error).
fn section<'v>(
    w: &mut Walker,
    root: &'v Map<String, Value>,
    name: &str,
    acted_on: &[&str],
    known: &[&str],
) -> Option<&'v Map<String, Value>> {
    let v = root.get(name)?;
    if v.is_null() {
        return None;
    }
    let m = w.object(v, name)?;
    if name == "tollgate_settings" {
        w.check_fields(m, name, acted_on, known);
    } else {
        w.check_litellm_fields(m, name, acted_on, known);
    }
    Some(m)
}

/// `litellm_settings.callbacks` (and the older `success_callback` / `failure_callback`): Tollgate
/// runs no LiteLLM callback, but its metrics are always on, so `prometheus` asks for nothing
/// more; any other callback is named in a warning.
fn callbacks(w: &mut Walker, litellm: &Map<String, Value>) {
    for field in known::LITELLM_SETTINGS_CALLBACKS {
        let path = join("litellm_settings", field);
        let names: Vec<&str> = match litellm.get(*field) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(list)) => {
                let names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
                if names.len() != list.len() {
                    w.error(&path, "must be a list of callback names");
                    continue;
                }
                names
            }
            Some(other) => {
                w.error(
                    &path,
                    format!("must be a list of callback names, not {}", kind(other)),
                );
                continue;
            }
        };
        let ignored: Vec<&str> = names
            .into_iter()
            .filter(|n| !n.eq_ignore_ascii_case("prometheus"))
            .collect();
        if !ignored.is_empty() {
            w.warn(
                &path,
                format!(
                    "Tollgate does not run LiteLLM callbacks; {} not acted on (prometheus needs none: Tollgate's metrics are always on at Envoy's /stats/prometheus)",
                    match ignored.as_slice() {
                        [one] => format!("'{one}' is"),
                        many => format!("'{}' are", many.join("', '")),
                    }
                ),
            );
        }
    }
}

fn deployment(
    w: &mut Walker,
    entry: &Value,
    path: &str,
    index: usize,
    global_drop_params: bool,
    clusters: &mut Vec<Cluster>,
) -> Option<Deployment> {
    let e = w.object(entry, path)?;
    w.check_fields(
        e,
        path,
        &["model_name", "litellm_params", "model_info"],
        &[],
    );
    let alias = match e.get("model_name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) => {
            w.error(&join(path, "model_name"), "must not be empty");
            return None;
        }
        Some(other) => {
            w.error(
                &join(path, "model_name"),
                format!("must be a string, not {}", kind(other)),
            );
            return None;
        }
        None => {
            w.error(
                &join(path, "model_name"),
                "is required: the name clients send as \"model\"",
            );
            return None;
        }
    };
    let lp_path = join(path, "litellm_params");
    let lp = match e.get("litellm_params") {
        Some(v) => w.object(v, &lp_path)?,
        None => {
            w.error(&lp_path, "is required");
            return None;
        }
    };
    w.check_litellm_fields(lp, &lp_path, known::PARAMS_ACTED_ON, known::PARAMS_KNOWN);

    let mut mode = Mode::Any;
    let mut id = String::new();
    let mi_path = join(path, "model_info");
    let mut info_map = None;
    if let Some(v) = e.get("model_info") {
        if let Some(mi) = w.object(v, &mi_path) {
            info_map = Some(mi);
            w.check_litellm_fields(
                mi,
                &mi_path,
                known::MODEL_INFO_ACTED_ON,
                known::MODEL_INFO_KNOWN,
            );
            id = w.string(mi, "id", &mi_path).unwrap_or_default();
            mode = match w.string(mi, "mode", &mi_path).as_deref() {
                None => Mode::Any,
                Some("chat") | Some("completion") | Some("responses") => Mode::Chat,
                Some("embedding") => Mode::Embedding,
                Some(other) => {
                    w.warn(&join(&mi_path, "mode"), format!("mode '{other}' is not served by Tollgate; the deployment serves chat completions"));
                    Mode::Chat
                }
            };
        }
    }

    let model_path = join(&lp_path, "model");
    let model = match w.string(lp, "model", &lp_path) {
        Some(m) if !m.trim().is_empty() => m,
        Some(_) => {
            w.error(&model_path, "must not be empty");
            return None;
        }
        None => {
            if !lp.contains_key("model") {
                w.error(
                    &model_path,
                    "is required: write it as provider/model-id, e.g. anthropic/claude-sonnet-4-5",
                );
            }
            return None;
        }
    };
    let custom = w.string(lp, "custom_llm_provider", &lp_path);
    let (provider, model_id) = match providers::resolve(&model, custom.as_deref()) {
        Ok((p, id)) => (p, id.to_string()),
        Err(e) => {
            let field = if custom.is_some() {
                join(&lp_path, "custom_llm_provider")
            } else {
                model_path
            };
            w.error(&field, e.to_string());
            return None;
        }
    };
    if !wildcard_fits(w, path, &alias, &model_path, &model_id) {
        return None;
    }
    let (model_info, wildcard_pricing) = model_info::resolve(
        w,
        &model_info::Fields {
            alias: &alias,
            provider: provider.name(),
            model: &model_id,
            lp,
            lp_path: &lp_path,
            mi: info_map,
            mi_path: &mi_path,
        },
    );

    // Envoy's clusters are built from these: `tollgate render` needs their values.
    let api_base = w.cluster_string(lp, "api_base", &lp_path);
    let api_version = w.string(lp, "api_version", &lp_path);
    let is_bedrock = provider.name() == "bedrock";
    let aws_region = if is_bedrock {
        aws::region(w, lp, &lp_path, &model_id)
    } else {
        w.cluster_string(lp, "aws_region_name", &lp_path)
    };
    let aws_runtime_endpoint = w.cluster_string(lp, "aws_bedrock_runtime_endpoint", &lp_path);
    let unresolved = [
        ("api_base", &api_base),
        ("aws_region_name", &aws_region),
        ("aws_bedrock_runtime_endpoint", &aws_runtime_endpoint),
    ]
    .iter()
    .any(|(f, v)| v.is_none() && lp.get(*f).is_some_and(|x| !x.is_null()));
    let key_path = join(&lp_path, "api_key");
    let api_key = match w.secret_ref(lp, "api_key", &lp_path) {
        Some(r) => w.secret_value(&r, &key_path),
        None => match provider.default_key_env() {
            // LiteLLM falls back to the provider's usual variable; so do we, quietly when unset.
            Some(name) => {
                let names: Vec<&str> = std::iter::once(name)
                    .chain(provider.fallback_key_envs().iter().copied())
                    .collect();
                let mut v = None;
                for n in &names {
                    if v.is_none() {
                        v = w.env.var(n).filter(|v| !v.is_empty());
                    }
                    if !w.env_keys.iter().any(|k| k == n) {
                        w.env_keys.push(n.to_string());
                    }
                }
                match &v {
                    Some(k) => w.secrets.push(k.clone()),
                    None => {
                        let names = names.join(" / ");
                        w.warn(&key_path, format!("is not set and {names} is not in the environment: requests go upstream without a key"));
                    }
                }
                v
            }
            None => None,
        },
    };
    let aws_credentials = if is_bedrock {
        aws::credentials(w, lp, &lp_path)
    } else {
        None
    };
    let balance = router::balance(w, lp, &lp_path);
    let drop_params = w
        .bool(lp, "drop_params", &lp_path)
        .unwrap_or(global_drop_params);

    // A model template's provider checks a model id of the shape it will be filled with.
    let checked_model = model_id.replace('*', "x");
    let params = Params {
        model: &checked_model,
        api_base: api_base.as_deref(),
        api_key: api_key.as_deref(),
        api_version: api_version.as_deref(),
        aws_region: aws_region.as_deref(),
        aws_runtime_endpoint: aws_runtime_endpoint.as_deref(),
        aws_credentials,
    };
    let endpoint = match provider.endpoint(&params) {
        Ok(e) => e,
        // The field's own error says what is missing; "api_base is required" would mislead.
        Err(_) if unresolved => return None,
        Err(msg) => {
            w.error(&lp_path, msg);
            return None;
        }
    };
    let Endpoint {
        base_url,
        headers,
        signing,
    } = endpoint;
    if let Some(s) = &signing {
        // Envoy's signer reads the AWS variables; the filter reads them only to mask them.
        aws::check_sources(w, &s.credentials, &lp_path);
    }
    let url = match parse_base_url(&base_url) {
        Ok(u) => u,
        Err(msg) => {
            w.error(&join(&lp_path, "api_base"), format!("'{base_url}' {msg}"));
            return None;
        }
    };
    if mode == Mode::Embedding && !provider.supports(providers::Operation::Embeddings) {
        w.error(
            &join(path, "model_info.mode"),
            format!(
                "the {} provider does not serve embeddings in Tollgate",
                provider.name()
            ),
        );
    }
    let cluster = match envoy_cluster(w, info_map, &mi_path) {
        Some(name) => {
            if signing.is_some() {
                w.warn(
                    &join(&mi_path, "envoy_cluster"),
                    format!("Envoy cluster '{name}' must sign the requests itself (Envoy's aws_request_signing, service bedrock): Tollgate signs only in the clusters it renders"),
                );
            }
            name
        }
        None => intern_cluster(clusters, &url, signing),
    };

    Some(Deployment {
        index,
        alias,
        id,
        provider,
        target: Target {
            model: model_id,
            base_path: url.path,
            api_version,
        },
        cluster,
        authority: url.authority,
        headers,
        drop_params,
        mode,
        model_info,
        balance,
        wildcard_pricing,
    })
}

/// A wildcard `model_name` and a `*` in its model must go together: each `*` of the model takes
/// what the same `*` of the name matched (or the model has none: every name goes to it).
fn wildcard_fits(w: &mut Walker, path: &str, alias: &str, model_path: &str, model: &str) -> bool {
    let name_stars = alias.matches('*').count();
    let model_stars = model.matches('*').count();
    if alias.contains("**") {
        w.error(
            &join(path, "model_name"),
            format!("'{alias}' has '**': write one '*' for any run of characters"),
        );
        return false;
    }
    if model_stars > 0 && name_stars == 0 {
        w.error(
            model_path,
            format!("has a '*' but model_name '{alias}' has none: a '*' in the model is filled with what the model_name's '*' matched (e.g. model_name: \"*\" with model: openai/*)"),
        );
        return false;
    }
    if model_stars > 0 && model_stars != name_stars {
        w.error(
            model_path,
            format!("has {model_stars} '*' but model_name '{alias}' has {name_stars}: each '*' of the model is filled with what the same '*' of the model_name matched"),
        );
        return false;
    }
    true
}

/// The names clients can send, while the configuration is being built (and after, in
/// [`Config`]): the groups, then the wildcard patterns.
struct Names<'a> {
    groups: &'a HashMap<String, Vec<usize>>,
    patterns: &'a [Pattern],
    deployments: &'a [Deployment],
}

impl<'a> Names<'a> {
    fn group(&self, alias: &str) -> Option<&'a [usize]> {
        if let Some(g) = self.groups.get(alias) {
            return Some(g.as_slice());
        }
        self.pattern(alias).map(|p| p.members.as_slice())
    }

    /// The most specific pattern matching `alias` whose deployments can all serve it.
    fn pattern(&self, alias: &str) -> Option<&'a Pattern> {
        self.patterns.iter().find(|p| {
            wildcard::matches(&p.name, alias)
                && p.members.iter().all(|&i| {
                    self.deployments
                        .get(i)
                        .is_some_and(|d| !d.is_template() || filled_model(d, alias).is_some())
                })
        })
    }

    /// What a key's `models` may name: a name clients can send, a pattern (LiteLLM's
    /// `openai/*` in a key's models), or LiteLLM's `all-proxy-models`.
    fn allowable(&self, model: &str) -> bool {
        model == "all-proxy-models" || wildcard::is_pattern(model) || self.group(model).is_some()
    }

    /// The models `GET /v1/models` lists: the groups, then for each pattern the models of the
    /// price table its model templates serve, named as a client sends them, each once.
    fn listed(&self, model_names: &[String]) -> Vec<String> {
        let mut out: Vec<String> = model_names.to_vec();
        let mut seen: hashbrown::HashSet<String> = out.iter().cloned().collect();
        // In config order.
        let mut patterns: Vec<&Pattern> = self.patterns.iter().collect();
        patterns.sort_by_key(|p| p.members.first().copied());
        for p in patterns {
            for d in p.members.iter().filter_map(|&i| self.deployments.get(i)) {
                if !d.is_template() {
                    continue;
                }
                for known in crate::pricing::known_models(d.provider.name()) {
                    let Some(name) = wildcard::name_for(&p.name, &d.target.model, known) else {
                        continue;
                    };
                    // Listed only where a request for it goes: to this pattern.
                    let reaches_here = !self.groups.contains_key(&name)
                        && self.pattern(&name).is_some_and(|q| q.name == p.name);
                    if reaches_here && seen.insert(name.clone()) {
                        out.push(name);
                    }
                }
            }
        }
        out
    }
}

/// The provider's model id a model template (`openai/*`) takes for the client's model name, if
/// the name matches the deployment's pattern and the id is one the provider can be sent.
fn filled_model(d: &Deployment, alias: &str) -> Option<String> {
    let caps = wildcard::captures(&d.alias, alias)?;
    let model = wildcard::fill(&d.target.model, &caps);
    model_fits(d.provider.name(), &model).then_some(model)
}

/// Whether a model id from a client's name can go to the provider: printable ASCII without
/// spaces (it goes into a JSON body, or a URL path segment that is percent-encoded), and for
/// Gemini, whose path takes the id as it is, only its own characters.
fn model_fits(provider: &str, model: &str) -> bool {
    if model.is_empty() || !model.bytes().all(|b| b.is_ascii_graphic()) {
        return false;
    }
    match provider {
        "gemini" => {
            let id = model.strip_prefix("models/").unwrap_or(model);
            !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        "bedrock" => !model.starts_with("invoke/"),
        _ => true,
    }
}

struct BaseUrl {
    tls: bool,
    host: String,
    port: u16,
    authority: String,
    path: String,
}

fn parse_base_url(url: &str) -> Result<BaseUrl, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("must start with http:// or https://".into());
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (rest.get(..i).unwrap_or(rest), rest.get(i..).unwrap_or("")),
        None => (rest, ""),
    };
    if hostport.contains('@') {
        return Err("must not contain credentials".into());
    }
    if path.contains(['?', '#']) {
        return Err("must not contain a query or fragment".into());
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or("has an unterminated IPv6 address")?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err("has garbage after the IPv6 address".into()),
        };
        (h.to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err("has no valid host".into());
    }
    let default_port = if tls { 443 } else { 80 };
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or("has an invalid port")?,
    };
    let authority = if port == default_port {
        hostport.split(':').next().unwrap_or(&host).to_string()
    } else {
        hostport.to_string()
    };
    let authority = if host.contains(':') && port == default_port {
        format!("[{host}]")
    } else {
        authority
    };
    Ok(BaseUrl {
        tls,
        host,
        port,
        authority,
        path: path.trim_end_matches('/').to_string(),
    })
}

/// `model_info.envoy_cluster`: an Envoy cluster of the user's (Istio's `outbound|443||host`, a
/// platform team's egress) that the deployment is routed to instead of a cluster Tollgate renders.
/// It lives in `model_info` because LiteLLM ignores unknown fields there (unknown
/// `litellm_params` it would send to the provider). The name travels in a request header.
fn envoy_cluster(
    w: &mut Walker,
    info: Option<&Map<String, Value>>,
    mi_path: &str,
) -> Option<String> {
    let path = join(mi_path, "envoy_cluster");
    let name = match info?.get("envoy_cluster")? {
        Value::String(s) => s,
        Value::Null => return None,
        other => {
            w.error(&path, format!("must be a string, not {}", kind(other)));
            return None;
        }
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        w.error(
            &path,
            format!("'{}' is not an Envoy cluster name: printable ASCII without spaces, e.g. outbound|443||api.openai.com", name.escape_debug()),
        );
        return None;
    }
    if name.starts_with(CLUSTER_PREFIX) {
        w.error(
            &path,
            format!("'{name}' is named like the clusters Tollgate renders itself ({CLUSTER_PREFIX}*): name a cluster of your own Envoy configuration"),
        );
        return None;
    }
    Some(name.clone())
}

/// Returns the name of the cluster for this upstream, adding it when it is new. Names are
/// deterministic in config order, so the filter and `tollgate render` agree.
fn intern_cluster(clusters: &mut Vec<Cluster>, url: &BaseUrl, signing: Option<Signing>) -> String {
    if let Some(c) = clusters.iter().find(|c| {
        c.tls == url.tls && c.host == url.host && c.port == url.port && c.signing == signing
    }) {
        return c.name.clone();
    }
    let base = format!(
        "{CLUSTER_PREFIX}{}_{}",
        url.host.replace(':', "_"),
        url.port
    );
    let mut name = base.clone();
    let mut n = 2;
    while clusters.iter().any(|c| c.name == name) {
        name = format!("{base}_{n}");
        n += 1;
    }
    clusters.push(Cluster {
        name: name.clone(),
        tls: url.tls,
        host: url.host.clone(),
        port: url.port,
        signing,
    });
    name
}

/// A model template's prices and limits for one model: what its configuration states, over
/// the model's built-in entry (`base_model`, when given, fixed them at load).
fn template_info(d: &Deployment, model: &str) -> Option<crate::pricing::ModelInfo> {
    let Some(stated) = d.wildcard_pricing else {
        return d.model_info;
    };
    let builtin = crate::pricing::builtin_partial(d.provider.name(), model).unwrap_or_default();
    let merged = stated.or(builtin);
    (!merged.is_empty()).then(|| merged.finish())
}

fn models_list_json(names: &[String]) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Model<'a> {
        id: &'a str,
        object: &'static str,
        created: u64,
        owned_by: &'static str,
    }
    #[derive(serde::Serialize)]
    struct List<'a> {
        object: &'static str,
        data: Vec<Model<'a>>,
    }
    json::to_vec(&List {
        object: "list",
        data: names
            .iter()
            .map(|id| Model {
                id,
                object: "model",
                created: 0,
                owned_by: "tollgate",
            })
            .collect(),
    })
}

impl Config {
    fn names(&self) -> Names<'_> {
        Names {
            groups: &self.groups,
            patterns: &self.patterns,
            deployments: &self.deployments,
        }
    }

    /// The deployments a client's model name reaches: its model group, else those of the most
    /// specific wildcard `model_name` matching it (explicit entries win over wildcards).
    pub fn group(&self, alias: &str) -> Option<&[usize]> {
        self.names().group(alias)
    }

    /// The `model` label of a request for `alias` in metrics: the name itself when the config
    /// or a price table names it, else the wildcard it matched (clients choose names freely;
    /// series must not grow with them).
    pub fn metric_model<'a>(&'a self, alias: &'a str) -> &'a str {
        if self.groups.contains_key(alias) || self.listed_set.contains(alias) {
            return alias;
        }
        self.names()
            .pattern(alias)
            .map_or(alias, |p| p.name.as_str())
    }

    /// Whether some requests go through the attempt listener: a group (or a wildcard's) with
    /// several deployments or retries, or a name with fallbacks (which may be one only a
    /// wildcard serves).
    pub fn uses_attempts(&self) -> bool {
        let r = &self.router;
        self.groups
            .iter()
            .any(|(alias, members)| r.needs_attempts(alias, members.len()))
            || self
                .patterns
                .iter()
                .any(|p| r.needs_attempts(&p.name, p.members.len()))
            || r.fallbacks
                .keys()
                .chain(r.context_window_fallbacks.keys())
                .chain(r.content_policy_fallbacks.keys())
                .any(|name| self.group(name).is_some())
    }

    /// Whether a key's `models` may name `model` (see [`Names::allowable`]).
    pub fn allowable(&self, model: &str) -> bool {
        self.names().allowable(model)
    }

    /// The deployment `index` as it serves the client's model name `alias`: itself, or for a
    /// model template (`openai/*`) a copy with the model id filled from the name and that
    /// model's prices and limits. `None` when the template cannot serve the name.
    pub fn serving(&self, index: usize, alias: &str) -> Option<Cow<'_, Deployment>> {
        let d = self.deployments.get(index)?;
        if !d.is_template() {
            return Some(Cow::Borrowed(d));
        }
        let model = filled_model(d, alias)?;
        let mut out = d.clone();
        out.model_info = template_info(d, &model);
        out.target.model = model;
        Some(Cow::Owned(out))
    }

    /// The prices and limits of deployment `index` serving `alias` (see [`Config::serving`]).
    pub fn model_info(&self, index: usize, alias: &str) -> Option<crate::pricing::ModelInfo> {
        let d = self.deployments.get(index)?;
        if !d.is_template() {
            return d.model_info;
        }
        template_info(d, &filled_model(d, alias)?)
    }

    /// The `GET /v1/models` body for a caller who may use only some models: the listed models
    /// it may use, then the other names it is allowed (`named`, in order) that a client can send.
    pub fn models_json_for(&self, may_use: &dyn Fn(&str) -> bool, named: &[String]) -> Vec<u8> {
        let mut out: Vec<String> = self
            .listed_models
            .iter()
            .filter(|m| may_use(m))
            .cloned()
            .collect();
        for m in named {
            if !wildcard::is_pattern(m) && !out.contains(m) && may_use(m) && self.group(m).is_some()
            {
                out.push(m.clone());
            }
        }
        models_list_json(&out)
    }

    /// The deployment with this `id` (the attempt listener names the one that served).
    pub fn deployment_by_id(&self, id: &str) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.id == id)
    }

    pub fn deployment(&self, index: usize) -> Option<&Deployment> {
        self.deployments.get(index)
    }

    /// The clusters deployments are routed to that `tollgate render` does not write
    /// (`model_info.envoy_cluster`), each once, with the first deployment naming it.
    pub fn envoy_clusters(&self) -> Vec<(&str, &Deployment)> {
        let mut out: Vec<(&str, &Deployment)> = Vec::new();
        for d in &self.deployments {
            if !d.cluster_is_rendered() && !out.iter().any(|(c, _)| *c == d.cluster) {
                out.push((d.cluster.as_str(), d));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
