use super::*;
use crate::openai::parse_chat;
use crate::stream::eventstream::encode;
use serde_json::{json, Value};

fn target(model: &str) -> Target {
    Target {
        model: model.into(),
        ..Default::default()
    }
}

fn ctx(include_usage: bool) -> ResponseCtx {
    ResponseCtx {
        id: "chatcmpl-abc".into(),
        created: 1_700_000_000,
        model: "bedrock-claude".into(),
        include_usage,
        api: Default::default(),
    }
}

fn translate(body: Value) -> Result<Value, ApiError> {
    translate_opts(body, false)
}

fn translate_opts(body: Value, drop_params: bool) -> Result<Value, ApiError> {
    let bytes = serde_json::to_vec(&body).unwrap();
    let req = parse_chat(&bytes)?;
    let out = BEDROCK.chat_request(
        &req,
        &target("anthropic.claude-3-5-sonnet-20241022-v2:0"),
        RequestOptions {
            drop_params,
            ..Default::default()
        },
    )?;
    Ok(serde_json::from_slice(&out).unwrap())
}

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

// --- endpoint and path -------------------------------------------------------------------------

#[test]
fn endpoint_signs_by_default_and_uses_bearer_with_an_api_key() {
    let p = Params {
        model: "anthropic.claude-3-5-sonnet-20241022-v2:0",
        aws_region: Some("us-west-2"),
        ..Default::default()
    };
    let e = BEDROCK.endpoint(&p).unwrap();
    assert_eq!(
        e.base_url,
        "https://bedrock-runtime.us-west-2.amazonaws.com"
    );
    assert!(e.headers.is_empty());
    assert_eq!(
        e.signing,
        Some(Signing {
            service: "bedrock",
            region: "us-west-2".into(),
            credentials: AwsCredentials::DefaultChain
        })
    );

    let inline = AwsCredentials::Inline {
        access_key_id: "AKIAEXAMPLE".into(),
        secret_access_key: "secret".into(),
        session_token: None,
    };
    let p = Params {
        model: "converse/amazon.nova-lite-v1:0",
        aws_region: Some("eu-central-1"),
        aws_runtime_endpoint: Some("http://127.0.0.1:9999/"),
        aws_credentials: Some(inline.clone()),
        ..Default::default()
    };
    let e = BEDROCK.endpoint(&p).unwrap();
    assert_eq!(e.base_url, "http://127.0.0.1:9999");
    assert_eq!(e.signing.unwrap().credentials, inline);

    let p = Params {
        model: "amazon.nova-lite-v1:0",
        aws_region: Some("us-east-1"),
        api_key: Some("ABSKexamplekey123456"),
        ..Default::default()
    };
    let e = BEDROCK.endpoint(&p).unwrap();
    assert_eq!(e.signing, None);
    assert_eq!(
        e.headers,
        vec![(
            "authorization".to_string(),
            "Bearer ABSKexamplekey123456".to_string()
        )]
    );
    // An API key with an explicit endpoint needs no region.
    let p = Params {
        model: "amazon.nova-lite-v1:0",
        api_key: Some("k"),
        api_base: Some("https://vpce-123.bedrock-runtime.us-east-1.vpce.amazonaws.com"),
        ..Default::default()
    };
    assert!(BEDROCK.endpoint(&p).is_ok());
}

#[test]
fn endpoint_errors_name_the_field() {
    let p = Params {
        model: "anthropic.claude-3-haiku-20240307-v1:0",
        ..Default::default()
    };
    assert!(BEDROCK
        .endpoint(&p)
        .unwrap_err()
        .contains("aws_region_name"));
    let p = Params {
        model: "anthropic.claude-3-haiku-20240307-v1:0",
        aws_runtime_endpoint: Some("http://127.0.0.1:1"),
        ..Default::default()
    };
    assert!(BEDROCK
        .endpoint(&p)
        .unwrap_err()
        .contains("aws_region_name"));
    let p = Params {
        model: "x",
        aws_region: Some("us-east-1/../evil"),
        ..Default::default()
    };
    assert!(BEDROCK
        .endpoint(&p)
        .unwrap_err()
        .contains("aws_region_name"));
    let p = Params {
        model: "invoke/anthropic.claude-v2",
        aws_region: Some("us-east-1"),
        ..Default::default()
    };
    assert!(BEDROCK.endpoint(&p).unwrap_err().contains("invoke"));
}

#[test]
fn path_encodes_the_model_id() {
    let t = target("anthropic.claude-3-5-sonnet-20241022-v2:0");
    assert_eq!(
        BEDROCK.path(&t, Operation::Chat, false),
        "/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse"
    );
    assert_eq!(
        BEDROCK.path(&t, Operation::Chat, true),
        "/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse-stream"
    );
    let mut t = target(
        "converse/arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0",
    );
    t.base_path = "/proxy".into();
    assert_eq!(
        BEDROCK.path(&t, Operation::Chat, false),
        "/proxy/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse"
    );
}

// --- request -------------------------------------------------------------------------------------

#[test]
fn request_with_system_turns_tools_results_and_images() {
    let v = translate(json!({
        "model": "bedrock-claude",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this image, and the weather in Paris?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}"), "detail": "high"}}
            ]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "tooluse_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "tooluse_2", "type": "function", "function": {"name": "get_time", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "tooluse_1", "content": "18C, sunny"},
            {"role": "tool", "tool_call_id": "tooluse_2", "content": [{"type": "text", "text": "14:00"}]},
            {"role": "user", "content": "Thanks."},
            {"role": "user", "content": "And tomorrow?"}
        ],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "get_time"}}
        ],
        "tool_choice": "auto",
        "temperature": 0.3, "top_p": 0.9, "max_tokens": 256, "stop": ["END", ""], "user": "alice@example.com"
    }))
    .unwrap();
    assert_eq!(
        v["system"],
        json!([{"text": "You are terse."}, {"text": "Answer in French."}])
    );
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3, "{v:#}");
    assert_eq!(msgs[0]["role"], "user");
    assert_eq!(
        msgs[0]["content"][0]["text"],
        "What is in this image, and the weather in Paris?"
    );
    assert_eq!(
        msgs[0]["content"][1],
        json!({"image": {"format": "png", "source": {"bytes": PNG}}})
    );
    assert_eq!(msgs[1]["role"], "assistant");
    assert_eq!(
        msgs[1]["content"],
        json!([
            {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}},
            {"toolUse": {"toolUseId": "tooluse_2", "name": "get_time", "input": {}}}
        ])
    );
    // Both tool results and the two user messages form one user turn.
    assert_eq!(
        msgs[2],
        json!({"role": "user", "content": [
            {"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "18C, sunny"}]}},
            {"toolResult": {"toolUseId": "tooluse_2", "content": [{"text": "14:00"}]}},
            {"text": "Thanks."},
            {"text": "And tomorrow?"}
        ]})
    );
    assert_eq!(
        v["inferenceConfig"],
        json!({"maxTokens": 256, "temperature": 0.3, "topP": 0.9, "stopSequences": ["END"]})
    );
    assert_eq!(
        v["toolConfig"],
        json!({
            "tools": [
                {"toolSpec": {"name": "get_weather", "description": "Weather for a city", "inputSchema": {"json":
                    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}},
                {"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object", "properties": {}}}}}
            ],
            "toolChoice": {"auto": {}}
        })
    );
    assert_eq!(v["requestMetadata"], json!({"user": "alice@example.com"}));
    assert!(v.get("model").is_none());
}

