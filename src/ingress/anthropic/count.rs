//! `POST /v1/messages/count_tokens` for backends other than Anthropic's, which has its own
//! exact endpoint: an estimate, from the request's text.
//!
//! About four characters of text a token (the rule of thumb for English with the tokenizers of
//! 2024-2026 models), plus four tokens a message for its framing, a fixed 1,600 for an image
//! (Anthropic's upper bound for one of about 1.15 megapixels) and a PDF's decoded bytes as text.
//! Tool definitions and calls count by the length of their JSON. It is not exact; it is never
//! a 404.

use serde_json::Value;

use crate::error::ApiError;

const CHARS_PER_TOKEN: u64 = 4;
const PER_MESSAGE: u64 = 4;
const PER_IMAGE: u64 = 1_600;

fn chars(s: &str) -> u64 {
    s.chars().count() as u64
}

/// Characters of text in a content value (a string or a list of blocks), and images seen.
fn content(v: &Value, text: &mut u64, images: &mut u64) {
    match v {
        Value::String(s) => *text += chars(s),
        Value::Array(blocks) => {
            for b in blocks {
                block(b, text, images);
            }
        }
        _ => {}
    }
}

fn block(b: &Value, text: &mut u64, images: &mut u64) {
    let field = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("");
    match field("type") {
        "text" => *text += chars(field("text")),
        "thinking" => *text += chars(field("thinking")),
        "image" => *images += 1,
        "document" => {
            let src = b.get("source");
            let data = src
                .and_then(|s| s.get("data"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let base64 = src
                .and_then(|s| s.get("type"))
                .and_then(Value::as_str)
                .is_some_and(|t| t == "base64");
            *text += if base64 {
                (data.len() as u64).saturating_mul(3) / 4
            } else {
                chars(data)
            };
        }
        "tool_use" => {
            *text += chars(field("name"));
            *text += b.get("input").map_or(0, |i| i.to_string().len() as u64);
        }
        "tool_result" => {
            if let Some(c) = b.get("content") {
                content(c, text, images);
            }
        }
        _ => {}
    }
}

/// The estimated input tokens of a count_tokens request's body.
pub fn estimate(body: &[u8]) -> Result<u64, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| {
        ApiError::invalid_request("There was an issue with the JSON body of your request.")
    })?;
    let Some(messages) = v.get("messages").and_then(Value::as_array) else {
        return Err(ApiError::invalid_param(
            "messages",
            "messages: Field required",
        ));
    };
    let (mut text, mut images) = (0u64, 0u64);
    if let Some(system) = v.get("system") {
        content(system, &mut text, &mut images);
    }
    for m in messages {
        if let Some(c) = m.get("content") {
            content(c, &mut text, &mut images);
        }
    }
    for t in v
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        text += t.to_string().len() as u64;
    }
    Ok(text.div_ceil(CHARS_PER_TOKEN) + PER_MESSAGE * messages.len() as u64 + PER_IMAGE * images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_text_images_tools_and_messages() {
        let body = serde_json::json!({
            "model": "m",
            "system": "You are terse.",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "abcdefgh"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                ]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]},
            ],
        });
        // 14 + 8 + 1 + 7 ({"a":1}) + 2 = 32 chars: 8 tokens; 3 messages: 12; one image: 1,600.
        assert_eq!(
            estimate(body.to_string().as_bytes()).unwrap(),
            8 + 12 + 1_600
        );
        assert_eq!(estimate(b"{}").unwrap_err().status, 400);
        assert_eq!(estimate(b"nope").unwrap_err().status, 400);
    }
}
