//! A Responses API request (`POST /v1/responses`) read and rewritten as the chat completions
//! request every provider translator takes, for backends other than OpenAI's and Azure's (which
//! get the client's body as it came, model replaced).
//!
//! `instructions` become the first (system) message. `input` items become messages in order: a
//! `message` (roles user, assistant, system, developer; `input_text`, `output_text`, `refusal`,
//! `input_image` and `input_file` parts), `function_call` items the assistant turn's `tool_calls`
//! (consecutive calls join one turn, after its text), `function_call_output` a `tool` message.
//! A `reasoning` item with `encrypted_content` is one this gateway wrote for a provider that signs
//! its reasoning (Anthropic, Claude on Bedrock): it becomes a `thinking_blocks` entry of the next
//! assistant message the items make (summary texts joined as `thinking`, the encrypted content as
//! `signature`; [`REDACTED_PREFIX`] content as a `redacted_thinking` block's `data`), so Claude
//! gets its reasoning back where it requires it. Other `reasoning` items are OpenAI's own (their
//! summary is not the reasoning, their encrypted content only OpenAI can read): they are
//! dropped, not sent. Function `tools`, `tool_choice`,
//! `parallel_tool_calls`, `text.format` (as `response_format`), `max_output_tokens`,
//! `temperature`, `top_p`, `reasoning.effort` (as `reasoning_effort`) and `user` have their chat
//! completions counterparts. What only OpenAI runs (its built-in tools, stored prompts and
//! conversations, `previous_response_id`, background mode) is a 400 that says so. Hints about how
//! OpenAI stores or serves the response are dropped. Any other top-level field is kept under its
//! own name: a backend that cannot take it refuses it by name (or drops it, with `drop_params`).
//!
//! Errors are OpenAI's: `param` names the field as the API does (`input[2].content[0].type`).

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

use crate::error::ApiError;
use crate::ingress::chat_out::{
    ChatMessage, ChatOut, ContentOut, FileOut, FunctionDefOut, FunctionOut, ImageUrl,
    JsonSchemaOut, PartOut, ResponseFormatOut, StreamOptions, ThinkingOut, ToolCallOut,
    ToolChoiceOut, ToolOut,
};
use crate::json::{self, Text};
use crate::openai::request::PromptText;

/// What starts a reasoning item's `encrypted_content` that carries Anthropic's redacted thinking
/// (its `data`) rather than a signature, so the gateway tells them apart on the way back.
pub const REDACTED_PREFIX: &str = "redacted:";
/// How OpenAI's own encrypted reasoning starts: a Fernet token (version byte 0x80 and a
/// timestamp, base64url). Such an item, from a conversation begun with an OpenAI model, is
/// dropped like one without encrypted content; a Claude signature never starts so.
const OPENAI_ENCRYPTED: &str = "gAAAA";

/// The parts of a Responses request that decide routing and cost, read once.
#[derive(Debug)]
pub struct ResponsesRequest<'a> {
    pub model: Text<'a>,
    pub stream: bool,
    /// The client's body as chat completions (see the module's doc).
    pub chat: Vec<u8>,
}

/// What the gateway needs of a request that goes as it came to a deployment serving the API
/// itself (OpenAI, Azure): its routing fields and its bounds, read without translating it (and
/// without refusing what only those deployments serve).
#[derive(Debug)]
pub struct NativeRequest<'a> {
    pub model: Text<'a>,
    pub stream: bool,
    pub max_output_tokens: Option<u64>,
    /// The prompt's text, for its estimate (see `accounting::prompt_tokens`).
    pub prompt: PromptText,
}

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_param(param, message)
}

fn missing(param: &str) -> ApiError {
    invalid(param, format!("Missing required parameter: '{param}'."))
        .with_code("missing_required_parameter")
}

fn wrong_type(param: &str, expected: &str) -> ApiError {
    invalid(
        param,
        format!("Invalid type for '{param}': expected {expected}."),
    )
    .with_code("invalid_type")
}

fn bad_value(param: &str, message: impl Into<String>) -> ApiError {
    invalid(param, message).with_code("invalid_value")
}

