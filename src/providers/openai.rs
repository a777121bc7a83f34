//! OpenAI and the OpenAI-compatible family (Groq, Mistral, DeepSeek, xAI, Together, Fireworks,
//! OpenRouter, Cerebras, Perplexity, vLLM, Ollama). The request passes through with only the
//! fields the gateway must change; responses get the client's alias as `model`.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    opaque_error, redact, Endpoint, Operation, Params, Provider, RequestOptions, StreamTranslator,
    Translated,
};
use crate::config::Deployment;
use crate::error::{is_context_overflow, ApiError};
use crate::json::{self, Fields};
use crate::openai::{ChatRequest, EmbeddingsRequest, ResponseCtx, Usage};
use crate::stream::sse::SseDecoder;

pub struct OpenAiCompatible {
    name: &'static str,
    default_base: Option<&'static str>,
    key_env: Option<&'static str>,
    embeddings: bool,
    /// Servers whose OpenAI API lives under `/v1` of the usual `api_base` (vLLM, Ollama).
    append_v1: bool,
}

const fn family(name: &'static str, base: &'static str, key_env: &'static str) -> OpenAiCompatible {
    OpenAiCompatible {
        name,
        default_base: Some(base),
        key_env: Some(key_env),
        embeddings: false,
        append_v1: false,
    }
}

pub static OPENAI: OpenAiCompatible = OpenAiCompatible {
    embeddings: true,
    ..family("openai", "https://api.openai.com/v1", "OPENAI_API_KEY")
};
pub static GROQ: OpenAiCompatible =
    family("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY");
pub static MISTRAL: OpenAiCompatible = OpenAiCompatible {
    embeddings: true,
    ..family("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY")
};
pub static DEEPSEEK: OpenAiCompatible =
    family("deepseek", "https://api.deepseek.com", "DEEPSEEK_API_KEY");
pub static XAI: OpenAiCompatible = family("xai", "https://api.x.ai/v1", "XAI_API_KEY");
pub static TOGETHER_AI: OpenAiCompatible = OpenAiCompatible {
    embeddings: true,
    ..family(
        "together_ai",
        "https://api.together.xyz/v1",
        "TOGETHERAI_API_KEY",
    )
};
pub static FIREWORKS_AI: OpenAiCompatible = OpenAiCompatible {
    embeddings: true,
    ..family(
        "fireworks_ai",
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_AI_API_KEY",
    )
};
pub static OPENROUTER: OpenAiCompatible = family(
    "openrouter",
    "https://openrouter.ai/api/v1",
    "OPENROUTER_API_KEY",
);
pub static CEREBRAS: OpenAiCompatible =
    family("cerebras", "https://api.cerebras.ai/v1", "CEREBRAS_API_KEY");
pub static PERPLEXITY: OpenAiCompatible = family(
    "perplexity",
    "https://api.perplexity.ai",
    "PERPLEXITYAI_API_KEY",
);
pub static HOSTED_VLLM: OpenAiCompatible = OpenAiCompatible {
    name: "hosted_vllm",
    default_base: None,
    key_env: Some("HOSTED_VLLM_API_KEY"),
    embeddings: true,
    append_v1: true,
};
pub static OLLAMA_CHAT: OpenAiCompatible = OpenAiCompatible {
    name: "ollama_chat",
    default_base: Some("http://localhost:11434"),
    key_env: None,
    embeddings: true,
    append_v1: true,
};

impl OpenAiCompatible {
    fn base_path(&self, d: &Deployment) -> String {
        if self.append_v1 && !d.base_path.ends_with("/v1") {
            format!("{}/v1", d.base_path)
        } else {
            d.base_path.clone()
        }
    }
}

impl Provider for OpenAiCompatible {
    fn name(&self) -> &'static str {
        self.name
    }

    fn default_key_env(&self) -> Option<&'static str> {
        self.key_env
    }

    fn endpoint(&self, p: &Params) -> Result<Endpoint, String> {
        let base = p
            .api_base
            .or(self.default_base)
            .ok_or_else(|| format!("api_base is required for {}/ models (the server's URL, e.g. http://10.0.0.5:8000/v1)", self.name))?;
        let headers = p
            .api_key
            .map(|k| vec![("authorization".to_string(), format!("Bearer {k}"))])
            .unwrap_or_default();
        Ok(Endpoint {
            base_url: base.to_string(),
            headers,
            signing: None,
        })
    }

    fn supports(&self, op: Operation) -> bool {
        op == Operation::Chat || self.embeddings
    }

    fn path(&self, d: &Deployment, op: Operation, _stream: bool) -> String {
        let tail = match op {
            Operation::Chat => "/chat/completions",
            Operation::Embeddings => "/embeddings",
        };
        format!("{}{tail}", self.base_path(d))
    }

    fn chat_request(
        &self,
        req: &ChatRequest,
        d: &Deployment,
        _opts: RequestOptions,
    ) -> Result<Vec<u8>, ApiError> {
        // o-series and gpt-5 reject `max_tokens`; LiteLLM sends it as `max_completion_tokens`.
        let rename_max_tokens = self.name == "openai"
            && ["o1", "o3", "o4", "gpt-5"]
                .iter()
                .any(|p| d.model.starts_with(p))
            && !req.has("max_completion_tokens");
        Ok(rewrite_fields(&req.fields, &d.model, |key| match key {
            "max_tokens" if rename_max_tokens => Some("max_completion_tokens"),
            _ => None,
        }))
    }

    fn chat_response(&self, body: &[u8], ctx: &ResponseCtx) -> Result<Translated, ApiError> {
        passthrough_response(self.name, body, ctx)
    }

    fn chat_stream(&self, ctx: ResponseCtx) -> Box<dyn StreamTranslator> {
        Box::new(PassthroughStream::new(ctx))
    }

    fn embeddings_request(
        &self,
        req: &EmbeddingsRequest,
        d: &Deployment,
    ) -> Result<Vec<u8>, ApiError> {
        Ok(rewrite_fields(&req.fields, &d.model, |_| None))
    }

    fn embeddings_response(
        &self,
        body: &[u8],
        _base64: bool,
        ctx: &ResponseCtx,
    ) -> Result<Translated, ApiError> {
        passthrough_response(self.name, body, ctx)
    }

    fn error(&self, status: u16, _error_type: Option<&str>, body: &[u8]) -> ApiError {
        openai_error(self.name, status, body)
    }
}

