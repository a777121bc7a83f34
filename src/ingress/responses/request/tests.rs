use super::*;
use proptest::prelude::*;
use serde_json::{json, Value};

fn chat(body: Value) -> Value {
    let bytes = serde_json::to_vec(&body).unwrap();
    let r = parse(&bytes).unwrap();
    let v: Value = serde_json::from_slice(&r.chat).unwrap();
    // What every provider translator reads must read it.
    crate::openai::parse_chat(&r.chat).unwrap();
    v
}

fn refused(body: Value) -> ApiError {
    parse(&serde_json::to_vec(&body).unwrap()).unwrap_err()
}

#[test]
fn a_string_input_with_instructions() {
    let v = chat(
        json!({"model": "m", "instructions": "Be brief.", "input": "Hi",
                        "max_output_tokens": 100, "temperature": 0.2, "top_p": 0.9,
                        "user": "u-1", "store": false, "metadata": {"a": "b"}}),
    );
    assert_eq!(
        v,
        json!({"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": "Hi"}],
               "max_tokens": 100, "temperature": 0.2, "top_p": 0.9, "user": "u-1"})
    );
}

/// The function tool round trip from OpenAI's function calling guide: the model's call and the
/// client's output go back as the assistant's tool call and a tool message.
#[test]
fn items_with_a_function_call_round_trip() {
    let v = chat(json!({
        "model": "m",
        "input": [
            {"role": "developer", "content": "Use tools."},
            {"role": "user", "content": [
                {"type": "input_text", "text": "What's the weather in Paris?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBOR", "detail": "low"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAABoXz"},
            {"type": "message", "role": "assistant", "content": [
                {"type": "output_text", "text": "Let me check.", "annotations": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
             "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "{\"temp\":18}"},
            {"type": "function_call_output", "call_id": "call_2",
             "output": [{"type": "input_text", "text": "12:00"}]},
        ],
        "tools": [{"type": "function", "name": "get_weather", "description": "Weather",
                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                   "strict": true},
                  {"type": "function", "name": "get_time"}],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": false,
        "reasoning": {"effort": "low", "summary": "auto"},
        "stream": true,
    }));
    assert_eq!(
        v["messages"],
        json!([
            {"role": "developer", "content": "Use tools."},
            {"role": "user", "content": [
                {"type": "text", "text": "What's the weather in Paris?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR", "detail": "low"}}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Let me check."}],
             "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
            {"role": "tool", "content": "{\"temp\":18}", "tool_call_id": "call_1"},
            {"role": "tool", "content": [{"type": "text", "text": "12:00"}], "tool_call_id": "call_2"},
        ])
    );
    assert_eq!(
        v["tools"],
        json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}},
               {"type": "function", "function": {"name": "get_time"}}])
    );
    assert_eq!(
        v["tool_choice"],
        json!({"type": "function", "function": {"name": "get_weather"}})
    );
    assert_eq!(v["parallel_tool_calls"], false);
    assert_eq!(v["reasoning_effort"], "low");
    assert_eq!(v["stream"], true);
    assert_eq!(v["stream_options"], json!({"include_usage": true}));
}

#[test]
fn a_call_without_text_before_it_is_its_own_assistant_turn() {
    let v = chat(json!({"model": "m", "input": [
        {"role": "user", "content": "Go"},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": "ok"}]}));
    assert_eq!(v["messages"][1]["role"], "assistant");
    assert!(v["messages"][1]["content"].is_null());
    assert_eq!(v["messages"][1]["tool_calls"][0]["id"], "c");
}

#[test]
fn text_formats_become_response_formats() {
    let schema =
        json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]});
    let v = chat(json!({"model": "m", "input": "x", "text": {"format": {
        "type": "json_schema", "name": "thing", "schema": schema, "strict": true}}}));
    assert_eq!(
        v["response_format"],
        json!({"type": "json_schema", "json_schema": {"name": "thing", "schema": schema, "strict": true}})
    );
    let v = chat(json!({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}}));
    assert_eq!(v["response_format"], json!({"type": "json_object"}));
    let v = chat(
        json!({"model": "m", "input": "x", "text": {"format": {"type": "text"}, "verbosity": "low"}}),
    );
    assert!(v.get("response_format").is_none());
}

#[test]
fn files_pass_as_chat_file_parts() {
    let v = chat(json!({"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"},
        {"type": "input_file", "file_url": "https://example.com/a.pdf"}]}]}));
    assert_eq!(
        v["messages"][0]["content"],
        json!([{"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf"}},
               {"type": "file", "file": {"file_url": "https://example.com/a.pdf"}}])
    );
}