/// What only OpenAI's own service runs.
fn openai_only(param: &str, what: &str) -> ApiError {
    invalid(
        param,
        format!("{what} is served only by OpenAI and Azure OpenAI deployments; this model is served by another provider."),
    )
    .with_code("unsupported_parameter")
}

// ---------------------------------------------------------------------------------------------
// What is read.

/// An input item, flat: which fields matter depends on `type` (a message may omit it).
#[derive(Deserialize, Default)]
#[serde(default)]
struct ItemIn<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Text<'a>>,
    #[serde(borrow)]
    role: Option<Text<'a>>,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
    // function_call
    #[serde(borrow)]
    call_id: Option<Text<'a>>,
    #[serde(borrow)]
    name: Option<Text<'a>>,
    #[serde(borrow)]
    arguments: Option<Text<'a>>,
    // function_call_output
    #[serde(borrow)]
    output: Option<&'a RawValue>,
    // reasoning
    #[serde(borrow)]
    summary: Option<&'a RawValue>,
    #[serde(borrow)]
    encrypted_content: Option<Text<'a>>,
}

/// A reasoning item's summary part.
#[derive(Deserialize)]
struct SummaryIn<'a> {
    #[serde(default, borrow)]
    text: Option<Text<'a>>,
}

/// A content part, flat.
#[derive(Deserialize, Default)]
#[serde(default)]
struct PartIn<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(borrow)]
    text: Option<Text<'a>>,
    #[serde(borrow)]
    refusal: Option<Text<'a>>,
    // input_image
    #[serde(borrow)]
    image_url: Option<Text<'a>>,
    #[serde(borrow)]
    detail: Option<Text<'a>>,
    // input_image, input_file
    #[serde(borrow)]
    file_id: Option<Text<'a>>,
    // input_file
    #[serde(borrow)]
    file_data: Option<Text<'a>>,
    #[serde(borrow)]
    file_url: Option<Text<'a>>,
    #[serde(borrow)]
    filename: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct ToolIn<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    description: Option<Text<'a>>,
    #[serde(default, borrow)]
    parameters: Option<&'a RawValue>,
    #[serde(default)]
    strict: Option<bool>,
}

#[derive(Deserialize)]
struct ToolChoiceIn<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct TextIn<'a> {
    #[serde(default, borrow)]
    format: Option<FormatIn<'a>>,
}

#[derive(Deserialize)]
struct FormatIn<'a> {
    #[serde(rename = "type", borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    schema: Option<&'a RawValue>,
    #[serde(default, borrow)]
    description: Option<Text<'a>>,
    #[serde(default)]
    strict: Option<bool>,
}

#[derive(Deserialize)]
struct ReasoningIn<'a> {
    #[serde(default, borrow)]
    effort: Option<Text<'a>>,
}

// ---------------------------------------------------------------------------------------------

fn read_text<'a>(name: &str, raw: &'a RawValue) -> Result<Text<'a>, ApiError> {
    serde_json::from_str::<Text>(raw.get()).map_err(|_| wrong_type(name, "a string"))
}

fn read_stream(raw: &RawValue) -> Result<bool, ApiError> {
    serde_json::from_str(raw.get()).map_err(|_| wrong_type("stream", "a boolean"))
}

fn read_max_output_tokens(raw: &RawValue) -> Result<u64, ApiError> {
    serde_json::from_str::<u64>(raw.get())
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| wrong_type("max_output_tokens", "a positive integer"))
}

