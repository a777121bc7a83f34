//! The OpenAI Embeddings request and response.

use base64::Engine;
use serde::Serialize;
use serde_json::value::RawValue;

use super::params;
use super::response::{ResponseCtx, Usage};
use crate::error::ApiError;
use crate::json::{self, parse_field, Fields, Text};

#[derive(Debug, Default)]
pub struct EmbeddingsRequest<'a> {
    pub fields: Fields<'a>,
    pub model: Text<'a>,
    /// Text inputs; `None` when the client sent token arrays, which only OpenAI-shaped upstreams take.
    pub texts: Option<Vec<Text<'a>>>,
    pub dimensions: Option<u64>,
    /// `float` (default) or `base64`; the official OpenAI SDKs ask for `base64`.
    pub base64: bool,
}

pub fn parse_embeddings(body: &[u8]) -> Result<EmbeddingsRequest<'_>, ApiError> {
    parse_embeddings_known(body, json::Known::Nothing)
}

/// [`parse_embeddings`] for a body known to meet part of the gateway's JSON rules already.
pub fn parse_embeddings_known(
    body: &[u8],
    known: json::Known,
) -> Result<EmbeddingsRequest<'_>, ApiError> {
    let fields = json::split_object(body).map_err(json::body_error)?;
    let mut req = EmbeddingsRequest::default();
    let mut model = None;
    let mut input: Option<&RawValue> = None;
    for (key, raw) in &fields {
        let raw: &RawValue = raw;
        match key.as_str() {
            "model" => model = Some(parse_field::<Text>("model", raw, "a string")?),
            "input" => input = Some(raw),
            "dimensions" => {
                req.dimensions =
                    params::integer("dimensions", raw, 1, i64::MAX)?.map(i64::unsigned_abs)
            }
            "encoding_format" => {
                let f = params::one_of("encoding_format", raw, &["float", "base64"])?;
                req.base64 = f.as_deref() == Some("base64");
            }
            "user" => drop(params::string("user", raw)?),
            _ => {}
        }
    }
    req.model = match model {
        Some(m) if !m.is_empty() => m,
        _ => return Err(ApiError::invalid_param(
            "model",
            "you must provide a model parameter (a non-empty string naming one of GET /v1/models)",
        )),
    };
    let input = match input {
        Some(i) if !json::is_null(i) => i,
        _ => {
            return Err(ApiError::invalid_param(
                "input",
                "Missing required parameter: 'input'.",
            ))
        }
    };
    let trimmed = input.get().trim_start();
    req.texts = if trimmed.starts_with('"') {
        Some(vec![parse_field::<Text>(
            "input",
            input,
            "a string or an array",
        )?])
    } else {
        parse_field::<Vec<Text>>("input", input, "an array").ok()
    };
    if req.texts.is_none() {
        // Token arrays: validate the shape so a typo is still a clear 400.
        const EXPECTED: &str =
            "a string, an array of strings, an array of integers or an array of integer arrays";
        if serde_json::from_str::<TokenInput>(input.get()).is_err() {
            return Err(match params::Kind::of(input) {
                params::Kind::Array => ApiError::invalid_param(
                    "input",
                    format!("Invalid value for 'input': expected {EXPECTED}."),
                )
                .with_code("invalid_value"),
                _ => params::wrong_type("input", EXPECTED, input),
            });
        }
    }
    if req.texts.as_ref().is_some_and(|t| t.is_empty()) {
        return Err(ApiError::invalid_param(
            "input",
            "Invalid 'input': empty array. Expected an array with minimum length 1, but got an empty array instead.",
        )
        .with_code("empty_array"));
    }
    json::check_body(body, known)?;
    req.fields = fields;
    Ok(req)
}

/// Only validated, never read: token inputs pass through to OpenAI-shaped upstreams as sent.
#[derive(serde::Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum TokenInput {
    Tokens(Vec<u64>),
    Batches(Vec<Vec<u64>>),
    Texts(Vec<String>),
}

#[derive(Serialize)]
struct ListOut<'a> {
    object: &'static str,
    data: Vec<EmbeddingOut<'a>>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct EmbeddingOut<'a> {
    object: &'static str,
    index: usize,
    embedding: Vector<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector<'a> {
    Floats(&'a RawValue),
    Base64(String),
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// Builds an OpenAI embeddings list from float vectors given as raw JSON arrays, encoding them
/// as base64 little-endian `f32` when the client asked for it.
pub fn embeddings_json(
    vectors: &[&RawValue],
    base64: bool,
    prompt_tokens: u64,
    ctx: &ResponseCtx,
) -> Result<Vec<u8>, ApiError> {
    let mut data = Vec::with_capacity(vectors.len());
    for (index, v) in vectors.iter().enumerate() {
        let embedding = if base64 {
            let floats: Vec<f32> = serde_json::from_str(v.get()).map_err(|e| {
                ApiError::bad_gateway(format!("provider returned an invalid embedding: {e}"))
            })?;
            let mut bytes = Vec::with_capacity(floats.len().saturating_mul(4));
            for f in floats {
                bytes.extend_from_slice(&f.to_le_bytes());
            }
            Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            Vector::Floats(v)
        };
        data.push(EmbeddingOut {
            object: "embedding",
            index,
            embedding,
        });
    }
    Ok(json::to_vec(&ListOut {
        object: "list",
        data,
        model: &ctx.model,
        usage: EmbeddingUsage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    }))
}

/// Usage of an embeddings call in the shared [`Usage`] terms.
pub fn embedding_usage(prompt_tokens: u64) -> Usage {
    Usage {
        prompt_tokens,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_inputs() {
        let r = parse_embeddings(br#"{"model":"e","input":"hello"}"#).unwrap();
        assert_eq!(r.texts.unwrap().len(), 1);
        let r = parse_embeddings(br#"{"model":"e","input":["a","b"],"encoding_format":"base64"}"#)
            .unwrap();
        assert_eq!(r.texts.unwrap().len(), 2);
        assert!(r.base64);
        let r = parse_embeddings(br#"{"model":"e","input":[1,2,3]}"#).unwrap();
        assert!(r.texts.is_none());
        assert_eq!(
            parse_embeddings(br#"{"model":"e"}"#)
                .unwrap_err()
                .param
                .as_deref(),
            Some("input")
        );
        assert_eq!(
            parse_embeddings(br#"{"model":"e","input":{}}"#)
                .unwrap_err()
                .param
                .as_deref(),
            Some("input")
        );
    }

    #[test]
    fn base64_vectors_decode_to_the_floats() {
        let v: Box<RawValue> = serde_json::from_str("[0.5,-1.25]").unwrap();
        let ctx = ResponseCtx {
            model: "e".into(),
            ..Default::default()
        };
        let out = embeddings_json(&[&v], true, 3, &ctx).unwrap();
        let j: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let b = base64::engine::general_purpose::STANDARD
            .decode(j["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        assert_eq!(f32::from_le_bytes(b[0..4].try_into().unwrap()), 0.5);
        assert_eq!(f32::from_le_bytes(b[4..8].try_into().unwrap()), -1.25);
        let out = embeddings_json(&[&v], false, 3, &ctx).unwrap();
        let j: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(j["data"][0]["embedding"][1], -1.25);
        assert_eq!(j["usage"]["total_tokens"], 3);
    }
}
