use super::*;
use crate::openai::{parse_chat, parse_embeddings};
use proptest::prelude::*;
use serde_json::{json, Value};

const KEY: &str = "AIzaSyTestKey0123456789abcdefghij";

fn target(model: &str) -> Target {
    Target {
        model: model.into(),
        ..Default::default()
    }
}

fn flash() -> Target {
    target("gemini-2.5-flash")
}

fn request(body: Value) -> Result<Value, ApiError> {
    request_with(&flash(), body, false)
}

fn request_with(t: &Target, body: Value, drop_params: bool) -> Result<Value, ApiError> {
    let bytes = serde_json::to_vec(&body).unwrap();
    let req = parse_chat(&bytes).unwrap();
    let out = GEMINI.chat_request(
        &req,
        t,
        RequestOptions {
            drop_params,
            ..Default::default()
        },
    )?;
    Ok(serde_json::from_slice(&out).unwrap())
}

fn ctx(include_usage: bool) -> ResponseCtx {
    ResponseCtx {
        id: "chatcmpl-0123456789abcdef".into(),
        created: 1_700_000_000,
        model: "g".into(),
        include_usage,
        api: Default::default(),
    }
}

fn response(body: Value) -> (Value, Usage) {
    let t = GEMINI
        .chat_response(&serde_json::to_vec(&body).unwrap(), &ctx(false))
        .unwrap();
    (
        serde_json::from_slice(&t.body).unwrap(),
        t.usage.unwrap_or_default(),
    )
}

// ---- endpoint and paths ------------------------------------------------------------------

#[test]
fn paths_and_key_header() {
    let f = flash();
    assert_eq!(
        GEMINI.path(&f, Operation::Chat, false),
        "/v1beta/models/gemini-2.5-flash:generateContent"
    );
    assert_eq!(
        GEMINI.path(&f, Operation::Chat, true),
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    let e = GEMINI
        .endpoint(&Params {
            model: "gemini-2.5-flash",
            api_key: Some(KEY),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(e.base_url, "https://generativelanguage.googleapis.com");
    assert_eq!(
        e.headers,
        vec![("x-goog-api-key".to_string(), KEY.to_string())]
    );

    // An `api_base` path that ends in a version keeps it.
    let t = Target {
        model: "models/text-embedding-004".into(),
        base_path: "/proxy/v1beta".into(),
        api_version: None,
    };
    assert_eq!(
        GEMINI.path(&t, Operation::Embeddings, false),
        "/proxy/v1beta/models/text-embedding-004:batchEmbedContents"
    );

    let t = Target {
        model: "gemini-2.5-pro".into(),
        base_path: String::new(),
        api_version: Some("v1".into()),
    };
    assert_eq!(
        GEMINI.path(&t, Operation::Chat, false),
        "/v1/models/gemini-2.5-pro:generateContent"
    );
    assert!(GEMINI.supports(Operation::Embeddings));
    for bad in ["gemini-2.5-flash:generateContent?x", "a/b", "models/"] {
        let p = Params {
            model: bad,
            ..Default::default()
        };
        assert!(GEMINI.endpoint(&p).is_err(), "{bad}");
    }
    assert_eq!(GEMINI.default_key_env(), Some("GEMINI_API_KEY"));
}

// ---- request translation -----------------------------------------------------------------

#[test]
fn full_conversation() {
    let got = request(json!({
        "model": "g",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this picture, and the weather there?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?x=1"}}
            ]},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_a", "content": "{\"temp\": 21}"},
            {"role": "tool", "tool_call_id": "call_b", "content": "14:05"},
            {"role": "user", "content": "Thanks!"},
            {"role": "assistant", "content": "De rien."},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "Again?"}
        ],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}}},
            {"type": "function", "function": {"name": "get_time", "parameters": {}}}
        ],
        "tool_choice": "auto",
        "temperature": 0.3, "top_p": 0.9, "max_tokens": 100, "stop": ["END", "STOP"], "n": 2,
        "seed": 42, "presence_penalty": 0.5, "frequency_penalty": -0.5, "user": "alice"
    }))
    .unwrap();
    assert_eq!(
        got["systemInstruction"],
        json!({"parts": [{"text": "You are terse."}, {"text": "Answer in French."}]})
    );
    assert_eq!(
        got["contents"],
        json!([
            {"role": "user", "parts": [
                {"text": "What is in this picture, and the weather there?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?x=1"}}
            ]},
            {"role": "model", "parts": [
                {"text": "Let me check."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                {"functionResponse": {"name": "get_time", "response": {"content": "14:05"}}},
                {"text": "Thanks!"}
            ]},
            {"role": "model", "parts": [{"text": "De rien."}]},
            {"role": "user", "parts": [{"text": "Again?"}]}
        ])
    );
    assert_eq!(
        got["tools"],
        json!([{"functionDeclarations": [
            {"name": "get_weather", "description": "Weather for a city", "parametersJsonSchema":
                {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}},
            {"name": "get_time"}
        ]}])
    );
    assert_eq!(
        got["toolConfig"],
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );
    assert_eq!(
        got["generationConfig"],
        json!({"temperature": 0.3, "topP": 0.9, "maxOutputTokens": 100, "stopSequences": ["END", "STOP"],
               "candidateCount": 2, "seed": 42, "presencePenalty": 0.5, "frequencyPenalty": -0.5})
    );
    assert!(
        got.get("user").is_none() && !got.to_string().contains("alice"),
        "user is dropped"
    );
}

