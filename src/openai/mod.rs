//! The OpenAI API as clients speak it: requests parsed from bodies, responses and stream chunks
//! that every provider translator produces.

pub mod embeddings;
pub mod params;
pub mod request;
pub mod response;
pub mod stream;

pub use embeddings::{parse_embeddings, EmbeddingsRequest};
pub use request::{parse_chat, ChatRequest};
pub use response::{
    usage_object, Choice, Completion, Count, FinishReason, ResponseCtx, ToolCallOut, Usage,
    UsageCheck,
};
pub use stream::ChunkWriter;
