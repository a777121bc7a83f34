//! One strict pass over a JSON text: the rules a request body must meet beyond what serde's
//! split of it checks (nesting depth, lone surrogate escapes, numbers a 64-bit parser cannot
//! hold), and, with [`Rules::ENVOY`], the whole of what Envoy's JSON parser (nlohmann's, behind
//! `json_to_metadata`) accepts, so the dynamic module can answer the metadata reads the `.wasm`
//! gets from that filter exactly as it would.
//!
//! Iterative (no recursion), allocation-free except for a byte per open container, strings
//! skipped with `memchr`. Never panics.

/// What a pass checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Most arrays and objects open at once, the outermost counting.
    pub max_depth: usize,
    /// Check the text itself: UTF-8, and no raw control character in a string (a caller whose
    /// serde parse of it succeeded can skip both).
    pub text: bool,
}

impl Rules {
    /// What Envoy 1.40's `json_to_metadata` accepts (checked in a real Envoy: nesting up to 1,000
    /// levels, no lone surrogates, no integer above `i64::MAX` written without a fraction or
    /// exponent, no number beyond `f64`'s range, strict RFC 8259 otherwise).
    pub const ENVOY: Rules = Rules {
        max_depth: 1000,
        text: true,
    };

    /// The gateway's own rule for a request body that serde has already split: Envoy's, at most
    /// 128 levels deep (serde_json's own recursion limit, which the typed fields meet anyway).
    pub const GATEWAY: Rules = Rules {
        max_depth: MAX_DEPTH,
        text: false,
    };
}

/// How deep a request body may nest, everywhere in it.
pub const MAX_DEPTH: usize = 128;

/// Why a text was refused, and where (a byte offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid {
    pub problem: Problem,
    pub at: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Not JSON's grammar (including an empty text, or bytes after the value).
    Syntax,
    Utf8,
    /// A raw byte below 0x20 inside a string.
    ControlCharacter,
    Escape,
    /// A `\u` escape of half a UTF-16 surrogate pair, without its other half.
    LoneSurrogate,
    /// An integer above `i64::MAX`, or a number beyond `f64`'s range.
    NumberOutOfRange,
    TooDeep,
}

impl Invalid {
    /// What was wrong, for a client.
    pub fn describe(&self, rules: &Rules) -> String {
        let at = self.at;
        match self.problem {
            Problem::TooDeep => format!(
                "arrays and objects nest more than {} levels deep (at byte {at})",
                rules.max_depth
            ),
            Problem::LoneSurrogate => format!(
                "the \\u escape at byte {at} is half of a UTF-16 surrogate pair without its other half"
            ),
            Problem::NumberOutOfRange => format!(
                "the number at byte {at} is out of range (integers up to 9223372036854775807, other numbers within a 64-bit float's range)"
            ),
            Problem::Utf8 => format!("the body is not valid UTF-8 (at byte {at})"),
            Problem::ControlCharacter => {
                format!("a string holds a raw control character at byte {at}")
            }
            Problem::Escape => format!("invalid escape at byte {at}"),
            Problem::Syntax => format!("invalid JSON at byte {at}"),
        }
    }
}

/// Whether the root value is an object (only then are fields reported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Object,
    Other,
}

fn fail<T>(problem: Problem, at: usize) -> Result<T, Invalid> {
    Err(Invalid { problem, at })
}

