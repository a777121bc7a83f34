//! Small JSON helpers shared by the request parsers and translators.
//!
//! Bodies are split once into their top-level fields (borrowed `RawValue`s), and each known
//! field is then parsed into its typed form; unknown fields stay raw and can be copied
//! verbatim into a pass-through body.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::error::ApiError;

pub mod check;
mod write;

/// The top-level fields of a JSON object, in body order, later duplicates replacing earlier ones.
pub type Fields<'a> = Vec<(Text<'a>, &'a RawValue)>;

/// A JSON string that borrows from the body when it has no escapes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text<'a>(pub Cow<'a, str>);

impl<'a> Text<'a> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(s: &'a str) -> Self {
        Text(Cow::Borrowed(s))
    }
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

struct TopLevel<'a>(Fields<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for TopLevel<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields: Fields<'de> = Vec::with_capacity(16);
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    if let Some(slot) = fields.iter_mut().find(|(k, _)| k.0 == key.0) {
                        slot.1 = value;
                    } else {
                        fields.push((key, value));
                    }
                }
                Ok(TopLevel(fields))
            }
        }
        d.deserialize_map(V)
    }
}

/// Why a body could not be split into fields.
#[derive(Debug, PartialEq, Eq)]
pub enum SplitError {
    /// Not JSON at all (syntax, invalid UTF-8, too deeply nested, empty).
    Malformed(String),
    /// Valid JSON, but not an object.
    NotAnObject,
}

/// Splits a JSON object into its top-level fields without parsing their values.
pub fn split_object(body: &[u8]) -> Result<Fields<'_>, SplitError> {
    if body.starts_with(b"\xef\xbb\xbf") {
        return Err(SplitError::Malformed(
            "it starts with a byte order mark, which JSON text must not".into(),
        ));
    }
    match serde_json::from_slice::<TopLevel>(body) {
        Ok(t) => Ok(t.0),
        Err(e) if e.classify() == serde_json::error::Category::Data => Err(SplitError::NotAnObject),
        Err(e) => Err(SplitError::Malformed(e.to_string())),
    }
}

/// Whether JSON text nests arrays and objects at most `limit` deep (strings are skipped, so
/// brackets inside them do not count): the plain reference that [`scan_object`]'s depth count
/// is tested against.
#[cfg(test)]
pub fn nesting_within(text: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Why [`scan_object`] gave up on a body.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum ScanError {
    /// Not well-formed JSON (unbalanced, unterminated, trailing bytes, empty), or nested deeper
    /// than the limit.
    Malformed,
    /// Well-formed JSON, but not an object.
    NotAnObject,
}

/// The raw values of `keys` at the top level of a JSON object (the last of duplicates, as
/// [`split_object`] keeps), in one pass over the bytes and without allocating: strings are
/// skipped with `memchr`, nested values by counting brackets. Checks the structure (strings
/// closed, brackets balanced and at most `depth_limit` deep, counting the object itself, nothing
/// after it) but not what a full parse also checks (UTF-8, escapes, number and literal
/// spelling): a caller that goes on to parse the body catches those there. For the fields a
/// filter must see before it parses a body (the dynamic module's `model` and `stream`).
pub fn scan_object<'a, const N: usize>(
    text: &'a [u8],
    keys: [&str; N],
    depth_limit: usize,
) -> Result<[Option<&'a [u8]>; N], ScanError> {
    let mut found = [None; N];
    for_each_field(text, depth_limit, |key, value| {
        if let Some(slot) = keys
            .iter()
            .position(|k| key_is(key, k))
            .and_then(|n| found.get_mut(n))
        {
            *slot = Some(value);
        }
    })?;
    Ok(found)
}

