//! The OpenAI Chat Completions request, parsed once from the body and borrowed from it.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;

use super::params;
use crate::error::ApiError;
use crate::json::{self, parse_field, Fields, Text};

/// A parsed `POST /v1/chat/completions` body.
///
/// Known parameters are typed; `fields` keeps every top-level field raw, so an OpenAI-shaped
/// upstream receives the client's body with only the fields the gateway must change.
#[derive(Debug, Default)]
pub struct ChatRequest<'a> {
    pub fields: Fields<'a>,
    pub model: Text<'a>,
    pub messages: Vec<Message<'a>>,
    pub stream: bool,
    /// `stream_options.include_usage` as the client sent it.
    pub include_usage: bool,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub stop: Vec<Text<'a>>,
    pub seed: Option<i64>,
    pub user: Option<Text<'a>>,
    pub n: Option<u64>,
    pub tools: Vec<Tool<'a>>,
    pub tool_choice: Option<ToolChoice<'a>>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<ResponseFormat<'a>>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    /// LiteLLM's extensions for what chat completions has no field for (an Anthropic-shaped
    /// client's request arrives with them): `top_k`, and `thinking` as Anthropic has it.
    pub top_k: Option<u64>,
    pub thinking: Option<Thinking>,
    /// OpenAI's `reasoning_effort`, checked against its documented values; OpenAI-shaped
    /// upstreams get it from `fields`, others map it (Anthropic: a thinking budget).
    pub reasoning_effort: Option<Text<'a>>,
    /// An output cap the gateway imposes (what the budget left can pay), below the client's own
    /// if it set one: [`ChatRequest::max_output_tokens`] and the OpenAI-shaped bodies written
    /// from `fields` honour it.
    pub output_cap: Option<u64>,
}

/// Extended thinking, as Anthropic's `thinking` asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thinking {
    /// `enabled`, `disabled` or `adaptive`.
    pub mode: &'static str,
    pub budget_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

#[derive(Debug, Deserialize)]
pub struct Message<'a> {
    pub role: Role,
    #[serde(default, borrow)]
    pub content: Content<'a>,
    #[serde(default, borrow)]
    pub name: Option<Text<'a>>,
    #[serde(default, borrow, deserialize_with = "opt_objects")]
    pub tool_calls: Option<Vec<ToolCall<'a>>>,
    #[serde(default, borrow)]
    pub tool_call_id: Option<Text<'a>>,
    /// An assistant turn's reasoning as the provider returned it (LiteLLM's `thinking_blocks`):
    /// text with its signature, or redacted; sent back to a provider that takes it.
    #[serde(default, borrow, deserialize_with = "opt_objects")]
    pub thinking_blocks: Option<Vec<ThinkingBlock<'a>>>,
}

#[derive(Debug, Deserialize)]
pub struct ThinkingBlock<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Text<'a>,
    #[serde(default, borrow)]
    pub thinking: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub signature: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub data: Option<Text<'a>>,
}

/// Message content: absent/null, a string, or an array of parts.
#[derive(Debug, Default)]
pub enum Content<'a> {
    #[default]
    None,
    Text(Text<'a>),
    Parts(Vec<Part<'a>>),
}

#[derive(Debug)]
pub enum Part<'a> {
    Text(Text<'a>),
    Image {
        url: Text<'a>,
        detail: Option<Text<'a>>,
    },
    /// A document (LiteLLM's and OpenAI's `file` part): its bytes as a base64 data URL
    /// (`file_data`), or where it is (`file_url`, or a `file_id` that is a URL). `format` is its
    /// media type where the data URL does not say it.
    File {
        data: Option<Text<'a>>,
        url: Option<Text<'a>>,
        id: Option<Text<'a>>,
        filename: Option<Text<'a>>,
        format: Option<Text<'a>>,
    },
    /// A part type the gateway does not translate (audio, ...), kept by name for errors.
    Other(Text<'a>),
}

impl Part<'_> {
    /// A document's media type: `format`, else the data URL's, else guessed from its URL.
    pub fn file_media_type(&self) -> Option<&str> {
        let Part::File {
            data, url, format, ..
        } = self
        else {
            return None;
        };
        if let Some(f) = format.as_deref().filter(|f| !f.is_empty()) {
            return Some(f);
        }
        if let Some(d) = data.as_deref().and_then(parse_data_url) {
            return Some(d.media_type);
        }
        url.as_deref().map(media_type_from_url)
    }
}

#[derive(Debug, Deserialize)]
pub struct ToolCall<'a> {
    #[serde(borrow)]
    pub id: Text<'a>,
    #[serde(rename = "type", default, borrow)]
    pub kind: Option<Text<'a>>,
    #[serde(borrow, deserialize_with = "object")]
    pub function: FunctionCall<'a>,
}

#[derive(Debug, Deserialize)]
pub struct FunctionCall<'a> {
    #[serde(borrow)]
    pub name: Text<'a>,
    /// A JSON document encoded as a string, as OpenAI sends it.
    #[serde(default, borrow)]
    pub arguments: Text<'a>,
}

