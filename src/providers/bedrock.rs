//! AWS Bedrock through the Converse / ConverseStream API (`POST /model/{modelId}/converse` and
//! `/converse-stream`), one request shape for every Bedrock chat model.
//!
//! Authentication is either a Bedrock API key (`api_key`: `Authorization: Bearer`) or SigV4,
//! which Envoy's `aws_request_signing` filter adds on the deployment's cluster: the signature
//! covers the body hash, and a wasm filter cannot set headers once it has seen the body.
//!
//! Choices the OpenAI API leaves open:
//! - `tool_choice: "none"`: the tools are not sent, so the model cannot call them. When the
//!   conversation already holds tool calls or results, Bedrock requires a `toolConfig`; then the
//!   tools are sent without a `toolChoice` (Bedrock has no "none"), and the model may still call one.
//! - Tool calls in the history without `tools` in the request: the tool specs are synthesized from
//!   the names in the history (empty object schemas), since Bedrock requires them.
//! - JSON mode (`response_format` `json_object` / `json_schema`) uses a forced tool named
//!   [`JSON_TOOL`] whose input schema is the requested one; its input comes back as the message
//!   content with `finish_reason: "stop"`. The name is reserved: a client tool with it is refused.
//! - `user` goes to `requestMetadata.user` (Bedrock's invocation-log metadata), with characters
//!   Bedrock does not allow there replaced by `_`.
//! - Tool results are sent as text blocks, which every Bedrock model with tool use accepts.
//! - `parallel_tool_calls` is accepted and dropped, `false` included: Converse has no such switch
//!   (LiteLLM accepts it too, and LangChain's structured output sends `false` with its one tool).
//! - `cache_control` (Anthropic's, as LiteLLM carries it on content parts, messages and tools)
//!   becomes a `{"cachePoint":{"type":"default"}}` block after what it marks: a system or message
//!   block, a message's last block (a tool result's when on a `tool` message), a tool. Bedrock
//!   reports the cache's reads and writes (`cacheReadInputTokens`, `cacheWriteInputTokens`),
//!   which are priced as cache reads and writes.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::anthropic::{claude_thinking, ThinkingOut};
use super::{
    check_params, error_json, opaque_error, redact, unsupported_or_dropped, AwsCredentials,
    Endpoint, Operation, Params, Provider, RequestOptions, Signing, StreamTranslator, Target,
    Translated,
};
use crate::error::{is_context_overflow, ApiError};
use crate::ingress::ChatSink;
use crate::json;
use crate::openai::request::{
    parse_data_url, Content, Message, Part, ResponseFormat, Role, ToolChoice,
};
use crate::openai::{
    usage_object, ChatRequest, Choice, Completion, Count, FinishReason, ResponseCtx, ToolCallOut,
    Usage, UsageCheck,
};
use crate::stream::eventstream::{EventStreamDecoder, Message as Frame};

pub struct Bedrock;
pub static BEDROCK: Bedrock = Bedrock;

/// The tool that carries JSON-mode answers (the name LiteLLM uses for the same technique).
pub const JSON_TOOL: &str = "json_tool_call";

/// OpenAI parameters with a Converse equivalent, or none needed: `n` only with its default value
/// (checked separately), `parallel_tool_calls` dropped whatever its value.
const SUPPORTED: [&str; 11] = [
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "user",
    "n",
    "parallel_tool_calls",
];

/// Where the region comes from when `aws_region_name` is absent (read by the config loader).
const REGION_SOURCES: &str = "AWS_REGION_NAME, AWS_REGION or AWS_DEFAULT_REGION";

/// LiteLLM's `bedrock/converse/<model>` names the Converse route explicitly; it is the only one here.
fn model_id(model: &str) -> &str {
    model.strip_prefix("converse/").unwrap_or(model)
}

/// Percent-encodes a model id for the URL path: everything but RFC 3986 unreserved characters,
/// so the `:` of versions and the `:` and `/` of ARNs stay inside one path segment.
fn encode_path_segment(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            for nibble in [b >> 4, b & 0x0f] {
                out.push(char::from(
                    HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                ));
            }
        }
    }
    out
}

