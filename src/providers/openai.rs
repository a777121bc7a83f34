//! OpenAI and the OpenAI-compatible family (Groq, Mistral, DeepSeek, xAI, Together, Fireworks,
//! OpenRouter, Cerebras, Perplexity, vLLM, Ollama). The request passes through with only the
//! fields the gateway must change; responses get the client's alias as `model`.

pub mod extensions;
pub mod responses;
pub mod translate;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    opaque_error, redact, Endpoint, Operation, Params, Provider, RequestOptions, StreamTranslator,
    Target, Translated,
};
use crate::error::{is_context_overflow, ApiError};
use crate::ingress::ClientApi;
use crate::json::{self, Fields};
use crate::openai::{
    usage_object, ChatRequest, Count, EmbeddingsRequest, ResponseCtx, Usage, UsageCheck,
};
use crate::stream::sse::SseDecoder;

pub struct OpenAiCompatible {
    name: &'static str,
    default_base: Option<&'static str>,
    key_env: Option<&'static str>,
    /// Further variables LiteLLM reads for the key, in its order, when `key_env` is unset.
    key_env_fallbacks: &'static [&'static str],
    embeddings: bool,
    /// Servers whose OpenAI API lives under `/v1` of the usual `api_base` (vLLM, Ollama), and
    /// Mistral, whose LiteLLM client adds the `/v1` a custom `api_base` lacks.
    append_v1: bool,
    /// Ask for `stream_options.include_usage` on streams the client did not ask usage for (the
    /// gateway charges from it). Off where the server is not known to accept it.
    stream_usage: bool,
    /// Serves OpenAI's Responses API (`/responses`): only OpenAI's own service is known to.
    responses: bool,
    /// The server takes `top_k` (documented by vLLM, Together, Fireworks, OpenRouter,
    /// Perplexity); others refuse it, or drop it with `drop_params`.
    top_k: bool,
}

const fn family(name: &'static str, base: &'static str, key_env: &'static str) -> OpenAiCompatible {
    OpenAiCompatible {
        name,
        default_base: Some(base),
        key_env: Some(key_env),
        key_env_fallbacks: &[],
        embeddings: false,
        append_v1: false,
        stream_usage: true,
        responses: false,
        top_k: false,
    }
}

// Default bases and key variables as LiteLLM resolves them (checked against its provider
// configs and each provider's own API docs).
pub static OPENAI: OpenAiCompatible = OpenAiCompatible {
    embeddings: true,
    responses: true,
    ..family("openai", "https://api.openai.com/v1", "OPENAI_API_KEY")
};
pub static GROQ: OpenAiCompatible =
    family("groq", "https://api.groq.com/openai/v1", "GROQ_API_KEY");
pub static MISTRAL: OpenAiCompatible = OpenAiCompatible {
    embeddings: true,
    append_v1: true,
    stream_usage: true,
    ..family("mistral", "https://api.mistral.ai/v1", "MISTRAL_API_KEY")
};
// DeepSeek documents `https://api.deepseek.com` (with `/v1` as an alias); LiteLLM defaults to
// its `/beta` variant, which serves the same chat completions plus beta features.
pub static DEEPSEEK: OpenAiCompatible =
    family("deepseek", "https://api.deepseek.com", "DEEPSEEK_API_KEY");
pub static XAI: OpenAiCompatible = family("xai", "https://api.x.ai/v1", "XAI_API_KEY");
pub static TOGETHER_AI: OpenAiCompatible = OpenAiCompatible {
    embeddings: true,
    top_k: true,
    key_env_fallbacks: &[
        "TOGETHER_AI_API_KEY",
        "TOGETHERAI_API_KEY",
        "TOGETHER_AI_TOKEN",
    ],
    ..family(
        "together_ai",
        "https://api.together.xyz/v1",
        "TOGETHER_API_KEY",
    )
};
pub static FIREWORKS_AI: OpenAiCompatible = OpenAiCompatible {
    embeddings: true,
    top_k: true,
    key_env_fallbacks: &[
        "FIREWORKS_AI_API_KEY",
        "FIREWORKSAI_API_KEY",
        "FIREWORKS_AI_TOKEN",
    ],
    ..family(
        "fireworks_ai",
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_API_KEY",
    )
};
pub static OPENROUTER: OpenAiCompatible = OpenAiCompatible {
    top_k: true,
    key_env_fallbacks: &["OR_API_KEY"],
    ..family(
        "openrouter",
        "https://openrouter.ai/api/v1",
        "OPENROUTER_API_KEY",
    )
};
pub static CEREBRAS: OpenAiCompatible =
    family("cerebras", "https://api.cerebras.ai/v1", "CEREBRAS_API_KEY");