#[test]
fn documents_go_inline_or_by_uri() {
    let out = request(json!({"model": "gemini", "messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE", "filename": "a.pdf", "format": "application/pdf"}},
        {"type": "file", "file": {"file_url": "https://example.com/b.pdf"}},
        {"type": "file", "file": {"file_id": "gs://bucket/c.pdf"}},
        {"type": "text", "text": "read"}]}]}))
    .unwrap();
    assert_eq!(
        out["contents"][0]["parts"],
        json!([
            {"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}},
            {"fileData": {"mimeType": "application/pdf", "fileUri": "https://example.com/b.pdf"}},
            {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://bucket/c.pdf"}},
            {"text": "read"},
        ])
    );
    let e = request(
        json!({"model": "gemini", "messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_id": "file-abc123"}}]}]}),
    )
    .unwrap_err();
    assert_eq!(e.status, 400);
    assert!(e.message.contains("file_data"), "{}", e.message);
}

#[test]
fn defaults_are_minimal() {
    let got =
        request(json!({"model": "g", "messages": [{"role": "user", "content": "hi"}]})).unwrap();
    assert_eq!(
        got,
        json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    );
    // A lone system prompt becomes the user turn: Gemini needs contents.
    let got = request(json!({"model": "g", "messages": [{"role": "system", "content": "Say hi"}]}))
        .unwrap();
    assert_eq!(
        got,
        json!({"contents": [{"role": "user", "parts": [{"text": "Say hi"}]}]})
    );
    // max_completion_tokens wins over max_tokens.
    let got = request(
        json!({"model": "g", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5, "max_completion_tokens": 9, "stop": "x", "parallel_tool_calls": true}),
    )
    .unwrap();
    assert_eq!(
        got["generationConfig"],
        json!({"maxOutputTokens": 9, "stopSequences": ["x"]})
    );
}

#[test]
fn json_modes() {
    let base = json!({"model": "g", "messages": [{"role": "user", "content": "hi"}]});
    let with = |rf: Value| {
        let mut b = base.clone();
        b["response_format"] = rf;
        request(b).unwrap()["generationConfig"].clone()
    };
    assert_eq!(
        with(json!({"type": "json_object"})),
        json!({"responseMimeType": "application/json"})
    );
    let schema = json!({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
        "properties": {"answer": {"type": "string"}}, "required": ["answer"], "additionalProperties": false});
    assert_eq!(
        with(
            json!({"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": true}})
        ),
        json!({"responseMimeType": "application/json", "responseJsonSchema": schema})
    );
    assert!(with(json!({"type": "text"})).is_null());
}

#[test]
fn tool_choice_modes() {
    let tools = json!([
        {"type": "function", "function": {"name": "a"}},
        {"type": "function", "function": {"name": "b"}}
    ]);
    let choice = |tc: Value| {
        let body = json!({"model": "g", "messages": [{"role": "user", "content": "hi"}], "tools": tools, "tool_choice": tc});
        request(body).unwrap()["toolConfig"]["functionCallingConfig"].clone()
    };
    assert_eq!(choice(json!("none")), json!({"mode": "NONE"}));
    assert_eq!(choice(json!("auto")), json!({"mode": "AUTO"}));
    assert_eq!(choice(json!("required")), json!({"mode": "ANY"}));
    assert_eq!(
        choice(json!({"type": "function", "function": {"name": "b"}})),
        json!({"mode": "ANY", "allowedFunctionNames": ["b"]})
    );
}

