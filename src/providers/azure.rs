//! Azure OpenAI: OpenAI's API behind per-resource endpoints and deployments.
//!
//! `azure/<deployment>` with `api_base: https://<resource>.openai.azure.com` goes to
//! `{api_base}/openai/deployments/<deployment>/chat/completions?api-version=<version>` (and
//! `/embeddings`) with the key in an `api-key` header. The bodies are OpenAI's, so requests and
//! responses reuse the OpenAI pass-through; Azure's additions (`prompt_filter_results`,
//! `content_filter_results`) pass through, its annotation-only stream chunks are repaired into
//! OpenAI chunk shape, and its errors (`{"error":{"code":"DeploymentNotFound",...}}`, content
//! filter 400s, APIM's `{"statusCode":401,...}`) become OpenAI errors.
//!
//! `api_version` defaults to `2024-10-21`, the latest GA data-plane version with dated
//! `api-version`s. `v1`/`latest` select the v1 API (`{api_base}/openai/v1/chat/completions`,
//! deployment in the body's `model`), `preview` the v1 preview (`?api-version=preview`).

use serde::Deserialize;
use serde_json::value::RawValue;

use super::openai::{
    extensions, openai_error, passthrough_response, rewrite_fields, rewrite_fields_with,
    PassthroughStream, STREAM_USAGE_OPTIONS,
};
use super::{
    check_params, opaque_error, redact, Endpoint, Operation, Params, Provider, RequestOptions,
    StreamTranslator, Target, Translated,
};
use crate::error::ApiError;
use crate::json::{self, Fields};
use crate::openai::embeddings::{embedding_usage, embeddings_json};
use crate::openai::{usage_object, ChatRequest, Count, EmbeddingsRequest, ResponseCtx};

/// The latest generally available data-plane inference version that takes a dated
/// `api-version` (Microsoft's REST reference, "Latest GA release"); newer features ship in
/// `-preview` versions and in the v1 API.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

/// Top-level chat parameters the `2024-10-21` request schema accepts (besides `model`,
/// `messages`, `stream`, `stream_options`). Azure rejects anything else with
/// "Unrecognized request argument supplied".
const GA_CHAT_PARAMS: &[&str] = &[
    "temperature",
    "top_p",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
    "data_sources",
    "logprobs",
    "top_logprobs",
    "n",
    "parallel_tool_calls",
    "response_format",
    "seed",
    "tools",
    "tool_choice",
    "function_call",
    "functions",
];

/// LiteLLM's route prefixes for reasoning deployments whose names do not say so
/// (`azure/o_series/<deployment>`): they take `max_completion_tokens`, not `max_tokens`.
const REASONING_SERIES: [&str; 2] = ["o_series/", "gpt5_series/"];

pub struct Azure;
pub static AZURE: Azure = Azure;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApiVersion<'a> {
    /// The v1 API: no dated version; `preview` asks for preview features.
    V1 { preview: bool },
    /// A dated version; `ga` when it is a GA release no newer than the default, whose request
    /// schema is known here.
    Dated { value: &'a str, ga: bool },
}

fn api_version(t: &Target) -> ApiVersion<'_> {
    classify_version(t.api_version.as_deref().unwrap_or(DEFAULT_API_VERSION))
}

fn classify_version(v: &str) -> ApiVersion<'_> {
    match v {
        "v1" | "latest" => ApiVersion::V1 { preview: false },
        "preview" => ApiVersion::V1 { preview: true },
        _ => ApiVersion::Dated {
            value: v,
            ga: is_date(v) && v <= DEFAULT_API_VERSION,
        },
    }
}

/// `YYYY-MM-DD`.
fn is_date(v: &str) -> bool {
    v.len() == 10
        && v.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        })
}

/// A dated version (`2024-10-21`, `2025-04-01-preview`) or a v1 name.
fn valid_version(v: &str) -> bool {
    if matches!(v, "v1" | "latest" | "preview") {
        return true;
    }
    let (date, suffix) = v.split_at(v.len().min(10));
    is_date(date)
        && (suffix.is_empty()
            || suffix
                .strip_prefix('-')
                .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric())))
}

/// The deployment name and whether LiteLLM's reasoning-series prefix marked it.
fn deployment_name(model: &str) -> (&str, bool) {
    for prefix in REASONING_SERIES {
        if let Some(rest) = model.strip_prefix(prefix) {
            return (rest, true);
        }
    }
    (model, false)
}