/// Checks `text` by `rules`; calls `field` with each top-level `(raw key between its quotes, raw
/// value)` of a root object, in body order, as the pass goes (fields before an error have been
/// reported by the time it is returned).
pub fn check<'a>(
    text: &'a [u8],
    rules: &Rules,
    mut field: impl FnMut(&'a [u8], &'a [u8]),
) -> Result<Root, Invalid> {
    if rules.text {
        if let Err(e) = std::str::from_utf8(text) {
            return fail(Problem::Utf8, e.valid_up_to());
        }
    }
    let mut open: Vec<u8> = Vec::new();
    let mut root = Root::Other;
    // The root object's current key and where its value starts.
    let mut key: Option<(&'a [u8], usize)> = None;
    let mut i = skip_ws(text, 0);
    'value: loop {
        // A value starts at `i`.
        match text.get(i) {
            Some(&b @ (b'{' | b'[')) => {
                if open.len() >= rules.max_depth {
                    return fail(Problem::TooDeep, i);
                }
                if open.is_empty() && b == b'{' {
                    root = Root::Object;
                }
                open.push(b);
                i = skip_ws(text, i + 1);
                let close = if b == b'{' { b'}' } else { b']' };
                if text.get(i) == Some(&close) {
                    open.pop();
                    i += 1;
                } else if b == b'{' {
                    i = object_key(text, i, open.len(), rules.text, &mut key)?;
                    continue 'value;
                } else {
                    continue 'value;
                }
            }
            Some(b'"') => i = string(text, i, rules.text)?,
            Some(b't') => i = literal(text, i, b"true")?,
            Some(b'f') => i = literal(text, i, b"false")?,
            Some(b'n') => i = literal(text, i, b"null")?,
            Some(b'-' | b'0'..=b'9') => i = number(text, i)?,
            _ => return fail(Problem::Syntax, i),
        }
        // A value ended just before `i`: what follows it.
        loop {
            if open.len() == 1 && root == Root::Object {
                if let Some((k, start)) = key.take() {
                    field(k, text.get(start..i).unwrap_or_default());
                }
            }
            i = skip_ws(text, i);
            let Some(&container) = open.last() else {
                return if i == text.len() {
                    Ok(root)
                } else {
                    fail(Problem::Syntax, i)
                };
            };
            let close = if container == b'{' { b'}' } else { b']' };
            match text.get(i) {
                Some(b',') => {
                    i = skip_ws(text, i + 1);
                    if container == b'{' {
                        i = object_key(text, i, open.len(), rules.text, &mut key)?;
                    }
                    continue 'value;
                }
                Some(&b) if b == close => {
                    open.pop();
                    i += 1;
                }
                _ => return fail(Problem::Syntax, i),
            }
        }
    }
}

/// A key, its colon and the whitespace after: returns where the value starts. At depth 1 (the
/// root object) remembers the key and that position.
fn object_key<'a>(
    text: &'a [u8],
    i: usize,
    depth: usize,
    controls: bool,
    key: &mut Option<(&'a [u8], usize)>,
) -> Result<usize, Invalid> {
    if text.get(i) != Some(&b'"') {
        return fail(Problem::Syntax, i);
    }
    let end = string(text, i, controls)?;
    let colon = skip_ws(text, end);
    if text.get(colon) != Some(&b':') {
        return fail(Problem::Syntax, colon);
    }
    let value = skip_ws(text, colon + 1);
    if depth == 1 {
        *key = Some((
            text.get(i + 1..end.saturating_sub(1)).unwrap_or_default(),
            value,
        ));
    }
    Ok(value)
}

