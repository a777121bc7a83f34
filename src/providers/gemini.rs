//! Google AI Studio's Gemini API (the Generative Language API, `v1beta`): chat through
//! `models/{model}:generateContent` and `:streamGenerateContent?alt=sse`, embeddings through
//! `:batchEmbedContents`, the key in `x-goog-api-key`.
//!
//! Choices that are not a plain field rename:
//! - Schemas are sent as JSON Schema: tool parameters in `parametersJsonSchema`, `json_schema`
//!   response formats in `responseJsonSchema`, both verbatim. The older `parameters` /
//!   `responseSchema` take an OpenAPI subset that rejects what OpenAI clients send
//!   (`additionalProperties`, `$schema`, `$ref`, type arrays); Gemini 2.0 and later accept the
//!   JSON Schema fields (LiteLLM also uses `responseJsonSchema` from 2.0 on).
//! - `user` has no Gemini equivalent and is dropped silently, as LiteLLM does for every provider
//!   (it never refuses `user`, with or without `drop_params`).
//! - `parallel_tool_calls: false` cannot be honoured with several tools: refused unless
//!   `drop_params` (LiteLLM's rule), since the model may then call several. `true`, a single
//!   tool, or `tool_choice: "none"` needs nothing: it is dropped.
//! - `reasoning_effort` becomes `thinkingConfig` (a `thinkingLevel` for Gemini 3, a
//!   `thinkingBudget` of LiteLLM's sizes before), asking for thought summaries, which come back
//!   as `reasoning_content`.
//! - A `functionCall`'s `thoughtSignature` travels in the tool call id after `__thought__`
//!   (LiteLLM's convention), so an OpenAI client echoing the id returns it; it goes back on the
//!   `functionCall` part. Gemini 3 refuses unsigned calls in history, so calls without one (from
//!   another model) carry Google's documented `skip_thought_signature_validator` placeholder.
//! - A request with only system messages sends them as the user turn: Gemini needs `contents`.
//! - Embedding usage is the response's `usageMetadata.promptTokenCount` when present (the client
//!   sees 0 otherwise): `batchEmbedContents` reports no token count, and the response translation
//!   does not see the input to estimate one. Without it a request is charged its reservation (its
//!   body's bytes as tokens, an upper bound), which `Provider::reports_usage` says is expected.
//! - An invalid key is an HTTP 400 `INVALID_ARGUMENT` with reason `API_KEY_INVALID`; the body is
//!   typed `authentication_error` / `invalid_api_key`, but the HTTP status stays 400 because the
//!   gateway sends response headers before it reads the body.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{
    check_params, client_status, opaque_error, redact, Endpoint, Operation, Params, Provider,
    RequestOptions, StreamTranslator, Target, Translated,
};
use crate::error::{is_context_overflow, ApiError};
use crate::ingress::ChatSink;
use crate::json::{self, Text};
use crate::openai::embeddings::{embedding_usage, embeddings_json};
use crate::openai::request::{
    media_type_from_url, parse_data_url, Content, Message, Part, ResponseFormat, Role, ToolChoice,
};
use crate::openai::response::tool_call_id;
use crate::openai::{
    usage_object, ChatRequest, Choice, Completion, Count, EmbeddingsRequest, FinishReason,
    ResponseCtx, ToolCallOut, Usage, UsageCheck,
};
use crate::stream::sse::SseDecoder;

const NAME: &str = "gemini";
const DEFAULT_BASE: &str = "https://generativelanguage.googleapis.com";
const DEFAULT_VERSION: &str = "v1beta";
/// Separates a tool call id from the thought signature it carries (LiteLLM's convention).
const THOUGHT_SEPARATOR: &str = "__thought__";
/// Google's documented placeholder signature for function calls Gemini did not sign.
const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";
/// `candidateCount` tops out at 8; a candidate index far beyond is a broken upstream, and
/// ignoring it keeps per-choice state small.
const MAX_CHOICES: usize = 16;

/// OpenAI parameters this translator maps (or, for `user`, deliberately drops).
const SUPPORTED: &[&str] = &[
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "n",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
    "user",
    "top_k",
    "thinking",
];

pub struct Gemini;
pub static GEMINI: Gemini = Gemini;

/// The model id as it goes in a path (`models/` is accepted in the config and not doubled).
fn model_id(t: &Target) -> &str {
    t.model.strip_prefix("models/").unwrap_or(&t.model)
}

/// `v1`, `v1beta`, `v1alpha`, `v2`...
fn is_version_segment(segment: &str) -> bool {
    let mut chars = segment.chars();
    chars.next() == Some('v') && chars.next().is_some_and(|c| c.is_ascii_digit())
}

/// Base path plus API version. An `api_base` that already ends in a version (LiteLLM documents
/// `https://.../v1beta`) is used as is; otherwise `api_version` or `v1beta` is appended.
fn versioned_base(t: &Target) -> String {
    let base = t.base_path.trim_end_matches('/');
    if base.rsplit('/').next().is_some_and(is_version_segment) {
        return base.to_string();
    }
    let version = t.api_version.as_deref().unwrap_or(DEFAULT_VERSION);
    format!("{base}/{version}")
}

