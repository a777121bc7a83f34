//! Anthropic's Messages API: `POST {base}/v1/messages` with `x-api-key` and `anthropic-version`.
//!
//! Requests: system and developer messages become the top-level `system`; tool results become
//! `tool_result` blocks of a user turn; consecutive turns of one role are merged because Anthropic
//! wants user and assistant turns to alternate. JSON mode uses LiteLLM's technique: a tool that
//! carries the schema, a `tool_choice` that forces it, and its input returned to the client as the
//! message text. Responses, SSE streams and errors come back in OpenAI's shape.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{
    check_params, client_status, opaque_error, redact, Endpoint, Operation, Params, Provider,
    RequestOptions, StreamTranslator, Target, Translated,
};
use crate::error::{is_context_overflow, ApiError};
use crate::ingress::{ChatSink, ClientApi};
use crate::json::{self, Text};
use crate::openai::request::{
    media_type_from_url, parse_data_url, Content, Message, Part, ResponseFormat, Role, Thinking,
    ToolChoice,
};
use crate::openai::{
    usage_object, ChatRequest, Choice, Completion, Count, FinishReason, ResponseCtx, ToolCallOut,
    Usage, UsageCheck,
};
use crate::stream::sse::{SseDecoder, SseEvent};

pub mod passthrough;

pub struct Anthropic;
pub static ANTHROPIC: Anthropic = Anthropic;

const DEFAULT_BASE: &str = "https://api.anthropic.com";
const API_VERSION: &str = "2023-06-01";
/// Anthropic refuses a request without `max_tokens`; when the client sets no cap we send
/// LiteLLM's default for Anthropic, so the same config behaves the same behind either gateway.
const DEFAULT_MAX_TOKENS: u64 = 4096;
/// The tool that carries the JSON-mode schema (LiteLLM's name). A `tool_use` of this name in a
/// response is the JSON answer, so clients may not define a tool with this name themselves.
pub const JSON_TOOL: &str = "json_tool_call";
/// `input_schema` for a tool that declares no parameters.
const NO_PARAMETERS: &str = r#"{"type":"object","properties":{}}"#;
/// `input_schema` of the JSON-mode tool for `json_object`: any object.
const ANY_OBJECT: &str = r#"{"type":"object","additionalProperties":true,"properties":{}}"#;

/// Thinking budgets for OpenAI's `reasoning_effort`, LiteLLM's (`_map_reasoning_effort` for
/// Anthropic, its `DEFAULT_REASONING_EFFORT_*_THINKING_BUDGET` defaults): `low`, `medium`,
/// `high`; `xhigh` and `max` take `high`'s. `none` and `minimal` ask for no thinking (LiteLLM's
/// 128 for `minimal` is below Anthropic's smallest budget).
const EFFORT_BUDGETS: [(&str, u64); 5] = [
    ("low", 1024),
    ("medium", 2048),
    ("high", 4096),
    ("xhigh", 4096),
    ("max", 4096),
];
/// Anthropic's smallest `thinking.budget_tokens`.
const MIN_THINKING_BUDGET: u64 = 1024;

/// Client parameters this translator maps (besides model, messages, stream, stream_options).
/// `temperature` passes through unchanged: Anthropic accepts 0..1 where OpenAI accepts 0..2, and
/// a value above 1 gets Anthropic's own 400 rather than a silent clamp that changes sampling.
/// With thinking on, Anthropic refuses a temperature other than 1; LiteLLM passes it through
/// and so does the gateway: Anthropic's 400 names it.
const SUPPORTED: [&str; 13] = [
    "temperature",
    "thinking",
    "top_k",
    "reasoning_effort",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "user",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
];

impl Provider for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    /// Anthropic's own API takes the client's `anthropic-beta` header as it came.
    fn anthropic_betas(&self, _model: &str) -> Option<&'static [&'static str]> {
        None
    }

    fn default_key_env(&self) -> Option<&'static str> {
        Some("ANTHROPIC_API_KEY")
    }

    fn endpoint(&self, p: &Params) -> Result<Endpoint, String> {
        let mut headers = vec![("anthropic-version".to_string(), API_VERSION.to_string())];
        if let Some(key) = p.api_key {
            headers.push(("x-api-key".to_string(), key.to_string()));
        }
        Ok(Endpoint {
            base_url: p.api_base.unwrap_or(DEFAULT_BASE).to_string(),
            headers,
            signing: None,
        })
    }

    /// One completion per request: `n` > 1 is refused, or dropped with `drop_params`.
    fn output_choices(&self, _requested: u64) -> u64 {
        1
    }

    fn default_max_output(&self) -> Option<u64> {
        Some(DEFAULT_MAX_TOKENS)
    }

    fn path(&self, t: &Target, _op: Operation, _stream: bool) -> String {
        messages_path(&t.base_path)
    }

    fn chat_request(
        &self,
        req: &ChatRequest,
        t: &Target,
        opts: RequestOptions,
    ) -> Result<Vec<u8>, ApiError> {
        translate_request(req, &t.model, opts)
    }

    fn chat_response(&self, body: &[u8], ctx: &ResponseCtx) -> Result<Translated, ApiError> {
        match ctx.api {
            ClientApi::Messages => passthrough::response(body, ctx),
            ClientApi::Chat | ClientApi::Responses => translate_response(body, ctx),
        }
    }

    fn chat_stream(&self, ctx: ResponseCtx) -> Box<dyn StreamTranslator> {
        match ctx.api {
            ClientApi::Messages => Box::new(passthrough::PassthroughStream::new(ctx)),
            ClientApi::Chat | ClientApi::Responses => Box::new(AnthropicStream::new(ctx)),
        }
    }

    fn error(&self, status: u16, _error_type: Option<&str>, body: &[u8]) -> ApiError {
        translate_error(status, body)
    }
}

/// `{base}/v1/messages`, without doubling a `/v1` or `/v1/messages` the configured base already has.
fn messages_path(base_path: &str) -> String {
    let base = base_path.trim_end_matches('/');
    if base.ends_with("/v1/messages") {
        base.to_string()
    } else if base.ends_with("/v1") {
        format!("{base}/messages")
    } else {
        format!("{base}/v1/messages")
    }
}

// ---------------------------------------------------------------------------------------------
// Request

#[derive(Serialize)]
struct MessagesRequest<'r> {
    model: &'r str,
    max_tokens: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<Block<'r>>,
    messages: Vec<Turn<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<ThinkingOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<&'r str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<Metadata<'r>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<ToolDef<'r>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<ToolChoiceOut<'r>>,
}

/// Claude's `thinking` as it goes in a request body (Anthropic's, and Claude's on Bedrock in
/// `additionalModelRequestFields`).
#[derive(Serialize)]
pub(crate) struct ThinkingOut {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u64>,
}

#[derive(Serialize)]
struct Metadata<'r> {
    user_id: &'r str,
}

#[derive(Serialize)]
struct Turn<'r> {
    role: &'static str,
    content: Vec<Block<'r>>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'r> {
    Text {
        text: &'r str,
    },
    Image {
        source: Source<'r>,
    },
    Document {
        source: Source<'r>,
    },
    ToolUse {
        id: &'r str,
        name: &'r str,
        input: Box<RawValue>,
    },
    ToolResult {
        tool_use_id: &'r str,
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<ToolResultContent<'r>>,
    },
    Thinking {
        thinking: &'r str,
        signature: &'r str,
    },
    RedactedThinking {
        data: &'r str,
    },
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Source<'r> {
    Base64 { media_type: &'r str, data: &'r str },
    Url { url: &'r str },
}

#[derive(Serialize)]
#[serde(untagged)]
enum ToolResultContent<'r> {
    Text(&'r str),
    Blocks(Vec<Block<'r>>),
}

#[derive(Serialize)]
struct ToolDef<'r> {
    name: &'r str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'r str>,
    input_schema: &'r RawValue,
}

#[derive(Serialize)]
struct ToolChoiceOut<'r> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'r str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    disable_parallel_tool_use: bool,
}

