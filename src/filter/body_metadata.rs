//! What the `json_to_metadata` filters around the gateway (`render::json_to_metadata_filter`
//! before it, `render::usage_to_metadata_filter` after it) extract from a request body and from a
//! response body, computed in-process, in the byte form the filter reads metadata in. A host that
//! can hold headers until the body has arrived (Envoy's dynamic modules can; proxy-wasm in Envoy
//! 1.40 cannot) needs none of those filters, nor the buffer filter behind Tollgate: it reads the
//! body, answers the filter's metadata reads from this, and only then lets the headers go on.

use crate::json::{self, check, ScanError};

/// A metadata namespace's entries as the filter reads them: `(key, value bytes)`.
pub type Entries = Vec<(&'static str, Vec<u8>)>;

/// The request content types the rendered `json_to_metadata` takes as JSON: `application/json`
/// in any case, with any parameters (`; charset=utf-8`, as .NET and Java clients send it). Envoy
/// compares `allow_content_types` exactly, so the rest goes by [`JSON_CONTENT_TYPE_REGEX`] (RE2,
/// matched whole); [`is_json_content_type`] is the same test for the dynamic module, which reads
/// the body itself.
pub const JSON_CONTENT_TYPES: [&str; 1] = ["application/json"];
pub const JSON_CONTENT_TYPE_REGEX: &str = r"(?i)application/json[ \t]*(;.*)?";

/// Whether a request's `content-type` names JSON: `application/json`, any case, any parameters
/// (Envoy has already taken the whitespace around the header's value away).
pub fn is_json_content_type(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("");
    media
        .trim_end_matches([' ', '\t'])
        .eq_ignore_ascii_case("application/json")
        && !content_type.contains('\n')
}

/// The longest string Envoy's `json_to_metadata` copies into metadata (`MAX_PAYLOAD_VALUE_LEN`);
/// a longer value counts as missing.
const MAX_VALUE_LEN: usize = 8 * 1024;

/// `(key, value)` pairs of the `tollgate` metadata namespace, exactly as the rendered
/// `json_to_metadata` writes them (checked against Envoy 1.40 by the both-forms e2e corpus):
/// `model` (the alias as text; a number or boolean stringified), `model_value` (the same with its
/// JSON type: equal bytes only for a string), `stream`, `previous_response_id` (stringified as
/// `model` is), or the markers `model_missing` /
/// `body_error`. Values are as proxy-wasm hands metadata over: a string as its bytes, a number as
/// a little-endian f64, a bool as one byte.
pub fn request_metadata(content_type: Option<&str>, body: &[u8]) -> Entries {
    let marker = |key| vec![(key, vec![1u8])];
    if !content_type.is_some_and(is_json_content_type) {
        return marker("body_error");
    }
    if body.is_empty() {
        return marker("model_missing");
    }
    // Envoy hands its parser the body as a C string (it ends at the first NUL), and the parser
    // skips a UTF-8 byte order mark.
    let text = body
        .get(..memchr::memchr(0, body).unwrap_or(body.len()))
        .unwrap_or_default();
    let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
    let (mut model, mut stream, mut previous) = (None, None, None);
    let root = check::check(text, &check::Rules::ENVOY, |key, value| {
        if key_is(key, "model") {
            model = Some(value);
        } else if key_is(key, "stream") {
            stream = Some(value);
        } else if key_is(key, "previous_response_id") {
            previous = Some(value);
        }
    });
    match root {
        Err(_) => return marker("body_error"),
        Ok(check::Root::Other) => return marker("model_missing"),
        Ok(check::Root::Object) => {}
    }
    let mut out = Vec::with_capacity(3);
    // The `model` rule stringifies (`type: STRING`), the `model_value` rule keeps the type; a
    // value neither can hold (null, object, array, or too long) is missing to the first and
    // absent to the second, and an empty string is neither.
    match model.map(typed) {
        None | Some(Typed::Null | Typed::Other) => out.push(("model_missing", vec![1])),
        Some(Typed::Text(s)) if s.len() > MAX_VALUE_LEN => out.push(("model_missing", vec![1])),
        // Its typed copy is an empty string, which proxy-wasm reads as absent: nothing.
        Some(Typed::Text(s)) if s.is_empty() => {}
        Some(Typed::Text(s)) => {
            out.push(("model", s.clone().into_bytes()));
            out.push(("model_value", s.into_bytes()));
        }
        Some(t @ (Typed::Bool(_) | Typed::Number(..))) => {
            out.push(("model", t.stringified()));
            out.push(("model_value", t.bytes()));
        }
    }
    match stream.map(typed) {
        None | Some(Typed::Null | Typed::Other) => {}
        Some(Typed::Text(s)) if s.len() > MAX_VALUE_LEN => {}
        Some(v) => out.push(("stream", v.bytes())),
    }
    // A `type: STRING` rule: a scalar stringified; nothing for an empty string, null, an object,
    // an array or a value too long.
    match previous.map(typed) {
        None | Some(Typed::Null | Typed::Other) => {}
        Some(Typed::Text(s)) if s.is_empty() || s.len() > MAX_VALUE_LEN => {}
        Some(t) => out.push(("previous_response_id", t.stringified())),
    }
    out
}

/// A raw key (between its quotes) names `want`; one with escapes is decoded first.
fn key_is(raw: &[u8], want: &str) -> bool {
    if !raw.contains(&b'\\') {
        return raw == want.as_bytes();
    }
    let quoted = [&b"\""[..], raw, b"\""].concat();
    serde_json::from_slice::<String>(&quoted).is_ok_and(|k| k == want)
}

/// Usage fields of every provider's non-streaming response, by JSON path. The last segment is the
/// metadata key (they differ between providers, so one namespace holds them all).
pub const USAGE_FIELDS: [&[&str]; 16] = [
    &["usage", "prompt_tokens"],
    &["usage", "completion_tokens"],
    &["usage", "prompt_tokens_details", "cached_tokens"],
    &["usage", "input_tokens"],
    &["usage", "output_tokens"],
    &["usage", "cache_read_input_tokens"],
    &["usage", "cache_creation_input_tokens"],
    &["usage", "inputTokens"],
    &["usage", "outputTokens"],
    &["usage", "cacheReadInputTokens"],
    &["usage", "cacheWriteInputTokens"],
    &["usageMetadata", "promptTokenCount"],
    &["usageMetadata", "candidatesTokenCount"],
    &["usageMetadata", "thoughtsTokenCount"],
    &["usageMetadata", "cachedContentTokenCount"],
    &["usageMetadata", "toolUsePromptTokenCount"],
];

/// Markers the response `json_to_metadata` filters write beside the usage, so the filter can tell
/// from a response's headers that a 200 is no answer: `body_error` (not JSON, or not an allowed
/// content type), `not_object` (JSON, but a string or a number), and the message of an `error`
/// object (`error_message`) or a top-level `message` (`message`). What Envoy's filter can mark
/// cheaply stops there: it cannot tell an array from an object lacking a field, or mark a field's
/// presence without copying it, so an answer's shape is checked when its body is translated.
pub const BODY_ERROR: &str = "body_error";
pub const NOT_OBJECT: &str = "not_object";
pub const ERROR_MESSAGE: &str = "error_message";
pub const MESSAGE: &str = "message";

/// Whether a response's content type is JSON (`application/json`, any parameters).
pub fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// The `tollgate_usage` metadata namespace from a non-streaming response body: each
/// [`USAGE_FIELDS`] path that holds a number, under its last segment, as a little-endian f64
/// (another JSON type as one byte); and the markers ([`BODY_ERROR`], [`NOT_OBJECT`],
/// [`ERROR_MESSAGE`], [`MESSAGE`]).
pub fn response_usage(content_type: Option<&str>, body: &[u8]) -> Entries {
    let mut out = Vec::new();
    if !is_json(content_type) {
        out.push((BODY_ERROR, vec![1]));
        return out;
    }
    // As Envoy's json_to_metadata: a body that does not parse is an error, a JSON value that is
    // not an object or array is marked (Envoy applies every rule's `on_missing` to it).
    let [usage, usage_metadata, error, message] = match json::scan_object(
        body,
        ["usage", "usageMetadata", "error", "message"],
        MAX_DEPTH,
    ) {
        Ok(found) => found,
        Err(ScanError::Malformed) => {
            out.push((BODY_ERROR, vec![1]));
            return out;
        }
        Err(ScanError::NotAnObject) => {
            if !body.trim_ascii_start().starts_with(b"[") {
                out.push((NOT_OBJECT, vec![1]));
            }
            return out;
        }
    };
    for (top, raw) in [("usage", usage), ("usageMetadata", usage_metadata)] {
        let Some(Ok(tree)) = raw.map(serde_json::from_slice::<serde_json::Value>) else {
            continue;
        };
        for path in USAGE_FIELDS.iter().filter(|p| p.first() == Some(&top)) {
            let value = path.iter().skip(1).try_fold(&tree, |v, key| v.get(key));
            let bytes = match value {
                None | Some(serde_json::Value::Null) => continue,
                Some(serde_json::Value::Number(n)) => n.as_f64().map(|n| n.to_le_bytes().to_vec()),
                // As Envoy hands over a JSON string or list: not the eight bytes of a number.
                Some(_) => None,
            };
            if let Some(key) = path.last() {
                out.push((*key, bytes.unwrap_or_else(|| vec![0xff])));
            }
        }
    }
    let text = |raw: Option<&[u8]>| {
        raw.and_then(|r| serde_json::from_slice::<String>(r).ok())
            .filter(|s| !s.is_empty())
    };
    let nested = error.and_then(|e| {
        serde_json::from_slice::<serde_json::Value>(e)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
    });
    if let Some(m) = text(message) {
        out.push((MESSAGE, m.into_bytes()));
    }
    if let Some(m) = nested.filter(|m| !m.is_empty()) {
        out.push((ERROR_MESSAGE, m.into_bytes()));
    }
    out
}

/// How deep a response body may nest (as a request body).
const MAX_DEPTH: usize = check::MAX_DEPTH;

enum Typed {
    Null,
    Bool(bool),
    /// The number, and whether it was written as an integer.
    Number(f64, bool),
    Text(String),
    Other,
}

impl Typed {
    fn bytes(self) -> Vec<u8> {
        match self {
            Typed::Bool(b) => vec![u8::from(b)],
            Typed::Number(n, _) => n.to_le_bytes().to_vec(),
            Typed::Text(s) => s.into_bytes(),
            Typed::Null | Typed::Other => vec![0xff],
        }
    }

    /// As Envoy's `STRING` conversion writes a scalar: `std::to_string` of a bool (`1`/`0`), an
    /// integer, or a double (six decimals).
    fn stringified(&self) -> Vec<u8> {
        match self {
            Typed::Bool(b) => vec![if *b { b'1' } else { b'0' }],
            Typed::Number(n, true) => format!("{n:.0}").into_bytes(),
            Typed::Number(n, false) => format!("{n:.6}").into_bytes(),
            Typed::Text(s) => s.clone().into_bytes(),
            Typed::Null | Typed::Other => Vec::new(),
        }
    }
}

/// A raw JSON value (already checked) as metadata sees it.
fn typed(raw: &[u8]) -> Typed {
    let Ok(text) = std::str::from_utf8(raw) else {
        return Typed::Other;
    };
    let text = text.trim();
    match text.as_bytes().first() {
        Some(b'n') => Typed::Null,
        Some(b't') => Typed::Bool(true),
        Some(b'f') => Typed::Bool(false),
        Some(b'"') => serde_json::from_str::<String>(text).map_or(Typed::Other, Typed::Text),
        Some(b'{') | Some(b'[') | None => Typed::Other,
        Some(_) => text.parse::<f64>().map_or(Typed::Other, |n| {
            Typed::Number(n, !text.contains(['.', 'e', 'E']))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ct: &str, body: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
        request_metadata(Some(ct), body)
    }

    #[test]
    fn a_responses_body_gives_its_previous_response_id() {
        let m = meta(
            "application/json",
            br#"{"model":"gpt","previous_response_id":"resp_1","input":"hi"}"#,
        );
        assert_eq!(
            m.last(),
            Some(&("previous_response_id", b"resp_1".to_vec()))
        );
        // As a `type: STRING` rule: scalars stringified; nothing for empty, null or structures.
        let m = meta(
            "application/json",
            br#"{"model":"gpt","previous_response_id":7}"#,
        );
        assert_eq!(m.last(), Some(&("previous_response_id", b"7".to_vec())));
        for none in ["\"\"", "null", "{}", "[1]"] {
            let body = format!("{{\"model\":\"gpt\",\"previous_response_id\":{none}}}");
            let m = meta("application/json", body.as_bytes());
            assert!(
                m.iter().all(|(k, _)| *k != "previous_response_id"),
                "{none}"
            );
        }
    }

    #[test]
    fn a_chat_body_gives_model_and_stream() {
        let m = meta(
            "application/json",
            br#"{"model":"gpt","stream":true,"messages":[]}"#,
        );
        assert_eq!(
            m,
            vec![
                ("model", b"gpt".to_vec()),
                ("model_value", b"gpt".to_vec()),
                ("stream", vec![1])
            ]
        );
        let m = meta(
            "application/json; charset=utf-8",
            br#"{"model":"a\"b","stream":false}"#,
        );
        assert_eq!(m.first(), Some(&("model", b"a\"b".to_vec())));
        assert_eq!(m.last(), Some(&("stream", vec![0])));
    }

    #[test]
    fn json_is_application_json_in_any_case_with_any_parameters() {
        for ct in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "APPLICATION/JSON;charset=UTF-8",
            "application/json ; charset=latin1",
            "application/json;",
        ] {
            assert!(is_json_content_type(ct), "{ct}");
        }
        for ct in [
            "text/plain",
            "application/jsonx",
            "application/json-seq",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
        ] {
            assert!(!is_json_content_type(ct), "{ct}");
        }
    }

    #[test]
    fn bad_bodies_and_content_types_are_marked() {
        let marked = |m: Vec<(&str, Vec<u8>)>, key: &str| m == vec![(key, vec![1u8])];
        assert!(marked(
            meta("text/plain", br#"{"model":"gpt"}"#),
            "body_error"
        ));
        assert!(marked(
            request_metadata(None, br#"{"model":"gpt"}"#),
            "body_error"
        ));
        assert!(marked(
            meta("application/json", br#"{"model": "#),
            "body_error"
        ));
        assert!(marked(
            meta("application/json", b"{\"model\": \"\xff\"}"),
            "body_error"
        ));
        // As Envoy: nesting up to 1,000 levels (the gateway's own limit, 128, is the body
        // phase's), a body cut at its first NUL, a byte order mark skipped.
        assert!(marked(
            meta("application/jsonx", br#"{"model":"gpt"}"#),
            "body_error"
        ));
        assert_eq!(
            meta("Application/JSON; charset=UTF-8", br#"{"model":"gpt"}"#).first(),
            Some(&("model", b"gpt".to_vec()))
        );
        let deep = |n: usize| [&b"{\"x\":"[..], &b"[".repeat(n), &b"]".repeat(n), b"}"].concat();
        assert!(marked(meta("application/json", &deep(1000)), "body_error"));
        assert!(marked(
            meta("application/json", &deep(999)),
            "model_missing"
        ));
        assert!(!marked(
            meta("application/json", b"{\"model\":1}\0junk"),
            "body_error"
        ));
        assert_eq!(
            meta("application/json", b"\xef\xbb\xbf{\"model\":\"m\"}\0junk").first(),
            Some(&("model", b"m".to_vec()))
        );
        assert!(marked(meta("application/json", b"\0{}"), "body_error"));
        assert!(marked(meta("application/json", b""), "model_missing"));
        assert!(marked(
            meta("application/json", br#"{"model":"gpt","x":"\ud800"}"#),
            "body_error"
        ));
        assert!(marked(
            meta(
                "application/json",
                br#"{"model":"gpt","x":9223372036854775808}"#
            ),
            "body_error"
        ));
        let long = format!("{{\"model\":\"{}\"}}", "m".repeat(MAX_VALUE_LEN + 1));
        assert!(marked(
            meta("application/json", long.as_bytes()),
            "model_missing"
        ));
        let ok = [
            &b"{\"model\":\"m\",\"x\":\"[[[[\",\"y\":"[..],
            &[b'['; 120],
            &[b']'; 120],
            b"}",
        ]
        .concat();
        assert_eq!(
            meta("application/json", &ok).first(),
            Some(&("model", b"m".to_vec()))
        );
        assert!(marked(meta("application/json", b"[1,2]"), "model_missing"));
        assert!(marked(meta("application/json", b"{}"), "model_missing"));
        assert!(meta("application/json", br#"{"model":""}"#).is_empty());
        assert!(marked(
            meta("application/json", br#"{"model":{"a":1}}"#),
            "model_missing"
        ));
        assert!(marked(
            meta("application/json", br#"{"model":null}"#),
            "model_missing"
        ));
    }

    #[test]
    fn response_usage_by_provider() {
        let get = |m: &[(&str, Vec<u8>)], k: &str| {
            m.iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| f64::from_le_bytes(v[..8].try_into().unwrap()))
        };
        let json = Some("application/json");
        let m = response_usage(json, br#"{"id":"x","usage":{"prompt_tokens":12,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4}}}"#);
        assert_eq!(
            (
                get(&m, "prompt_tokens"),
                get(&m, "completion_tokens"),
                get(&m, "cached_tokens")
            ),
            (Some(12.0), Some(3.0), Some(4.0))
        );
        let m = response_usage(
            json,
            br#"{"usage":{"input_tokens":7,"output_tokens":2,"cache_read_input_tokens":1}}"#,
        );
        assert_eq!(
            (get(&m, "input_tokens"), get(&m, "cache_read_input_tokens")),
            (Some(7.0), Some(1.0))
        );
        let m = response_usage(
            json,
            br#"{"candidates":[],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":6}}"#,
        );
        assert_eq!(
            (get(&m, "promptTokenCount"), get(&m, "candidatesTokenCount")),
            (Some(5.0), Some(6.0))
        );
        assert_eq!(
            response_usage(json, br#"{"choices":[],"usage":{"prompt_tokens":"12"}}"#).first(),
            Some(&("prompt_tokens", vec![0xff])),
            "a count of another type is marked, not left out"
        );
        let marked = |m: &[(&str, Vec<u8>)], key: &str| m.iter().any(|(k, _)| *k == key);
        assert!(marked(&response_usage(json, b"not json"), BODY_ERROR));
        assert!(marked(
            &response_usage(Some("text/html"), b"{}"),
            BODY_ERROR
        ));
        assert!(marked(&response_usage(json, b"\"text\""), NOT_OBJECT));
        assert!(marked(&response_usage(json, b"42"), NOT_OBJECT));
        assert!(
            response_usage(json, b"[1,2]").is_empty(),
            "Envoy cannot mark an array"
        );
        assert!(response_usage(json, b"{}").is_empty());
        let m = response_usage(json, br#"{"error":{"message":"x"}}"#);
        assert_eq!(m, vec![(ERROR_MESSAGE, b"x".to_vec())]);
        let m = response_usage(json, br#"{"message":"denied"}"#);
        assert_eq!(m, vec![(MESSAGE, b"denied".to_vec())]);
        assert!(response_usage(
            Some("Application/JSON; charset=UTF-8"),
            br#"{"choices":[]}"#
        )
        .is_empty());
    }

    /// A model that is not a string has a typed copy unequal to its text, which the filter
    /// refuses as the wrong type.
    #[test]
    fn typed_copies_differ_for_non_strings() {
        for body in [
            &br#"{"model":5}"#[..],
            br#"{"model":true}"#,
            br#"{"model":5.5}"#,
        ] {
            let m = meta("application/json", body);
            let get = |k: &str| m.iter().find(|(key, _)| *key == k).map(|(_, v)| v.clone());
            assert!(get("model").is_some(), "{m:?}");
            assert_ne!(get("model"), get("model_value"), "{m:?}");
        }
        let m = meta("application/json", br#"{"model":"gpt","stream":2}"#);
        assert_eq!(m.last(), Some(&("stream", 2f64.to_le_bytes().to_vec())));
        // Stringified as Envoy's std::to_string does.
        let m = meta("application/json", br#"{"model":5.5}"#);
        assert_eq!(m.first(), Some(&("model", b"5.500000".to_vec())));
        let m = meta("application/json", br#"{"model":true,"stream":{}}"#);
        assert_eq!(m, vec![("model", b"1".to_vec()), ("model_value", vec![1])]);
    }
}