/// Reads a Responses request and writes it as chat completions.
pub fn parse(body: &[u8]) -> Result<ResponsesRequest<'_>, ApiError> {
    let fields = json::split_object(body).map_err(json::body_error)?;
    let mut model = None;
    let mut input = None;
    let mut instructions = None;
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
                Ok(v) => Err(bad_value(
                    name,
                    format!("Invalid '{name}': {v} is not between {lo} and {hi}."),
                )),
                Err(_) => Err(wrong_type(name, "a decimal")),
            }
        };
        match name {
            "model" => model = Some(read_text("model", raw)?),
            "input" => input = Some(raw),
            "instructions" => instructions = Some(read_text("instructions", raw)?),
            "stream" => {
                out.stream = read_stream(raw)?
            }
            "max_output_tokens" => {
                out.max_tokens = Some(read_max_output_tokens(raw)?)
            }
            "temperature" => out.temperature = Some(number(0.0, 2.0)?),
            "top_p" => out.top_p = Some(number(0.0, 1.0)?),
            "user" | "safety_identifier" => {
                let user = serde_json::from_str::<Text>(raw.get())
                    .map_err(|_| wrong_type(name, "a string"))?;
                // `user` wins when both are given.
                if name == "user" || out.user.is_none() {
                    out.user = Some(user);
                }
            }
            "tools" => {
                let tools: Vec<ToolIn> = serde_json::from_str(raw.get())
                    .map_err(|_| wrong_type("tools", "an array of tools, each with a `type`"))?;
                for (i, t) in tools.into_iter().enumerate() {
                    out.tools.push(tool(t, i)?);
                }
            }
            "tool_choice" => out.tool_choice = Some(tool_choice(raw)?),
            "parallel_tool_calls" => {
                out.parallel_tool_calls = Some(
                    serde_json::from_str(raw.get())
                        .map_err(|_| wrong_type("parallel_tool_calls", "a boolean"))?,
                )
            }
            "text" => {
                let t: TextIn = serde_json::from_str(raw.get())
                    .map_err(|_| wrong_type("text", "an object"))?;
                out.response_format = t.format.map(response_format).transpose()?.flatten();
            }
            "reasoning" => {
                let r: ReasoningIn = serde_json::from_str(raw.get())
                    .map_err(|_| wrong_type("reasoning", "an object"))?;
                out.reasoning_effort = r.effort;
            }
            "previous_response_id" => {
                return Err(invalid(
                    "previous_response_id",
                    "previous_response_id needs the conversation kept: OpenAI and Azure OpenAI deployments keep their own, and for other providers the gateway keeps it when a shared store is configured (tollgate_settings.store); send the whole conversation in `input` instead.",
                )
                .with_code("unsupported_parameter"))
            }
            "conversation" => return Err(openai_only("conversation", "A stored conversation")),
            "prompt" => return Err(openai_only("prompt", "A stored prompt")),
            "background" => {
                if serde_json::from_str::<bool>(raw.get()).unwrap_or(true) {
                    return Err(openai_only("background", "Background mode"));
                }
            }
            // How OpenAI stores, serves or annotates the response: nothing another backend could
            // honour or needs.
            "store" | "include" | "metadata" | "truncation" | "service_tier"
            | "prompt_cache_key" | "prompt_cache_retention" | "stream_options"
            | "max_tool_calls" | "top_logprobs" => {}
            _ => out.other.0.push((name, raw)),
        }
    }
    let model = match model {
        Some(m) if !m.is_empty() => m,
        _ => return Err(missing("model")),
    };
    if let Some(text) = instructions {
        out.messages
            .push(ChatMessage::plain("system", ContentOut::Text(text)));
    }
    let input = input.ok_or_else(|| missing("input"))?;
    match serde_json::from_str::<Text>(input.get()) {
        Ok(text) => out
            .messages
            .push(ChatMessage::plain("user", ContentOut::Text(text))),
        Err(_) => {
            let items: Vec<ItemIn> = serde_json::from_str(input.get())
                .map_err(|_| wrong_type("input", "a string or an array of input items"))?;
            // Reasoning waiting for the next assistant message.
            let mut reasoning = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                translate_item(item, i, &mut out.messages, &mut reasoning)?;
            }
        }
    }
    if out.messages.is_empty() {
        return Err(bad_value(
            "input",
            "Invalid 'input': empty array. Expected an array with minimum length 1.",
        ));
    }
    if out.stream {
        // Usage comes at the end of the stream, where `response.completed` reports it.
        out.stream_options = Some(StreamOptions {
            include_usage: true,
        });
    }
    let stream = out.stream;
    let size = body.len().saturating_add(256);
    let chat = {
        let out = ChatOut {
            model: model.as_str(),
            ..out
        };
        json::to_vec_sized(&out, size)
    };
    Ok(ResponsesRequest {
        model,
        stream,
        chat,
    })
}

