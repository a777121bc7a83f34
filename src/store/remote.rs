//! How the filter talks to the shared store: Redis behind webdis, over Envoy HTTP callouts (the
//! only way out of a proxy-wasm filter; the dynamic module uses the same calls). Pure: this builds
//! the request a host sends and reads the response it hands back, for both hosts alike.
//!
//! A call is `POST /` with the body `COMMAND/arg/arg/...`, each argument percent-encoded
//! (webdis splits on `/` and takes `.` for a file extension; it decodes `%2F` and `%2E`), or,
//! when its last argument is large (a sync's payload, the library's source), `PUT
//! /COMMAND/arg/...` with that argument as the body, byte for byte: webdis appends a PUT's body
//! to the command as its last argument, so neither side encodes or decodes it. webdis
//! answers `{"COMMAND": <value>}`: a Redis error is `[false, "<message>"]` inside a 200, so the
//! body decides, never the status alone. Tollgate's functions return one string (a JSON document),
//! so an `FCALL` answers `{"FCALL": "<json text>"}`.

use serde_json::Value;

/// The webdis HTTP request's fixed headers, and the cluster Envoy sends it through.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The Envoy cluster of the webdis sidecar (`tollgate render` writes it).
    pub cluster: String,
    /// `:authority` of the calls (`host:port` of `store.url`).
    pub authority: String,
    /// `Basic <base64(user:password)>`, built once at configuration time.
    authorization: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("cluster", &self.cluster)
            .field("authority", &self.authority)
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "Basic <redacted>"),
            )
            .finish()
    }
}

impl Endpoint {
    /// `auth` is webdis's `user:password` (HTTP basic auth), when it asks for one.
    pub fn new(cluster: &str, authority: &str, auth: Option<&str>) -> Self {
        use base64::Engine;
        Endpoint {
            cluster: cluster.to_string(),
            authority: authority.to_string(),
            authorization: auth.map(|a| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(a.as_bytes())
                )
            }),
        }
    }

    /// The request headers of `request` (Envoy adds `content-length`).
    pub fn headers<'a>(&'a self, request: &'a Request) -> Vec<(&'a str, &'a str)> {
        let mut h = vec![
            (":method", request.method()),
            (":path", request.path.as_str()),
            (":authority", self.authority.as_str()),
            ("content-type", "text/plain"),
        ];
        if let Some(a) = &self.authorization {
            h.push(("authorization", a.as_str()));
        }
        h
    }
}

/// One call to send: the webdis path and body, how long to wait for it, and what it is (for
/// metrics and logs: the Redis function, or `function_load` / `function_list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub what: &'static str,
    /// `/`: the whole command is the (POST) body; else the command but its last argument,
    /// which is the (PUT) body.
    pub path: String,
    pub body: Vec<u8>,
    pub timeout_ms: u64,
}

impl Request {
    /// `POST` for a command in the body, `PUT` for a command in the path.
    pub fn method(&self) -> &'static str {
        if self.path == "/" {
            "POST"
        } else {
            "PUT"
        }
    }
}

/// An argument webdis cannot carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// webdis drops empty path segments, so an empty key or argument cannot reach Redis.
    EmptyArgument,
}

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EncodeError::EmptyArgument => f.write_str("webdis cannot carry an empty argument"),
        }
    }
}

/// Appends `bytes` percent-encoded: everything but letters, digits, `-`, `_` and `~` (so `/`,
/// `.`, `%`, `?` and every non-ASCII byte are escaped).
pub fn encode_segment(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', hex_upper(b >> 4), hex_upper(b)]);
        }
    }
}

fn hex_upper(n: u8) -> u8 {
    crate::hex::digit(n).to_ascii_uppercase()
}

/// `COMMAND/seg/seg/...`, each segment encoded.
fn command(command: &str, segments: &[&[u8]]) -> Result<Vec<u8>, EncodeError> {
    if segments.iter().any(|s| s.is_empty()) {
        return Err(EncodeError::EmptyArgument);
    }
    // JSON arguments escape about a third of their bytes (quotes, colons, commas), each to three.
    let raw = command.len() + segments.iter().map(|s| s.len() + 1).sum::<usize>();
    let mut out = Vec::with_capacity(raw + raw / 2 + 16);
    encode_segment(&mut out, command.as_bytes());
    for s in segments {
        out.push(b'/');
        encode_segment(&mut out, s);
    }
    Ok(out)
}

