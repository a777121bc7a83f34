//! A Messages API request (`POST /v1/messages`) read and rewritten as the chat completions
//! request every provider translator takes, for backends other than Anthropic's own (which get
//! the client's body as it came, model replaced).
//!
//! What chat completions has no field for travels in the extensions LiteLLM's OpenAI format uses,
//! so that a translator able to honour it can: `top_k`, `thinking` (as the client sent it), an
//! assistant message's `thinking_blocks` (reasoning and its signature, or redacted reasoning, as
//! they came), `cache_control` on a content part. Any other top-level field is kept under its own
//! name: a backend that cannot take it refuses it by name (or drops it, with `drop_params`).

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::ingress::chat_out::{
    ChatMessage, ChatOut, ContentOut, FileOut, FunctionDefOut, FunctionOut, ImageUrl,
    JsonSchemaOut, PartOut, ResponseFormatOut, StreamOptions, ThinkingOut, ToolCallOut,
    ToolChoiceOut, ToolOut,
};
use crate::json::{self, Text};
use crate::openai::request::PromptText;

/// The parts of a Messages request that decide routing and cost, read once.
#[derive(Debug)]
pub struct MessagesRequest<'a> {
    pub model: Text<'a>,
    pub max_tokens: u64,
    pub stream: bool,
    /// The client's body as chat completions (see the module's doc).
    pub chat: Vec<u8>,
}

/// What the gateway needs of a request that goes as it came to an Anthropic deployment (or on to
/// the attempt listener, where each attempt reads it for its own deployment): its routing fields
/// and its bounds, read without translating it, and its top-level fields, for the body that goes
/// on ([`crate::providers::anthropic::passthrough::request_from`]).
#[derive(Debug)]
pub struct NativeRequest<'a> {
    pub model: Text<'a>,
    pub max_tokens: u64,
    pub stream: bool,
    /// The prompt's text, for its estimate (see `accounting::prompt_tokens`).
    pub prompt: PromptText,
    pub fields: json::Fields<'a>,
}

fn invalid(field: &str, problem: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_param(field, format!("{field}: {problem}"))
}

#[derive(Deserialize)]
struct MessageIn<'a> {
    #[serde(borrow)]
    role: Text<'a>,
    #[serde(borrow)]
    content: &'a RawValue,
}

/// A content block, flat: which fields matter depends on `type`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct BlockIn<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(borrow)]
    text: Option<Text<'a>>,
    #[serde(borrow)]
    source: Option<SourceIn<'a>>,
    #[serde(borrow)]
    cache_control: Option<&'a RawValue>,
    // tool_use
    #[serde(borrow)]
    id: Option<Text<'a>>,
    #[serde(borrow)]
    name: Option<Text<'a>>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    // tool_result
    #[serde(borrow)]
    tool_use_id: Option<Text<'a>>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    is_error: Option<bool>,
    // thinking, redacted_thinking
    #[serde(borrow)]
    thinking: Option<Text<'a>>,
    #[serde(borrow)]
    signature: Option<Text<'a>>,
    #[serde(borrow)]
    data: Option<Text<'a>>,
    // document
    #[serde(borrow)]
    title: Option<Text<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SourceIn<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(borrow)]
    media_type: Option<Text<'a>>,
    #[serde(borrow)]
    data: Option<Text<'a>>,
    #[serde(borrow)]
    url: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct ToolIn<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Text<'a>>,
    #[serde(borrow)]
    name: Text<'a>,
    #[serde(default, borrow)]
    description: Option<Text<'a>>,
    #[serde(default, borrow)]
    input_schema: Option<&'a RawValue>,
    #[serde(default, borrow)]
    cache_control: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct ToolChoiceIn<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default)]
    disable_parallel_tool_use: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct MetadataIn<'a> {
    #[serde(borrow)]
    user_id: Option<Text<'a>>,
}

const EMPTY_SCHEMA: &str = r#"{"type":"object","properties":{}}"#;

fn empty_schema() -> &'static RawValue {
    static SCHEMA: std::sync::OnceLock<Option<Box<RawValue>>> = std::sync::OnceLock::new();
    match SCHEMA.get_or_init(|| RawValue::from_string(EMPTY_SCHEMA.to_string()).ok()) {
        Some(raw) => raw,
        None => Box::leak(Box::<RawValue>::default()),
    }
}