#[test]
fn unsupported_params_are_refused_or_dropped() {
    let body = json!({"model": "g", "messages": [{"role": "user", "content": "hi"}],
        "logit_bias": {"1": 2}, "logprobs": true, "temperature": 0.1});
    let e = request(body.clone()).unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(e.param.as_deref(), Some("logit_bias"));
    assert_eq!(e.code.as_deref(), Some("unsupported_parameter"));
    assert!(
        e.message.contains("logit_bias, logprobs") && e.message.contains("drop_params"),
        "{}",
        e.message
    );
    let got = request_with(&flash(), body, true).unwrap();
    assert_eq!(got["generationConfig"], json!({"temperature": 0.1}));
    assert!(!got.to_string().contains("logit"));

    let two_tools = json!({"model": "g", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "b"}}],
        "parallel_tool_calls": false});
    let e = request(two_tools.clone()).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("parallel_tool_calls"));
    assert!(request_with(&flash(), two_tools.clone(), true).is_ok());
    let one_tool = json!({"model": "g", "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "a"}}], "parallel_tool_calls": false});
    assert!(request(one_tool).is_ok());
    // No call can come back: nothing to honour.
    let mut none = two_tools.clone();
    none["tool_choice"] = json!("none");
    let got = request(none).unwrap();
    assert!(!got.to_string().contains("parallel"));
    let no_tools = json!({"model": "g", "messages": [{"role": "user", "content": "hi"}],
        "parallel_tool_calls": false});
    assert!(request(no_tools).is_ok());
}

#[test]
fn reasoning_effort_maps_to_thinking() {
    let body = |effort: &str| json!({"model": "g", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": effort});
    let thinking = |c: &Target, effort: &str| {
        request_with(c, body(effort), false).unwrap()["generationConfig"]["thinkingConfig"].clone()
    };
    let f = flash();
    assert_eq!(
        thinking(&f, "low"),
        json!({"thinkingBudget": 1024, "includeThoughts": true})
    );
    assert_eq!(
        thinking(&f, "high"),
        json!({"thinkingBudget": 4096, "includeThoughts": true})
    );
    assert_eq!(
        thinking(&f, "none"),
        json!({"thinkingBudget": 0, "includeThoughts": false})
    );
    let g3 = target("gemini-3-pro-preview");
    assert_eq!(
        thinking(&g3, "medium"),
        json!({"thinkingLevel": "high", "includeThoughts": true})
    );
    assert_eq!(
        thinking(&g3, "minimal"),
        json!({"thinkingLevel": "low", "includeThoughts": true})
    );
    let g3f = target("gemini-3-flash-preview");
    assert_eq!(
        thinking(&g3f, "minimal"),
        json!({"thinkingLevel": "minimal", "includeThoughts": true})
    );
    let e = parse_chat(&serde_json::to_vec(&body("extreme")).unwrap()).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("reasoning_effort"));
}

#[test]
fn thought_signatures_round_trip() {
    // A signed call comes back with the signature in its id...
    let (v, _) = response(
        json!({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "f", "args": {"x": 1}}, "thoughtSignature": "CiQBcsjafQ=="}
    ]}, "finishReason": "STOP"}]}),
    );
    let id = v["choices"][0]["message"]["tool_calls"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(id.ends_with("__thought__CiQBcsjafQ=="), "{id}");
    // ...and the id puts it back on the functionCall part.
    let history = |id: &str| {
        json!({"model": "g", "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "tool_calls": [
                {"id": id, "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
                {"id": "other", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": id, "content": "ok"},
            {"role": "tool", "tool_call_id": "other", "content": "ok"}
        ]})
    };
    let got = request(history(&id)).unwrap();
    assert_eq!(
        got["contents"][1]["parts"][0]["thoughtSignature"],
        "CiQBcsjafQ=="
    );
    assert!(got["contents"][1]["parts"][1]
        .get("thoughtSignature")
        .is_none());
    // Gemini 3 needs a signature on the first call of a step: unsigned history gets Google's placeholder.
    let g3 = target("gemini-3-pro-preview");
    let got = request_with(&g3, history("call_plain"), false).unwrap();
    assert_eq!(
        got["contents"][1]["parts"][0]["thoughtSignature"],
        "skip_thought_signature_validator"
    );
    let got = request(history("call_plain")).unwrap();
    assert!(got["contents"][1]["parts"][0]
        .get("thoughtSignature")
        .is_none());
}

#[test]
fn bad_messages_are_named() {
    let cases = [
        json!([{"role": "tool", "tool_call_id": "nope", "content": "x"}]),
        json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}]}]),
        json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]),
        json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}]}]),
        json!([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1,2]"}}]}]),
    ];
    for messages in cases {
        let e = request(json!({"model": "g", "messages": messages})).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.param.as_deref(), Some("messages"), "{}", e.message);
    }
    // A legacy function message names itself.
    let got = request(json!({"model": "g", "messages": [
        {"role": "user", "content": "x"},
        {"role": "function", "name": "lookup", "content": "[1, 2]"}
    ]}))
    .unwrap();
    assert_eq!(
        got["contents"][0]["parts"][1],
        json!({"functionResponse": {"name": "lookup", "response": {"content": "[1, 2]"}}})
    );
}

// ---- response translation ---------------------------------------------------------------

#[test]
fn text_response_with_usage() {
    let (v, usage) = response(json!({
        "candidates": [{"content": {"parts": [
            {"text": "Let me think about it.", "thought": true},
            {"text": "Hello"}, {"text": " there!"}
        ], "role": "model"}, "finishReason": "STOP", "avgLogprobs": -0.1}],
        "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 3, "totalTokenCount": 150,
            "thoughtsTokenCount": 27, "cachedContentTokenCount": 100,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 120}]},
        "modelVersion": "gemini-2.5-flash", "responseId": "abc"
    }));
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "g");
    assert_eq!(v["id"], "chatcmpl-0123456789abcdef");
    let m = &v["choices"][0]["message"];
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["content"], "Hello there!");
    assert_eq!(m["reasoning_content"], "Let me think about it.");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 100}, "completion_tokens_details": {"reasoning_tokens": 27}})
    );
    assert_eq!(
        usage,
        Usage {
            prompt_tokens: 120,
            completion_tokens: 30,
            cached_tokens: 100,
            cache_creation_tokens: 0,
            reasoning_tokens: 27
        }
    );
}

