//! A small typed reader over a JSON document that names every problem by its field path.

use serde_json::{Map, Value};

use super::{Env, Issue, Strictness};
use crate::typo::{closest, edit_distance};

/// A reference to a secret: read from the environment (`os.environ/NAME`) or written inline.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    Literal(String),
}

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "os.environ/{name}"),
            SecretRef::Literal(_) => f.write_str("<inline secret>"),
        }
    }
}

pub(crate) struct Walker<'e> {
    pub errors: Vec<Issue>,
    pub warnings: Vec<Issue>,
    pub env: &'e dyn Env,
    pub strictness: Strictness,
    /// Environment variables the filter reads, for Envoy's `host_env_keys`.
    pub env_keys: Vec<String>,
    /// Every secret value read (keys, credentials): masked wherever a client could see it.
    pub secrets: Vec<String>,
}

pub(crate) const ENV_PREFIX: &str = "os.environ/";

impl<'e> Walker<'e> {
    pub fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(Issue {
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub fn warn(&mut self, path: &str, message: impl Into<String>) {
        self.warnings.push(Issue {
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub fn object<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            other => {
                self.error(path, format!("must be a mapping, not {}", kind(other)));
                None
            }
        }
    }

    /// A section of Tollgate's own (`tollgate_settings`, `keys`, `teams`, ...): a field that is
    /// neither acted on nor known is an error (a typo, or a field in the wrong place); a LiteLLM
    /// field Tollgate accepts without acting on it is a warning.
    pub fn check_fields(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        acted_on: &[&str],
        known_ignored: &[&str],
    ) {
        self.check_fields_as(map, path, acted_on, known_ignored, false);
    }

    /// A section LiteLLM reads (`litellm_settings`, `general_settings`, `router_settings`,
    /// `litellm_params`, `model_info`): LiteLLM accepts any field there, so an unknown one is a
    /// warning. Only a near miss of a field Tollgate acts on is an error (`max_budjet` for
    /// `max_budget`): loading it would silently drop a setting the user meant.
    pub fn check_litellm_fields(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        acted_on: &[&str],
        known_ignored: &[&str],
    ) {
        self.check_fields_as(map, path, acted_on, known_ignored, true);
    }

    fn check_fields_as(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        acted_on: &[&str],
        known_ignored: &[&str],
        open: bool,
    ) {
        for key in map.keys() {
            if acted_on.contains(&key.as_str()) {
                continue;
            }
            let p = join(path, key);
            if known_ignored.contains(&key.as_str()) {
                self.warn(
                    &p,
                    "is a LiteLLM setting that Tollgate does not act on yet; it is ignored",
                );
                continue;
            }
            // The nearest name overall; a tie goes to the field Tollgate acts on.
            let near_acted = closest(key, acted_on.iter().copied());
            let near_known = closest(key, known_ignored.iter().copied());
            let typo_of_acted = match (near_acted, near_known) {
                (Some(a), Some(k)) => edit_distance(key, a) <= edit_distance(key, k),
                (Some(_), None) => true,
                (None, _) => false,
            };
            let hint = |c: Option<&str>| {
                c.map(|c| format!(" (did you mean '{c}'?)"))
                    .unwrap_or_default()
            };
            if !open {
                let hint = hint(if typo_of_acted {
                    near_acted
                } else {
                    near_known
                });
                self.error(
                    &p,
                    format!("is not a field LiteLLM or Tollgate knows{hint}"),
                );
            } else if typo_of_acted {
                let hint = hint(near_acted);
                self.error(
                    &p,
                    format!("is not a field Tollgate knows{hint}: a misspelt setting would be silently ignored"),
                );
            } else {
                let hint = hint(near_known);
                self.warn(
                    &p,
                    format!("is not a setting Tollgate knows{hint}; LiteLLM accepts any field here, so it loads, but it is not acted on"),
                );
            }
        }
    }

    /// Resolves `os.environ/NAME` in a plain (non-secret) string field.
    pub fn resolve(&mut self, raw: &str, path: &str) -> Option<String> {
        match raw.strip_prefix(ENV_PREFIX) {
            None => Some(raw.to_string()),
            Some(name) => self.read_env(name, path),
        }
    }

    fn read_env(&mut self, name: &str, path: &str) -> Option<String> {
        self.read_env_as(name, path, false)
    }

    /// A string field Envoy's clusters are built from (`api_base`, the Bedrock region and
    /// endpoint): `tollgate render` writes the cluster from its value, so an unset variable is an
    /// error in `tollgate check` too, saying which variable to set and why.
    pub fn cluster_string(
        &mut self,
        map: &Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Option<String> {
        match map.get(key) {
            Some(Value::String(s)) => match s.strip_prefix(ENV_PREFIX) {
                Some(name) => self.read_env_as(name, &join(path, key), true),
                None => Some(s.clone()),
            },
            _ => self.string(map, key, path),
        }
    }

    fn read_env_as(&mut self, name: &str, path: &str, for_cluster: bool) -> Option<String> {
        if !valid_env_name(name) {
            self.error(
                path,
                format!("'{ENV_PREFIX}{name}' is not a valid environment variable reference"),
            );
            return None;
        }
        if !self.env_keys.iter().any(|k| k == name) {
            self.env_keys.push(name.to_string());
        }
        match self.env.var(name) {
            Some(v) if !v.is_empty() => Some(v),
            _ if for_cluster => {
                self.error(path, format!("environment variable {name} is not set: set it here and in Envoy's environment (`tollgate render` needs its value too, because the upstream cluster is built from it)"));
                None
            }
            _ => {
                let msg = format!("environment variable {name} is not set (add it to Envoy's environment; `tollgate render` lists it in host_env_keys)");
                match self.strictness {
                    Strictness::Serve => self.error(path, msg),
                    Strictness::Check => self.warn(path, msg),
                }
                None
            }
        }
    }

    pub fn string(&mut self, map: &Map<String, Value>, key: &str, path: &str) -> Option<String> {
        let p = join(path, key);
        match map.get(key)? {
            Value::Null => None,
            Value::String(s) => self.resolve(s, &p),
            // YAML users write `api_version: 2024-10-21` unquoted or numbers for ids; accept scalars.
            Value::Number(n) => Some(n.to_string()),
            other => {
                self.error(&p, format!("must be a string, not {}", kind(other)));
                None
            }
        }
    }

    /// A secret field: never resolved into the error messages or logs.
    pub fn secret_ref(
        &mut self,
        map: &Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Option<SecretRef> {
        let p = join(path, key);
        match map.get(key)? {
            Value::Null => None,
            Value::String(s) => match s.strip_prefix(ENV_PREFIX) {
                Some(name) if valid_env_name(name) => Some(SecretRef::Env(name.to_string())),
                Some(_) => {
                    self.error(
                        &p,
                        "is not a valid environment variable reference (os.environ/NAME)",
                    );
                    None
                }
                None if s.is_empty() => {
                    self.error(&p, "must not be empty");
                    None
                }
                None => Some(SecretRef::Literal(s.clone())),
            },
            other => {
                self.error(&p, format!("must be a string, not {}", kind(other)));
                None
            }
        }
    }

    /// Reads a secret's value for use inside the filter.
    pub fn secret_value(&mut self, r: &SecretRef, path: &str) -> Option<String> {
        let v = match r {
            SecretRef::Literal(v) => Some(v.clone()),
            SecretRef::Env(name) => self.read_env(name, path),
        };
        if let Some(v) = &v {
            self.secrets.push(v.clone());
        }
        v
    }

    /// A secret Envoy itself reads from its environment (AWS credentials for SigV4), read here
    /// too, when set, only to be masked: a missing one is no error.
    pub fn optional_secret_env(&mut self, name: &str) {
        if !self.env_keys.iter().any(|k| k == name) {
            self.env_keys.push(name.to_string());
        }
        if let Some(v) = self.env.var(name).filter(|v| !v.is_empty()) {
            self.secrets.push(v);
        }
    }

    pub fn bool(&mut self, map: &Map<String, Value>, key: &str, path: &str) -> Option<bool> {
        let p = join(path, key);
        match map.get(key)? {
            Value::Null => None,
            Value::Bool(b) => Some(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            other => {
                self.error(&p, format!("must be true or false, not {}", kind(other)));
                None
            }
        }
    }

    /// A number, optionally bounded below (inclusive) and required finite.
    pub fn number(
        &mut self,
        map: &Map<String, Value>,
        key: &str,
        path: &str,
        min: f64,
    ) -> Option<f64> {
        let p = join(path, key);
        let v = match map.get(key)? {
            Value::Null => return None,
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match v {
            Some(x) if x.is_finite() && x >= min => Some(x),
            Some(x) => {
                self.error(&p, format!("must be a number >= {min}, not {x}"));
                None
            }
            None => {
                self.error(&p, "must be a number");
                None
            }
        }
    }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

pub(crate) fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names() {
        assert!(
            valid_env_name("OPENAI_API_KEY") && !valid_env_name("1X") && !valid_env_name("A-B")
        );
    }

    fn walker(env: &hashbrown::HashMap<String, String>) -> Walker<'_> {
        Walker {
            errors: Vec::new(),
            warnings: Vec::new(),
            env,
            strictness: Strictness::Serve,
            env_keys: Vec::new(),
            secrets: Vec::new(),
        }
    }

    #[test]
    fn litellm_sections_warn_and_typos_of_acted_on_fields_err() {
        let env = hashbrown::HashMap::new();
        let mut w = walker(&env);
        let map = serde_json::json!({"max_budjet": 1, "set_verbos": true, "guardrails": [], "max_budget": 2})
            .as_object()
            .cloned()
            .unwrap_or_default();
        w.check_litellm_fields(&map, "litellm_settings", &["max_budget"], &["set_verbose"]);
        let errors: Vec<String> = w.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            ["litellm_settings.max_budjet: is not a field Tollgate knows (did you mean 'max_budget'?): a misspelt setting would be silently ignored"]
        );
        let warnings: Vec<String> = w.warnings.iter().map(ToString::to_string).collect();
        assert!(
            warnings
                .iter()
                .any(|m| m.starts_with("litellm_settings.set_verbos:")
                    && m.contains("did you mean 'set_verbose'")
                    && m.contains("not acted on")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(
                |m| m.starts_with("litellm_settings.guardrails:") && m.contains("not acted on")
            ),
            "{warnings:?}"
        );

        // Tollgate's own sections: every unknown field is an error.
        let mut w = walker(&env);
        w.check_fields(&map, "tollgate_settings", &["max_budget"], &["set_verbose"]);
        assert_eq!(w.errors.len(), 3, "{:?}", w.errors);
        assert_eq!(w.warnings.len(), 0, "{:?}", w.warnings);
    }
}