/// Writes the client's fields back as an object with `model` set to the provider's model id
/// and keys renamed where `rename` says so. Values are copied verbatim.
pub fn rewrite_fields(
    fields: &Fields,
    model: &str,
    rename: impl Fn(&str) -> Option<&'static str>,
) -> Vec<u8> {
    let size: usize = fields
        .iter()
        .map(|(k, v)| k.len() + v.get().len() + 4)
        .sum();
    let mut out = Vec::with_capacity(size + model.len() + 16);
    out.push(b'{');
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        if !std::mem::replace(&mut first, false) {
            out.push(b',');
        }
    };
    sep(&mut out);
    out.extend_from_slice(b"\"model\":");
    json::write_str(&mut out, model);
    for (key, value) in fields {
        if key.as_str() == "model" {
            continue;
        }
        sep(&mut out);
        json::write_str(&mut out, rename(key.as_str()).unwrap_or(key.as_str()));
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
    }
    out.push(b'}');
    out
}

#[derive(Deserialize, Default)]
struct UsageIn {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize, Default)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

fn parse_usage(raw: &RawValue) -> Usage {
    let u: UsageIn = serde_json::from_str::<Option<UsageIn>>(raw.get())
        .ok()
        .flatten()
        .unwrap_or_default();
    Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        cached_tokens: u
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0),
        cache_creation_tokens: 0,
        reasoning_tokens: u
            .completion_tokens_details
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0),
    }
}

/// An OpenAI-shaped JSON object with `model` replaced by the client's alias; usage read on the way.
fn rewrite_object(fields: &Fields, alias: &str, out: &mut Vec<u8>) -> Usage {
    let mut usage = Usage::default();
    out.push(b'{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_str(out, key.as_str());
        out.push(b':');
        match key.as_str() {
            "model" => json::write_str(out, alias),
            "usage" => {
                usage = parse_usage(value);
                out.extend_from_slice(value.get().as_bytes());
            }
            _ => out.extend_from_slice(value.get().as_bytes()),
        }
    }
    out.push(b'}');
    usage
}

pub fn passthrough_response(
    provider: &str,
    body: &[u8],
    ctx: &ResponseCtx,
) -> Result<Translated, ApiError> {
    let fields = json::split_object(body).map_err(|_| {
        ApiError::bad_gateway(format!(
            "{provider} returned a response that is not a JSON object"
        ))
    })?;
    let mut out = Vec::with_capacity(body.len() + ctx.model.len());
    let usage = rewrite_object(&fields, &ctx.model, &mut out);
    Ok(Translated { body: out, usage })
}

/// Relays an OpenAI-compatible SSE stream, rewriting `model` in every chunk and keeping the usage.
pub struct PassthroughStream {
    ctx: ResponseCtx,
    sse: SseDecoder,
    usage: Usage,
    done: bool,
}

impl PassthroughStream {
    pub fn new(ctx: ResponseCtx) -> Self {
        PassthroughStream {
            ctx,
            sse: SseDecoder::default(),
            usage: Usage::default(),
            done: false,
        }
    }

    fn on_event(
        ctx: &ResponseCtx,
        usage: &mut Usage,
        done: &mut bool,
        data: &[u8],
        out: &mut Vec<u8>,
    ) {
        if *done {
            return;
        }
        if data == b"[DONE]" {
            *done = true;
            out.extend_from_slice(b"data: [DONE]\n\n");
            return;
        }
        match json::split_object(data) {
            Ok(fields) => {
                out.extend_from_slice(b"data: ");
                let u = rewrite_object(&fields, &ctx.model, out);
                if u != Usage::default() {
                    *usage = u;
                }
                out.extend_from_slice(b"\n\n");
            }
            Err(_) => {
                // Not JSON: relay as is rather than inventing content.
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(data);
                out.extend_from_slice(b"\n\n");
            }
        }
    }
}