#[test]
fn tool_call_response() {
    let (v, _) = response(
        json!({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris", "unit": "c"}}},
        {"functionCall": {"name": "get_time"}},
        {"text": "", "thoughtSignature": "c2ln"}
    ]}, "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 8}}),
    );
    let c = &v["choices"][0];
    assert_eq!(c["finish_reason"], "tool_calls");
    assert!(c["message"]["content"].is_null());
    let calls = c["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris", "unit": "c"}));
    assert_eq!(calls[1]["function"]["arguments"], "{}");
    assert_ne!(calls[0]["id"], calls[1]["id"]);
}

#[test]
fn finish_reasons() {
    let cases = [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("SOMETHING_NEW", "stop"),
    ];
    for (gemini, openai) in cases {
        let (v, _) = response(
            json!({"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": gemini}]}),
        );
        assert_eq!(v["choices"][0]["finish_reason"], openai, "{gemini}");
    }
    // Blocked prompt: no candidates at all.
    let (v, _) = response(
        json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}}),
    );
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    assert!(v["choices"][0]["message"]["content"].is_null());
    assert_eq!(v["usage"]["prompt_tokens"], 7);
}

#[test]
fn several_candidates() {
    let (v, _) = response(json!({"candidates": [
        {"content": {"parts": [{"text": "one"}]}, "finishReason": "STOP"},
        {"content": {"parts": [{"text": "two"}]}, "finishReason": "MAX_TOKENS", "index": 1}
    ]}));
    assert_eq!(v["choices"][0]["message"]["content"], "one");
    assert_eq!(v["choices"][1]["index"], 1);
    assert_eq!(v["choices"][1]["message"]["content"], "two");
    assert_eq!(v["choices"][1]["finish_reason"], "length");
    // An absurd index is ignored rather than allocated for.
    let (v, _) = response(
        json!({"candidates": [{"content": {"parts": [{"text": "x"}]}, "index": 4000000000u64}]}),
    );
    assert_eq!(v["choices"].as_array().unwrap().len(), 1);
}

#[test]
fn unreadable_response_is_502() {
    for body in [&b"<html>"[..], b"[]", b"{\"candidates\": 5}"] {
        let e = GEMINI.chat_response(body, &ctx(false)).unwrap_err();
        assert_eq!(e.status, 502);
    }
}

// ---- streaming ---------------------------------------------------------------------------

fn sse_event(v: Value) -> String {
    format!("data: {v}\r\n\r\n")
}

fn upstream_stream() -> Vec<u8> {
    let usage =
        |p, c| json!({"promptTokenCount": p, "candidatesTokenCount": c, "totalTokenCount": p + c});
    let mut s = String::new();
    s += &sse_event(
        json!({"candidates": [{"content": {"parts": [{"text": "Planning…", "thought": true}], "role": "model"}, "index": 0}],
        "usageMetadata": usage(12, 0), "modelVersion": "gemini-2.5-flash", "responseId": "r1"}),
    );
    s += &sse_event(
        json!({"candidates": [{"content": {"parts": [{"text": "Bonjour, "}], "role": "model"}}],
        "usageMetadata": usage(12, 2), "modelVersion": "gemini-2.5-flash", "responseId": "r1"}),
    );
    s += &sse_event(
        json!({"candidates": [{"content": {"parts": [{"text": "ça va ? ✓"}], "role": "model"}}],
        "usageMetadata": usage(12, 5), "modelVersion": "gemini-2.5-flash", "responseId": "r1"}),
    );
    s += &sse_event(json!({"candidates": [{"content": {"parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"}
        ], "role": "model"}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 9, "thoughtsTokenCount": 4,
            "cachedContentTokenCount": 8, "totalTokenCount": 25},
        "modelVersion": "gemini-2.5-flash", "responseId": "r1"}));
    s.into_bytes()
}

fn run_stream(parts: &[&[u8]], include_usage: bool) -> (Vec<u8>, Usage) {
    let mut t = GEMINI.chat_stream(ctx(include_usage));
    let mut out = Vec::new();
    for p in parts {
        t.feed(p, &mut out);
    }
    t.finish(&mut out);
    (out, t.final_usage().unwrap_or_default())
}

