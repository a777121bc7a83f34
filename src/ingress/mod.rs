//! Client APIs, the ingress axis: what a client speaks, rendered back from what the providers'
//! translators produce. A provider's translator reports its answer as a [`Completion`] (whole
//! responses) or event by event to a [`ChatSink`] (streams); each client API renders them in its
//! own shape: [`crate::openai::ChunkWriter`] for chat completions, [`anthropic::EventWriter`] for
//! Anthropic's Messages API, [`responses::EventWriter`] for OpenAI's Responses API.

pub mod anthropic;
pub(crate) mod chat_out;
pub mod responses;

use crate::error::ApiError;
use crate::openai::{ChunkWriter, FinishReason, ResponseCtx, Usage};

/// The API a client speaks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum ClientApi {
    /// OpenAI's chat completions (`/v1/chat/completions`).
    #[default]
    Chat,
    /// Anthropic's Messages API (`/v1/messages`).
    Messages,
    /// OpenAI's Responses API (`/v1/responses`).
    Responses,
}

impl ClientApi {
    /// The API a gateway path speaks (`/v1/messages...` and `/messages...`: Anthropic's;
    /// `/v1/responses...` and `/responses...`: OpenAI's Responses API).
    pub fn of_path(path: &str) -> ClientApi {
        let bare = path.strip_prefix("/v1").unwrap_or(path);
        let under = |root: &str| {
            bare.strip_prefix(root)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
        };
        if under("/messages") {
            ClientApi::Messages
        } else if under("/responses") {
            ClientApi::Responses
        } else {
            ClientApi::Chat
        }
    }

    /// Its name in the attempt listener's routing header and in metrics.
    pub fn name(self) -> &'static str {
        match self {
            ClientApi::Chat => "chat",
            ClientApi::Messages => "messages",
            ClientApi::Responses => "responses",
        }
    }

    pub fn from_name(name: &str) -> ClientApi {
        match name {
            "messages" => ClientApi::Messages,
            "responses" => ClientApi::Responses,
            _ => ClientApi::Chat,
        }
    }
}

/// An error's body in the client's API (its status stays the error's).
pub fn error_body(err: &ApiError, api: ClientApi) -> Vec<u8> {
    match api {
        ClientApi::Chat | ClientApi::Responses => err.to_json(),
        ClientApi::Messages => anthropic::error_json(err),
    }
}

/// The renderer of a streamed answer in the client's API ([`ResponseCtx::api`]).
pub fn sink(ctx: ResponseCtx) -> Box<dyn ChatSink> {
    match ctx.api {
        ClientApi::Chat => Box::new(ChunkWriter::new(ctx)),
        ClientApi::Messages => Box::new(anthropic::EventWriter::new(ctx)),
        ClientApi::Responses => Box::new(responses::EventWriter::new(ctx)),
    }
}

/// What a stream translator reports of one response, in order, to the client API's renderer. Each
/// call appends the client's bytes for it to `out` (possibly none). `index` is the choice (always
/// 0 for APIs without `n`); a renderer keeps the stream well formed whatever order the provider's
/// events come in (a start before anything, one finish per choice, one end).
pub trait ChatSink {
    fn ctx(&self) -> &ResponseCtx;
    /// The stream ended normally (not by an error).
    fn completed(&self) -> bool;
    /// The stream ended, normally or by an error: nothing more is written.
    fn is_done(&self) -> bool;
    /// The response began (before any content).
    fn start(&mut self, out: &mut Vec<u8>, index: usize);
    fn text(&mut self, out: &mut Vec<u8>, index: usize, text: &str);
    /// Reasoning text ("thinking").
    fn reasoning(&mut self, out: &mut Vec<u8>, index: usize, text: &str);
    /// The signature that closes a block of reasoning (Anthropic's, Bedrock's for Claude): a
    /// client that sends the reasoning back in a later turn must send it with it. APIs with no
    /// place for it drop it.
    fn reasoning_signature(&mut self, _out: &mut Vec<u8>, _index: usize, _signature: &str) {}
    /// Reasoning the provider returns encrypted (Anthropic's `redacted_thinking`), to be sent back
    /// as it came.
    fn redacted_reasoning(&mut self, _out: &mut Vec<u8>, _index: usize, _data: &str) {}
    /// A tool call begins: its id and name, arguments to follow.
    fn tool_call_start(
        &mut self,
        out: &mut Vec<u8>,
        index: usize,
        tool_index: usize,
        id: &str,
        name: &str,
    );
    /// A fragment of a tool call's arguments (a JSON text, in pieces).
    fn tool_call_args(&mut self, out: &mut Vec<u8>, index: usize, tool_index: usize, args: &str);
    /// The choice is complete, for `reason`; once per choice.
    fn finish(&mut self, out: &mut Vec<u8>, index: usize, reason: FinishReason);
    fn has_finished(&self, index: usize) -> bool;
    /// The response's token usage, once known (in OpenAI's terms: cached and cache-writing
    /// tokens are part of `prompt_tokens`).
    fn usage(&mut self, out: &mut Vec<u8>, usage: &Usage);
    /// The provider's stream completed.
    fn done(&mut self, out: &mut Vec<u8>);
    /// The stream failed: one error event in the client's shape, then nothing more.
    fn error(&mut self, out: &mut Vec<u8>, err: &ApiError);
}
