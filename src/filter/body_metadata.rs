//! What the `json_to_metadata` filter in front of the gateway (`render::json_to_metadata_filter`)
//! extracts from a request body, computed in-process, in the byte form the filter reads metadata
//! in. A host that can hold the request headers until the body has arrived (Envoy's dynamic
//! modules can; proxy-wasm in Envoy 1.40 cannot) needs neither that filter nor the buffer filter
//! behind Tollgate: it reads the body, answers the filter's metadata reads from this, and only
//! then lets the request go on.

use serde_json::value::RawValue;

use crate::json::{self, SplitError};

/// `(key, value)` pairs of the `tollgate` metadata namespace: `model` (the alias as text),
/// `model_value` (the same with its JSON type: equal bytes only for a string), `stream`, or the
/// markers `model_missing` / `body_error`. Values are as proxy-wasm hands metadata over: a string
/// as its bytes, a number as a little-endian f64, a bool as one byte; anything else as a byte
/// that no string equals.
pub fn request_metadata(content_type: Option<&str>, body: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let marker = |key| vec![(key, vec![1u8])];
    let media_type = content_type
        .and_then(|ct| ct.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase());
    if media_type.as_deref() != Some("application/json") {
        return marker("body_error");
    }
    // Envoy's parser refuses deeper bodies (the filter's message says so), serde_json does not
    // look inside raw values.
    if !json::nesting_within(body, MAX_DEPTH) {
        return marker("body_error");
    }
    let fields = match json::split_object(body) {
        Ok(f) => f,
        Err(SplitError::Malformed(_)) => return marker("body_error"),
        Err(SplitError::NotAnObject) => return marker("model_missing"),
    };
    let mut out = Vec::with_capacity(3);
    match json::get(&fields, "model").map(typed) {
        None | Some(Typed::Null) => out.push(("model_missing", vec![1])),
        Some(Typed::Text(s)) if s.is_empty() => out.push(("model_missing", vec![1])),
        Some(Typed::Text(s)) => {
            out.push(("model", s.clone().into_bytes()));
            out.push(("model_value", s.into_bytes()));
        }
        Some(other) => {
            // Not a string: `model` as its JSON text, and a typed copy that differs from it.
            let raw = json::get(&fields, "model").map(|v| v.get().as_bytes().to_vec());
            out.push(("model", raw.unwrap_or_default()));
            out.push(("model_value", other.bytes()));
        }
    }
    match json::get(&fields, "stream").map(typed) {
        None | Some(Typed::Null) => {}
        Some(v) => out.push(("stream", v.bytes())),
    }
    out
}

/// How deep a request body may nest.
const MAX_DEPTH: usize = 128;

enum Typed {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
    Other,
}

impl Typed {
    fn bytes(self) -> Vec<u8> {
        match self {
            Typed::Bool(b) => vec![u8::from(b)],
            Typed::Number(n) => n.to_le_bytes().to_vec(),
            Typed::Text(s) => s.into_bytes(),
            Typed::Null | Typed::Other => vec![0xff],
        }
    }
}

fn typed(v: &RawValue) -> Typed {
    let text = v.get().trim();
    match text.as_bytes().first() {
        Some(b'n') => Typed::Null,
        Some(b't') => Typed::Bool(true),
        Some(b'f') => Typed::Bool(false),
        Some(b'"') => serde_json::from_str::<String>(text).map_or(Typed::Other, Typed::Text),
        Some(b'{') | Some(b'[') | None => Typed::Other,
        Some(_) => text.parse::<f64>().map_or(Typed::Other, Typed::Number),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ct: &str, body: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
        request_metadata(Some(ct), body)
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
            "Application/JSON; charset=utf-8",
            br#"{"model":"a\"b","stream":false}"#,
        );
        assert_eq!(m.first(), Some(&("model", b"a\"b".to_vec())));
        assert_eq!(m.last(), Some(&("stream", vec![0])));
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
        let deep = [&b"{\"x\":"[..], &[b'['; 200], &[b']'; 200], b"}"].concat();
        assert!(marked(meta("application/json", &deep), "body_error"));
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
        assert!(marked(
            meta("application/json", br#"{"model":""}"#),
            "model_missing"
        ));
        assert!(marked(
            meta("application/json", br#"{"model":null}"#),
            "model_missing"
        ));
    }

    /// A model that is not a string has a typed copy unequal to its text, which the filter
    /// refuses as the wrong type.
    #[test]
    fn typed_copies_differ_for_non_strings() {
        for body in [
            &br#"{"model":5}"#[..],
            br#"{"model":true}"#,
            br#"{"model":{"a":1}}"#,
        ] {
            let m = meta("application/json", body);
            let get = |k: &str| m.iter().find(|(key, _)| *key == k).map(|(_, v)| v.clone());
            assert!(get("model").is_some(), "{m:?}");
            assert_ne!(get("model"), get("model_value"), "{m:?}");
        }
        let m = meta("application/json", br#"{"model":"gpt","stream":2}"#);
        assert_eq!(m.last(), Some(&("stream", 2f64.to_le_bytes().to_vec())));
    }
}