pub static PERPLEXITY: OpenAiCompatible = OpenAiCompatible {
    key_env_fallbacks: &["PERPLEXITY_API_KEY"],
    // Perplexity's OpenAI-compatible API does not document stream_options.
    stream_usage: false,
    top_k: true,
    ..family(
        "perplexity",
        "https://api.perplexity.ai",
        "PERPLEXITYAI_API_KEY",
    )
};
pub static HOSTED_VLLM: OpenAiCompatible = OpenAiCompatible {
    name: "hosted_vllm",
    default_base: None,
    key_env: Some("HOSTED_VLLM_API_KEY"),
    key_env_fallbacks: &[],
    embeddings: true,
    append_v1: true,
    stream_usage: true,
    responses: false,
    top_k: true,
};
// LiteLLM's `ollama_chat` speaks Ollama's native `/api/chat`; Tollgate uses Ollama's
// OpenAI-compatible `/v1` API instead, so responses pass through unchanged.
pub static OLLAMA_CHAT: OpenAiCompatible = OpenAiCompatible {
    name: "ollama_chat",
    default_base: Some("http://localhost:11434"),
    key_env: Some("OLLAMA_API_KEY"),
    key_env_fallbacks: &[],
    embeddings: true,
    append_v1: true,
    stream_usage: true,
    responses: false,
    top_k: false,
};

