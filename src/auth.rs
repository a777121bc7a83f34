//! Who is calling. For now the gateway's master key; virtual keys plug in behind [`authenticate`].

use crate::config::Config;
use crate::error::ApiError;
use crate::host::HttpHost;

/// The caller, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No master key is configured: the gateway is open.
    Anonymous,
    Master,
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

pub fn authenticate(config: &Config, host: &dyn HttpHost) -> Result<Principal, ApiError> {
    let Some(master) = config.master_key.as_deref() else {
        return Ok(Principal::Anonymous);
    };
    match presented_key(host) {
        None => Err(ApiError::authentication(
            "Missing API key. Send it as 'Authorization: Bearer <key>' (or the 'api-key' header).",
        )
        .with_code("missing_api_key")),
        Some(key) if constant_time_eq(key.as_bytes(), master.as_bytes()) => Ok(Principal::Master),
        Some(_) => {
            Err(ApiError::authentication("Invalid API key provided.").with_code("invalid_api_key"))
        }
    }
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
}
