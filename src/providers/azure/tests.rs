use super::*;
use crate::openai::{parse_chat, parse_embeddings};
use proptest::prelude::*;
use serde_json::{json, Value};

const KEY: &str = "0123456789abcdef0123456789abcdef";
const BASE: &str = "https://r.openai.azure.com";

/// A deployment's target: `model` as after `azure/`, `base_path` as the configuration takes it
/// from `api_base`.
fn target(model: &str, base_path: &str, api_version: Option<&str>) -> Target {
    Target {
        model: model.into(),
        base_path: base_path.into(),
        api_version: api_version.map(Into::into),
    }
}

fn gpt() -> Target {
    target("my-gpt4o-deployment", "", Some("2024-10-21"))
}

fn endpoint(
    model: &str,
    api_base: Option<&str>,
    api_version: Option<&str>,
) -> Result<Endpoint, String> {
    AZURE.endpoint(&Params {
        model,
        api_base,
        api_key: Some(KEY),
        api_version,
        ..Default::default()
    })
}

fn ctx() -> ResponseCtx {
    ResponseCtx {
        id: "chatcmpl-gw".into(),
        created: 1700000000,
        model: "azure-gpt".into(),
        include_usage: false,
        api: Default::default(),
    }
}

fn chat(t: &Target, body: &Value, drop_params: bool) -> Result<Value, ApiError> {
    let body = serde_json::to_vec(body).unwrap();
    let req = parse_chat(&body)?;
    let out = AZURE.chat_request(
        &req,
        t,
        RequestOptions {
            drop_params,
            ..Default::default()
        },
    )?;
    Ok(serde_json::from_slice(&out).unwrap())
}

// Endpoint and path ---------------------------------------------------------------------------

#[test]
fn endpoint_sends_the_key_in_api_key() {
    let e = endpoint(
        "my-gpt4o-deployment",
        Some("https://my-resource.openai.azure.com/"),
        Some("2024-10-21"),
    )
    .unwrap();
    assert_eq!(e.base_url, "https://my-resource.openai.azure.com/");
    assert_eq!(e.headers, vec![("api-key".to_string(), KEY.to_string())]);
    assert_eq!(AZURE.default_key_env(), Some("AZURE_API_KEY"));
}

#[test]
fn api_base_is_required_and_api_version_checked() {
    let err = endpoint("my-gpt4o-deployment", None, None).unwrap_err();
    assert!(err.contains("api_base is required"), "{err}");
    let err = endpoint("x", Some(BASE), Some("2024/10/21")).unwrap_err();
    assert!(err.contains("api_version '2024/10/21'"), "{err}");
    let err = endpoint("o_series/", Some(BASE), None).unwrap_err();
    assert!(err.contains("names no deployment"), "{err}");
    for v in [
        "2024-10-21",
        "2025-04-01-preview",
        "v1",
        "latest",
        "preview",
        "2024-02-15-preview",
    ] {
        assert!(valid_version(v), "{v}");
    }
    for v in [
        "",
        "2024-10",
        "2024-10-21-",
        "2024-10-21 preview",
        "v2",
        "2024-1a-21",
    ] {
        assert!(!valid_version(v), "{v}");
    }
}