impl OpenAiCompatible {
    fn base_path(&self, t: &Target) -> String {
        if self.append_v1 && !t.base_path.ends_with("/v1") {
            format!("{}/v1", t.base_path)
        } else {
            t.base_path.clone()
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

    fn fallback_key_envs(&self) -> &'static [&'static str] {
        self.key_env_fallbacks
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

    fn path(&self, t: &Target, op: Operation, _stream: bool) -> String {
        let tail = match op {
            Operation::Chat => "/chat/completions",
            Operation::Embeddings => "/embeddings",
        };
        format!("{}{tail}", self.base_path(t))
    }

    fn responses_path(&self, t: &Target) -> Option<String> {
        self.responses
            .then(|| format!("{}/responses", self.base_path(t)))
    }

    fn chat_request(
        &self,
        req: &ChatRequest,
        t: &Target,
        opts: RequestOptions,
    ) -> Result<Vec<u8>, ApiError> {
        let reasoning = match self.name {
            "openai" => extensions::Reasoning::of(&t.model),
            _ => None,
        };
        // o-series and gpt-5 reject `max_tokens`; LiteLLM sends it as `max_completion_tokens`.
        let rename_max_tokens = reasoning.is_some() && !req.has("max_completion_tokens");
        let rename = |key: &str| match key {
            "max_tokens" if rename_max_tokens => Some("max_completion_tokens"),
            _ => None,
        };
        let accepts = extensions::Accepts {
            top_k: self.top_k,
            reasoning,
        };
        Ok(match extensions::rewrite(req, self.name, accepts, opts)? {
            None => rewrite_chat(req, &t.model, self.stream_usage, rename),
            Some(rw) => {
                let fields = rw.apply(&req.fields);
                rewrite_chat_fields(req, &fields, &t.model, self.stream_usage, rename)
            }
        })
    }

    fn chat_response(&self, body: &[u8], ctx: &ResponseCtx) -> Result<Translated, ApiError> {
        match ctx.api {
            ClientApi::Chat => passthrough_response(self.name, "choices", body, ctx),
            ClientApi::Responses if self.responses => responses::response(self.name, body, ctx),
            _ => translate::response(self.name, body, ctx),
        }
    }

    fn chat_stream(&self, ctx: ResponseCtx) -> Box<dyn StreamTranslator> {
        match ctx.api {
            ClientApi::Chat => Box::new(PassthroughStream::new(ctx)),
            ClientApi::Responses if self.responses => {
                Box::new(responses::PassthroughStream::new(self.name, ctx))
            }
            _ => Box::new(translate::ToSink::new(ctx, |data| {
                stream_error("openai", data)
            })),
        }
    }

    fn embeddings_request(&self, req: &EmbeddingsRequest, t: &Target) -> Result<Vec<u8>, ApiError> {
        Ok(rewrite_fields(&req.fields, &t.model, |_| None))
    }

    fn embeddings_response(
        &self,
        body: &[u8],
        _base64: bool,
        ctx: &ResponseCtx,
    ) -> Result<Translated, ApiError> {
        passthrough_response(self.name, "data", body, ctx)
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
    rewrite_fields_with(fields, model, rename, None, None)
}

/// What a streamed request sends as `stream_options` when the client did not ask for usage: the
/// gateway needs the provider's final usage to charge the request exactly (the client does not
/// see it, see [`PassthroughStream`]).
pub const STREAM_USAGE_OPTIONS: &str = r#"{"include_usage":true}"#;

/// A chat body for an OpenAI-shaped upstream: the client's fields with `model` replaced, keys
/// renamed by `rename`, and usage requested for streams when `ask_usage`.
pub fn rewrite_chat(
    req: &ChatRequest,
    model: &str,
    ask_usage: bool,
    rename: impl Fn(&str) -> Option<&'static str>,
) -> Vec<u8> {
    rewrite_chat_fields(req, &req.fields, model, ask_usage, rename)
}

/// [`rewrite_chat`] writing `fields` (the request's, rewritten) instead of the request's own.
pub fn rewrite_chat_fields(
    req: &ChatRequest,
    fields: &Fields,
    model: &str,
    ask_usage: bool,
    rename: impl Fn(&str) -> Option<&'static str>,
) -> Vec<u8> {
    let options = (ask_usage && req.stream && !req.include_usage).then_some(STREAM_USAGE_OPTIONS);
    rewrite_fields_with(fields, model, rename, options, req.output_cap)
}

/// [`rewrite_fields`] that also sets `stream_options` (replacing the client's) when given, and
/// caps the output at `output_cap` when given: the client's `max_tokens` and
/// `max_completion_tokens` are lowered to it, or `max_tokens` (as `rename` names it) is added.
pub fn rewrite_fields_with(
    fields: &Fields,
    model: &str,
    rename: impl Fn(&str) -> Option<&'static str>,
    stream_options: Option<&str>,
    output_cap: Option<u64>,
) -> Vec<u8> {
    let size: usize = fields
        .iter()
        .map(|(k, v)| k.len() + v.get().len() + 4)
        .sum();
    let mut out = Vec::with_capacity(size + model.len() + 48);
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
    let mut capped = false;
    for (key, value) in fields {
        if key.as_str() == "model" || (key.as_str() == "stream_options" && stream_options.is_some())
        {
            continue;
        }
        let cap = match (key.as_str(), output_cap) {
            ("max_tokens" | "max_completion_tokens", Some(cap)) => {
                match value.get().trim().parse::<u64>() {
                    Ok(asked) => Some(asked.min(cap)),
                    // null: no cap of the client's, the gateway's is added below.
                    Err(_) => continue,
                }
            }
            _ => None,
        };
        sep(&mut out);
        json::write_str(&mut out, rename(key.as_str()).unwrap_or(key.as_str()));
        out.push(b':');
        match cap {
            Some(n) => {
                capped = true;
                out.extend_from_slice(n.to_string().as_bytes());
            }
            None => out.extend_from_slice(value.get().as_bytes()),
        }
    }
    if let (Some(cap), false) = (output_cap, capped) {
        sep(&mut out);
        json::write_str(&mut out, rename("max_tokens").unwrap_or("max_tokens"));
        out.push(b':');
        out.extend_from_slice(cap.to_string().as_bytes());
    }
    if let Some(options) = stream_options {
        sep(&mut out);
        out.extend_from_slice(b"\"stream_options\":");
        out.extend_from_slice(options.as_bytes());
    }
    out.push(b'}');
    out
}

#[derive(Deserialize, Default)]
struct UsageIn {
    #[serde(default)]
    prompt_tokens: Count,
    #[serde(default)]
    completion_tokens: Count,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize, Default)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Count,
}

#[derive(Deserialize, Default)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Count,
}

/// What one `usage` field says: nothing (`null`), usage to charge, or usage that cannot be
/// charged (`Err`: a count that is negative, fractional, a string, absurd; a field of the wrong
/// shape).
fn parse_usage(raw: &RawValue) -> Result<Option<Usage>, ()> {
    let Some(u) = usage_object::<UsageIn>(Some(raw))? else {
        return Ok(None);
    };
    let mut c = UsageCheck::default();
    let usage = Usage {
        prompt_tokens: c.take(u.prompt_tokens),
        completion_tokens: c.take(u.completion_tokens),
        cached_tokens: c.take(u.prompt_tokens_details.unwrap_or_default().cached_tokens),
        cache_creation_tokens: 0,
        reasoning_tokens: c.take(
            u.completion_tokens_details
                .unwrap_or_default()
                .reasoning_tokens,
        ),
    };
    c.result(usage)
}

/// An OpenAI-shaped JSON object with `model` replaced by the client's alias; its `usage` read on
/// the way (see [`parse_usage`]; `Ok(None)` when it has none).
fn rewrite_object(
    fields: &Fields,
    alias: &str,
    keep_usage: bool,
    out: &mut Vec<u8>,
) -> Result<Option<Usage>, ()> {
    let mut usage = Ok(None);
    out.push(b'{');
    let mut first = true;
    for (key, value) in fields {
        if key.as_str() == "usage" {
            usage = parse_usage(value);
            if !keep_usage {
                continue;
            }
        }
        if !std::mem::replace(&mut first, false) {
            out.push(b',');
        }
        json::write_str(out, key.as_str());
        out.push(b':');
        match key.as_str() {
            "model" => json::write_str(out, alias),
            _ => out.extend_from_slice(value.get().as_bytes()),
        }
    }
    out.push(b'}');
    usage
}

/// A chunk that only carries usage (`choices: []`), as providers send it last on request.
fn is_usage_only(fields: &Fields) -> bool {
    json::get(fields, "choices").is_some_and(is_empty_array)
        && json::get(fields, "usage").is_some_and(|u| !json::is_null(u))
}

/// An OpenAI-shaped response body with `model` set to the client's alias. `answer` names the field
/// every answer of the operation has (`choices`, or `data` for embeddings): a JSON object without
/// it as an array is no answer (an error in a 200, or something else), and an upstream failure.
pub fn passthrough_response(
    provider: &str,
    answer: &str,
    body: &[u8],
    ctx: &ResponseCtx,
) -> Result<Translated, ApiError> {
    let fields = json::split_object(body).map_err(|_| {
        ApiError::bad_gateway(format!(
            "{provider} returned a response that is not a JSON object"
        ))
    })?;
    if !json::get(&fields, answer).is_some_and(|v| v.get().trim_start().starts_with('[')) {
        return Err(ApiError::bad_gateway(format!(
            "{provider} returned a JSON object without `{answer}`: no answer"
        )));
    }
    let mut out = Vec::with_capacity(body.len() + ctx.model.len());
    let usage = rewrite_object(&fields, &ctx.model, true, &mut out)
        .ok()
        .flatten();
    Ok(Translated { body: out, usage })
}

/// Relays an OpenAI-compatible SSE stream, rewriting `model` in every chunk and keeping the usage.
/// Whatever the upstream does, the client's stream ends with `[DONE]` after a complete answer or
/// with an OpenAI error event: an error event of the provider's, a malformed event, or an end
/// before the answer finished all become one.
pub struct PassthroughStream {
    sse: SseDecoder,
    state: StreamState,
}

struct StreamState {
    ctx: ResponseCtx,
    /// The last usage reported, and whether a report could not be charged.
    usage: Option<Usage>,
    usage_bad: bool,
    /// The usage-only chunk arrived: OpenAI sends it last, so the usage is final even if the
    /// stream breaks before `[DONE]`.
    usage_final: bool,
    /// A choice finished (`finish_reason` set): an end of the body now completes the answer.
    saw_finish: bool,
    done: bool,
    /// The stream completed (`[DONE]`, or the body ended after the answer finished).
    completed: bool,
    /// Reads an in-stream `{"error":...}` event, which comes without an HTTP status.
    error: fn(&[u8]) -> ApiError,
    lenient: Option<Lenient>,
}

/// Repairs for servers whose chunks stray from OpenAI's shape (Azure OpenAI): annotation chunks
/// with empty `id`/`object`/`created`, choices without `delta`, a choice-less first chunk that
/// only carries `prompt_filter_results`.
struct Lenient {
    /// The first non-empty upstream `id` and `created`, reused where a chunk leaves them empty.
    id: Option<String>,
    created: Option<u64>,
    /// Top-level fields of choice-less chunks, carried into the next chunk that has choices so
    /// clients reading `choices[0]` never see an empty list they did not ask for.
    held: Vec<(String, Vec<u8>)>,
    held_bytes: usize,
}

/// Bound on the annotation fields carried between chunks; beyond it they are dropped.
const MAX_HELD_BYTES: usize = 64 << 10;

/// Fields of an OpenAI chunk that the lenient writer fills itself.
const CHUNK_FIELDS: [&str; 7] = [
    "id",
    "object",
    "created",
    "model",
    "choices",
    "usage",
    "system_fingerprint",
];

impl PassthroughStream {
    pub fn new(ctx: ResponseCtx) -> Self {
        PassthroughStream {
            sse: SseDecoder::default(),
            state: StreamState {
                ctx,
                usage: None,
                usage_bad: false,
                usage_final: false,
                saw_finish: false,
                done: false,
                completed: false,
                error: |data| stream_error("openai", data),
                lenient: None,
            },
        }
    }