#[derive(Debug, Deserialize)]
pub struct Tool<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Text<'a>,
    #[serde(borrow, deserialize_with = "object")]
    pub function: FunctionDef<'a>,
}

#[derive(Debug, Deserialize)]
pub struct FunctionDef<'a> {
    #[serde(borrow)]
    pub name: Text<'a>,
    #[serde(default, borrow)]
    pub description: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub parameters: Option<&'a RawValue>,
    #[serde(default)]
    pub strict: Option<bool>,
}

#[derive(Debug, PartialEq)]
pub enum ToolChoice<'a> {
    None,
    Auto,
    Required,
    Function(Text<'a>),
}

#[derive(Debug)]
pub enum ResponseFormat<'a> {
    Text,
    JsonObject,
    JsonSchema {
        name: Option<Text<'a>>,
        schema: Option<&'a RawValue>,
        strict: Option<bool>,
    },
}

impl<'a> ChatRequest<'a> {
    /// About how long the request body was: what a translation of it will be close to.
    pub fn body_size(&self) -> usize {
        self.fields
            .iter()
            .map(|(k, v)| k.len().saturating_add(v.get().len()).saturating_add(4))
            .sum()
    }

    /// True when the client sent this top-level field with a non-null value.
    pub fn has(&self, name: &str) -> bool {
        json::get(&self.fields, name).is_some_and(|v| !json::is_null(v))
    }

    /// The output cap the client asked for, under either name, lowered to the gateway's cap
    /// when it imposes one.
    pub fn max_output_tokens(&self) -> Option<u64> {
        let client = self.max_completion_tokens.or(self.max_tokens);
        match (client, self.output_cap) {
            (Some(c), Some(cap)) => Some(c.min(cap)),
            (c, cap) => c.or(cap),
        }
    }

    /// How much prompt the request carries, measured on its parsed text rather than its JSON
    /// envelope (see [`PromptText`]). No copy: lengths of the strings already borrowed.
    pub fn prompt_text(&self) -> PromptText {
        let mut p = PromptText {
            messages: self.messages.len() as u64,
            ..Default::default()
        };
        for m in &self.messages {
            p.add(m.name.as_deref());
            p.add(m.tool_call_id.as_deref());
            match &m.content {
                Content::None => {}
                Content::Text(t) => p.add(Some(t.as_str())),
                Content::Parts(parts) => {
                    for part in parts {
                        match part {
                            Part::Text(t) => p.add(Some(t.as_str())),
                            Part::Image { .. } => p.images += 1,
                            // Audio, files: what they cost is not in their text.
                            Part::File { .. } | Part::Other(_) => p.opaque = true,
                        }
                    }
                }
            }
            for call in m.tool_calls.iter().flatten() {
                p.add(Some(call.function.name.as_str()));
                p.add(Some(call.function.arguments.as_str()));
            }
        }
        for tool in &self.tools {
            let f = &tool.function;
            p.add(Some(f.name.as_str()));
            p.add(f.description.as_deref());
            p.bytes += f.parameters.map_or(0, |v| v.get().len() as u64);
        }
        for (key, value) in &self.fields {
            // Parameters that only steer generation add no prompt; the parsed text is counted
            // above; any other field (`functions`, `prediction`, a provider's own) counts whole.
            let name = key.as_str();
            if name == "response_format" || !NO_PROMPT_FIELDS.contains(&name) {
                p.bytes += value.get().len() as u64;
            }
        }
        p
    }

    /// Completions the request makes a server generate: `n`, or `best_of` where a server takes it
    /// (vLLM and other OpenAI-compatible servers generate that many and return `n`), at least 1.
    pub fn choices(&self) -> u64 {
        let best_of = json::get(&self.fields, "best_of")
            .and_then(|v| serde_json::from_str::<u64>(v.get()).ok())
            .unwrap_or(1);
        self.n.unwrap_or(1).max(best_of).max(1)
    }

    /// The text of the `stop` parameter, normalized to a list.
    pub fn stop_sequences(&self) -> &[Text<'a>] {
        &self.stop
    }
}

/// What a chat request's prompt is made of, for the gateway's estimate of its prompt tokens.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PromptText {
    /// UTF-8 bytes of text: message contents and names, tool calls and tool definitions, and
    /// the raw JSON of top-level fields that may carry prompt.
    pub bytes: u64,
    pub messages: u64,
    pub images: u64,
    /// A part whose tokens its text does not tell (audio, a file).
    pub opaque: bool,
}

impl PromptText {
    fn add(&mut self, text: Option<&str>) {
        self.bytes += text.map_or(0, |t| t.len() as u64);
    }
}

/// Top-level fields that carry no prompt text (they steer generation, or are read as text
/// already: `messages`, `tools`).
const NO_PROMPT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "tools",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "best_of",
    "seed",
    "user",
    "stop",
    "tool_choice",
    "parallel_tool_calls",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "metadata",
    "store",
    "modalities",
    "reasoning_effort",
    "verbosity",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "prompt_cache_retention",
    "prompt_cache_options",
    "audio",
];