impl Provider for Bedrock {
    fn name(&self) -> &'static str {
        "bedrock"
    }

    // No default key variable: a deployment without `api_key` is signed with AWS credentials,
    // and reading `AWS_BEARER_TOKEN_BEDROCK` implicitly would silently switch it to Bearer.

    fn endpoint(&self, p: &Params) -> Result<Endpoint, String> {
        let model = model_id(p.model);
        if model.starts_with("invoke/") {
            return Err("bedrock/invoke/ models are not supported: Tollgate calls Bedrock's Converse API; write the model as bedrock/<model-id> or bedrock/converse/<model-id>".into());
        }
        if model.is_empty() {
            return Err("model names no Bedrock model id after bedrock/".into());
        }
        let region = p.aws_region.map(str::trim).filter(|r| !r.is_empty());
        if let Some(r) = region {
            if !r
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(format!(
                    "aws_region_name '{r}' is not an AWS region name (like us-east-1)"
                ));
            }
        }
        let explicit = p
            .aws_runtime_endpoint
            .or(p.api_base)
            .map(|e| e.trim_end_matches('/'))
            .filter(|e| !e.is_empty());
        if let Some(key) = p.api_key {
            let base_url = match (explicit, region) {
                (Some(e), _) => e.to_string(),
                (None, Some(r)) => format!("https://bedrock-runtime.{r}.amazonaws.com"),
                (None, None) => return Err(format!("aws_region_name is required for bedrock/ models (the region of the Bedrock runtime endpoint, e.g. us-east-1), or set {} or aws_bedrock_runtime_endpoint", REGION_SOURCES)),
            };
            return Ok(Endpoint {
                base_url,
                headers: vec![("authorization".into(), format!("Bearer {key}"))],
                signing: None,
            });
        }
        let Some(region) = region else {
            return Err(format!("aws_region_name is required for bedrock/ models: Envoy signs each request with SigV4 for that region (e.g. us-east-1); or set {REGION_SOURCES} in the environment, or set api_key to a Bedrock API key"));
        };
        let base_url = explicit
            .map(str::to_string)
            .unwrap_or_else(|| format!("https://bedrock-runtime.{region}.amazonaws.com"));
        Ok(Endpoint {
            base_url,
            headers: Vec::new(),
            signing: Some(Signing {
                service: "bedrock",
                region: region.to_string(),
                credentials: p
                    .aws_credentials
                    .clone()
                    .unwrap_or(AwsCredentials::DefaultChain),
            }),
        })
    }

    fn stream_media_type(&self) -> &'static str {
        "application/vnd.amazon.eventstream"
    }

    /// One completion per request: `n` > 1 is refused, or dropped with `drop_params`.
    fn output_choices(&self, _requested: u64) -> u64 {
        1
    }

    fn path(&self, t: &Target, _op: Operation, stream: bool) -> String {
        let action = if stream {
            "converse-stream"
        } else {
            "converse"
        };
        format!(
            "{}/model/{}/{action}",
            t.base_path,
            encode_path_segment(model_id(&t.model))
        )
    }

    fn chat_request(
        &self,
        req: &ChatRequest,
        t: &Target,
        opts: RequestOptions,
    ) -> Result<Vec<u8>, ApiError> {
        let claude = is_claude(&t.model);
        check_bedrock_params(req, claude, opts)?;
        let mut body = build_request(req, claude)?;
        if let Some(accepted) = self.anthropic_betas(&t.model) {
            body.additional.anthropic_beta = super::beta_flags(accepted, opts.anthropic_beta);
        }
        Ok(json::to_vec_sized(&body, req.body_size()))
    }

    /// Claude on Bedrock takes the beta flags AWS documents for it in
    /// `additionalModelRequestFields.anthropic_beta`, some only from a model version on (and
    /// a family); no other Bedrock model takes any.
    fn anthropic_betas(&self, model: &str) -> Option<&'static [&'static str]> {
        Some(if is_claude(model) {
            claude_betas(model)
        } else {
            &[]
        })
    }

    fn chat_response(&self, body: &[u8], ctx: &ResponseCtx) -> Result<Translated, ApiError> {
        let (completion, usage) = parse_response(body)?;
        Ok(Translated {
            body: completion.render(ctx),
            usage,
        })
    }

    fn chat_stream(&self, ctx: ResponseCtx) -> Box<dyn StreamTranslator> {
        Box::new(ConverseStream::new(ctx))
    }

    /// Bedrock names its error type in a header (`x-amzn-errortype`,
    /// `ThrottlingException:http://internal.amazon.com/coral/...`) as well as in the body.
    fn error_type_header(&self) -> Option<&'static str> {
        Some("x-amzn-errortype")
    }

    /// Bedrock's status line does not always say what the error is (quota errors come as 400,
    /// ModelNotReady as 429): the error type decides, as it does for the body.
    fn error_status(&self, status: u16, error_type: Option<&str>) -> u16 {
        match error_type.map(short_error_type).filter(|t| !t.is_empty()) {
            Some(kind) => bedrock_error(status, Some(kind), "").status,
            None if status == 401 => GATEWAY_CREDENTIALS_STATUS,
            None => super::client_status(status),
        }
    }

    fn rejects_gateway_credentials(&self, status: u16, error_type: Option<&str>) -> bool {
        match error_type.map(short_error_type).filter(|t| !t.is_empty()) {
            Some(kind) => is_credentials_error(kind),
            None => status == 401,
        }
    }

    fn error(&self, status: u16, error_type: Option<&str>, body: &[u8]) -> ApiError {
        let parsed = error_json(body);
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(name))
                .and_then(|v| v.as_str())
        };
        let message = field("message").or_else(|| field("Message"));
        let kind = error_type
            .filter(|t| !t.is_empty())
            .or_else(|| field("__type"))
            .map(short_error_type);
        if kind.is_none() && status == 401 {
            return credentials_error("Unauthorized", message.unwrap_or_default());
        }
        if message.is_none() && kind.is_none() {
            return opaque_error("Bedrock", super::client_status(status), body);
        }
        bedrock_error(status, kind, message.unwrap_or_default())
    }
}

// ---------------------------------------------------------------------------------------------
// Request

/// Claude on Bedrock: it takes Anthropic's own `thinking` and `top_k` as additional fields.
fn is_claude(model: &str) -> bool {
    model.contains("anthropic.claude")
}

// The `anthropic_beta` flags Bedrock takes for Claude (AWS's Claude Messages request reference;
// the versions and families each needs as LiteLLM's Bedrock filter has them), by model tier.
/// Every tier takes the flags of the tiers before it, so each tier's list is a prefix of this
/// one (in this order: a flag's index is its bit in `RequestOptions::anthropic_beta`).
const CLAUDE_BETAS: &[&str] = &[
    "computer-use-2024-10-22",
    "computer-use-2025-01-24",
    "token-efficient-tools-2025-02-19",
    "output-128k-2025-02-19",
    // Claude 4
    "interleaved-thinking-2025-05-14",
    "dev-full-thinking-2025-05-14",
    "context-1m-2025-08-07",
    // Claude 4.5 Haiku
    "context-management-2025-06-27",
    "computer-use-2025-11-24",
    // Claude 4.5 Sonnet
    "tool-search-tool-2025-10-19",
    "tool-examples-2025-10-29",
    // Claude 4.5 Opus
    "effort-2025-11-24",
];
const CLAUDE_3_BETAS: &[&str] = CLAUDE_BETAS.split_at(4).0;
const CLAUDE_4_BETAS: &[&str] = CLAUDE_BETAS.split_at(7).0;
const CLAUDE_45_HAIKU_BETAS: &[&str] = CLAUDE_BETAS.split_at(9).0;
const CLAUDE_45_SONNET_BETAS: &[&str] = CLAUDE_BETAS.split_at(11).0;
const CLAUDE_45_OPUS_BETAS: &[&str] = CLAUDE_BETAS;

/// The Claude version of a Bedrock model id, as (major, minor): `claude-3-5-sonnet-...` and
/// `claude-sonnet-4-5-...` alike. `None` when it names none.
fn claude_version(model: &str) -> Option<(u8, u8)> {
    let (_, rest) = model.split_once("claude-")?;
    let mut parts = rest
        .split(['-', ':'])
        .skip_while(|p| matches!(*p, "opus" | "sonnet" | "haiku" | "instant"));
    let major = parts.next()?.parse::<u8>().ok()?;
    // A minor version is one digit; a date (`20250514`) is not one.
    let minor = parts
        .next()
        .filter(|p| p.len() == 1)
        .and_then(|p| p.parse::<u8>().ok())
        .unwrap_or(0);
    Some((major, minor))
}

fn claude_betas(model: &str) -> &'static [&'static str] {
    let family = ["opus", "sonnet", "haiku"]
        .into_iter()
        .find(|f| model.contains(f));
    match (claude_version(model), family) {
        (Some(v), Some("opus")) if v >= (4, 5) => CLAUDE_45_OPUS_BETAS,
        (Some(v), Some("haiku")) if v >= (4, 5) => CLAUDE_45_HAIKU_BETAS,
        (Some(v), _) if v >= (4, 5) => CLAUDE_45_SONNET_BETAS,
        (Some(v), _) if v >= (4, 0) => CLAUDE_4_BETAS,
        _ => CLAUDE_3_BETAS,
    }
}

fn check_bedrock_params(
    req: &ChatRequest,
    claude: bool,
    opts: RequestOptions,
) -> Result<(), ApiError> {
    let mut supported = SUPPORTED.to_vec();
    if claude {
        supported.extend(["top_k", "thinking", "reasoning_effort"]);
    }
    // With drop_params forced on, check_params only lists what Bedrock cannot take.
    let mut unsupported = check_params(
        req,
        "bedrock",
        &supported,
        RequestOptions {
            drop_params: true,
            ..Default::default()
        },
    )?;
    if req.n.is_some_and(|n| n != 1) {
        unsupported.push("n");
    }
    unsupported_or_dropped(unsupported, "bedrock", &req.model, opts).map(|_| ())
}

