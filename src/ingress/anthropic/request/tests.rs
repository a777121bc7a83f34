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
#[test]
fn a_claude_code_shaped_request() {
    let body = json!({
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
    });
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