#[test]
fn minimal_request_has_only_messages() {
    let v =
        translate(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})).unwrap();
    assert_eq!(
        v,
        json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})
    );
    let v = translate(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
        "max_completion_tokens": 9, "max_tokens": 5, "n": 1, "parallel_tool_calls": true, "stream": true,
        "stream_options": {"include_usage": true}, "user": "bob#1 (ops)"}))
    .unwrap();
    assert_eq!(v["inferenceConfig"], json!({"maxTokens": 9}));
    assert_eq!(v["requestMetadata"]["user"], "bob_1 _ops_");
}

#[test]
fn cache_control_becomes_a_cache_point_after_what_it_marks() {
    let cc = json!({"type": "ephemeral"});
    let out = translate(json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": [
                {"type": "text", "text": "S1"},
                {"type": "text", "text": "S2", "cache_control": cc}]},
            {"role": "user", "content": [
                {"type": "text", "text": "U1", "cache_control": cc},
                {"type": "text", "text": "U2"}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "R", "cache_control": cc},
            {"role": "user", "content": "plain", "cache_control": cc}],
        "tools": [
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}, "cache_control": cc},
            {"type": "function", "function": {"name": "g"}}]
    }))
    .unwrap();
    let point = json!({"cachePoint": {"type": "default"}});
    assert_eq!(
        out["system"],
        json!([{"text": "S1"}, {"text": "S2"}, point])
    );
    assert_eq!(
        out["messages"][0]["content"],
        json!([{"text": "U1"}, point, {"text": "U2"}])
    );
    assert_eq!(
        out["messages"][2]["content"],
        json!([{"toolResult": {"toolUseId": "t1", "content": [{"text": "R"}]}}, point, {"text": "plain"}, point])
    );
    assert!(!out["messages"][1].to_string().contains("cachePoint"));
    let tools = &out["toolConfig"]["tools"];
    assert_eq!(tools[1], point);
    assert_eq!(tools[0]["toolSpec"]["name"], "f");
    assert_eq!(tools[2]["toolSpec"]["name"], "g");
    // Without cache_control, none.
    let plain =
        translate(json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})).unwrap();
    assert!(!plain.to_string().contains("cachePoint"));
}

#[test]
fn documents_are_bytes_with_a_safe_name() {
    let out = translate(json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "Q3  report: v2.final.pdf"}},
        {"type": "file", "file": {"file_data": "data:text/csv;base64,YSxi"}},
        {"type": "text", "text": "compare"}]}]}))
    .unwrap();
    assert_eq!(
        out["messages"][0]["content"],
        json!([
            {"document": {"format": "pdf", "name": "Q3 report- v2-final", "source": {"bytes": "JVBE"}}},
            {"document": {"format": "csv", "name": "document-0-1", "source": {"bytes": "YSxi"}}},
            {"text": "compare"},
        ])
    );
    for (file, needle) in [
        (
            json!({"file_url": "https://example.com/a.pdf"}),
            "bytes only",
        ),
        (json!({"file_id": "file-abc"}), "bytes only"),
        (
            json!({"file_data": "data:application/zip;base64,UEsD"}),
            "application/zip",
        ),
    ] {
        let e = translate(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "file", "file": file}]}]}),
        )
        .unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.message.contains("messages[0].content[0].file") && e.message.contains(needle),
            "{}",
            e.message
        );
    }
    assert_eq!(document_name(Some("a/b\\c.txt"), 0, 0), "a-b-c");
    assert_eq!(document_name(Some("...."), 2, 3), "---");
    assert_eq!(document_name(Some(" "), 2, 3), "document-2-3");
}

#[test]
fn beta_flags_claude_takes_go_in_additional_fields() {
    assert_eq!(
        claude_version("anthropic.claude-3-5-sonnet-20241022-v2:0"),
        Some((3, 5))
    );
    assert_eq!(
        claude_version("us.anthropic.claude-sonnet-4-20250514-v1:0"),
        Some((4, 0))
    );
    assert_eq!(
        claude_version("global.anthropic.claude-opus-4-5-20251101-v1:0"),
        Some((4, 5))
    );
    assert_eq!(
        claude_version("anthropic.claude-3-haiku-20240307-v1:0"),
        Some((3, 0))
    );
    assert_eq!(claude_version("amazon.nova-lite-v1:0"), None);
    let sonnet4 = "anthropic.claude-sonnet-4-20250514-v1:0";
    let header = "interleaved-thinking-2025-05-14, claude-code-20250219,effort-2025-11-24";
    let mask = crate::providers::anthropic_beta(header, &BEDROCK, sonnet4, "d");
    let body =
        serde_json::to_vec(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
            .unwrap();
    let req = parse_chat(&body).unwrap();
    let out = BEDROCK
        .chat_request(
            &req,
            &target(sonnet4),
            RequestOptions {
                drop_params: false,
                anthropic_beta: mask,
            },
        )
        .unwrap();
    let out: Value = serde_json::from_slice(&out).unwrap();
    // Claude Code's own flag and Opus 4.5's effort are not Sonnet 4's: dropped.
    assert_eq!(
        out["additionalModelRequestFields"],
        json!({"anthropic_beta": ["interleaved-thinking-2025-05-14"]})
    );
    // Claude 3.5 has no interleaved thinking; Opus 4.5 has effort; other models take none.
    let v35 = "anthropic.claude-3-5-sonnet-20241022-v2:0";
    assert_eq!(
        crate::providers::anthropic_beta(header, &BEDROCK, v35, "d"),
        0
    );
    let opus = "anthropic.claude-opus-4-5-20251101-v1:0";
    let mask = crate::providers::anthropic_beta(header, &BEDROCK, opus, "d");
    let names = crate::providers::beta_flags(claude_betas(opus), mask);
    assert_eq!(
        names,
        ["interleaved-thinking-2025-05-14", "effort-2025-11-24"]
    );
    assert_eq!(
        crate::providers::anthropic_beta(header, &BEDROCK, "amazon.nova-lite-v1:0", "d"),
        0
    );
}

#[test]
fn tool_choice_variants() {
    let tools =
        json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]);
    let with = |choice: Value| {
        translate(json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": choice}))
            .unwrap()
    };
    assert_eq!(
        with(json!("required"))["toolConfig"]["toolChoice"],
        json!({"any": {}})
    );
    assert_eq!(
        with(json!({"type": "function", "function": {"name": "f"}}))["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "f"}})
    );
    // "none": the model is not offered the tools at all.
    assert!(with(json!("none")).get("toolConfig").is_none());
    let v = translate(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools}),
    )
    .unwrap();
    assert!(v["toolConfig"].get("toolChoice").is_none());
    assert_eq!(v["toolConfig"]["tools"][0]["toolSpec"]["name"], "f");
}

