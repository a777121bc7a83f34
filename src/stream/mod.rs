//! Incremental decoders for the wire formats providers stream in.

pub mod eventstream;
pub mod sse;