fn skip_ws(text: &[u8], mut i: usize) -> usize {
    while matches!(text.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

fn literal(text: &[u8], i: usize, word: &[u8]) -> Result<usize, Invalid> {
    if text.get(i..i + word.len()) == Some(word) {
        Ok(i + word.len())
    } else {
        fail(Problem::Syntax, i)
    }
}

/// From the opening quote at `i` to just past the closing one.
fn string(text: &[u8], i: usize, controls: bool) -> Result<usize, Invalid> {
    let mut j = i + 1;
    loop {
        let rest = text.get(j..).unwrap_or_default();
        let Some(at) = special(rest, controls) else {
            return fail(Problem::Syntax, text.len());
        };
        j += at;
        match text.get(j) {
            Some(b'"') => return Ok(j + 1),
            Some(b'\\') => {}
            _ => return fail(Problem::ControlCharacter, j),
        }
        match text.get(j + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => j += 2,
            Some(b'u') => {
                let unit = hex4(text, j + 2)?;
                match unit {
                    0xD800..=0xDBFF => {
                        let low = (text.get(j + 6..j + 8) == Some(b"\\u"))
                            .then(|| hex4(text, j + 8))
                            .transpose()?;
                        match low {
                            Some(0xDC00..=0xDFFF) => j += 12,
                            _ => return fail(Problem::LoneSurrogate, j),
                        }
                    }
                    0xDC00..=0xDFFF => return fail(Problem::LoneSurrogate, j),
                    _ => j += 6,
                }
            }
            _ => return fail(Problem::Escape, j),
        }
    }
}

/// Where the first byte that ends a run of plain string text is: a quote, a backslash, or (with
/// `controls`) a byte below 0x20. Eight bytes at a time: in each mask below, the lowest set bit
/// marks a byte that matches (a borrow only reaches bytes above a match), so the lowest bit of
/// their union is the first match.
fn special(s: &[u8], controls: bool) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut at = 0;
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let mut hit =
            zero_byte(w ^ (ONES * u64::from(b'"'))) | zero_byte(w ^ (ONES * u64::from(b'\\')));
        if controls {
            hit |= w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        }
        if hit != 0 {
            return Some(at + (hit.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || (controls && b < 0x20))
        .map(|p| at + p)
}

fn hex4(text: &[u8], i: usize) -> Result<u32, Invalid> {
    let digits = text.get(i..i + 4).ok_or(Invalid {
        problem: Problem::Escape,
        at: i,
    })?;
    digits.iter().try_fold(0u32, |n, &d| {
        let v = (d as char).to_digit(16).ok_or(Invalid {
            problem: Problem::Escape,
            at: i,
        })?;
        Ok(n * 16 + v)
    })
}

/// A number at `i`: its grammar, then its range as Envoy's parser sees it (an integer is an
/// `i64`, or a `u64` that Envoy refuses above `i64::MAX`, or, beyond that, a float like any
/// number with a fraction or exponent, refused when infinite).
fn number(text: &[u8], i: usize) -> Result<usize, Invalid> {
    let digits = |mut j: usize| {
        while text.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        j
    };
    let mut j = i;
    let negative = text.get(j) == Some(&b'-');
    if negative {
        j += 1;
    }
    match text.get(j) {
        Some(b'0') => j += 1,
        Some(b'1'..=b'9') => j = digits(j),
        _ => return fail(Problem::Syntax, j),
    }
    let mut integer = true;
    if text.get(j) == Some(&b'.') {
        integer = false;
        let end = digits(j + 1);
        if end == j + 1 {
            return fail(Problem::Syntax, end);
        }
        j = end;
    }
    if matches!(text.get(j), Some(b'e' | b'E')) {
        integer = false;
        j += 1;
        if matches!(text.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let end = digits(j);
        if end == j {
            return fail(Problem::Syntax, end);
        }
        j = end;
    }
    let s = text
        .get(i..j)
        .and_then(|s| std::str::from_utf8(s).ok())
        .unwrap_or_default();
    let finite = || s.parse::<f64>().is_ok_and(f64::is_finite);
    let ok = match (integer, negative) {
        (true, true) => s.parse::<i64>().is_ok() || finite(),
        (true, false) => match s.parse::<u64>() {
            Ok(n) => i64::try_from(n).is_ok(),
            Err(_) => finite(),
        },
        (false, _) => finite(),
    };
    if ok {
        Ok(j)
    } else {
        fail(Problem::NumberOutOfRange, i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(text: &[u8]) -> Result<Root, Problem> {
        check(text, &Rules::ENVOY, |_, _| {}).map_err(|e| e.problem)
    }

    /// Each case's verdict was read off Envoy 1.40's json_to_metadata (a body_error or not).
    #[test]
    fn agrees_with_envoy() {
        let ok: &[&[u8]] = &[
            br#"{"x":"\u0000"}"#,
            br#"{"x":-0}"#,
            br#"{"x":"\u007f"}"#,
            b"{\"x\":\"\x7f\"}",
            br#"{"x":"\/"}"#,
            b"{\"x\":1}\n\t\r ",
            br#"{"x":"\uDBFF\uDFFF"}"#,
            br#"{"x":"\ud83d\ude00"}"#,
            br#"{"x":18446744073709551616}"#,
            br#"{"x":-9223372036854775808}"#,
            br#"{"x":-9223372036854775809}"#,
            br#"{"x":9223372036854775807}"#,
            br#"{"x":9223372036854775808.0}"#,
            br#"{"x":1.7976931348623157e308}"#,
            br#"{"x":4e-400}"#,
            "{\"x\":\"\u{1F600}\"}".as_bytes(),
            b"null",
            b"[]",
            b"\"x\"",
            b"{}",
        ];
        for text in ok {
            assert!(
                verdict(text).is_ok(),
                "{}: {:?}",
                String::from_utf8_lossy(text),
                verdict(text)
            );
        }
        let refused: &[(&[u8], Problem)] = &[
            (br#"{"x":1E400}"#, Problem::NumberOutOfRange),
            (br#"{"x":-1e400}"#, Problem::NumberOutOfRange),
            (
                br#"{"x":1.7976931348623159e308}"#,
                Problem::NumberOutOfRange,
            ),
            (br#"{"x":18446744073709551615}"#, Problem::NumberOutOfRange),
            (br#"{"x":9223372036854775808}"#, Problem::NumberOutOfRange),
            (br#"{"x":1.}"#, Problem::Syntax),
            (br#"{"x":.5}"#, Problem::Syntax),
            (br#"{"x":+1}"#, Problem::Syntax),
            (br#"{"x":1e}"#, Problem::Syntax),
            (br#"{"x":01}"#, Problem::Syntax),
            (br#"{"x":NaN}"#, Problem::Syntax),
            (br#"{"x":True}"#, Problem::Syntax),
            (br#"{"x":"\uD800\u0041"}"#, Problem::LoneSurrogate),
            (br#"{"x":"\ud800"}"#, Problem::LoneSurrogate),
            (br#"{"x":"\udc00"}"#, Problem::LoneSurrogate),
            (br#"{"x":"\u00"}"#, Problem::Escape),
            (br#"{"x":"\x"}"#, Problem::Escape),
            (b"{\"x\":\"\xff\"}", Problem::Utf8),
            (b"{\"x\":\"\xf4\x90\x80\x80\"}", Problem::Utf8),
            (b"{\"x\":\"\xe0\x80\x80\"}", Problem::Utf8),
            (b"{\"x\":\"\xed\xa0\x80\"}", Problem::Utf8),
            (b"{\"x\":\"a\x01b\"}", Problem::ControlCharacter),
            (b"", Problem::Syntax),
            (b" ", Problem::Syntax),
            (br#"{"x":1,}"#, Problem::Syntax),
            (br#"{"x":[1,]}"#, Problem::Syntax),
            (br#"{"x" 1}"#, Problem::Syntax),
            (br#"{x:1}"#, Problem::Syntax),
            (br#"{"x":1} 2"#, Problem::Syntax),
            (br#"{'x':1}"#, Problem::Syntax),
            (br#"{"x":"#, Problem::Syntax),
            (br#"{"x":"open"#, Problem::Syntax),
            (br#"{"x":1 /* c */}"#, Problem::Syntax),
        ];
        for (text, problem) in refused {
            assert_eq!(
                verdict(text),
                Err(*problem),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn depth_counts_the_outermost_container() {
        let nested = |n: usize| {
            let inner = n - 1;
            [
                &b"{\"x\":"[..],
                &b"[".repeat(inner),
                &b"]".repeat(inner),
                b"}",
            ]
            .concat()
        };
        assert!(verdict(&nested(1000)).is_ok());
        assert_eq!(verdict(&nested(1001)), Err(Problem::TooDeep));
        let gateway = |text: &[u8]| check(text, &Rules::GATEWAY, |_, _| {}).is_ok();
        assert!(gateway(&nested(128)));
        assert!(!gateway(&nested(129)));
        // Brackets inside strings do not count.
        assert!(gateway(
            format!("{{\"x\":\"{}\"}}", "[".repeat(500)).as_bytes()
        ));
        assert!(verdict(&[b'['; 100_000]).is_err());
    }

    #[test]
    fn finds_the_end_of_plain_text_eight_bytes_at_a_time() {
        let reference = |s: &[u8], controls: bool| {
            s.iter()
                .position(|&b| b == b'"' || b == b'\\' || (controls && b < 0x20))
        };
        for len in 0..40 {
            for at in 0..len {
                for bad in [0u8, 0x1f, b'\n', b'"', b'\\'] {
                    let mut s = vec![b'a'; len];
                    s[at] = bad;
                    // A second special byte after the first never hides it.
                    if at + 3 < len {
                        s[at + 3] = b'"';
                    }
                    for controls in [true, false] {
                        assert_eq!(
                            special(&s, controls),
                            reference(&s, controls),
                            "{len} {at} {bad} {controls}"
                        );
                    }
                }
            }
            let mut s: Vec<u8> = (0..len as u8).map(|i| 0x20 + i % 0x60).collect();
            s.retain(|&b| b != b'"' && b != b'\\');
            s.extend("é\u{7f}\u{ff}".as_bytes());
            assert_eq!(special(&s, true), None, "{len}");
        }
        // The text of a body the gateway's serde parse took is not checked again.
        assert!(check(b"{\"x\":\"a\x01b\"}", &Rules::GATEWAY, |_, _| {}).is_ok());
    }

    #[test]
    fn reports_top_level_fields() {
        let text = br#" { "model" : "gpt" , "messages":[{"content":"a \"}] { [ \\"}], "n":-1.5e3,
            "x":{"model":"inner"}, "model":"last", "e":{} } "#;
        let mut seen = Vec::new();
        let root = check(text, &Rules::ENVOY, |k, v| {
            seen.push((k.to_vec(), v.to_vec()))
        });
        assert_eq!(root, Ok(Root::Object));
        let seen: Vec<(String, String)> = seen
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect();
        assert_eq!(
            seen,
            [
                ("model", r#""gpt""#),
                ("messages", r#"[{"content":"a \"}] { [ \\"}]"#),
                ("n", "-1.5e3"),
                ("x", r#"{"model":"inner"}"#),
                ("model", r#""last""#),
                ("e", "{}"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(
            check(b"[1]", &Rules::ENVOY, |_, _| panic!()),
            Ok(Root::Other)
        );
    }
}