fn read_model(raw: &RawValue) -> Result<Text<'_>, ApiError> {
    serde_json::from_str::<Text>(raw.get())
        .map_err(|_| invalid("model", "Input should be a valid string"))
}

fn read_max_tokens(raw: &RawValue) -> Result<u64, ApiError> {
    serde_json::from_str::<u64>(raw.get())
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| invalid("max_tokens", "Input should be an integer of at least 1"))
}

fn read_messages(raw: &RawValue) -> Result<Vec<MessageIn<'_>>, ApiError> {
    serde_json::from_str(raw.get()).map_err(|_| {
        invalid(
            "messages",
            "Input should be a list of objects with `role` and `content`",
        )
    })
}

/// Reads a Messages request and writes it as chat completions. Errors name the field, in the
/// way Anthropic's API does (`messages.1.content: ...`).
pub fn parse(body: &[u8]) -> Result<MessagesRequest<'_>, ApiError> {
    let fields = json::split_object(body).map_err(json::body_error)?;
    let mut model = None;
    let mut max_tokens = None;
    let mut messages: Option<Vec<MessageIn>> = None;
    let mut system = None;
    let mut out = ChatOut::empty();
    for (key, raw) in &fields {
        let raw: &RawValue = raw;
        if json::is_null(raw) {
            continue;
        }
        let name = key.as_str();
        let number = |lo: f64, hi: f64| -> Result<&RawValue, ApiError> {
            match serde_json::from_str::<f64>(raw.get()) {
                Ok(v) if (lo..=hi).contains(&v) => Ok(raw),
                Ok(_) => Err(invalid(name, format!("must be between {lo} and {hi}"))),
                Err(_) => Err(invalid(name, "Input should be a valid number")),
            }
        };
        match name {
            "model" => model = Some(read_model(raw)?),
            "max_tokens" => max_tokens = Some(read_max_tokens(raw)?),
            "messages" => messages = Some(read_messages(raw)?),
            "system" => system = Some(raw),
            "stream" => {
                out.stream = serde_json::from_str(raw.get())
                    .map_err(|_| invalid("stream", "Input should be a valid boolean"))?
            }
            "temperature" => out.temperature = Some(number(0.0, 1.0)?),
            "top_p" => out.top_p = Some(number(0.0, 1.0)?),
            "top_k" => {
                serde_json::from_str::<u64>(raw.get())
                    .map_err(|_| invalid("top_k", "Input should be a non-negative integer"))?;
                out.top_k = Some(raw);
            }
            "stop_sequences" => {
                out.stop = serde_json::from_str(raw.get())
                    .map_err(|_| invalid("stop_sequences", "Input should be a list of strings"))?
            }
            "metadata" => {
                let m: MetadataIn = serde_json::from_str(raw.get()).map_err(|_| {
                    invalid(
                        "metadata",
                        "Input should be an object with an optional string `user_id`",
                    )
                })?;
                out.user = m.user_id;
            }
            "tools" => {
                let tools: Vec<ToolIn> = serde_json::from_str(raw.get()).map_err(|_| {
                    invalid(
                        "tools",
                        "Input should be a list of tools, each with a string `name`",
                    )
                })?;
                for (i, t) in tools.into_iter().enumerate() {
                    out.tools.push(tool(t, i)?);
                }
            }
            "tool_choice" => {
                let c: ToolChoiceIn = serde_json::from_str(raw.get()).map_err(|_| {
                    invalid("tool_choice", "Input should be an object with a `type`")
                })?;
                out.tool_choice = Some(match c.kind.as_str() {
                    "auto" => ToolChoiceOut::Mode("auto"),
                    "any" => ToolChoiceOut::Mode("required"),
                    "none" => ToolChoiceOut::Mode("none"),
                    "tool" => ToolChoiceOut::function(c.name.ok_or_else(|| invalid("tool_choice.name", "Field required"))?),
                    other => {
                        return Err(invalid(
                            "tool_choice.type",
                            format!("Input tag '{other}' found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"),
                        ))
                    }
                });
                if c.disable_parallel_tool_use == Some(true) {
                    out.parallel_tool_calls = Some(false);
                }
            }
            "thinking" => {
                check_thinking(raw)?;
                out.thinking = Some(raw);
            }
            "output_config" => output_config(raw, &mut out)?,
            // Hints about how Anthropic serves the request, not what it answers: nothing another
            // backend could honour or needs.
            "cache_control" | "service_tier" | "speed" | "inference_geo" | "diagnostics"
            | "user_profile_id" | "workspace_id" => {}
            _ => out.other.0.push((name, raw)),
        }
    }
    let model = match model {
        Some(m) if !m.is_empty() => m,
        _ => return Err(invalid("model", "Field required")),
    };
    let max_tokens = max_tokens.ok_or_else(|| invalid("max_tokens", "Field required"))?;
    let messages = messages.ok_or_else(|| invalid("messages", "Field required"))?;
    if messages.is_empty() {
        return Err(invalid("messages", "at least one message is required"));
    }
    if let Some(raw) = system {
        out.messages.push(system_message(raw)?);
    }
    for (i, m) in messages.iter().enumerate() {
        translate_message(m, i, &mut out.messages)?;
    }
    if out.stream {
        // Usage comes at the end of the stream, where the Messages API reports it.
        out.stream_options = Some(StreamOptions {
            include_usage: true,
        });
    }
    out.max_tokens = Some(max_tokens);
    let stream = out.stream;
    let size = body.len().saturating_add(256);
    let chat = {
        let model_str = model.as_str();
        let out = ChatOut {
            model: model_str,
            ..out
        };
        json::to_vec_sized(&out, size)
    };
    Ok(MessagesRequest {
        model,
        max_tokens,
        stream,
        chat,
    })
}