#[test]
fn paths_for_each_version_and_base_shape() {
    let path = |model: &str, base_path: &str, version: Option<&str>, op| {
        AZURE.path(&target(model, base_path, version), op, false)
    };
    assert_eq!(
        path("dep", "", None, Operation::Chat),
        "/openai/deployments/dep/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(
        path("dep", "", Some("2025-04-01-preview"), Operation::Embeddings),
        "/openai/deployments/dep/embeddings?api-version=2025-04-01-preview"
    );
    assert_eq!(
        path("dep", "", Some("v1"), Operation::Chat),
        "/openai/v1/chat/completions"
    );
    assert_eq!(
        path("dep", "", Some("latest"), Operation::Embeddings),
        "/openai/v1/embeddings"
    );
    assert_eq!(
        path("dep", "/openai/v1", Some("preview"), Operation::Chat),
        "/openai/v1/chat/completions?api-version=preview"
    );
    assert_eq!(
        path("dep", "/openai", None, Operation::Chat),
        "/openai/deployments/dep/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(
        path("dep", "/openai/deployments/other", None, Operation::Chat),
        "/openai/deployments/other/chat/completions?api-version=2024-10-21"
    );
    // A gateway in front of Azure (API Management) with its own path prefix.
    assert_eq!(
        path("dep", "/aoai", None, Operation::Chat),
        "/aoai/openai/deployments/dep/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(
        path("o_series/my o3", "", None, Operation::Chat),
        "/openai/deployments/my%20o3/chat/completions?api-version=2024-10-21"
    );
}

// Requests ------------------------------------------------------------------------------------

fn realistic_request() -> Value {
    json!({
        "model": "azure-gpt",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this image, and the weather in Paris?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
            {"role": "user", "content": "Answer in JSON."}
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "temperature": 0.3,
        "top_p": 0.9,
        "max_tokens": 200,
        "stop": ["END"],
        "user": "user-42",
        "seed": 7,
        "logit_bias": {"50256": -100},
        "data_sources": [{"type": "azure_search", "parameters": {"endpoint": "https://s.search.windows.net", "index_name": "i"}}],
        "stream": true,
        "stream_options": {"include_usage": true}
    })
}

#[test]
fn request_is_openai_with_the_deployment_as_model() {
    let sent = chat(&gpt(), &realistic_request(), false).unwrap();
    let mut expected = realistic_request();
    expected["model"] = json!("my-gpt4o-deployment");
    assert_eq!(sent, expected);
}

#[test]
fn unsupported_parameters_are_refused_or_dropped() {
    let mut body = realistic_request();
    body["reasoning_effort"] = json!("low");
    body["service_tier"] = json!("auto");
    let e = chat(&gpt(), &body, false).unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(e.param.as_deref(), Some("reasoning_effort"));
    assert_eq!(e.code.as_deref(), Some("unsupported_parameter"));
    assert!(
        e.message.contains("reasoning_effort, service_tier"),
        "{}",
        e.message
    );
    assert!(e.message.contains("drop_params"), "{}", e.message);

    let sent = chat(&gpt(), &body, true).unwrap();
    assert!(sent.get("reasoning_effort").is_none() && sent.get("service_tier").is_none());
    assert_eq!(sent["temperature"], 0.3);

    // A null for a parameter Azure does not know is meaningless: dropped silently.
    let mut body = realistic_request();
    body["verbosity"] = Value::Null;
    let sent = chat(&gpt(), &body, false).unwrap();
    assert!(sent.get("verbosity").is_none());
}

#[test]
fn preview_and_v1_versions_pass_new_parameters() {
    for version in ["2025-04-01-preview", "v1", "preview"] {
        let t = target("dep", "", Some(version));
        let mut body = realistic_request();
        body["reasoning_effort"] = json!("low");
        let sent = chat(&t, &body, false).unwrap();
        assert_eq!(sent["reasoning_effort"], "low", "{version}");
        assert_eq!(sent["model"], "dep");
    }
}