impl Provider for Gemini {
    fn name(&self) -> &'static str {
        NAME
    }

    fn default_key_env(&self) -> Option<&'static str> {
        Some("GEMINI_API_KEY")
    }

    fn endpoint(&self, p: &Params) -> Result<Endpoint, String> {
        // The id goes into the URL path as is: refuse what would break it.
        let id = p.model.strip_prefix("models/").unwrap_or(p.model);
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "model: '{}' is not a Gemini model id (letters, digits, '-', '_' and '.', e.g. gemini/gemini-2.5-flash)",
                p.model
            ));
        }
        let headers = p
            .api_key
            .map(|k| vec![("x-goog-api-key".to_string(), k.to_string())])
            .unwrap_or_default();
        Ok(Endpoint {
            base_url: p.api_base.unwrap_or(DEFAULT_BASE).to_string(),
            headers,
            signing: None,
        })
    }

    fn reports_usage(&self, op: Operation) -> bool {
        op == Operation::Chat
    }

    fn supports(&self, _op: Operation) -> bool {
        true
    }

    fn path(&self, t: &Target, op: Operation, stream: bool) -> String {
        let method = match (op, stream) {
            (Operation::Chat, false) => "generateContent",
            (Operation::Chat, true) => "streamGenerateContent?alt=sse",
            (Operation::Embeddings, _) => "batchEmbedContents",
        };
        format!("{}/models/{}:{method}", versioned_base(t), model_id(t))
    }

    fn chat_request(
        &self,
        req: &ChatRequest,
        t: &Target,
        opts: RequestOptions,
    ) -> Result<Vec<u8>, ApiError> {
        build_request(req, model_id(t), opts)
    }

    fn chat_response(&self, body: &[u8], ctx: &ResponseCtx) -> Result<Translated, ApiError> {
        translate_response(body, ctx)
    }

    fn chat_stream(&self, ctx: ResponseCtx) -> Box<dyn StreamTranslator> {
        Box::new(GeminiStream::new(ctx))
    }

    fn embeddings_request(&self, req: &EmbeddingsRequest, t: &Target) -> Result<Vec<u8>, ApiError> {
        build_embeddings(req, model_id(t))
    }

    fn embeddings_response(
        &self,
        body: &[u8],
        base64: bool,
        ctx: &ResponseCtx,
    ) -> Result<Translated, ApiError> {
        translate_embeddings(body, base64, ctx)
    }

    fn error(&self, status: u16, _error_type: Option<&str>, body: &[u8]) -> ApiError {
        translate_error(status, body)
    }
}

// ------------------------------------------------------------------------------------------
// Request: OpenAI chat -> GenerateContentRequest

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateContent<'r> {
    contents: Vec<ContentOut<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<PartsOut<'r>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolOut<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'r>>,
    #[serde(skip_serializing_if = "GenerationConfig::is_empty")]
    generation_config: GenerationConfig<'r>,
}

#[derive(Serialize)]
struct ContentOut<'r> {
    role: &'static str,
    parts: Vec<PartOut<'r>>,
}