fn events(out: &[u8]) -> Vec<Value> {
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(text.ends_with("\n\n"));
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

#[test]
fn stream_translates_text_reasoning_tools_and_usage() {
    let (out, usage) = run_stream(&[&upstream_stream()], true);
    let ev = events(&out);
    let deltas: Vec<&Value> = ev
        .iter()
        .filter_map(|e| e.get("choices").and_then(|c| c.get(0)))
        .collect();
    assert_eq!(deltas[0]["delta"]["role"], "assistant");
    assert_eq!(deltas[1]["delta"]["reasoning_content"], "Planning…");
    let text: String = deltas
        .iter()
        .filter_map(|d| d["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Bonjour, ça va ? ✓");
    let start = deltas
        .iter()
        .find(|d| d["delta"]["tool_calls"][0]["id"].is_string())
        .unwrap();
    assert_eq!(
        start["delta"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert!(start["delta"]["tool_calls"][0]["id"]
        .as_str()
        .unwrap()
        .ends_with("__thought__c2ln"));
    let args: String = deltas
        .iter()
        .filter_map(|d| d["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"city": "Paris"})
    );
    let finishes: Vec<&Value> = deltas
        .iter()
        .filter(|d| !d["finish_reason"].is_null())
        .copied()
        .collect();
    assert_eq!(finishes.len(), 1);
    assert_eq!(finishes[0]["finish_reason"], "tool_calls");
    let last_chunk = &ev[ev.len() - 2];
    assert_eq!(last_chunk["choices"], json!([]));
    assert_eq!(last_chunk["usage"]["prompt_tokens"], 12);
    assert_eq!(last_chunk["usage"]["completion_tokens"], 13);
    assert_eq!(
        last_chunk["usage"]["prompt_tokens_details"]["cached_tokens"],
        8
    );
    assert_eq!(ev[ev.len() - 1], json!("[DONE]"));
    assert_eq!(usage.reasoning_tokens, 4);
    assert!(ev.iter().all(|e| e == "[DONE]" || e["model"] == "g"));

    let (out, _) = run_stream(&[&upstream_stream()], false);
    assert!(!String::from_utf8(out).unwrap().contains("\"usage\""));
}

#[test]
fn stream_is_identical_at_every_split() {
    let upstream = upstream_stream();
    let (whole, usage) = run_stream(&[&upstream], true);
    for i in 0..=upstream.len() {
        let (split, u) = run_stream(&[&upstream[..i], &upstream[i..]], true);
        assert_eq!(split, whole, "split at {i}");
        assert_eq!(u, usage);
    }
    let bytes: Vec<&[u8]> = upstream.chunks(1).collect();
    assert_eq!(run_stream(&bytes, true).0, whole);
}

#[test]
fn stream_several_candidates() {
    let mut s = String::new();
    s += &sse_event(json!({"candidates": [
        {"content": {"parts": [{"text": "A"}], "role": "model"}},
        {"content": {"parts": [{"text": "B"}], "role": "model"}, "index": 1}]}));
    s += &sse_event(json!({"candidates": [
        {"content": {"parts": [{"text": "a"}], "role": "model"}, "finishReason": "STOP"},
        {"content": {"parts": [{"text": "b"}], "role": "model"}, "index": 1, "finishReason": "MAX_TOKENS"}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4}}));
    let (out, usage) = run_stream(&[s.as_bytes()], false);
    let ev = events(&out);
    let mut text = [String::new(), String::new()];
    let mut finish = [Value::Null, Value::Null];
    for e in ev.iter().filter(|e| e.is_object()) {
        let c = &e["choices"][0];
        let i = c["index"].as_u64().unwrap() as usize;
        text[i] += c["delta"]["content"].as_str().unwrap_or("");
        if !c["finish_reason"].is_null() {
            finish[i] = c["finish_reason"].clone();
        }
    }
    assert_eq!(text, ["Aa".to_string(), "Bb".to_string()]);
    assert_eq!(finish, [json!("stop"), json!("length")]);
    assert_eq!(usage.completion_tokens, 4);
}

#[test]
fn stream_errors_and_oddities() {
    // An error after some text: one OpenAI error event, nothing after it.
    let mut s = sse_event(
        json!({"candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}}]}),
    );
    s += &sse_event(
        json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}),
    );
    s += &sse_event(
        json!({"candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "STOP"}]}),
    );
    let (out, _) = run_stream(&[s.as_bytes()], true);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(
        !text.contains("[DONE]") && !text.contains("\"lo\""),
        "{text}"
    );
    let ev = events(&out);
    let err = &ev.last().unwrap()["error"];
    assert_eq!(err["type"], "api_error");
    assert!(err["message"].as_str().unwrap().contains("overloaded"));

    // A blocked prompt.
    let s = sse_event(
        json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 5}}),
    );
    let ev = events(&run_stream(&[s.as_bytes()], false).0);
    assert_eq!(ev[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(ev[1]["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(ev[2], json!("[DONE]"));

    // Gemini's stream ends with its body (no terminator event): an upstream that ends whole
    // without a finish reason still finishes the choice. (One cut off never reaches finish.)
    let s = sse_event(json!({"candidates": [{"content": {"parts": [{"text": "cut"}]}}]}));
    let ev = events(&run_stream(&[s.as_bytes()], false).0);
    assert_eq!(ev[ev.len() - 2]["choices"][0]["finish_reason"], "stop");
    // With several candidates, one left open ends with the others.
    let s = sse_event(json!({"candidates": [
        {"content": {"parts": [{"text": "a"}]}, "finishReason": "STOP"},
        {"content": {"parts": [{"text": "b"}]}, "index": 1}]}));
    let ev = events(&run_stream(&[s.as_bytes()], false).0);
    assert_eq!(ev[ev.len() - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(ev[ev.len() - 2]["choices"][0]["index"], 1);

    // Nothing at all, or garbage: an error event.
    for body in [&b""[..], b"data: not json\n\n"] {
        let ev = events(&run_stream(&[body], false).0);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0]["error"]["code"], "upstream_error");
    }
}

// ---- errors ------------------------------------------------------------------------------

fn google(code: u16, status: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"error": {"code": code, "message": message, "status": status}}))
        .unwrap()
}

#[test]
fn errors_map_status_type_and_code() {
    let cases = [
        (400, "INVALID_ARGUMENT", 400, "invalid_request_error"),
        (400, "FAILED_PRECONDITION", 400, "invalid_request_error"),
        (401, "UNAUTHENTICATED", 401, "authentication_error"),
        (403, "PERMISSION_DENIED", 403, "permission_error"),
        (404, "NOT_FOUND", 404, "invalid_request_error"),
        (429, "RESOURCE_EXHAUSTED", 429, "rate_limit_error"),
        (500, "INTERNAL", 500, "api_error"),
        (503, "UNAVAILABLE", 503, "api_error"),
        (504, "DEADLINE_EXCEEDED", 504, "api_error"),
    ];
    for (http, status, want, kind) in cases {
        let e = GEMINI.error(http, None, &google(http, status, "boom"));
        assert_eq!((e.status, e.kind), (want, kind), "{status}");
        assert_eq!(e.message, "boom");
    }
    let overflow = google(
        400,
        "INVALID_ARGUMENT",
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
    );
    let e = GEMINI.error(400, None, &overflow);
    assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));

    let bad_key = json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT", "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
             "metadata": {"service": "generativelanguage.googleapis.com"}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": "API key not valid."}]}});
    let e = GEMINI.error(400, None, &serde_json::to_vec(&bad_key).unwrap());
    assert_eq!(
        (e.status, e.kind, e.code.as_deref()),
        (401, "authentication_error", Some("invalid_api_key"))
    );

    let leak = google(
        403,
        "PERMISSION_DENIED",
        &format!("Key {KEY} lacks access to this project."),
    );
    let e = GEMINI.error(403, None, &leak);
    assert!(!e.message.contains(KEY), "{}", e.message);
    assert!(e.message.contains("[redacted]"));

    // Wrapped in an array (non-SSE streams), and not JSON at all.
    let e = GEMINI.error(
        429,
        None,
        format!(
            "[{}]",
            String::from_utf8(google(429, "RESOURCE_EXHAUSTED", "quota")).unwrap()
        )
        .as_bytes(),
    );
    assert_eq!((e.status, e.message.as_str()), (429, "quota"));
    let e = GEMINI.error(502, None, b"<html>Bad Gateway</html>");
    assert_eq!((e.status, e.kind), (502, "api_error"));
    let e = GEMINI.error(500, None, b"");
    assert_eq!(e.status, 500);
}

// ---- embeddings --------------------------------------------------------------------------

#[test]
fn embeddings_request_and_response() {
    let t = target("text-embedding-004");
    let req = parse_embeddings(
        br#"{"model":"g","input":["hello","world"],"dimensions":8,"encoding_format":"base64"}"#,
    )
    .unwrap();
    let out: Value = serde_json::from_slice(&GEMINI.embeddings_request(&req, &t).unwrap()).unwrap();
    assert_eq!(
        out,
        json!({"requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 8},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "world"}]}, "outputDimensionality": 8}
        ]})
    );
    let tokens = parse_embeddings(br#"{"model":"g","input":[[1,2,3]]}"#).unwrap();
    let e = GEMINI.embeddings_request(&tokens, &t).unwrap_err();
    assert_eq!((e.status, e.param.as_deref()), (400, Some("input")));

    let body = br#"{"embeddings":[{"values":[0.5,-1.25]},{"values":[0.25,0]}]}"#;
    let ectx = ResponseCtx {
        model: "g-embed".into(),
        ..Default::default()
    };
    let t = GEMINI.embeddings_response(body, false, &ectx).unwrap();
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "g-embed");
    assert_eq!(v["data"][1]["index"], 1);
    assert_eq!(v["data"][0]["embedding"], json!([0.5, -1.25]));
    assert_eq!(v["usage"]["prompt_tokens"], 0);
    assert_eq!(t.usage.unwrap_or_default().prompt_tokens, 0);
    let t = GEMINI.embeddings_response(body, true, &ectx).unwrap();
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert!(v["data"][0]["embedding"].is_string());
    let with_usage = br#"{"embeddings":[{"values":[1]}],"usageMetadata":{"promptTokenCount":4}}"#;
    let t = GEMINI
        .embeddings_response(with_usage, false, &ectx)
        .unwrap();
    assert_eq!(t.usage.unwrap_or_default().prompt_tokens, 4);
    for bad in [&b"{}"[..], br#"{"embeddings":[{"values":"x"}]}"#, b"nope"] {
        assert_eq!(
            GEMINI
                .embeddings_response(bad, false, &ectx)
                .unwrap_err()
                .status,
            502
        );
    }
}

// ---- properties --------------------------------------------------------------------------

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z_ ]{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("STOP"),
            Just("MAX_TOKENS"),
            Just("SAFETY"),
            Just("INVALID_ARGUMENT"),
            Just("API_KEY_INVALID")
        ]
        .prop_map(Value::from),
    ];
    let keys = prop_oneof![
        Just("candidates".to_string()),
        Just("content".to_string()),
        Just("parts".to_string()),
        Just("text".to_string()),
        Just("thought".to_string()),
        Just("functionCall".to_string()),
        Just("name".to_string()),
        Just("args".to_string()),
        Just("finishReason".to_string()),
        Just("index".to_string()),
        Just("usageMetadata".to_string()),
        Just("promptTokenCount".to_string()),
        Just("promptFeedback".to_string()),
        Just("blockReason".to_string()),
        Just("error".to_string()),
        Just("code".to_string()),
        Just("status".to_string()),
        Just("message".to_string()),
        Just("details".to_string()),
        Just("reason".to_string()),
        Just("embeddings".to_string()),
        Just("values".to_string()),
        "[a-z]{1,6}",
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(keys.clone(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check_output(bytes: &[u8]) {
    let text = std::str::from_utf8(bytes).expect("utf-8 output");
    for event in text.split("\n\n").filter(|e| !e.is_empty()) {
        let data = event.strip_prefix("data: ").expect("data field");
        if data != "[DONE]" {
            serde_json::from_str::<Value>(data).expect("JSON event");
        }
    }
}

fn check_translations(body: &[u8]) {
    if let Ok(t) = GEMINI.chat_response(body, &ctx(true)) {
        serde_json::from_slice::<Value>(&t.body).expect("JSON completion");
    }
    for status in [400, 429, 503] {
        let e = GEMINI.error(status, None, body);
        assert!((400..600).contains(&e.status));
        serde_json::from_slice::<Value>(&e.to_json()).expect("JSON error");
    }
    if let Ok(t) = GEMINI.embeddings_response(body, true, &ctx(false)) {
        serde_json::from_slice::<Value>(&t.body).expect("JSON embeddings");
    }
}

fn arb_message() -> impl Strategy<Value = Value> {
    let text = "[a-z {}\\[\\]\":,0-9]{0,16}";
    let part = prop_oneof![
        text.prop_map(|t| json!({"type": "text", "text": t})),
        prop_oneof![
            Just("data:image/png;base64,AAAA"),
            Just("https://x.test/a.jpg"),
            Just("ftp://nope"),
            Just("data:text/plain,hi")
        ]
        .prop_map(|u| json!({"type": "image_url", "image_url": {"url": u}})),
        Just(json!({"type": "refusal", "refusal": "no"})),
    ];
    let content = prop_oneof![
        Just(Value::Null),
        text.prop_map(Value::from),
        prop::collection::vec(part, 0..3).prop_map(Value::from),
    ];
    let call_id = prop_oneof![Just("c1"), Just("c2"), Just("c1__thought__c2ln"), Just("")];
    let args = prop_oneof![
        Just(""),
        Just("{}"),
        Just("{\"a\":1}"),
        Just("[1]"),
        Just("{bad")
    ];
    let call = (call_id.clone(), args).prop_map(
        |(id, a)| json!({"id": id, "type": "function", "function": {"name": "f", "arguments": a}}),
    );
    let role = prop_oneof![
        Just("system"),
        Just("developer"),
        Just("user"),
        Just("assistant"),
        Just("tool"),
        Just("function")
    ];
    (
        role,
        content,
        prop::option::of(prop::collection::vec(call, 0..3)),
        prop::option::of(call_id),
    )
        .prop_map(|(role, content, calls, id)| {
            let mut m = json!({"role": role, "content": content});
            if let Some(c) = calls {
                m["tool_calls"] = Value::from(c);
            }
            if let Some(id) = id {
                m["tool_call_id"] = Value::from(id);
                m["name"] = Value::from("f");
            }
            m
        })
}

fn arb_chat_body() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(arb_message(), 1..6),
        prop::option::of(0.0f64..2.0),
        prop::option::of(1u64..5000),
        prop::option::of(prop_oneof![
            Just(json!("auto")),
            Just(json!("none")),
            Just(json!("required")),
            Just(json!({"type": "function", "function": {"name": "f"}}))
        ]),
        prop::option::of(prop_oneof![
            Just(json!({"type": "json_object"})),
            Just(json!({"type": "json_schema", "json_schema": {"name": "s", "schema": {"type": "object"}}})),
            Just(json!({"type": "text"}))
        ]),
        prop::option::of(prop_oneof![
            Just("low"),
            Just("high"),
            Just("none"),
            Just("bogus")
        ]),
        any::<bool>(),
        prop::option::of(any::<bool>()),
    )
        .prop_map(
            |(messages, temperature, max_tokens, tool_choice, rf, effort, tools, parallel)| {
                let mut b = json!({"model": "g", "messages": messages});
                if let Some(t) = temperature {
                    b["temperature"] = json!(t);
                }
                if let Some(m) = max_tokens {
                    b["max_tokens"] = json!(m);
                }
                if tools || tool_choice.is_some() {
                    b["tools"] = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}},
                                        {"type": "function", "function": {"name": "g"}}]);
                }
                if let Some(tc) = tool_choice {
                    b["tool_choice"] = tc;
                }
                if let Some(rf) = rf {
                    b["response_format"] = rf;
                }
                if let Some(e) = effort {
                    b["reasoning_effort"] = json!(e);
                }
                if let Some(p) = parallel {
                    b["parallel_tool_calls"] = json!(p);
                }
                b
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        check_translations(&body);
    }

    #[test]
    fn arbitrary_json_never_panics(v in arb_json()) {
        let body = serde_json::to_vec(&v).unwrap();
        check_translations(&body);
        // The same value as a stream event, with and without a neighbour.
        let event = format!("data: {v}\n\n");
        let (out, _) = run_stream(&[event.as_bytes()], true);
        check_output(&out);
        let (out, _) = run_stream(&[&upstream_stream()[..40], event.as_bytes()], true);
        check_output(&out);
    }

    #[test]
    fn arbitrary_stream_bytes_and_chunking(
        body in prop::collection::vec(any::<u8>(), 0..300),
        cuts in prop::collection::vec(0usize..300, 0..6),
    ) {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
        cuts.sort_unstable();
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut last = 0;
        for c in cuts {
            parts.push(&body[last..c]);
            last = c;
        }
        parts.push(&body[last..]);
        let (out, _) = run_stream(&parts, true);
        check_output(&out);
        prop_assert_eq!(out, run_stream(&[&body], true).0);
    }

    #[test]
    fn realistic_stream_any_chunking(cuts in prop::collection::vec(0usize..2000, 0..8)) {
        let upstream = upstream_stream();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(upstream.len())).collect();
        cuts.sort_unstable();
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut last = 0;
        for c in cuts {
            parts.push(&upstream[last..c]);
            last = c;
        }
        parts.push(&upstream[last..]);
        prop_assert_eq!(run_stream(&parts, true), run_stream(&[&upstream], true));
    }

    #[test]
    fn parseable_requests_translate_or_refuse(body in arb_chat_body(), drop_params in any::<bool>()) {
        let bytes = serde_json::to_vec(&body).unwrap();
        if let Ok(req) = parse_chat(&bytes) {
            for model in ["gemini-2.5-flash", "gemini-3-pro-preview"] {
                match GEMINI.chat_request(&req, &target(model), RequestOptions { drop_params, ..Default::default() }) {
                    Ok(out) => {
                        let v: Value = serde_json::from_slice(&out).expect("JSON request");
                        prop_assert!(v["contents"].is_array());
                    }
                    Err(e) => prop_assert_eq!(e.status, 400),
                }
            }
        }
    }
}