/// Parses and validates a chat completions body: every parameter OpenAI documents is checked
/// against its documented type and range (errors name it, in OpenAI's words); others pass through
/// to the provider untouched. A body that parses is then checked whole by the gateway's JSON
/// rules ([`json::check_body`]), including the fields passed through.
pub fn parse_chat(body: &[u8]) -> Result<ChatRequest<'_>, ApiError> {
    parse_chat_known(body, json::Known::Nothing)
}

/// [`parse_chat`] for a body known to meet part of the gateway's JSON rules already.
pub fn parse_chat_known(body: &[u8], known: json::Known) -> Result<ChatRequest<'_>, ApiError> {
    let fields = json::split_object(body).map_err(json::body_error)?;
    let mut req = ChatRequest::default();
    let mut model = None;
    let mut messages = None;
    for (key, raw) in &fields {
        let raw: &RawValue = raw;
        let name = key.as_str();
        match name {
            "model" => model = Some(parse_field::<Text>("model", raw, "a string")?),
            "messages" => {
                messages = Some(
                    parse_field::<Objects<Message>>("messages", raw, "an array")
                        .map_err(|e| messages_error(raw).unwrap_or(e))?
                        .0,
                )
            }
            "stream" => req.stream = params::boolean(name, raw)?.unwrap_or(false),
            "stream_options" => params::fields(name, raw, &[], |path, field, v| {
                match field {
                    "include_usage" => {
                        req.include_usage = params::boolean(path, v)?.unwrap_or(false)
                    }
                    "include_obfuscation" => drop(params::boolean(path, v)?),
                    _ => {}
                }
                Ok(())
            })?,
            "temperature" => req.temperature = params::decimal(name, raw, 0.0, 2.0)?,
            "top_p" => req.top_p = params::decimal(name, raw, 0.0, 1.0)?,
            "frequency_penalty" => req.frequency_penalty = params::decimal(name, raw, -2.0, 2.0)?,
            "presence_penalty" => req.presence_penalty = params::decimal(name, raw, -2.0, 2.0)?,
            "max_tokens" => req.max_tokens = count(name, raw, i64::MAX)?,
            "max_completion_tokens" => req.max_completion_tokens = count(name, raw, i64::MAX)?,
            "n" => req.n = count(name, raw, 128)?,
            "seed" => req.seed = params::integer(name, raw, i64::MIN, i64::MAX)?,
            "user" => req.user = params::string(name, raw)?,
            "stop" => {
                match params::Kind::of(raw) {
                    params::Kind::Array => {
                        let items = params::array(name, raw)?.unwrap_or_default();
                        for (i, item) in items.iter().enumerate() {
                            required_string(&format!("stop[{i}]"), item)?;
                        }
                    }
                    params::Kind::Null | params::Kind::String => {}
                    _ => {
                        let expected = "a string or an array of strings";
                        return Err(params::wrong_type(name, expected, raw));
                    }
                }
                req.stop =
                    parse_field::<Option<Stop>>("stop", raw, "a string or an array of strings")?
                        .map(|s| s.0)
                        .unwrap_or_default()
            }
            "tools" => {
                req.tools = parse_field::<Option<Objects<Tool>>>("tools", raw, "an array")
                    .map_err(|e| tools_error(raw).unwrap_or(e))?
                    .map(|t| t.0)
                    .unwrap_or_default()
            }
            "tool_choice" => {
                if params::Kind::of(raw) == params::Kind::String {
                    params::one_of(name, raw, &["none", "auto", "required"])?;
                }
                req.tool_choice =
                    parse_field::<Option<ToolChoice>>("tool_choice", raw, "a string or an object")?
            }
            "parallel_tool_calls" => req.parallel_tool_calls = params::boolean(name, raw)?,
            "top_k" => req.top_k = params::integer(name, raw, 0, i64::MAX)?.map(i64::unsigned_abs),
            "thinking" => req.thinking = thinking(raw)?,
            "reasoning_effort" => {
                check_documented(name, raw)?;
                req.reasoning_effort = params::string(name, raw)?;
            }
            "response_format" => {
                req.response_format =
                    parse_field::<Option<ResponseFormat>>("response_format", raw, "an object")?
            }
            other => check_documented(other, raw)?,
        }
    }
    req.model = match model {
        Some(m) if !m.is_empty() => m,
        _ => return Err(ApiError::invalid_param(
            "model",
            "you must provide a model parameter (a non-empty string naming one of GET /v1/models)",
        )),
    };
    req.messages = match messages {
        Some(m) if !m.is_empty() => m,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "messages",
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            )
            .with_code("empty_array"))
        }
        None => return Err(ApiError::invalid_param("messages", "Missing required parameter: 'messages'.").with_code("missing_required_parameter")),
    };
    for tool in &req.tools {
        if tool.kind.as_str() != "function" {
            return Err(ApiError::invalid_param(
                "tools",
                format!(
                    "Invalid value for 'tools[].type': '{}'. Supported values are: 'function'.",
                    tool.kind.as_str()
                ),
            ));
        }
    }
    if let Some(ToolChoice::Function(name)) = &req.tool_choice {
        if !req
            .tools
            .iter()
            .any(|t| t.function.name.as_str() == name.as_str())
        {
            return Err(ApiError::invalid_param(
                "tool_choice",
                format!(
                    "Invalid 'tool_choice': function '{}' is not among the request's tools.",
                    name.as_str()
                ),
            ));
        }
    }
    json::check_body(body, known)?;
    req.fields = fields;
    Ok(req)
}

