//! PLACEHOLDER: replaced by the real anthropic translator.

use super::{Endpoint, Operation, Params, Provider, RequestOptions, StreamTranslator, Translated};
use crate::config::Deployment;
use crate::error::ApiError;
use crate::openai::{ChatRequest, ResponseCtx};

pub struct Placeholder;
pub static ANTHROPIC: Placeholder = Placeholder;

impl Provider for Placeholder {
    fn name(&self) -> &'static str {
        "anthropic"
    }
    fn endpoint(&self, _p: &Params) -> Result<Endpoint, String> {
        Err("not implemented yet".into())
    }
    fn path(&self, _d: &Deployment, _op: Operation, _stream: bool) -> String {
        String::new()
    }
    fn chat_request(
        &self,
        _r: &ChatRequest,
        _d: &Deployment,
        _o: RequestOptions,
    ) -> Result<Vec<u8>, ApiError> {
        Err(ApiError::server("not implemented"))
    }
    fn chat_response(&self, _b: &[u8], _c: &ResponseCtx) -> Result<Translated, ApiError> {
        Err(ApiError::server("not implemented"))
    }
    fn chat_stream(&self, ctx: ResponseCtx) -> Box<dyn StreamTranslator> {
        Box::new(super::openai::PassthroughStream::new(ctx))
    }
    fn error(&self, status: u16, _t: Option<&str>, body: &[u8]) -> ApiError {
        super::opaque_error("anthropic", status, body)
    }
}