/// Gemini's stream rendered as Messages API events, split at every byte: one message with the
/// thought as thinking (unsigned: Gemini's signature rides in the tool call's id), the text and
/// the call.
#[test]
fn stream_as_messages_events_at_every_split() {
    use crate::ingress::anthropic::testing::{accumulate, events};
    let upstream = upstream_stream();
    let messages_ctx = ResponseCtx {
        api: crate::ingress::ClientApi::Messages,
        ..ctx(false)
    };
    for i in 0..=upstream.len() {
        let mut t = GEMINI.chat_stream(messages_ctx.clone());
        let mut out = Vec::new();
        t.feed(&upstream[..i], &mut out);
        t.feed(&upstream[i..], &mut out);
        t.finish(&mut out);
        let msg = accumulate(&events(&out));
        let content = msg["content"].as_array().unwrap();
        assert_eq!(content.len(), 3, "split at {i}: {msg}");
        assert_eq!(content[0]["thinking"], "Planning…");
        assert_eq!(
            content[1],
            json!({"type": "text", "text": "Bonjour, ça va ? ✓"})
        );
        assert_eq!(content[2]["input"], json!({"city": "Paris"}));
        assert!(content[2]["id"]
            .as_str()
            .unwrap()
            .ends_with("__thought__c2ln"));
        assert_eq!(msg["stop_reason"], "tool_use");
        assert_eq!(msg["usage"]["cache_read_input_tokens"], 8);
        assert_eq!(msg["usage"]["input_tokens"], 4);
        assert_eq!(msg["usage"]["output_tokens"], 13);
    }
}