#[test]
fn tool_history_always_comes_with_a_tool_config() {
    let history = json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"}
    ]);
    let v = translate(json!({"model": "m", "messages": history})).unwrap();
    assert_eq!(
        v["toolConfig"],
        json!({"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]})
    );
    let v = translate(
        json!({"model": "m", "messages": history, "tool_choice": "none",
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "d"}}]}),
    )
    .unwrap();
    assert_eq!(v["toolConfig"]["tools"][0]["toolSpec"]["description"], "d");
    assert!(v["toolConfig"].get("toolChoice").is_none());
}

#[test]
fn json_mode_forces_the_json_tool() {
    let v = translate(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_object"}}),
    )
    .unwrap();
    assert_eq!(v["toolConfig"]["tools"][0]["toolSpec"]["name"], JSON_TOOL);
    assert_eq!(
        v["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"],
        json!({"type": "object"})
    );
    assert_eq!(
        v["toolConfig"]["toolChoice"],
        json!({"tool": {"name": JSON_TOOL}})
    );
    let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]});
    let v = translate(json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": true}}}))
    .unwrap();
    assert_eq!(
        v["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"],
        schema
    );
    // With client tools too, the model must answer through one of them or the JSON tool.
    let v = translate(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "response_format": {"type": "json_object"}}),
    )
    .unwrap();
    assert_eq!(v["toolConfig"]["tools"].as_array().unwrap().len(), 2);
    assert_eq!(v["toolConfig"]["toolChoice"], json!({"any": {}}));
    assert!(translate(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "response_format": {"type": "text"}})
    )
    .unwrap()
    .get("toolConfig")
    .is_none());
}

#[test]
fn parallel_tool_calls_is_accepted_and_dropped() {
    // Converse has no switch for it; LangChain's structured output sends `false` with one tool,
    // agents send it with several.
    let weather = json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}});
    let time = json!({"type": "function", "function": {"name": "get_time"}});
    for (tools, choice) in [
        (json!([]), json!(null)),
        (
            json!([weather.clone()]),
            json!({"type": "function", "function": {"name": "get_weather"}}),
        ),
        (json!([weather, time]), json!("auto")),
    ] {
        for parallel in [false, true] {
            let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                "parallel_tool_calls": parallel});
            if tools.as_array().is_some_and(|t| !t.is_empty()) {
                body["tools"] = tools.clone();
                body["tool_choice"] = choice.clone();
            }
            let v = translate(body).unwrap();
            assert!(!v.to_string().contains("parallel"), "{v}");
            assert!(v.get("additionalModelRequestFields").is_none());
        }
    }
}

#[test]
fn refusals_name_the_parameter() {
    let base = |extra: Value| {
        let mut b = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    for (extra, param) in [
        (json!({"frequency_penalty": 0.5}), "frequency_penalty"),
        (json!({"seed": 7}), "seed"),
        (json!({"logit_bias": {"1": 1}}), "logit_bias"),
        (json!({"n": 2}), "n"),
    ] {
        let e = translate(base(extra.clone())).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.param.as_deref(), Some(param), "{}", e.message);
        assert_eq!(e.code.as_deref(), Some("unsupported_parameter"));
        // With drop_params the request goes through without them.
        let v = translate_opts(base(extra), true).unwrap();
        assert!(v.get(param).is_none());
    }
    let cases = [
        json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]),
        json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]}]),
        json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}]),
        json!([{"role": "tool", "content": "no id"}]),
        json!([{"role": "function", "name": "f", "content": "old"}]),
        json!([{"role": "assistant", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]),
        json!([{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]),
    ];
    for messages in cases {
        let e = translate(json!({"model": "m", "messages": messages})).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.param.as_deref(), Some("messages"), "{}", e.message);
    }
    let e = translate(
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": JSON_TOOL}}]}),
    )
    .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("tools"));
}

#[test]
fn http_image_error_says_bytes_only() {
    let e = translate(
        json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}),
    )
    .unwrap_err();
    assert!(e.message.contains("data URL"), "{}", e.message);
}

// --- response ------------------------------------------------------------------------------------

fn respond(body: Value) -> (Value, Usage) {
    let t = BEDROCK
        .chat_response(&serde_json::to_vec(&body).unwrap(), &ctx(false))
        .unwrap();
    (
        serde_json::from_slice(&t.body).unwrap(),
        t.usage.unwrap_or_default(),
    )
}

#[test]
fn text_response_with_cache_usage() {
    let (v, usage) = respond(json!({
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "Let me think.", "signature": "sig"}}},
            {"text": "Bonjour "}, {"text": "!"}
        ]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 12, "outputTokens": 4, "totalTokens": 66, "cacheReadInputTokens": 30, "cacheWriteInputTokens": 20},
        "metrics": {"latencyMs": 321}
    }));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["id"], "chatcmpl-abc");
    assert_eq!(v["model"], "bedrock-claude");
    assert_eq!(v["choices"][0]["message"]["content"], "Bonjour !");
    assert_eq!(
        v["choices"][0]["message"]["reasoning_content"],
        "Let me think."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 62);
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(v["usage"]["total_tokens"], 66);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 30);
    assert_eq!(usage.cache_creation_tokens, 20);
    assert_eq!(usage.cached_tokens, 30);
}

