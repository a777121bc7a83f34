//! One module per provider, each implementing [`Provider`]: where requests go, how the body is
//! translated each way, how streams and errors come back. Adding a provider is a new file and
//! one line in [`REGISTRY`].

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod gemini;
pub mod openai;

#[cfg(test)]
mod fuzz;

use crate::error::ApiError;
use crate::openai::{ChatRequest, EmbeddingsRequest, ResponseCtx, Usage};

/// The OpenAI operation a client request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Chat,
    Embeddings,
}

impl Operation {
    pub fn name(self) -> &'static str {
        match self {
            Operation::Chat => "chat completions",
            Operation::Embeddings => "embeddings",
        }
    }
}

/// What a provider reads from a deployment at request time. The configuration's deployments each
/// embed one, so providers need not know the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// The provider's model id: what follows `provider/` in `litellm_params.model` (for a model
    /// template, `openai/*`, filled from the client's model name per request).
    pub model: String,
    /// Path part of the base URL, without a trailing slash (may be empty).
    pub base_path: String,
    /// `litellm_params.api_version`.
    pub api_version: Option<String>,
}

/// A deployment's `litellm_params`, resolved, as a provider needs them at configuration time.
#[derive(Debug, Default)]
pub struct Params<'a> {
    /// The provider's model id: what follows `provider/` in `litellm_params.model`.
    pub model: &'a str,
    pub api_base: Option<&'a str>,
    /// The resolved API key, when the deployment has one.
    pub api_key: Option<&'a str>,
    pub api_version: Option<&'a str>,
    pub aws_region: Option<&'a str>,
    pub aws_runtime_endpoint: Option<&'a str>,
    pub aws_credentials: Option<AwsCredentials>,
}

/// Where a deployment's requests go and the headers each one carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `scheme://host[:port][/base/path]`.
    pub base_url: String,
    /// Added to every upstream request: credentials and API version headers.
    pub headers: Vec<(String, String)>,
    /// SigV4 signing that Envoy's `aws_request_signing` filter performs on the cluster.
    pub signing: Option<Signing>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signing {
    pub service: &'static str,
    pub region: String,
    pub credentials: AwsCredentials,
}

/// AWS credentials for Envoy's signer. Environment references keep secrets out of Envoy's config.
#[derive(Clone, PartialEq, Eq)]
pub enum AwsCredentials {
    /// Nothing configured: Envoy's default chain (the standard variables, the credentials and
    /// config files, web identity / IRSA, container and instance metadata), as the AWS SDKs do.
    DefaultChain,
    /// Keys named as `os.environ/AWS_ACCESS_KEY_ID` etc.: only those variables.
    Environment,
    /// Credentials written in the gateway config itself (LiteLLM allows it).
    Inline {
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
    },
    /// `aws_role_name`: STS AssumeRole, signed with the `source` credentials.
    AssumeRole {
        role_arn: String,
        session_name: Option<String>,
        external_id: Option<String>,
        source: Box<AwsCredentials>,
    },
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AwsCredentials::DefaultChain => f.write_str("DefaultChain"),
            AwsCredentials::Environment => f.write_str("Environment"),
            AwsCredentials::Inline { .. } => f.write_str("Inline(<redacted>)"),
            AwsCredentials::AssumeRole {
                role_arn, source, ..
            } => write!(f, "AssumeRole({role_arn}, {source:?})"),
        }
    }
}

/// A provider response body translated to OpenAI, with the usage it reported.
#[derive(Debug)]
pub struct Translated {
    pub body: Vec<u8>,
    /// `None` when the provider reported no usage, or usage that cannot be charged (see
    /// [`crate::openai::Count`]): the request is then charged its reservation.
    pub usage: Option<Usage>,
}

/// Request-time choices that come from the configuration or the headers rather than the body.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestOptions {
    /// Drop parameters the provider cannot honour instead of refusing the request.
    pub drop_params: bool,
    /// The client's `anthropic-beta` flags the deployment takes, as bits over
    /// [`Provider::anthropic_betas`] (see [`anthropic_beta`]).
    pub anthropic_beta: u32,
}