/// Calls `field` with each top-level `(raw key between its quotes, raw value)` of a JSON object,
/// in body order, checking the structure as [`scan_object`] does. Fields before a structural
/// error have been seen by the time it is returned.
pub fn for_each_field<'a>(
    text: &'a [u8],
    depth_limit: usize,
    mut field: impl FnMut(&'a [u8], &'a [u8]),
) -> Result<(), ScanError> {
    let mut i = skip_ws(text, 0);
    if text.get(i) != Some(&b'{') {
        return Err(if serde_json::from_slice::<de::IgnoredAny>(text).is_ok() {
            ScanError::NotAnObject
        } else {
            ScanError::Malformed
        });
    }
    if depth_limit == 0 {
        return Err(ScanError::Malformed);
    }
    i = skip_ws(text, i + 1);
    if text.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            let key_start = i;
            i = skip_string(text, i)?;
            let key = text.get(key_start + 1..i - 1).ok_or(ScanError::Malformed)?;
            i = skip_ws(text, i);
            if text.get(i) != Some(&b':') {
                return Err(ScanError::Malformed);
            }
            let value_start = skip_ws(text, i + 1);
            i = skip_value(text, value_start, depth_limit - 1)?;
            field(key, text.get(value_start..i).ok_or(ScanError::Malformed)?);
            i = skip_ws(text, i);
            match text.get(i) {
                Some(b',') => i = skip_ws(text, i + 1),
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return Err(ScanError::Malformed),
            }
        }
    }
    if skip_ws(text, i) != text.len() {
        return Err(ScanError::Malformed);
    }
    Ok(())
}

/// A raw key (between its quotes) names `want`; one with escapes is decoded first.
fn key_is(raw: &[u8], want: &str) -> bool {
    if !raw.contains(&b'\\') {
        return raw == want.as_bytes();
    }
    let quoted = [&b"\""[..], raw, b"\""].concat();
    serde_json::from_slice::<String>(&quoted).is_ok_and(|k| k == want)
}

fn skip_ws(text: &[u8], mut i: usize) -> usize {
    while matches!(text.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// From the opening quote at `i` to just past the closing one.
fn skip_string(text: &[u8], i: usize) -> Result<usize, ScanError> {
    if text.get(i) != Some(&b'"') {
        return Err(ScanError::Malformed);
    }
    let mut j = i + 1;
    loop {
        let rest = text.get(j..).ok_or(ScanError::Malformed)?;
        let at = memchr::memchr2(b'"', b'\\', rest).ok_or(ScanError::Malformed)?;
        j += at;
        if text.get(j) == Some(&b'"') {
            return Ok(j + 1);
        }
        // A backslash escapes the byte after it (a quote, a backslash, or the start of \uXXXX).
        j += 2;
    }
}

/// From the first byte of a value at `i` to just past it; `depth_limit` is how many more levels
/// of arrays and objects may open.
fn skip_value(text: &[u8], i: usize, depth_limit: usize) -> Result<usize, ScanError> {
    match text.get(i) {
        None => Err(ScanError::Malformed),
        Some(b'"') => skip_string(text, i),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match text.get(j) {
                    None => return Err(ScanError::Malformed),
                    Some(b'"') => {
                        j = skip_string(text, j)?;
                        continue;
                    }
                    Some(b'{' | b'[') => {
                        depth += 1;
                        if depth > depth_limit {
                            return Err(ScanError::Malformed);
                        }
                    }
                    Some(b'}' | b']') => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        Some(b'}' | b']' | b',' | b':') => Err(ScanError::Malformed),
        Some(_) => {
            let mut j = i;
            while !matches!(
                text.get(j),
                None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            ) {
                j += 1;
            }
            Ok(j)
        }
    }
}

/// The standard 400 for a request body that is not a JSON object.
pub fn body_error(e: SplitError) -> ApiError {
    match e {
        SplitError::Malformed(detail) => invalid_json(&detail),
        SplitError::NotAnObject => ApiError::invalid_request(
            "The request body must be a JSON object, but a different JSON value was sent.",
        ),
    }
}

/// The 400 for a body that is not JSON the gateway takes, saying why.
pub fn invalid_json(detail: &str) -> ApiError {
    ApiError::invalid_request(format!(
        "We could not parse the JSON body of your request ({detail}). The gateway expects a JSON \
         object with Content-Type: application/json."
    ))
    .with_code("invalid_json")
}

/// What a request body is already known to meet of the gateway's JSON rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Nothing: check it all.
    Nothing,
    /// Envoy's JSON parser took it (`json_to_metadata` found its model, or the dynamic module's
    /// check by the same rules did): only nesting deeper than the gateway's 128 levels (and up
    /// to Envoy's 1,000) can still break them.
    EnvoyJson,
}

/// The gateway's own rules for a body serde has split (see [`check::Rules::GATEWAY`]): nesting,
/// lone surrogate escapes and number ranges anywhere in it, including fields passed through. A
/// body Envoy took with no more brackets than the depth limit meets them without a pass over it.
pub fn check_body(body: &[u8], known: Known) -> Result<(), ApiError> {
    if known == Known::EnvoyJson
        && memchr::memchr2_iter(b'[', b'{', body).count() <= check::MAX_DEPTH
    {
        return Ok(());
    }
    let rules = check::Rules::GATEWAY;
    match check::check(body, &rules, |_, _| {}) {
        Ok(_) => Ok(()),
        Err(e) => Err(invalid_json(&e.describe(&rules))),
    }
}

/// Looks a field up by name.
pub fn get<'a>(fields: &Fields<'a>, name: &str) -> Option<&'a RawValue> {
    fields.iter().find(|(k, _)| k.0 == name).map(|(_, v)| *v)
}