#[derive(Serialize)]
struct ConverseRequest<'r> {
    messages: Vec<Turn<'r>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<SystemBlock<'r>>,
    #[serde(
        rename = "inferenceConfig",
        skip_serializing_if = "InferenceConfig::is_empty"
    )]
    inference_config: InferenceConfig<'r>,
    #[serde(rename = "toolConfig", skip_serializing_if = "Option::is_none")]
    tool_config: Option<ToolConfig<'r>>,
    #[serde(rename = "requestMetadata", skip_serializing_if = "Option::is_none")]
    request_metadata: Option<RequestMetadata>,
    /// The model's own fields: Claude's `thinking` and `top_k`.
    #[serde(
        rename = "additionalModelRequestFields",
        skip_serializing_if = "Additional::is_empty"
    )]
    additional: Additional,
}

#[derive(Serialize, Default)]
struct Additional {
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<ThinkingOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u64>,
    /// The client's `anthropic-beta` flags Claude on Bedrock takes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    anthropic_beta: Vec<&'static str>,
}

impl Additional {
    fn is_empty(&self) -> bool {
        self.thinking.is_none() && self.top_k.is_none() && self.anthropic_beta.is_empty()
    }
}

#[derive(Serialize)]
struct Turn<'r> {
    role: &'static str,
    content: Vec<Block<'r>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum SystemBlock<'r> {
    Text(&'r str),
    CachePoint(CachePoint),
}

/// A content block; serde's external tagging gives Bedrock's `{"text": ...}`, `{"image": ...}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Block<'r> {
    Text(&'r str),
    Image(Image<'r>),
    ToolUse(ToolUse<'r>),
    ToolResult(ToolResult<'r>),
    ReasoningContent(Reasoning<'r>),
    Document(Document<'r>),
    CachePoint(CachePoint),
}

#[derive(Serialize)]
struct Document<'r> {
    format: &'static str,
    name: String,
    source: ImageSource<'r>,
}

/// A cache checkpoint: what precedes it is cached.
#[derive(Serialize)]
struct CachePoint {
    #[serde(rename = "type")]
    kind: &'static str,
}

const CACHE_POINT: CachePoint = CachePoint { kind: "default" };

/// Where the client asked for cache checkpoints (`cache_control`): per message, on the message
/// itself and on which of its parts; per tool. Read from the raw body only when it has any.
#[derive(Debug, Default)]
struct CacheMarks {
    messages: Vec<MessageMarks>,
    tools: Vec<bool>,
}

#[derive(Debug, Default)]
struct MessageMarks {
    whole: bool,
    parts: Vec<bool>,
}

impl CacheMarks {
    fn read(req: &ChatRequest) -> CacheMarks {
        use serde::de::IgnoredAny;
        #[derive(Deserialize)]
        struct Marked<'a> {
            #[serde(default)]
            cache_control: Option<IgnoredAny>,
            #[serde(default, borrow)]
            content: Option<&'a RawValue>,
        }
        #[derive(Deserialize)]
        struct Part {
            #[serde(default)]
            cache_control: Option<IgnoredAny>,
        }
        let marked = |name: &str| {
            json::get(&req.fields, name).filter(|raw| {
                memchr::memmem::find(raw.get().as_bytes(), b"\"cache_control\"").is_some()
            })
        };
        let mut marks = CacheMarks::default();
        if let Some(raw) = marked("messages") {
            let messages: Vec<Marked> = serde_json::from_str(raw.get()).unwrap_or_default();
            marks.messages = messages
                .into_iter()
                .map(|m| MessageMarks {
                    whole: m.cache_control.is_some(),
                    parts: m
                        .content
                        .and_then(|c| serde_json::from_str::<Vec<Part>>(c.get()).ok())
                        .unwrap_or_default()
                        .into_iter()
                        .map(|p| p.cache_control.is_some())
                        .collect(),
                })
                .collect();
        }
        if let Some(raw) = marked("tools") {
            let tools: Vec<Part> = serde_json::from_str(raw.get()).unwrap_or_default();
            marks.tools = tools
                .into_iter()
                .map(|t| t.cache_control.is_some())
                .collect();
        }
        marks
    }

    fn message(&self, at: usize) -> Option<&MessageMarks> {
        self.messages.get(at)
    }

    fn part(&self, at: usize, part: usize) -> bool {
        self.message(at)
            .and_then(|m| m.parts.get(part))
            .copied()
            .unwrap_or(false)
    }

    fn whole(&self, at: usize) -> bool {
        self.message(at).is_some_and(|m| m.whole)
    }

    /// Anything on the message: where one block stands for all of it (a tool result).
    fn any(&self, at: usize) -> bool {
        self.message(at)
            .is_some_and(|m| m.whole || m.parts.contains(&true))
    }

    fn tool(&self, i: usize) -> bool {
        self.tools.get(i).copied().unwrap_or(false)
    }
}

/// Appends a checkpoint after the blocks so far, unless there are none or one ends them.
fn cache_point(out: &mut Vec<Block<'_>>) {
    if !matches!(out.last(), None | Some(Block::CachePoint(_))) {
        out.push(Block::CachePoint(CACHE_POINT));
    }
}

/// An earlier turn's reasoning, sent back as it came: Claude checks the signature.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Reasoning<'r> {
    ReasoningText(ReasoningTextOut<'r>),
    RedactedContent(&'r str),
}

#[derive(Serialize)]
struct ReasoningTextOut<'r> {
    text: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<&'r str>,
}

#[derive(Serialize)]
struct Image<'r> {
    format: &'static str,
    source: ImageSource<'r>,
}

/// Blobs travel as base64 strings in Bedrock's JSON protocol: the data URL's payload as is.
#[derive(Serialize)]
struct ImageSource<'r> {
    bytes: &'r str,
}

#[derive(Serialize)]
struct ToolUse<'r> {
    #[serde(rename = "toolUseId")]
    id: &'r str,
    name: &'r str,
    input: JsonDoc<'r>,
}

#[derive(Serialize)]
struct ToolResult<'r> {
    #[serde(rename = "toolUseId")]
    id: &'r str,
    content: Vec<Block<'r>>,
}

/// A JSON document from the request, or one the gateway supplies.
#[derive(Serialize)]
#[serde(untagged)]
enum JsonDoc<'r> {
    Raw(&'r RawValue),
    Owned(serde_json::Value),
}

fn empty_object_schema<'r>() -> JsonDoc<'r> {
    JsonDoc::Owned(serde_json::json!({"type": "object", "properties": {}}))
}

#[derive(Serialize, Default)]
struct InferenceConfig<'r> {
    #[serde(rename = "maxTokens", skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(rename = "topP", skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(rename = "stopSequences", skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<&'r str>,
}