/// Percent-encodes a path segment (deployment names are letters, digits, `-`, `_`, `.`).
fn push_segment(out: &mut String, segment: &str) {
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

impl Azure {
    /// The path up to the operation: `{base}/openai/deployments/{deployment}`, or the v1 base.
    /// An `api_base` that already ends in `/openai`, `/openai/v1` or names the deployment
    /// (`.../openai/deployments/<name>`, as the Azure SDKs' `base_url`) is not repeated.
    fn prefix(base: &str, model: &str, version: ApiVersion) -> String {
        let mut out = String::with_capacity(base.len() + model.len() + 32);
        if let ApiVersion::V1 { .. } = version {
            out.push_str(base);
            if !base.ends_with("/openai/v1") {
                out.push_str(if base.ends_with("/openai") {
                    "/v1"
                } else {
                    "/openai/v1"
                });
            }
            return out;
        }
        out.push_str(base);
        if base.contains("/openai/deployments/") {
            return out;
        }
        if !base.ends_with("/openai") {
            out.push_str("/openai");
        }
        out.push_str("/deployments/");
        push_segment(&mut out, deployment_name(model).0);
        out
    }
}

impl Provider for Azure {
    fn name(&self) -> &'static str {
        "azure"
    }

    fn default_key_env(&self) -> Option<&'static str> {
        Some("AZURE_API_KEY")
    }

    fn endpoint(&self, p: &Params) -> Result<Endpoint, String> {
        let base = p.api_base.ok_or(
            "api_base is required for azure/ models: the resource endpoint, e.g. https://my-resource.openai.azure.com",
        )?;
        if let Some(v) = p.api_version {
            if !valid_version(v) {
                return Err(format!(
                    "api_version '{v}' is not an Azure OpenAI API version: use a date such as {DEFAULT_API_VERSION}, a preview such as 2025-04-01-preview, or v1"
                ));
            }
        }
        if deployment_name(p.model).0.is_empty() {
            return Err(format!("model 'azure/{}' names no deployment", p.model));
        }
        let headers = p
            .api_key
            .map(|k| vec![("api-key".to_string(), k.to_string())])
            .unwrap_or_default();
        Ok(Endpoint {
            base_url: base.to_string(),
            headers,
            signing: None,
        })
    }

    fn supports(&self, _op: Operation) -> bool {
        true
    }

    fn path(&self, t: &Target, op: Operation, _stream: bool) -> String {
        let version = api_version(t);
        let mut path = Self::prefix(&t.base_path, &t.model, version);
        path.push_str(match op {
            Operation::Chat => "/chat/completions",
            Operation::Embeddings => "/embeddings",
        });
        match version {
            ApiVersion::V1 { preview: true } => path.push_str("?api-version=preview"),
            ApiVersion::V1 { preview: false } => {}
            ApiVersion::Dated { value, .. } => {
                path.push_str("?api-version=");
                push_segment(&mut path, value);
            }
        }
        path
    }

    /// Azure serves the Responses API under its v1 API, whatever version the deployment's
    /// chat completions use (dated versions serve it only in previews): `/openai/v1/responses`,
    /// the deployment's name as the body's model.
    fn responses_path(&self, t: &Target) -> Option<String> {
        let mut path = Self::prefix(&t.base_path, &t.model, ApiVersion::V1 { preview: false });
        path.push_str("/responses");
        if api_version(t) == (ApiVersion::V1 { preview: true }) {
            path.push_str("?api-version=preview");
        }
        Some(path)
    }

    fn chat_request(
        &self,
        req: &ChatRequest,
        t: &Target,
        opts: RequestOptions,
    ) -> Result<Vec<u8>, ApiError> {
        let (deployment, series) = deployment_name(&t.model);
        // A GA version's schema is fixed: refuse (or drop) what Azure would reject, so the
        // client gets LiteLLM's message naming the parameter. Previews and v1 take new
        // parameters every month; Azure judges those itself.
        let strict = matches!(api_version(t), ApiVersion::Dated { ga: true, .. });
        // Reasoning deployments reject `max_tokens`; LiteLLM renames it when the route or the
        // deployment name says the model is one.
        let reasoning = match extensions::Reasoning::of(deployment) {
            Some(r) => Some(r),
            None if series => Some(if t.model.starts_with("gpt5_series/") {
                extensions::Reasoning::Gpt5
            } else {
                extensions::Reasoning::OSeries
            }),
            None => None,
        };
        // LiteLLM's extensions (a Messages client's `thinking`, `top_k`, `cache_control`, ...)
        // made right for Azure, which refuses them as OpenAI does, whatever the version.
        let accepts = extensions::Accepts {
            top_k: false,
            reasoning,
        };
        let rewrite = extensions::rewrite(req, "azure", accepts, opts)?;
        let dropped = if strict {
            let supported: Vec<&str> = GA_CHAT_PARAMS
                .iter()
                .chain(&["thinking", "top_k"])
                .copied()
                .collect();
            check_params(req, "azure", &supported, opts)?
        } else {
            Vec::new()
        };
        let known = |key: &str| {
            GA_CHAT_PARAMS.contains(&key)
                || ["model", "messages", "stream", "stream_options"].contains(&key)
        };
        // A null for a parameter the version does not know means nothing; Azure would still
        // reject its name.
        let meaningless =
            |key: &str, value: &RawValue| strict && json::is_null(value) && !known(key);
        let keep =
            |key: &str, value: &RawValue| !dropped.contains(&key) && !meaningless(key, value);
        let kept: Fields = req
            .fields
            .iter()
            .filter(|(k, v)| keep(k.as_str(), v))
            .cloned()
            .collect();
        let rewritten;
        let fields = match &rewrite {
            Some(rw) => {
                rewritten = rw.apply(&kept);
                &rewritten
            }
            None => &kept,
        };
        let rename_max_tokens = reasoning.is_some() && !req.has("max_completion_tokens");
        // The gateway charges streams from their final usage, so it asks for it (Azure supports
        // stream_options since 2024-09-01-preview); the client sees it only if it asked.
        let usage_options = (req.stream && !req.include_usage).then_some(STREAM_USAGE_OPTIONS);
        Ok(rewrite_fields_with(
            fields,
            deployment,
            |key| match key {
                "max_tokens" if rename_max_tokens => Some("max_completion_tokens"),
                _ => None,
            },
            usage_options,
            req.output_cap,
        ))
    }

    fn chat_response(&self, body: &[u8], ctx: &ResponseCtx) -> Result<Translated, ApiError> {
        match ctx.api {
            crate::ingress::ClientApi::Chat => passthrough_response("azure", "choices", body, ctx),
            crate::ingress::ClientApi::Responses => {
                super::openai::responses::response("azure", body, ctx)
            }
            _ => super::openai::translate::response("azure", body, ctx),
        }
    }

    fn chat_stream(&self, ctx: ResponseCtx) -> Box<dyn StreamTranslator> {
        match ctx.api {
            crate::ingress::ClientApi::Chat => {
                Box::new(PassthroughStream::lenient(ctx, stream_error))
            }
            crate::ingress::ClientApi::Responses => Box::new(
                super::openai::responses::PassthroughStream::new("azure", ctx),
            ),
            _ => Box::new(super::openai::translate::ToSink::new(ctx, stream_error)),
        }
    }

    fn embeddings_request(&self, req: &EmbeddingsRequest, t: &Target) -> Result<Vec<u8>, ApiError> {
        Ok(rewrite_fields(
            &req.fields,
            deployment_name(&t.model).0,
            |_| None,
        ))
    }

    fn embeddings_response(
        &self,
        body: &[u8],
        base64: bool,
        ctx: &ResponseCtx,
    ) -> Result<Translated, ApiError> {
        if base64 {
            if let Some(t) = floats_as_base64(body, ctx)? {
                return Ok(t);
            }
        }
        passthrough_response("azure", "data", body, ctx)
    }

    fn error(&self, status: u16, _error_type: Option<&str>, body: &[u8]) -> ApiError {
        azure_error(status, body)
    }
}