/// Reads a request for a deployment that serves the Messages API itself: see [`NativeRequest`].
/// `model`, `max_tokens`, `messages` and `stream` are refused as [`parse`] refuses them (the same
/// errors); what only a translation checks (roles, blocks, tools, sampling parameters) is left to
/// the deployment, which answers for its own API.
///
/// The prompt is counted as [`parse`]'s chat completions form counts it
/// (`openai::ChatRequest::prompt_text`): the text of the system prompt, of text blocks, of tool
/// results (and their ids) and of text documents, tool calls' names and inputs, tool
/// definitions' names, descriptions and schemas, and any top-level field that may carry prompt
/// (`thinking`, `top_k`, fields of newer API versions) by its JSON's length; one message per
/// turn, the system prompt and each tool result; an image a fixed count; a PDF or URL document
/// makes the prompt opaque (bounded by the body). Where the translation writes text of its own it
/// counts a few bytes more: `Error: ` before an `is_error` result, the empty schema of a tool
/// without one, the `response_format` that `output_config` becomes (counted here as the
/// `output_config` it came as). What the translation refuses counts too: a server tool its name,
/// a block of a type only Anthropic serves its text and name, and its input and content by their
/// JSON's length.
pub fn read_native(body: &[u8]) -> Result<NativeRequest<'_>, ApiError> {
    let fields = json::split_object(body).map_err(json::body_error)?;
    let mut model = None;
    let mut max_tokens = None;
    let mut messages: Option<Vec<MessageIn>> = None;
    let mut stream = false;
    let mut prompt = PromptText::default();
    for (key, raw) in &fields {
        let raw: &RawValue = raw;
        if json::is_null(raw) {
            continue;
        }
        match key.as_str() {
            "model" => model = Some(read_model(raw)?),
            "max_tokens" => max_tokens = Some(read_max_tokens(raw)?),
            "messages" => messages = Some(read_messages(raw)?),
            "stream" => {
                stream = serde_json::from_str(raw.get())
                    .map_err(|_| invalid("stream", "Input should be a valid boolean"))?
            }
            "system" => {
                prompt.messages += 1;
                count_content(raw, &mut prompt);
            }
            "tools" => count_tools(raw, &mut prompt),
            "output_config" => prompt.bytes += raw.get().len() as u64,
            // Fields that steer generation or serving, no prompt.
            "temperature" | "top_p" | "stop_sequences" | "metadata" | "tool_choice"
            | "cache_control" | "service_tier" | "speed" | "inference_geo" | "diagnostics"
            | "user_profile_id" | "workspace_id" => {}
            _ => prompt.bytes += raw.get().len() as u64,
        }
    }
    let model = match model {
        Some(m) if !m.is_empty() => m,
        _ => return Err(invalid("model", "Field required")),
    };
    let max_tokens = max_tokens.ok_or_else(|| invalid("max_tokens", "Field required"))?;
    let messages = messages.ok_or_else(|| invalid("messages", "Field required"))?;
    if messages.is_empty() {
        return Err(invalid("messages", "at least one message is required"));
    }
    for m in &messages {
        count_message(m, &mut prompt);
    }
    Ok(NativeRequest {
        model,
        max_tokens,
        stream,
        prompt,
        fields,
    })
}