/// Reads a request for a deployment that serves the Responses API itself: see
/// [`NativeRequest`]. Items and parts it does not know count by their JSON's length.
pub fn read_native(body: &[u8]) -> Result<NativeRequest<'_>, ApiError> {
    let fields = json::split_object(body).map_err(json::body_error)?;
    let mut model = None;
    let mut stream = false;
    let mut max_output_tokens = None;
    let mut prompt = PromptText::default();
    for (key, raw) in &fields {
        let raw: &RawValue = raw;
        if json::is_null(raw) {
            continue;
        }
        match key.as_str() {
            "model" => model = Some(read_text("model", raw)?),
            "stream" => stream = read_stream(raw)?,
            "max_output_tokens" => max_output_tokens = Some(read_max_output_tokens(raw)?),
            "input" => match serde_json::from_str::<Text>(raw.get()) {
                Ok(text) => {
                    prompt.bytes += text.len() as u64;
                    prompt.messages += 1;
                }
                Err(_) => {
                    let items: Vec<&RawValue> = serde_json::from_str(raw.get())
                        .map_err(|_| wrong_type("input", "a string or an array of input items"))?;
                    for item in items {
                        count_item(item, &mut prompt);
                    }
                }
            },
            "instructions" | "tools" | "text" => prompt.bytes += raw.get().len() as u64,
            _ => {}
        }
    }
    let model = match model {
        Some(m) if !m.is_empty() => m,
        _ => return Err(missing("model")),
    };
    Ok(NativeRequest {
        model,
        stream,
        max_output_tokens,
        prompt,
    })
}

fn count_item(raw: &RawValue, prompt: &mut PromptText) {
    prompt.messages += 1;
    let Ok(item) = serde_json::from_str::<ItemIn>(raw.get()) else {
        prompt.bytes += raw.get().len() as u64;
        return;
    };
    match item.kind.as_ref().map_or("message", |k| k.as_str()) {
        "message" => {
            if let Some(c) = item.content {
                count_content(c, prompt);
            }
        }
        "function_call" => {
            prompt.bytes += item.name.map_or(0, |n| n.len() as u64);
            prompt.bytes += item.arguments.map_or(0, |a| a.len() as u64);
        }
        "function_call_output" => {
            if let Some(o) = item.output {
                count_content(o, prompt);
            }
        }
        _ => prompt.bytes += raw.get().len() as u64,
    }
}

fn count_content(raw: &RawValue, prompt: &mut PromptText) {
    if let Ok(text) = serde_json::from_str::<Text>(raw.get()) {
        prompt.bytes += text.len() as u64;
        return;
    }
    let Ok(parts) = serde_json::from_str::<Vec<PartIn>>(raw.get()) else {
        prompt.bytes += raw.get().len() as u64;
        return;
    };
    for p in parts {
        match p.kind.as_str() {
            "input_image" => prompt.images += 1,
            "input_file" => prompt.opaque = true,
            _ => {
                prompt.bytes += p.text.or(p.refusal).map_or(0, |t| t.len() as u64);
            }
        }
    }
}

fn tool<'a>(t: ToolIn<'a>, i: usize) -> Result<ToolOut<'a>, ApiError> {
    if t.kind.as_str() != "function" {
        return Err(openai_only(
            &format!("tools[{i}].type"),
            &format!("The built-in tool '{}'", t.kind.as_str()),
        ));
    }
    Ok(ToolOut {
        kind: "function",
        function: FunctionDefOut {
            name: t.name.ok_or_else(|| missing(&format!("tools[{i}].name")))?,
            description: t.description,
            parameters: t.parameters,
            strict: t.strict,
        },
        cache_control: None,
    })
}