#[test]
fn tool_call_response() {
    let (v, _) = respond(json!({
        "output": {"message": {"role": "assistant", "content": [
            {"text": "Let me check."},
            {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "get_weather", "input": {"city": "Paris"}}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 100, "outputTokens": 20, "totalTokens": 120}
    }));
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], "Let me check.");
    assert_eq!(m["tool_calls"][0]["id"], "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q");
    assert_eq!(m["tool_calls"][0]["type"], "function");
    assert_eq!(m["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(
            m["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap()
        )
        .unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let (v, _) = respond(json!({
        "output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "t", "name": "f", "input": {}}}]}},
        "stopReason": "tool_use", "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}
    }));
    assert!(v["choices"][0]["message"]["content"].is_null());
}

#[test]
fn json_mode_response_is_content() {
    let (v, _) = respond(json!({
        "output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "t", "name": JSON_TOOL, "input": {"answer": "Paris"}}}]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15}
    }));
    let m = &v["choices"][0]["message"];
    assert_eq!(
        serde_json::from_str::<Value>(m["content"].as_str().unwrap()).unwrap(),
        json!({"answer": "Paris"})
    );
    assert!(m.get("tool_calls").is_none());
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[test]
fn finish_reasons() {
    for (stop, expected) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("something_new", "stop"),
    ] {
        let (v, _) = respond(
            json!({"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
            "stopReason": stop, "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}}),
        );
        assert_eq!(v["choices"][0]["finish_reason"], expected, "{stop}");
    }
}

#[test]
fn unreadable_response_is_a_bad_gateway() {
    for body in [&b"<html>"[..], b"[]", b"{\"usage\":{\"inputTokens\":-1}}"] {
        let e = BEDROCK.chat_response(body, &ctx(false)).unwrap_err();
        assert_eq!(e.status, 502);
    }
}

// --- errors ----------------------------------------------------------------------------------------

#[test]
fn errors_map_by_type() {
    let cases: &[(u16, &str, &str, u16, &str)] = &[
        (
            400,
            "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            "Malformed input request: #: extraneous key [foo] is not permitted",
            400,
            "invalid_request_error",
        ),
        (
            403,
            "AccessDeniedException:http://internal.amazon.com/coral/com.amazon.coral.service/",
            "You don't have access to the model with the specified model ID.",
            403,
            "permission_error",
        ),
        (
            404,
            "ResourceNotFoundException",
            "Model not found.",
            404,
            "invalid_request_error",
        ),
        (
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
            429,
            "rate_limit_error",
        ),
        (
            400,
            "ServiceQuotaExceededException",
            "Quota exceeded.",
            429,
            "rate_limit_error",
        ),
        (
            408,
            "ModelTimeoutException",
            "Model has timed out in processing the request.",
            408,
            "timeout_error",
        ),
        (
            500,
            "InternalServerException",
            "Internal server error",
            500,
            "api_error",
        ),
        (
            503,
            "ServiceUnavailableException",
            "Bedrock is unable to process your request.",
            503,
            "api_error",
        ),
        (
            429,
            "ModelNotReadyException",
            "Model is not ready for inference.",
            503,
            "api_error",
        ),
        (
            424,
            "ModelErrorException",
            "The model returned an error.",
            500,
            "api_error",
        ),
    ];
    for (status, kind, message, want_status, want_kind) in cases {
        let body = json!({"message": message}).to_string();
        let e = BEDROCK.error(*status, Some(kind), body.as_bytes());
        assert_eq!(e.status, *want_status, "{kind}");
        assert_eq!(
            BEDROCK.error_status(*status, Some(kind)),
            *want_status,
            "{kind}"
        );
        assert_eq!(e.kind, *want_kind, "{kind}");
        assert_eq!(e.message, *message);
    }
}

#[test]
fn context_overflow_and_unknown_shapes() {
    let e = BEDROCK.error(
        400,
        Some("ValidationException"),
        br#"{"message":"Input is too long for requested model."}"#,
    );
    assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
    let e = BEDROCK.error(
        400,
        Some("ValidationException"),
        br#"{"message":"The model returned the following errors: prompt is too long: 210000 tokens > 200000 maximum"}"#,
    );
    assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
    // Type from the body when the header is missing; capitalized Message.
    let e = BEDROCK.error(
        403,
        None,
        br#"{"__type":"com.amazon.coral.service#AccessDeniedException","Message":"Authentication failed: Please make sure your API Key is valid."}"#,
    );
    assert_eq!((e.status, e.kind), (403, "permission_error"));
    assert!(e
        .message
        .starts_with("Bedrock rejected the gateway's Bedrock API key (Authentication failed"));
    assert_eq!(e.code.as_deref(), Some("gateway_credentials_rejected"));
    let e = BEDROCK.error(502, None, b"<html>Bad Gateway</html>");
    assert_eq!(e.status, 502);
    let e = BEDROCK.error(418, Some("WeirdException"), b"{}");
    assert_eq!(e.status, 418);
    assert!(e.message.contains("WeirdException"));
    let e = BEDROCK.error(529, None, br#"{"message":"overloaded"}"#);
    assert_eq!(e.status, 503);
    assert_eq!(BEDROCK.error_status(502, None), 502);
    assert_eq!(BEDROCK.error_status(200, Some("")), 502);
}

#[test]
fn refused_gateway_credentials_are_a_502_that_says_so() {
    // AWS's answers for unknown, wrong, expired or missing credentials, as the header types them.
    let coral = ":http://internal.amazon.com/coral/com.amazon.coral.service/";
    let cases: &[(u16, &str, &str)] = &[
        (
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
        (
            403,
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        ),
        (
            403,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ),
        (
            400,
            "IncompleteSignatureException",
            "Authorization header requires 'Credential' parameter.",
        ),
        (
            403,
            "ExpiredTokenException",
            "The security token included in the request is expired",
        ),
    ];
    for (status, kind, message) in cases {
        let header = format!("{kind}{coral}");
        assert_eq!(BEDROCK.error_status(*status, Some(&header)), 502, "{kind}");
        assert!(BEDROCK.rejects_gateway_credentials(*status, Some(&header)));
        let body = json!({"message": message}).to_string();
        let e = BEDROCK.error(*status, Some(&header), body.as_bytes());
        assert_eq!((e.status, e.kind), (502, "api_error"), "{kind}");
        assert_eq!(e.code.as_deref(), Some("gateway_credentials_rejected"));
        assert!(
            e.message
                .starts_with("Bedrock rejected the gateway's AWS credentials"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains(&format!("({kind}: {message})")),
            "{}",
            e.message
        );
        assert!(e.message.contains("not the problem"));
        // The type from the body alone (no header) reads the same.
        let typed =
            json!({"__type": format!("com.amazon.coral.service#{kind}"), "message": message});
        let e = BEDROCK.error(*status, None, typed.to_string().as_bytes());
        assert_eq!(e.status, 502, "{kind}");
    }
    // A bare 401 can only be about the gateway's credentials: the client's never reach Bedrock.
    assert_eq!(BEDROCK.error_status(401, None), 502);
    assert!(BEDROCK.rejects_gateway_credentials(401, None));
    let e = BEDROCK.error(401, None, br#"{"message":"Unauthorized"}"#);
    assert_eq!(
        (e.status, e.code.as_deref()),
        (502, Some("gateway_credentials_rejected"))
    );
    // Everything else is not about the credentials.
    assert!(!BEDROCK.rejects_gateway_credentials(403, Some("AccessDeniedException")));
    assert!(!BEDROCK.rejects_gateway_credentials(429, Some("ThrottlingException")));
    assert!(!BEDROCK.rejects_gateway_credentials(403, None));
    assert!(!crate::providers::openai::OPENAI.rejects_gateway_credentials(401, None));
}

#[test]
fn errors_hide_credentials() {
    let body = json!({"message": "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\nThe Canonical String for this request should have been\n'POST\n/model/x/converse\n\nhost:bedrock-runtime.us-east-1.amazonaws.com\nx-amz-security-token:IQoJb3JpZ2luX2VjEXAMPLETOKEN\n'"});
    let e = BEDROCK.error(
        403,
        Some("InvalidSignatureException"),
        body.to_string().as_bytes(),
    );
    assert_eq!(e.status, 502);
    assert_eq!(e.code.as_deref(), Some("gateway_credentials_rejected"));
    assert!(!e.message.contains("IQoJ"), "{}", e.message);
    assert!(e
        .message
        .contains("(InvalidSignatureException: The request signature we calculated"));
    let e = BEDROCK.error(
        403,
        Some("AccessDeniedException"),
        br#"{"message":"Key ABSKQmVkcm9ja0FQSUtleS1leGFtcGxl= or bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29t and AKIAIOSFODNN7EXAMPLE are invalid"}"#,
    );
    assert!(!e.message.contains("ABSKQmVk"), "{}", e.message);
    assert!(!e.message.contains("YmVkcm9jay5h"), "{}", e.message);
    assert!(!e.message.contains("AKIAIOSFODNN7"), "{}", e.message);
}

// --- stream ------------------------------------------------------------------------------------------

fn event(kind: &str, payload: Value) -> Vec<u8> {
    let mut p = payload;
    // Bedrock pads event payloads with a "p" field.
    p["p"] = json!("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVW");
    encode(
        &[
            (":event-type", kind),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        p.to_string().as_bytes(),
    )
}

fn exception(kind: &str, message: &str) -> Vec<u8> {
    encode(
        &[
            (":exception-type", kind),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        json!({"message": message}).to_string().as_bytes(),
    )
}

fn text_stream() -> Vec<u8> {
    let mut s = Vec::new();
    s.extend(event("messageStart", json!({"role": "assistant"})));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hmm"}}}),
    ));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}}),
    ));
    s.extend(event("contentBlockStop", json!({"contentBlockIndex": 0})));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 1, "delta": {"text": "Hello"}}),
    ));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 1, "delta": {"text": ", wörld ✓"}}),
    ));
    s.extend(event("contentBlockStop", json!({"contentBlockIndex": 1})));
    s.extend(event("messageStop", json!({"stopReason": "end_turn"})));
    s.extend(event("metadata", json!({"usage": {"inputTokens": 9, "outputTokens": 3, "totalTokens": 17, "cacheReadInputTokens": 5}, "metrics": {"latencyMs": 120}})));
    s
}