impl InferenceConfig<'_> {
    fn is_empty(&self) -> bool {
        self.max_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.stop_sequences.is_empty()
    }
}

#[derive(Serialize)]
struct ToolConfig<'r> {
    tools: Vec<ToolEntry<'r>>,
    #[serde(rename = "toolChoice", skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceOut<'r>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum ToolEntry<'r> {
    ToolSpec(ToolSpec<'r>),
    CachePoint(CachePoint),
}

#[derive(Serialize)]
struct ToolSpec<'r> {
    name: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'r str>,
    #[serde(rename = "inputSchema")]
    input_schema: InputSchema<'r>,
}

#[derive(Serialize)]
struct InputSchema<'r> {
    json: JsonDoc<'r>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct NamedTool<'r> {
    name: &'r str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum ToolChoiceOut<'r> {
    Auto(Empty),
    Any(Empty),
    Tool(NamedTool<'r>),
}

#[derive(Serialize)]
struct RequestMetadata {
    user: String,
}

fn messages_error(message: impl Into<String>) -> ApiError {
    ApiError::invalid_param("messages", message)
}

/// Bedrock's image formats, from the data URL's media type.
fn image_format(media_type: &str) -> Option<&'static str> {
    match media_type.to_ascii_lowercase().as_str() {
        "image/png" => Some("png"),
        "image/jpeg" | "image/jpg" => Some("jpeg"),
        "image/gif" => Some("gif"),
        "image/webp" => Some("webp"),
        _ => None,
    }
}

fn image_block<'r>(url: &'r str, at: usize) -> Result<Block<'r>, ApiError> {
    let Some(data) = parse_data_url(url) else {
        return Err(messages_error(format!(
            "messages[{at}]: Bedrock takes images as bytes only; send the image as a base64 data URL (data:image/png;base64,...) instead of a link"
        )));
    };
    let format = image_format(data.media_type).ok_or_else(|| {
        messages_error(format!(
            "messages[{at}]: image type '{}' is not supported by Bedrock; use image/png, image/jpeg, image/gif or image/webp",
            data.media_type
        ))
    })?;
    Ok(Block::Image(Image {
        format,
        source: ImageSource { bytes: data.data },
    }))
}

/// Bedrock's document formats, from the media type.
fn document_format(media_type: &str) -> Option<&'static str> {
    Some(match media_type.to_ascii_lowercase().as_str() {
        "application/pdf" => "pdf",
        "text/csv" => "csv",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "text/html" => "html",
        "text/plain" => "txt",
        "text/markdown" => "md",
        _ => return None,
    })
}

/// A document name Bedrock accepts (letters, digits, single spaces, hyphens, parentheses,
/// square brackets): the file's name without its extension, other characters as hyphens; or
/// `document-<message>-<part>` when it has none.
fn document_name(filename: Option<&str>, at: usize, part: usize) -> String {
    let stem = filename
        .map(|f| f.rsplit_once('.').map_or(f, |(stem, _)| stem))
        .unwrap_or("");
    let mut name = String::with_capacity(stem.len().min(100));
    for c in stem.chars().take(100) {
        let c = match c {
            c if c.is_ascii_alphanumeric() || "-()[]".contains(c) => c,
            c if c.is_whitespace() => ' ',
            _ => '-',
        };
        if !(c == ' ' && (name.is_empty() || name.ends_with(' '))) {
            name.push(c);
        }
    }
    let name = name.trim_end();
    if name.is_empty() {
        format!("document-{at}-{part}")
    } else {
        name.to_string()
    }
}

/// A `file` part as a Bedrock document: its bytes only, as Converse takes them.
fn document_block<'r>(part: &'r Part, at: usize, i: usize) -> Result<Block<'r>, ApiError> {
    let Part::File { data, filename, .. } = part else {
        return Err(messages_error(format!("messages[{at}]: not a document")));
    };
    let Some(bytes) = data.as_deref().and_then(parse_data_url) else {
        return Err(messages_error(format!(
            "messages[{at}].content[{i}].file: Bedrock takes documents as bytes only; send the document as base64 (a Messages `document` with a `base64` source, or `file.file_data` as a data URL) instead of a URL or a file id"
        )));
    };
    let media_type = part.file_media_type().unwrap_or(bytes.media_type);
    let format = document_format(media_type).ok_or_else(|| {
        messages_error(format!(
            "messages[{at}].content[{i}].file: document type '{media_type}' is not supported by Bedrock; use PDF, CSV, DOC, DOCX, XLS, XLSX, HTML, TXT or MD"
        ))
    })?;
    Ok(Block::Document(Document {
        format,
        name: document_name(filename.as_deref(), at, i),
        source: ImageSource { bytes: bytes.data },
    }))
}

/// Text and image parts of a message as Bedrock blocks. Whitespace-only text is skipped where
/// `skip_blank` (Bedrock rejects blank text blocks, and OpenAI clients send `""` beside tool calls).
fn content_blocks<'r>(
    content: &'r Content,
    at: usize,
    skip_blank: bool,
    marks: Option<&CacheMarks>,
    out: &mut Vec<Block<'r>>,
) -> Result<(), ApiError> {
    let keep = |t: &str| !(skip_blank && t.trim().is_empty());
    match content {
        Content::None => {}
        Content::Text(t) => {
            if keep(t) {
                out.push(Block::Text(t.as_str()));
            }
        }
        Content::Parts(parts) => {
            for (i, part) in parts.iter().enumerate() {
                match part {
                    Part::Text(t) => {
                        if keep(t) {
                            out.push(Block::Text(t.as_str()));
                        }
                    }
                    Part::Image { url, .. } => out.push(image_block(url.as_str(), at)?),
                    Part::File { .. } => out.push(document_block(part, at, i)?),
                    Part::Other(kind) => {
                        return Err(messages_error(format!(
                            "messages[{at}]: content parts of type '{}' are not supported by Bedrock in this gateway",
                            kind.as_str()
                        )))
                    }
                }
                if marks.is_some_and(|m| m.part(at, i)) {
                    cache_point(out);
                }
            }
        }
    }
    if marks.is_some_and(|m| m.whole(at)) {
        cache_point(out);
    }
    Ok(())
}

fn system_text<'r>(
    m: &'r Message,
    at: usize,
    marks: &CacheMarks,
    out: &mut Vec<SystemBlock<'r>>,
) -> Result<(), ApiError> {
    let push = |out: &mut Vec<SystemBlock<'r>>, t: &'r str| {
        if !t.trim().is_empty() {
            out.push(SystemBlock::Text(t));
        }
    };
    let cache_point = |out: &mut Vec<SystemBlock<'r>>| {
        if matches!(out.last(), Some(SystemBlock::Text(_))) {
            out.push(SystemBlock::CachePoint(CACHE_POINT));
        }
    };
    match &m.content {
        Content::None => {}
        Content::Text(t) => push(out, t.as_str()),
        Content::Parts(parts) => {
            for (i, part) in parts.iter().enumerate() {
                match part {
                    Part::Text(t) => push(out, t.as_str()),
                    _ => {
                        return Err(messages_error(format!(
                            "messages[{at}]: system messages may only contain text"
                        )))
                    }
                }
                if marks.part(at, i) {
                    cache_point(out);
                }
            }
        }
    }
    if marks.whole(at) {
        cache_point(out);
    }
    Ok(())
}

