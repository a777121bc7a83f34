//! Errors in the Messages API's shape: `{"type":"error","error":{"type","message"}}`, the type
//! following the status as Anthropic's own API does, so that the SDKs raise the matching
//! exception class.

use serde::Serialize;

use crate::error::ApiError;

/// Anthropic's error type for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 415 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ if status < 500 => "invalid_request_error",
        _ => "api_error",
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

/// The error's body in the Messages API's shape (its status stays the error's).
pub fn error_json(err: &ApiError) -> Vec<u8> {
    crate::json::to_vec_sized(
        &Envelope {
            kind: "error",
            error: Body {
                kind: error_type(err.status),
                message: &err.message,
            },
        },
        err.message.len().saturating_add(64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_types() {
        let v: serde_json::Value =
            serde_json::from_slice(&error_json(&ApiError::rate_limit("slow \"down\""))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"error","error":{"type":"rate_limit_error","message":"slow \"down\""}})
        );
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (529, "overloaded_error"),
        ] {
            assert_eq!(error_type(status), kind, "{status}");
        }
    }
}