fn static_raw(text: &'static str) -> Result<&'static RawValue, ApiError> {
    serde_json::from_str(text).map_err(|_| ApiError::server("invalid built-in JSON schema"))
}

fn messages_error(index: usize, detail: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_param("messages", format!("Invalid 'messages[{index}]': {detail}"))
}

fn translate_request(
    req: &ChatRequest,
    model: &str,
    opts: RequestOptions,
) -> Result<Vec<u8>, ApiError> {
    let mut supported: Vec<&str> = SUPPORTED.to_vec();
    if req.n.unwrap_or(1) <= 1 {
        // n=1 is what Anthropic always does; only n>1 asks for something it cannot give.
        supported.push("n");
    }
    // Dropped parameters need no further handling: only the fields mapped below are written.
    check_params(req, "anthropic", &supported, opts)?;

    let (system, messages) = translate_messages(&req.messages)?;
    let json_mode = matches!(
        req.response_format,
        Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
    );
    let (tools, tool_choice) = translate_tools(req, json_mode)?;
    let max_tokens = req.max_output_tokens().unwrap_or(DEFAULT_MAX_TOKENS);

    let body = MessagesRequest {
        model,
        max_tokens,
        system,
        messages,
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        thinking: claude_thinking(req, Some(max_tokens)).map(|t| ThinkingOut {
            kind: t.mode,
            budget_tokens: t.budget_tokens,
        }),
        stop_sequences: req.stop_sequences().iter().map(|s| s.as_str()).collect(),
        metadata: req.user.as_ref().map(|u| Metadata {
            user_id: u.as_str(),
        }),
        stream: req.stream,
        tools,
        tool_choice,
    };
    Ok(json::to_vec_sized(&body, req.body_size()))
}

/// The thinking a chat request asks of Claude: its `thinking` (LiteLLM's extension) as given,
/// else its `reasoning_effort` as a budget ([`EFFORT_BUDGETS`]). `max_tokens` is the output cap
/// the request carries upstream, which is what the gateway's budget reservation counted.
///
/// Anthropic wants `max_tokens` above `budget_tokens`. LiteLLM sends `budget + 4096` as
/// `max_tokens` when the client set none; the gateway keeps the cap its reservation counted
/// (Anthropic's default 4096 here, or the gateway's own lower cap near the end of a budget) and
/// fits the thinking inside it instead: the budget becomes `max_tokens - 1`, and thinking is left
/// out when that is below Anthropic's minimum (1024). So the output stays bounded by what was
/// reserved; a client that wants a larger budget sets `max_tokens` above it. A client whose own
/// `max_tokens` is not above its own `thinking.budget_tokens` gets Anthropic's 400, as with
/// LiteLLM.
pub(crate) fn claude_thinking(req: &ChatRequest, max_tokens: Option<u64>) -> Option<Thinking> {
    let (thinking, derived) = match req.thinking {
        // A budget only goes with `enabled`.
        Some(t) if t.mode != "enabled" => {
            return Some(Thinking {
                budget_tokens: None,
                ..t
            })
        }
        Some(t) => (t, false),
        None => {
            let effort = req.reasoning_effort.as_deref()?;
            let (_, budget) = EFFORT_BUDGETS.iter().find(|(e, _)| *e == effort)?;
            let t = Thinking {
                mode: "enabled",
                budget_tokens: Some(*budget),
            };
            (t, true)
        }
    };
    let (Some(budget), Some(cap)) = (thinking.budget_tokens, max_tokens) else {
        return Some(thinking);
    };
    let client_cap = req.max_completion_tokens.or(req.max_tokens);
    let clients_own = !derived && client_cap.is_some_and(|c| c <= budget);
    if budget < cap || clients_own {
        return Some(thinking);
    }
    let fitted = cap.saturating_sub(1);
    (fitted >= MIN_THINKING_BUDGET).then_some(Thinking {
        mode: "enabled",
        budget_tokens: Some(fitted),
    })
}

/// An assistant turn's reasoning as Anthropic takes it back, ahead of its text and tool calls
/// (Anthropic requires it there when thinking is on and the turn used tools). A thinking block
/// without its signature is left out: Anthropic refuses one it cannot verify.
fn thinking_blocks<'r>(m: &'r Message<'_>) -> Vec<Block<'r>> {
    let mut blocks = Vec::new();
    for t in m.thinking_blocks.iter().flatten() {
        match (t.kind.as_str(), &t.signature, &t.data) {
            ("thinking", Some(sig), _) if !sig.is_empty() => blocks.push(Block::Thinking {
                thinking: t.thinking.as_deref().unwrap_or(""),
                signature: sig.as_str(),
            }),
            ("redacted_thinking", _, Some(data)) => blocks.push(Block::RedactedThinking {
                data: data.as_str(),
            }),
            _ => {}
        }
    }
    blocks
}

/// Splits OpenAI messages into Anthropic's `system` blocks and alternating user/assistant turns.
fn translate_messages<'r>(
    messages: &'r [Message<'_>],
) -> Result<(Vec<Block<'r>>, Vec<Turn<'r>>), ApiError> {
    let mut system = Vec::new();
    let mut turns: Vec<Turn<'r>> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        match m.role {
            Role::System | Role::Developer => system.extend(text_blocks(&m.content, i)?),
            Role::User => push_turn(&mut turns, "user", user_blocks(&m.content, i)?),
            Role::Assistant => {
                let mut blocks = thinking_blocks(m);
                blocks.extend(text_blocks(&m.content, i)?);
                for (j, call) in m.tool_calls.iter().flatten().enumerate() {
                    blocks.push(Block::ToolUse {
                        id: call.id.as_str(),
                        name: call.function.name.as_str(),
                        input: tool_input(call.function.arguments.as_str(), i, j)?,
                    });
                }
                push_turn(&mut turns, "assistant", blocks);
            }
            Role::Tool => {
                let id = m.tool_call_id.as_ref().ok_or_else(|| {
                    messages_error(i, "a tool message needs 'tool_call_id'.")
                })?;
                let content = match &m.content {
                    Content::None => None,
                    Content::Text(t) if t.is_empty() => None,
                    Content::Text(t) => Some(ToolResultContent::Text(t.as_str())),
                    Content::Parts(_) => {
                        let blocks = user_blocks(&m.content, i)?;
                        (!blocks.is_empty()).then_some(ToolResultContent::Blocks(blocks))
                    }
                };
                push_turn(
                    &mut turns,
                    "user",
                    vec![Block::ToolResult {
                        tool_use_id: id.as_str(),
                        content,
                    }],
                );
            }
            Role::Function => {
                return Err(messages_error(
                    i,
                    "the deprecated 'function' role is not supported by the anthropic provider; send tool results as 'tool' messages.",
                ))
            }
        }
    }
    if turns.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "Anthropic needs at least one user or assistant message with content besides the system prompt.",
        ));
    }
    Ok((system, turns))
}

/// Appends blocks to the conversation, merging into the previous turn when the role repeats.
/// Empty turns are skipped (Anthropic rejects empty content) so they cannot break alternation.
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

/// Text-only content (system prompts, assistant turns). Empty strings are left out.
fn text_blocks<'r>(content: &'r Content<'_>, index: usize) -> Result<Vec<Block<'r>>, ApiError> {
    let mut blocks = Vec::new();
    match content {
        Content::None => {}
        Content::Text(t) => {
            if !t.is_empty() {
                blocks.push(Block::Text { text: t.as_str() });
            }
        }
        Content::Parts(parts) => {
            for part in parts {
                match part {
                    Part::Text(t) if t.is_empty() => {}
                    Part::Text(t) => blocks.push(Block::Text { text: t.as_str() }),
                    Part::Image { .. } => {
                        return Err(messages_error(
                            index,
                            "images are only accepted in user and tool messages.",
                        ))
                    }
                    Part::File { .. } => return Err(unsupported_part(index, &"file".into())),
                    Part::Other(kind) => return Err(unsupported_part(index, kind)),
                }
            }
        }
    }
    Ok(blocks)
}

/// User (and tool-result) content: text, images and PDFs.
fn user_blocks<'r>(content: &'r Content<'_>, index: usize) -> Result<Vec<Block<'r>>, ApiError> {
    let Content::Parts(parts) = content else {
        return text_blocks(content, index);
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            Part::Text(t) if t.is_empty() => {}
            Part::Text(t) => blocks.push(Block::Text { text: t.as_str() }),
            Part::Image { url, .. } => blocks.push(image_block(url.as_str(), index)?),
            // A document: its bytes as the data URL an image_url would carry, or its link.
            Part::File { data: Some(d), .. } => blocks.push(image_block(d.as_str(), index)?),
            Part::File { url: Some(u), .. }
                if u.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("http")) =>
            {
                blocks.push(Block::Document {
                    source: Source::Url { url: u.as_str() },
                })
            }
            Part::File { .. } => return Err(unsupported_part(index, &"file".into())),
            Part::Other(kind) => return Err(unsupported_part(index, kind)),
        }
    }
    Ok(blocks)
}

fn unsupported_part(index: usize, kind: &Text) -> ApiError {
    messages_error(
        index,
        format!(
            "content parts of type '{}' are not supported by the anthropic provider in this gateway.",
            kind.as_str()
        ),
    )
}

/// `image_url` -> an `image` block (or a `document` block for a PDF), inline or by URL.
fn image_block<'r>(url: &'r str, index: usize) -> Result<Block<'r>, ApiError> {
    if let Some(d) = parse_data_url(url) {
        let source = Source::Base64 {
            media_type: d.media_type,
            data: d.data,
        };
        return Ok(if d.media_type == "application/pdf" {
            Block::Document { source }
        } else {
            Block::Image { source }
        });
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        let source = Source::Url { url };
        return Ok(if media_type_from_url(url) == "application/pdf" {
            Block::Document { source }
        } else {
            Block::Image { source }
        });
    }
    Err(messages_error(
        index,
        "image_url must be an http(s) URL or a base64 data URL (data:image/png;base64,...).",
    ))
}

/// An OpenAI tool call's `arguments` string as the object Anthropic's `tool_use.input` takes.
fn tool_input(arguments: &str, index: usize, call: usize) -> Result<Box<RawValue>, ApiError> {
    if arguments.trim().is_empty() {
        return RawValue::from_string("{}".to_string())
            .map_err(|_| ApiError::server("invalid built-in JSON"));
    }
    match serde_json::from_str::<Box<RawValue>>(arguments) {
        Ok(v) if v.get().starts_with('{') => Ok(v),
        _ => Err(messages_error(
            index,
            format!(
                "tool_calls[{call}].function.arguments must be a JSON object encoded as a string."
            ),
        )),
    }
}