/// Appends blocks to the conversation, merging consecutive turns of the same role (Bedrock
/// requires alternating roles; OpenAI allows repeats, and several tool results form one turn).
fn push_turn<'r>(turns: &mut Vec<Turn<'r>>, role: &'static str, blocks: Vec<Block<'r>>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => last.content.extend(blocks),
        _ => turns.push(Turn {
            role,
            content: blocks,
        }),
    }
}

fn tool_arguments<'r>(args: &'r str, at: usize) -> Result<JsonDoc<'r>, ApiError> {
    if args.trim().is_empty() {
        return Ok(JsonDoc::Owned(serde_json::json!({})));
    }
    serde_json::from_str::<&RawValue>(args)
        .map(JsonDoc::Raw)
        .map_err(|_| {
            messages_error(format!(
                "messages[{at}]: tool_calls[].function.arguments must be a JSON document"
            ))
        })
}

struct Conversation<'r> {
    turns: Vec<Turn<'r>>,
    system: Vec<SystemBlock<'r>>,
    /// Names of the tools the history calls, for synthesizing specs when none are given.
    called_tools: Vec<&'r str>,
    has_tool_blocks: bool,
}

fn conversation<'r>(
    messages: &'r [Message],
    marks: &CacheMarks,
) -> Result<Conversation<'r>, ApiError> {
    let mut c = Conversation {
        turns: Vec::with_capacity(messages.len()),
        system: Vec::new(),
        called_tools: Vec::new(),
        has_tool_blocks: false,
    };
    for (at, m) in messages.iter().enumerate() {
        match m.role {
            Role::System | Role::Developer => system_text(m, at, marks, &mut c.system)?,
            Role::User => {
                let mut blocks = Vec::new();
                content_blocks(&m.content, at, false, Some(marks), &mut blocks)?;
                push_turn(&mut c.turns, "user", blocks);
            }
            Role::Assistant => {
                let mut blocks = Vec::new();
                // Reasoning first, as the model produced it.
                for t in m.thinking_blocks.iter().flatten() {
                    match (t.kind.as_str(), &t.data) {
                        ("redacted_thinking", Some(data)) => blocks.push(Block::ReasoningContent(
                            Reasoning::RedactedContent(data.as_str()),
                        )),
                        ("thinking", _) => {
                            blocks.push(Block::ReasoningContent(Reasoning::ReasoningText(
                                ReasoningTextOut {
                                    text: t.thinking.as_deref().unwrap_or(""),
                                    signature: t.signature.as_deref().filter(|s| !s.is_empty()),
                                },
                            )))
                        }
                        _ => {}
                    }
                }
                content_blocks(&m.content, at, true, None, &mut blocks)?;
                for call in m.tool_calls.iter().flatten() {
                    let name = call.function.name.as_str();
                    if !c.called_tools.contains(&name) {
                        c.called_tools.push(name);
                    }
                    blocks.push(Block::ToolUse(ToolUse {
                        id: call.id.as_str(),
                        name,
                        input: tool_arguments(call.function.arguments.as_str(), at)?,
                    }));
                    c.has_tool_blocks = true;
                }
                // A checkpoint marks the end of what it caches: after the tool calls too.
                let marked = marks.any(at);
                if marked {
                    cache_point(&mut blocks);
                }
                push_turn(&mut c.turns, "assistant", blocks);
            }
            Role::Tool => {
                let id = m.tool_call_id.as_ref().ok_or_else(|| {
                    messages_error(format!(
                        "messages[{at}]: a tool message needs tool_call_id"
                    ))
                })?;
                let mut content = Vec::new();
                content_blocks(&m.content, at, false, None, &mut content)?;
                c.has_tool_blocks = true;
                // A tool result holds no checkpoint: one marking it (or its parts) follows it.
                let mut blocks = vec![Block::ToolResult(ToolResult {
                    id: id.as_str(),
                    content,
                })];
                if marks.any(at) {
                    cache_point(&mut blocks);
                }
                push_turn(&mut c.turns, "user", blocks);
            }
            Role::Function => {
                return Err(messages_error(format!(
                    "messages[{at}]: role 'function' is deprecated and not supported for Bedrock; use 'tool' messages with tool_call_id"
                )))
            }
        }
    }
    Ok(c)
}

fn tool_config<'r, 'a: 'r>(
    req: &'r ChatRequest<'a>,
    c: &Conversation<'r>,
    marks: &CacheMarks,
) -> Result<Option<ToolConfig<'r>>, ApiError> {
    if req
        .tools
        .iter()
        .any(|t| t.function.name.as_str() == JSON_TOOL)
    {
        return Err(ApiError::invalid_param(
            "tools",
            format!("the tool name '{JSON_TOOL}' is reserved by the gateway for JSON mode on Bedrock; rename the tool"),
        ));
    }
    let user_spec = |t: &'r crate::openai::request::Tool<'a>| {
        ToolEntry::ToolSpec(ToolSpec {
            name: t.function.name.as_str(),
            description: t
                .function
                .description
                .as_ref()
                .map(|d| d.as_str())
                .filter(|d| !d.is_empty()),
            input_schema: InputSchema {
                json: t
                    .function
                    .parameters
                    .filter(|p| !json::is_null(p))
                    .map(JsonDoc::Raw)
                    .unwrap_or_else(empty_object_schema),
            },
        })
    };
    // The client's tools, each followed by a checkpoint where it asked for one.
    let user_tools = || {
        let mut out = Vec::with_capacity(req.tools.len() + 1);
        for (i, t) in req.tools.iter().enumerate() {
            out.push(user_spec(t));
            if marks.tool(i) {
                out.push(ToolEntry::CachePoint(CACHE_POINT));
            }
        }
        out
    };
    let choice_none = req.tool_choice == Some(ToolChoice::None);
    let mut tools: Vec<ToolEntry<'r>> = if choice_none {
        Vec::new()
    } else {
        user_tools()
    };
    let offers_user_tools = !tools.is_empty();

    let json_schema = match &req.response_format {
        Some(ResponseFormat::JsonObject) => {
            Some(JsonDoc::Owned(serde_json::json!({"type": "object"})))
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => Some(
            schema
                .filter(|s| !json::is_null(s))
                .map(JsonDoc::Raw)
                .unwrap_or_else(|| JsonDoc::Owned(serde_json::json!({"type": "object"}))),
        ),
        Some(ResponseFormat::Text) | None => None,
    };
    let json_mode = json_schema.is_some();
    if let Some(schema) = json_schema {
        tools.push(ToolEntry::ToolSpec(ToolSpec {
            name: JSON_TOOL,
            description: Some("Respond with a JSON document that follows this schema."),
            input_schema: InputSchema { json: schema },
        }));
    }
    if tools.is_empty() && c.has_tool_blocks {
        // Bedrock refuses toolUse/toolResult blocks without a toolConfig.
        tools = if req.tools.is_empty() {
            c.called_tools
                .iter()
                .map(|name| {
                    ToolEntry::ToolSpec(ToolSpec {
                        name,
                        description: None,
                        input_schema: InputSchema {
                            json: empty_object_schema(),
                        },
                    })
                })
                .collect()
        } else {
            user_tools()
        };
    }
    if tools.is_empty() {
        return Ok(None);
    }
    let named = |name: &'r str| ToolChoiceOut::Tool(NamedTool { name });
    let tool_choice = match (&req.tool_choice, json_mode) {
        (Some(ToolChoice::Function(name)), _) if offers_user_tools => Some(named(name.as_str())),
        // The answer must come through some tool: the JSON one, or one of the client's.
        (_, true) if offers_user_tools => Some(ToolChoiceOut::Any(Empty {})),
        (_, true) => Some(named(JSON_TOOL)),
        (Some(ToolChoice::Auto), false) => Some(ToolChoiceOut::Auto(Empty {})),
        (Some(ToolChoice::Required), false) => Some(ToolChoiceOut::Any(Empty {})),
        _ => None,
    };
    Ok(Some(ToolConfig { tools, tool_choice }))
}