/// A Messages client's `anthropic-beta` header (comma-separated flags) for a deployment: the
/// flags it takes, as bits over [`Provider::anthropic_betas`] for the request body, and the others
/// dropped and logged once, by name (flags are no secrets). An Anthropic deployment takes every
/// flag as the header itself: nothing to carry.
pub fn anthropic_beta(header: &str, provider: &dyn Provider, model: &str, deployment: &str) -> u32 {
    let Some(accepted) = provider.anthropic_betas(model) else {
        return 0;
    };
    let mut mask = 0u32;
    let mut dropped: Vec<&str> = Vec::new();
    for flag in header.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        match accepted.iter().position(|a| *a == flag).filter(|&i| i < 32) {
            Some(i) => mask |= 1 << i,
            None if !dropped.contains(&flag) => dropped.push(flag),
            None => {}
        }
    }
    if !dropped.is_empty() {
        log::info!(
            "tollgate: anthropic-beta {} dropped for deployment {deployment} ({}/{model}): it does not take them",
            dropped.join(","),
            provider.name(),
        );
    }
    mask
}

/// The flags of `anthropic_betas` that `mask` names, in that list's order.
pub fn beta_flags(accepted: &'static [&'static str], mask: u32) -> Vec<&'static str> {
    accepted
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < 32 && mask & (1 << i) != 0)
        .map(|(_, f)| *f)
        .collect()
}

/// Turns a provider's streamed body into OpenAI `chat.completion.chunk` events, incrementally:
/// any chunking of the input gives the same output, and memory stays bounded.
pub trait StreamTranslator {
    /// Consumes the next bytes from the upstream and appends OpenAI SSE bytes to `out`.
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>);
    /// The upstream ended: flushes, then closes the stream: `data: [DONE]` after a complete
    /// answer, an OpenAI error event after an incomplete one.
    fn finish(&mut self, out: &mut Vec<u8>);
    /// The final usage, once the provider reported it (its last usage event seen, even before
    /// the connection closes: clients stop reading at `[DONE]`). `None` while it runs, when it
    /// ended in an error or was cut off, and when the usage it reported was missing or cannot be
    /// charged: such a stream is charged its reservation.
    fn final_usage(&self) -> Option<Usage>;
    /// The provider's answer completed normally, whether or not it reported usage.
    fn completed(&self) -> bool;
    /// The id of the response the provider made, once seen, where the provider keeps responses
    /// (OpenAI's Responses API relayed as it is): a later request may name it.
    fn response_id(&self) -> Option<&str> {
        None
    }
}

pub trait Provider: Sync {
    /// LiteLLM's provider prefix, e.g. `anthropic`.
    fn name(&self) -> &'static str;