/// A content block as [`read_native`] reads it: the fields that carry prompt, whatever its type
/// (a document's `source` read only for a document).
#[derive(Deserialize, Default)]
#[serde(default)]
struct NativeBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(borrow)]
    text: Option<Text<'a>>,
    #[serde(borrow)]
    name: Option<Text<'a>>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
    #[serde(borrow)]
    tool_use_id: Option<Text<'a>>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    #[serde(borrow)]
    source: Option<&'a RawValue>,
}

/// A turn's prompt: one message, or (a user turn) one per tool result and one for the rest, if
/// there is any, as the translation splits it.
fn count_message(m: &MessageIn, prompt: &mut PromptText) {
    let Ok(blocks) = blocks(m.content, prompt) else {
        prompt.messages += 1;
        return;
    };
    let (mut parts, mut results) = (0u64, 0u64);
    for b in &blocks {
        match b.kind.as_str() {
            "tool_result" => {
                results += 1;
                prompt.bytes += b.tool_use_id.as_ref().map_or(0, |t| t.len() as u64);
                if let Some(c) = b.content {
                    count_content(c, prompt);
                }
            }
            "tool_use" => {
                prompt.bytes += b.name.as_ref().map_or(0, |t| t.len() as u64);
                prompt.bytes += b.input.map_or(0, |i| i.get().len() as u64);
            }
            "thinking" | "redacted_thinking" => {}
            _ => {
                parts += 1;
                count_block(b, prompt);
            }
        }
    }
    prompt.messages += results + u64::from(parts > 0 || m.role.as_str() != "user");
}

/// Content (a string, a list of blocks) whose text counts; `Err` when it was a string or not a
/// list of blocks (counted whole).
fn blocks<'a>(raw: &'a RawValue, prompt: &mut PromptText) -> Result<Vec<NativeBlock<'a>>, ()> {
    if let Ok(text) = serde_json::from_str::<Text>(raw.get()) {
        prompt.bytes += text.len() as u64;
        return Err(());
    }
    serde_json::from_str::<Vec<NativeBlock>>(raw.get()).map_err(|_| {
        if !json::is_null(raw) {
            prompt.bytes += raw.get().len() as u64;
        }
    })
}

/// The system prompt, or a tool result's content: text, images, documents.
fn count_content(raw: &RawValue, prompt: &mut PromptText) {
    if let Ok(blocks) = blocks(raw, prompt) {
        for b in &blocks {
            count_block(b, prompt);
        }
    }
}

/// A block of content that is not a turn's tool call or result.
fn count_block(b: &NativeBlock, prompt: &mut PromptText) {
    let len = |t: &Option<Text>| t.as_ref().map_or(0, |t| t.len() as u64);
    match b.kind.as_str() {
        "text" => prompt.bytes += len(&b.text),
        "image" => prompt.images += 1,
        "document" => match b.source.map(|s| serde_json::from_str::<SourceIn>(s.get())) {
            Some(Ok(s)) if s.kind.as_str() == "text" => prompt.bytes += len(&s.data),
            // A PDF's tokens are not its bytes', a URL's not known here.
            _ => prompt.opaque = true,
        },
        _ => {
            prompt.bytes += len(&b.text) + len(&b.name);
            prompt.bytes += b.input.map_or(0, |i| i.get().len() as u64);
            prompt.bytes += b.content.map_or(0, |c| c.get().len() as u64);
        }
    }
}

/// Tool definitions: each one's name, description and schema (a server tool has only its name);
/// tools that are not a list of named objects count by their JSON's length.
fn count_tools(raw: &RawValue, prompt: &mut PromptText) {
    let Ok(tools) = serde_json::from_str::<Vec<ToolIn>>(raw.get()) else {
        prompt.bytes += raw.get().len() as u64;
        return;
    };
    for t in tools {
        prompt.bytes += t.name.len() as u64;
        prompt.bytes += t.description.map_or(0, |d| d.len() as u64);
        prompt.bytes += t.input_schema.map_or(0, |s| s.get().len() as u64);
    }
}

