//! OpenAI-shaped errors as values. Only the host layer turns one into a local reply.

use serde::Serialize;

/// An error the client sees as `{"error":{"message","type","param","code"}}` with an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", message)
    }

    /// A 400 that names the offending request parameter.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        Self::invalid_request(message).with_param(param)
    }

    pub fn authentication(message: impl Into<String>) -> Self {
        Self::new(401, "authentication_error", message)
    }

    pub fn permission(message: impl Into<String>) -> Self {
        Self::new(403, "permission_error", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "invalid_request_error", message)
    }

    pub fn rate_limit(message: impl Into<String>) -> Self {
        Self::new(429, "rate_limit_error", message)
    }

    pub fn server(message: impl Into<String>) -> Self {
        Self::new(500, "api_error", message)
    }

    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(502, "api_error", message).with_code("upstream_error")
    }

    /// A request body over `tollgate_settings.max_request_body_bytes` (Envoy's own 413 gets this
    /// body from the rendered `local_reply_config`).
    pub fn body_too_large(limit: u64) -> Self {
        Self::new(
            413,
            "invalid_request_error",
            format!("Request body too large: the gateway accepts at most {limit} bytes (tollgate_settings.max_request_body_bytes)."),
        )
        .with_code("request_too_large")
    }

    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }

    pub fn with_code(mut self, code: &str) -> Self {
        self.code = Some(code.to_string());
        self
    }

    /// The error object alone, `{"message",...}`, as used inside a stream's error event.
    pub fn to_json(&self) -> Vec<u8> {
        let envelope = Envelope {
            error: Body {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code.as_deref(),
            },
        };
        // Serializing plain strings and options cannot fail; fall back to a fixed body regardless.
        serde_json::to_vec(&envelope).unwrap_or_else(|_| {
            br#"{"error":{"message":"internal error","type":"api_error","param":null,"code":null}}"#
                .to_vec()
        })
    }

    /// The OpenAI error type that fits an HTTP status, for errors whose provider gave no usable type.
    pub fn kind_for_status(status: u16) -> &'static str {
        match status {
            400 | 404 | 409 | 413 | 422 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            408 => "timeout_error",
            429 => "rate_limit_error",
            _ => "api_error",
        }
    }

    /// An error from a provider's status and message, typed by status.
    pub fn from_status(status: u16, message: impl Into<String>) -> Self {
        Self::new(status, Self::kind_for_status(status), message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.kind, self.message)
    }
}

/// Detects provider messages that mean "the prompt is longer than the model's context window",
/// so every provider reports it as OpenAI does (`code: context_length_exceeded`).
pub fn is_context_overflow(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    const NEEDLES: [&str; 9] = [
        "context length",
        "context_length_exceeded",
        "context window",
        "prompt is too long",
        "input is too long",
        "too many input tokens",
        "exceeds the maximum number of tokens",
        "maximum context length",
        "input token count",
    ];
    NEEDLES.iter().any(|n| m.contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_all_four_fields() {
        let e = ApiError::invalid_param("temperature", "bad").with_code("invalid_type");
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(v["error"]["message"], "bad");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["param"], "temperature");
        assert_eq!(v["error"]["code"], "invalid_type");
        let e = ApiError::server("x");
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert!(v["error"]["param"].is_null());
        assert!(v["error"]["code"].is_null());
    }

    #[test]
    fn context_overflow_messages() {
        assert!(is_context_overflow(
            "prompt is too long: 210000 tokens > 200000 maximum"
        ));
        assert!(is_context_overflow(
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."
        ));
        assert!(is_context_overflow(
            "Input is too long for requested model."
        ));
        assert!(!is_context_overflow("max_tokens: field required"));
    }
}