fn tool_stream() -> Vec<u8> {
    let mut s = Vec::new();
    s.extend(event("messageStart", json!({"role": "assistant"})));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"text": "Checking."}}),
    ));
    s.extend(event("contentBlockStop", json!({"contentBlockIndex": 0})));
    s.extend(event("contentBlockStart", json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_a", "name": "get_weather"}}})));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\":"}}}),
    ));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"Paris\"}"}}}),
    ));
    s.extend(event("contentBlockStop", json!({"contentBlockIndex": 1})));
    s.extend(event("contentBlockStart", json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tooluse_b", "name": "get_time"}}})));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{}"}}}),
    ));
    s.extend(event("contentBlockStop", json!({"contentBlockIndex": 2})));
    s.extend(event("messageStop", json!({"stopReason": "tool_use"})));
    s.extend(event("metadata", json!({"usage": {"inputTokens": 50, "outputTokens": 30, "totalTokens": 80}, "metrics": {"latencyMs": 300}})));
    s
}

fn run_stream(parts: &[&[u8]], include_usage: bool) -> (Vec<u8>, Usage) {
    let mut t = BEDROCK.chat_stream(ctx(include_usage));
    let mut out = Vec::new();
    for p in parts {
        t.feed(p, &mut out);
    }
    t.finish(&mut out);
    (out, t.final_usage().unwrap_or_default())
}

fn events(out: &[u8]) -> Vec<Value> {
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(text.ends_with("\n\n"), "{text}");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let data = e.strip_prefix("data: ").unwrap();
            if data == "[DONE]" {
                json!("[DONE]")
            } else {
                serde_json::from_str(data).unwrap()
            }
        })
        .collect()
}