    /// A pass-through that also repairs chunks that are not quite OpenAI's (see [`Lenient`]);
    /// `error` translates the provider's in-stream error events.
    pub fn lenient(ctx: ResponseCtx, error: fn(&[u8]) -> ApiError) -> Self {
        let mut s = Self::new(ctx);
        s.state.error = error;
        s.state.lenient = Some(Lenient {
            id: None,
            created: None,
            held: Vec::new(),
            held_bytes: 0,
        });
        s
    }
}

/// Whether a raw `choices` array sets a `finish_reason` (to anything but `null`). A quote inside a
/// JSON string is escaped, so the pattern only matches a real key.
fn sets_finish_reason(choices: &RawValue) -> bool {
    const KEY: &[u8] = b"\"finish_reason\"";
    let bytes = choices.get().as_bytes();
    memchr::memmem::find_iter(bytes, KEY).any(|at| {
        let after = bytes
            .get(at.saturating_add(KEY.len())..)
            .unwrap_or_default();
        let mut rest = after.iter().skip_while(|b| b.is_ascii_whitespace());
        rest.next() == Some(&b':') && rest.find(|b| !b.is_ascii_whitespace()) == Some(&b'"')
    })
}

impl StreamState {
    /// Ends the stream with an OpenAI error event.
    fn fail(&mut self, out: &mut Vec<u8>, err: &ApiError) {
        self.done = true;
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&err.to_json());
        out.extend_from_slice(b"\n\n");
    }

