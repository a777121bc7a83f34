//! A small typed reader over a JSON document that names every problem by its field path.

use serde_json::{Map, Value};

use super::{Env, Issue, Strictness};

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

    /// Reports fields that are neither acted on nor known to LiteLLM (errors: likely typos), and
    /// LiteLLM fields that Tollgate accepts but does not act on (warnings).
    pub fn check_fields(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        acted_on: &[&str],
        known_ignored: &[&str],
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
            } else {
                let hint = closest(key, acted_on.iter().chain(known_ignored.iter()).copied())
                    .map(|c| format!(" (did you mean '{c}'?)"))
                    .unwrap_or_default();
                self.error(
                    &p,
                    format!("is not a field LiteLLM or Tollgate knows{hint}"),
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

/// The known name closest to a typo, when it is close enough to be a useful hint.
fn closest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(key, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 5))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len().saturating_add(1));
        cur.push(i.saturating_add(1));
        for (j, cb) in b.iter().enumerate() {
            let sub = prev
                .get(j)
                .copied()
                .unwrap_or(0)
                .saturating_add(usize::from(ca != *cb));
            let del = prev
                .get(j.saturating_add(1))
                .copied()
                .unwrap_or(0)
                .saturating_add(1);
            let ins = cur.get(j).copied().unwrap_or(0).saturating_add(1);
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("api_bse", "api_base"), 1);
        assert_eq!(
            closest("api_bse", ["api_base", "api_key"].into_iter()),
            Some("api_base")
        );
        assert_eq!(closest("zzzzzz", ["api_base"].into_iter()), None);
        assert!(
            valid_env_name("OPENAI_API_KEY") && !valid_env_name("1X") && !valid_env_name("A-B")
        );
    }
}