fn translate_tools<'r>(
    req: &'r ChatRequest<'_>,
    json_mode: bool,
) -> Result<(Vec<ToolDef<'r>>, Option<ToolChoiceOut<'r>>), ApiError> {
    let no_parameters = static_raw(NO_PARAMETERS)?;
    let mut tools = Vec::with_capacity(req.tools.len().saturating_add(1));
    for t in &req.tools {
        let name = t.function.name.as_str();
        if name == JSON_TOOL {
            return Err(ApiError::invalid_param(
                "tools",
                format!("The tool name '{JSON_TOOL}' is reserved by the gateway for JSON mode with Anthropic models; rename the tool."),
            ));
        }
        tools.push(ToolDef {
            name,
            description: t.function.description.as_ref().map(|d| d.as_str()),
            input_schema: t
                .function
                .parameters
                .filter(|p| !json::is_null(p))
                .unwrap_or(no_parameters),
        });
    }
    let client_tools = !tools.is_empty();
    if json_mode {
        let schema = match &req.response_format {
            Some(ResponseFormat::JsonSchema {
                schema: Some(s), ..
            }) if !json::is_null(s) => *s,
            _ => static_raw(ANY_OBJECT)?,
        };
        tools.push(ToolDef {
            name: JSON_TOOL,
            description: None,
            input_schema: schema,
        });
    }
    if tools.is_empty() {
        return Ok((tools, None));
    }
    let forced = |name: &'r str| (Some(name), "tool");
    let (name, kind) = match (&req.tool_choice, json_mode) {
        (Some(ToolChoice::Function(n)), _) => forced(n.as_str()),
        // JSON mode alone: the model must answer through the schema tool.
        (_, true) if !client_tools => forced(JSON_TOOL),
        (Some(ToolChoice::None), true) => forced(JSON_TOOL),
        // JSON mode beside the client's tools: call one of them or answer in JSON.
        (Some(ToolChoice::Auto | ToolChoice::Required) | None, true) => (None, "any"),
        (Some(ToolChoice::Required), false) => (None, "any"),
        (Some(ToolChoice::None), false) => (None, "none"),
        (Some(ToolChoice::Auto), false) => (None, "auto"),
        (None, false) => {
            if req.parallel_tool_calls == Some(false) {
                (None, "auto")
            } else {
                // Anthropic's default is auto: send nothing, like the client did.
                return Ok((tools, None));
            }
        }
    };
    let choice = ToolChoiceOut {
        kind,
        name,
        disable_parallel_tool_use: req.parallel_tool_calls == Some(false) && kind != "none",
    };
    Ok((tools, Some(choice)))
}

// ---------------------------------------------------------------------------------------------
// Response

#[derive(Deserialize)]
struct MessageIn<'a> {
    #[serde(default, borrow)]
    content: Option<Vec<BlockIn<'a>>>,
    #[serde(default, borrow)]
    stop_reason: Option<Text<'a>>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct BlockIn<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default, borrow)]
    thinking: Option<Text<'a>>,
    #[serde(default, borrow)]
    signature: Option<Text<'a>>,
    /// A `redacted_thinking` block's encrypted reasoning.
    #[serde(default, borrow)]
    data: Option<Text<'a>>,
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    input: Option<&'a RawValue>,
}

/// Anthropic's token counts; `message_delta` repeats some of them cumulatively, so later values
/// replace earlier ones field by field.
#[derive(Deserialize, Default, Clone, Copy, Debug)]
struct UsageIn {
    #[serde(default)]
    input_tokens: Count,
    #[serde(default)]
    output_tokens: Count,
    #[serde(default)]
    cache_creation_input_tokens: Count,
    #[serde(default)]
    cache_read_input_tokens: Count,
}

impl UsageIn {
    fn merge(&mut self, later: UsageIn) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = later
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = later
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }

    /// Anthropic's `input_tokens` excludes cached and cache-writing tokens; OpenAI's
    /// `prompt_tokens` includes them. `None` when a count cannot be charged or none was given.
    fn to_openai(self) -> Option<Usage> {
        let mut c = UsageCheck::default();
        let input = c.take(self.input_tokens);
        let cache_read = c.take(self.cache_read_input_tokens);
        let cache_creation = c.take(self.cache_creation_input_tokens);
        let usage = Usage {
            prompt_tokens: input
                .saturating_add(cache_read)
                .saturating_add(cache_creation),
            completion_tokens: c.take(self.output_tokens),
            cached_tokens: cache_read,
            cache_creation_tokens: cache_creation,
            reasoning_tokens: 0,
        };
        c.finish(usage)
    }
}

/// Usage reported so far in a stream: merged event by event; one unreadable report spoils it.
#[derive(Default)]
struct StreamUsage {
    counts: UsageIn,
    bad: bool,
}

impl StreamUsage {
    fn merge(&mut self, raw: Option<&RawValue>) {
        match usage_object::<UsageIn>(raw) {
            Ok(Some(u)) => self.counts.merge(u),
            Ok(None) => {}
            Err(()) => self.bad = true,
        }
    }

    fn get(&self) -> Option<Usage> {
        if self.bad {
            return None;
        }
        self.counts.to_openai()
    }
}

/// `tool_use` means tool calls only when the client's tools were called: the JSON-mode tool's
/// answer is plain content that ended normally.
fn finish_reason(stop_reason: Option<&str>, client_tool_called: bool) -> FinishReason {
    match stop_reason {
        Some("max_tokens") | Some("model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") if client_tool_called => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        // end_turn, stop_sequence, pause_turn, and reasons added later.
        _ => FinishReason::Stop,
    }
}

/// `{}` (with any spacing) or `null`: a tool input that says nothing yet.
fn is_empty_input(raw: &str) -> bool {
    raw == "null"
        || raw
            .strip_prefix('{')
            .is_some_and(|rest| rest.trim_start() == "}")
}

fn raw_or_empty_object(input: Option<&RawValue>) -> String {
    match input {
        Some(v) if !json::is_null(v) => v.get().to_string(),
        _ => "{}".to_string(),
    }
}

fn translate_response(body: &[u8], ctx: &ResponseCtx) -> Result<Translated, ApiError> {
    let unreadable =
        || ApiError::bad_gateway("anthropic returned a response the gateway could not read");
    let msg: MessageIn = serde_json::from_slice(body).map_err(|_| unreadable())?;
    if msg.content.is_none() {
        // Every Messages answer has `content`, if empty: without it this is no answer.
        return Err(unreadable());
    }
    let mut text = String::new();
    let mut reasoning: Option<String> = None;
    let mut signature: Option<String> = None;
    let mut redacted = Vec::new();
    let mut json_answer: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in msg.content.iter().flatten() {
        match block.kind.as_str() {
            "text" => text.push_str(block.text.as_deref().unwrap_or("")),
            "thinking" => {
                reasoning
                    .get_or_insert_with(String::new)
                    .push_str(block.thinking.as_deref().unwrap_or(""));
                if let Some(sig) = &block.signature {
                    signature = Some(sig.to_string());
                }
            }
            "redacted_thinking" => {
                redacted.push(block.data.as_deref().unwrap_or("").to_string());
            }
            "tool_use" => {
                let name = block.name.as_deref().unwrap_or("");
                let arguments = raw_or_empty_object(block.input);
                if name == JSON_TOOL {
                    json_answer.get_or_insert(arguments);
                } else {
                    tool_calls.push(ToolCallOut {
                        id: block.id.as_deref().unwrap_or("").to_string(),
                        name: name.to_string(),
                        arguments,
                    });
                }
            }
            // Server tool blocks and future types have no counterpart in the client APIs yet.
            _ => {}
        }
    }
    let client_tool_called = !tool_calls.is_empty();
    let content = match json_answer {
        Some(answer) => Some(answer),
        None if client_tool_called && text.is_empty() => None,
        None => Some(text),
    };
    let usage = usage_object::<UsageIn>(msg.usage)
        .ok()
        .flatten()
        .and_then(UsageIn::to_openai);
    let choice = Choice {
        content,
        reasoning,
        reasoning_signature: signature,
        redacted_reasoning: redacted,
        tool_calls,
        finish_reason: Some(finish_reason(
            msg.stop_reason.as_deref(),
            client_tool_called,
        )),
    };
    Ok(Translated {
        body: Completion::single(choice, usage.unwrap_or_default()).render(ctx),
        usage,
    })
}

// ---------------------------------------------------------------------------------------------
// Stream

#[derive(Deserialize)]
struct EventIn<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Text<'a>>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    content_block: Option<BlockIn<'a>>,
    #[serde(default, borrow)]
    delta: Option<DeltaIn<'a>>,
    #[serde(default, borrow)]
    message: Option<StartIn<'a>>,
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
    #[serde(default, borrow)]
    error: Option<ErrorIn<'a>>,
}

#[derive(Deserialize)]
struct StartIn<'a> {
    #[serde(default, borrow)]
    usage: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct DeltaIn<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Text<'a>>,
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
    #[serde(default, borrow)]
    thinking: Option<Text<'a>>,
    #[serde(default, borrow)]
    partial_json: Option<Text<'a>>,
    #[serde(default, borrow)]
    signature: Option<Text<'a>>,
    #[serde(default, borrow)]
    stop_reason: Option<Text<'a>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Thinking,
    /// A client tool call and its OpenAI `tool_calls[].index`.
    Tool(usize),
    /// The JSON-mode tool: its input streams out as content.
    Json,
    Other,
}

#[derive(Debug)]
struct OpenBlock {
    index: u64,
    kind: BlockKind,
    /// Some argument text went out (else `{}` is sent when the block stops).
    emitted: bool,
}

/// Anthropic closes each block before opening the next; the bound only guards against a broken
/// upstream that never closes any.
const MAX_OPEN_BLOCKS: usize = 64;

#[derive(Default)]
struct StreamState {
    usage: StreamUsage,
    blocks: Vec<OpenBlock>,
    tool_calls: usize,
    client_tool_called: bool,
    /// `message_delta` gave the stop reason: the message is complete.
    stop_reason_seen: bool,
}

/// Translates Anthropic's SSE events into OpenAI chunks as they arrive.
pub struct AnthropicStream {
    writer: Box<dyn ChatSink>,
    sse: SseDecoder,
    state: StreamState,
}

impl AnthropicStream {
    pub fn new(ctx: ResponseCtx) -> Self {
        AnthropicStream {
            writer: crate::ingress::sink(ctx),
            sse: SseDecoder::default(),
            state: StreamState::default(),
        }
    }
}