    /// The environment variable LiteLLM reads for the key when `api_key` is not configured.
    fn default_key_env(&self) -> Option<&'static str> {
        None
    }

    /// Other variables LiteLLM also reads for the key, in its order, when the default is unset.
    fn fallback_key_envs(&self) -> &'static [&'static str] {
        &[]
    }

    /// Resolves where the deployment's requests go and with which credentials.
    /// The error names what is missing or wrong, for the config loader to attach to a field.
    fn endpoint(&self, params: &Params) -> Result<Endpoint, String>;

    fn supports(&self, op: Operation) -> bool {
        op == Operation::Chat
    }

    /// The media type of the provider's streamed answers.
    fn stream_media_type(&self) -> &'static str {
        "text/event-stream"
    }

    /// Whether the provider's answers to `op` report token usage. One that does not is charged
    /// its reservation without being counted as missing usage.
    fn reports_usage(&self, _op: Operation) -> bool {
        true
    }

    /// How many completions the provider generates for a request asking for `requested`
    /// (`n`): the output it can be charged for is that many times the output cap. Providers
    /// that cannot honour `n` refuse it (or drop it, with `drop_params`): they generate one.
    fn output_choices(&self, requested: u64) -> u64 {
        requested.max(1)
    }

    /// The output cap the provider's request carries when the client sets none (Anthropic
    /// requires one): what such a request can generate at most. `None`: the model's limit.
    fn default_max_output(&self) -> Option<u64> {
        None
    }

    /// Path and query of the upstream request, decided in the request-headers phase.
    fn path(&self, t: &Target, op: Operation, stream: bool) -> String;

    /// Where the deployment serves OpenAI's Responses API itself (OpenAI, Azure OpenAI): a
    /// Responses client's request goes there as it came ([`openai::responses`]). `None`: the
    /// request is translated to the provider's chat API.
    fn responses_path(&self, _t: &Target) -> Option<String> {
        None
    }

    fn chat_request(
        &self,
        req: &ChatRequest,
        t: &Target,
        opts: RequestOptions,
    ) -> Result<Vec<u8>, ApiError>;

    fn chat_response(&self, body: &[u8], ctx: &ResponseCtx) -> Result<Translated, ApiError>;

    fn chat_stream(&self, ctx: ResponseCtx) -> Box<dyn StreamTranslator>;

    fn embeddings_request(
        &self,
        _req: &EmbeddingsRequest,
        _t: &Target,
    ) -> Result<Vec<u8>, ApiError> {
        Err(unsupported_operation(self.name(), Operation::Embeddings))
    }

    fn embeddings_response(
        &self,
        _body: &[u8],
        _base64: bool,
        _ctx: &ResponseCtx,
    ) -> Result<Translated, ApiError> {
        Err(unsupported_operation(self.name(), Operation::Embeddings))
    }

    /// The provider's response headers a client may see (the gateway removes every other one,
    /// and any whose value holds a secret): an allow-list, so a header nobody thought of never
    /// leaks. [`RESPONSE_HEADERS`] unless a provider has more a client needs.
    fn response_headers(&self) -> &'static [&'static str] {
        &RESPONSE_HEADERS
    }

    /// The response header naming the provider's error type, when its errors carry one apart
    /// from the body (read before the client's response headers go, and handed to
    /// [`Provider::error_status`] and [`Provider::error`]).
    fn error_type_header(&self) -> Option<&'static str> {
        None
    }

    /// Translates a provider error (status, the provider's error-type header if any, body).
    fn error(&self, status: u16, error_type: Option<&str>, body: &[u8]) -> ApiError;

    /// The status the client sees for an upstream error, from the status line and the error-type
    /// header alone: response headers are sent before the body is read.
    fn error_status(&self, status: u16, _error_type: Option<&str>) -> u16 {
        client_status(status)
    }

    /// The Anthropic beta flags (`anthropic-beta`) a Messages client may ask of this deployment's
    /// model, which the provider carries in its own request; `None` when the deployment takes
    /// every flag as the header (Anthropic's own API). Others are dropped and logged, never sent
    /// to fail the request.
    fn anthropic_betas(&self, _model: &str) -> Option<&'static [&'static str]> {
        Some(&[])
    }

    /// Whether the upstream error (status line and error-type header) says the provider refused
    /// the gateway's own credentials, which the client then sees as a gateway failure
    /// ([`Provider::error_status`]) while the router still treats it as the deployment's
    /// authentication failure.
    fn rejects_gateway_credentials(&self, _status: u16, _error_type: Option<&str>) -> bool {
        false
    }
}

/// Provider response headers a client may see, by default. Everything else a provider sends
/// (account and organization ids, rate limits of the gateway's account, cookies, a header
/// echoing a credential) is removed.
pub const RESPONSE_HEADERS: [&str; 8] = [
    ":status",
    "content-type",
    "date",
    "retry-after",
    "retry-after-ms",
    "x-request-id",
    "x-should-retry",
    "x-envoy-upstream-service-time",
];

pub fn unsupported_operation(provider: &str, op: Operation) -> ApiError {
    ApiError::invalid_request(format!(
        "The {provider} provider does not support {} in this gateway.",
        op.name()
    ))
    .with_code("unsupported_operation")
}