/// True when a raw value is JSON `null`.
pub fn is_null(v: &RawValue) -> bool {
    v.get().trim() == "null"
}

/// Short name of a JSON value's type, for error messages ("got a string instead"), in OpenAI's
/// words (a number is "an integer" or "a decimal number").
pub fn type_name(v: &RawValue) -> &'static str {
    let text = v.get().trim();
    match text.as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't') | Some(b'f') => "a boolean",
        Some(b'n') => "null",
        _ if text.contains(['.', 'e', 'E']) => "a decimal number",
        _ => "an integer",
    }
}

/// Parses a field's raw value into its typed form; the error names the parameter as OpenAI does.
pub fn parse_field<'a, T: Deserialize<'a>>(
    name: &str,
    raw: &'a RawValue,
    expected: &str,
) -> Result<T, ApiError> {
    serde_json::from_str(raw.get()).map_err(|e| {
        if e.classify() == serde_json::error::Category::Data
            && !raw.get().trim_start().starts_with(['{', '['])
        {
            ApiError::invalid_param(
                name,
                format!(
                    "Invalid type for '{name}': expected {expected}, but got {} instead.",
                    type_name(raw)
                ),
            )
            .with_code("invalid_type")
        } else {
            ApiError::invalid_param(
                name,
                format!(
                    "Invalid value for '{name}': {}",
                    strip_position(&e.to_string())
                ),
            )
            .with_code("invalid_value")
        }
    })
}

/// serde_json appends " at line 1 column 42"; positions in a re-parsed sub-value mislead the client.
fn strip_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i) => msg.get(..i).unwrap_or(msg),
        None => msg,
    }
}

/// The object `fields` with field `name`'s value replaced by the JSON text `value`, every other
/// field as it came, in its order.
pub fn with_field(fields: &Fields, name: &str, value: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size.saturating_add(value.len()));
    out.push(b'{');
    for (key, raw) in fields {
        if out.len() > 1 {
            out.push(b',');
        }
        write_str(&mut out, key.as_str());
        out.push(b':');
        match key.as_str() == name {
            true => out.extend_from_slice(value),
            false => out.extend_from_slice(raw.get().as_bytes()),
        }
    }
    out.push(b'}');
    out
}

/// Appends `s` as a JSON string literal.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    write::append_str(out, s);
}

/// Serializes a value into `out` (`write.rs`: serde_json's output, faster); serialization of our
/// own plain structs cannot fail.
pub fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let _ = write::append(out, value);
}

pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    match write::append(&mut out, value) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}