/// `thinking`: `{"type": "enabled", "budget_tokens": n}`, `{"type": "disabled"}` or
/// `{"type": "adaptive"}`.
fn thinking(raw: &RawValue) -> Result<Option<Thinking>, ApiError> {
    let mut kind = None;
    let mut budget = None;
    params::fields("thinking", raw, &["type"], |path, field, v| {
        match field {
            "type" => {
                required_one_of(path, v, &["enabled", "disabled", "adaptive"])?;
                kind = serde_json::from_str::<String>(v.get()).ok();
            }
            "budget_tokens" => budget = params::integer(path, v, 1, i64::MAX)?,
            _ => {}
        }
        Ok(())
    })?;
    let mode = match kind.as_deref() {
        Some("enabled") => "enabled",
        Some("disabled") => "disabled",
        Some("adaptive") => "adaptive",
        _ => return Ok(None),
    };
    Ok(Some(Thinking {
        mode,
        budget_tokens: budget.map(i64::unsigned_abs),
    }))
}

/// A count of at least 1.
fn count(name: &str, raw: &RawValue, max: i64) -> Result<Option<u64>, ApiError> {
    Ok(params::integer(name, raw, 1, max)?.map(i64::unsigned_abs))
}

/// The other documented Chat Completions parameters, which the gateway passes on without reading:
/// checked for their documented types and ranges, so a wrong one is the client's 400 rather than
/// something a provider may take, ignore or fail on. Undocumented ones pass untouched.
fn check_documented(name: &str, raw: &RawValue) -> Result<(), ApiError> {
    use params::{boolean, fields, integer, one_of, string, Kind};
    match name {
        "logprobs" | "store" => boolean(name, raw).map(drop),
        "top_logprobs" => integer(name, raw, 0, 20).map(drop),
        "logit_bias" => fields(name, raw, &[], |path, _, v| {
            match params::decimal(path, v, -100.0, 100.0)? {
                Some(_) => Ok(()),
                None => Err(params::wrong_type(path, "a number", v)),
            }
        }),
        "metadata" => metadata(raw),
        "modalities" => {
            for (i, item) in params::array(name, raw)?
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                required_one_of(&format!("modalities[{i}]"), item, &["text", "audio"])?;
            }
            Ok(())
        }
        "reasoning_effort" => one_of(
            name,
            raw,
            &["none", "minimal", "low", "medium", "high", "xhigh", "max"],
        )
        .map(drop),
        "verbosity" => one_of(name, raw, &["low", "medium", "high"]).map(drop),
        "service_tier" => one_of(
            name,
            raw,
            &["auto", "default", "flex", "scale", "priority", "fast"],
        )
        .map(drop),
        "prompt_cache_key" => string(name, raw).map(drop),
        "safety_identifier" => params::short_string(name, raw, 128).map(drop),
        "prompt_cache_retention" => one_of(name, raw, &["in_memory", "24h"]).map(drop),
        "prompt_cache_options" => fields(name, raw, &[], |path, field, v| match field {
            "mode" => one_of(path, v, &["implicit", "explicit"]).map(drop),
            "ttl" => one_of(path, v, &["30m"]).map(drop),
            _ => Ok(()),
        }),
        "prediction" => fields(
            name,
            raw,
            &["type", "content"],
            |path, field, v| match field {
                "type" => required_one_of(path, v, &["content"]),
                "content" => text_content(path, v),
                _ => Ok(()),
            },
        ),
        "audio" => fields(
            name,
            raw,
            &["format", "voice"],
            |path, field, v| match field {
                "format" => {
                    required_one_of(path, v, &["wav", "aac", "mp3", "flac", "opus", "pcm16"])
                }
                "voice" => match Kind::of(v) {
                    Kind::String => Ok(()),
                    Kind::Object => fields(path, v, &["id"], |path, field, v| match field {
                        "id" => required_string(path, v),
                        _ => Ok(()),
                    }),
                    _ => Err(params::wrong_type(path, "a string or an object", v)),
                },
                _ => Ok(()),
            },
        ),
        "web_search_options" => fields(name, raw, &[], |path, field, v| match field {
            "search_context_size" => one_of(path, v, &["low", "medium", "high"]).map(drop),
            "user_location" => {
                fields(
                    path,
                    v,
                    &["type", "approximate"],
                    |path, field, v| match field {
                        "type" => required_one_of(path, v, &["approximate"]),
                        "approximate" => {
                            fields(path, v, &[], |path, _, v| string(path, v).map(drop))
                        }
                        _ => Ok(()),
                    },
                )
            }
            _ => Ok(()),
        }),
        "moderation" => fields(name, raw, &["model"], |path, field, v| match field {
            "model" => required_string(path, v),
            "policy" => fields(path, v, &[], |path, field, v| match field {
                "input" | "output" => fields(path, v, &["mode"], |path, field, v| match field {
                    "mode" => required_one_of(path, v, &["score", "block"]),
                    _ => Ok(()),
                }),
                _ => Ok(()),
            }),
            _ => Ok(()),
        }),
        "functions" => {
            for (i, item) in params::array(name, raw)?
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let path = format!("functions[{i}]");
                if Kind::of(item) != Kind::Object {
                    return Err(params::wrong_type(&path, "an object", item));
                }
                fields(&path, item, &["name"], |path, field, v| match field {
                    "name" => required_string(path, v),
                    "description" => string(path, v).map(drop),
                    "parameters" => params::object(path, v).map(drop),
                    _ => Ok(()),
                })?;
            }
            Ok(())
        }
        "function_call" => match Kind::of(raw) {
            Kind::Null => Ok(()),
            Kind::String => one_of(name, raw, &["none", "auto"]).map(drop),
            Kind::Object => fields(name, raw, &["name"], |path, field, v| match field {
                "name" => required_string(path, v),
                _ => Ok(()),
            }),
            _ => Err(params::wrong_type(name, "a string or an object", raw)),
        },
        _ => Ok(()),
    }
}