#[test]
fn unknown_fields_are_kept_by_name() {
    let v = chat(
        json!({"model": "m", "input": "x", "seed": 7, "include": ["reasoning.encrypted_content"],
                        "truncation": "auto"}),
    );
    assert_eq!(v["seed"], 7);
    assert!(v.get("include").is_none() && v.get("truncation").is_none());
}

#[test]
fn what_only_openai_serves_is_refused_by_name() {
    let cases = [
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
            "tools[0].type",
        ),
        (
            json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (
            json!({"model": "m", "input": "x", "background": true}),
            "background",
        ),
        (
            json!({"model": "m", "input": "x", "conversation": "conv_1"}),
            "conversation",
        ),
        (
            json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}),
            "input[0].type",
        ),
        (
            json!({"model": "m", "input": [{"type": "web_search_call", "id": "ws_1"}]}),
            "input[0].type",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [
            {"type": "input_image", "file_id": "file-1"}]}]}),
            "input[0].content[0].file_id",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": {"type": "file_search"}}),
            "tool_choice.type",
        ),
    ];
    for (body, param) in cases {
        let e = refused(body.clone());
        assert_eq!((e.status, e.param.as_deref()), (400, Some(param)), "{body}");
        let what = match param {
            "previous_response_id" => "shared store",
            _ => "only by OpenAI",
        };
        assert!(e.message.contains(what), "{}", e.message);
    }
}

#[test]
fn bad_requests_name_the_field() {
    let cases = [
        (json!({"input": "x"}), "model", "missing_required_parameter"),
        (json!({"model": "m"}), "input", "missing_required_parameter"),
        (json!({"model": "m", "input": []}), "input", "invalid_value"),
        (json!({"model": "m", "input": 3}), "input", "invalid_type"),
        (
            json!({"model": "m", "input": "x", "temperature": 3}),
            "temperature",
            "invalid_value",
        ),
        (
            json!({"model": "m", "input": "x", "temperature": "hot"}),
            "temperature",
            "invalid_type",
        ),
        (
            json!({"model": "m", "input": "x", "max_output_tokens": 0}),
            "max_output_tokens",
            "invalid_type",
        ),
        (
            json!({"model": "m", "input": "x", "stream": "yes"}),
            "stream",
            "invalid_type",
        ),
        (
            json!({"model": "m", "input": [{"content": "x"}]}),
            "input[0].role",
            "missing_required_parameter",
        ),
        (
            json!({"model": "m", "input": [{"role": "tool", "content": "x"}]}),
            "input[0].role",
            "invalid_value",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
            "input[0].content[0].type",
            "invalid_value",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}),
            "input[0].call_id",
            "missing_required_parameter",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}),
            "tools[0].name",
            "missing_required_parameter",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": "any"}),
            "tool_choice",
            "invalid_value",
        ),
        (
            json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "a"}}}),
            "text.format.schema",
            "missing_required_parameter",
        ),
    ];
    for (body, param, code) in cases {
        let e = refused(body.clone());
        assert_eq!(
            (e.status, e.kind, e.param.as_deref(), e.code.as_deref()),
            (400, "invalid_request_error", Some(param), Some(code)),
            "{body}: {}",
            e.message
        );
    }
    assert_eq!(parse(b"{not json").unwrap_err().status, 400);
    assert_eq!(parse(b"[]").unwrap_err().status, 400);
}

/// JSON shaped like Responses input: the API's keys and type names, nested.
fn arb_input() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..100).prop_map(Value::from),
        prop_oneof![
            Just("user"),
            Just("assistant"),
            Just("system"),
            Just("developer"),
            Just("message"),
            Just("function_call"),
            Just("function_call_output"),
            Just("reasoning"),
            Just("input_text"),
            Just("output_text"),
            Just("input_image"),
            Just("input_file"),
            Just("refusal"),
            Just("{}"),
            Just("x"),
            Just("data:image/png;base64,iVBOR"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type"),
                    Just("role"),
                    Just("content"),
                    Just("text"),
                    Just("call_id"),
                    Just("name"),
                    Just("arguments"),
                    Just("output"),
                    Just("image_url"),
                    Just("file_data"),
                    Just("file_url"),
                    Just("refusal"),
                    Just("detail"),
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
    /// Any input at all is read or refused with a 400, never a panic; what is read is a chat
    /// request the providers' parser reads.
    #[test]
    fn any_input_is_read_or_refused(v in arb_input()) {
        let body = serde_json::to_vec(&json!({"model": "m", "input": v})).unwrap();
        match parse(&body) {
            Ok(r) => { crate::openai::parse_chat(&r.chat).map_err(|e| TestCaseError::fail(e.message))?; }
            Err(e) => prop_assert_eq!(e.status, 400),
        }
    }

    #[test]
    fn any_bytes_do_not_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Err(e) = parse(&bytes) {
            prop_assert_eq!(e.status, 400);
        }
    }
}