/// Older `api-version`s ignore `encoding_format` and always answer floats; a client that asked
/// for base64 (the OpenAI SDKs do by default) still gets base64.
fn floats_as_base64(body: &[u8], ctx: &ResponseCtx) -> Result<Option<Translated>, ApiError> {
    #[derive(Deserialize)]
    struct List<'a> {
        #[serde(borrow)]
        data: Vec<Item<'a>>,
        #[serde(default, borrow)]
        usage: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Item<'a> {
        #[serde(default)]
        index: usize,
        #[serde(borrow)]
        embedding: &'a RawValue,
    }
    #[derive(Deserialize)]
    struct UsageIn {
        #[serde(default)]
        prompt_tokens: Count,
    }
    let Ok(mut list) = serde_json::from_slice::<List>(body) else {
        return Ok(None);
    };
    if !list
        .data
        .iter()
        .any(|i| i.embedding.get().trim_start().starts_with('['))
    {
        return Ok(None);
    }
    list.data.sort_by_key(|i| i.index);
    let vectors: Vec<&RawValue> = list.data.iter().map(|i| i.embedding).collect();
    let usage = match usage_object::<UsageIn>(list.usage) {
        Ok(Some(UsageIn {
            prompt_tokens: Count::Is(n),
        })) => Some(embedding_usage(n)),
        _ => None,
    };
    let prompt_tokens = usage.map_or(0, |u| u.prompt_tokens);
    let body = embeddings_json(&vectors, true, prompt_tokens, ctx)?;
    Ok(Some(Translated { body, usage }))
}