/// A string (not null) among `allowed`.
fn required_one_of(path: &str, raw: &RawValue, allowed: &[&str]) -> Result<(), ApiError> {
    match params::one_of(path, raw, allowed)? {
        Some(_) => Ok(()),
        None => Err(params::wrong_type(path, "a string", raw)),
    }
}

/// A string, not null.
fn required_string(path: &str, raw: &RawValue) -> Result<(), ApiError> {
    match params::string(path, raw)? {
        Some(_) => Ok(()),
        None => Err(params::wrong_type(path, "a string", raw)),
    }
}

/// Text content: a string, or an array of `{"type": "text", "text": ...}` parts.
fn text_content(path: &str, raw: &RawValue) -> Result<(), ApiError> {
    use params::Kind;
    match Kind::of(raw) {
        Kind::String => Ok(()),
        Kind::Array => {
            for (i, part) in params::array(path, raw)?
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let path = format!("{path}[{i}]");
                if Kind::of(part) != Kind::Object {
                    return Err(params::wrong_type(&path, "an object", part));
                }
                params::fields(
                    &path,
                    part,
                    &["type", "text"],
                    |path, field, v| match field {
                        "type" => required_one_of(path, v, &["text"]),
                        "text" => required_string(path, v),
                        _ => Ok(()),
                    },
                )?;
            }
            Ok(())
        }
        _ => Err(params::wrong_type(path, "a string or an array", raw)),
    }
}

/// `metadata`: at most 16 pairs of strings, keys up to 64 characters, values up to 512.
fn metadata(raw: &RawValue) -> Result<(), ApiError> {
    let Some(fields) = params::object("metadata", raw)? else {
        return Ok(());
    };
    if fields.len() > 16 {
        return Err(ApiError::invalid_param(
            "metadata",
            format!("Invalid 'metadata': too many properties. Expected an object with at most 16 properties, but got an object with {} properties instead.", fields.len()),
        )
        .with_code("object_above_max_properties"));
    }
    for (key, value) in &fields {
        let path = format!("metadata.{}", key.as_str());
        let len = key.chars().count();
        if len > 64 {
            return Err(ApiError::invalid_param(
                "metadata",
                format!("Invalid 'metadata': key too long. Expected a key with maximum length 64, but got a key with length {len} instead."),
            )
            .with_code("string_above_max_length"));
        }
        if params::Kind::of(value) != params::Kind::String {
            return Err(params::wrong_type(&path, "a string", value));
        }
        params::short_string(&path, value, 512)?;
    }
    Ok(())
}

/// Names the tool and field a `tools` array went wrong at, once serde's parse of it has failed.
fn tools_error(raw: &RawValue) -> Option<ApiError> {
    use params::Kind;
    let items = match params::array("tools", raw) {
        Ok(items) => items?,
        Err(e) => return Some(e),
    };
    for (i, item) in items.iter().enumerate() {
        let path = format!("tools[{i}]");
        if Kind::of(item) != Kind::Object {
            return Some(params::wrong_type(&path, "an object", item));
        }
        let shape = params::fields(
            &path,
            item,
            &["type", "function"],
            |path, field, v| match field {
                "type" => required_one_of(path, v, &["function"]),
                "function" => params::fields(path, v, &["name"], |path, field, v| match field {
                    "name" => required_string(path, v),
                    "description" => params::string(path, v).map(drop),
                    "parameters" => params::object(path, v).map(drop),
                    "strict" => params::boolean(path, v).map(drop),
                    _ => Ok(()),
                }),
                _ => Ok(()),
            },
        );
        if let Err(e) = shape {
            return Some(e);
        }
    }
    None
}

