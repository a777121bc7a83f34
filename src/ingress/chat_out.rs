//! The chat completions body a client API's request is rewritten into, for the providers'
//! translators to read (`openai::parse_chat`): one writer for every client API (`anthropic`,
//! `responses`), borrowing what it can from the client's body. What chat completions has no field
//! for travels in the extensions LiteLLM's OpenAI format uses (`top_k`, `thinking`,
//! `thinking_blocks`, `cache_control`).

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::json::Text;

#[derive(Serialize)]
pub(crate) struct ChatOut<'a> {
    pub model: &'a str,
    pub messages: Vec<ChatMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoiceOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormatOut<'a>>,
    #[serde(flatten)]
    pub other: Other<'a>,
}

impl<'a> ChatOut<'a> {
    /// Nothing asked for yet; the caller fills it in and sets `model` last.
    pub fn empty() -> Self {
        ChatOut {
            model: "",
            messages: Vec::new(),
            max_tokens: None,
            stream: false,
            stream_options: None,
            temperature: None,
            top_p: None,
            top_k: None,
            stop: Vec::new(),
            user: None,
            tools: Vec::new(),
            tool_choice: None,
            parallel_tool_calls: None,
            thinking: None,
            reasoning_effort: None,
            response_format: None,
            other: Other(Vec::new()),
        }
    }
}

/// Top-level fields kept under their own names.
pub(crate) struct Other<'a>(pub Vec<(&'a str, &'a RawValue)>);

impl Serialize for Other<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
pub(crate) struct StreamOptions {
    pub include_usage: bool,
}

#[derive(Serialize)]
pub(crate) struct ChatMessage<'a> {
    pub role: &'static str,
    pub content: ContentOut<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub thinking_blocks: Vec<ThinkingOut<'a>>,
    /// LiteLLM's message-level `cache_control` (a Messages `tool_result` block's, on the `tool`
    /// message it becomes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<&'a RawValue>,
}

impl<'a> ChatMessage<'a> {
    /// A message of `role` with `content` and nothing else.
    pub fn plain(role: &'static str, content: ContentOut<'a>) -> Self {
        ChatMessage {
            role,
            content,
            tool_calls: Vec::new(),
            tool_call_id: None,
            thinking_blocks: Vec::new(),
            cache_control: None,
        }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum ContentOut<'a> {
    Null(Option<()>),
    Text(Text<'a>),
    Parts(Vec<PartOut<'a>>),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum PartOut<'a> {
    Text {
        text: Text<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a RawValue>,
    },
    ImageUrl {
        image_url: ImageUrl<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a RawValue>,
    },
    File {
        file: FileOut<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<&'a RawValue>,
    },
}

#[derive(Serialize)]
pub(crate) struct ImageUrl<'a> {
    pub url: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Text<'a>>,
}

#[derive(Serialize)]
pub(crate) struct FileOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_data: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_url: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<Text<'a>>,
}

#[derive(Serialize)]
pub(crate) struct ToolCallOut<'a> {
    pub id: Text<'a>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionOut<'a>,
}

#[derive(Serialize)]
pub(crate) struct FunctionOut<'a> {
    pub name: Text<'a>,
    /// A JSON text, as chat completions carries arguments.
    pub arguments: Text<'a>,
}

/// LiteLLM's `thinking_blocks` entry: reasoning with its signature, or redacted reasoning.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ThinkingOut<'a> {
    Thinking {
        thinking: Text<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        signature: Option<Text<'a>>,
    },
    RedactedThinking {
        data: Text<'a>,
    },
}

#[derive(Serialize)]
pub(crate) struct ToolOut<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionDefOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<&'a RawValue>,
}

#[derive(Serialize)]
pub(crate) struct FunctionDefOut<'a> {
    pub name: Text<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum ToolChoiceOut<'a> {
    Mode(&'static str),
    Function {
        #[serde(rename = "type")]
        kind: &'static str,
        function: NameOut<'a>,
    },
}

impl<'a> ToolChoiceOut<'a> {
    pub fn function(name: Text<'a>) -> Self {
        ToolChoiceOut::Function {
            kind: "function",
            function: NameOut { name },
        }
    }
}

#[derive(Serialize)]
pub(crate) struct NameOut<'a> {
    pub name: Text<'a>,
}

#[derive(Serialize)]
pub(crate) struct ResponseFormatOut<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<JsonSchemaOut<'a>>,
}

#[derive(Serialize)]
pub(crate) struct JsonSchemaOut<'a> {
    pub name: Text<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<Text<'a>>,
    pub schema: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}