fn content_of(evs: &[Value]) -> String {
    evs.iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[test]
fn text_stream_translates_at_every_split() {
    let s = text_stream();
    let (whole, usage) = run_stream(&[&s], true);
    let evs = events(&whole);
    assert_eq!(evs[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(evs[0]["object"], "chat.completion.chunk");
    assert_eq!(evs[0]["model"], "bedrock-claude");
    assert_eq!(content_of(&evs), "Hello, wörld ✓");
    let reasoning: String = evs
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert_eq!(reasoning, "hmm");
    let finish: Vec<&Value> = evs
        .iter()
        .filter(|e| {
            !e["choices"][0]["finish_reason"].is_null()
                && e["choices"].as_array().is_some_and(|c| !c.is_empty())
        })
        .collect();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["choices"][0]["finish_reason"], "stop");
    let last_chunk = &evs[evs.len() - 2];
    assert_eq!(last_chunk["choices"], json!([]));
    assert_eq!(last_chunk["usage"]["prompt_tokens"], 14);
    assert_eq!(
        last_chunk["usage"]["prompt_tokens_details"]["cached_tokens"],
        5
    );
    assert_eq!(evs.last().unwrap(), &json!("[DONE]"));
    assert_eq!(usage.completion_tokens, 3);

    for i in 0..=s.len() {
        assert_eq!(
            run_stream(&[&s[..i], &s[i..]], true).0,
            whole,
            "split at {i}"
        );
    }
    let bytes: Vec<&[u8]> = s.chunks(1).collect();
    assert_eq!(run_stream(&bytes, true).0, whole);

    // Without include_usage: no usage chunk, still one [DONE].
    let (plain, _) = run_stream(&[&s], false);
    let evs = events(&plain);
    assert!(evs.iter().all(|e| e.get("usage").is_none()));
    assert_eq!(
        String::from_utf8(plain).unwrap().matches("[DONE]").count(),
        1
    );
}

#[test]
fn tool_stream_reassembles_arguments() {
    let s = tool_stream();
    let (whole, usage) = run_stream(&[&s], false);
    let evs = events(&whole);
    assert_eq!(content_of(&evs), "Checking.");
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for e in &evs {
        for tc in e["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = tc["index"].as_u64().unwrap() as usize;
            if calls.len() <= i {
                calls.push((
                    tc["id"].as_str().unwrap().into(),
                    tc["function"]["name"].as_str().unwrap().into(),
                    String::new(),
                ));
            }
            calls[i]
                .2
                .push_str(tc["function"]["arguments"].as_str().unwrap());
        }
    }
    assert_eq!(
        calls,
        vec![
            (
                "tooluse_a".into(),
                "get_weather".into(),
                "{\"city\":\"Paris\"}".into()
            ),
            ("tooluse_b".into(), "get_time".into(), "{}".into())
        ]
    );
    assert!(whole
        .windows(30)
        .any(|w| w == b"\"finish_reason\":\"tool_calls\"}]"));
    assert_eq!(usage.prompt_tokens, 50);
    for i in 0..=s.len() {
        assert_eq!(
            run_stream(&[&s[..i], &s[i..]], false).0,
            whole,
            "split at {i}"
        );
    }
}

#[test]
fn json_mode_stream_is_content() {
    let mut s = Vec::new();
    s.extend(event("messageStart", json!({"role": "assistant"})));
    s.extend(event("contentBlockStart", json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t", "name": JSON_TOOL}}})));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{\"answer\""}}}),
    ));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": ":\"Paris\"}"}}}),
    ));
    s.extend(event("contentBlockStop", json!({"contentBlockIndex": 0})));
    s.extend(event("messageStop", json!({"stopReason": "tool_use"})));
    s.extend(event(
        "metadata",
        json!({"usage": {"inputTokens": 5, "outputTokens": 5, "totalTokens": 10}}),
    ));
    let (out, _) = run_stream(&[&s], false);
    let evs = events(&out);
    assert_eq!(content_of(&evs), "{\"answer\":\"Paris\"}");
    assert!(!String::from_utf8_lossy(&out).contains("tool_calls"));
    assert!(String::from_utf8_lossy(&out).contains("\"finish_reason\":\"stop\""));
}

#[test]
fn exception_mid_stream_is_an_error_event() {
    let mut s = Vec::new();
    s.extend(event("messageStart", json!({"role": "assistant"})));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"text": "Partial"}}),
    ));
    s.extend(exception(
        "throttlingException",
        "Too many tokens, please wait before trying again.",
    ));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"text": "ignored"}}),
    ));
    let (out, _) = run_stream(&[&s], true);
    let evs = events(&out);
    assert_eq!(content_of(&evs), "Partial");
    let err = evs.last().unwrap();
    assert_eq!(err["error"]["type"], "rate_limit_error");
    assert_eq!(
        err["error"]["message"],
        "Too many tokens, please wait before trying again."
    );
    assert!(!String::from_utf8_lossy(&out).contains("[DONE]"));
    for (kind, want) in [
        ("modelStreamErrorException", "api_error"),
        ("validationException", "invalid_request_error"),
        ("internalServerException", "api_error"),
        ("serviceUnavailableException", "api_error"),
    ] {
        let (out, _) = run_stream(&[&exception(kind, "boom")], false);
        assert_eq!(
            events(&out).last().unwrap()["error"]["type"],
            want,
            "{kind}"
        );
    }
    // A protocol-level error message.
    let frame = encode(
        &[
            (":message-type", "error"),
            (":error-code", "InternalFailure"),
            (":error-message", "An internal error occurred"),
        ],
        b"",
    );
    let (out, _) = run_stream(&[&frame], false);
    assert!(events(&out).last().unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("internal error"));
}