/// Every provider, by LiteLLM prefix.
pub static REGISTRY: &[&dyn Provider] = &[
    &openai::OPENAI,
    &azure::AZURE,
    &anthropic::ANTHROPIC,
    &gemini::GEMINI,
    &bedrock::BEDROCK,
    &openai::GROQ,
    &openai::MISTRAL,
    &openai::DEEPSEEK,
    &openai::XAI,
    &openai::TOGETHER_AI,
    &openai::FIREWORKS_AI,
    &openai::OPENROUTER,
    &openai::CEREBRAS,
    &openai::PERPLEXITY,
    &openai::HOSTED_VLLM,
    &openai::OLLAMA_CHAT,
];

pub fn lookup(prefix: &str) -> Option<&'static dyn Provider> {
    REGISTRY.iter().copied().find(|p| p.name() == prefix)
}

/// Why a LiteLLM model string names no provider Tollgate serves. Its message is the one the
/// configuration reports at the field it came from (`model`, or `custom_llm_provider`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError<'a> {
    /// `custom_llm_provider` names no registered provider.
    UnknownCustom { name: &'a str, model: &'a str },
    /// The model's `provider/` prefix names no registered provider.
    UnknownPrefix {
        prefix: &'a str,
        model: &'a str,
        rest: &'a str,
    },
    /// `provider/` with nothing after it.
    NoModel { model: &'a str, prefix: &'a str },
    /// A bare model name no provider is inferred from.
    NotInferred { model: &'a str },
}

impl std::fmt::Display for ResolveError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ResolveError::UnknownCustom { name, model } => write!(
                f,
                "provider '{name}' is not supported{}; supported: {}",
                provider_hint(name, strip_provider(model, name)),
                provider_names()
            ),
            ResolveError::UnknownPrefix {
                prefix,
                model,
                rest,
            } => write!(
                f,
                "provider '{prefix}' (from '{model}') is not supported{}; supported: {}",
                provider_hint(prefix, rest),
                provider_names()
            ),
            ResolveError::NoModel { model, prefix } => {
                write!(f, "'{model}' names no model after '{prefix}/'")
            }
            ResolveError::NotInferred { model } => write!(
                f,
                "cannot tell which provider serves '{model}': write it as provider/model-id, e.g. openai/{model}"
            ),
        }
    }
}

/// The provider of a LiteLLM model string and the provider's model id: `provider/model-id`
/// split, `custom` (`custom_llm_provider`) overriding the prefix, and a bare model name matched to
/// its provider the way LiteLLM's model map would.
pub fn resolve<'a>(
    model: &'a str,
    custom: Option<&'a str>,
) -> Result<(&'static dyn Provider, &'a str), ResolveError<'a>> {
    if let Some(name) = custom {
        let p = lookup(name).ok_or(ResolveError::UnknownCustom { name, model })?;
        return Ok((p, strip_provider(model, name)));
    }
    if let Some((prefix, rest)) = model.split_once('/') {
        let p = lookup(prefix).ok_or(ResolveError::UnknownPrefix {
            prefix,
            model,
            rest,
        })?;
        if rest.is_empty() {
            return Err(ResolveError::NoModel { model, prefix });
        }
        return Ok((p, rest));
    }
    let inferred: &'static dyn Provider =
        if ["gpt-", "o1", "o3", "o4", "chatgpt-", "text-embedding-"]
            .iter()
            .any(|p| model.starts_with(p))
        {
            &openai::OPENAI
        } else if model.starts_with("claude") {
            &anthropic::ANTHROPIC
        } else if model.starts_with("gemini") {
            &gemini::GEMINI
        } else {
            return Err(ResolveError::NotInferred { model });
        };
    Ok((inferred, model))
}

/// `model` without a leading `name/`.
fn strip_provider<'a>(model: &'a str, name: &str) -> &'a str {
    model
        .strip_prefix(name)
        .and_then(|m| m.strip_prefix('/'))
        .unwrap_or(model)
}