/// A `Content` without a role (system instruction, embedding input).
#[derive(Serialize)]
struct PartsOut<'r> {
    parts: Vec<PartOut<'r>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum PartOut<'r> {
    Text {
        text: &'r str,
    },
    Inline {
        #[serde(rename = "inlineData")]
        inline_data: Media<'r>,
    },
    File {
        #[serde(rename = "fileData")]
        file_data: FileOut<'r>,
    },
    Call {
        #[serde(rename = "functionCall")]
        function_call: CallOut<'r>,
        #[serde(rename = "thoughtSignature", skip_serializing_if = "Option::is_none")]
        thought_signature: Option<&'r str>,
    },
    Response {
        #[serde(rename = "functionResponse")]
        function_response: ResponseOut<'r>,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Media<'r> {
    mime_type: &'r str,
    data: &'r str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FileOut<'r> {
    mime_type: &'r str,
    file_uri: &'r str,
}

#[derive(Serialize)]
struct CallOut<'r> {
    name: &'r str,
    args: Box<RawValue>,
}

#[derive(Serialize)]
struct ResponseOut<'r> {
    name: &'r str,
    response: ToolOutput<'r>,
}

/// A tool result: Gemini takes a JSON object; anything else is wrapped as `{"content": ...}`.
#[derive(Serialize)]
#[serde(untagged)]
enum ToolOutput<'r> {
    Object(Box<RawValue>),
    Wrapped { content: Cow<'r, str> },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolOut<'r> {
    function_declarations: Vec<FunctionDeclaration<'r>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FunctionDeclaration<'r> {
    name: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters_json_schema: Option<&'r RawValue>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolConfig<'r> {
    function_calling_config: FunctionCallingConfig<'r>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FunctionCallingConfig<'r> {
    mode: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allowed_function_names: Vec<&'r str>,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'r> {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_json_schema: Option<&'r RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_config: Option<ThinkingConfig>,
}

impl GenerationConfig<'_> {
    fn is_empty(&self) -> bool {
        self.temperature.is_none()
            && self.top_p.is_none()
            && self.max_output_tokens.is_none()
            && self.stop_sequences.is_empty()
            && self.candidate_count.is_none()
            && self.seed.is_none()
            && self.presence_penalty.is_none()
            && self.frequency_penalty.is_none()
            && self.response_mime_type.is_none()
            && self.response_json_schema.is_none()
            && self.thinking_config.is_none()
    }
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct ThinkingConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_budget: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_level: Option<&'static str>,
    include_thoughts: bool,
}

/// Contents being assembled: consecutive turns of the same role become one `Content`.
#[derive(Default)]
struct Contents<'r> {
    turns: Vec<ContentOut<'r>>,
}

impl<'r> Contents<'r> {
    fn push(&mut self, role: &'static str, parts: Vec<PartOut<'r>>) {
        if parts.is_empty() {
            return;
        }
        match self.turns.last_mut() {
            Some(last) if last.role == role => last.parts.extend(parts),
            _ => self.turns.push(ContentOut { role, parts }),
        }
    }
}

fn invalid_message(i: usize, detail: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_param("messages", format!("Invalid 'messages[{i}]': {detail}"))
        .with_code("invalid_value")
}

fn build_request(
    req: &ChatRequest,
    model: &str,
    opts: RequestOptions,
) -> Result<Vec<u8>, ApiError> {
    check_params(req, NAME, SUPPORTED, opts)?;
    // Harmless to drop where at most one call can come back: one tool, or none callable.
    let several_callable =
        req.tools.len() > 1 && !matches!(req.tool_choice, Some(ToolChoice::None));
    if req.parallel_tool_calls == Some(false) && several_callable && !opts.drop_params {
        return Err(ApiError::invalid_param(
            "parallel_tool_calls",
            format!(
                "gemini cannot disable parallel function calls when several tools are given (model={}). \
                 Give a single tool, or set `litellm_settings: {{drop_params: true}}` to ignore it.",
                req.model.as_str()
            ),
        )
        .with_code("unsupported_parameter"));
    }
    let thinking = match json::get(&req.fields, "reasoning_effort") {
        Some(raw) => {
            let effort: Option<Text> = json::parse_field("reasoning_effort", raw, "a string")?;
            match effort {
                Some(e) => Some(thinking_config(e.as_str(), model)?),
                None => None,
            }
        }
        // Anthropic's `thinking` (an Anthropic-shaped client's), when no effort was asked.
        None => req.thinking.map(|t| anthropic_thinking(t, model)),
    };

    let mut system: Vec<PartOut> = Vec::new();
    let mut contents = Contents::default();
    // Tool call ids seen so far, to name each tool result as Gemini requires.
    let mut call_names: Vec<(&str, &str)> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        match m.role {
            Role::System | Role::Developer => system.extend(content_parts(&m.content, i, false)?),
            Role::User => contents.push("user", content_parts(&m.content, i, true)?),
            Role::Assistant => {
                let mut parts = content_parts(&m.content, i, false)?;
                for (j, call) in m.tool_calls.iter().flatten().enumerate() {
                    let (args, signature) = call_part(call, i, j, model)?;
                    call_names.push((call.id.as_str(), call.function.name.as_str()));
                    parts.push(PartOut::Call {
                        function_call: CallOut {
                            name: call.function.name.as_str(),
                            args,
                        },
                        thought_signature: signature,
                    });
                }
                contents.push("model", parts);
            }
            Role::Tool | Role::Function => {
                let part = tool_result(m, i, &call_names)?;
                contents.push("user", vec![part]);
            }
        }
    }
    let mut contents = contents.turns;
    let mut system_instruction = (!system.is_empty()).then_some(PartsOut { parts: system });
    if contents.is_empty() {
        // Gemini requires `contents`; a lone system prompt is the user's turn.
        if let Some(s) = system_instruction.take() {
            contents.push(ContentOut {
                role: "user",
                parts: s.parts,
            });
        }
    }

    let tools = tools_out(req);
    let tool_config = if tools.is_empty() {
        None
    } else {
        req.tool_choice.as_ref().map(tool_config)
    };

    let (response_mime_type, response_json_schema) = match &req.response_format {
        Some(ResponseFormat::JsonObject) => (Some("application/json"), None),
        Some(ResponseFormat::JsonSchema { schema, .. }) => (Some("application/json"), *schema),
        Some(ResponseFormat::Text) | None => (None, None),
    };
    let generation_config = GenerationConfig {
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        max_output_tokens: req.max_output_tokens(),
        stop_sequences: req.stop_sequences().iter().map(|s| s.as_str()).collect(),
        candidate_count: req.n,
        seed: req.seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        response_mime_type,
        response_json_schema,
        thinking_config: thinking,
    };

    Ok(json::to_vec_sized(
        &GenerateContent {
            contents,
            system_instruction,
            tools,
            tool_config,
            generation_config,
        },
        req.body_size(),
    ))
}

fn tools_out<'r>(req: &'r ChatRequest) -> Vec<ToolOut<'r>> {
    if req.tools.is_empty() {
        return Vec::new();
    }
    let function_declarations = req
        .tools
        .iter()
        .map(|t| FunctionDeclaration {
            name: t.function.name.as_str(),
            description: t.function.description.as_deref(),
            // `{}` (OpenAI's "no parameters") is not an object schema to Gemini.
            parameters_json_schema: t.function.parameters.filter(|p| {
                !p.get()
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .eq("{}".chars())
            }),
        })
        .collect();
    vec![ToolOut {
        function_declarations,
    }]
}

fn tool_config<'r>(choice: &'r ToolChoice) -> ToolConfig<'r> {
    let (mode, allowed_function_names) = match choice {
        ToolChoice::None => ("NONE", Vec::new()),
        ToolChoice::Auto => ("AUTO", Vec::new()),
        ToolChoice::Required => ("ANY", Vec::new()),
        ToolChoice::Function(name) => ("ANY", vec![name.as_str()]),
    };
    ToolConfig {
        function_calling_config: FunctionCallingConfig {
            mode,
            allowed_function_names,
        },
    }
}