/// An error event inside a stream carries no HTTP status: take it from the error's code.
fn stream_error(body: &[u8]) -> ApiError {
    #[derive(Deserialize)]
    struct Envelope {
        error: Code,
    }
    #[derive(Deserialize)]
    struct Code {
        #[serde(default)]
        code: Option<serde_json::Value>,
    }
    let code = serde_json::from_slice::<Envelope>(body)
        .ok()
        .and_then(|e| e.error.code);
    let status = match code {
        Some(serde_json::Value::String(s)) if s == "content_filter" => Some(400),
        Some(serde_json::Value::String(s)) => s.parse().ok().filter(|s| (400..600).contains(s)),
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|s| (400..600).contains(s)),
        _ => None,
    }
    .unwrap_or(500);
    azure_error(status, body)
}

/// Translates an Azure OpenAI error body into OpenAI's error shape.
pub fn azure_error(status: u16, body: &[u8]) -> ApiError {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body) else {
        return opaque_error("azure", super::client_status(status), body);
    };
    // Azure API Management answers bad keys and quota before the service does:
    // `{"statusCode": 401, "message": "Access denied due to invalid subscription key..."}`.
    if doc.get("error").is_none() {
        if let Some(message) = doc.get("message").and_then(|m| m.as_str()) {
            let status = super::client_status(status);
            let e = ApiError::from_status(status, redact(message));
            return match status {
                401 => e.with_code("invalid_api_key"),
                429 => e.with_code("rate_limit_exceeded"),
                _ => e,
            };
        }
    }
    let mut e = openai_error("azure", status, body);
    let Some(inner) = doc.get("error").filter(|v| v.is_object()) else {
        return e;
    };
    match e.code.as_deref() {
        Some("content_filter") => {
            if e.param.as_deref().is_none_or(|p| p == "prompt") {
                e.param = Some("messages".into());
            }
            let result = inner
                .get("innererror")
                .or_else(|| inner.get("inner_error"))
                .and_then(|i| {
                    i.get("content_filter_result")
                        .or_else(|| i.get("content_filter_results"))
                });
            let filtered = filtered_categories(result);
            if !filtered.is_empty() {
                e.message = format!(
                    "{} (filtered categories: {})",
                    e.message.trim_end(),
                    filtered.join(", ")
                );
            }
        }
        Some("DeploymentNotFound") => {
            e.code = Some("model_not_found".into());
            e.param.get_or_insert_with(|| "model".into());
        }
        Some("401") => e.code = Some("invalid_api_key".into()),
        Some("429") => e.code = Some("rate_limit_exceeded".into()),
        _ => {}
    }
    if e.status == 400 && e.param.is_none() {
        // Azure names the parameter only in the message.
        if let Some(name) = e
            .message
            .strip_prefix("Unrecognized request argument supplied: ")
        {
            let name = name.trim().to_string();
            if !name.is_empty() && !name.contains(char::is_whitespace) {
                e.param = Some(name);
                e.code.get_or_insert_with(|| "unsupported_parameter".into());
            }
        }
    }
    e
}

/// `hate (high)`, `jailbreak`, ... for each category the content filter blocked.
fn filtered_categories(result: Option<&serde_json::Value>) -> Vec<String> {
    let Some(map) = result.and_then(|r| r.as_object()) else {
        return Vec::new();
    };
    map.iter()
        .filter(|(_, v)| v.get("filtered").and_then(|f| f.as_bool()) == Some(true))
        .map(
            |(name, v)| match v.get("severity").and_then(|s| s.as_str()) {
                Some(sev) => format!("{name} ({sev})"),
                None => name.clone(),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests;