/// A command whose last argument (`tail`, not empty) is sent as it is, as a PUT's body.
fn command_put(
    what: &'static str,
    command: &str,
    segments: &[&[u8]],
    tail: &[u8],
    timeout_ms: u64,
) -> Result<Request, EncodeError> {
    if tail.is_empty() || segments.iter().any(|s| s.is_empty()) {
        return Err(EncodeError::EmptyArgument);
    }
    let mut path = Vec::with_capacity(64);
    path.push(b'/');
    encode_segment(&mut path, command.as_bytes());
    for s in segments {
        path.push(b'/');
        encode_segment(&mut path, s);
    }
    Ok(Request {
        what,
        // Percent-encoded: ASCII by construction.
        path: String::from_utf8(path).unwrap_or_default(),
        body: tail.to_vec(),
        timeout_ms,
    })
}

fn fcall_segments<'a>(function: &'a str, numkeys: &'a str, keys: &[&'a [u8]]) -> Vec<&'a [u8]> {
    let mut segments: Vec<&[u8]> = Vec::with_capacity(4 + keys.len());
    segments.push(function.as_bytes());
    segments.push(numkeys.as_bytes());
    segments.extend_from_slice(keys);
    segments
}

/// `FCALL <function> <numkeys> <keys...> <args...>`.
pub fn fcall(
    function: &'static str,
    keys: &[&[u8]],
    args: &[&[u8]],
    timeout_ms: u64,
) -> Result<Request, EncodeError> {
    let numkeys = keys.len().to_string();
    let mut segments = fcall_segments(function, &numkeys, keys);
    segments.extend_from_slice(args);
    Ok(Request {
        what: function,
        path: "/".to_string(),
        body: command("FCALL", &segments)?,
        timeout_ms,
    })
}

/// `FCALL` as [`fcall`], its last argument `tail` sent unencoded as the body (a `PUT`): for a
/// large argument, which neither the filter nor webdis then encodes or decodes.
pub fn fcall_tail(
    function: &'static str,
    keys: &[&[u8]],
    args: &[&[u8]],
    tail: &[u8],
    timeout_ms: u64,
) -> Result<Request, EncodeError> {
    let numkeys = keys.len().to_string();
    let mut segments = fcall_segments(function, &numkeys, keys);
    segments.extend_from_slice(args);
    command_put(function, "FCALL", &segments, tail, timeout_ms)
}

/// `FUNCTION LOAD REPLACE <source>`: (re)loads a library (persisted in Redis's AOF).
pub fn function_load(source: &str, timeout_ms: u64) -> Result<Request, EncodeError> {
    command_put(
        "function_load",
        "FUNCTION",
        &[b"LOAD", b"REPLACE"],
        source.as_bytes(),
        timeout_ms,
    )
}

/// `FUNCTION LIST`: the libraries Redis has loaded (read only; the store's health check).
pub fn function_list(timeout_ms: u64) -> Request {
    Request {
        what: "function_list",
        path: "/".to_string(),
        body: b"FUNCTION/LIST".to_vec(),
        timeout_ms,
    }
}

/// How a call the host sent ended, as the host saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP response: its status and whole body.
    Response { status: u16, body: Vec<u8> },
    /// No response: a timeout, a reset, a refused connection (proxy-wasm does not tell which).
    Unanswered,
    /// The response was larger than Envoy buffers for a callout.
    TooLarge,
}

/// Why a call brought no usable answer. None of these carry secrets: a Redis error message is
/// Redis's text about Tollgate's own command, cut to [`MAX_MESSAGE`] bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The host could not start the call (no such cluster, a missing header: a config error).
    NotSent(String),
    /// No response in time, or the connection failed.
    Unanswered,
    /// The response was larger than Envoy buffers for a callout.
    TooLarge,
    /// 403: webdis refused the credentials or the command.
    Forbidden,
    /// 503: webdis could not reach Redis (it also says so, a few times, after Redis restarts).
    Unavailable,
    /// Another HTTP status.
    Status(u16),
    /// A 200 whose body is not webdis's JSON (or not the value the call returns).
    Malformed(&'static str),
    /// Redis answered with an error.
    Redis(String),
    /// The function (or its library) is not loaded in Redis.
    LibraryMissing(String),
}