#[test]
fn corrupt_or_truncated_streams_end_with_an_error() {
    let mut s = text_stream();
    let at = s.len() / 2;
    s[at] ^= 0x55;
    let (out, _) = run_stream(&[&s], false);
    let evs = events(&out);
    assert_eq!(evs.last().unwrap()["error"]["code"], "upstream_error");
    assert!(!String::from_utf8_lossy(&out).contains("[DONE]"));

    let s = text_stream();
    let cut = s.len() - 5;
    let (out, _) = run_stream(&[&s[..cut]], false);
    // The finish chunk came, but the metadata frame was cut short: the stream is incomplete.
    let evs = events(&out);
    assert!(String::from_utf8_lossy(&out).contains("\"finish_reason\":\"stop\""));
    assert_eq!(evs.last().unwrap()["error"]["code"], "upstream_error");

    let mut s = Vec::new();
    s.extend(event("messageStart", json!({"role": "assistant"})));
    s.extend(event(
        "contentBlockDelta",
        json!({"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
    ));
    let (out, _) = run_stream(&[&s], false);
    assert_eq!(events(&out).last().unwrap()["error"]["type"], "api_error");
}

// --- property tests ----------------------------------------------------------------------------------

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| json!(f)),
            "[a-zA-Z0-9 _:{}\"]{0,12}".prop_map(Value::String),
            prop_oneof![
                Just("text"),
                Just("toolUse"),
                Just("input"),
                Just("stopReason"),
                Just("end_turn"),
                Just("tool_use"),
                Just("usage"),
                Just("inputTokens"),
                Just(JSON_TOOL),
                Just("message")
            ]
            .prop_map(|s| Value::String(s.into())),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop_oneof![
                            Just("output".to_string()),
                            Just("message".to_string()),
                            Just("content".to_string()),
                            Just("text".to_string()),
                            Just("toolUse".to_string()),
                            Just("toolUseId".to_string()),
                            Just("name".to_string()),
                            Just("input".to_string()),
                            Just("stopReason".to_string()),
                            Just("usage".to_string()),
                            Just("inputTokens".to_string()),
                            Just("outputTokens".to_string()),
                            Just("reasoningContent".to_string()),
                            Just("reasoningText".to_string()),
                            Just("contentBlockIndex".to_string()),
                            Just("delta".to_string()),
                            Just("start".to_string()),
                            Just("__type".to_string()),
                            "[a-z]{1,6}"
                        ],
                        inner
                    ),
                    0..5
                )
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn event_names() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("messageStart"),
            Just("contentBlockStart"),
            Just("contentBlockDelta"),
            Just("contentBlockStop"),
            Just("messageStop"),
            Just("metadata"),
            Just("other")
        ]
    }

    fn arb_frame() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (event_names(), arb_json()).prop_map(|(e, v)| encode(
                &[(":event-type", e), (":message-type", "event")],
                v.to_string().as_bytes()
            )),
            ("[a-zA-Z]{0,20}", arb_json()).prop_map(|(e, v)| encode(
                &[(":exception-type", &e), (":message-type", "exception")],
                v.to_string().as_bytes()
            )),
            prop::collection::vec(any::<u8>(), 0..40),
        ]
    }

    fn check_sse(out: &[u8]) {
        let text = String::from_utf8(out.to_vec()).expect("utf-8 output");
        for e in text.split("\n\n").filter(|e| !e.is_empty()) {
            let data = e.strip_prefix("data: ").expect("data line");
            if data != "[DONE]" {
                serde_json::from_str::<Value>(data).expect("JSON event");
            }
        }
        assert!(text.matches("[DONE]").count() <= 1);
    }

    fn arb_message() -> impl Strategy<Value = Value> {
        let text = "[a-zA-Z ]{0,8}";
        prop_oneof![
            (prop_oneof![Just("system"), Just("developer"), Just("user"), Just("assistant")], text)
                .prop_map(|(r, t)| json!({"role": r, "content": t})),
            (text, prop_oneof![Just("data:image/png;base64,AAAA"), Just("data:image/webp;base64,AA"), Just("https://x/y.png"), Just("data:text/plain;base64,AA")])
                .prop_map(|(t, u)| json!({"role": "user", "content": [{"type": "text", "text": t}, {"type": "image_url", "image_url": {"url": u}}]})),
            (text, prop_oneof![Just("{}"), Just("{\"a\":1}"), Just(""), Just("[1"), Just("7")])
                .prop_map(|(n, a)| json!({"role": "assistant", "content": null, "tool_calls": [{"id": "t1", "type": "function", "function": {"name": format!("f{n}").replace(' ', ""), "arguments": a}}]})),
            text.prop_map(|t| json!({"role": "tool", "tool_call_id": "t1", "content": t})),
            Just(json!({"role": "tool", "content": "x"})),
        ]
    }

    fn arb_request() -> impl Strategy<Value = Value> {
        (
            prop::collection::vec(arb_message(), 1..6),
            prop::option::of(prop_oneof![Just(json!("none")), Just(json!("auto")), Just(json!("required")), Just(json!({"type": "function", "function": {"name": "g"}}))]),
            any::<bool>(),
            prop::option::of(prop_oneof![Just(json!({"type": "json_object"})), Just(json!({"type": "text"})), Just(json!({"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}}))]),
            prop::option::of(0.0f64..=1.0),
            prop::option::of(1u32..5000),
            prop::option::of(prop_oneof![Just(json!(2)), Just(json!(1))]),
            prop::option::of("[a-z@.#]{0,10}"),
        )
            .prop_map(|(messages, choice, with_tools, format, temp, max, n, user)| {
                let mut b = json!({"model": "m", "messages": messages});
                if with_tools || choice.as_ref().is_some_and(|c| c.is_object()) {
                    b["tools"] = json!([{"type": "function", "function": {"name": "g", "parameters": {"type": "object"}}}]);
                }
                let opt = |v: Option<Value>| v.unwrap_or(Value::Null);
                b["tool_choice"] = opt(choice);
                b["response_format"] = opt(format);
                b["temperature"] = opt(temp.map(|t| json!(t)));
                b["max_tokens"] = opt(max.map(|m| json!(m)));
                b["n"] = opt(n);
                b["user"] = opt(user.map(Value::String));
                b
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(384))]

        #[test]
        fn response_and_error_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), v in arb_json(), status in 100u16..700) {
            let _ = BEDROCK.chat_response(&bytes, &ctx(false));
            let body = v.to_string();
            if let Ok(t) = BEDROCK.chat_response(body.as_bytes(), &ctx(true)) {
                serde_json::from_slice::<Value>(&t.body).expect("completion is JSON");
            }
            for e in [
                BEDROCK.error(status, None, &bytes),
                BEDROCK.error(status, Some("ValidationException"), body.as_bytes()),
                BEDROCK.error(status, v.as_str(), body.as_bytes()),
            ] {
                serde_json::from_slice::<Value>(&e.to_json()).expect("error is JSON");
                prop_assert!((400..600).contains(&e.status));
            }
        }

        #[test]
        fn stream_never_panics(frames in prop::collection::vec(arb_frame(), 0..8), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4), usage in any::<bool>()) {
            let s: Vec<u8> = frames.concat();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(s.len() + 1)).collect();
            points.sort_unstable();
            let mut parts = Vec::new();
            let mut prev = 0;
            for p in points {
                parts.push(&s[prev..p]);
                prev = p;
            }
            parts.push(&s[prev..]);
            let (out, _) = run_stream(&parts, usage);
            check_sse(&out);
            let (whole, _) = run_stream(&[&s], usage);
            prop_assert_eq!(out, whole);
        }

        #[test]
        fn requests_translate_to_json_or_a_400(body in arb_request(), drop in any::<bool>()) {
            let bytes = serde_json::to_vec(&body).unwrap();
            if let Ok(req) = parse_chat(&bytes) {
                match BEDROCK.chat_request(&req, &target("amazon.nova-lite-v1:0"), RequestOptions { drop_params: drop, ..Default::default() }) {
                    Ok(out) => {
                        let v: Value = serde_json::from_slice(&out).expect("request is JSON");
                        prop_assert!(v["messages"].is_array());
                    }
                    Err(e) => prop_assert_eq!(e.status, 400),
                }
            }
        }
    }
}