    fn on_event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.done || data.is_empty() {
            return;
        }
        if data == b"[DONE]" {
            self.done = true;
            self.completed = true;
            out.extend_from_slice(b"data: [DONE]\n\n");
            return;
        }
        let Ok(fields) = json::split_object(data) else {
            // Not a JSON object: the client's SDK could not read it either. Relaying it would
            // break the client's parser; inventing content would be worse.
            self.fail(
                out,
                &ApiError::bad_gateway("the provider sent a malformed stream event"),
            );
            return;
        };
        if json::get(&fields, "error").is_some_and(|e| !json::is_null(e))
            && json::get(&fields, "choices").is_none()
        {
            let e = (self.error)(data);
            self.fail(out, &e);
            return;
        }
        if json::get(&fields, "choices").is_some_and(sets_finish_reason) {
            self.saw_finish = true;
        }
        // Usage the gateway asked for on the client's behalf is kept for accounting, not shown.
        let hide_usage = !self.ctx.include_usage;
        let usage_only = is_usage_only(&fields);
        let reported = if hide_usage && usage_only {
            json::get(&fields, "usage").map_or(Ok(None), parse_usage)
        } else {
            match &mut self.lenient {
                None => {
                    out.extend_from_slice(b"data: ");
                    let u = rewrite_object(&fields, &self.ctx.model, !hide_usage, out);
                    out.extend_from_slice(b"\n\n");
                    u
                }
                Some(l) => l.write_chunk(&fields, &self.ctx, !hide_usage, out),
            }
        };
        match reported {
            Ok(Some(u)) => self.usage = Some(u),
            Ok(None) => {}
            Err(()) => self.usage_bad = true,
        }
        self.usage_final |= usage_only;
    }

    /// The upstream's body ended: a finished answer is closed, anything else is an error.
    fn end(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if self.saw_finish || self.usage_final {
            self.done = true;
            self.completed = true;
            out.extend_from_slice(b"data: [DONE]\n\n");
        } else {
            self.fail(
                out,
                &ApiError::bad_gateway(
                    "the provider's stream ended before the answer was complete",
                ),
            );
        }
    }
}

fn is_empty_array(v: &RawValue) -> bool {
    let t = v.get().trim();
    t.starts_with('[') && t.get(1..).is_some_and(|r| r.trim() == "]")
}