/// Anthropic's `thinking` and `top_k` (an Anthropic-shaped client's, in LiteLLM's extensions)
/// in Gemini's terms.
#[test]
fn anthropic_thinking_and_top_k() {
    let body = |thinking: Value| {
        json!({"model": "g", "messages": [{"role": "user", "content": "hi"}],
        "thinking": thinking, "top_k": 9})
    };
    let gen =
        |c: &Target, t: Value| request_with(c, body(t), false).unwrap()["generationConfig"].clone();
    let f = flash();
    let g = gen(&f, json!({"type": "enabled", "budget_tokens": 5000}));
    assert_eq!(
        g["thinkingConfig"],
        json!({"thinkingBudget": 5000, "includeThoughts": true})
    );
    assert_eq!(g["topK"], 9);
    assert_eq!(
        gen(&f, json!({"type": "disabled"}))["thinkingConfig"],
        json!({"thinkingBudget": 0, "includeThoughts": false})
    );
    assert_eq!(
        gen(&f, json!({"type": "adaptive"}))["thinkingConfig"],
        json!({"includeThoughts": true})
    );
    let g3 = target("gemini-3-pro-preview");
    assert_eq!(
        gen(&g3, json!({"type": "enabled", "budget_tokens": 1024}))["thinkingConfig"],
        json!({"thinkingLevel": "low", "includeThoughts": true})
    );
}
