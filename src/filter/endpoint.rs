//! The endpoint table: what a request asks for, from its method and path, and what is wrong with
//! a body Envoy's `json_to_metadata` could not read a model from.

use crate::error::ApiError;
use crate::keys::admin::AdminOp;
use crate::openai;
use crate::providers::Operation;

use super::store_call;

/// What the client asked for, from method and path.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Endpoint<'a> {
    Api(Operation),
    /// Anthropic's Messages API (`POST /v1/messages`): a chat, in and out in Anthropic's shape.
    Messages,
    /// `POST /v1/messages/count_tokens`.
    CountTokens,
    /// OpenAI's Responses API (`POST /v1/responses`): a chat, in and out in its shape.
    Responses,
    /// `GET /v1/responses/{id}`, `GET /v1/responses/{id}/input_items` (the tail) and
    /// `DELETE /v1/responses/{id}`: asked of the deployment holding the response.
    StoredResponse(&'a str, &'static str),
    /// Azure OpenAI's form, as `AzureOpenAI(azure_endpoint=...)` sends it:
    /// `/openai/deployments/{alias}/chat/completions?api-version=...`.
    Deployment(Operation, &'a str),
    Models,
    Model(&'a str),
    Health,
    StoreHealth,
    SpendLogs,
    Admin(AdminOp),
    WrongMethod(&'static str),
    Unknown,
}

pub(super) fn classify<'a>(method: &str, path: &'a str) -> Endpoint<'a> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let path = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let bare = path
        .strip_prefix("/v1")
        .filter(|p| p.starts_with('/'))
        .unwrap_or(path);
    if let Some((alias, op)) = path
        .strip_prefix("/openai/deployments/")
        .and_then(|rest| rest.split_once('/'))
    {
        let op = match op {
            "chat/completions" => Some(Operation::Chat),
            "embeddings" => Some(Operation::Embeddings),
            _ => None,
        };
        if let Some(op) = op.filter(|_| !alias.is_empty()) {
            return if method == "POST" {
                Endpoint::Deployment(op, alias)
            } else {
                Endpoint::WrongMethod("POST")
            };
        }
    }
    if let Some(rest) = bare.strip_prefix("/responses/") {
        let (id, tail, methods): (_, _, &[&'static str]) = match rest.split_once('/') {
            None => (rest, "", &["GET", "DELETE"]),
            Some((id, "input_items")) => (id, "/input_items", &["GET"]),
            Some(_) => return Endpoint::Unknown,
        };
        if id.is_empty() {
            return Endpoint::Unknown;
        }
        return match methods.iter().find(|m| **m == method) {
            Some(_) => Endpoint::StoredResponse(id, tail),
            None if methods.len() > 1 => Endpoint::WrongMethod("GET or DELETE"),
            None => Endpoint::WrongMethod("GET"),
        };
    }
    let (expected, endpoint) = match bare {
        "/chat/completions" => ("POST", Endpoint::Api(Operation::Chat)),
        "/messages" => ("POST", Endpoint::Messages),
        "/messages/count_tokens" => ("POST", Endpoint::CountTokens),
        "/responses" => ("POST", Endpoint::Responses),
        "/embeddings" => ("POST", Endpoint::Api(Operation::Embeddings)),
        "/models" => ("GET", Endpoint::Models),
        "/health/liveliness" | "/health/liveness" | "/health/readiness" => {
            ("GET", Endpoint::Health)
        }
        store_call::HEALTH_PATH => ("GET", Endpoint::StoreHealth),
        "/spend/logs" => ("GET", Endpoint::SpendLogs),
        other => match (other.strip_prefix("/models/"), AdminOp::from_path(path)) {
            (Some(id), _) if !id.is_empty() => ("GET", Endpoint::Model(id)),
            (_, Some((op, method))) => (method, Endpoint::Admin(op)),
            _ => return Endpoint::Unknown,
        },
    };
    if method == expected {
        endpoint
    } else {
        Endpoint::WrongMethod(expected)
    }
}

/// Why `json_to_metadata` gave the filter no model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unread {
    /// Envoy's JSON parser refused the body (`body_error`).
    NotJson,
    /// Nothing extracted: an empty-string model, or no `json_to_metadata` in front of Tollgate.
    NoModel,
}

/// What is wrong with a body `json_to_metadata` gave no model for: what the gateway's own parse
/// finds (the same code on both forms), else the one of Envoy's rules it breaks, or (a body with
/// a model) the missing filter.
pub(super) fn body_refusal(op: Operation, why: Unread, body: &[u8]) -> ApiError {
    let parsed = match op {
        Operation::Chat => openai::parse_chat(body).err(),
        Operation::Embeddings => openai::parse_embeddings(body).err(),
    };
    parsed.unwrap_or_else(|| match why {
        Unread::NotJson => {
            let rules = crate::json::check::Rules::ENVOY;
            let detail = crate::json::check::check(body, &rules, |_, _| {})
                .err()
                .map(|e| e.describe(&rules))
                .unwrap_or_else(|| "Envoy's JSON parser refused it".into());
            crate::json::invalid_json(&detail)
        }
        Unread::NoModel => ApiError::server(
            "The gateway's Envoy config lacks the json_to_metadata filter before Tollgate (see envoy/README.md).",
        )
        .with_code("gateway_misconfigured"),
    })
}

/// A path segment's `%XX` escapes decoded (not `+`: that is a query's space); the segment as it
/// is when the result is not UTF-8.
pub(super) fn path_decode(segment: &str) -> String {
    if !segment.contains('%') {
        return segment.to_string();
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|&c| char::from(c).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| segment.to_string())
}

pub(super) fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::Chat => "chat",
        Operation::Embeddings => "embeddings",
    }
}

pub(super) fn json_model(id: &str) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Model<'a> {
        id: &'a str,
        object: &'static str,
        created: u64,
        owned_by: &'static str,
    }
    crate::json::to_vec(&Model {
        id,
        object: "model",
        created: 0,
        owned_by: "tollgate",
    })
}