/// Bedrock's requestMetadata values allow `[a-zA-Z0-9\s._:/=+$@-]`, at most 256 characters.
fn metadata_value(s: &str) -> String {
    s.chars()
        .take(256)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c.is_ascii_whitespace() || "._:/=+$@-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `claude`: the model takes Claude's own `thinking` (with `reasoning_effort` mapped to it as for
/// Anthropic's API, [`claude_thinking`]) and `top_k`; other models get neither, even where
/// `drop_params` let them through.
fn build_request<'r>(req: &'r ChatRequest, claude: bool) -> Result<ConverseRequest<'r>, ApiError> {
    let marks = CacheMarks::read(req);
    let c = conversation(&req.messages, &marks)?;
    let tool_config = tool_config(req, &c, &marks)?;
    Ok(ConverseRequest {
        messages: c.turns,
        system: c.system,
        inference_config: InferenceConfig {
            max_tokens: req.max_output_tokens(),
            temperature: req.temperature,
            top_p: req.top_p,
            stop_sequences: req
                .stop_sequences()
                .iter()
                .map(|s| s.as_str())
                .filter(|s| !s.is_empty())
                .collect(),
        },
        tool_config,
        request_metadata: req
            .user
            .as_ref()
            .filter(|u| !u.is_empty())
            .map(|u| RequestMetadata {
                user: metadata_value(u),
            }),
        additional: Additional {
            thinking: claude
                .then(|| claude_thinking(req, req.max_output_tokens()))
                .flatten()
                .map(|t| ThinkingOut {
                    kind: t.mode,
                    budget_tokens: t.budget_tokens,
                }),
            top_k: req.top_k.filter(|_| claude),
            anthropic_beta: Vec::new(),
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Response

#[derive(Deserialize, Default)]
#[serde(default)]
struct TokenUsage {
    #[serde(rename = "inputTokens")]
    input: Count,
    #[serde(rename = "outputTokens")]
    output: Count,
    #[serde(rename = "cacheReadInputTokens")]
    cache_read: Count,
    #[serde(rename = "cacheWriteInputTokens")]
    cache_write: Count,
}

impl TokenUsage {
    /// Bedrock counts cache reads and writes apart from `inputTokens`; OpenAI's prompt_tokens
    /// includes them. `Err` when a count cannot be charged, `Ok(None)` when none was given.
    fn to_openai(&self) -> Result<Option<Usage>, ()> {
        let mut c = UsageCheck::default();
        let read = c.take(self.cache_read);
        let write = c.take(self.cache_write);
        let usage = Usage {
            prompt_tokens: c
                .take(self.input)
                .saturating_add(read)
                .saturating_add(write),
            completion_tokens: c.take(self.output),
            cached_tokens: read,
            cache_creation_tokens: write,
            reasoning_tokens: 0,
        };
        c.result(usage)
    }
}

/// A `usage` object: `Ok(None)` when absent, `Err` when it cannot be charged.
fn read_usage(raw: Option<&RawValue>) -> Result<Option<Usage>, ()> {
    match usage_object::<TokenUsage>(raw)? {
        None => Ok(None),
        Some(u) => u.to_openai(),
    }
}

#[derive(Deserialize)]
struct ConverseResponse<'a> {
    #[serde(borrow)]
    output: OutputIn<'a>,
    #[serde(rename = "stopReason", default)]
    stop_reason: Option<String>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct OutputIn<'a> {
    #[serde(default, borrow)]
    message: Option<MessageIn<'a>>,
}

#[derive(Deserialize)]
struct MessageIn<'a> {
    #[serde(default, borrow)]
    content: Vec<BlockIn<'a>>,
}

#[derive(Deserialize)]
struct BlockIn<'a> {
    #[serde(default)]
    text: Option<String>,
    #[serde(rename = "toolUse", default, borrow)]
    tool_use: Option<ToolUseIn<'a>>,
    #[serde(rename = "reasoningContent", default)]
    reasoning: Option<ReasoningIn>,
}

#[derive(Deserialize)]
struct ToolUseIn<'a> {
    #[serde(rename = "toolUseId", default)]
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default, borrow)]
    input: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ReasoningIn {
    #[serde(rename = "reasoningText", default)]
    text: Option<ReasoningText>,
    /// Reasoning the model returns encrypted (Claude's redacted thinking), base64.
    #[serde(rename = "redactedContent", default)]
    redacted: Option<String>,
}

#[derive(Deserialize)]
struct ReasoningText {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    signature: Option<String>,
}

