use super::*;
use proptest::prelude::*;
use serde_json::{json, Value};

fn chat(body: Value) -> Value {
    let bytes = serde_json::to_vec(&body).unwrap();
    let req = parse(&bytes).unwrap();
    let v: Value = serde_json::from_slice(&req.chat).unwrap();
    // What the providers take: it must parse as a chat completions request.
    crate::openai::parse_chat(&req.chat).unwrap();
    v
}

fn error(body: &[u8]) -> ApiError {
    parse(body).unwrap_err()
}

#[test]
fn a_simple_request() {
    let v = chat(json!({
        "model": "claude", "max_tokens": 100, "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hi"}],
    }));
    assert_eq!(
        v,
        json!({
            "model": "claude", "max_tokens": 100,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
            ],
        })
    );
}

/// The request shapes Claude Code sends: system blocks with cache_control, many tools,
/// metadata.user_id, streaming, thinking, and a tool round trip with a signed thinking block.
fn claude_code_body() -> Value {
    json!({
        "model": "claude-sonnet", "max_tokens": 32000, "stream": true,
        "temperature": 1, "top_k": 5, "top_p": 0.9,
        "stop_sequences": ["</done>"],
        "metadata": {"user_id": "user_abc_account_1_session_2"},
        "thinking": {"type": "enabled", "budget_tokens": 4096},
        "system": [
            {"type": "text", "text": "You are Claude Code."},
            {"type": "text", "text": "Project rules.", "cache_control": {"type": "ephemeral"}},
        ],
        "tools": [
            {"name": "Read", "description": "Reads a file", "input_schema":
                {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}},
            {"name": "Bash", "input_schema": {"type": "object", "properties": {}},
             "cache_control": {"type": "ephemeral"}},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Read a.txt"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/x.jpg"}},
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "I should read it.", "signature": "EqQBCkYIAxgC"},
                {"type": "redacted_thinking", "data": "EmwKAhgB"},
                {"type": "text", "text": "Reading."},
                {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {"path": "a.txt"}},
                {"type": "tool_use", "id": "toolu_2", "name": "Bash", "input": {}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "hello"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true, "content": "no shell"},
                {"type": "text", "text": "Now summarise.", "cache_control": {"type": "ephemeral"}},
            ]},
        ],
        "service_tier": "auto", "cache_control": {"type": "ephemeral"}, "speed": "fast",
        "container": "cntr_1",
    })
}

#[test]
fn a_claude_code_shaped_request() {
    let body = claude_code_body();
    let v = chat(body);
    assert_eq!(
        v,
        json!({
            "model": "claude-sonnet", "max_tokens": 32000, "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": 1, "top_p": 0.9, "top_k": 5,
            "stop": ["</done>"],
            "user": "user_abc_account_1_session_2",
            "thinking": {"type": "enabled", "budget_tokens": 4096},
            "tools": [
                {"type": "function", "function": {"name": "Read", "description": "Reads a file", "parameters":
                    {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}},
                {"type": "function", "function": {"name": "Bash", "parameters": {"type": "object", "properties": {}}},
                 "cache_control": {"type": "ephemeral"}},
            ],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "container": "cntr_1",
            "messages": [
                {"role": "system", "content": [
                    {"type": "text", "text": "You are Claude Code."},
                    {"type": "text", "text": "Project rules.", "cache_control": {"type": "ephemeral"}},
                ]},
                {"role": "user", "content": [
                    {"type": "text", "text": "Read a.txt"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/x.jpg"}},
                ]},
                {"role": "assistant", "content": [{"type": "text", "text": "Reading."}],
                 "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "Read", "arguments": "{\"path\":\"a.txt\"}"}},
                    {"id": "toolu_2", "type": "function", "function": {"name": "Bash", "arguments": "{}"}},
                 ],
                 "thinking_blocks": [
                    {"type": "thinking", "thinking": "I should read it.", "signature": "EqQBCkYIAxgC"},
                    {"type": "redacted_thinking", "data": "EmwKAhgB"},
                 ]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "hello"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no shell"},
                {"role": "user", "content": [
                    {"type": "text", "text": "Now summarise.", "cache_control": {"type": "ephemeral"}},
                ]},
            ],
        })
    );
}

#[test]
fn tool_choices_documents_and_tool_result_blocks() {
    let v = chat(json!({
        "model": "m", "max_tokens": 5,
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f"},
        "messages": [
            {"role": "user", "content": [
                {"type": "document", "title": "r.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain text"}},
            ]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1, 2]}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
                {"type": "text", "text": "see"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"}},
            ]}]},
        ],
    }));
    assert_eq!(
        v["tool_choice"],
        json!({"type": "function", "function": {"name": "f"}})
    );
    assert_eq!(
        v["messages"][0]["content"],
        json!([
            {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "r.pdf", "format": "application/pdf"}},
            {"type": "text", "text": "plain text"},
        ])
    );
    assert!(v["messages"][1]["content"].is_null());
    assert_eq!(
        v["messages"][1]["tool_calls"][0]["function"]["arguments"],
        "{\"a\":[1,2]}"
    );
    assert_eq!(
        v["messages"][2],
        json!({"role": "tool", "tool_call_id": "t1", "content": [
            {"type": "text", "text": "see"},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}},
        ]})
    );
    assert_eq!(v["messages"].as_array().unwrap().len(), 3);
    for (choice, want) in [("auto", "auto"), ("none", "none")] {
        let v = chat(
            json!({"model": "m", "max_tokens": 1, "tool_choice": {"type": choice},
            "messages": [{"role": "user", "content": "x"}]}),
        );
        assert_eq!(v["tool_choice"], want);
    }
}