impl StreamState {
    fn on_event(&mut self, w: &mut dyn ChatSink, ev: SseEvent<'_>, out: &mut Vec<u8>) {
        if w.is_done() {
            return;
        }
        let Ok(event) = serde_json::from_slice::<EventIn>(ev.data) else {
            w.error(
                out,
                &ApiError::bad_gateway("anthropic sent a stream event the gateway could not read"),
            );
            return;
        };
        let index = event.index.unwrap_or(0);
        match event.kind.as_deref().unwrap_or(ev.event) {
            "message_start" => {
                self.usage.merge(event.message.and_then(|m| m.usage));
                w.start(out, 0);
            }
            "content_block_start" => {
                if let Some(block) = event.content_block {
                    self.block_start(w, index, &block, out);
                }
            }
            "content_block_delta" => {
                if let Some(delta) = event.delta {
                    self.block_delta(w, index, &delta, out);
                }
            }
            "content_block_stop" => self.block_stop(w, index, out),
            "message_delta" => {
                self.usage.merge(event.usage);
                if let Some(reason) = event.delta.and_then(|d| d.stop_reason) {
                    self.stop_reason_seen = true;
                    w.finish(
                        out,
                        0,
                        finish_reason(Some(reason.as_str()), self.client_tool_called),
                    );
                }
            }
            "message_stop" => self.close(w, out),
            "error" => {
                let err = match event.error {
                    Some(e) => error_from_parts(None, e.kind.as_deref(), e.message.as_deref()),
                    None => ApiError::bad_gateway("anthropic reported an error in the stream"),
                };
                w.error(out, &err);
            }
            // `ping`, and event types Anthropic may add (its versioning policy allows it).
            _ => {}
        }
    }

    fn block_start(&mut self, w: &mut dyn ChatSink, index: u64, b: &BlockIn, out: &mut Vec<u8>) {
        let mut emitted = false;
        let kind = match b.kind.as_str() {
            "text" => {
                w.text(out, 0, b.text.as_deref().unwrap_or(""));
                BlockKind::Text
            }
            "thinking" => {
                w.reasoning(out, 0, b.thinking.as_deref().unwrap_or(""));
                if let Some(sig) = b.signature.as_deref().filter(|s| !s.is_empty()) {
                    w.reasoning_signature(out, 0, sig);
                }
                BlockKind::Thinking
            }
            "redacted_thinking" => {
                w.redacted_reasoning(out, 0, b.data.as_deref().unwrap_or(""));
                BlockKind::Other
            }
            "tool_use" => {
                let name = b.name.as_deref().unwrap_or("");
                // Anthropic streams the input as deltas and starts with `{}`; an upstream that
                // sends the whole input up front is honoured too.
                let initial = b.input.map(|v| v.get()).filter(|s| !is_empty_input(s));
                let kind = if name == JSON_TOOL {
                    if let Some(args) = initial {
                        w.text(out, 0, args);
                    }
                    BlockKind::Json
                } else {
                    let tool_index = self.tool_calls;
                    self.tool_calls = self.tool_calls.saturating_add(1);
                    self.client_tool_called = true;
                    w.tool_call_start(out, 0, tool_index, b.id.as_deref().unwrap_or(""), name);
                    if let Some(args) = initial {
                        w.tool_call_args(out, 0, tool_index, args);
                    }
                    BlockKind::Tool(tool_index)
                };
                emitted = initial.is_some();
                kind
            }
            _ => BlockKind::Other,
        };
        self.blocks.retain(|open| open.index != index);
        if self.blocks.len() < MAX_OPEN_BLOCKS {
            self.blocks.push(OpenBlock {
                index,
                kind,
                emitted,
            });
        }
    }

    fn block_delta(&mut self, w: &mut dyn ChatSink, index: u64, d: &DeltaIn, out: &mut Vec<u8>) {
        match d.kind.as_deref() {
            Some("text_delta") => w.text(out, 0, d.text.as_deref().unwrap_or("")),
            Some("thinking_delta") => w.reasoning(out, 0, d.thinking.as_deref().unwrap_or("")),
            Some("input_json_delta") => {
                let part = d.partial_json.as_deref().unwrap_or("");
                let Some(block) = self.blocks.iter_mut().find(|b| b.index == index) else {
                    return;
                };
                match block.kind {
                    BlockKind::Tool(tool_index) => w.tool_call_args(out, 0, tool_index, part),
                    BlockKind::Json => w.text(out, 0, part),
                    _ => return,
                }
                block.emitted |= !part.is_empty();
            }
            Some("signature_delta") => {
                w.reasoning_signature(out, 0, d.signature.as_deref().unwrap_or(""))
            }
            // citations_delta: nothing to show in either client API yet.
            _ => {}
        }
    }

    fn block_stop(&mut self, w: &mut dyn ChatSink, index: u64, out: &mut Vec<u8>) {
        let Some(pos) = self.blocks.iter().position(|b| b.index == index) else {
            return;
        };
        let block = self.blocks.swap_remove(pos);
        if block.emitted {
            return;
        }
        // A tool without parameters streams no input; OpenAI clients expect `{}`.
        match block.kind {
            BlockKind::Tool(tool_index) => w.tool_call_args(out, 0, tool_index, "{}"),
            BlockKind::Json => w.text(out, 0, "{}"),
            _ => {}
        }
    }

    fn close(&mut self, w: &mut dyn ChatSink, out: &mut Vec<u8>) {
        if !w.has_finished(0) {
            w.finish(out, 0, FinishReason::Stop);
        }
        if let Some(u) = self.usage.get() {
            w.usage(out, &u);
        }
        w.done(out);
    }
}

impl StreamTranslator for AnthropicStream {
    fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let AnthropicStream { writer, sse, state } = self;
        if writer.is_done() {
            return;
        }
        if sse
            .feed(chunk, |ev| state.on_event(writer.as_mut(), ev, out))
            .is_err()
        {
            writer.error(
                out,
                &ApiError::bad_gateway(
                    "anthropic sent a stream event larger than the gateway accepts",
                ),
            );
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let AnthropicStream { writer, sse, state } = self;
        if !writer.is_done() {
            sse.finish(|ev| state.on_event(writer.as_mut(), ev, out));
        }
        if writer.is_done() {
            return;
        }
        if state.stop_reason_seen {
            state.close(writer.as_mut(), out);
        } else {
            writer.error(
                out,
                &ApiError::bad_gateway(
                    "the anthropic stream ended before the message was complete",
                ),
            );
        }
    }

    /// Final once `message_delta` gave the stop reason (its usage is the last Anthropic sends).
    fn final_usage(&self) -> Option<Usage> {
        self.completed().then(|| self.state.usage.get()).flatten()
    }

    fn completed(&self) -> bool {
        self.writer.completed() || self.state.stop_reason_seen
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

#[derive(Deserialize)]
struct ErrorEnvelope<'a> {
    #[serde(borrow)]
    error: ErrorIn<'a>,
}

#[derive(Deserialize)]
struct ErrorIn<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Text<'a>>,
    #[serde(default, borrow)]
    message: Option<Text<'a>>,
}

/// `{"type":"error","error":{"type":...,"message":...}}` with its HTTP status, in OpenAI terms.
fn translate_error(status: u16, body: &[u8]) -> ApiError {
    let status = client_status(status);
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(env) => error_from_parts(
            Some(status),
            env.error.kind.as_deref(),
            env.error.message.as_deref(),
        ),
        Err(_) => {
            let mut e = opaque_error("anthropic", status, body);
            e.message = redact(&e.message);
            e
        }
    }
}