/// What to write instead of an unsupported provider prefix: LiteLLM's `ollama/` (Ollama's
/// completion API) is served as `ollama_chat/`; otherwise the nearest supported name.
fn provider_hint(prefix: &str, model: &str) -> String {
    let suggestion = match prefix {
        "ollama" => Some("ollama_chat"),
        "vllm" => Some("hosted_vllm"),
        _ => crate::typo::closest(prefix, REGISTRY.iter().map(|p| p.name())),
    };
    match suggestion {
        Some("ollama_chat") => {
            format!(" (write ollama_chat/{model}: Tollgate serves Ollama through its chat API)")
        }
        Some(s) => format!(" (did you mean {s}/{model}?)"),
        None => String::new(),
    }
}

fn provider_names() -> String {
    REGISTRY
        .iter()
        .map(|p| p.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fields every translator understands or handles itself.
const ALWAYS_ACCEPTED: [&str; 4] = ["model", "messages", "stream", "stream_options"];

/// Checks the request's top-level parameters against what a provider can honour.
/// Returns the names to drop (when `drop_params`), or a 400 naming the first unsupported one.
pub fn check_params<'r>(
    req: &'r ChatRequest,
    provider: &str,
    supported: &[&str],
    opts: RequestOptions,
) -> Result<Vec<&'r str>, ApiError> {
    let unsupported: Vec<&str> = req
        .fields
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !ALWAYS_ACCEPTED.contains(k) && !supported.contains(k) && req.has(k))
        .collect();
    unsupported_or_dropped(unsupported, provider, &req.model, opts)
}

/// The LiteLLM-style refusal of parameters a provider cannot honour, unless they may be dropped.
pub fn unsupported_or_dropped<'r>(
    unsupported: Vec<&'r str>,
    provider: &str,
    model: &str,
    opts: RequestOptions,
) -> Result<Vec<&'r str>, ApiError> {
    if unsupported.is_empty() || opts.drop_params {
        return Ok(unsupported);
    }
    let list = unsupported.join(", ");
    let first = unsupported.first().copied().unwrap_or_default();
    Err(ApiError::invalid_param(
        first,
        format!(
            "{provider} does not support parameters: {list} (model={model}). To drop unsupported \
             parameters instead of failing, set `litellm_settings: {{drop_params: true}}` in the gateway config."
        ),
    )
    .with_code("unsupported_parameter"))
}

/// Reads a provider error body as JSON, tolerating anything.
pub fn error_json(body: &[u8]) -> Option<serde_json::Value> {
    serde_json::from_slice(body).ok()
}

/// An error body the gateway could not interpret: keep the status, say so without echoing bytes
/// that might carry anything.
pub fn opaque_error(provider: &str, status: u16, body: &[u8]) -> ApiError {
    let text = String::from_utf8_lossy(body);
    let snippet: String = text.chars().take(500).collect();
    ApiError::from_status(
        status,
        format!(
            "{provider} returned HTTP {status}: {}",
            redact(snippet.trim())
        ),
    )
}

/// Maps a provider's status to the one the client sees (Anthropic's 529 "overloaded" is a 503).
pub fn client_status(status: u16) -> u16 {
    match status {
        529 => 503,
        s if (400..600).contains(&s) => s,
        _ => 502,
    }
}