/// The longest Redis error message kept (the rest is cut at a character boundary).
pub const MAX_MESSAGE: usize = 256;

impl CallError {
    /// A short name for metrics (`outcome` label) and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::NotSent(_) => "not_sent",
            CallError::Unanswered => "unanswered",
            CallError::TooLarge => "too_large",
            CallError::Forbidden => "forbidden",
            CallError::Unavailable => "unavailable",
            CallError::Status(_) => "http_error",
            CallError::Malformed(_) => "malformed",
            CallError::Redis(_) => "redis_error",
            CallError::LibraryMissing(_) => "library_missing",
        }
    }

    /// Whether Redis itself answered (the store is up, the call was wrong).
    pub fn redis_answered(&self) -> bool {
        matches!(self, CallError::Redis(_) | CallError::LibraryMissing(_))
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::NotSent(why) => write!(f, "the call could not be sent: {why}"),
            CallError::Unanswered => f.write_str("no answer (timeout or connection failure)"),
            CallError::TooLarge => f.write_str("the answer was too large"),
            CallError::Forbidden => {
                f.write_str("webdis refused the call (403: credentials or command not allowed)")
            }
            CallError::Unavailable => f.write_str("webdis cannot reach Redis (503)"),
            CallError::Status(s) => write!(f, "webdis answered HTTP {s}"),
            CallError::Malformed(why) => write!(f, "unreadable answer: {why}"),
            CallError::Redis(m) => write!(f, "Redis error: {m}"),
            CallError::LibraryMissing(m) => write!(f, "function library not loaded: {m}"),
        }
    }
}

/// The value webdis answered for the call (`{"COMMAND": value}`), or why there is none.
pub fn parse(answer: &Answer) -> Result<Value, CallError> {
    let (status, body) = match answer {
        Answer::Response { status, body } => (*status, body),
        Answer::Unanswered => return Err(CallError::Unanswered),
        Answer::TooLarge => return Err(CallError::TooLarge),
    };
    match status {
        200 => {}
        403 => return Err(CallError::Forbidden),
        503 => return Err(CallError::Unavailable),
        other => return Err(CallError::Status(other)),
    }
    let doc: Value =
        serde_json::from_slice(body).map_err(|_| CallError::Malformed("the body is not JSON"))?;
    let Value::Object(map) = doc else {
        return Err(CallError::Malformed("the body is not a JSON object"));
    };
    if map.len() != 1 {
        return Err(CallError::Malformed(
            "the body does not hold exactly one command's answer",
        ));
    }
    let Some(value) = map.into_iter().next().map(|(_, v)| v) else {
        return Err(CallError::Malformed("the body is empty"));
    };
    match value {
        Value::Array(items) if items.first() == Some(&Value::Bool(false)) => {
            let message = match items.get(1) {
                Some(Value::String(m)) => cut(m),
                _ => String::from("(no message)"),
            };
            if is_library_missing(&message) {
                Err(CallError::LibraryMissing(message))
            } else {
                Err(CallError::Redis(message))
            }
        }
        // The library refuses a call made for another version of it (the filter carries its
        // own): as good as missing, so the caller loads its own and calls again.
        Value::String(text) if text.starts_with(LIBRARY_VERSION_REFUSAL) => {
            Err(CallError::LibraryMissing(cut(&text)))
        }
        v => Ok(v),
    }
}

/// How Tollgate's library begins its answer to a call made for another version of it.
pub const LIBRARY_VERSION_REFUSAL: &str = r#"{"error":"library_version""#;

/// A function's answer: the one string Tollgate's functions return (a JSON document's text).
pub fn parse_text(answer: &Answer) -> Result<String, CallError> {
    match parse(answer)? {
        Value::String(s) => Ok(s),
        _ => Err(CallError::Malformed("the function did not return a string")),
    }
}

/// Redis's words for a function or library that is not loaded (`FCALL` of an unknown function
/// says `ERR Function not found`; other commands name the library).
fn is_library_missing(message: &str) -> bool {
    message.contains("Function not found") || message.contains("Library not found")
}