#[test]
fn reasoning_deployments_get_max_completion_tokens() {
    let body = json!({"model": "azure-gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50});
    let sent = chat(&target("o_series/reasoner", "", None), &body, false).unwrap();
    assert_eq!(sent["model"], "reasoner");
    assert_eq!(sent["max_completion_tokens"], 50);
    assert!(sent.get("max_tokens").is_none());
    let t = target("gpt-5-mini", "", None);
    assert_eq!(chat(&t, &body, false).unwrap()["max_completion_tokens"], 50);
    let sent = chat(&gpt(), &body, false).unwrap();
    assert_eq!(sent["max_tokens"], 50);
}

#[test]
fn embeddings_request_names_the_deployment() {
    let t = target("my-embedding-deployment", "", None);
    let body =
        br#"{"model":"azure-embed","input":["a","b"],"encoding_format":"base64","dimensions":256}"#;
    let req = parse_embeddings(body).unwrap();
    let sent: Value = serde_json::from_slice(&AZURE.embeddings_request(&req, &t).unwrap()).unwrap();
    assert_eq!(
        sent,
        json!({"model": "my-embedding-deployment", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 256})
    );
}

// Responses -----------------------------------------------------------------------------------

const FILTERS: &str = r#"{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}"#;

fn azure_completion(message: &str, finish: &str) -> Vec<u8> {
    format!(
        r#"{{"choices":[{{"content_filter_results":{FILTERS},"finish_reason":"{finish}","index":0,"logprobs":null,"message":{message}}}],"created":1727000000,"id":"chatcmpl-AZ1","model":"gpt-4o-2024-08-06","object":"chat.completion","prompt_filter_results":[{{"prompt_index":0,"content_filter_results":{FILTERS}}}],"system_fingerprint":"fp_d54531d9eb","usage":{{"completion_tokens":12,"completion_tokens_details":{{"reasoning_tokens":0}},"prompt_tokens":40,"prompt_tokens_details":{{"cached_tokens":32}},"total_tokens":52}}}}"#
    )
    .into_bytes()
}

#[test]
fn response_keeps_filter_results_and_names_the_alias() {
    let body = azure_completion(
        r#"{"content":"Hello!","refusal":null,"role":"assistant"}"#,
        "stop",
    );
    let t = AZURE.chat_response(&body, &ctx()).unwrap();
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(v["model"], "azure-gpt");
    assert_eq!(v["id"], "chatcmpl-AZ1");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello!");
    assert_eq!(
        v["choices"][0]["content_filter_results"]["hate"]["severity"],
        "safe"
    );
    assert_eq!(v["prompt_filter_results"][0]["prompt_index"], 0);
    assert_eq!(t.usage.unwrap_or_default().prompt_tokens, 40);
    assert_eq!(t.usage.unwrap_or_default().completion_tokens, 12);
    assert_eq!(t.usage.unwrap_or_default().cached_tokens, 32);

    let body = azure_completion(
        r#"{"content":null,"role":"assistant","tool_calls":[{"id":"call_x","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}"#,
        "tool_calls",
    );
    let v: Value =
        serde_json::from_slice(&AZURE.chat_response(&body, &ctx()).unwrap().body).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Paris\"}"
    );

    // The completion itself was filtered: a 200 with finish_reason content_filter.
    let body = azure_completion(r#"{"role":"assistant"}"#, "content_filter");
    let v: Value =
        serde_json::from_slice(&AZURE.chat_response(&body, &ctx()).unwrap().body).unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    assert!(AZURE.chat_response(b"<html>", &ctx()).is_err());
}

#[test]
fn embeddings_floats_become_base64_when_asked() {
    let body = br#"{"object":"list","data":[{"object":"embedding","index":1,"embedding":[1.0,2.0]},{"object":"embedding","index":0,"embedding":[0.5,-1.25]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":4,"total_tokens":4}}"#;
    let t = AZURE.embeddings_response(body, true, &ctx()).unwrap();
    let v: Value = serde_json::from_slice(&t.body).unwrap();
    assert_eq!(v["model"], "azure-gpt");
    assert_eq!(t.usage.unwrap_or_default().prompt_tokens, 4);
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        bytes,
        [0.5f32.to_le_bytes(), (-1.25f32).to_le_bytes()].concat()
    );
    // Floats asked, floats given: passed through.
    let v: Value =
        serde_json::from_slice(&AZURE.embeddings_response(body, false, &ctx()).unwrap().body)
            .unwrap();
    assert_eq!(v["data"][0]["embedding"][0], 1.0);
    // Base64 already: passed through.
    let b64 = br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":"AAAAPwAAoL8="}],"model":"m","usage":{"prompt_tokens":1,"total_tokens":1}}"#;
    let v: Value =
        serde_json::from_slice(&AZURE.embeddings_response(b64, true, &ctx()).unwrap().body)
            .unwrap();
    assert_eq!(v["data"][0]["embedding"], "AAAAPwAAoL8=");
    assert_eq!(v["model"], "azure-gpt");
}

// Streams -------------------------------------------------------------------------------------

/// A real-shaped Azure stream: the choice-less prompt annotation first, content chunks with
/// filter results, an annotation-only choice (asynchronous filter) without `delta`, the finish,
/// and the usage chunk.
fn azure_stream() -> Vec<u8> {
    let chunk = |choices: &str, extra: &str| {
        format!(
            "data: {{\"choices\":{choices},\"created\":1727000000,\"id\":\"chatcmpl-AZS\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_1\"{extra}}}\n\n"
        )
    };
    let mut s = format!(
        "data: {{\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{{\"prompt_index\":0,\"content_filter_results\":{FILTERS}}}]}}\n\n"
    );
    s += &chunk(
        r#"[{"content_filter_results":{},"delta":{"content":"","refusal":null,"role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}]"#,
        "",
    );
    s += &chunk(
        &format!(
            r#"[{{"content_filter_results":{FILTERS},"delta":{{"content":"Hel"}},"finish_reason":null,"index":0,"logprobs":null}}]"#
        ),
        "",
    );
    s += &chunk(
        &format!(
            r#"[{{"content_filter_results":{FILTERS},"delta":{{"content":"lo ✓"}},"finish_reason":null,"index":0,"logprobs":null}}]"#
        ),
        "",
    );
    s += &format!("data: {{\"id\":\"\",\"object\":\"\",\"created\":0,\"model\":\"\",\"choices\":[{{\"index\":0,\"finish_reason\":null,\"content_filter_results\":{FILTERS},\"content_filter_offsets\":{{\"check_offset\":5,\"start_offset\":0,\"end_offset\":5}}}}]}}\r\n\r\n");
    s += &chunk(
        r#"[{"content_filter_results":{},"delta":{},"finish_reason":"stop","index":0,"logprobs":null}]"#,
        "",
    );
    s += &chunk(
        "[]",
        r#","usage":{"completion_tokens":3,"prompt_tokens":9,"prompt_tokens_details":{"cached_tokens":0},"total_tokens":12}"#,
    );
    s += "data: [DONE]\n\n";
    s.into_bytes()
}

/// A stream whose client asked for usage (`stream_options.include_usage`).
fn run_stream(parts: &[&[u8]]) -> (Vec<u8>, crate::openai::Usage) {
    let mut t = AZURE.chat_stream(ResponseCtx {
        include_usage: true,
        api: Default::default(),
        ..ctx()
    });
    let mut out = Vec::new();
    for p in parts {
        t.feed(p, &mut out);
    }
    t.finish(&mut out);
    (out, t.final_usage().unwrap_or_default())
}

fn events(out: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(out).unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| e.strip_prefix("data: ").unwrap())
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[test]
fn stream_chunks_are_openai_shaped() {
    let (out, usage) = run_stream(&[&azure_stream()]);
    let ev = events(&out);
    assert_eq!(ev.len(), 6, "{ev:#?}");
    for e in &ev {
        assert_eq!(e["object"], "chat.completion.chunk");
        assert_eq!(e["id"], "chatcmpl-AZS");
        assert_eq!(e["created"], 1727000000);
        assert_eq!(e["model"], "azure-gpt");
    }
    // The prompt annotation rides on the first chunk instead of an empty-choices chunk.
    assert_eq!(ev[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(ev[0]["prompt_filter_results"][0]["prompt_index"], 0);
    assert!(ev[1].get("prompt_filter_results").is_none());
    let text: String = ev
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Hello ✓");
    // The annotation-only choice gets an empty delta and keeps its filter data.
    assert_eq!(ev[3]["choices"][0]["delta"], json!({}));
    assert_eq!(
        ev[3]["choices"][0]["content_filter_offsets"]["check_offset"],
        5
    );
    assert_eq!(ev[4]["choices"][0]["finish_reason"], "stop");
    assert_eq!(ev[5]["choices"], json!([]));
    assert_eq!(ev[5]["usage"]["total_tokens"], 12);
    assert_eq!(usage.prompt_tokens, 9);
    assert_eq!(usage.completion_tokens, 3);
}

#[test]
fn stream_output_is_independent_of_chunking() {
    let stream = azure_stream();
    let whole = run_stream(&[&stream]);
    for i in 0..=stream.len() {
        assert_eq!(
            run_stream(&[&stream[..i], &stream[i..]]),
            whole,
            "split at {i}"
        );
    }
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(run_stream(&bytes), whole);
}

#[test]
fn stream_fills_ids_before_the_upstream_gives_one() {
    // An annotation-only choice arriving first takes the gateway's id and time.
    let s = b"data: {\"id\":\"\",\"object\":\"\",\"created\":0,\"model\":\"\",\"choices\":[{\"index\":0,\"finish_reason\":\"content_filter\",\"content_filter_results\":{\"protected_material_text\":{\"detected\":true,\"filtered\":true}}}]}\n\ndata: [DONE]\n\n";
    let ev = events(&run_stream(&[s]).0);
    assert_eq!(ev[0]["id"], "chatcmpl-gw");
    assert_eq!(ev[0]["created"], 1700000000);
    assert_eq!(ev[0]["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(ev[0]["choices"][0]["delta"], json!({}));
    // Chunks missing the standard fields get them.
    let s =
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\ndata: [DONE]\n\n";
    let ev = events(&run_stream(&[s]).0);
    assert_eq!(ev[0]["object"], "chat.completion.chunk");
    assert_eq!(ev[0]["model"], "azure-gpt");
    assert_eq!(ev[0]["id"], "chatcmpl-gw");
}

#[test]
fn stream_error_event_becomes_an_openai_error() {
    let full = azure_stream();
    let text = std::str::from_utf8(&full).unwrap();
    // The annotation, the role chunk and the first content chunk, then Azure gives up.
    let head: String = text.split_inclusive("\n\n").take(3).collect();
    let s = format!("{head}data: {{\"error\":{{\"code\":\"429\",\"message\":\"Requests to the ChatCompletions_Create Operation have exceeded call rate limit.\"}}}}\n\ndata: [DONE]\n\n");
    let (out, _) = run_stream(&[s.as_bytes()]);
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains("[DONE]"), "{out}");
    let ev: Vec<&str> = out.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(ev.len(), 3, "{out}");
    let v: Value = serde_json::from_str(ev[2].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("call rate limit"));
}

// Errors --------------------------------------------------------------------------------------

fn err(status: u16, body: &str) -> ApiError {
    AZURE.error(status, None, body.as_bytes())
}

#[test]
fn errors_become_openai_errors() {
    let e = err(
        404,
        r#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}}"#,
    );
    assert_eq!((e.status, e.kind), (404, "invalid_request_error"));
    assert_eq!(e.code.as_deref(), Some("model_not_found"));
    assert_eq!(e.param.as_deref(), Some("model"));
    assert!(e
        .message
        .contains("deployment for this resource does not exist"));

    let e = err(
        429,
        r#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after 6 seconds."}}"#,
    );
    assert_eq!((e.status, e.kind), (429, "rate_limit_error"));
    assert_eq!(e.code.as_deref(), Some("rate_limit_exceeded"));

    let e = err(
        401,
        r#"{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}"#,
    );
    assert_eq!((e.status, e.kind), (401, "authentication_error"));
    assert_eq!(e.code.as_deref(), Some("invalid_api_key"));

    let e = err(
        401,
        r#"{"statusCode":401,"message":"Access denied due to invalid subscription key or wrong API endpoint."}"#,
    );
    assert_eq!((e.status, e.kind), (401, "authentication_error"));
    assert_eq!(e.code.as_deref(), Some("invalid_api_key"));
    assert!(e.message.starts_with("Access denied"));

    let e = err(
        403,
        r#"{"error":{"code":"403","message":"Access denied due to Virtual Network/Firewall rules."}}"#,
    );
    assert_eq!((e.status, e.kind), (403, "permission_error"));
    assert_eq!(e.code.as_deref(), Some("403"));

    let e = err(
        400,
        r#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130021 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
    );
    assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
    let e = err(
        400,
        r#"{"error":{"message":"This model's maximum context length is 8192 tokens.","type":"invalid_request_error","param":"messages","code":null}}"#,
    );
    assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));

    let e = err(
        400,
        r#"{"error":{"message":"Unrecognized request argument supplied: foo_bar","type":"invalid_request_error","param":null,"code":null}}"#,
    );
    assert_eq!(e.param.as_deref(), Some("foo_bar"));

    let e = err(
        500,
        r#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"#,
    );
    assert_eq!((e.status, e.kind), (500, "api_error"));
    let e = err(
        503,
        r#"{"error":{"code":"ServiceUnavailable","message":"The service is temporarily unable to process your request. Please try again later."}}"#,
    );
    assert_eq!((e.status, e.kind), (503, "api_error"));
    assert_eq!(e.code.as_deref(), Some("ServiceUnavailable"));
    let e = err(502, "<html><body>502 Bad Gateway</body></html>");
    assert_eq!((e.status, e.kind), (502, "api_error"));
}

#[test]
fn content_filter_errors_name_the_categories() {
    let body = r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766","type":null,"param":"prompt","code":"content_filter","status":400,"innererror":{"code":"ResponsibleAIPolicyViolation","content_filter_result":{"hate":{"filtered":true,"severity":"high"},"jailbreak":{"filtered":false,"detected":false},"self_harm":{"filtered":false,"severity":"safe"},"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":true,"severity":"medium"}}}}}"#;
    let e = err(400, body);
    assert_eq!((e.status, e.kind), (400, "invalid_request_error"));
    assert_eq!(e.code.as_deref(), Some("content_filter"));
    assert_eq!(e.param.as_deref(), Some("messages"));
    assert!(
        e.message
            .ends_with("(filtered categories: hate (high), violence (medium))"),
        "{}",
        e.message
    );
    // In a stream the status comes from the code.
    let e = stream_error(body.as_bytes());
    assert_eq!((e.status, e.code.as_deref()), (400, Some("content_filter")));
}

#[test]
fn errors_never_echo_keys() {
    let e = err(
        401,
        r#"{"error":{"code":"invalid_api_key","message":"Incorrect API key provided: sk-proj-abcdefghijklmnopqrstuvwxyz0123."}}"#,
    );
    assert!(!e.message.contains("abcdefghijklmnop"), "{}", e.message);
    let e = err(
        401,
        r#"{"statusCode":401,"message":"bad key sk-abcdefghijklmnopqrstuvwxyz"}"#,
    );
    assert!(!e.message.contains("abcdefghijklmnop"), "{}", e.message);
}

// Properties ----------------------------------------------------------------------------------

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "",
            "choices",
            "error",
            "delta",
            "content_filter",
            "429",
            "[DONE]",
            "usage",
            "id",
            "✓",
        ])
        .prop_map(|s| json!(s)),
        "[a-z_ ]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "id",
                        "object",
                        "created",
                        "model",
                        "choices",
                        "usage",
                        "error",
                        "code",
                        "message",
                        "delta",
                        "index",
                        "innererror",
                        "content_filter_result",
                        "prompt_filter_results",
                        "statusCode",
                        "data",
                        "embedding",
                        "x",
                    ]),
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn responses_and_errors_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256), v in arb_json(), status in 0u16..700) {
        let json_bytes = serde_json::to_vec(&v).unwrap();
        for body in [&bytes, &json_bytes] {
            if let Ok(t) = AZURE.chat_response(body, &ctx()) {
                serde_json::from_slice::<Value>(&t.body).unwrap();
            }
            for b64 in [false, true] {
                if let Ok(t) = AZURE.embeddings_response(body, b64, &ctx()) {
                    serde_json::from_slice::<Value>(&t.body).unwrap();
                }
            }
            let e = AZURE.error(status, None, body);
            prop_assert!((400..600).contains(&e.status));
            serde_json::from_slice::<Value>(&e.to_json()).unwrap();
            let e = stream_error(body);
            prop_assert!((400..600).contains(&e.status));
        }
    }

    #[test]
    fn streams_never_panic_and_ignore_chunking(
        events in prop::collection::vec(prop_oneof![arb_json().prop_map(|v| serde_json::to_string(&v).unwrap()), "[ -~]{0,20}"], 0..6),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut stream = Vec::new();
        for e in &events {
            stream.extend_from_slice(b"data: ");
            stream.extend_from_slice(e.as_bytes());
            stream.extend_from_slice(b"\n\n");
        }
        let whole = run_stream(&[&stream]);
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        points.sort_unstable();
        let mut parts = Vec::new();
        let mut last = 0;
        for p in points {
            parts.push(&stream[last..p]);
            last = p;
        }
        parts.push(&stream[last..]);
        prop_assert_eq!(&run_stream(&parts), &whole);
        // When every upstream event is JSON, every event written is JSON.
        if events.iter().all(|e| serde_json::from_str::<Value>(e).is_ok()) {
            let text = String::from_utf8(whole.0.clone()).unwrap();
            for e in text.split("\n\n").filter(|e| !e.is_empty()) {
                let data = e.strip_prefix("data: ").unwrap();
                if data != "[DONE]" {
                    prop_assert!(serde_json::from_str::<Value>(data).is_ok(), "{}", data);
                }
            }
        }
    }

    #[test]
    fn arbitrary_chat_requests_never_panic(
        extra in prop::collection::vec((prop::sample::select(vec!["temperature", "reasoning_effort", "n", "tools", "stop", "user", "foo", "logprobs"]), arb_json()), 0..4),
        content in arb_json(),
        drop_params in any::<bool>(),
        version in prop::sample::select(vec!["2024-10-21", "2024-02-01", "2025-04-01-preview", "v1"]),
    ) {
        let t = target("dep", "", Some(version));
        let mut body = json!({"model": "azure-gpt", "messages": [{"role": "user", "content": content}]});
        for (k, v) in extra {
            body[k] = v;
        }
        let bytes = serde_json::to_vec(&body).unwrap();
        if let Ok(req) = parse_chat(&bytes) {
            match AZURE.chat_request(&req, &t, RequestOptions { drop_params, ..Default::default() }) {
                Ok(out) => {
                    let v: Value = serde_json::from_slice(&out).unwrap();
                    prop_assert_eq!(&v["model"], "dep");
                }
                Err(e) => prop_assert_eq!(e.status, 400),
            }
        }
    }
}

#[test]
fn usage_the_client_did_not_ask_for_is_kept_but_not_shown() {
    let mut t = AZURE.chat_stream(ctx());
    let mut out = Vec::new();
    t.feed(&azure_stream(), &mut out);
    let ev = events(&out);
    assert!(ev.iter().all(|e| e.get("usage").is_none()), "{ev:#?}");
    assert!(ev.iter().all(|e| e["choices"] != json!([])));
    assert_eq!(t.final_usage().unwrap().prompt_tokens, 9);
}
