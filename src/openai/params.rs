//! Checks of request parameters against the types and ranges OpenAI documents, with OpenAI's
//! wording: `Invalid type for 'n': expected an integer, but got a string instead.`
//! (`invalid_type`), `Invalid 'n': integer above maximum value. Expected a value <= 128, but got
//! 1000 instead.` (`integer_above_max_value`), `Invalid value: 'x'. Supported values are: 'a' and
//! 'b'.` (`invalid_value`). `param` is the parameter's path (`metadata.owner`, `messages[0].role`).
//! JSON `null` is an absent optional parameter, as in OpenAI's API.

use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::json::{self, Fields, Text};

/// A raw value's JSON type, as OpenAI's messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Null,
    Boolean,
    Integer,
    Decimal,
    String,
    Array,
    Object,
}

impl Kind {
    pub fn of(raw: &RawValue) -> Kind {
        match json::type_name(raw) {
            "a string" => Kind::String,
            "an object" => Kind::Object,
            "an array" => Kind::Array,
            "a boolean" => Kind::Boolean,
            "null" => Kind::Null,
            "a decimal number" => Kind::Decimal,
            _ => Kind::Integer,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Boolean => "a boolean",
            Kind::Integer => "an integer",
            Kind::Decimal => "a decimal number",
            Kind::String => "a string",
            Kind::Array => "an array",
            Kind::Object => "an object",
        }
    }
}

/// `Invalid type for '{path}': expected {expected}, but got {the value's type} instead.`
pub fn wrong_type(path: &str, expected: &str, raw: &RawValue) -> ApiError {
    ApiError::invalid_param(
        path,
        format!(
            "Invalid type for '{path}': expected {expected}, but got {} instead.",
            Kind::of(raw).name()
        ),
    )
    .with_code("invalid_type")
}

/// `Invalid value: '{value}'. Supported values are: 'a', 'b', and 'c'.`
pub fn unsupported(path: &str, value: &str, allowed: &[&str]) -> ApiError {
    let quoted: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
    let list = match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
    };
    ApiError::invalid_param(
        path,
        format!("Invalid value: '{value}'. Supported values are: {list}."),
    )
    .with_code("invalid_value")
}

/// `Missing required parameter: '{path}'.`
pub fn missing(path: &str) -> ApiError {
    ApiError::invalid_param(path, format!("Missing required parameter: '{path}'."))
        .with_code("missing_required_parameter")
}

fn out_of_range(path: &str, what: &str, above: bool, bound: &str, got: &str) -> ApiError {
    let (side, op, code) = if above {
        ("above maximum", "<=", "above_max_value")
    } else {
        ("below minimum", ">=", "below_min_value")
    };
    ApiError::invalid_param(
        path,
        format!(
            "Invalid '{path}': {what} {side} value. Expected a value {op} {bound}, but got {got} instead."
        ),
    )
    .with_code(&format!("{what}_{code}"))
}

pub fn boolean(path: &str, raw: &RawValue) -> Result<Option<bool>, ApiError> {
    match raw.get().trim() {
        "null" => Ok(None),
        "true" => Ok(Some(true)),
        "false" => Ok(Some(false)),
        _ => Err(wrong_type(path, "a boolean", raw)),
    }
}

/// An integer in `min..=max` (written without a fraction or exponent, as OpenAI requires).
pub fn integer(path: &str, raw: &RawValue, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
    match Kind::of(raw) {
        Kind::Null => Ok(None),
        Kind::Integer => {
            let text = raw.get().trim();
            match text.parse::<i64>() {
                Ok(v) if v < min => {
                    Err(out_of_range(path, "integer", false, &min.to_string(), text))
                }
                Ok(v) if v > max => {
                    Err(out_of_range(path, "integer", true, &max.to_string(), text))
                }
                Ok(v) => Ok(Some(v)),
                Err(_) if text.starts_with('-') => {
                    Err(out_of_range(path, "integer", false, &min.to_string(), text))
                }
                Err(_) => Err(out_of_range(path, "integer", true, &max.to_string(), text)),
            }
        }
        _ => Err(wrong_type(path, "an integer", raw)),
    }
}

/// A number in `min..=max`.
pub fn decimal(path: &str, raw: &RawValue, min: f64, max: f64) -> Result<Option<f64>, ApiError> {
    match Kind::of(raw) {
        Kind::Null => Ok(None),
        Kind::Integer | Kind::Decimal => {
            let text = raw.get().trim();
            let v = text.parse::<f64>().unwrap_or(f64::INFINITY);
            let bound = |b: f64| b.to_string();
            if v < min {
                Err(out_of_range(path, "decimal", false, &bound(min), text))
            } else if v > max || !v.is_finite() {
                Err(out_of_range(path, "decimal", true, &bound(max), text))
            } else {
                Ok(Some(v))
            }
        }
        _ => Err(wrong_type(path, "a number", raw)),
    }
}

pub fn string<'a>(path: &str, raw: &'a RawValue) -> Result<Option<Text<'a>>, ApiError> {
    match Kind::of(raw) {
        Kind::Null => Ok(None),
        Kind::String => json::parse_field::<Text>(path, raw, "a string").map(Some),
        _ => Err(wrong_type(path, "a string", raw)),
    }
}