fn cut(message: &str) -> String {
    if message.len() <= MAX_MESSAGE {
        return message.to_string();
    }
    let mut end = MAX_MESSAGE;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", message.get(..end).unwrap_or(""))
}

/// The call as HTTP/1.1 bytes, for a host that sends it over its own socket (the dynamic module's
/// last call while Envoy stops, when Envoy's callouts are no longer answered).
pub fn http1_request(endpoint: &Endpoint, request: &Request) -> Vec<u8> {
    let mut out = Vec::with_capacity(request.body.len() + 256);
    out.extend_from_slice(request.method().as_bytes());
    out.push(b' ');
    out.extend_from_slice(request.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (k, v) in endpoint.headers(request) {
        let name = match k {
            ":authority" => "host",
            k if k.starts_with(':') => continue,
            k => k,
        };
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // No `connection: close`: webdis 0.1.9 never answers a request that says so when its body
    // comes in a later TCP segment. The reader stops at the end of `content-length`.
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(request.body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(&request.body);
    out
}

/// An HTTP/1.1 response read whole (to the end of its `content-length`, or of the connection:
/// `closed`): its status and body, or `None` while it is incomplete or not HTTP.
pub fn parse_http1_response(bytes: &[u8], closed: bool) -> Option<Answer> {
    let head_end = memchr::memmem::find(bytes, b"\r\n\r\n")?;
    let head = std::str::from_utf8(bytes.get(..head_end)?).ok()?;
    let body = bytes.get(head_end + 4..)?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse::<u16>().ok()?;
    let mut length = None;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        if name.trim().eq_ignore_ascii_case("content-length") {
            length = Some(value.trim().parse::<usize>().ok()?);
        } else if name.trim().eq_ignore_ascii_case("transfer-encoding") {
            // webdis sends lengths; a chunked answer is not one Tollgate reads.
            return None;
        }
    }
    let body = match length {
        Some(n) => body.get(..n)?,
        None if closed => body,
        None => return None,
    };
    Some(Answer::Response {
        status,
        body: body.to_vec(),
    })
}

/// One call from start to answer, loading the function library when Redis does not have it:
/// the call, then (only if Redis says the library is missing and one was given) `FUNCTION LOAD
/// REPLACE` and the call again, once. The caller sends [`Exchange::request`] and hands each
/// answer to [`Exchange::answer`] until it returns the result.
#[derive(Debug, Clone)]
pub struct Exchange {
    call: Request,
    /// The library to load if Redis lacks it, and how long the load may take.
    library: Option<(&'static str, u64)>,
    /// The load request while it is the one in flight.
    loading: Option<Request>,
}

impl Exchange {
    pub fn new(call: Request) -> Self {
        Exchange {
            call,
            library: None,
            loading: None,
        }
    }

    /// Loads `source` (within `timeout_ms`) and retries once if Redis lacks the function.
    pub fn with_library(mut self, source: &'static str, timeout_ms: u64) -> Self {
        self.library = Some((source, timeout_ms));
        self
    }

    /// The request to send now.
    pub fn request(&self) -> &Request {
        self.loading.as_ref().unwrap_or(&self.call)
    }

    /// The call this exchange is for (not the library load).
    pub fn call(&self) -> &Request {
        &self.call
    }

    /// The answer to [`Exchange::request`]: `None` when another request must be sent now
    /// (`request` says which), else the call's result.
    pub fn answer(&mut self, answer: &Answer) -> Option<Result<Value, CallError>> {
        if self.loading.take().is_some() {
            return match parse(answer) {
                // Loaded: the call again.
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            };
        }
        match parse(answer) {
            Err(CallError::LibraryMissing(m)) => {
                let Some((source, timeout_ms)) = self.library.take() else {
                    return Some(Err(CallError::LibraryMissing(m)));
                };
                match function_load(source, timeout_ms) {
                    Ok(load) => {
                        self.loading = Some(load);
                        None
                    }
                    Err(_) => Some(Err(CallError::LibraryMissing(m))),
                }
            }
            other => Some(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// webdis's decoding: split on `/`, then `%XX` to the byte.
    fn decode(body: &[u8]) -> Vec<Vec<u8>> {
        body.split(|b| *b == b'/')
            .map(|seg| {
                let mut out = Vec::new();
                let mut i = 0;
                while i < seg.len() {
                    if seg[i] == b'%' {
                        let hex = std::str::from_utf8(&seg[i + 1..i + 3]).unwrap();
                        out.push(u8::from_str_radix(hex, 16).unwrap());
                        i += 3;
                    } else {
                        out.push(seg[i]);
                        i += 1;
                    }
                }
                out
            })
            .collect()
    }

    fn ok(body: &str) -> Answer {
        Answer::Response {
            status: 200,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn encodes_every_special_byte() {
        let r = fcall(
            "tg_sync",
            &[],
            &[b"ab12", b"7", br#"{"a":"b/c.d%e f"}"#],
            1000,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(r.body.clone()).unwrap(),
            "FCALL/tg_sync/0/ab12/7/%7B%22a%22%3A%22b%2Fc%2Ed%25e%20f%22%7D"
        );
        assert_eq!(r.what, "tg_sync");
        assert_eq!(r.timeout_ms, 1000);
        let k = fcall("tg_key_get", &[b"tg:k:{x}"], &[b"\xff\x00"], 5).unwrap();
        assert_eq!(
            decode(&k.body),
            vec![
                b"FCALL".to_vec(),
                b"tg_key_get".to_vec(),
                b"1".to_vec(),
                b"tg:k:{x}".to_vec(),
                vec![0xff, 0]
            ]
        );
        assert_eq!(fcall("f", &[], &[b""], 1), Err(EncodeError::EmptyArgument));
        assert_eq!((r.method(), r.path.as_str()), ("POST", "/"));
        let load = function_load("#!lua name=x\nredis.register_function('f', ...)", 9).unwrap();
        assert_eq!(
            (load.method(), load.path.as_str()),
            ("PUT", "/FUNCTION/LOAD/REPLACE")
        );
        assert_eq!(
            load.body,
            b"#!lua name=x\nredis.register_function('f', ...)"
        );
        assert_eq!(function_list(3).body, b"FUNCTION/LIST");
        let t = fcall_tail("tg_sync", &[], &[b"r.1", b"7"], b"{\"a\":\"/.%\"}\nx y", 5).unwrap();
        assert_eq!(
            (t.method(), t.path.as_str()),
            ("PUT", "/FCALL/tg_sync/0/r%2E1/7")
        );
        assert_eq!(t.body, b"{\"a\":\"/.%\"}\nx y");
        assert_eq!(
            fcall_tail("f", &[], &[], b"", 1),
            Err(EncodeError::EmptyArgument)
        );
    }

    #[test]
    fn headers_carry_basic_auth_and_never_print_it() {
        let e = Endpoint::new("tollgate_store", "127.0.0.1:7379", Some("tollgate:s3cret"));
        let post = function_list(1);
        let h = e.headers(&post);
        assert!(h.contains(&(":method", "POST")));
        assert!(h.contains(&(":path", "/")));
        let put = function_load("x", 1).unwrap();
        let h = e.headers(&put);
        assert!(h.contains(&(":method", "PUT")));
        assert!(h.contains(&(":path", "/FUNCTION/LOAD/REPLACE")));
        assert!(h.contains(&(":authority", "127.0.0.1:7379")));
        assert!(h.contains(&("authorization", "Basic dG9sbGdhdGU6czNjcmV0")));
        assert!(!format!("{e:?}").contains("dG9sbGdhdGU6czNjcmV0"));
        let open = Endpoint::new("c", "h:1", None);
        assert!(!open
            .headers(&post)
            .iter()
            .any(|(k, _)| *k == "authorization"));
    }

    #[test]
    fn parses_webdis_answers() {
        assert_eq!(
            parse_text(&ok(r#"{"FCALL":"{\"seq\":3}"}"#)),
            Ok(r#"{"seq":3}"#.to_string())
        );
        assert_eq!(
            parse(&ok(r#"{"FUNCTION":"probe"}"#)),
            Ok(Value::from("probe"))
        );
        assert_eq!(
            parse(&ok(r#"{"FCALL":[false,"ERR Function not found"]}"#)),
            Err(CallError::LibraryMissing("ERR Function not found".into()))
        );
        assert_eq!(
            parse(&ok(r#"{"FUNCTION":[false,"ERR Library not found"]}"#)),
            Err(CallError::LibraryMissing("ERR Library not found".into()))
        );
        assert_eq!(
            parse(&ok(r#"{"FCALL":[false,"ERR user_function:1: boom"]}"#)),
            Err(CallError::Redis("ERR user_function:1: boom".into()))
        );
        assert_eq!(
            parse_text(&ok(r#"{"FCALL":5}"#)),
            Err(CallError::Malformed("the function did not return a string"))
        );
        // A status answer ([true, "OK"]) is a value, not an error.
        assert_eq!(
            parse(&ok(r#"{"SET":[true,"OK"]}"#)),
            Ok(serde_json::json!([true, "OK"]))
        );
        let status = |s| Answer::Response {
            status: s,
            body: b"<html>".to_vec(),
        };
        assert_eq!(parse(&status(403)), Err(CallError::Forbidden));
        assert_eq!(parse(&status(503)), Err(CallError::Unavailable));
        assert_eq!(parse(&status(500)), Err(CallError::Status(500)));
        assert_eq!(parse(&Answer::Unanswered), Err(CallError::Unanswered));
        assert_eq!(parse(&Answer::TooLarge), Err(CallError::TooLarge));
        for garbage in ["", "nope", "[1]", "{}", r#"{"A":1,"B":2}"#, "\"x\""] {
            assert!(
                matches!(parse(&ok(garbage)), Err(CallError::Malformed(_))),
                "{garbage}"
            );
        }
        let long = format!(r#"{{"FCALL":[false,"ERR {}"]}}"#, "é".repeat(400));
        let Err(CallError::Redis(m)) = parse(&ok(&long)) else {
            panic!("a Redis error")
        };
        assert!(m.len() <= MAX_MESSAGE + 3 && m.ends_with("..."));
        assert_eq!(CallError::Forbidden.kind(), "forbidden");
        assert!(CallError::LibraryMissing(String::new()).redis_answered());
        assert!(!CallError::Unanswered.redis_answered());
    }

    #[test]
    fn a_missing_library_is_loaded_once_then_the_call_is_retried() {
        let call = fcall("tg_sync", &[], &[b"r", b"1", b"{}"], 1000).unwrap();
        let missing = ok(r#"{"FCALL":[false,"ERR Function not found"]}"#);
        let mut x = Exchange::new(call.clone()).with_library("#!lua name=tollgate\n", 2000);
        assert_eq!(x.request(), &call);
        assert_eq!(x.answer(&missing), None);
        assert_eq!(x.request().what, "function_load");
        assert_eq!(x.request().timeout_ms, 2000);
        assert_eq!(x.answer(&ok(r#"{"FUNCTION":"tollgate"}"#)), None);
        assert_eq!(x.request(), &call);
        // Still missing after the load (the library lacks the function): given up, not looped.
        assert_eq!(
            x.answer(&missing),
            Some(Err(CallError::LibraryMissing(
                "ERR Function not found".into()
            )))
        );
        // A load Redis refuses ends the exchange with its error.
        let mut y = Exchange::new(call.clone()).with_library("bad", 2000);
        assert_eq!(y.answer(&missing), None);
        assert_eq!(
            y.answer(&ok(
                r#"{"FUNCTION":[false,"ERR Error compiling function"]}"#
            )),
            Some(Err(CallError::Redis("ERR Error compiling function".into())))
        );
        // Without a library, a missing function is the answer.
        let mut z = Exchange::new(call.clone());
        assert!(matches!(
            z.answer(&missing),
            Some(Err(CallError::LibraryMissing(_)))
        ));
        assert_eq!(z.call(), &call);
        let mut w = Exchange::new(call);
        assert_eq!(
            w.answer(&ok(r#"{"FCALL":"{}"}"#)),
            Some(Ok(Value::from("{}")))
        );
    }

    #[test]
    fn http1_bytes_for_a_host_socket() {
        let e = Endpoint::new("c", "127.0.0.1:7379", Some("u:p"));
        let r = function_list(5);
        let bytes = String::from_utf8(http1_request(&e, &r)).unwrap();
        assert!(
            bytes.starts_with("POST / HTTP/1.1\r\nhost: 127.0.0.1:7379\r\n"),
            "{bytes}"
        );
        assert!(bytes.contains("\r\nauthorization: Basic dTpw\r\n"));
        assert!(bytes.ends_with("content-length: 13\r\n\r\nFUNCTION/LIST"));
        assert!(!bytes.contains(":method"));
        let answer =
            b"HTTP/1.1 200 OK\r\nServer: Webdis\r\nContent-Length: 14\r\n\r\n{\"FCALL\":\"{}\"}";
        assert_eq!(
            parse_http1_response(answer, false),
            Some(Answer::Response {
                status: 200,
                body: br#"{"FCALL":"{}"}"#.to_vec()
            })
        );
        assert_eq!(
            parse_http1_response(&answer[..answer.len() - 1], false),
            None
        );
        // Without a length, the body ends with the connection.
        let open = b"HTTP/1.1 403 Forbidden\r\n\r\nno";
        assert_eq!(parse_http1_response(open, false), None);
        assert_eq!(
            parse_http1_response(open, true),
            Some(Answer::Response {
                status: 403,
                body: b"no".to_vec()
            })
        );
        assert_eq!(parse_http1_response(b"SSH-2.0\r\n\r\n", true), None);
        assert_eq!(
            parse_http1_response(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n",
                true
            ),
            None
        );
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
            Just(Value::from("ERR Function not found")),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(".{0,6}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Every argument reaches Redis byte for byte: nothing in it can split a segment.
        #[test]
        fn segments_survive_webdis(
            function in "[a-z_]{1,12}",
            keys in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..24), 0..3),
            args in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..64), 0..4),
        ) {
            let f: &'static str = Box::leak(function.clone().into_boxed_str());
            let k: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            let a: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let r = fcall(f, &k, &a, 1).unwrap();
            prop_assert!(!r.body.contains(&b'.'));
            let parts = decode(&r.body);
            prop_assert_eq!(&parts[0], b"FCALL");
            prop_assert_eq!(&parts[1], function.as_bytes());
            prop_assert_eq!(parts[2].clone(), keys.len().to_string().into_bytes());
            prop_assert_eq!(&parts[3..3 + keys.len()], &keys[..]);
            prop_assert_eq!(&parts[3 + keys.len()..], &args[..]);
        }

        /// Any status and any bytes: an answer or an error, never a panic.
        #[test]
        fn any_bytes_parse_without_panic(status in any::<u16>(), body in prop::collection::vec(any::<u8>(), 0..256)) {
            let a = Answer::Response { status, body };
            let _ = parse(&a);
            let _ = parse_text(&a);
            let mut x = Exchange::new(function_list(1)).with_library("lib", 1);
            let _ = x.answer(&a);
            let _ = x.answer(&a);
        }

        /// Any bytes from a socket: a response or `None`, never a panic.
        #[test]
        fn any_http1_bytes_parse_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), head in "HTTP/1\\.[01] [0-9]{1,5} [A-Za-z]{0,3}\r\n([A-Za-z-]{1,16}: [0-9a-z]{0,6}\r\n){0,3}\r\n") {
            let _ = parse_http1_response(&bytes, true);
            let mut b = head.into_bytes();
            b.extend_from_slice(&bytes);
            let _ = parse_http1_response(&b, false);
            let _ = parse_http1_response(&b, true);
        }

        /// JSON-shaped answers (webdis's shape with arbitrary values): never a panic, and an error
        /// array is always an error.
        #[test]
        fn json_answers_parse_without_panic(key in "[A-Z]{0,6}", value in arb_json(), extra in any::<bool>()) {
            let mut doc = serde_json::Map::new();
            doc.insert(key, value.clone());
            if extra {
                doc.insert("X".into(), Value::Null);
            }
            let body = serde_json::to_vec(&Value::Object(doc)).unwrap();
            let r = parse(&Answer::Response { status: 200, body });
            if value.get(0) == Some(&Value::Bool(false)) && !extra {
                prop_assert!(r.is_err());
            }
        }
    }
}