/// `output_config`: `effort` becomes `reasoning_effort`, a `json_schema` `format` the
/// `response_format` that asks the same of an OpenAI-shaped backend.
fn output_config<'a>(raw: &'a RawValue, out: &mut ChatOut<'a>) -> Result<(), ApiError> {
    #[derive(Deserialize)]
    struct ConfigIn<'a> {
        #[serde(default, borrow)]
        effort: Option<Text<'a>>,
        #[serde(default, borrow)]
        format: Option<FormatIn<'a>>,
    }
    #[derive(Deserialize)]
    struct FormatIn<'a> {
        #[serde(rename = "type", borrow)]
        kind: Text<'a>,
        #[serde(default, borrow)]
        schema: Option<&'a RawValue>,
    }
    let c: ConfigIn = serde_json::from_str(raw.get()).map_err(|_| {
        invalid(
            "output_config",
            "Input should be an object with optional `effort` and `format`",
        )
    })?;
    out.reasoning_effort = c.effort;
    if let Some(f) = c.format {
        match (f.kind.as_str(), f.schema) {
            ("json_schema", Some(schema)) => {
                out.response_format = Some(ResponseFormatOut {
                    kind: "json_schema",
                    json_schema: Some(JsonSchemaOut {
                        name: "output".into(),
                        description: None,
                        schema,
                        strict: None,
                    }),
                })
            }
            ("json_schema", None) => {
                return Err(invalid("output_config.format.schema", "Field required"))
            }
            (other, _) => {
                return Err(invalid(
                    "output_config.format.type",
                    format!("Input tag '{other}' found using 'type' does not match the expected tag: 'json_schema'"),
                ))
            }
        }
    }
    Ok(())
}

fn check_thinking(raw: &RawValue) -> Result<(), ApiError> {
    #[derive(Deserialize)]
    struct ThinkingIn<'a> {
        #[serde(rename = "type", borrow)]
        kind: Text<'a>,
        #[serde(default)]
        budget_tokens: Option<u64>,
    }
    let t: ThinkingIn = serde_json::from_str(raw.get())
        .map_err(|_| invalid("thinking", "Input should be an object with a `type`"))?;
    match t.kind.as_str() {
        "enabled" => match t.budget_tokens {
            Some(n) if n >= 1024 => Ok(()),
            Some(_) => Err(invalid(
                "thinking.enabled.budget_tokens",
                "Input should be greater than or equal to 1024",
            )),
            None => Err(invalid("thinking.enabled.budget_tokens", "Field required")),
        },
        "disabled" | "adaptive" => Ok(()),
        other => Err(invalid(
            "thinking.type",
            format!("Input tag '{other}' found using 'type' does not match any of the expected tags: 'enabled', 'disabled', 'adaptive'"),
        )),
    }
}

fn tool<'a>(t: ToolIn<'a>, i: usize) -> Result<ToolOut<'a>, ApiError> {
    match t.kind.as_ref().map(|k| k.as_str()) {
        None | Some("custom") => {}
        // Anthropic's server tools (web search, code execution, bash, text editor, ...) run on
        // Anthropic's side: only an Anthropic deployment, which gets the body as it came, has them.
        Some(other) => {
            return Err(invalid(
                &format!("tools.{i}.type"),
                format!("the tool type '{other}' runs on Anthropic's servers: only an Anthropic deployment serves it"),
            ))
        }
    }
    Ok(ToolOut {
        kind: "function",
        function: FunctionDefOut {
            name: t.name,
            description: t.description,
            parameters: Some(t.input_schema.unwrap_or(empty_schema())),
            strict: None,
        },
        cache_control: t.cache_control,
    })
}