/// A string of at most `max` characters.
pub fn short_string<'a>(
    path: &str,
    raw: &'a RawValue,
    max: usize,
) -> Result<Option<Text<'a>>, ApiError> {
    let s = string(path, raw)?;
    let len = s.as_ref().map_or(0, |s| s.chars().count());
    if len > max {
        return Err(ApiError::invalid_param(
            path,
            format!("Invalid '{path}': string too long. Expected a string with maximum length {max}, but got a string with length {len} instead."),
        )
        .with_code("string_above_max_length"));
    }
    Ok(s)
}

/// A string among `allowed`.
pub fn one_of<'a>(
    path: &str,
    raw: &'a RawValue,
    allowed: &[&str],
) -> Result<Option<Text<'a>>, ApiError> {
    match string(path, raw)? {
        Some(s) if !allowed.contains(&s.as_str()) => Err(unsupported(path, &s, allowed)),
        other => Ok(other),
    }
}

/// An object's fields (later duplicates replacing earlier ones).
pub fn object<'a>(path: &str, raw: &'a RawValue) -> Result<Option<Fields<'a>>, ApiError> {
    match Kind::of(raw) {
        Kind::Null => Ok(None),
        Kind::Object => json::split_object(raw.get().as_bytes())
            .map(Some)
            .map_err(|_| wrong_type(path, "an object", raw)),
        _ => Err(wrong_type(path, "an object", raw)),
    }
}

/// An array's items.
pub fn array<'a>(path: &str, raw: &'a RawValue) -> Result<Option<Vec<&'a RawValue>>, ApiError> {
    match Kind::of(raw) {
        Kind::Null => Ok(None),
        Kind::Array => serde_json::from_str::<Vec<&RawValue>>(raw.get())
            .map(Some)
            .map_err(|_| wrong_type(path, "an array", raw)),
        _ => Err(wrong_type(path, "an array", raw)),
    }
}

/// An object whose fields are each checked by `field` (`(path, name, value)`); `required` names
/// fields that must be there. Unknown fields are left to the provider, as at the top level.
pub fn fields<'a>(
    path: &str,
    raw: &'a RawValue,
    required: &[&str],
    mut field: impl FnMut(&str, &str, &'a RawValue) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let Some(fields) = object(path, raw)? else {
        return Ok(());
    };
    for name in required {
        if json::get(&fields, name).is_none_or(json::is_null) {
            return Err(missing(&format!("{path}.{name}")));
        }
    }
    for (name, value) in &fields {
        field(&format!("{path}.{}", name.as_str()), name.as_str(), value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap()
    }

    #[test]
    fn messages_follow_openai() {
        let e = integer("n", &raw("1000"), 1, 128).unwrap_err();
        assert_eq!(
            (e.message.as_str(), e.code.as_deref(), e.param.as_deref()),
            (
                "Invalid 'n': integer above maximum value. Expected a value <= 128, but got 1000 instead.",
                Some("integer_above_max_value"),
                Some("n")
            )
        );
        let e = integer("max_tokens", &raw("1.5"), 1, i64::MAX).unwrap_err();
        assert_eq!(
            e.message,
            "Invalid type for 'max_tokens': expected an integer, but got a decimal number instead."
        );
        let e = integer("max_tokens", &raw("9223372036854775808"), 1, i64::MAX).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("integer_above_max_value"));
        assert_eq!(
            integer("max_tokens", &raw("-5"), 1, i64::MAX)
                .unwrap_err()
                .code
                .as_deref(),
            Some("integer_below_min_value")
        );
        let e = decimal("temperature", &raw("3"), 0.0, 2.0).unwrap_err();
        assert_eq!(
            e.message,
            "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3 instead."
        );
        let e = decimal("temperature", &raw("1e999"), 0.0, 2.0).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("decimal_above_max_value"));
        let e = boolean("logprobs", &raw("\"yes\"")).unwrap_err();
        assert_eq!(
            e.message,
            "Invalid type for 'logprobs': expected a boolean, but got a string instead."
        );
        let e = one_of(
            "reasoning_effort",
            &raw("\"huge\""),
            &["low", "medium", "high"],
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "Invalid value: 'huge'. Supported values are: 'low', 'medium', and 'high'."
        );
        assert_eq!(
            unsupported("x", "y", &["a", "b"]).message,
            "Invalid value: 'y'. Supported values are: 'a' and 'b'."
        );
        assert_eq!(
            object("metadata", &raw("5")).unwrap_err().message,
            "Invalid type for 'metadata': expected an object, but got an integer instead."
        );
        assert_eq!(boolean("store", &raw("null")).unwrap(), None);
        let e = fields(
            "audio",
            &raw(r#"{"voice":"alloy"}"#),
            &["format", "voice"],
            |_, _, _| Ok(()),
        )
        .unwrap_err();
        assert_eq!(
            (e.message.as_str(), e.param.as_deref()),
            (
                "Missing required parameter: 'audio.format'.",
                Some("audio.format")
            )
        );
    }
}