// --- rendered for the Messages API -----------------------------------------------------------

fn messages_ctx() -> ResponseCtx {
    ResponseCtx {
        id: "msg_abc".into(),
        api: crate::ingress::ClientApi::Messages,
        ..ctx(false)
    }
}

/// Claude on Bedrock answering an Anthropic client: its reasoning comes back with the signature
/// the client must send in its next turn, and cache reads and writes as Anthropic counts them.
#[test]
fn response_as_a_messages_answer() {
    let body = json!({
        "output": {"message": {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "Let me think.", "signature": "sig=="}}},
            {"reasoningContent": {"redactedContent": "cmVkYWN0ZWQ="}},
            {"text": "Calling."},
            {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 12, "outputTokens": 4, "totalTokens": 66, "cacheReadInputTokens": 30, "cacheWriteInputTokens": 20},
    });
    let t = BEDROCK
        .chat_response(&serde_json::to_vec(&body).unwrap(), &messages_ctx())
        .unwrap();
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(
        v,
        json!({
            "id": "msg_abc", "type": "message", "role": "assistant", "model": "bedrock-claude",
            "content": [
                {"type": "thinking", "thinking": "Let me think.", "signature": "sig=="},
                {"type": "redacted_thinking", "data": "cmVkYWN0ZWQ="},
                {"type": "text", "text": "Calling."},
                {"type": "tool_use", "id": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 12, "cache_creation_input_tokens": 20,
                      "cache_read_input_tokens": 30, "output_tokens": 4},
        })
    );
}

/// ConverseStream rendered as Messages API events, split at every byte: the same message.
#[test]
fn streams_as_messages_events_at_every_split() {
    use crate::ingress::anthropic::testing::{accumulate, events};
    for (stream, want) in [
        (
            text_stream(),
            json!([
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "Hello, wörld ✓"},
            ]),
        ),
        (
            tool_stream(),
            json!([
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "tooluse_a", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "tooluse_b", "name": "get_time", "input": {}},
            ]),
        ),
    ] {
        for cut in 0..=stream.len() {
            let mut t = BEDROCK.chat_stream(messages_ctx());
            let mut out = Vec::new();
            t.feed(&stream[..cut], &mut out);
            t.feed(&stream[cut..], &mut out);
            t.finish(&mut out);
            let msg = accumulate(&events(&out));
            assert_eq!(msg["content"], want, "cut at {cut}");
            assert!(t.completed());
        }
    }
    let mut t = BEDROCK.chat_stream(messages_ctx());
    let mut out = Vec::new();
    t.feed(&text_stream(), &mut out);
    t.finish(&mut out);
    let msg = accumulate(&events(&out));
    assert_eq!(msg["stop_reason"], "end_turn");
    assert_eq!(
        msg["usage"],
        json!({"input_tokens": 9, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 5, "output_tokens": 3})
    );
}

/// An Anthropic-shaped client's thinking, top_k and earlier reasoning (LiteLLM's extensions in
/// the chat completions form) reach Claude on Bedrock as Converse's own fields and blocks.
#[test]
fn thinking_top_k_and_signed_reasoning_go_to_claude() {
    let got = translate(json!({
        "model": "m", "max_tokens": 2048, "top_k": 7,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": null,
             "thinking_blocks": [
                {"type": "thinking", "thinking": "Call the tool.", "signature": "EqQBCkYI"},
                {"type": "redacted_thinking", "data": "cmVkYWN0ZWQ="}],
             "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    }))
    .unwrap();
    assert_eq!(
        got["additionalModelRequestFields"],
        json!({"thinking": {"type": "enabled", "budget_tokens": 1024}, "top_k": 7})
    );
    assert_eq!(
        got["messages"][1]["content"],
        json!([
            {"reasoningContent": {"reasoningText": {"text": "Call the tool.", "signature": "EqQBCkYI"}}},
            {"reasoningContent": {"redactedContent": "cmVkYWN0ZWQ="}},
            {"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}},
        ])
    );
    // Not Claude: top_k and thinking are parameters it cannot honour.
    let bytes = serde_json::to_vec(
        &json!({"model": "m", "top_k": 3, "messages": [{"role": "user", "content": "x"}]}),
    )
    .unwrap();
    let req = parse_chat(&bytes).unwrap();
    let e = BEDROCK
        .chat_request(
            &req,
            &target("amazon.nova-pro-v1:0"),
            RequestOptions {
                drop_params: false,
                ..Default::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("top_k"));
}

#[test]
fn reasoning_effort_is_claudes_thinking_budget() {
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let got =
        translate(json!({"model": "m", "messages": msgs, "reasoning_effort": "medium"})).unwrap();
    assert_eq!(
        got["additionalModelRequestFields"],
        json!({"thinking": {"type": "enabled", "budget_tokens": 2048}})
    );
    // The cap the client set bounds the budget too; `thinking` wins over the effort.
    let got = translate(
        json!({"model": "m", "messages": msgs, "reasoning_effort": "high", "max_tokens": 3000}),
    )
    .unwrap();
    assert_eq!(
        got["additionalModelRequestFields"]["thinking"]["budget_tokens"],
        2999
    );
    let got = translate(
        json!({"model": "m", "messages": msgs, "reasoning_effort": "high",
        "thinking": {"type": "disabled"}}),
    )
    .unwrap();
    assert_eq!(
        got["additionalModelRequestFields"],
        json!({"thinking": {"type": "disabled"}})
    );
    // Other Bedrock models take no thinking: refused, or dropped from the body with drop_params.
    let bytes = serde_json::to_vec(
        &json!({"model": "m", "messages": msgs, "reasoning_effort": "low", "top_k": 3}),
    )
    .unwrap();
    let req = parse_chat(&bytes).unwrap();
    let nova = target("amazon.nova-lite-v1:0");
    let e = BEDROCK
        .chat_request(&req, &nova, RequestOptions::default())
        .unwrap_err();
    assert_eq!(e.status, 400);
    let opts = RequestOptions {
        drop_params: true,
        ..Default::default()
    };
    let out: Value =
        serde_json::from_slice(&BEDROCK.chat_request(&req, &nova, opts).unwrap()).unwrap();
    assert!(out.get("additionalModelRequestFields").is_none(), "{out}");
}