/// Serializes a value into a buffer sized for about `size` bytes up front: a translated body is
/// about as long as the one it came from, and growing the buffer step by step copies it each time.
pub fn to_vec_sized<T: Serialize + ?Sized>(value: &T, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size.saturating_add(size / 8).saturating_add(256));
    write(&mut out, value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_fields_and_borrows() {
        let body = br#"{"model":"gpt","n":1,"x":{"a":[1,2]},"model":"last"}"#;
        let f = split_object(body).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(get(&f, "model").unwrap().get(), r#""last""#);
        assert_eq!(get(&f, "x").unwrap().get(), r#"{"a":[1,2]}"#);
        assert!(matches!(f[0].0 .0, Cow::Borrowed(_)));
    }

    #[test]
    fn classifies_errors() {
        assert!(matches!(
            split_object(b"[1,2]"),
            Err(SplitError::NotAnObject)
        ));
        assert!(matches!(
            split_object(b"\"s\""),
            Err(SplitError::NotAnObject)
        ));
        assert!(matches!(
            split_object(b"{bad"),
            Err(SplitError::Malformed(_))
        ));
        assert!(matches!(split_object(b""), Err(SplitError::Malformed(_))));
        assert!(matches!(
            split_object(b"{\"a\":\"\xff\"}"),
            Err(SplitError::Malformed(_))
        ));
        // Deep nesting inside a field is skipped iteratively (no stack risk) and stays raw;
        // parsing it into a typed value hits serde_json's 128-level limit instead of the stack.
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        let f = split_object(deep.as_bytes()).unwrap();
        let e =
            parse_field::<serde_json::Value>("a", get(&f, "a").unwrap(), "a value").unwrap_err();
        assert_eq!(e.status, 400);
        assert!(matches!(
            split_object(b"{} trailing"),
            Err(SplitError::Malformed(_))
        ));
    }

    #[test]
    fn scans_top_level_values() {
        let body =
            br#" { "model" : "gpt" , "messages":[{"content":"a \"}] { [ \\"}], "stream":true,
            "x":{"model":"inner"},"n":-1.5e3, "model":"last"} "#;
        let [model, stream, n, missing] =
            scan_object(body, ["model", "stream", "n", "nope"], 128).unwrap();
        assert_eq!(model, Some(&br#""last""#[..]));
        assert_eq!(stream, Some(&b"true"[..]));
        assert_eq!(n, Some(&b"-1.5e3"[..]));
        assert_eq!(missing, None);
        let [m] = scan_object(br#"{"mod\u0065l":"escaped"}"#, ["model"], 128).unwrap();
        assert_eq!(m, Some(&br#""escaped""#[..]));
        assert_eq!(scan_object(b"{}", ["model"], 128), Ok([None]));
    }

    #[test]
    fn scan_refuses_what_a_parser_refuses_structurally() {
        let malformed: [&[u8]; 12] = [
            b"",
            b"{",
            br#"{"model": "#,
            br#"{"model": "gpt", "messages": ["#,
            br#"{"model": "gpt"} xyz"#,
            br#"{"model" "gpt"}"#,
            br#"{"model": "gpt",}"#,
            br#"{"a": "unterminated}"#,
            br#"{"a": "ends in a backslash\"#,
            br#"{model: 1}"#,
            br#"{"a": ]}"#,
            b"{bad",
        ];
        for body in malformed {
            assert_eq!(
                scan_object(body, ["model"], 128),
                Err(ScanError::Malformed),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            scan_object(b"[1,2]", ["model"], 128),
            Err(ScanError::NotAnObject)
        );
        assert_eq!(
            scan_object(b" \"s\" ", ["model"], 128),
            Err(ScanError::NotAnObject)
        );
        assert_eq!(
            scan_object(b"[1,", ["model"], 128),
            Err(ScanError::Malformed)
        );
    }

    #[test]
    fn scan_counts_depth_like_nesting_within() {
        for depth in [1usize, 2, 10, 127, 128, 129, 200] {
            let inner = depth.saturating_sub(1);
            let body = format!("{{\"x\":{}{}}}", "[".repeat(inner), "]".repeat(inner));
            let body = if inner == 0 {
                "{\"x\":1}".to_string()
            } else {
                body
            };
            assert_eq!(
                scan_object(body.as_bytes(), ["x"], 128).is_ok(),
                nesting_within(body.as_bytes(), 128),
                "depth {depth}"
            );
        }
        // Brackets inside strings do not count.
        let body = format!("{{\"x\":\"{}\"}}", "[".repeat(500));
        assert!(scan_object(body.as_bytes(), ["x"], 2).is_ok());
    }

    #[test]
    fn field_errors_name_the_param() {
        let f = split_object(br#"{"temperature":"hot"}"#).unwrap();
        let e =
            parse_field::<Option<f64>>("temperature", get(&f, "temperature").unwrap(), "a number")
                .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        assert!(
            e.message.contains("expected a number, but got a string"),
            "{}",
            e.message
        );
    }
}