/// A message's content as Gemini parts. Only user turns may carry images; an assistant's refusal
/// carries no text to replay. Empty texts are left out, as Gemini refuses empty text parts.
fn content_parts<'r>(
    content: &'r Content,
    i: usize,
    from_user: bool,
) -> Result<Vec<PartOut<'r>>, ApiError> {
    match content {
        Content::None => Ok(Vec::new()),
        Content::Text(t) => Ok(text_part(t).into_iter().collect()),
        Content::Parts(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for p in parts {
                match p {
                    Part::Text(t) => out.extend(text_part(t)),
                    Part::Image { url, .. } if from_user => out.push(image_part(url.as_str(), i)?),
                    Part::Image { .. } => {
                        return Err(invalid_message(
                            i,
                            "images are only accepted in user messages",
                        ))
                    }
                    Part::File { .. } if from_user => out.push(file_part(p, i)?),
                    Part::File { .. } => {
                        return Err(invalid_message(
                            i,
                            "documents are only accepted in user messages",
                        ))
                    }
                    Part::Other(kind) if !from_user && kind.as_str() == "refusal" => {}
                    Part::Other(kind) => return Err(unsupported_part(i, kind)),
                }
            }
            Ok(out)
        }
    }
}

fn text_part<'r>(t: &'r Text) -> Option<PartOut<'r>> {
    (!t.is_empty()).then_some(PartOut::Text { text: t.as_str() })
}

fn unsupported_part(i: usize, kind: &str) -> ApiError {
    invalid_message(
        i,
        format!("content part type '{kind}' is not supported by the gemini provider in this gateway; use 'text' or 'image_url'"),
    )
}

fn image_part(url: &str, i: usize) -> Result<PartOut<'_>, ApiError> {
    if let Some(d) = parse_data_url(url) {
        return Ok(PartOut::Inline {
            inline_data: Media {
                mime_type: d.media_type,
                data: d.data,
            },
        });
    }
    let scheme = url.split(':').next().unwrap_or("").to_ascii_lowercase();
    match scheme.as_str() {
        "http" | "https" | "gs" => Ok(PartOut::File {
            file_data: FileOut {
                mime_type: media_type_from_url(url),
                file_uri: url,
            },
        }),
        "data" => Err(invalid_message(
            i,
            "image data URLs must be base64: data:<media type>;base64,<data>",
        )),
        _ => Err(invalid_message(
            i,
            "image_url must be an http(s) URL or a base64 data URL",
        )),
    }
}

/// A `file` part (a PDF, a text document) as Gemini's `inlineData`, or `fileData` by URL
/// (http(s), `gs://` or a Files API URI), as images go.
fn file_part<'r>(part: &'r Part, i: usize) -> Result<PartOut<'r>, ApiError> {
    let Part::File { data, url, id, .. } = part else {
        return Err(unsupported_part(i, "file"));
    };
    let media_type = part.file_media_type();
    if let Some(d) = data.as_deref().and_then(parse_data_url) {
        return Ok(PartOut::Inline {
            inline_data: Media {
                mime_type: media_type.unwrap_or(d.media_type),
                data: d.data,
            },
        });
    }
    let uri = url
        .as_deref()
        .or(id.as_deref().filter(|id| id.contains("://")));
    match uri {
        Some(uri) if ["http://", "https://", "gs://"].iter().any(|p| {
            uri.get(..p.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(p))
        }) =>
        {
            Ok(PartOut::File {
                file_data: FileOut {
                    mime_type: media_type.unwrap_or("application/pdf"),
                    file_uri: uri,
                },
            })
        }
        _ => Err(invalid_message(
            i,
            "a file part needs file.file_data as a base64 data URL (data:application/pdf;base64,...) or an http(s) or gs:// file.file_url",
        )),
    }
}

/// A tool call as a `functionCall` part: its arguments as an object, and its thought signature.
fn call_part<'r>(
    call: &'r crate::openai::request::ToolCall,
    i: usize,
    j: usize,
    model: &str,
) -> Result<(Box<RawValue>, Option<&'r str>), ApiError> {
    let arguments = call.function.arguments.as_str().trim();
    let args = if arguments.is_empty() {
        None
    } else {
        serde_json::from_str::<Box<RawValue>>(arguments)
            .ok()
            .filter(|v| v.get().starts_with('{'))
    };
    let args = match args {
        Some(a) => a,
        None if arguments.is_empty() => empty_object(),
        None => {
            return Err(ApiError::invalid_param(
                "messages",
                format!("Invalid 'messages[{i}].tool_calls[{j}].function.arguments': Gemini needs the arguments as a JSON object."),
            )
            .with_code("invalid_value"))
        }
    };
    let signature = match call.id.as_str().split_once(THOUGHT_SEPARATOR) {
        Some((_, sig)) if !sig.is_empty() => Some(sig),
        // Gemini 3 validates the first call of each step; history from another model has none.
        _ if j == 0 && model.contains("gemini-3") => Some(SKIP_SIGNATURE),
        _ => None,
    };
    Ok((args, signature))
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_string()).unwrap_or_else(|_| Box::<RawValue>::default())
}