fn tool_choice(raw: &RawValue) -> Result<ToolChoiceOut<'_>, ApiError> {
    if let Ok(mode) = serde_json::from_str::<Text>(raw.get()) {
        return match mode.as_str() {
            "auto" => Ok(ToolChoiceOut::Mode("auto")),
            "none" => Ok(ToolChoiceOut::Mode("none")),
            "required" => Ok(ToolChoiceOut::Mode("required")),
            other => Err(bad_value(
                "tool_choice",
                format!("Invalid value: '{other}'. Supported values are: 'none', 'auto', and 'required'."),
            )),
        };
    }
    let c: ToolChoiceIn = serde_json::from_str(raw.get())
        .map_err(|_| wrong_type("tool_choice", "a string or an object with a `type`"))?;
    match c.kind.as_str() {
        "function" => Ok(ToolChoiceOut::function(
            c.name.ok_or_else(|| missing("tool_choice.name"))?,
        )),
        other => Err(openai_only(
            "tool_choice.type",
            &format!("A tool choice of type '{other}'"),
        )),
    }
}

/// `text.format` as `response_format`; plain text asks for nothing.
fn response_format(f: FormatIn<'_>) -> Result<Option<ResponseFormatOut<'_>>, ApiError> {
    match f.kind.as_str() {
        "text" => Ok(None),
        "json_object" => Ok(Some(ResponseFormatOut {
            kind: "json_object",
            json_schema: None,
        })),
        "json_schema" => Ok(Some(ResponseFormatOut {
            kind: "json_schema",
            json_schema: Some(JsonSchemaOut {
                name: f.name.ok_or_else(|| missing("text.format.name"))?,
                description: f.description,
                schema: f.schema.ok_or_else(|| missing("text.format.schema"))?,
                strict: f.strict,
            }),
        })),
        other => Err(bad_value(
            "text.format.type",
            format!("Invalid value: '{other}'. Supported values are: 'text', 'json_object', and 'json_schema'."),
        )),
    }
}

/// One input item as chat messages (see the module's doc). `reasoning` holds the thinking
/// blocks of reasoning items read so far, for the next assistant message.
fn translate_item<'a>(
    item: ItemIn<'a>,
    i: usize,
    out: &mut Vec<ChatMessage<'a>>,
    reasoning: &mut Vec<ThinkingOut<'a>>,
) -> Result<(), ApiError> {
    let at = |field: &str| format!("input[{i}].{field}");
    let kind = item.kind.as_ref().map_or("message", |k| k.as_str());
    match kind {
        "message" => {
            let role = match item.role.as_ref().map(|r| r.as_str()) {
                Some("user") => "user",
                Some("assistant") => "assistant",
                Some("system") => "system",
                Some("developer") => "developer",
                Some(other) => {
                    return Err(bad_value(
                        &at("role"),
                        format!("Invalid value: '{other}'. Supported values are: 'user', 'assistant', 'system', and 'developer'."),
                    ))
                }
                None => return Err(missing(&at("role"))),
            };
            let raw = item.content.ok_or_else(|| missing(&at("content")))?;
            let content = content(raw, &at("content"))?;
            let thinking_blocks = if role == "assistant" {
                std::mem::take(reasoning)
            } else {
                Vec::new()
            };
            out.push(ChatMessage {
                thinking_blocks,
                ..ChatMessage::plain(role, content)
            });
        }
        "function_call" => {
            let call = ToolCallOut {
                id: item.call_id.ok_or_else(|| missing(&at("call_id")))?,
                kind: "function",
                function: FunctionOut {
                    name: item.name.ok_or_else(|| missing(&at("name")))?,
                    arguments: item.arguments.ok_or_else(|| missing(&at("arguments")))?,
                },
            };
            // Calls join the assistant turn just before them (its text, or earlier calls).
            match out.last_mut() {
                Some(m) if m.role == "assistant" => {
                    m.tool_calls.push(call);
                    m.thinking_blocks.append(reasoning);
                }
                _ => out.push(ChatMessage {
                    tool_calls: vec![call],
                    thinking_blocks: std::mem::take(reasoning),
                    ..ChatMessage::plain("assistant", ContentOut::Null(None))
                }),
            }
        }
        "function_call_output" => {
            let id = item.call_id.ok_or_else(|| missing(&at("call_id")))?;
            let raw = item.output.ok_or_else(|| missing(&at("output")))?;
            out.push(ChatMessage {
                tool_call_id: Some(id),
                ..ChatMessage::plain("tool", content(raw, &at("output"))?)
            });
        }
        // Reasoning a provider signed goes back with the next assistant turn; OpenAI's own is
        // dropped (see the module's doc).
        "reasoning" => {
            if let Some(block) = thinking_block(item) {
                reasoning.push(block);
            }
        }
        "item_reference" => {
            return Err(openai_only(
                &at("type"),
                "An item reference (a stored item)",
            ));
        }
        other => {
            return Err(openai_only(
                &at("type"),
                &format!("The input item type '{other}'"),
            ));
        }
    }
    Ok(())
}