fn system_message<'a>(raw: &'a RawValue) -> Result<ChatMessage<'a>, ApiError> {
    let content = match serde_json::from_str::<Text>(raw.get()) {
        Ok(text) => ContentOut::Text(text),
        Err(_) => {
            let blocks: Vec<BlockIn> = serde_json::from_str(raw.get()).map_err(|_| {
                invalid(
                    "system",
                    "Input should be a string or a list of text blocks",
                )
            })?;
            let mut parts = Vec::with_capacity(blocks.len());
            for (i, b) in blocks.into_iter().enumerate() {
                if b.kind.as_str() != "text" {
                    return Err(invalid(
                        &format!("system.{i}.type"),
                        "Input should be 'text'",
                    ));
                }
                parts.push(PartOut::Text {
                    text: b.text.unwrap_or_default(),
                    cache_control: b.cache_control,
                });
            }
            ContentOut::Parts(parts)
        }
    };
    Ok(ChatMessage {
        role: "system",
        content,
        tool_calls: Vec::new(),
        tool_call_id: None,
        thinking_blocks: Vec::new(),
        cache_control: None,
    })
}

/// One Messages turn as chat messages: a user turn's `tool_result` blocks become `tool` messages
/// (first, as the results of the previous turn's calls), the rest one user message; an assistant
/// turn one message with its text, `tool_calls` and `thinking_blocks`.
fn translate_message<'a>(
    m: &MessageIn<'a>,
    i: usize,
    out: &mut Vec<ChatMessage<'a>>,
) -> Result<(), ApiError> {
    let role = match m.role.as_str() {
        "user" => "user",
        "assistant" => "assistant",
        other => {
            return Err(invalid(
                &format!("messages.{i}.role"),
                format!("Input should be 'user' or 'assistant', not '{other}'"),
            ))
        }
    };
    let plain = |content| ChatMessage::plain(role, content);
    if let Ok(text) = serde_json::from_str::<Text>(m.content.get()) {
        out.push(plain(ContentOut::Text(text)));
        return Ok(());
    }
    let path = format!("messages.{i}.content");
    let blocks: Vec<BlockIn> = serde_json::from_str(m.content.get()).map_err(|_| {
        invalid(
            &path,
            "Input should be a string or a list of content blocks",
        )
    })?;
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    let mut thinking = Vec::new();
    for (j, b) in blocks.into_iter().enumerate() {
        let at = |field: &str| format!("{path}.{j}.{field}");
        match (role, b.kind.as_str()) {
            (_, "text") => parts.push(PartOut::Text {
                text: b
                    .text
                    .ok_or_else(|| invalid(&at("text"), "Field required"))?,
                cache_control: b.cache_control,
            }),
            (_, "image") => parts.push(image(b, &at("source"))?),
            (_, "document") => parts.push(document(b, &at("source"))?),
            ("user", "tool_result") => {
                let id = b
                    .tool_use_id
                    .ok_or_else(|| invalid(&at("tool_use_id"), "Field required"))?;
                let mut result = tool_result(id, b.content, b.is_error, &at("content"))?;
                result.cache_control = b.cache_control;
                out.push(result);
            }
            ("assistant", "tool_use") => {
                let input = b
                    .input
                    .ok_or_else(|| invalid(&at("input"), "Field required"))?;
                if !input.get().trim_start().starts_with('{') {
                    return Err(invalid(&at("input"), "Input should be an object"));
                }
                calls.push(ToolCallOut {
                    id: b.id.ok_or_else(|| invalid(&at("id"), "Field required"))?,
                    kind: "function",
                    function: FunctionOut {
                        name: b
                            .name
                            .ok_or_else(|| invalid(&at("name"), "Field required"))?,
                        arguments: input.get().into(),
                    },
                });
            }
            ("assistant", "thinking") => thinking.push(ThinkingOut::Thinking {
                thinking: b.thinking.unwrap_or_default(),
                signature: b.signature,
            }),
            ("assistant", "redacted_thinking") => thinking.push(ThinkingOut::RedactedThinking {
                data: b
                    .data
                    .ok_or_else(|| invalid(&at("data"), "Field required"))?,
            }),
            (_, other) => {
                return Err(invalid(
                    &at("type"),
                    format!(
                    "a '{other}' block cannot be sent in a {role} message to this model's backend"
                ),
                ))
            }
        }
    }
    if role == "user" && parts.is_empty() {
        // Only tool results: they are the turn.
        return Ok(());
    }
    let content = if parts.is_empty() {
        ContentOut::Null(None)
    } else {
        ContentOut::Parts(parts)
    };
    out.push(ChatMessage {
        tool_calls: calls,
        thinking_blocks: thinking,
        ..plain(content)
    });
    Ok(())
}