/// Maps Bedrock's stopReason; `tool_use` whose only tool was the JSON-mode one is a plain stop.
fn finish_reason(stop: Option<&str>, client_tool_calls: bool) -> FinishReason {
    match stop {
        Some("max_tokens") | Some("model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") if client_tool_calls => FinishReason::ToolCalls,
        Some("guardrail_intervened") | Some("content_filtered") => FinishReason::ContentFilter,
        _ if client_tool_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// The translated completion and the usage to charge (`None`: missing or unusable).
fn parse_response(body: &[u8]) -> Result<(Completion, Option<Usage>), ApiError> {
    let r: ConverseResponse = serde_json::from_slice(body).map_err(|_| {
        ApiError::bad_gateway("Bedrock returned a response that is not a Converse result")
    })?;
    let mut text = String::new();
    let mut has_text = false;
    let mut reasoning = String::new();
    let mut signature: Option<String> = None;
    let mut redacted = Vec::new();
    let mut json_answer: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in r.output.message.map(|m| m.content).unwrap_or_default() {
        if let Some(t) = block.text {
            text.push_str(&t);
            has_text = true;
        }
        if let Some(r) = block.reasoning {
            if let Some(t) = r.text {
                reasoning.push_str(t.text.as_deref().unwrap_or(""));
                signature = t.signature.or(signature);
            }
            redacted.extend(r.redacted);
        }
        if let Some(call) = block.tool_use {
            let arguments = call
                .input
                .map(|i| i.get().to_string())
                .unwrap_or_else(|| "{}".into());
            if call.name == JSON_TOOL {
                json_answer
                    .get_or_insert_with(String::new)
                    .push_str(&arguments);
            } else {
                tool_calls.push(ToolCallOut {
                    id: call.id,
                    name: call.name,
                    arguments,
                });
            }
        }
    }
    let finish = finish_reason(r.stop_reason.as_deref(), !tool_calls.is_empty());
    let content = match json_answer {
        // In JSON mode the tool input is the answer; any preamble would break the JSON.
        Some(j) => Some(j),
        None if has_text || tool_calls.is_empty() => Some(text),
        None => None,
    };
    let usage = read_usage(r.usage).ok().flatten();
    let completion = Completion::single(
        Choice {
            content,
            reasoning: (!reasoning.is_empty() || signature.is_some()).then_some(reasoning),
            reasoning_signature: signature,
            redacted_reasoning: redacted,
            tool_calls,
            finish_reason: Some(finish),
        },
        usage.unwrap_or_default(),
    );
    Ok((completion, usage))
}

// ---------------------------------------------------------------------------------------------
// Errors

/// `ValidationException:http://internal.amazon.com/coral/...` or `com.amazon...#ValidationException`
/// -> `ValidationException`.
fn short_error_type(t: &str) -> &str {
    let t = t.split(':').next().unwrap_or(t);
    t.rsplit('#').next().unwrap_or(t).trim()
}

/// Masks Bedrock API keys (`ABSK...` long-term, `bedrock-api-key-...` short-term) on top of the
/// shared redaction.
fn redact_bedrock(message: &str) -> String {
    let masked: Vec<String> = message
        .split(' ')
        .map(|word| {
            let core = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-');
            if (core.starts_with("ABSK") || core.starts_with("bedrock-api-key-")) && core.len() > 12
            {
                word.replace(core, "[redacted]")
            } else {
                word.to_string()
            }
        })
        .collect();
    redact(&masked.join(" "))
}

/// Signature errors echo the canonical request, which may carry a session token: keep only the
/// first paragraph of any message.
fn clean_message(message: &str) -> String {
    let first = message.split("\n\n").next().unwrap_or(message).trim();
    redact_bedrock(first)
}

/// What the client sees when Bedrock refuses the gateway's own credentials: a gateway failure,
/// never an authentication error that would blame the client's key (which never reaches Bedrock).
const GATEWAY_CREDENTIALS_STATUS: u16 = 502;

/// AWS's answers to a request whose signature or credentials it cannot accept: unknown or
/// expired keys, a wrong secret, a missing or malformed `Authorization`.
fn is_credentials_error(kind: &str) -> bool {
    [
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignature",
        "IncompleteSignatureException",
        "MissingAuthenticationTokenException",
        "MissingAuthenticationToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    ]
    .iter()
    .any(|k| kind.eq_ignore_ascii_case(k))
}

/// Bedrock refused the gateway's AWS credentials (`kind`, AWS's `message` already cleaned).
fn credentials_error(kind: &str, message: &str) -> ApiError {
    let detail = if message.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {message}")
    };
    ApiError::new(
        GATEWAY_CREDENTIALS_STATUS,
        "api_error",
        format!(
            "Bedrock rejected the gateway's AWS credentials ({detail}). The gateway's operator must \
             fix this deployment's AWS credentials (aws_access_key_id / aws_secret_access_key, \
             aws_role_name, or Envoy's AWS environment); the client's API key is not the problem."
        ),
    )
    .with_code("gateway_credentials_rejected")
}

/// An OpenAI-shaped error from Bedrock's error type (header or stream exception) and message.
fn bedrock_error(status: u16, kind: Option<&str>, message: &str) -> ApiError {
    let message = clean_message(message);
    let kind = kind.unwrap_or("");
    let is = |name: &str| kind.eq_ignore_ascii_case(name);
    let text = |default_status: u16| {
        if message.is_empty() {
            format!("Bedrock returned HTTP {default_status} ({kind})")
        } else {
            message.clone()
        }
    };
    if is("ValidationException") {
        let mut e = ApiError::invalid_request(text(400));
        if is_context_overflow(&e.message) {
            e.code = Some("context_length_exceeded".into());
        }
        e
    } else if is("AccessDeniedException") {
        if message.starts_with("Authentication failed") {
            // A Bedrock API key Bedrock does not accept. The status left (403) was decided from
            // the error type alone, before this body was read.
            ApiError::permission(format!(
                "Bedrock rejected the gateway's Bedrock API key ({message}). The gateway's \
                 operator must fix this deployment's api_key; the client's API key is not the problem."
            ))
            .with_code("gateway_credentials_rejected")
        } else {
            ApiError::permission(text(403))
        }
    } else if is_credentials_error(kind) {
        credentials_error(kind, &message)
    } else if is("ResourceNotFoundException") {
        ApiError::not_found(text(404))
    } else if is("ThrottlingException") || is("ServiceQuotaExceededException") {
        ApiError::rate_limit(text(429))
    } else if is("ModelTimeoutException") {
        ApiError::new(408, "timeout_error", text(408))
    } else if is("InternalServerException")
        || is("ModelErrorException")
        || is("ModelStreamErrorException")
    {
        ApiError::server(text(500))
    } else if is("ServiceUnavailableException") || is("ModelNotReadyException") {
        ApiError::new(503, "api_error", text(503))
    } else if is("ConflictException") {
        ApiError::new(409, "invalid_request_error", text(409))
    } else {
        let s = super::client_status(status);
        let mut e = ApiError::from_status(s, text(s));
        if s == 400 && is_context_overflow(&e.message) {
            e.code = Some("context_length_exceeded".into());
        }
        e
    }
}

// ---------------------------------------------------------------------------------------------
// Stream

#[derive(Deserialize, Default)]
#[serde(default)]
struct StreamEvent<'a> {
    #[serde(rename = "contentBlockIndex")]
    index: u64,
    #[serde(borrow)]
    start: Option<BlockStart<'a>>,
    #[serde(borrow)]
    delta: Option<BlockDelta<'a>>,
    #[serde(rename = "stopReason")]
    stop_reason: Option<json::Text<'a>>,
    #[serde(borrow)]
    usage: Option<&'a RawValue>,
    #[serde(borrow)]
    message: Option<json::Text<'a>>,
}

#[derive(Deserialize)]
struct BlockStart<'a> {
    #[serde(rename = "toolUse", default, borrow)]
    tool_use: Option<ToolStart<'a>>,
}