/// The HTTP status Anthropic gives each error type, for errors that arrive inside a stream.
fn status_of_type(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// Anthropic's "input length and `max_tokens` exceed context limit" is a context overflow too.
fn is_anthropic_context_overflow(message: &str) -> bool {
    is_context_overflow(message) || message.contains("exceed context limit")
}

fn error_from_parts(status: Option<u16>, kind: Option<&str>, message: Option<&str>) -> ApiError {
    let kind = kind.unwrap_or("");
    let status = status.unwrap_or_else(|| client_status(status_of_type(kind)));
    let message = match message {
        Some(m) if !m.is_empty() => redact(m),
        _ => format!("anthropic returned HTTP {status} ({kind})"),
    };
    let mut e = ApiError::from_status(status, message);
    e.kind = match kind {
        "invalid_request_error" | "not_found_error" | "request_too_large" => {
            "invalid_request_error"
        }
        "authentication_error" => "authentication_error",
        "permission_error" => "permission_error",
        "rate_limit_error" => "rate_limit_error",
        "billing_error" => "insufficient_quota",
        "timeout_error" => "timeout_error",
        "api_error" | "overloaded_error" => "api_error",
        _ => e.kind,
    };
    if e.kind == "invalid_request_error" && is_anthropic_context_overflow(&e.message) {
        e.param = Some("messages".into());
        e.code = Some("context_length_exceeded".into());
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::parse_chat;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    const KEY: &str = "sk-ant-api03-unit-test-key-0123456789";

    fn request_with(body: Value, drop_params: bool) -> Result<Value, ApiError> {
        let bytes = serde_json::to_vec(&body).unwrap();
        let req = parse_chat(&bytes)?;
        let out = translate_request(
            &req,
            "claude-sonnet-4-5",
            RequestOptions {
                drop_params,
                ..Default::default()
            },
        )?;
        Ok(serde_json::from_slice(&out).unwrap())
    }

    fn request(body: Value) -> Value {
        request_with(body, false).unwrap()
    }

    fn request_err(body: Value) -> ApiError {
        request_with(body, false).unwrap_err()
    }

    fn ctx(include_usage: bool) -> ResponseCtx {
        ResponseCtx {
            id: "chatcmpl-abc".into(),
            created: 1_700_000_000,
            model: "claude".into(),
            include_usage,
            api: Default::default(),
        }
    }

    #[test]
    fn endpoint_headers_and_paths() {
        let p = Params {
            model: "claude-sonnet-4-5",
            api_key: Some(KEY),
            ..Default::default()
        };
        let e = ANTHROPIC.endpoint(&p).unwrap();
        assert_eq!(e.base_url, "https://api.anthropic.com");
        assert!(e
            .headers
            .contains(&("x-api-key".to_string(), KEY.to_string())));
        assert!(e
            .headers
            .contains(&("anthropic-version".to_string(), "2023-06-01".to_string())));
        assert!(!e.headers.iter().any(|(k, _)| k == "authorization"));
        assert_eq!(ANTHROPIC.default_key_env(), Some("ANTHROPIC_API_KEY"));
        assert!(!ANTHROPIC.supports(Operation::Embeddings));
        // The base URL's path, as the configuration takes it from `api_base`.
        for (base_path, path) in [
            ("", "/v1/messages"),
            ("/v1", "/v1/messages"),
            ("/v1/messages", "/v1/messages"),
            ("/anthropic", "/anthropic/v1/messages"),
        ] {
            let t = Target {
                model: "claude-sonnet-4-5".into(),
                base_path: base_path.into(),
                api_version: None,
            };
            assert_eq!(
                ANTHROPIC.path(&t, Operation::Chat, true),
                path,
                "{base_path}"
            );
        }
        assert_eq!(messages_path(""), "/v1/messages");
    }

    #[test]
    fn translates_a_full_conversation() {
        let got = request(json!({
            "model": "claude",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                {"role": "user", "content": "What's the weather in Paris?"},
                {"role": "user", "content": [
                    {"type": "text", "text": "And this picture?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
                ]},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\": \"Paris\"}"}},
                    {"id": "toolu_01B", "type": "function", "function": {"name": "get_time", "arguments": ""}}
                ]},
                {"role": "tool", "tool_call_id": "toolu_01A", "content": "18°C, cloudy"},
                {"role": "tool", "tool_call_id": "toolu_01B", "content": [{"type": "text", "text": "14:05"}]},
                {"role": "user", "content": "Thanks"},
                {"role": "assistant", "content": [{"type": "text", "text": "De rien."}]},
                {"role": "user", "content": "Bye", "name": "alice"}
            ],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                 "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}},
                {"type": "function", "function": {"name": "get_time"}}
            ],
            "temperature": 0.3, "top_p": 0.9, "max_tokens": 100, "max_completion_tokens": 200,
            "stop": ["END", "STOP"], "user": "user-42", "stream": true,
            "stream_options": {"include_usage": true}, "n": 1
        }));
        let expected = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 200,
            "system": [
                {"type": "text", "text": "You are terse."},
                {"type": "text", "text": "Answer in French."}
            ],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What's the weather in Paris?"},
                    {"type": "text", "text": "And this picture?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"location": "Paris"}},
                    {"type": "tool_use", "id": "toolu_01B", "name": "get_time", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18°C, cloudy"},
                    {"type": "tool_result", "tool_use_id": "toolu_01B", "content": [{"type": "text", "text": "14:05"}]},
                    {"type": "text", "text": "Thanks"}
                ]},
                {"role": "assistant", "content": [{"type": "text", "text": "De rien."}]},
                {"role": "user", "content": [{"type": "text", "text": "Bye"}]}
            ],
            "temperature": 0.3,
            "top_p": 0.9,
            "stop_sequences": ["END", "STOP"],
            "metadata": {"user_id": "user-42"},
            "stream": true,
            "tools": [
                {"name": "get_weather", "description": "Current weather",
                 "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}},
                {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
            ]
        });
        assert_eq!(got, expected);
    }

    #[test]
    fn defaults_and_pass_through_values() {
        let got = request(json!({
            "model": "claude",
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 1.5, "stop": "###"
        }));
        // No cap from the client: Anthropic requires one, LiteLLM's default is sent.
        assert_eq!(got["max_tokens"], 4096);
        // Above Anthropic's 0..1: passed through for Anthropic to refuse, never clamped.
        assert_eq!(got["temperature"], 1.5);
        assert_eq!(got["stop_sequences"], json!(["###"]));
        for absent in [
            "stream",
            "system",
            "tools",
            "tool_choice",
            "metadata",
            "top_p",
        ] {
            assert!(got.get(absent).is_none(), "{absent}: {got}");
        }
        let got = request(
            json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 7}),
        );
        assert_eq!(got["max_tokens"], 7);
        assert_eq!(
            got["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
        );
    }

    #[test]
    fn tool_choice_mapping() {
        let tools = json!([
            {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "b", "parameters": null}}
        ]);
        let choice = |tc: Value, parallel: Value| {
            let mut body = json!({"model": "claude", "messages": [{"role": "user", "content": "x"}], "tools": tools});
            if !tc.is_null() {
                body["tool_choice"] = tc;
            }
            if !parallel.is_null() {
                body["parallel_tool_calls"] = parallel;
            }
            request(body)
                .get("tool_choice")
                .cloned()
                .unwrap_or(Value::Null)
        };
        assert_eq!(choice(Value::Null, Value::Null), Value::Null);
        assert_eq!(choice(json!("auto"), Value::Null), json!({"type": "auto"}));
        assert_eq!(
            choice(json!("required"), Value::Null),
            json!({"type": "any"})
        );
        assert_eq!(choice(json!("none"), Value::Null), json!({"type": "none"}));
        assert_eq!(
            choice(
                json!({"type": "function", "function": {"name": "b"}}),
                Value::Null
            ),
            json!({"type": "tool", "name": "b"})
        );
        assert_eq!(
            choice(Value::Null, json!(false)),
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        assert_eq!(
            choice(json!("required"), json!(false)),
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        assert_eq!(choice(json!("none"), json!(false)), json!({"type": "none"}));
        assert_eq!(choice(json!("auto"), json!(true)), json!({"type": "auto"}));
        // A null schema becomes an empty object schema, as Anthropic requires one.
        let got = request(
            json!({"model": "claude", "messages": [{"role": "user", "content": "x"}], "tools": tools}),
        );
        assert_eq!(
            got["tools"][1]["input_schema"],
            json!({"type": "object", "properties": {}})
        );
        // tool_choice without tools is meaningless to Anthropic: not sent.
        let got = request(
            json!({"model": "claude", "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto", "parallel_tool_calls": false}),
        );
        assert!(got.get("tool_choice").is_none() && got.get("tools").is_none());
    }

    #[test]
    fn json_mode_forces_a_schema_tool() {
        let msgs = json!([{"role": "user", "content": "give me json"}]);
        let got = request(
            json!({"model": "claude", "messages": msgs, "response_format": {"type": "json_object"}}),
        );
        assert_eq!(
            got["tools"],
            json!([{"name": "json_tool_call", "input_schema": {"type": "object", "additionalProperties": true, "properties": {}}}])
        );
        assert_eq!(
            got["tool_choice"],
            json!({"type": "tool", "name": "json_tool_call"})
        );

        let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
        let got = request(json!({"model": "claude", "messages": msgs,
            "response_format": {"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": true}}}));
        assert_eq!(
            got["tools"],
            json!([{"name": "json_tool_call", "input_schema": schema}])
        );
        assert_eq!(
            got["tool_choice"],
            json!({"type": "tool", "name": "json_tool_call"})
        );

        let tools = json!([{"type": "function", "function": {"name": "lookup"}}]);
        let got = request(
            json!({"model": "claude", "messages": msgs, "tools": tools, "response_format": {"type": "json_object"}}),
        );
        assert_eq!(got["tools"][0]["name"], "lookup");
        assert_eq!(got["tools"][1]["name"], "json_tool_call");
        assert_eq!(got["tool_choice"], json!({"type": "any"}));
        let got = request(
            json!({"model": "claude", "messages": msgs, "tools": tools, "tool_choice": "none", "response_format": {"type": "json_object"}}),
        );
        assert_eq!(
            got["tool_choice"],
            json!({"type": "tool", "name": "json_tool_call"})
        );

        let got = request(
            json!({"model": "claude", "messages": msgs, "response_format": {"type": "text"}}),
        );
        assert!(got.get("tools").is_none());

        let e = request_err(json!({"model": "claude", "messages": msgs,
            "tools": [{"type": "function", "function": {"name": "json_tool_call"}}]}));
        assert_eq!(e.param.as_deref(), Some("tools"));
    }

    #[test]
    fn thinking_top_k_and_reasoning_effort_are_written() {
        let base = || json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
        let with = |extra: Value| {
            let mut body = base();
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            request(body)
        };
        let got = with(json!({"thinking": {"type": "enabled", "budget_tokens": 2000}, "top_k": 5}));
        assert_eq!(
            got["thinking"],
            json!({"type": "enabled", "budget_tokens": 2000})
        );
        assert_eq!(got["top_k"], 5);
        assert_eq!(got["max_tokens"], 4096);
        let got = with(json!({"thinking": {"type": "adaptive", "budget_tokens": 2000}}));
        assert_eq!(got["thinking"], json!({"type": "adaptive"}));
        let got = with(json!({"thinking": {"type": "disabled"}}));
        assert_eq!(got["thinking"], json!({"type": "disabled"}));
        // LiteLLM's budgets for OpenAI's effort; none and minimal think not at all.
        for (effort, budget) in [("low", 1024), ("medium", 2048), ("xhigh", 4095)] {
            let got = with(json!({"reasoning_effort": effort}));
            assert_eq!(
                got["thinking"],
                json!({"type": "enabled", "budget_tokens": budget}),
                "{effort}"
            );
            assert_eq!(got["max_tokens"], 4096, "{effort}: the cap reserved");
        }
        let got = with(json!({"reasoning_effort": "high", "max_tokens": 10000}));
        assert_eq!(
            got["thinking"],
            json!({"type": "enabled", "budget_tokens": 4096})
        );
        for effort in ["none", "minimal"] {
            assert!(with(json!({"reasoning_effort": effort}))
                .get("thinking")
                .is_none());
        }
        // `thinking` wins over `reasoning_effort`.
        let got = with(json!({"reasoning_effort": "high", "thinking": {"type": "disabled"}}));
        assert_eq!(got["thinking"], json!({"type": "disabled"}));
        // A cap the budget does not fit under: the effort's budget shrinks to fit, or goes.
        let got = with(json!({"reasoning_effort": "medium", "max_completion_tokens": 1500}));
        assert_eq!(got["max_tokens"], 1500);
        assert_eq!(got["thinking"]["budget_tokens"], 1499);
        let got = with(json!({"reasoning_effort": "low", "max_tokens": 600}));
        assert!(got.get("thinking").is_none());
        // The client's own budget over its own cap is Anthropic's 400, as with LiteLLM.
        let got = with(
            json!({"thinking": {"type": "enabled", "budget_tokens": 3000}, "max_tokens": 2000}),
        );
        assert_eq!(got["thinking"]["budget_tokens"], 3000);
        assert_eq!(got["max_tokens"], 2000);
        // The gateway's own cap (near a budget's end) is never exceeded: thinking fits under it.
        let bytes = serde_json::to_vec(
            &json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}],
            "thinking": {"type": "enabled", "budget_tokens": 3000}, "max_tokens": 8000}),
        )
        .unwrap();
        let mut req = parse_chat(&bytes).unwrap();
        req.output_cap = Some(2500);
        let out = translate_request(&req, "claude-sonnet-4-5", RequestOptions::default()).unwrap();
        let got: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(got["max_tokens"], 2500);
        assert_eq!(got["thinking"]["budget_tokens"], 2499);
        // Temperature passes through (Anthropic's 400 names it with thinking on).
        let got = with(json!({"reasoning_effort": "low", "temperature": 0.2}));
        assert_eq!(got["temperature"], 0.2);
    }

    #[test]
    fn thinking_blocks_go_first_in_their_assistant_turn() {
        let got = request(json!({"model": "claude", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": "Checking.",
             "thinking_blocks": [
                {"type": "thinking", "thinking": "Need a tool.", "signature": "sig1"},
                {"type": "redacted_thinking", "data": "EmwK"},
                {"type": "thinking", "thinking": "unsigned"}],
             "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}],
            "reasoning_effort": "low"}));
        assert_eq!(
            got["messages"][1]["content"],
            json!([
                {"type": "thinking", "thinking": "Need a tool.", "signature": "sig1"},
                {"type": "redacted_thinking", "data": "EmwK"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}
            ])
        );
    }

    #[test]
    fn unsupported_params_are_refused_or_dropped() {
        let base = || json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
        for (field, value) in [
            ("seed", json!(7)),
            ("logit_bias", json!({"50256": -100})),
            ("logprobs", json!(true)),
            ("top_logprobs", json!(2)),
            ("frequency_penalty", json!(0.5)),
            ("presence_penalty", json!(0.5)),
            ("n", json!(2)),
            ("some_future_field", json!({"x": 1})),
        ] {
            let mut body = base();
            body[field] = value;
            let e = request_with(body.clone(), false).unwrap_err();
            assert_eq!(e.status, 400, "{field}");
            assert_eq!(e.param.as_deref(), Some(field), "{field}: {}", e.message);
            assert_eq!(e.code.as_deref(), Some("unsupported_parameter"));
            assert!(
                e.message.contains(field) && e.message.contains("drop_params"),
                "{}",
                e.message
            );
            let dropped = request_with(body, true).unwrap();
            assert!(dropped.get(field).is_none(), "{field}");
            assert_eq!(dropped["model"], "claude-sonnet-4-5");
        }
        let mut body = base();
        body["n"] = json!(1);
        body["seed"] = Value::Null;
        assert!(request_with(body, false).is_ok());
    }

    #[test]
    fn bad_messages_name_the_param() {
        let cases = [
            json!([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]),
            json!([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1,2]"}}]}]),
            json!([{"role": "user", "content": "x"}, {"role": "tool", "content": "no id"}]),
            json!([{"role": "user", "content": "x"}, {"role": "function", "name": "f", "content": "old"}]),
            json!([{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}, {"role": "user", "content": "x"}]),
            json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]}]),
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]),
            json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/svg+xml,<svg/>"}}]}]),
            json!([{"role": "system", "content": "only a system prompt"}]),
            json!([{"role": "user", "content": ""}]),
        ];
        for messages in cases {
            let e = request_err(json!({"model": "claude", "messages": messages}));
            assert_eq!(e.status, 400, "{messages}");
            assert_eq!(
                e.param.as_deref(),
                Some("messages"),
                "{messages}: {}",
                e.message
            );
        }
        let e = request_err(
            json!({"model": "claude", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]}),
        );
        assert!(
            e.message.contains("messages[1]") && e.message.contains("arguments"),
            "{}",
            e.message
        );
    }

    #[test]
    fn pdf_and_whitespace_arguments() {
        let got = request(json!({"model": "claude", "messages": [
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:application/pdf;base64,JVBERi0="}},
                {"type": "image_url", "image_url": "https://example.com/doc.pdf"}
            ]},
            {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "  {\"a\": [1, 2]}  "}}]},
            {"role": "tool", "tool_call_id": "t1", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}}
            ]},
            {"role": "tool", "tool_call_id": "t1", "content": ""}
        ]}));
        let m = &got["messages"];
        assert_eq!(
            m[0]["content"][0],
            json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}})
        );
        assert_eq!(
            m[0]["content"][1],
            json!({"type": "document", "source": {"type": "url", "url": "https://example.com/doc.pdf"}})
        );
        assert_eq!(m[1]["content"][0]["input"], json!({"a": [1, 2]}));
        assert_eq!(
            m[2]["content"][0]["content"][0]["source"]["media_type"],
            "image/jpeg"
        );
        assert_eq!(
            m[2]["content"][1],
            json!({"type": "tool_result", "tool_use_id": "t1"})
        );
    }

    fn response(body: Value) -> (Value, Usage) {
        let t = translate_response(&serde_json::to_vec(&body).unwrap(), &ctx(false)).unwrap();
        (
            serde_json::from_slice(&t.body).unwrap(),
            t.usage.unwrap_or_default(),
        )
    }

    #[test]
    fn translates_text_thinking_and_usage() {
        let (v, usage) = response(json!({
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [
                {"type": "thinking", "thinking": "Let me think.", "signature": "EqQBCgIYAhIM"},
                {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
                {"type": "text", "text": "Hello"},
                {"type": "text", "text": ", world"}
            ],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 20, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 100,
                      "output_tokens": 12, "service_tier": "standard", "cache_creation": {"ephemeral_5m_input_tokens": 5}}
        }));
        assert_eq!(v["id"], "chatcmpl-abc");
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "claude");
        let msg = &v["choices"][0]["message"];
        assert_eq!(msg["role"], "assistant");
        assert_eq!(msg["content"], "Hello, world");
        assert_eq!(msg["reasoning_content"], "Let me think.");
        assert!(msg.get("tool_calls").is_none());
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["prompt_tokens"], 125);
        assert_eq!(v["usage"]["completion_tokens"], 12);
        assert_eq!(v["usage"]["total_tokens"], 137);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
        assert_eq!(
            usage,
            Usage {
                prompt_tokens: 125,
                completion_tokens: 12,
                cached_tokens: 100,
                cache_creation_tokens: 5,
                reasoning_tokens: 0
            }
        );
    }

    #[test]
    fn translates_tool_calls_and_json_answers() {
        let (v, _) = response(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [
                {"type": "text", "text": "I'll check."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"location": "Paris", "unit": "c"}},
                {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}}
            ],
            "stop_reason": "tool_use", "usage": {"input_tokens": 10, "output_tokens": 30}
        }));
        let msg = &v["choices"][0]["message"];
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(msg["content"], "I'll check.");
        let calls = msg["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0]["id"], "toolu_01");
        assert_eq!(calls[0]["type"], "function");
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"location": "Paris", "unit": "c"}));
        assert_eq!(calls[1]["function"]["arguments"], "{}");

        let (v, _) = response(json!({
            "content": [{"type": "tool_use", "id": "toolu_03", "name": "lookup", "input": {"q": 1}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 1}
        }));
        assert!(v["choices"][0]["message"]["content"].is_null());

        let (v, _) = response(json!({
            "content": [{"type": "tool_use", "id": "toolu_04", "name": "json_tool_call", "input": {"city": "Paris"}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 1}
        }));
        let msg = &v["choices"][0]["message"];
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert!(msg.get("tool_calls").is_none());
        let answer: Value = serde_json::from_str(msg["content"].as_str().unwrap()).unwrap();
        assert_eq!(answer, json!({"city": "Paris"}));
    }

    #[test]
    fn finish_reasons() {
        for (stop, expected) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("pause_turn", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("refusal", "content_filter"),
            ("tool_use", "stop"),
            ("something_new", "stop"),
        ] {
            let (v, _) =
                response(json!({"content": [{"type": "text", "text": "x"}], "stop_reason": stop}));
            assert_eq!(v["choices"][0]["finish_reason"], expected, "{stop}");
        }
        let (v, u) = response(json!({"content": [], "stop_reason": null, "usage": null}));
        assert_eq!(v["choices"][0]["message"]["content"], "");
        assert_eq!(u, Usage::default());
        for bad in [&b"not json"[..], b"[1,2]", b"{\"content\": 5}", b""] {
            let e = translate_response(bad, &ctx(false)).unwrap_err();
            assert_eq!(e.status, 502);
        }
    }

    // --- streams ---------------------------------------------------------------------------

    fn sse(events: &[(&str, Value)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in events {
            out.extend_from_slice(format!("event: {name}\ndata: {data}\n\n").as_bytes());
        }
        out
    }

    fn text_stream() -> Vec<u8> {
        sse(&[
            (
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_01", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5-20250929", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 10, "output_tokens": 1}}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            ("ping", json!({"type": "ping"})),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " wörld ✓\n\"quoted\""}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 15}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ])
    }

    fn tool_stream() -> Vec<u8> {
        sse(&[
            (
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_02", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 400, "output_tokens": 1}}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Need the weather."}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Checking."}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 1}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_01T1x", "name": "get_weather", "input": {}}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"location\": \"San"}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": " Francisco, CA\"}"}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 2}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 3}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 89}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ])
    }

    fn run(chunks: &[&[u8]], include_usage: bool) -> (Vec<u8>, Usage) {
        let mut t = AnthropicStream::new(ctx(include_usage));
        let mut out = Vec::new();
        for c in chunks {
            t.feed(c, &mut out);
        }
        t.finish(&mut out);
        (out, t.final_usage().unwrap_or_default())
    }

    fn events(out: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(out).unwrap();
        assert!(text.ends_with("\n\n"), "{text}");
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.strip_prefix("data: ").unwrap_or_else(|| panic!("{e}")))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    /// Whole, every two-part split, and one byte at a time give the same bytes.
    fn assert_chunking_invariant(input: &[u8], include_usage: bool) -> Vec<u8> {
        let (whole, usage) = run(&[input], include_usage);
        for i in 0..=input.len() {
            let (split, u) = run(&[&input[..i], &input[i..]], include_usage);
            assert_eq!(split, whole, "split at {i}");
            assert_eq!(u, usage);
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&bytes, include_usage).0, whole, "one byte at a time");
        whole
    }

    #[test]
    fn text_stream_with_usage() {
        let out = assert_chunking_invariant(&text_stream(), true);
        let ev = events(&out);
        assert_eq!(
            ev[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        let text: String = ev
            .iter()
            .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello wörld ✓\n\"quoted\"");
        assert!(ev
            .iter()
            .all(|e| e["model"] == "claude" && e["id"] == "chatcmpl-abc"));
        assert!(ev.iter().all(|e| e["object"] == "chat.completion.chunk"));
        let finish = &ev[ev.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        let last = ev.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["prompt_tokens"], 38);
        assert_eq!(last["usage"]["completion_tokens"], 15);
        assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 10);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"));
        assert_eq!(text.matches("[DONE]").count(), 1);
    }

    #[test]
    fn text_stream_without_usage() {
        let (out, usage) = run(&[&text_stream()], false);
        let ev = events(&out);
        assert!(ev.iter().all(|e| e.get("usage").is_none()), "{ev:?}");
        assert_eq!(ev.last().unwrap()["choices"][0]["finish_reason"], "stop");
        // The gateway still learns the usage for its own accounting.
        assert_eq!(usage.completion_tokens, 15);
        assert_eq!(usage.prompt_tokens, 38);
        assert_eq!(usage.cache_creation_tokens, 3);
    }

    #[test]
    fn tool_stream_reassembles_arguments() {
        let out = assert_chunking_invariant(&tool_stream(), true);
        let ev = events(&out);
        let reasoning: String = ev
            .iter()
            .filter_map(|e| e["choices"][0]["delta"]["reasoning_content"].as_str())
            .collect();
        assert_eq!(reasoning, "Need the weather.");
        let mut calls: Vec<(String, String, String)> = Vec::new();
        for e in &ev {
            for c in e["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let i = c["index"].as_u64().unwrap() as usize;
                if calls.len() <= i {
                    calls.push(Default::default());
                }
                if let Some(id) = c["id"].as_str() {
                    calls[i].0 = id.into();
                    calls[i].1 = c["function"]["name"].as_str().unwrap().into();
                }
                calls[i]
                    .2
                    .push_str(c["function"]["arguments"].as_str().unwrap());
            }
        }
        assert_eq!(calls.len(), 2);
        assert_eq!(
            (calls[0].0.as_str(), calls[0].1.as_str()),
            ("toolu_01T1x", "get_weather")
        );
        let args: Value = serde_json::from_str(&calls[0].2).unwrap();
        assert_eq!(args, json!({"location": "San Francisco, CA"}));
        assert_eq!(calls[1].2, "{}");
        let finishes: Vec<&Value> = ev
            .iter()
            .filter(|e| !e["choices"][0]["finish_reason"].is_null())
            .collect();
        assert_eq!(finishes.len(), 1);
        assert_eq!(finishes[0]["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn json_mode_stream_is_content() {
        let input = sse(&[
            (
                "message_start",
                json!({"type": "message_start", "message": {"usage": {"input_tokens": 30, "output_tokens": 1}}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_9", "name": "json_tool_call", "input": {}}}),
            ),
            ("ping", json!({"type": "ping"})),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": "}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
            ),
            (
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
            ),
            ("message_stop", json!({"type": "message_stop"})),
        ]);
        let out = assert_chunking_invariant(&input, false);
        let ev = events(&out);
        assert!(ev
            .iter()
            .all(|e| e["choices"][0]["delta"].get("tool_calls").is_none()));
        let text: String = ev
            .iter()
            .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({"city": "Paris"})
        );
        assert_eq!(ev.last().unwrap()["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn stream_error_event_ends_the_stream() {
        let mut input = sse(&[
            (
                "message_start",
                json!({"type": "message_start", "message": {"usage": {"input_tokens": 3, "output_tokens": 1}}}),
            ),
            (
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Part"}}),
            ),
            (
                "error",
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ),
        ]);
        input.extend_from_slice(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"late\"}}\n\n");
        let out = assert_chunking_invariant(&input, true);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(!text.contains("[DONE]") && !text.contains("late"), "{text}");
        let ev = events(&out);
        let err = &ev.last().unwrap()["error"];
        assert_eq!(err["message"], "Overloaded");
        assert_eq!(err["type"], "api_error");
        assert!(ev
            .iter()
            .any(|e| e["choices"][0]["delta"]["content"] == "Part"));
    }

    #[test]
    fn broken_streams_end_with_an_error() {
        // Cut before message_delta: the answer is incomplete.
        let whole = text_stream();
        let cut = &whole[..whole.len() / 2];
        let ev = events(&run(&[cut], false).0);
        assert_eq!(ev.last().unwrap()["error"]["type"], "api_error");
        // Nothing at all.
        let ev = events(&run(&[], false).0);
        assert_eq!(ev.len(), 1);
        assert!(ev[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ended"));
        // Garbage event data.
        let ev = events(&run(&[b"event: message_start\ndata: {oops\n\n"], false).0);
        assert_eq!(ev.last().unwrap()["error"]["code"], "upstream_error");
        // message_delta seen but message_stop missing: complete enough to close normally.
        let trimmed = String::from_utf8(whole.clone()).unwrap();
        let without_stop = trimmed.split("event: message_stop").next().unwrap();
        let out = run(&[without_stop.as_bytes()], true).0;
        let ev = events(&out);
        assert_eq!(ev.last().unwrap()["usage"]["completion_tokens"], 15);
        assert!(String::from_utf8(out)
            .unwrap()
            .ends_with("data: [DONE]\n\n"));
        // Events without an `event:` line are dispatched by their JSON type.
        let bare = String::from_utf8(whole).unwrap().replace("event: ", ": ");
        assert_eq!(
            events(&run(&[bare.as_bytes()], false).0),
            events(&run(&[&text_stream()], false).0)
        );
    }

    // --- errors --------------------------------------------------------------------------

    fn anthropic_error_body(kind: &str, message: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"})).unwrap()
    }

    #[test]
    fn errors_map_status_type_and_code() {
        for (status, kind, want_status, want_type) in [
            (400, "invalid_request_error", 400, "invalid_request_error"),
            (401, "authentication_error", 401, "authentication_error"),
            (402, "billing_error", 402, "insufficient_quota"),
            (403, "permission_error", 403, "permission_error"),
            (404, "not_found_error", 404, "invalid_request_error"),
            (413, "request_too_large", 413, "invalid_request_error"),
            (429, "rate_limit_error", 429, "rate_limit_error"),
            (500, "api_error", 500, "api_error"),
            (504, "timeout_error", 504, "timeout_error"),
            (529, "overloaded_error", 503, "api_error"),
            (418, "teapot_error", 418, "api_error"),
        ] {
            let e = ANTHROPIC.error(status, None, &anthropic_error_body(kind, "boom"));
            assert_eq!((e.status, e.kind), (want_status, want_type), "{kind}");
            assert_eq!(e.message, "boom");
            assert!(e.code.is_none(), "{kind}");
        }
        let e = ANTHROPIC.error(
            400,
            None,
            &anthropic_error_body(
                "invalid_request_error",
                "prompt is too long: 210000 tokens > 200000 maximum",
            ),
        );
        assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = ANTHROPIC.error(400, None, &anthropic_error_body("invalid_request_error", "input length and `max_tokens` exceed context limit: 197626 + 8192 > 200000, decrease input length or `max_tokens` and try again"));
        assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
        let e = ANTHROPIC.error(
            400,
            None,
            &anthropic_error_body("invalid_request_error", "max_tokens: Field required"),
        );
        assert!(e.code.is_none());
    }

    #[test]
    fn errors_hide_keys_and_survive_garbage() {
        let e = ANTHROPIC.error(
            401,
            None,
            &anthropic_error_body("authentication_error", &format!("invalid x-api-key {KEY}")),
        );
        assert!(!e.message.contains("unit-test-key"), "{}", e.message);
        let e = ANTHROPIC.error(
            503,
            None,
            format!("<html>upstream {KEY} down</html>").as_bytes(),
        );
        assert_eq!(e.status, 503);
        assert!(!e.message.contains("unit-test-key"), "{}", e.message);
        let e = ANTHROPIC.error(529, None, b"");
        assert_eq!(e.status, 503);
        let e = ANTHROPIC.error(200, None, b"{}");
        assert_eq!(e.status, 502);
        let e = ANTHROPIC.error(400, None, br#"{"type":"error","error":{}}"#);
        assert_eq!((e.status, e.kind), (400, "invalid_request_error"));
        assert!(!e.message.is_empty());
    }

    // --- properties ----------------------------------------------------------------------

    fn arb_json() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("type".to_string()),
            Just("text".to_string()),
            Just("index".to_string()),
            Just("delta".to_string()),
            Just("content".to_string()),
            Just("content_block".to_string()),
            Just("usage".to_string()),
            Just("input".to_string()),
            Just("partial_json".to_string()),
            Just("stop_reason".to_string()),
            Just("error".to_string()),
            Just("message".to_string()),
            Just("input_tokens".to_string()),
            "[a-z_]{0,8}",
        ];
        let word = prop_oneof![
            Just("tool_use".to_string()),
            Just("text".to_string()),
            Just("thinking".to_string()),
            Just("json_tool_call".to_string()),
            Just("input_json_delta".to_string()),
            Just("text_delta".to_string()),
            Just("end_turn".to_string()),
            Just("overloaded_error".to_string()),
            ".{0,6}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<u32>().prop_map(|n| json!(n)),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            word.prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((key.clone(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// Well-formed Anthropic events with arbitrary values, to reach deep into the translator.
    fn arb_known_event() -> impl Strategy<Value = Value> {
        let text = ".{0,8}";
        let index = 0u64..4;
        prop_oneof![
            (any::<u16>(), any::<u16>()).prop_map(|(i, c)| json!({"type": "message_start", "message": {"usage": {"input_tokens": i, "cache_read_input_tokens": c, "output_tokens": 1}}})),
            (index.clone(), prop_oneof![Just("text"), Just("thinking"), Just("tool_use"), Just("redacted_thinking")], prop_oneof![Just("f"), Just("json_tool_call")])
                .prop_map(|(i, t, n)| json!({"type": "content_block_start", "index": i, "content_block": {"type": t, "text": "", "thinking": "", "id": "toolu_1", "name": n, "input": {}}})),
            (index.clone(), prop_oneof![Just("text_delta"), Just("thinking_delta"), Just("input_json_delta"), Just("signature_delta")], text)
                .prop_map(|(i, t, x)| json!({"type": "content_block_delta", "index": i, "delta": {"type": t, "text": x, "thinking": x, "partial_json": x}})),
            index.prop_map(|i| json!({"type": "content_block_stop", "index": i})),
            (prop_oneof![Just("end_turn"), Just("tool_use"), Just("max_tokens"), Just("refusal")], any::<u16>())
                .prop_map(|(r, o)| json!({"type": "message_delta", "delta": {"stop_reason": r}, "usage": {"output_tokens": o}})),
            Just(json!({"type": "message_stop"})),
            Just(json!({"type": "ping"})),
            Just(json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})),
        ]
    }

    fn arb_event() -> impl Strategy<Value = Vec<u8>> {
        let name = prop_oneof![
            Just("message_start"),
            Just("content_block_start"),
            Just("content_block_delta"),
            Just("content_block_delta"),
            Just("message_delta"),
            Just("weird"),
        ];
        prop_oneof![
            8 => arb_known_event().prop_map(|v| {
                format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap_or("")).into_bytes()
            }),
            2 => (name, arb_json()).prop_map(|(n, mut v)| {
                if let Value::Object(m) = &mut v {
                    m.insert("type".into(), json!(n));
                }
                format!("event: {n}\ndata: {v}\n\n").into_bytes()
            }),
            1 => prop::collection::vec(any::<u8>(), 0..24),
        ]
    }

    fn arb_chat_request() -> impl Strategy<Value = Value> {
        let text = prop_oneof![1 => Just(String::new()), 4 => ".{1,12}", 2 => Just("{\"a\":1}".to_string())];
        let part = prop_oneof![
            6 => text.clone().prop_map(|t| json!({"type": "text", "text": t})),
            2 => prop_oneof![
                Just("data:image/png;base64,AAAA"),
                Just("https://x.test/a.pdf"),
                Just("http://x.test/a.gif"),
                Just("ftp://nope"),
                Just("data:text/plain,hi"),
            ]
            .prop_map(|u| json!({"type": "image_url", "image_url": {"url": u}})),
            1 => Just(json!({"type": "input_audio", "input_audio": {"data": "", "format": "wav"}})),
        ];
        let content = prop_oneof![
            Just(Value::Null),
            text.clone().prop_map(Value::String),
            prop::collection::vec(part, 0..3).prop_map(Value::Array),
        ];
        let role = prop_oneof![
            2 => Just("system"),
            1 => Just("developer"),
            6 => Just("user"),
            4 => Just("assistant"),
            3 => Just("tool"),
            1 => Just("function"),
        ];
        let call = (text.clone(), prop_oneof![5 => Just("f"), 1 => Just("json_tool_call")]).prop_map(
            |(args, name)| json!({"id": "c1", "type": "function", "function": {"name": name, "arguments": args}}),
        );
        let message = (
            role,
            content,
            prop::collection::vec(call, 0..2),
            any::<bool>(),
        )
            .prop_map(|(role, content, calls, with_id)| {
                let mut m = json!({"role": role, "content": content});
                if role == "assistant" && !calls.is_empty() {
                    m["tool_calls"] = json!(calls);
                }
                if with_id {
                    m["tool_call_id"] = json!("c1");
                }
                m
            });
        let tool = prop_oneof![4 => Just("f"), 4 => Just("g"), 1 => Just("json_tool_call")]
            .prop_map(|n| json!({"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}));
        (
            prop::collection::vec(message, 1..6),
            prop::collection::vec(tool, 0..3),
            prop_oneof![Just(Value::Null), Just(json!("auto")), Just(json!("none")), Just(json!("required")), Just(json!({"type": "function", "function": {"name": "f"}}))],
            prop_oneof![Just(Value::Null), Just(json!({"type": "json_object"})), Just(json!({"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}})), Just(json!({"type": "text"}))],
            prop::option::weighted(0.3, 0u32..3),
            prop::option::of(any::<bool>()),
            any::<bool>(),
            prop_oneof![6 => Just(Value::Null), 1 => Just(json!(3))],
        )
            .prop_map(|(messages, tools, tool_choice, rf, n, parallel, stream, seed)| {
                let mut body = json!({"model": "claude", "messages": messages, "stream": stream});
                if !tools.is_empty() {
                    body["tools"] = json!(tools);
                }
                body["tool_choice"] = tool_choice;
                body["response_format"] = rf;
                body["seed"] = seed;
                if let Some(n) = n {
                    body["n"] = json!(n);
                }
                if let Some(p) = parallel {
                    body["parallel_tool_calls"] = json!(p);
                }
                body
            })
    }

    fn check_stream_output(out: &[u8]) {
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.is_empty() || text.ends_with("\n\n"));
        for e in text.split("\n\n").filter(|e| !e.is_empty()) {
            let data = e.strip_prefix("data: ").unwrap();
            if data != "[DONE]" {
                serde_json::from_str::<Value>(data).unwrap();
            }
        }
        // Every stream ends exactly once: with [DONE] or with an error event.
        let ends = text.matches("data: [DONE]").count() + text.matches("data: {\"error\"").count();
        assert_eq!(ends, 1, "{text}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 384, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn responses_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), value in arb_json()) {
            for body in [bytes.clone(), serde_json::to_vec(&value).unwrap()] {
                if let Ok(t) = ANTHROPIC.chat_response(&body, &ctx(true)) {
                    serde_json::from_slice::<Value>(&t.body).unwrap();
                }
                let e = ANTHROPIC.error(400, None, &body);
                serde_json::from_slice::<Value>(&e.to_json()).unwrap();
                prop_assert!((400..600).contains(&e.status));
            }
            let wrapped = serde_json::to_vec(&json!({"content": [value.clone()], "stop_reason": value, "usage": {"input_tokens": 1}})).unwrap();
            if let Ok(t) = ANTHROPIC.chat_response(&wrapped, &ctx(false)) {
                serde_json::from_slice::<Value>(&t.body).unwrap();
            }
        }

        #[test]
        fn streams_never_panic_and_ignore_chunking(
            events in prop::collection::vec(arb_event(), 0..12),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
            include_usage in any::<bool>(),
        ) {
            let input: Vec<u8> = events.concat();
            let (whole, _) = run(&[&input], include_usage);
            check_stream_output(&whole);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for p in points {
                chunks.push(&input[start..p]);
                start = p;
            }
            chunks.push(&input[start..]);
            prop_assert_eq!(run(&chunks, include_usage).0, whole);
        }

        #[test]
        fn requests_never_panic(body in arb_chat_request(), drop_params in any::<bool>()) {
            let bytes = serde_json::to_vec(&body).unwrap();
            if let Ok(req) = parse_chat(&bytes) {
                let t = Target { model: "claude-sonnet-4-5".into(), ..Default::default() };
                match ANTHROPIC.chat_request(&req, &t, RequestOptions { drop_params, ..Default::default() }) {
                    Ok(out) => {
                        let v: Value = serde_json::from_slice(&out).unwrap();
                        prop_assert!(v["max_tokens"].as_u64().is_some());
                        prop_assert!(!v["messages"].as_array().unwrap().is_empty());
                        let roles: Vec<&str> = v["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
                        prop_assert!(roles.windows(2).all(|w| w[0] != w[1]), "{:?}", roles);
                    }
                    Err(e) => prop_assert_eq!(e.status, 400),
                }
            }
        }
    }
}