/// Masks anything in a provider's message that looks like a credential (OpenAI echoes part of
/// a rejected key), so provider keys never reach clients.
pub fn redact(message: &str) -> String {
    const PREFIXES: [&str; 10] = [
        "sk-", "sk_", "AIza", "xai-", "gsk_", "pplx-", "fw_", "AKIA", "ASIA", "nvapi-",
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while !rest.is_empty() {
        let start = rest
            .find(|c: char| c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        let (sep, word_and_more) = rest.split_at(start);
        out.push_str(sep);
        let end = word_and_more
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*' | '.')))
            .unwrap_or(word_and_more.len());
        let (word, more) = word_and_more.split_at(end);
        let word_trimmed = word.trim_end_matches('.');
        if PREFIXES.iter().any(|p| word_trimmed.starts_with(p)) && word_trimmed.len() > 8 {
            out.push_str("[redacted]");
            out.push_str(word.get(word_trimmed.len()..).unwrap_or(""));
        } else {
            out.push_str(word);
        }
        rest = more;
        if end == 0 && start == 0 {
            // A lone non-word character; copy it and move on.
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                out.push(c);
            }
            rest = chars.as_str();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_litellm_model_strings() {
        let ok = |model, custom| {
            resolve(model, custom)
                .map(|(p, id)| (p.name(), id))
                .unwrap()
        };
        assert_eq!(ok("openai/gpt-4o", None), ("openai", "gpt-4o"));
        assert_eq!(
            ok("bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0", None),
            ("bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0")
        );
        assert_eq!(
            ok("openrouter/anthropic/claude-3.5-sonnet", None),
            ("openrouter", "anthropic/claude-3.5-sonnet")
        );
        assert_eq!(ok("gpt-4o-mini", None), ("openai", "gpt-4o-mini"));
        assert_eq!(
            ok("claude-sonnet-4-5", None),
            ("anthropic", "claude-sonnet-4-5")
        );
        assert_eq!(ok("gemini-2.5-flash", None), ("gemini", "gemini-2.5-flash"));
        assert_eq!(ok("groq/llama-3.3", Some("groq")), ("groq", "llama-3.3"));
        assert_eq!(
            ok("my-model", Some("hosted_vllm")),
            ("hosted_vllm", "my-model")
        );

        let err = |model, custom| resolve(model, custom).err().unwrap().to_string();
        assert_eq!(
            err("openai/", None),
            "'openai/' names no model after 'openai/'"
        );
        assert_eq!(
            err("llama3", None),
            "cannot tell which provider serves 'llama3': write it as provider/model-id, e.g. openai/llama3"
        );
        let e = err("antropic/claude-3", None);
        assert!(
            e.starts_with("provider 'antropic' (from 'antropic/claude-3') is not supported (did you mean anthropic/claude-3?); supported: openai, azure, anthropic,"),
            "{e}"
        );
        let e = err("ollama/llama3.2", None);
        assert!(
            e.contains("(write ollama_chat/llama3.2: Tollgate serves Ollama through its chat API)"),
            "{e}"
        );
        let e = err("llama3.2", Some("ollama"));
        assert!(
            e.starts_with("provider 'ollama' is not supported (write ollama_chat/llama3.2:"),
            "{e}"
        );
        let e = err("vllm/meta/llama", Some("vllm"));
        assert!(e.contains("(did you mean hosted_vllm/meta/llama?)"), "{e}");
        assert!(!err("zzzz/x", None).contains("did you mean"));
    }

    #[test]
    fn redacts_key_like_words() {
        assert_eq!(
            redact("Incorrect API key provided: sk-proj-abc***************wxyz. See docs."),
            "Incorrect API key provided: [redacted]. See docs."
        );
        assert_eq!(
            redact("key AIzaSyA1234567890abcdef is invalid"),
            "key [redacted] is invalid"
        );
        assert_eq!(
            redact("model claude-sonnet-4-5 is fine, sk- short"),
            "model claude-sonnet-4-5 is fine, sk- short"
        );
        assert_eq!(redact("ünïcode ✓ stays"), "ünïcode ✓ stays");
    }

    #[test]
    fn every_provider_declares_its_response_headers() {
        for p in REGISTRY {
            let kept = p.response_headers();
            for must in [":status", "content-type"] {
                assert!(kept.contains(&must), "{} drops {must}", p.name());
            }
            for name in kept.iter().chain(p.error_type_header().as_ref()) {
                assert_eq!(*name, name.to_ascii_lowercase(), "{}: {name}", p.name());
            }
            // A client never sees the gateway's credentials or its account's details.
            for hidden in [
                "authorization",
                "x-api-key",
                "set-cookie",
                "openai-organization",
            ] {
                assert!(!kept.contains(&hidden), "{} keeps {hidden}", p.name());
            }
        }
        assert_eq!(
            bedrock::BEDROCK.error_type_header(),
            Some("x-amzn-errortype")
        );
        assert_eq!(openai::OPENAI.error_type_header(), None);
    }
}