/// Names the message and field a `messages` array went wrong at, in OpenAI's words, once serde's
/// parse of it has failed (a valid request pays nothing for it). `None`: serde's message stands.
fn messages_error(raw: &RawValue) -> Option<ApiError> {
    use params::Kind;
    const ROLES: [&str; 6] = [
        "system",
        "assistant",
        "user",
        "function",
        "tool",
        "developer",
    ];
    let items = match params::array("messages", raw) {
        Ok(Some(items)) => items,
        Ok(None) => return Some(params::wrong_type("messages", "an array", raw)),
        Err(e) => return Some(e),
    };
    for (i, item) in items.iter().enumerate() {
        let path = format!("messages[{i}]");
        if Kind::of(item) != Kind::Object {
            return Some(params::wrong_type(&path, "an object", item));
        }
        let shape = params::fields(&path, item, &["role"], |path, field, v| match field {
            "role" => required_one_of(path, v, &ROLES),
            "content" => match Kind::of(v) {
                Kind::Null | Kind::String | Kind::Array => Ok(()),
                _ => Err(params::wrong_type(
                    path,
                    "one of a string or an array of content parts",
                    v,
                )),
            },
            "name" | "tool_call_id" => params::string(path, v).map(drop),
            "tool_calls" => params::array(path, v).map(drop),
            _ => Ok(()),
        });
        if let Err(e) = shape {
            return Some(e);
        }
        // The message's own fields are right: serde's complaint is deeper in it.
        if let Err(e) = serde_json::from_str::<Message>(item.get()) {
            let detail = e.to_string();
            let detail = detail
                .rsplit_once(" at line ")
                .map_or(detail.as_str(), |(m, _)| m);
            return Some(
                ApiError::invalid_param(&path, format!("Invalid value for '{path}': {detail}"))
                    .with_code("invalid_value"),
            );
        }
    }
    None
}

/// A struct written as a JSON object: serde's derive also takes an array of its fields in order,
/// which OpenAI's API does not (`"messages": [["user", "hi"]]` is not a message).
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = ObjectOnly<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(ObjectOnly)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// An array of objects (see [`ObjectOnly`]).
struct Objects<T>(Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Objects<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Vec::<ObjectOnly<T>>::deserialize(d)?;
        Ok(Objects(items.into_iter().map(|o| o.0).collect()))
    }
}

fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    ObjectOnly::deserialize(d).map(|o| o.0)
}

fn opt_objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    Ok(Option::<Objects<T>>::deserialize(d)?.map(|o| o.0))
}