impl StreamTranslator for PassthroughStream {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let PassthroughStream {
            ctx,
            sse,
            usage,
            done,
        } = self;
        let result = sse.feed(chunk, |ev| Self::on_event(ctx, usage, done, ev.data, out));
        if result.is_err() && !*done {
            *done = true;
            let e = ApiError::bad_gateway(
                "the provider sent a stream event larger than the gateway accepts",
            );
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(&e.to_json());
            out.extend_from_slice(b"\n\n");
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let PassthroughStream {
            ctx,
            sse,
            usage,
            done,
        } = self;
        sse.finish(|ev| Self::on_event(ctx, usage, done, ev.data, out));
        if !*done {
            *done = true;
            out.extend_from_slice(b"data: [DONE]\n\n");
        }
    }

    fn usage(&self) -> Usage {
        self.usage
    }
}

/// Reads an OpenAI-shaped error body (`{"error":{"message","type","param","code"}}`).
pub fn openai_error(provider: &str, status: u16, body: &[u8]) -> ApiError {
    #[derive(Deserialize)]
    struct Envelope {
        error: ErrorIn,
    }
    #[derive(Deserialize)]
    struct ErrorIn {
        #[serde(default)]
        message: Option<String>,
        #[serde(rename = "type", default)]
        kind: Option<String>,
        #[serde(default)]
        param: Option<String>,
        #[serde(default)]
        code: Option<serde_json::Value>,
    }
    let status = super::client_status(status);
    let Ok(Envelope { error }) = serde_json::from_slice::<Envelope>(body) else {
        return opaque_error(provider, status, body);
    };
    let message = redact(
        &error
            .message
            .unwrap_or_else(|| format!("{provider} returned HTTP {status}")),
    );
    let mut e = ApiError::from_status(status, message);
    e.param = error.param;
    e.code = match error.code {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    if status == 400 && is_context_overflow(&e.message) {
        e.code = Some("context_length_exceeded".into());
    }
    if let Some(kind) = error.kind.as_deref() {
        e.kind = match kind {
            "invalid_request_error" => "invalid_request_error",
            "authentication_error" => "authentication_error",
            "permission_error" => "permission_error",
            "rate_limit_error" | "tokens" | "requests" => "rate_limit_error",
            "insufficient_quota" => "insufficient_quota",
            "server_error" | "api_error" => "api_error",
            _ => e.kind,
        };
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::parse_chat;

    fn ctx() -> ResponseCtx {
        ResponseCtx {
            id: "chatcmpl-x".into(),
            created: 1,
            model: "gpt".into(),
            include_usage: false,
        }
    }

    #[test]
    fn request_passes_through_with_model_replaced() {
        let body = br#"{"model":"gpt","messages":[{"role":"user","content":"hi"}],"logit_bias":{"50256":-100},"max_tokens":5}"#;
        let req = parse_chat(body).unwrap();
        let out = rewrite_fields(&req.fields, "gpt-4o-mini", |_| None);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "gpt-4o-mini");
        assert_eq!(v["logit_bias"]["50256"], -100);
        assert_eq!(v["messages"][0]["content"], "hi");
        assert_eq!(v["max_tokens"], 5);
    }

    #[test]
    fn response_model_is_the_alias() {
        let body = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        let t = passthrough_response("openai", body, &ctx()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["model"], "gpt");
        assert_eq!(v["id"], "chatcmpl-1");
        assert_eq!(t.usage.prompt_tokens, 9);
        assert_eq!(t.usage.cached_tokens, 4);
    }

    #[test]
    fn stream_rewrites_each_chunk_at_any_split() {
        let upstream = b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\ndata: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\ndata: [DONE]\n\n";
        let run = |parts: &[&[u8]]| {
            let mut t = PassthroughStream::new(ctx());
            let mut out = Vec::new();
            for p in parts {
                t.feed(p, &mut out);
            }
            t.finish(&mut out);
            (out, t.usage())
        };
        let (whole, usage) = run(&[upstream]);
        assert_eq!(usage.prompt_tokens, 3);
        let text = String::from_utf8(whole.clone()).unwrap();
        assert!(!text.contains("gpt-4o"));
        assert_eq!(text.matches("\"model\":\"gpt\"").count(), 2);
        assert!(text.ends_with("data: [DONE]\n\n"));
        for i in 0..=upstream.len() {
            assert_eq!(
                run(&[&upstream[..i], &upstream[i..]]).0,
                whole,
                "split at {i}"
            );
        }
    }

    #[test]
    fn errors_keep_openai_fields_and_hide_keys() {
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-proj-abcdefghijklmnopqrstuvwxyz0123. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        let e = openai_error("openai", 401, body);
        assert_eq!(e.status, 401);
        assert_eq!(e.code.as_deref(), Some("invalid_api_key"));
        assert!(!e.message.contains("abcdefghijklmnop"), "{}", e.message);
        let e = openai_error("openai", 400, br#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":null}}"#);
        assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
        let e = openai_error("groq", 503, b"<html>bad gateway</html>");
        assert_eq!(e.status, 503);
    }
}
