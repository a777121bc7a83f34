//! OpenAI's Responses API as clients speak it (`POST /v1/responses`: Codex, the Agents SDK,
//! `client.responses`): a request read into the chat completions form every provider translator
//! takes ([`request`]), and answers rendered back as a `response` object ([`response`]) or its
//! typed event stream ([`stream`]). Errors are OpenAI's, as for chat completions.
//!
//! OpenAI and Azure deployments serve this API themselves: their requests pass through (model
//! replaced) and their answers are relayed; this module is for every other provider.

pub mod kept;
pub mod request;
pub mod response;
pub mod stream;

pub use request::{parse, ResponsesRequest};
pub use response::response_json;
pub use stream::EventWriter;

use serde::Serialize;

use crate::openai::{FinishReason, Usage};

/// `status` of a response that ended for `reason`, and its `incomplete_details.reason`.
pub fn status(reason: Option<FinishReason>) -> (&'static str, Option<&'static str>) {
    match reason {
        Some(FinishReason::Length) => ("incomplete", Some("max_output_tokens")),
        Some(FinishReason::ContentFilter) => ("incomplete", Some("content_filter")),
        _ => ("completed", None),
    }
}

/// Token usage in the Responses API's terms (`input_tokens` include cached ones, as OpenAI's
/// `prompt_tokens` do).
#[derive(Debug, Serialize)]
pub struct UsageOut {
    pub input_tokens: u64,
    pub input_tokens_details: InputDetails,
    pub output_tokens: u64,
    pub output_tokens_details: OutputDetails,
    pub total_tokens: u64,
}

#[derive(Debug, Serialize)]
pub struct InputDetails {
    pub cached_tokens: u64,
}

#[derive(Debug, Serialize)]
pub struct OutputDetails {
    pub reasoning_tokens: u64,
}

impl From<&Usage> for UsageOut {
    fn from(u: &Usage) -> Self {
        UsageOut {
            input_tokens: u.prompt_tokens,
            input_tokens_details: InputDetails {
                cached_tokens: u.cached_tokens,
            },
            output_tokens: u.completion_tokens,
            output_tokens_details: OutputDetails {
                reasoning_tokens: u.reasoning_tokens,
            },
            total_tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
        }
    }
}

/// An output item's id: its kind's prefix, the response's id without its own, and its index.
pub(crate) fn item_id(response_id: &str, prefix: &str, index: usize) -> String {
    let tail = response_id.strip_prefix("resp_").unwrap_or(response_id);
    format!("{prefix}_{tail}{index}")
}

/// A tool call's `call_id`: the provider's id, or one made for it when it gave none.
pub(crate) fn call_id(id: &str, response_id: &str, index: usize) -> String {
    if id.is_empty() {
        item_id(response_id, "call", index)
    } else {
        id.to_string()
    }
}

/// The `response` object's fields that echo what was asked; Tollgate answers with the API's
/// defaults (what a client that sent none of them sees from OpenAI).
#[derive(Serialize)]
pub(crate) struct Echo {
    background: bool,
    instructions: Option<()>,
    max_output_tokens: Option<()>,
    metadata: Empty,
    parallel_tool_calls: bool,
    previous_response_id: Option<()>,
    reasoning: ReasoningEcho,
    store: bool,
    temperature: Option<()>,
    text: TextEcho,
    tool_choice: &'static str,
    tools: [(); 0],
    top_p: Option<()>,
    truncation: &'static str,
    user: Option<()>,
}

#[derive(Serialize)]
pub(crate) struct Empty {}

#[derive(Serialize)]
pub(crate) struct ReasoningEcho {
    effort: Option<()>,
    summary: Option<()>,
}

#[derive(Serialize)]
pub(crate) struct TextEcho {
    format: FormatEcho,
}

#[derive(Serialize)]
pub(crate) struct FormatEcho {
    #[serde(rename = "type")]
    kind: &'static str,
}

pub(crate) const ECHO: Echo = Echo {
    background: false,
    instructions: None,
    max_output_tokens: None,
    metadata: Empty {},
    parallel_tool_calls: true,
    previous_response_id: None,
    reasoning: ReasoningEcho {
        effort: None,
        summary: None,
    },
    store: false,
    temperature: None,
    text: TextEcho {
        format: FormatEcho { kind: "text" },
    },
    tool_choice: "auto",
    tools: [],
    top_p: None,
    truncation: "disabled",
    user: None,
};