fn tool_result<'a>(
    id: Text<'a>,
    content: Option<&'a RawValue>,
    is_error: Option<bool>,
    path: &str,
) -> Result<ChatMessage<'a>, ApiError> {
    let content = match content {
        None => ContentOut::Text(Text::default()),
        Some(raw) if json::is_null(raw) => ContentOut::Text(Text::default()),
        Some(raw) => match serde_json::from_str::<Text>(raw.get()) {
            Ok(text) => ContentOut::Text(text),
            Err(_) => {
                let blocks: Vec<BlockIn> = serde_json::from_str(raw.get()).map_err(|_| {
                    invalid(path, "Input should be a string or a list of content blocks")
                })?;
                let mut parts = Vec::with_capacity(blocks.len());
                for (k, b) in blocks.into_iter().enumerate() {
                    let at = format!("{path}.{k}");
                    parts.push(match b.kind.as_str() {
                        "text" => PartOut::Text {
                            text: b.text.unwrap_or_default(),
                            cache_control: b.cache_control,
                        },
                        "image" => image(b, &format!("{at}.source"))?,
                        "document" => document(b, &format!("{at}.source"))?,
                        other => {
                            return Err(invalid(
                                &format!("{at}.type"),
                                format!("a '{other}' block cannot be part of a tool result"),
                            ))
                        }
                    });
                }
                ContentOut::Parts(parts)
            }
        },
    };
    // Chat completions has no error flag on a tool result: the text says it.
    let content = match (is_error, content) {
        (Some(true), ContentOut::Text(t)) => {
            ContentOut::Text(Text(format!("Error: {}", t.as_str()).into()))
        }
        (_, c) => c,
    };
    Ok(ChatMessage {
        role: "tool",
        content,
        tool_calls: Vec::new(),
        tool_call_id: Some(id),
        thinking_blocks: Vec::new(),
        cache_control: None,
    })
}

fn image<'a>(b: BlockIn<'a>, path: &str) -> Result<PartOut<'a>, ApiError> {
    let s = b.source.ok_or_else(|| invalid(path, "Field required"))?;
    let url = match s.kind.as_str() {
        "base64" => {
            let media = s
                .media_type
                .ok_or_else(|| invalid(&format!("{path}.media_type"), "Field required"))?;
            let data = s
                .data
                .ok_or_else(|| invalid(&format!("{path}.data"), "Field required"))?;
            std::borrow::Cow::Owned(format!("data:{};base64,{}", media.as_str(), data.as_str()))
        }
        "url" => {
            s.url
                .ok_or_else(|| invalid(&format!("{path}.url"), "Field required"))?
                .0
        }
        other => {
            return Err(invalid(
                &format!("{path}.type"),
                format!(
                    "an image source of type '{other}' can only be sent to an Anthropic deployment"
                ),
            ))
        }
    };
    Ok(PartOut::ImageUrl {
        image_url: ImageUrl { url, detail: None },
        cache_control: b.cache_control,
    })
}

fn document<'a>(b: BlockIn<'a>, path: &str) -> Result<PartOut<'a>, ApiError> {
    let s = b.source.ok_or_else(|| invalid(path, "Field required"))?;
    let file = match s.kind.as_str() {
        "base64" => {
            let media = s
                .media_type
                .ok_or_else(|| invalid(&format!("{path}.media_type"), "Field required"))?;
            let data = s
                .data
                .ok_or_else(|| invalid(&format!("{path}.data"), "Field required"))?;
            FileOut {
                file_data: Some(format!("data:{};base64,{}", media.as_str(), data.as_str()).into()),
                file_url: None,
                filename: b.title,
                format: Some(media),
            }
        }
        "text" => {
            let data = s
                .data
                .ok_or_else(|| invalid(&format!("{path}.data"), "Field required"))?;
            return Ok(PartOut::Text {
                text: data,
                cache_control: b.cache_control,
            });
        }
        "url" => FileOut {
            file_data: None,
            file_url: Some(
                s.url
                    .ok_or_else(|| invalid(&format!("{path}.url"), "Field required"))?,
            ),
            filename: b.title,
            format: None,
        },
        other => {
            return Err(invalid(
                &format!("{path}.type"),
                format!(
                "a document source of type '{other}' can only be sent to an Anthropic deployment"
            ),
            ))
        }
    };
    Ok(PartOut::File {
        file,
        cache_control: b.cache_control,
    })
}

#[cfg(test)]
mod tests;
