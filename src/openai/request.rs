//! The OpenAI Chat Completions request, parsed once from the body and borrowed from it.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;

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
    #[serde(default, borrow)]
    pub tool_calls: Option<Vec<ToolCall<'a>>>,
    #[serde(default, borrow)]
    pub tool_call_id: Option<Text<'a>>,
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
    /// A part type the gateway does not translate (audio, file, ...), kept by name for errors.
    Other(Text<'a>),
}

#[derive(Debug, Deserialize)]
pub struct ToolCall<'a> {
    #[serde(borrow)]
    pub id: Text<'a>,
    #[serde(rename = "type", default, borrow)]
    pub kind: Option<Text<'a>>,
    #[serde(borrow)]
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
    #[serde(borrow)]
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

    /// The output cap the client asked for, under either name.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
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

/// Parses and validates a chat completions body.
pub fn parse_chat(body: &[u8]) -> Result<ChatRequest<'_>, ApiError> {
    let fields = json::split_object(body).map_err(json::body_error)?;
    let mut req = ChatRequest::default();
    let mut model = None;
    let mut messages = None;
    for (key, raw) in &fields {
        let raw: &RawValue = raw;
        match key.as_str() {
            "model" => model = Some(parse_field::<Text>("model", raw, "a string")?),
            "messages" => {
                messages = Some(parse_field::<Vec<Message>>("messages", raw, "an array")?)
            }
            "stream" => {
                req.stream =
                    parse_field::<Option<bool>>("stream", raw, "a boolean")?.unwrap_or(false)
            }
            "stream_options" => {
                #[derive(Deserialize)]
                struct StreamOptions {
                    #[serde(default)]
                    include_usage: Option<bool>,
                }
                let o = parse_field::<Option<StreamOptions>>("stream_options", raw, "an object")?;
                req.include_usage = o.and_then(|o| o.include_usage).unwrap_or(false);
            }
            "temperature" => req.temperature = number_in("temperature", raw, 0.0, 2.0)?,
            "top_p" => req.top_p = number_in("top_p", raw, 0.0, 1.0)?,
            "frequency_penalty" => {
                req.frequency_penalty = number_in("frequency_penalty", raw, -2.0, 2.0)?
            }
            "presence_penalty" => {
                req.presence_penalty = number_in("presence_penalty", raw, -2.0, 2.0)?
            }
            "max_tokens" => req.max_tokens = positive("max_tokens", raw)?,
            "max_completion_tokens" => {
                req.max_completion_tokens = positive("max_completion_tokens", raw)?
            }
            "n" => req.n = positive("n", raw)?,
            "seed" => req.seed = parse_field("seed", raw, "an integer")?,
            "user" => req.user = parse_field("user", raw, "a string")?,
            "stop" => {
                req.stop =
                    parse_field::<Option<Stop>>("stop", raw, "a string or an array of strings")?
                        .map(|s| s.0)
                        .unwrap_or_default()
            }
            "tools" => {
                req.tools =
                    parse_field::<Option<Vec<Tool>>>("tools", raw, "an array")?.unwrap_or_default()
            }
            "tool_choice" => {
                req.tool_choice =
                    parse_field::<Option<ToolChoice>>("tool_choice", raw, "a string or an object")?
            }
            "parallel_tool_calls" => {
                req.parallel_tool_calls = parse_field("parallel_tool_calls", raw, "a boolean")?
            }
            "response_format" => {
                req.response_format =
                    parse_field::<Option<ResponseFormat>>("response_format", raw, "an object")?
            }
            _ => {}
        }
    }
    req.model = match model {
        Some(m) if !m.is_empty() => m,
        _ => {
            return Err(ApiError::invalid_param(
                "model",
                "you must provide a model parameter",
            ))
        }
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
    req.fields = fields;
    Ok(req)
}

fn number_in(name: &str, raw: &RawValue, min: f64, max: f64) -> Result<Option<f64>, ApiError> {
    let v: Option<f64> = parse_field(name, raw, "a number")?;
    match v {
        Some(x) if !(min..=max).contains(&x) => Err(ApiError::invalid_param(
            name,
            format!(
                "Invalid '{name}': {x} is out of range. Expected a value between {min} and {max}."
            ),
        )
        .with_code("invalid_value")),
        other => Ok(other),
    }
}

fn positive(name: &str, raw: &RawValue) -> Result<Option<u64>, ApiError> {
    let v: Option<i64> = parse_field(name, raw, "an integer")?;
    match v {
        Some(x) if x < 1 => Err(ApiError::invalid_param(
            name,
            format!("Invalid '{name}': integer below minimum value. Expected a value >= 1, but got {x} instead."),
        )
        .with_code("integer_below_min_value")),
        Some(x) => Ok(Some(x.unsigned_abs())),
        None => Ok(None),
    }
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
        let p = RawPart::deserialize(d)?;
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
        let r = Raw::deserialize(d)?;
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
            (br#"{"model":"m","messages":[{"role":"robot","content":"hi"}]}"#, "messages"),
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