impl Lenient {
    /// Writes one repaired chunk (or holds a choice-less annotation chunk); returns its usage.
    fn write_chunk(
        &mut self,
        fields: &Fields,
        ctx: &ResponseCtx,
        keep_usage: bool,
        out: &mut Vec<u8>,
    ) -> Result<Option<Usage>, ()> {
        let choiceless = json::get(fields, "choices").is_some_and(is_empty_array)
            && json::get(fields, "usage").is_none_or(json::is_null);
        if choiceless {
            for (key, value) in fields {
                let size = key.len().saturating_add(value.get().len());
                if CHUNK_FIELDS.contains(&key.as_str())
                    || self.held_bytes.saturating_add(size) > MAX_HELD_BYTES
                {
                    continue;
                }
                self.held_bytes = self.held_bytes.saturating_add(size);
                self.held
                    .push((key.as_str().to_string(), value.get().as_bytes().to_vec()));
            }
            return Ok(None);
        }
        let mut usage = Ok(None);
        out.extend_from_slice(b"data: {");
        let mut first = true;
        let mut field = |out: &mut Vec<u8>, key: &str| {
            if !std::mem::replace(&mut first, false) {
                out.push(b',');
            }
            json::write_str(out, key);
            out.push(b':');
        };
        for (key, value) in fields {
            if key.as_str() == "usage" && !keep_usage {
                usage = parse_usage(value);
                continue;
            }
            field(out, key.as_str());
            match key.as_str() {
                "id" => match serde_json::from_str::<json::Text>(value.get()) {
                    Ok(id) if !id.is_empty() => {
                        self.id.get_or_insert_with(|| id.as_str().to_string());
                        out.extend_from_slice(value.get().as_bytes());
                    }
                    _ => self.write_standard(out, "id", ctx),
                },
                "created" => match serde_json::from_str::<u64>(value.get()) {
                    Ok(c) if c > 0 => {
                        self.created.get_or_insert(c);
                        out.extend_from_slice(value.get().as_bytes());
                    }
                    _ => self.write_standard(out, "created", ctx),
                },
                "object" | "model" => self.write_standard(out, key.as_str(), ctx),
                "choices" => write_choices(value, out),
                "usage" => {
                    usage = parse_usage(value);
                    out.extend_from_slice(value.get().as_bytes());
                }
                _ => out.extend_from_slice(value.get().as_bytes()),
            }
        }
        for name in ["id", "object", "created", "model"] {
            if json::get(fields, name).is_none() {
                field(out, name);
                self.write_standard(out, name, ctx);
            }
        }
        for (key, value) in std::mem::take(&mut self.held) {
            if json::get(fields, &key).is_none() {
                field(out, &key);
                out.extend_from_slice(&value);
            }
        }
        self.held_bytes = 0;
        out.extend_from_slice(b"}\n\n");
        usage
    }

    /// The value OpenAI would put in a standard chunk field the upstream left out or empty.
    fn write_standard(&self, out: &mut Vec<u8>, name: &str, ctx: &ResponseCtx) {
        match name {
            "id" => json::write_str(out, self.id.as_deref().unwrap_or(&ctx.id)),
            "object" => json::write_str(out, "chat.completion.chunk"),
            "created" => json::write(out, &self.created.unwrap_or(ctx.created)),
            _ => json::write_str(out, &ctx.model),
        }
    }
}

/// Copies a `choices` array, giving every choice the `delta` OpenAI clients read (Azure's
/// content-filter annotation choices have none).
fn write_choices(value: &RawValue, out: &mut Vec<u8>) {
    let Ok(choices) = serde_json::from_str::<Vec<&RawValue>>(value.get()) else {
        out.extend_from_slice(value.get().as_bytes());
        return;
    };
    out.push(b'[');
    for (i, choice) in choices.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match json::split_object(choice.get().as_bytes()) {
            Ok(fields) if json::get(&fields, "delta").is_none() => {
                let raw = choice.get().trim_end();
                let body = raw.strip_suffix('}').unwrap_or(raw);
                out.extend_from_slice(body.as_bytes());
                if !fields.is_empty() {
                    out.push(b',');
                }
                out.extend_from_slice(b"\"delta\":{}}");
            }
            _ => out.extend_from_slice(choice.get().as_bytes()),
        }
    }
    out.push(b']');
}