fn tool_result<'r>(
    m: &'r Message,
    i: usize,
    call_names: &[(&'r str, &'r str)],
) -> Result<PartOut<'r>, ApiError> {
    let by_id = m.tool_call_id.as_ref().and_then(|id| {
        call_names
            .iter()
            .rev()
            .find(|(call_id, _)| *call_id == id.as_str())
            .map(|(_, name)| *name)
    });
    let name = match (by_id, &m.name) {
        (Some(name), _) => name,
        (None, Some(name)) if !name.is_empty() => name.as_str(),
        (None, _) => {
            return Err(match &m.tool_call_id {
                Some(id) => invalid_message(
                    i,
                    format!(
                    "tool_call_id '{}' does not match a tool call of an earlier assistant message",
                    id.as_str()
                ),
                ),
                None => invalid_message(i, "a tool message needs 'tool_call_id'"),
            })
        }
    };
    let text: Cow<str> = match &m.content {
        Content::None => Cow::Borrowed(""),
        Content::Text(t) => Cow::Borrowed(t.as_str()),
        Content::Parts(parts) => {
            let mut joined = String::new();
            for p in parts {
                match p {
                    Part::Text(t) => joined.push_str(t),
                    Part::Image { .. } => {
                        return Err(invalid_message(i, "tool results take text only"))
                    }
                    Part::File { .. } => return Err(unsupported_part(i, "file")),
                    Part::Other(kind) => return Err(unsupported_part(i, kind)),
                }
            }
            Cow::Owned(joined)
        }
    };
    let trimmed = text.trim_start();
    let object = if trimmed.starts_with('{') {
        serde_json::from_str::<Box<RawValue>>(trimmed).ok()
    } else {
        None
    };
    let response = match object {
        Some(o) => ToolOutput::Object(o),
        None => ToolOutput::Wrapped { content: text },
    };
    Ok(PartOut::Response {
        function_response: ResponseOut { name, response },
    })
}

/// Anthropic's `thinking` in Gemini's terms: a budget as it is (Gemini 2.5) or as a level
/// (Gemini 3: up to 2,048 tokens low, else high); disabled as the least thinking the model
/// allows; adaptive as the model's own dynamic default. Thoughts are asked for whenever it thinks.
fn anthropic_thinking(t: crate::openai::request::Thinking, model: &str) -> ThinkingConfig {
    match (t.mode, t.budget_tokens) {
        ("disabled", _) => thinking_config("none", model).unwrap_or(ThinkingConfig {
            thinking_budget: Some(0),
            thinking_level: None,
            include_thoughts: false,
        }),
        ("enabled", Some(budget)) if model.contains("gemini-3") => ThinkingConfig {
            thinking_budget: None,
            thinking_level: Some(if budget <= 2048 { "low" } else { "high" }),
            include_thoughts: true,
        },
        ("enabled", Some(budget)) => ThinkingConfig {
            thinking_budget: Some(u32::try_from(budget).unwrap_or(u32::MAX).min(32_768)),
            thinking_level: None,
            include_thoughts: true,
        },
        _ => ThinkingConfig {
            thinking_budget: None,
            thinking_level: None,
            include_thoughts: true,
        },
    }
}

fn thinking_config(effort: &str, model: &str) -> Result<ThinkingConfig, ApiError> {
    if !matches!(effort, "none" | "minimal" | "low" | "medium" | "high") {
        return Err(ApiError::invalid_param(
            "reasoning_effort",
            format!("Invalid value for 'reasoning_effort': '{effort}'. Supported values are: 'none', 'minimal', 'low', 'medium', and 'high'."),
        )
        .with_code("invalid_value"));
    }
    let include_thoughts = effort != "none";
    if model.contains("gemini-3") {
        // Gemini 3 takes levels; only Flash has `minimal`, and Pro only low/high (3.1 Pro adds medium).
        let flash = model.contains("flash");
        let level = match effort {
            "none" | "minimal" if flash => "minimal",
            "none" | "minimal" | "low" => "low",
            "medium" if flash || model.contains("gemini-3.1-pro") => "medium",
            _ => "high",
        };
        return Ok(ThinkingConfig {
            thinking_budget: None,
            thinking_level: Some(level),
            include_thoughts,
        });
    }
    let budget = match effort {
        "none" => 0,
        "minimal" if model.contains("flash-lite") => 512,
        "minimal" => 128,
        "low" => 1024,
        "medium" => 2048,
        _ => 4096,
    };
    Ok(ThinkingConfig {
        thinking_budget: Some(budget),
        thinking_level: None,
        include_thoughts,
    })
}

// ------------------------------------------------------------------------------------------
// Response: GenerateContentResponse -> chat.completion

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponseIn<'a> {
    #[serde(default, borrow)]
    candidates: Option<Vec<CandidateIn<'a>>>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedbackIn>,
    #[serde(default, borrow)]
    usage_metadata: Option<&'a RawValue>,
    /// Only in a stream: an error after the 200 was sent.
    #[serde(default)]
    error: Option<GoogleError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CandidateIn<'a> {
    #[serde(default, borrow)]
    content: Option<ContentIn<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Text<'a>>,
    /// Omitted for candidate 0, as proto3 JSON omits zero values.
    #[serde(default)]
    index: Option<usize>,
}