#[test]
fn a_native_request_is_read_without_refusing_what_openai_serves() {
    let body = json!({"model": "gpt", "stream": true, "max_output_tokens": 50, "instructions": "Be brief.",
                      "previous_response_id": "resp_1", "tools": [{"type": "web_search"}],
                      "input": [{"role": "user", "content": [
                          {"type": "input_text", "text": "hello"},
                          {"type": "input_image", "image_url": "https://x/y.png"}]},
                                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                                {"type": "function_call_output", "call_id": "c", "output": "sunny"},
                                {"type": "reasoning", "id": "rs", "encrypted_content": "gAAAA"}]});
    let bytes = serde_json::to_vec(&body).unwrap();
    let r = read_native(&bytes).unwrap();
    assert_eq!(
        (r.model.as_str(), r.stream, r.max_output_tokens),
        ("gpt", true, Some(50))
    );
    assert_eq!(
        (r.prompt.messages, r.prompt.images, r.prompt.opaque),
        (4, 1, false)
    );
    let reasoning = r#"{"type":"reasoning","id":"rs","encrypted_content":"gAAAA"}"#.len() as u64;
    let tools = r#"[{"type":"web_search"}]"#.len() as u64;
    assert_eq!(
        r.prompt.bytes,
        "\"Be brief.\"".len() as u64 + tools + 5 + 1 + 2 + 5 + reasoning
    );
    let r = read_native(br#"{"model":"gpt","input":"hi there"}"#).unwrap();
    assert_eq!((r.prompt.bytes, r.prompt.messages), (8, 1));
    assert_eq!(
        read_native(br#"{"input":"x"}"#)
            .unwrap_err()
            .param
            .as_deref(),
        Some("model")
    );
    assert_eq!(
        read_native(br#"{"model":"m","input":5}"#)
            .unwrap_err()
            .status,
        400
    );
}

/// Reasoning a Claude deployment signed goes back as `thinking_blocks` of the next assistant
/// message: signed text, and redacted data after its prefix; OpenAI's own or unsigned is dropped.
#[test]
fn signed_reasoning_goes_back_as_thinking_blocks() {
    let v = chat(json!({
        "model": "m",
        "input": [
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "reasoning", "id": "rs_1", "encrypted_content": "EqQBCkYI",
             "summary": [{"type": "summary_text", "text": "Need "}, {"type": "summary_text", "text": "the tool."}]},
            {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "redacted:EmwKAhgB"},
            {"type": "reasoning", "id": "rs_3", "summary": [{"type": "summary_text", "text": "OpenAI's"}]},
            {"type": "reasoning", "id": "rs_4", "summary": [], "encrypted_content": "gAAAAABoXz"},
            {"type": "function_call", "call_id": "toolu_1", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "toolu_1", "output": "sunny"},
            {"type": "reasoning", "id": "rs_5", "summary": [{"type": "summary_text", "text": "Done."}],
             "encrypted_content": "ErcB"},
            {"type": "message", "role": "assistant", "content": "Sunny."},
            {"role": "user", "content": "Thanks"},
        ],
    }));
    assert_eq!(
        v["messages"][1],
        json!({"role": "assistant", "content": null,
               "tool_calls": [{"id": "toolu_1", "type": "function",
                               "function": {"name": "get_weather", "arguments": "{}"}}],
               "thinking_blocks": [
                   {"type": "thinking", "thinking": "Need the tool.", "signature": "EqQBCkYI"},
                   {"type": "redacted_thinking", "data": "EmwKAhgB"}]})
    );
    assert_eq!(
        v["messages"][3]["thinking_blocks"],
        json!([{"type": "thinking", "thinking": "Done.", "signature": "ErcB"}])
    );
    assert!(v["messages"][4].get("thinking_blocks").is_none());
}