#[derive(Deserialize)]
struct ToolStart<'a> {
    #[serde(rename = "toolUseId", default, borrow)]
    id: json::Text<'a>,
    #[serde(default, borrow)]
    name: json::Text<'a>,
}

#[derive(Deserialize)]
struct BlockDelta<'a> {
    #[serde(default, borrow)]
    text: Option<json::Text<'a>>,
    #[serde(rename = "toolUse", default, borrow)]
    tool_use: Option<ToolDelta<'a>>,
    #[serde(rename = "reasoningContent", default, borrow)]
    reasoning: Option<ReasoningDelta<'a>>,
}

#[derive(Deserialize)]
struct ToolDelta<'a> {
    #[serde(default, borrow)]
    input: json::Text<'a>,
}

#[derive(Deserialize)]
struct ReasoningDelta<'a> {
    #[serde(default, borrow)]
    text: Option<json::Text<'a>>,
    #[serde(default, borrow)]
    signature: Option<json::Text<'a>>,
    #[serde(rename = "redactedContent", default, borrow)]
    redacted: Option<json::Text<'a>>,
}

/// Where a tool block's input deltas go.
#[derive(Debug, Clone, Copy)]
enum ToolTarget {
    Call(usize),
    JsonAnswer,
}

/// Translates ConverseStream's event-stream frames into OpenAI chunks. Bedrock streams content
/// blocks one after another, so only the open tool block is remembered: memory stays constant.
pub struct ConverseStream {
    writer: Box<dyn ChatSink>,
    decoder: EventStreamDecoder,
    /// The `metadata` event's usage (`Err`: it could not be charged), once it arrived.
    usage: Option<Result<Usage, ()>>,
    open_tool: Option<(u64, ToolTarget)>,
    tool_calls: usize,
    stopped: bool,
}

impl ConverseStream {
    pub fn new(ctx: ResponseCtx) -> Self {
        ConverseStream {
            writer: crate::ingress::sink(ctx),
            decoder: EventStreamDecoder::default(),
            usage: None,
            open_tool: None,
            tool_calls: 0,
            stopped: false,
        }
    }

    /// The answer is whole: its usage chunk (when the client asked and Bedrock reported one), then
    /// `[DONE]`.
    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some(Ok(u)) = self.usage {
            self.writer.usage(out, &u);
        }
        self.writer.done(out);
    }

    fn on_frame(&mut self, frame: &Frame<'_>, out: &mut Vec<u8>) {
        if self.writer.is_done() {
            return;
        }
        match frame.header_str(":message-type").unwrap_or("event") {
            "event" => {}
            "exception" => {
                let kind = frame.header_str(":exception-type");
                let message = serde_json::from_slice::<StreamEvent>(frame.payload)
                    .ok()
                    .and_then(|e| e.message)
                    .map(|m| m.0.into_owned())
                    .unwrap_or_default();
                let err = bedrock_error(500, kind, &message);
                self.writer.error(out, &err);
                return;
            }
            _ => {
                // Protocol-level errors carry their code and message in headers.
                let kind = frame.header_str(":error-code");
                let message = frame.header_str(":error-message").unwrap_or_default();
                let err = bedrock_error(502, kind, message);
                self.writer.error(out, &err);
                return;
            }
        }
        let Some(event_type) = frame.header_str(":event-type") else {
            return;
        };
        // Events Bedrock documents only; a payload that is not their JSON is skipped.
        let Ok(ev) = serde_json::from_slice::<StreamEvent>(frame.payload) else {
            return;
        };
        match event_type {
            "messageStart" => self.writer.start(out, 0),
            "contentBlockStart" => {
                if let Some(tool) = ev.start.and_then(|s| s.tool_use) {
                    let target = if tool.name.as_str() == JSON_TOOL {
                        ToolTarget::JsonAnswer
                    } else {
                        let index = self.tool_calls;
                        self.tool_calls = self.tool_calls.saturating_add(1);
                        self.writer.tool_call_start(
                            out,
                            0,
                            index,
                            tool.id.as_str(),
                            tool.name.as_str(),
                        );
                        ToolTarget::Call(index)
                    };
                    self.open_tool = Some((ev.index, target));
                }
            }
            "contentBlockDelta" => {
                let Some(delta) = ev.delta else { return };
                if let Some(t) = &delta.text {
                    self.writer.text(out, 0, t.as_str());
                }
                if let Some(r) = &delta.reasoning {
                    if let Some(t) = &r.text {
                        self.writer.reasoning(out, 0, t.as_str());
                    }
                    if let Some(sig) = &r.signature {
                        self.writer.reasoning_signature(out, 0, sig.as_str());
                    }
                    if let Some(data) = &r.redacted {
                        self.writer.redacted_reasoning(out, 0, data.as_str());
                    }
                }
                if let Some(tool) = &delta.tool_use {
                    match self.open_tool {
                        Some((index, ToolTarget::Call(i))) if index == ev.index => {
                            self.writer.tool_call_args(out, 0, i, tool.input.as_str())
                        }
                        Some((index, ToolTarget::JsonAnswer)) if index == ev.index => {
                            self.writer.text(out, 0, tool.input.as_str())
                        }
                        _ => {}
                    }
                }
            }
            "contentBlockStop" if self.open_tool.is_some_and(|(i, _)| i == ev.index) => {
                self.open_tool = None;
            }
            "messageStop" => {
                let reason = finish_reason(
                    ev.stop_reason.as_ref().map(|s| s.as_str()),
                    self.tool_calls > 0,
                );
                self.stopped = true;
                self.writer.finish(out, 0, reason);
            }
            "metadata" => {
                match read_usage(ev.usage) {
                    Ok(Some(u)) => self.usage = Some(Ok(u)),
                    Ok(None) => {}
                    Err(()) => self.usage = Some(Err(())),
                }
                if self.stopped {
                    // The last event Bedrock sends: close the stream without waiting for EOF.
                    self.close(out);
                }
            }
            _ => {}
        }
    }
}

impl StreamTranslator for ConverseStream {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.writer.is_done() {
            return;
        }
        let mut decoder = std::mem::take(&mut self.decoder);
        let result = decoder.feed(chunk, |frame| self.on_frame(&frame, out));
        self.decoder = decoder;
        if let Err(e) = result {
            let err =
                ApiError::bad_gateway(format!("Bedrock's event stream could not be decoded ({e})"));
            self.writer.error(out, &err);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.writer.is_done() {
            return;
        }
        if !self.stopped || self.decoder.pending() > 0 {
            let err =
                ApiError::bad_gateway("Bedrock's stream ended before the response was complete");
            self.writer.error(out, &err);
            return;
        }
        self.close(out);
    }

    /// Usage arrives in `metadata`, the last event, after `messageStop`.
    fn final_usage(&self) -> Option<Usage> {
        self.usage.and_then(Result::ok)
    }

    fn completed(&self) -> bool {
        self.writer.completed()
    }
}

#[cfg(test)]
mod tests;