#[derive(Deserialize)]
struct ContentIn<'a> {
    #[serde(default, borrow)]
    parts: Option<Vec<PartIn<'a>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartIn<'a> {
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default)]
    thought: Option<bool>,
    #[serde(default, borrow)]
    function_call: Option<FunctionCallIn<'a>>,
    #[serde(default, borrow)]
    thought_signature: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct FunctionCallIn<'a> {
    #[serde(borrow)]
    name: Text<'a>,
    #[serde(default, borrow)]
    args: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedbackIn {
    #[serde(default)]
    block_reason: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct UsageIn {
    #[serde(default)]
    prompt_token_count: Count,
    #[serde(default)]
    candidates_token_count: Count,
    #[serde(default)]
    thoughts_token_count: Count,
    #[serde(default)]
    cached_content_token_count: Count,
    #[serde(default)]
    tool_use_prompt_token_count: Count,
}

impl UsageIn {
    /// Thoughts are billed as output and reported apart from `candidatesTokenCount`; tool-use
    /// prompts (grounding, code execution) are billed as input. `Err` when a count cannot be
    /// charged, `Ok(None)` when none was given (Gemini's first chunks may carry only `trafficType`).
    fn to_usage(self) -> Result<Option<Usage>, ()> {
        let mut c = UsageCheck::default();
        let thoughts = c.take(self.thoughts_token_count);
        let usage = Usage {
            prompt_tokens: c
                .take(self.prompt_token_count)
                .saturating_add(c.take(self.tool_use_prompt_token_count)),
            completion_tokens: c.take(self.candidates_token_count).saturating_add(thoughts),
            cached_tokens: c.take(self.cached_content_token_count),
            cache_creation_tokens: 0,
            reasoning_tokens: thoughts,
        };
        c.result(usage)
    }
}

/// A `usageMetadata` object: `Ok(None)` when absent, `Err` when it cannot be charged.
fn read_usage(raw: Option<&RawValue>) -> Result<Option<Usage>, ()> {
    match usage_object::<UsageIn>(raw)? {
        None => Ok(None),
        Some(u) => u.to_usage(),
    }
}

fn map_finish(reason: Option<&str>, has_tool_calls: bool) -> FinishReason {
    match reason {
        Some("MAX_TOKENS") => FinishReason::Length,
        Some(
            "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION",
        ) => FinishReason::ContentFilter,
        _ if has_tool_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// The OpenAI id of a Gemini function call: unique within the response, carrying the
/// thought signature when there is one.
fn call_id(ctx: &ResponseCtx, n: usize, signature: Option<&Text>) -> String {
    let base = tool_call_id(&ctx.id, n);
    match signature {
        Some(sig) if !sig.is_empty() => format!("{base}{THOUGHT_SEPARATOR}{}", sig.as_str()),
        _ => base,
    }
}

fn arguments(call: &FunctionCallIn) -> String {
    call.args
        .map(|a| a.get().to_string())
        .filter(|a| a.trim() != "null")
        .unwrap_or_else(|| "{}".to_string())
}

fn candidate_index(c: &CandidateIn, position: usize) -> Option<usize> {
    Some(c.index.unwrap_or(position)).filter(|&i| i < MAX_CHOICES)
}

/// serde's derived structs also accept arrays; Gemini's answers are objects.
fn is_object(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Parses one GenerateContentResponse (an object).
fn parse_response(body: &[u8]) -> Option<ResponseIn<'_>> {
    if !is_object(body) {
        return None;
    }
    serde_json::from_slice(body).ok()
}

fn unreadable(what: &str) -> ApiError {
    ApiError::bad_gateway(format!(
        "gemini returned {what} that is not a GenerateContentResponse"
    ))
}

fn translate_response(body: &[u8], ctx: &ResponseCtx) -> Result<Translated, ApiError> {
    let resp = parse_response(body).ok_or_else(|| unreadable("a response"))?;
    if let Some(e) = resp.error {
        return Err(google_error(502, e));
    }
    if resp.candidates.is_none() && resp.prompt_feedback.is_none() {
        return Err(unreadable("a JSON object without candidates"));
    }
    let mut choices: Vec<Choice> = Vec::new();
    let mut calls = 0usize;
    for (position, c) in resp.candidates.iter().flatten().enumerate() {
        let Some(index) = candidate_index(c, position) else {
            continue;
        };
        if choices.len() <= index {
            choices.resize_with(index.saturating_add(1), Choice::default);
        }
        let Some(choice) = choices.get_mut(index) else {
            continue;
        };
        let mut text: Option<String> = None;
        let mut reasoning: Option<String> = None;
        for p in c
            .content
            .as_ref()
            .and_then(|c| c.parts.as_ref())
            .into_iter()
            .flatten()
        {
            if let Some(call) = &p.function_call {
                choice.tool_calls.push(ToolCallOut {
                    id: call_id(ctx, calls, p.thought_signature.as_ref()),
                    name: call.name.as_str().to_string(),
                    arguments: arguments(call),
                });
                calls = calls.saturating_add(1);
            } else if let Some(t) = &p.text {
                if t.is_empty() && p.thought_signature.is_some() {
                    // Gemini 3 parks a signature on an empty text part; it is not an answer.
                    continue;
                }
                let target = if p.thought == Some(true) {
                    &mut reasoning
                } else {
                    &mut text
                };
                target.get_or_insert_with(String::new).push_str(t);
            }
        }
        choice.content = text;
        choice.reasoning = reasoning.filter(|r| !r.is_empty());
        choice.finish_reason = Some(map_finish(
            c.finish_reason.as_deref(),
            !choice.tool_calls.is_empty(),
        ));
    }
    if choices.is_empty() {
        // No candidate: the prompt itself was blocked (promptFeedback.blockReason).
        let blocked = resp
            .prompt_feedback
            .as_ref()
            .is_some_and(|f| f.block_reason.is_some());
        choices.push(Choice {
            finish_reason: Some(if blocked {
                FinishReason::ContentFilter
            } else {
                FinishReason::Stop
            }),
            ..Default::default()
        });
    }
    for c in &mut choices {
        c.finish_reason.get_or_insert(FinishReason::Stop);
    }
    let usage = read_usage(resp.usage_metadata).ok().flatten();
    let completion = Completion {
        choices,
        usage: usage.unwrap_or_default(),
    };
    Ok(Translated {
        body: completion.render(ctx),
        usage,
    })
}

// ------------------------------------------------------------------------------------------
// Stream: `alt=sse`, each event a whole GenerateContentResponse

pub struct GeminiStream {
    sse: SseDecoder,
    state: StreamState,
}

struct StreamState {
    writer: Box<dyn ChatSink>,
    /// The totals reported so far (each chunk repeats them), and whether one could not be read.
    usage: Option<Usage>,
    usage_bad: bool,
    /// Function calls so far, all candidates: numbers their ids.
    calls: usize,
    /// Per choice index: function calls so far (their `index` in the OpenAI deltas), once seen.
    choices: Vec<Option<usize>>,
    saw_response: bool,
}

impl GeminiStream {
    pub fn new(ctx: ResponseCtx) -> Self {
        GeminiStream {
            sse: SseDecoder::default(),
            state: StreamState {
                writer: crate::ingress::sink(ctx),
                usage: None,
                usage_bad: false,
                calls: 0,
                choices: Vec::new(),
                saw_response: false,
            },
        }
    }
}

impl StreamState {
    fn on_event(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.writer.is_done() || data.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let resp = match parse_response(data) {
            Some(r) => r,
            None => {
                self.writer.error(out, &unreadable("a stream event"));
                return;
            }
        };
        self.saw_response = true;
        if let Some(e) = resp.error {
            self.writer.error(out, &google_error(502, e));
            return;
        }
        // Each chunk reports the totals so far.
        match read_usage(resp.usage_metadata) {
            Ok(Some(u)) => self.usage = Some(u),
            Ok(None) => {}
            Err(()) => self.usage_bad = true,
        }
        let candidates = resp.candidates.unwrap_or_default();
        for (position, c) in candidates.iter().enumerate() {
            if let Some(index) = candidate_index(c, position) {
                self.on_candidate(index, c, out);
            }
        }
        let blocked = resp
            .prompt_feedback
            .as_ref()
            .is_some_and(|f| f.block_reason.is_some());
        if candidates.is_empty() && blocked {
            self.open(0, out);
            self.writer.finish(out, 0, FinishReason::ContentFilter);
        }
    }

    /// Marks a choice as begun (its role chunk first, as OpenAI sends it); returns its call count.
    fn open(&mut self, index: usize, out: &mut Vec<u8>) -> usize {
        if self.choices.len() <= index {
            self.choices.resize(index.saturating_add(1), None);
        }
        match self.choices.get_mut(index) {
            Some(Some(n)) => *n,
            Some(slot) => {
                *slot = Some(0);
                self.writer.start(out, index);
                0
            }
            None => 0,
        }
    }

    fn on_candidate(&mut self, index: usize, c: &CandidateIn, out: &mut Vec<u8>) {
        let mut tool_index = self.open(index, out);
        for p in c
            .content
            .as_ref()
            .and_then(|c| c.parts.as_ref())
            .into_iter()
            .flatten()
        {
            if let Some(call) = &p.function_call {
                // Gemini streams each function call whole: its start, then all its arguments.
                let id = call_id(self.writer.ctx(), self.calls, p.thought_signature.as_ref());
                self.writer
                    .tool_call_start(out, index, tool_index, &id, call.name.as_str());
                self.writer
                    .tool_call_args(out, index, tool_index, &arguments(call));
                self.calls = self.calls.saturating_add(1);
                tool_index = tool_index.saturating_add(1);
            } else if let Some(t) = &p.text {
                if p.thought == Some(true) {
                    self.writer.reasoning(out, index, t);
                } else {
                    self.writer.text(out, index, t);
                }
            }
        }
        if let Some(slot) = self.choices.get_mut(index) {
            *slot = Some(tool_index);
        }
        if let Some(reason) = c.finish_reason.as_deref() {
            self.writer
                .finish(out, index, map_finish(Some(reason), tool_index > 0));
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.writer.is_done() {
            return;
        }
        if !self.saw_response {
            self.writer.error(
                out,
                &ApiError::bad_gateway("gemini ended the stream without sending a response"),
            );
            return;
        }
        if self.choices.iter().all(Option::is_none) {
            self.open(0, out);
        }
        // Gemini's stream has no terminator but the end of its body: a body that ended whole
        // (this is not called when it is cut off) finishes every choice it left open.
        for index in 0..self.choices.len() {
            if let Some(Some(calls)) = self.choices.get(index).copied() {
                if !self.writer.has_finished(index) {
                    let reason = if calls > 0 {
                        FinishReason::ToolCalls
                    } else {
                        FinishReason::Stop
                    };
                    self.writer.finish(out, index, reason);
                }
            }
        }
        if let Some(usage) = self.final_usage() {
            self.writer.usage(out, &usage);
        }
        self.writer.done(out);
    }

    /// Some candidate finished (its last chunk, which carries the final usage, arrived), or the
    /// prompt was blocked: the answer is whole.
    fn answered(&self) -> bool {
        (0..self.choices.len()).any(|i| self.writer.has_finished(i))
    }

    /// Each chunk reports the totals so far: the last one's are final once a candidate finished
    /// (Gemini's last chunk), or the body ended.
    fn final_usage(&self) -> Option<Usage> {
        (!self.usage_bad && (self.writer.completed() || self.answered()))
            .then_some(self.usage)
            .flatten()
    }
}

impl StreamTranslator for GeminiStream {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let state = &mut self.state;
        let result = self.sse.feed(chunk, |ev| state.on_event(ev.data, out));
        if result.is_err() {
            state.writer.error(
                out,
                &ApiError::bad_gateway(
                    "gemini sent a stream event larger than the gateway accepts",
                ),
            );
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let state = &mut self.state;
        self.sse.finish(|ev| state.on_event(ev.data, out));
        state.finish(out);
    }

    fn final_usage(&self) -> Option<Usage> {
        self.state.final_usage()
    }

    fn completed(&self) -> bool {
        self.state.writer.completed() || self.state.answered()
    }
}

// ------------------------------------------------------------------------------------------
// Embeddings: batchEmbedContents

#[derive(Serialize)]
struct BatchEmbed<'r> {
    requests: Vec<EmbedRequest<'r>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedRequest<'r> {
    model: &'r str,
    content: PartsOut<'r>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u64>,
}

fn build_embeddings(req: &EmbeddingsRequest, model: &str) -> Result<Vec<u8>, ApiError> {
    let texts = req.texts.as_ref().ok_or_else(|| {
        ApiError::invalid_param(
            "input",
            "gemini embeddings take text: send a string or an array of strings, not token arrays.",
        )
        .with_code("invalid_value")
    })?;
    let resource = format!("models/{model}");
    let requests = texts
        .iter()
        .map(|t| EmbedRequest {
            model: &resource,
            content: PartsOut {
                parts: vec![PartOut::Text { text: t.as_str() }],
            },
            output_dimensionality: req.dimensions,
        })
        .collect();
    Ok(json::to_vec(&BatchEmbed { requests }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchEmbedIn<'a> {
    #[serde(borrow)]
    embeddings: Vec<EmbeddingIn<'a>>,
    #[serde(default, borrow)]
    usage_metadata: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct EmbeddingIn<'a> {
    #[serde(borrow)]
    values: &'a RawValue,
}

fn translate_embeddings(
    body: &[u8],
    base64: bool,
    ctx: &ResponseCtx,
) -> Result<Translated, ApiError> {
    let bad = || ApiError::bad_gateway("gemini returned embeddings the gateway could not read");
    if !is_object(body) {
        return Err(bad());
    }
    let resp: BatchEmbedIn = serde_json::from_slice(body).map_err(|_| bad())?;
    let vectors: Vec<&RawValue> = resp.embeddings.iter().map(|e| e.values).collect();
    if vectors.iter().any(|v| !v.get().starts_with('[')) {
        return Err(bad());
    }
    let usage = read_usage(resp.usage_metadata)
        .ok()
        .flatten()
        .map(|u| embedding_usage(u.prompt_tokens));
    let tokens = usage.map_or(0, |u| u.prompt_tokens);
    Ok(Translated {
        body: embeddings_json(&vectors, base64, tokens, ctx)?,
        usage,
    })
}

// ------------------------------------------------------------------------------------------
// Errors: google.rpc.Status as JSON

#[derive(Deserialize)]
struct GoogleError {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    details: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: GoogleError,
}

/// The HTTP status Google pairs with each canonical code.
fn status_for_code(code: &str) -> Option<u16> {
    Some(match code {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "ABORTED" | "ALREADY_EXISTS" => 409,
        "RESOURCE_EXHAUSTED" => 429,
        "CANCELLED" | "INTERNAL" | "UNKNOWN" | "DATA_LOSS" => 500,
        "UNIMPLEMENTED" => 501,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => return None,
    })
}

/// `fallback` is the status to use when the error names none (the HTTP status, or 502 for an
/// error inside a 200 stream).
fn google_error(fallback: u16, e: GoogleError) -> ApiError {
    let numeric = e
        .code
        .as_ref()
        .and_then(serde_json::Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c));
    let status = e
        .status
        .as_deref()
        .and_then(status_for_code)
        .or(numeric)
        .map_or_else(|| client_status(fallback), client_status);
    let message = redact(
        e.message
            .as_deref()
            .filter(|m| !m.is_empty())
            .unwrap_or(e.status.as_deref().unwrap_or("gemini returned an error")),
    );
    let key_invalid =
        e.details.iter().flatten().any(|d| {
            d.get("reason").and_then(serde_json::Value::as_str) == Some("API_KEY_INVALID")
        });
    if key_invalid {
        return ApiError::authentication(message).with_code("invalid_api_key");
    }
    let overflow = status == 400 && is_context_overflow(&message);
    let err = ApiError::from_status(status, message);
    if overflow {
        err.with_code("context_length_exceeded")
    } else {
        err
    }
}

fn translate_error(status: u16, body: &[u8]) -> ApiError {
    let status = client_status(status);
    // Google answers with one Status object; its non-SSE streams wrap it in an array.
    let parsed = if is_object(body) {
        serde_json::from_slice::<ErrorEnvelope>(body)
            .ok()
            .map(|e| e.error)
    } else {
        serde_json::from_slice::<Vec<Box<RawValue>>>(body)
            .ok()
            .and_then(|v| v.into_iter().next())
            .filter(|first| is_object(first.get().as_bytes()))
            .and_then(|first| serde_json::from_str::<ErrorEnvelope>(first.get()).ok())
            .map(|e| e.error)
    };
    match parsed {
        Some(e) => google_error(status, e),
        None => opaque_error(NAME, status, body),
    }
}

#[cfg(test)]
mod tests;