impl StreamTranslator for PassthroughStream {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let PassthroughStream { sse, state } = self;
        let result = sse.feed(chunk, |ev| state.on_event(ev.data, out));
        if result.is_err() && !state.done {
            state.fail(
                out,
                &ApiError::bad_gateway(
                    "the provider sent a stream event larger than the gateway accepts",
                ),
            );
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let PassthroughStream { sse, state } = self;
        sse.finish(|ev| state.on_event(ev.data, out));
        state.end(out);
    }

    fn final_usage(&self) -> Option<Usage> {
        let s = &self.state;
        if s.usage_bad || !(s.completed || s.usage_final) {
            return None;
        }
        s.usage
    }

    fn completed(&self) -> bool {
        self.state.completed || self.state.usage_final
    }
}

/// An error event inside an OpenAI-shaped stream: its HTTP status comes from the error's
/// numeric `code` or its `type`, since the stream's own status was 200.
pub fn stream_error(provider: &str, data: &[u8]) -> ApiError {
    #[derive(Deserialize)]
    struct Envelope {
        error: Kind,
    }
    #[derive(Deserialize)]
    struct Kind {
        #[serde(default)]
        code: Option<serde_json::Value>,
        #[serde(rename = "type", default)]
        kind: Option<String>,
    }
    let kind = serde_json::from_slice::<Envelope>(data)
        .ok()
        .map(|e| e.error);
    let from_code = kind.as_ref().and_then(|k| match &k.code {
        Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    });
    let status = from_code
        .filter(|s| (400..600).contains(s))
        .or_else(|| {
            kind.and_then(|k| k.kind).map(|t| match t.as_str() {
                "invalid_request_error" => 400,
                "authentication_error" => 401,
                "permission_error" => 403,
                "rate_limit_error" | "tokens" | "requests" | "insufficient_quota" => 429,
                _ => 500,
            })
        })
        .unwrap_or(500);
    openai_error(provider, status, data)
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
            api: Default::default(),
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

    /// The gateway's output cap lowers the client's `max_tokens` / `max_completion_tokens`, or
    /// adds `max_tokens` (under the name the model takes); a smaller cap of the client's stays.
    #[test]
    fn an_output_cap_is_written_into_the_passthrough_body() {
        let sent = |body: &[u8], cap: u64, reasoning: bool| -> serde_json::Value {
            let mut req = parse_chat(body).unwrap();
            req.output_cap = Some(cap);
            let out = rewrite_chat(&req, "m", false, |k| match k {
                "max_tokens" if reasoning => Some("max_completion_tokens"),
                _ => None,
            });
            serde_json::from_slice(&out).unwrap()
        };
        let v = sent(
            br#"{"model":"gpt","messages":[{"role":"user","content":"hi"}],"max_tokens":500}"#,
            120,
            false,
        );
        assert_eq!(v["max_tokens"], 120);
        assert_eq!(v["messages"][0]["content"], "hi");
        let v = sent(
            br#"{"model":"gpt","messages":[{"role":"user","content":"hi"}]}"#,
            120,
            false,
        );
        assert_eq!(v["max_tokens"], 120);
        assert!(v.get("max_completion_tokens").is_none());
        let v = sent(
            br#"{"model":"gpt","messages":[{"role":"user","content":"hi"}],"max_tokens":null}"#,
            120,
            true,
        );
        assert_eq!(v["max_completion_tokens"], 120);
        assert!(v.get("max_tokens").is_none());
        let v = sent(br#"{"model":"gpt","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":60}"#, 120, false);
        assert_eq!(v["max_completion_tokens"], 60);
        assert!(v.get("max_tokens").is_none());
    }

    #[test]
    fn response_model_is_the_alias() {
        let body = br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        let t = passthrough_response("openai", "choices", body, &ctx()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["model"], "gpt");
        assert_eq!(v["id"], "chatcmpl-1");
        assert_eq!(t.usage.unwrap_or_default().prompt_tokens, 9);
        assert_eq!(t.usage.unwrap_or_default().cached_tokens, 4);
    }

    #[test]
    fn stream_rewrites_each_chunk_at_any_split() {
        let upstream = b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\ndata: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\ndata: [DONE]\n\n";
        let run = |parts: &[&[u8]]| {
            let mut t = PassthroughStream::new(ResponseCtx {
                include_usage: true,
                api: Default::default(),
                ..ctx()
            });
            let mut out = Vec::new();
            for p in parts {
                t.feed(p, &mut out);
            }
            t.finish(&mut out);
            (out, t.final_usage().unwrap_or_default())
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

    fn relay(upstream: &[u8], include_usage: bool) -> (String, PassthroughStream) {
        let mut t = PassthroughStream::new(ResponseCtx {
            include_usage,
            api: Default::default(),
            ..ctx()
        });
        let mut out = Vec::new();
        t.feed(upstream, &mut out);
        t.finish(&mut out);
        (String::from_utf8(out).unwrap(), t)
    }

    const CHUNK: &str = r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;
    const LAST: &str = r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason": "stop"}]}"#;

    /// Whatever the upstream sends, the client's stream ends with `[DONE]` after a finished
    /// answer, or with one OpenAI error event.
    #[test]
    fn every_stream_ends_with_done_or_an_error() {
        let error_of = |text: &str| -> serde_json::Value {
            let last = text.trim_end().rsplit("\n\n").next().unwrap();
            serde_json::from_str(last.strip_prefix("data: ").unwrap()).unwrap()
        };
        // A malformed event (the SDK would raise a JSONDecodeError on it).
        let (text, t) = relay(format!("{CHUNK}\n\ndata: {{not json\n\n").as_bytes(), false);
        assert!(
            !text.contains("not json") && !text.contains("[DONE]"),
            "{text}"
        );
        assert_eq!(error_of(&text)["error"]["code"], "upstream_error");
        assert!(!t.completed() && t.final_usage().is_none());
        // The provider's own error event, in OpenAI's shape with a status-like type.
        let (text, _) = relay(format!("{CHUNK}\n\ndata: {{\"error\":{{\"message\":\"Rate limit reached\",\"type\":\"tokens\",\"code\":\"rate_limit_exceeded\"}}}}\n\n").as_bytes(), false);
        let e = error_of(&text);
        assert_eq!(e["error"]["type"], "rate_limit_error");
        assert_eq!(e["error"]["message"], "Rate limit reached");
        // Cut off before the answer finished: an error, not a success.
        let (text, t) = relay(format!("{CHUNK}\n\n").as_bytes(), false);
        assert!(!text.contains("[DONE]"), "{text}");
        assert!(error_of(&text)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ended before"));
        assert!(!t.completed());
        // Finished, but no `[DONE]`: closed for the client, complete, without usage.
        let (text, t) = relay(format!("{CHUNK}\n\n{LAST}\n\n").as_bytes(), false);
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        assert!(t.completed() && t.final_usage().is_none());
        // Usage that cannot be charged: the stream completes, its usage is not final.
        let bad = r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":-3,"completion_tokens":1}}"#;
        let (text, t) = relay(
            format!("{CHUNK}\n\n{LAST}\n\n{bad}\n\ndata: [DONE]\n\n").as_bytes(),
            false,
        );
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        assert!(t.completed() && t.final_usage().is_none());
    }

    #[test]
    fn usage_asked_for_the_client_is_kept_but_not_shown() {
        let upstream = b"data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}],\"usage\":null}\n\ndata: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n";
        let mut t = PassthroughStream::new(ctx());
        let mut out = Vec::new();
        t.feed(upstream, &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(!text.contains("usage"), "{text}");
        assert_eq!(text.matches("data: ").count(), 1);
        // The usage-only chunk is OpenAI's last: its usage is final before `[DONE]` arrives.
        assert_eq!(t.final_usage().unwrap().prompt_tokens, 3);
        t.feed(b"data: [DONE]\n\n", &mut out);
        assert_eq!(t.final_usage().unwrap().prompt_tokens, 3);
    }

    #[test]
    fn streams_ask_for_usage_unless_the_client_did() {
        let req = parse_chat(
            br#"{"model":"gpt","messages":[{"role":"user","content":"x"}],"stream":true}"#,
        )
        .unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&rewrite_chat(&req, "m", true, |_| None)).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        let req = parse_chat(br#"{"model":"gpt","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":false}}"#).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&rewrite_chat(&req, "m", true, |_| None)).unwrap();
        assert_eq!(
            v["stream_options"],
            serde_json::json!({"include_usage": true})
        );
        let v: serde_json::Value =
            serde_json::from_slice(&rewrite_chat(&req, "m", false, |_| None)).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], false);
        let req =
            parse_chat(br#"{"model":"gpt","messages":[{"role":"user","content":"x"}]}"#).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&rewrite_chat(&req, "m", true, |_| None)).unwrap();
        assert!(v.get("stream_options").is_none());
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