/// A reasoning item with encrypted content as the thinking block it came from; `None` without,
/// or with OpenAI's own ([`OPENAI_ENCRYPTED`]).
fn thinking_block(item: ItemIn<'_>) -> Option<ThinkingOut<'_>> {
    let encrypted = item
        .encrypted_content
        .filter(|e| !e.is_empty() && !e.starts_with(OPENAI_ENCRYPTED))?
        .0;
    if let Some(data) = encrypted.strip_prefix(REDACTED_PREFIX) {
        let data = match encrypted {
            Cow::Borrowed(b) => Cow::Borrowed(&b[REDACTED_PREFIX.len()..]),
            Cow::Owned(_) => Cow::Owned(data.to_string()),
        };
        return Some(ThinkingOut::RedactedThinking { data: Text(data) });
    }
    let parts: Vec<SummaryIn> = item
        .summary
        .and_then(|raw| serde_json::from_str(raw.get()).ok())
        .unwrap_or_default();
    let thinking: String = parts.iter().filter_map(|p| p.text.as_deref()).collect();
    Some(ThinkingOut::Thinking {
        thinking: Text(Cow::Owned(thinking)),
        signature: Some(Text(encrypted)),
    })
}

/// A message's content (or a function call's output): a string, or a list of parts.
fn content<'a>(raw: &'a RawValue, path: &str) -> Result<ContentOut<'a>, ApiError> {
    if let Ok(text) = serde_json::from_str::<Text>(raw.get()) {
        return Ok(ContentOut::Text(text));
    }
    let parts: Vec<PartIn> = serde_json::from_str(raw.get())
        .map_err(|_| wrong_type(path, "a string or an array of content parts"))?;
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.into_iter().enumerate() {
        let at = |field: &str| format!("{path}[{j}].{field}");
        out.push(match p.kind.as_str() {
            "input_text" | "output_text" => PartOut::Text {
                text: p.text.ok_or_else(|| missing(&at("text")))?,
                cache_control: None,
            },
            "refusal" => PartOut::Text {
                text: p.refusal.ok_or_else(|| missing(&at("refusal")))?,
                cache_control: None,
            },
            "input_image" => match (p.image_url, p.file_id) {
                (Some(url), _) => PartOut::ImageUrl {
                    image_url: ImageUrl {
                        url: url.0,
                        detail: p.detail.filter(|d| d.as_str() != "auto"),
                    },
                    cache_control: None,
                },
                (None, Some(_)) => {
                    return Err(openai_only(&at("file_id"), "An uploaded file (`file_id`)"))
                }
                (None, None) => return Err(missing(&at("image_url"))),
            },
            "input_file" => {
                if p.file_id.is_some() && p.file_data.is_none() && p.file_url.is_none() {
                    return Err(openai_only(&at("file_id"), "An uploaded file (`file_id`)"));
                }
                if p.file_data.is_none() && p.file_url.is_none() {
                    return Err(missing(&at("file_data")));
                }
                PartOut::File {
                    file: FileOut {
                        file_data: p.file_data.map(|d| d.0),
                        file_url: p.file_url,
                        filename: p.filename,
                        format: None,
                    },
                    cache_control: None,
                }
            }
            other => {
                return Err(bad_value(
                    &at("type"),
                    format!("Invalid value: '{other}'. Supported values are: 'input_text', 'input_image', 'input_file', 'output_text' and 'refusal'."),
                ))
            }
        });
    }
    Ok(ContentOut::Parts(out))
}

#[cfg(test)]
mod tests;