/// `stop`: a string or an array of strings.
struct Stop<'a>(Vec<Text<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for Stop<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Stop<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Stop(vec![Text::from(v)]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Stop(vec![Text(v.to_string().into())]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<Text<'de>>()? {
                    out.push(s);
                }
                Ok(Stop(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Content<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Content<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Content::None)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Content::None)
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Content::Text(Text::from(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Content::Text(Text(v.to_string().into())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut parts = Vec::new();
                while let Some(p) = seq.next_element::<Part<'de>>()? {
                    parts.push(p);
                }
                Ok(Content::Parts(parts))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Part<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct RawPart<'a> {
            #[serde(rename = "type", borrow)]
            kind: Text<'a>,
            #[serde(default, borrow)]
            text: Option<Text<'a>>,
            #[serde(default, borrow)]
            image_url: Option<ImageUrl<'a>>,
            #[serde(default, borrow)]
            file: Option<FileIn<'a>>,
        }
        #[derive(Deserialize)]
        struct FileIn<'a> {
            #[serde(default, borrow)]
            file_data: Option<Text<'a>>,
            #[serde(default, borrow)]
            file_url: Option<Text<'a>>,
            #[serde(default, borrow)]
            file_id: Option<Text<'a>>,
            #[serde(default, borrow)]
            filename: Option<Text<'a>>,
            #[serde(default, borrow)]
            format: Option<Text<'a>>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum ImageUrl<'a> {
            Url(#[serde(borrow)] Text<'a>),
            Object {
                #[serde(borrow)]
                url: Text<'a>,
                #[serde(default, borrow)]
                detail: Option<Text<'a>>,
            },
        }
        let p: RawPart = object(d)?;
        match p.kind.as_str() {
            "text" => match p.text {
                Some(t) => Ok(Part::Text(t)),
                None => Err(de::Error::missing_field("text")),
            },
            "image_url" => match p.image_url {
                Some(ImageUrl::Url(url)) => Ok(Part::Image { url, detail: None }),
                Some(ImageUrl::Object { url, detail }) => Ok(Part::Image { url, detail }),
                None => Err(de::Error::missing_field("image_url")),
            },
            "file" => match p.file {
                Some(f) => Ok(Part::File {
                    data: f.file_data,
                    url: f.file_url,
                    id: f.file_id,
                    filename: f.filename,
                    format: f.format,
                }),
                None => Err(de::Error::missing_field("file")),
            },
            _ => Ok(Part::Other(p.kind)),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for ToolChoice<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<'a> {
            Mode(#[serde(borrow)] Text<'a>),
            Named {
                #[serde(rename = "type", borrow)]
                kind: Text<'a>,
                #[serde(default, borrow)]
                function: Option<Named<'a>>,
            },
        }
        #[derive(Deserialize)]
        struct Named<'a> {
            #[serde(borrow)]
            name: Text<'a>,
        }
        match Raw::deserialize(d)? {
            Raw::Mode(m) => match m.as_str() {
                "none" => Ok(ToolChoice::None),
                "auto" => Ok(ToolChoice::Auto),
                "required" => Ok(ToolChoice::Required),
                other => Err(de::Error::custom(format!(
                    "'{other}' is not one of 'none', 'auto', 'required'"
                ))),
            },
            Raw::Named { kind, function } => match (kind.as_str(), function) {
                ("function", Some(f)) => Ok(ToolChoice::Function(f.name)),
                ("none", _) => Ok(ToolChoice::None),
                ("auto", _) => Ok(ToolChoice::Auto),
                ("required", _) => Ok(ToolChoice::Required),
                _ => Err(de::Error::custom(
                    "expected {\"type\":\"function\",\"function\":{\"name\":...}}",
                )),
            },
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for ResponseFormat<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw<'a> {
            #[serde(rename = "type", borrow)]
            kind: Text<'a>,
            #[serde(default, borrow)]
            json_schema: Option<Schema<'a>>,
        }
        #[derive(Deserialize)]
        struct Schema<'a> {
            #[serde(default, borrow)]
            name: Option<Text<'a>>,
            #[serde(default, borrow)]
            schema: Option<&'a RawValue>,
            #[serde(default)]
            strict: Option<bool>,
        }
        let r: Raw = object(d)?;
        match r.kind.as_str() {
            "text" => Ok(ResponseFormat::Text),
            "json_object" => Ok(ResponseFormat::JsonObject),
            "json_schema" => match r.json_schema {
                Some(s) => Ok(ResponseFormat::JsonSchema {
                    name: s.name,
                    schema: s.schema,
                    strict: s.strict,
                }),
                None => Err(de::Error::missing_field("json_schema")),
            },
            other => Err(de::Error::custom(format!(
                "'{other}' is not one of 'text', 'json_object', 'json_schema'"
            ))),
        }
    }
}

/// A `data:` URL split into media type and base64 payload.
pub struct DataUrl<'a> {
    pub media_type: &'a str,
    pub data: &'a str,
}

/// Parses `data:image/png;base64,....`; `None` for anything else (an http(s) URL).
pub fn parse_data_url(url: &str) -> Option<DataUrl<'_>> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some(DataUrl { media_type, data })
}