#[test]
fn a_tool_results_cache_control_goes_on_its_tool_message() {
    let v = chat(json!({
        "model": "m", "max_tokens": 5,
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "r",
                                          "cache_control": {"type": "ephemeral"}}]},
        ],
    }));
    assert_eq!(
        v["messages"][2],
        json!({"role": "tool", "tool_call_id": "t1", "content": "r", "cache_control": {"type": "ephemeral"}})
    );
}

#[test]
fn output_config_becomes_response_format_and_effort() {
    let v = chat(
        json!({"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "x"}],
        "output_config": {"effort": "low", "format": {"type": "json_schema",
            "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}}),
    );
    assert_eq!(v["reasoning_effort"], "low");
    assert_eq!(
        v["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "output",
            "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}})
    );
    let e = error(br#"{"model":"m","max_tokens":1,"output_config":{"format":{"type":"xml"}},"messages":[{"role":"user","content":"x"}]}"#);
    assert_eq!(e.param.as_deref(), Some("output_config.format.type"));
}

#[test]
fn what_it_reads_for_routing_and_cost() {
    let req = parse(br#"{"model":"claude","max_tokens":77,"stream":true,"messages":[{"role":"user","content":"x"}]}"#).unwrap();
    assert_eq!(req.model.as_str(), "claude");
    assert_eq!(req.max_tokens, 77);
    assert!(req.stream);
}

#[test]
fn errors_name_the_field() {
    let cases: &[(&[u8], &str)] = &[
        (br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#, "max_tokens"),
        (br#"{"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#, "model"),
        (br#"{"model":"m","max_tokens":1}"#, "messages"),
        (br#"{"model":"m","max_tokens":1,"messages":[]}"#, "messages"),
        (br#"{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}"#, "max_tokens"),
        (br#"{"model":"m","max_tokens":"9","messages":[{"role":"user","content":"x"}]}"#, "max_tokens"),
        (br#"{"model":"m","max_tokens":1,"messages":[{"role":"system","content":"x"}]}"#, "messages.0.role"),
        (br#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":5}]}"#, "messages.0.content"),
        (br#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_use","id":"a","name":"b","input":{}}]}]}"#, "messages.0.content.0.type"),
        (br#"{"model":"m","max_tokens":1,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"b","input":[1]}]}]}"#, "messages.0.content.0.input"),
        (br#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","data":"x"}}]}]}"#, "messages.0.content.0.source.media_type"),
        (br#"{"model":"m","max_tokens":1,"temperature":1.5,"messages":[{"role":"user","content":"x"}]}"#, "temperature"),
        (br#"{"model":"m","max_tokens":1,"tool_choice":{"type":"tool"},"messages":[{"role":"user","content":"x"}]}"#, "tool_choice.name"),
        (br#"{"model":"m","max_tokens":1,"tool_choice":{"type":"every"},"messages":[{"role":"user","content":"x"}]}"#, "tool_choice.type"),
        (br#"{"model":"m","max_tokens":1,"tools":[{"type":"web_search_20250305","name":"web_search"}],"messages":[{"role":"user","content":"x"}]}"#, "tools.0.type"),
        (br#"{"model":"m","max_tokens":1,"thinking":{"type":"enabled","budget_tokens":10},"messages":[{"role":"user","content":"x"}]}"#, "thinking.enabled.budget_tokens"),
        (br#"{"model":"m","max_tokens":1,"system":[{"type":"image"}],"messages":[{"role":"user","content":"x"}]}"#, "system.0.type"),
    ];
    for (body, field) in cases {
        let e = error(body);
        assert_eq!(e.status, 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(
            e.param.as_deref(),
            Some(*field),
            "{}: {}",
            String::from_utf8_lossy(body),
            e.message
        );
        assert!(e.message.starts_with(field), "{}", e.message);
    }
    assert_eq!(error(b"{not json").status, 400);
    assert_eq!(error(b"[1,2]").status, 400);
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-5i64..100_000).prop_map(Value::from),
        (-1.0f64..3.0).prop_map(Value::from),
        prop_oneof![
            Just("user"),
            Just("assistant"),
            Just("text"),
            Just("tool_use"),
            Just("tool_result"),
            Just("image"),
            Just("base64"),
            Just("url"),
            Just("thinking"),
            Just("enabled"),
            Just("tool"),
            Just("document"),
            Just("redacted_thinking"),
            Just("any"),
            Just("x"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("type"),
                    Just("role"),
                    Just("content"),
                    Just("text"),
                    Just("source"),
                    Just("media_type"),
                    Just("data"),
                    Just("url"),
                    Just("id"),
                    Just("name"),
                    Just("input"),
                    Just("tool_use_id"),
                    Just("is_error"),
                    Just("thinking"),
                    Just("signature"),
                    Just("budget_tokens"),
                    Just("input_schema"),
                ]
                .prop_map(String::from),
                inner,
                0..5,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Whatever the body, the parser answers: a chat completions body the providers' parser
    /// reads, or a 400; never a panic.
    #[test]
    fn any_request_translates_or_is_refused(
        messages in json_value(), system in json_value(), tools in json_value(),
        tool_choice in json_value(), thinking in json_value(), max_tokens in json_value(),
    ) {
        let body = json!({
            "model": "m", "max_tokens": max_tokens, "messages": messages, "system": system,
            "tools": tools, "tool_choice": tool_choice, "thinking": thinking,
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        match parse(&bytes) {
            Ok(req) => {
                let _ = crate::openai::parse_chat(&req.chat);
                prop_assert!(serde_json::from_slice::<Value>(&req.chat).is_ok());
            }
            Err(e) => prop_assert_eq!(e.status, 400),
        }
    }

    #[test]
    fn any_bytes_do_not_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&bytes);
    }
}

// ---------------------------------------------------------------------------------------------
// read_native: what the gateway reads of a body that goes as it came.

/// The prompt as the translation counts it: [`parse`]'s chat completions form, read by the
/// providers' parser.
fn translated_prompt(body: &[u8]) -> PromptText {
    translated(body).unwrap()
}

/// The translation's prompt, when the translation and the providers' parser take the body.
fn translated(body: &[u8]) -> Option<PromptText> {
    let req = parse(body).ok()?;
    let chat = crate::openai::parse_chat(&req.chat).ok()?;
    Some(chat.prompt_text())
}

/// Bytes the translation writes of its own (see [`read_native`]): `Error: ` before the text of
/// an `is_error` tool result, the empty schema of a tool without one.
fn translation_text(body: &Value) -> u64 {
    let mut bytes = 0;
    for m in body["messages"].as_array().into_iter().flatten() {
        for b in m["content"].as_array().into_iter().flatten() {
            let text_content = matches!(
                b.get("content"),
                None | Some(Value::Null | Value::String(_))
            );
            if b["type"] == "tool_result" && b["is_error"] == true && text_content {
                bytes += "Error: ".len() as u64;
            }
        }
    }
    for t in body["tools"].as_array().into_iter().flatten() {
        if t.get("input_schema").is_none_or(Value::is_null) {
            bytes += EMPTY_SCHEMA.len() as u64;
        }
    }
    bytes
}

/// The requests of this file's translation tests: read natively, each counts the prompt its
/// translation counts, less the text the translation adds.
#[test]
fn native_prompt_is_the_translations() {
    let bodies = [
        json!({"model": "claude", "max_tokens": 100, "system": "Be brief.",
               "messages": [{"role": "user", "content": "Hi"}]}),
        claude_code_body(),
        json!({
            "model": "m", "max_tokens": 5,
            "tools": [{"name": "f", "input_schema": {"type": "object"}}, {"name": "g", "description": "no schema"}],
            "tool_choice": {"type": "tool", "name": "f"},
            "messages": [
                {"role": "user", "content": [
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain text"}},
                    {"type": "text", "text": "caf\u{e9} \"quoted\" \\ \n"},
                ]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1, 2]}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "is_error": true, "content": [
                    {"type": "text", "text": "see"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/"}},
                ]}]},
                {"role": "assistant", "content": []},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t2"},
                                             {"type": "tool_result", "tool_use_id": "t3", "content": null, "is_error": true}]},
            ],
        }),
        json!({"model": "m", "max_tokens": 5,
        "messages": [{"role": "user", "content": [
            {"type": "document", "title": "r.pdf", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
        ]}]}),
    ];
    for body in &bodies {
        let bytes = serde_json::to_vec(body).unwrap();
        let native = read_native(&bytes).unwrap();
        let full = translated_prompt(&bytes);
        assert_eq!(
            PromptText {
                bytes: native.prompt.bytes + translation_text(body),
                ..native.prompt
            },
            full,
            "{body}"
        );
        let req = parse(&bytes).unwrap();
        assert_eq!(
            (native.model, native.max_tokens, native.stream),
            (req.model, req.max_tokens, req.stream)
        );
    }
    // Claude Code's: 6 messages (system, user, assistant, two tool results, the user's text),
    // two images; "Error: " written before "no shell".
    let cc = serde_json::to_vec(&claude_code_body()).unwrap();
    let native = read_native(&cc).unwrap().prompt;
    assert_eq!(
        (native.messages, native.images, native.opaque),
        (6, 2, false)
    );
    assert_eq!(translated_prompt(&cc).bytes, native.bytes + 7);
    // A PDF's tokens are not in its text: the prompt is bounded by the body.
    assert!(
        read_native(&serde_json::to_vec(&bodies[3]).unwrap())
            .unwrap()
            .prompt
            .opaque
    );
}

/// `output_config` counts as it came; the translation counts the `response_format` it becomes.
#[test]
fn output_config_counts_as_it_came() {
    let schema = r#"{"type":"object","properties":{"a":{"type":"string"}}}"#;
    let config =
        format!(r#"{{"effort":"low","format":{{"type":"json_schema","schema":{schema}}}}}"#);
    let body = format!(
        r#"{{"model":"m","max_tokens":9,"messages":[{{"role":"user","content":"x"}}],"output_config":{config}}}"#
    );
    let native = read_native(body.as_bytes()).unwrap().prompt;
    let full = translated_prompt(body.as_bytes());
    let response_format =
        format!(r#"{{"type":"json_schema","json_schema":{{"name":"output","schema":{schema}}}}}"#);
    assert_eq!(native.bytes, 1 + config.len() as u64);
    assert_eq!(full.bytes, 1 + response_format.len() as u64);
}

/// What only an Anthropic deployment serves goes to it as it came, counted: the translation
/// refuses it.
#[test]
fn native_reads_what_only_anthropic_serves() {
    let body = json!({
        "model": "m", "max_tokens": 10,
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
        "mcp_servers": [{"type": "url", "url": "https://mcp.example.com", "name": "x"}],
        "messages": [
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "file", "file_id": "file_1"}},
                {"type": "search_result", "source": "https://s", "title": "t",
                 "content": [{"type": "text", "text": "found"}]},
            ]},
            {"role": "assistant", "content": [
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
            ]},
        ],
    });
    let bytes = serde_json::to_vec(&body).unwrap();
    assert_eq!(
        parse(&bytes).unwrap_err().param.as_deref(),
        Some("tools.0.type")
    );
    let p = read_native(&bytes).unwrap().prompt;
    let mcp = serde_json::to_string(&body["mcp_servers"]).unwrap().len();
    let found = r#"[{"text":"found","type":"text"}]"#.len();
    let server_tool_use = "web_search".len() + r#"{"query":"q"}"#.len();
    assert_eq!(
        p.bytes,
        ("web_search".len() + mcp + found + server_tool_use) as u64
    );
    assert_eq!((p.messages, p.images, p.opaque), (2, 1, false));
}

/// `model`, `max_tokens`, `messages` and `stream` are refused as the translation refuses them;
/// the rest is the deployment's to judge.
#[test]
fn native_errors_are_the_translations() {
    let refused: &[&[u8]] = &[
        br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
        br#"{"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
        br#"{"model":"","max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
        br#"{"model":5,"max_tokens":1,"messages":[{"role":"user","content":"x"}]}"#,
        br#"{"model":"m","max_tokens":1}"#,
        br#"{"model":"m","max_tokens":1,"messages":[]}"#,
        br#"{"model":"m","max_tokens":1,"messages":{"role":"user"}}"#,
        br#"{"model":"m","max_tokens":1,"messages":[5]}"#,
        br#"{"model":"m","max_tokens":1,"messages":[{"role":"user"}]}"#,
        br#"{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}"#,
        br#"{"model":"m","max_tokens":"9","messages":[{"role":"user","content":"x"}]}"#,
        br#"{"model":"m","max_tokens":-1,"messages":[{"role":"user","content":"x"}]}"#,
        br#"{"model":"m","max_tokens":1,"stream":"yes","messages":[{"role":"user","content":"x"}]}"#,
        b"{not json",
        b"[1,2]",
        b"",
    ];
    for body in refused {
        let (native, full) = (read_native(body).unwrap_err(), error(body));
        let shown = String::from_utf8_lossy(body);
        assert_eq!(native.status, 400, "{shown}");
        assert_eq!(
            (&native.param, &native.message, &native.kind),
            (&full.param, &full.message, &full.kind),
            "{shown}"
        );
    }
    let passed: &[&[u8]] = &[
        br#"{"model":"m","max_tokens":1,"messages":[{"role":"system","content":"x"}]}"#,
        br#"{"model":"m","max_tokens":1,"messages":[{"role":"user","content":5}]}"#,
        br#"{"model":"m","max_tokens":1,"temperature":1.5,"messages":[{"role":"user","content":"x"}]}"#,
        br#"{"model":"m","max_tokens":1,"tool_choice":{"type":"every"},"messages":[{"role":"user","content":"x"}]}"#,
        br#"{"model":"m","max_tokens":1,"thinking":{"type":"enabled","budget_tokens":10},"messages":[{"role":"user","content":"x"}]}"#,
        br#"{"model":"m","max_tokens":1,"system":[{"type":"image"}],"messages":[{"role":"user","content":"x"}]}"#,
        br#"{"model":"m","max_tokens":1,"tools":5,"messages":[{"role":"user","content":"x"}]}"#,
    ];
    for body in passed {
        assert_eq!(error(body).status, 400);
        assert!(
            read_native(body).is_ok(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}

fn text() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::from("")),
        "[a-z ]{0,12}".prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::from),
        Just(Value::from("tab\t\"quote\" back\\slash \u{1F600}")),
    ]
}

fn image() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(
            json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}})
        ),
        Just(json!({"type": "image", "source": {"type": "url", "url": "https://e.x/i.png"}})),
    ]
}

fn document() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(|t| json!({"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": t}})),
        Just(json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}})),
        Just(json!({"type": "document", "title": "t", "source": {"type": "url", "url": "https://e.x/d.pdf"}})),
    ]
}

fn part() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => text().prop_map(|t| json!({"type": "text", "text": t})),
        1 => text().prop_map(|t| json!({"type": "text", "text": t, "cache_control": {"type": "ephemeral"}})),
        1 => image(),
        1 => document(),
    ]
}

fn tool_result() -> impl Strategy<Value = Value> {
    let content = prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        text().prop_map(Some),
        proptest::collection::vec(part(), 0..3).prop_map(|p| Some(Value::Array(p))),
    ];
    (text(), content, proptest::option::of(any::<bool>())).prop_map(|(id, content, is_error)| {
        let mut b = json!({"type": "tool_result", "tool_use_id": id});
        if let Some(c) = content {
            b["content"] = c;
        }
        if let Some(e) = is_error {
            b["is_error"] = json!(e);
        }
        b
    })
}

fn user_turn() -> impl Strategy<Value = Value> {
    let block = prop_oneof![3 => part(), 2 => tool_result()];
    prop_oneof![
        text().prop_map(|t| json!({"role": "user", "content": t})),
        proptest::collection::vec(block, 0..4).prop_map(|b| json!({"role": "user", "content": b})),
    ]
}

fn assistant_turn() -> impl Strategy<Value = Value> {
    let block = prop_oneof![
        part(),
        (text(), text()).prop_map(|(name, arg)| json!({"type": "tool_use", "id": "toolu_1", "name": name, "input": {"a": arg, "n": [1, 2.5]}})),
        text().prop_map(|t| json!({"type": "thinking", "thinking": t, "signature": "c2ln"})),
        Just(json!({"type": "redacted_thinking", "data": "ZGF0YQ=="})),
    ];
    prop_oneof![
        text().prop_map(|t| json!({"role": "assistant", "content": t})),
        proptest::collection::vec(block, 0..4)
            .prop_map(|b| json!({"role": "assistant", "content": b})),
    ]
}

fn tool() -> impl Strategy<Value = Value> {
    (text(), proptest::option::of(text()), any::<bool>()).prop_map(|(name, description, schema)| {
        let mut t = json!({"name": name});
        if let Some(d) = description {
            t["description"] = d;
        }
        if schema {
            t["input_schema"] = json!({"type": "object", "properties": {"p": {"type": "string"}}});
        }
        t
    })
}

/// A request the translation takes: any system prompt, turns of every block it translates,
/// tools, and fields that count whole.
fn valid_request() -> impl Strategy<Value = Value> {
    let system = prop_oneof![
        Just(None),
        text().prop_map(Some),
        proptest::collection::vec(
            text().prop_map(|t| json!({"type": "text", "text": t})),
            0..3
        )
        .prop_map(|b| Some(Value::Array(b))),
    ];
    let turns = proptest::collection::vec(prop_oneof![user_turn(), assistant_turn()], 1..5);
    let tools = proptest::option::of(proptest::collection::vec(tool(), 0..3));
    let extra = proptest::option::of(prop_oneof![
        Just(("top_k", json!(40))),
        Just((
            "thinking",
            json!({"type": "enabled", "budget_tokens": 2048})
        )),
        Just(("container", json!("cntr_1"))),
        Just(("temperature", json!(0.5))),
        Just(("metadata", json!({"user_id": "u"}))),
    ]);
    (system, turns, tools, extra, 1u64..100_000, any::<bool>()).prop_map(
        |(system, turns, tools, extra, max_tokens, stream)| {
            let mut body = json!({"model": "m", "max_tokens": max_tokens, "messages": turns, "stream": stream});
            if let Some(s) = system {
                body["system"] = s;
            }
            if let Some(t) = tools {
                body["tools"] = Value::Array(t);
            }
            if let Some((k, v)) = extra {
                body[k] = v;
            }
            body
        },
    )
}

proptest! {
    /// On any request the translation takes, the native read counts the same prompt, less the
    /// text the translation writes of its own.
    #[test]
    fn native_prompt_matches_the_translation(body in valid_request()) {
        let bytes = serde_json::to_vec(&body).unwrap();
        let native = read_native(&bytes).unwrap();
        // Turns that are all empty make no chat message: the providers' parser refuses that.
        let full = translated(&bytes);
        prop_assume!(full.is_some());
        let full = full.unwrap();
        prop_assert_eq!(
            PromptText { bytes: native.prompt.bytes + translation_text(&body), ..native.prompt },
            full
        );
    }

    /// Whatever the body, the native read answers (a read or a 400), never panics; what it
    /// refuses the translation refuses, and where the translation refuses `model`, `max_tokens`,
    /// `messages` or `stream`, the native read refuses them in the same words.
    #[test]
    fn native_read_refuses_as_the_translation(
        model in json_value(), max_tokens in json_value(), messages in json_value(),
        stream in json_value(), system in json_value(), tools in json_value(),
    ) {
        let body = json!({
            "model": model, "max_tokens": max_tokens, "messages": messages, "stream": stream,
            "system": system, "tools": tools,
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        let native = read_native(&bytes);
        match (&native, parse(&bytes)) {
            (Err(n), Ok(_)) => prop_assert!(false, "refused only natively: {}", n.message),
            (Err(n), Err(f)) => {
                prop_assert_eq!(n.status, 400);
                let routing = ["model", "max_tokens", "messages", "stream"];
                if f.param.as_deref().is_some_and(|p| routing.contains(&p)) {
                    prop_assert_eq!(&n.message, &f.message);
                }
            }
            (Ok(_), Err(f)) => {
                let routing = ["model", "max_tokens", "messages", "stream"];
                prop_assert!(!f.param.as_deref().is_some_and(|p| routing.contains(&p)), "{}", f.message);
            }
            (Ok(n), Ok(f)) => {
                prop_assert_eq!((&n.model, n.max_tokens, n.stream), (&f.model, f.max_tokens, f.stream));
            }
        }
    }

    #[test]
    fn native_read_of_any_bytes_does_not_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = read_native(&bytes);
    }
}
