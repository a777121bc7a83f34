//! Anthropic's Messages API as clients speak it (`POST /v1/messages`): answers, stream events and
//! errors rendered in its shape from what the providers' translators produce.

pub mod count;
pub mod error;
pub mod request;
pub mod response;
pub mod stream;
#[cfg(test)]
pub mod testing;

pub use error::{error_json, error_type};
pub use request::{parse, read_native, MessagesRequest, NativeRequest};
pub use response::message_json;
pub use stream::EventWriter;

use serde::Serialize;

use crate::openai::{FinishReason, Usage};

/// `stop_reason` for an OpenAI finish reason.
pub fn stop_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
    }
}

/// Token usage in Anthropic's terms: `input_tokens` are those neither read from nor written to
/// the prompt cache (OpenAI's `prompt_tokens` include both).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UsageOut {
    pub input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub output_tokens: u64,
}

impl From<&Usage> for UsageOut {
    fn from(u: &Usage) -> Self {
        UsageOut {
            input_tokens: u
                .prompt_tokens
                .saturating_sub(u.cached_tokens)
                .saturating_sub(u.cache_creation_tokens),
            cache_creation_input_tokens: u.cache_creation_tokens,
            cache_read_input_tokens: u.cached_tokens,
            output_tokens: u.completion_tokens,
        }
    }
}