/// Guesses an image's media type from its URL's extension, for providers that need one.
pub fn media_type_from_url(url: &str) -> &'static str {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    if path.ends_with(".png") {
        "image/png"
    } else if path.ends_with(".gif") {
        "image/gif"
    } else if path.ends_with(".webp") {
        "image/webp"
    } else if path.ends_with(".pdf") {
        "application/pdf"
    } else {
        "image/jpeg"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prompt is measured on its text: message contents and names, tool calls and tool
    /// definitions, and fields that may carry prompt; never the envelope around them.
    #[test]
    fn measures_the_prompt_text_not_the_envelope() {
        let req = parse_chat(br#"{"model":"gpt","messages":[{"role":"user","content":"one two three four five six"}],"max_tokens":7,"temperature":0.5,"user":"someone-long-name"}"#).unwrap();
        let p = req.prompt_text();
        assert_eq!((p.bytes, p.messages, p.images, p.opaque), (27, 1, 0, false));

        // Escapes count as the text they stand for.
        let req =
            parse_chat(br#"{"model":"gpt","messages":[{"role":"user","content":"a\"b\u00e9"}]}"#)
                .unwrap();
        assert_eq!(req.prompt_text().bytes, 5);

        let req = parse_chat(br#"{
            "model": "gpt",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "name": "ann", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"}
            ],
            "tools": [{"type": "function", "function": {"name": "look", "description": "Looks.", "parameters": {"type":"object"}}}],
            "response_format": {"type":"json_object"},
            "functions": [{"name":"f"}],
            "seed": 7, "metadata": {"k": "v"}
        }"#).unwrap();
        let p = req.prompt_text();
        let text = "be brief".len()
            + "ann".len()
            + "what is this?".len()
            + "look".len()
            + r#"{"x":1}"#.len()
            + "call_1".len()
            + "a cat".len()
            + "look".len()
            + "Looks.".len()
            + r#"{"type":"object"}"#.len()
            + r#"{"type":"json_object"}"#.len()
            + r#"[{"name":"f"}]"#.len();
        assert_eq!(
            (p.bytes, p.messages, p.images, p.opaque),
            (text as u64, 4, 2, false)
        );

        // Audio's tokens are not in its text.
        let req = parse_chat(br#"{"model":"gpt","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}}]}]}"#).unwrap();
        assert!(req.prompt_text().opaque);
    }

    /// The gateway's cap lowers the client's, or stands alone.
    #[test]
    fn the_gateway_cap_lowers_the_output_cap() {
        let mut req = parse_chat(
            br#"{"model":"gpt","messages":[{"role":"user","content":"x"}],"max_tokens":50}"#,
        )
        .unwrap();
        assert_eq!(req.max_output_tokens(), Some(50));
        req.output_cap = Some(20);
        assert_eq!(req.max_output_tokens(), Some(20));
        req.output_cap = Some(80);
        assert_eq!(req.max_output_tokens(), Some(50));
        let mut req =
            parse_chat(br#"{"model":"gpt","messages":[{"role":"user","content":"x"}]}"#).unwrap();
        assert_eq!(req.max_output_tokens(), None);
        req.output_cap = Some(20);
        assert_eq!(req.max_output_tokens(), Some(20));
    }

    #[test]
    fn parses_a_full_request() {
        let body = br#"{
            "model": "claude",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR", "detail": "low"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"x\":1}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"}
            ],
            "tools": [{"type": "function", "function": {"name": "look", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "look"}},
            "stop": "END", "temperature": 0.5, "max_tokens": 100, "stream": true,
            "stream_options": {"include_usage": true},
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}, "strict": true}},
            "logit_bias": {"1": 2}
        }"#;
        let r = parse_chat(body).unwrap();
        assert_eq!(r.model.as_str(), "claude");
        assert_eq!(r.messages.len(), 4);
        assert!(r.stream && r.include_usage);
        assert_eq!(r.stop.len(), 1);
        assert_eq!(r.tool_choice, Some(ToolChoice::Function("look".into())));
        assert!(matches!(
            r.response_format,
            Some(ResponseFormat::JsonSchema { .. })
        ));
        assert!(r.has("logit_bias"));
        match &r.messages[1].content {
            Content::Parts(p) => assert!(matches!(&p[1], Part::Image { .. })),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            r.messages[2].tool_calls.as_ref().unwrap()[0]
                .function
                .arguments
                .as_str(),
            "{\"x\":1}"
        );
    }

    #[test]
    fn rejects_bad_requests_with_named_params() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"messages":[{"role":"user","content":"hi"}]}"#, "model"),
            (br#"{"model":"m"}"#, "messages"),
            (br#"{"model":"m","messages":[]}"#, "messages"),
            (br#"{"model":5,"messages":[{"role":"user","content":"hi"}]}"#, "model"),
            (br#"{"model":"m","messages":"hi"}"#, "messages"),
            (br#"{"model":"m","messages":[{"role":"robot","content":"hi"}]}"#, "messages[0].role"),
            (br#"{"model":"m","messages":[["user","hi"]]}"#, "messages[0]"),
            (br#"{"model":"m","messages":[{"content":"hi"}]}"#, "messages[0].role"),
            (br#"{"model":"m","messages":[{"role":"user","content":5}]}"#, "messages[0].content"),
            (br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text"}]}]}"#, "messages[0]"),
            (br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}"#, "temperature"),
            (br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":3}"#, "temperature"),
            (br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":0}"#, "max_tokens"),
            (br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":"yes"}"#, "stream"),
            (br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tool_choice":"sometimes"}"#, "tool_choice"),
            (br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tool_choice":{"type":"function","function":{"name":"x"}}}"#, "tool_choice"),
        ];
        for (body, param) in cases {
            let e = parse_chat(body).unwrap_err();
            assert_eq!(e.status, 400);
            assert_eq!(
                e.param.as_deref(),
                Some(*param),
                "{}: {}",
                String::from_utf8_lossy(body),
                e.message
            );
        }
    }

    #[test]
    fn nulls_are_absent() {
        let r = parse_chat(br#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":null,"stop":null,"tools":null}"#).unwrap();
        assert!(r.temperature.is_none() && r.stop.is_empty() && r.tools.is_empty());
        assert!(!r.has("temperature"));
    }

    #[test]
    fn data_urls() {
        let d = parse_data_url("data:image/jpeg;base64,AAAA").unwrap();
        assert_eq!((d.media_type, d.data), ("image/jpeg", "AAAA"));
        assert!(parse_data_url("https://x/y.png").is_none());
        assert_eq!(media_type_from_url("https://x/y.PNG?sig=1"), "image/png");
    }
}
