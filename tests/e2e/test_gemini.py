"""Gemini (Google AI Studio) deployments through the real Envoy, with the official OpenAI SDK as the client."""

import base64
import json
import struct

import openai
import pytest

from conftest import MASTER_KEY, gateway_config, gateway_env
from harness import Envoy, http
from mocks.base import Json, Raw, Stream, sse
from mocks.gemini_mock import API_KEY_INVALID, GEMINI_KEY, gemini_error

CHAT_PATH = "/v1beta/models/gemini-2.5-flash:generateContent"
STREAM_PATH = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
EMBED_PATH = "/v1beta/models/text-embedding-004:batchEmbedContents"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                   "required": ["location"], "additionalProperties": False}}}]


def user(text):
    return [{"role": "user", "content": text}]


def test_chat_completion(client, mocks):
    r = client.chat.completions.create(model="gemini", messages=user("hello there"))
    assert r.model == "gemini"
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "echo: hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == 2 and r.usage.completion_tokens == 3 and r.usage.total_tokens == 5
    got = mocks["gemini"].last()
    assert got.method == "POST" and got.path == CHAT_PATH and got.query == {}
    assert got.headers["x-goog-api-key"] == GEMINI_KEY
    assert "authorization" not in got.headers
    assert MASTER_KEY not in json.dumps(got.headers)
    assert not any(k.startswith("x-stainless") for k in got.headers)
    assert got.json == {"contents": [{"role": "user", "parts": [{"text": "hello there"}]}]}


def test_system_multi_turn_and_params(client, mocks):
    r = client.chat.completions.create(
        model="gemini",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "one two three four five six"},
        ],
        temperature=0.4, top_p=0.8, max_tokens=4, stop=["zzz"], seed=7, presence_penalty=0.1,
        frequency_penalty=0.2, user="alice@example.com")
    # maxOutputTokens=4 cuts the echo, as the model would.
    assert r.choices[0].message.content == "echo: one two three"
    assert r.choices[0].finish_reason == "length"
    body = mocks["gemini"].last().json
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["generationConfig"] == {
        "temperature": 0.4, "topP": 0.8, "maxOutputTokens": 4, "stopSequences": ["zzz"], "seed": 7,
        "presencePenalty": 0.1, "frequencyPenalty": 0.2}
    # Gemini has no end-user field; like LiteLLM, the gateway drops `user` rather than refuse it.
    assert "alice" not in json.dumps(body)


def test_stop_sequence_and_several_candidates(client, mocks):
    r = client.chat.completions.create(model="gemini", messages=user("alpha beta gamma"), stop="gamma", n=2,
                                       max_completion_tokens=50)
    assert [c.index for c in r.choices] == [0, 1]
    assert all(c.message.content == "echo: alpha beta " for c in r.choices)
    assert mocks["gemini"].last().json["generationConfig"] == {
        "maxOutputTokens": 50, "stopSequences": ["gamma"], "candidateCount": 2}


def test_streaming_without_usage(client, mocks):
    stream = client.chat.completions.create(model="gemini", messages=user("one two three four five"), stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three four five"
    assert all(c.model == "gemini" and c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert all(c.usage is None for c in chunks)
    got = mocks["gemini"].last()
    assert got.path == STREAM_PATH and got.query == {"alt": "sse"}
    assert got.headers["x-goog-api-key"] == GEMINI_KEY
    assert "stream" not in got.json


def test_streaming_with_usage(client, mocks):
    stream = client.chat.completions.create(model="gemini", messages=user("one two three"), stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: one two three"
    last = chunks[-1]
    assert last.choices == []
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (3, 4, 7)
    assert all(c.usage is None for c in chunks[:-1])


@pytest.mark.parametrize("split", [1, 7])
def test_stream_split_at_awkward_boundaries(client, mocks, split):
    events = [
        {"candidates": [{"content": {"parts": [{"text": "Héllo, "}], "role": "model"}}],
         "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4}, "modelVersion": "gemini-2.5-flash"},
        {"candidates": [{"content": {"parts": [{"text": "wörld ✓ "}], "role": "model"}}],
         "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4}, "modelVersion": "gemini-2.5-flash"},
        {"candidates": [{"content": {"parts": [{"text": "done"}], "role": "model"}, "finishReason": "STOP"}],
         "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 5, "totalTokenCount": 9},
         "modelVersion": "gemini-2.5-flash"},
    ]
    parts = ["data: " + json.dumps(e, ensure_ascii=False) + "\r\n\r\n" for e in events]
    mocks["gemini"].enqueue(Stream(parts, split=split))
    chunks = list(client.chat.completions.create(model="gemini", messages=user("x"), stream=True,
                                                 stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Héllo, wörld ✓ done"
    assert chunks[-1].usage.total_tokens == 9


def test_tools_non_streaming(client, mocks):
    r = client.chat.completions.create(model="gemini", messages=user("weather in Paris?"), tools=WEATHER,
                                       tool_choice="required")
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls"
    assert msg.content is None
    call = msg.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}
    assert call.id.startswith("call_") and "__thought__" in call.id
    body = mocks["gemini"].last().json
    assert body["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Current weather for a city",
        "parametersJsonSchema": WEATHER[0]["function"]["parameters"]}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


def test_named_tool_choice(client, mocks):
    tools = WEATHER + [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
    r = client.chat.completions.create(model="gemini", messages=user("time?"), tools=tools,
                                       tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert r.choices[0].message.tool_calls[0].function.name == "get_time"
    assert mocks["gemini"].last().json["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}}


def test_parallel_tool_calls_false(client, mocks):
    """Gemini cannot turn parallel calls off: `false` is dropped where at most one call can come back (one
    tool, or tool_choice "none"), and refused with several callable tools (LiteLLM's rule)."""
    tools = WEATHER + [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
    r = client.chat.completions.create(model="gemini", messages=user("weather in Paris?"), tools=WEATHER,
                                       tool_choice="required", parallel_tool_calls=False)
    assert r.choices[0].message.tool_calls[0].function.name == "get_weather"
    assert b"parallel" not in mocks["gemini"].last().body
    r = client.chat.completions.create(model="gemini", messages=user("hello"), tools=tools, tool_choice="none",
                                       parallel_tool_calls=False)
    assert r.choices[0].message.tool_calls is None
    assert mocks["gemini"].last().json["toolConfig"] == {"functionCallingConfig": {"mode": "NONE"}}
    n = mocks["gemini"].count()
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gemini", messages=user("x"), tools=tools, parallel_tool_calls=False)
    assert e.value.body["param"] == "parallel_tool_calls"
    assert mocks["gemini"].count() == n


def test_tools_streaming(client, mocks):
    chunks = list(client.chat.completions.create(model="gemini", messages=user("weather?"), tools=WEATHER,
                                                 stream=True))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].id and calls[0].function.name == "get_weather" and calls[0].type == "function"
    assert all(tc.index == 0 for tc in calls)
    args = "".join(tc.function.arguments or "" for tc in calls)
    assert json.loads(args) == {"location": "Paris"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]


def test_tool_result_round_trip(client, mocks):
    first = client.chat.completions.create(model="gemini", messages=user("weather in Paris?"), tools=WEATHER)
    call = first.choices[0].message.tool_calls[0]
    messages = user("weather in Paris?") + [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 21, "sky": "clear"})},
    ]
    r = client.chat.completions.create(model="gemini", messages=messages, tools=WEATHER)
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == 'Tool results: get_weather -> {"sky": "clear", "temp_c": 21}'
    contents = mocks["gemini"].last().json["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    fc = contents[1]["parts"][0]
    assert fc["functionCall"] == {"name": "get_weather", "args": {"location": "Paris"}}
    # The thought signature Gemini gave the call comes back with it, carried by the tool call id.
    assert base64.b64decode(fc["thoughtSignature"]).startswith(b"mock-thought-signature:")
    assert contents[2]["parts"] == [{"functionResponse": {
        "name": "get_weather", "response": {"temp_c": 21, "sky": "clear"}}}]

    # A plain-text tool result is wrapped, since Gemini takes an object.
    messages[-1] = {"role": "tool", "tool_call_id": call.id, "content": "21 degrees"}
    client.chat.completions.create(model="gemini", messages=messages, tools=WEATHER)
    part = mocks["gemini"].last().json["contents"][2]["parts"][0]
    assert part["functionResponse"]["response"] == {"content": "21 degrees"}


def test_json_object(client, mocks):
    r = client.chat.completions.create(model="gemini", messages=user("give json"),
                                       response_format={"type": "json_object"})
    assert json.loads(r.choices[0].message.content) == {"answer": "give json"}
    assert mocks["gemini"].last().json["generationConfig"] == {"responseMimeType": "application/json"}


def test_json_schema(client, mocks):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
              "additionalProperties": False}
    r = client.chat.completions.create(
        model="gemini", messages=user("structured"),
        response_format={"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}})
    assert json.loads(r.choices[0].message.content) == {"answer": "structured"}
    # JSON Schema goes in responseJsonSchema verbatim (responseSchema would refuse additionalProperties).
    assert mocks["gemini"].last().json["generationConfig"] == {
        "responseMimeType": "application/json", "responseJsonSchema": schema}


def test_images(client, mocks):
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/photos/cat.jpg", "detail": "low"}},
    ]
    r = client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": content}])
    assert r.choices[0].message.content == "echo: what is this"
    parts = mocks["gemini"].last().json["contents"][0]["parts"]
    assert parts == [
        {"text": "what is this"},
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photos/cat.jpg"}},
    ]


def test_reasoning_effort(client, mocks):
    r = client.chat.completions.create(model="gemini", messages=user("think"), reasoning_effort="low")
    assert r.choices[0].message.content == "echo: think"
    assert r.choices[0].message.reasoning_content == "The user said: think"
    assert r.usage.completion_tokens_details.reasoning_tokens == 4
    assert r.usage.completion_tokens == 2 + 4
    assert mocks["gemini"].last().json["generationConfig"] == {
        "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}}


def test_unsupported_parameter(client, mocks):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gemini", messages=user("x"), logit_bias={"50256": -100})
    assert e.value.status_code == 400
    assert e.value.body["param"] == "logit_bias"
    assert e.value.body["code"] == "unsupported_parameter"
    assert "logit_bias" in e.value.message
    # Envoy may already have opened the upstream request (headers go before the body is read);
    # no body is ever sent.
    assert all(not r.body for r in mocks["gemini"].received)


def test_blocked_prompt(client, mocks):
    mocks["gemini"].enqueue(Json({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]},
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}, "modelVersion": "gemini-2.5-flash"}))
    r = client.chat.completions.create(model="gemini", messages=user("something bad"))
    assert r.choices[0].finish_reason == "content_filter"
    assert r.choices[0].message.content is None
    assert r.usage.prompt_tokens == 8


ERRORS = [
    (400, "INVALID_ARGUMENT", "Request contains an invalid argument.", openai.BadRequestError),
    (400, "FAILED_PRECONDITION", "User location is not supported for the API use.", openai.BadRequestError),
    (401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", openai.AuthenticationError),
    (403, "PERMISSION_DENIED", "The caller does not have permission", openai.PermissionDeniedError),
    (404, "NOT_FOUND", "models/gemini-9 is not found for API version v1beta.", openai.NotFoundError),
    (429, "RESOURCE_EXHAUSTED", "You exceeded your current quota, please check your plan and billing details.",
     openai.RateLimitError),
    (500, "INTERNAL", "An internal error has occurred. Please retry or report in "
     "https://developers.generativeai.google/guide/troubleshooting", openai.InternalServerError),
    (503, "UNAVAILABLE", "The model is overloaded. Please try again later.", openai.InternalServerError),
    (504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.", openai.InternalServerError),
]


@pytest.mark.parametrize("code,status,message,exc", ERRORS, ids=[e[1] for e in ERRORS])
def test_upstream_errors_map_to_sdk_exceptions(client, mocks, code, status, message, exc):
    mocks["gemini"].enqueue(gemini_error(code, status, message))
    with pytest.raises(exc) as e:
        client.chat.completions.create(model="gemini", messages=user("x"))
    assert e.value.status_code == code
    assert message in e.value.message
    assert e.value.body["message"] == message
    expected_type = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                     404: "invalid_request_error", 429: "rate_limit_error"}.get(code, "api_error")
    assert e.value.body["type"] == expected_type


def test_context_length_exceeded(client, mocks):
    mocks["gemini"].enqueue(gemini_error(
        400, "INVALID_ARGUMENT",
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)."))
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gemini", messages=user("x"))
    assert e.value.code == "context_length_exceeded"


def test_invalid_key_error_body(client, mocks):
    # Gemini answers a bad key with HTTP 400; the gateway decides the status before reading the
    # body, so the client sees 400, typed as an authentication error.
    mocks["gemini"].enqueue(API_KEY_INVALID)
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gemini", messages=user("x"))
    assert e.value.body["type"] == "authentication_error"
    assert e.value.code == "invalid_api_key"
    assert GEMINI_KEY not in json.dumps(e.value.body)


def test_error_redacts_keys_and_non_json(client, mocks):
    mocks["gemini"].enqueue(gemini_error(403, "PERMISSION_DENIED", f"API key {GEMINI_KEY} was reported as leaked."))
    with pytest.raises(openai.PermissionDeniedError) as e:
        client.chat.completions.create(model="gemini", messages=user("x"))
    assert GEMINI_KEY not in e.value.message and "[redacted]" in e.value.message
    mocks["gemini"].enqueue(Raw(b"<html>502 Bad Gateway</html>", status=502, content_type="text/html"))
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="gemini", messages=user("x"))
    assert e.value.status_code == 502


def test_error_in_the_middle_of_a_stream(client, mocks):
    events = [
        {"candidates": [{"content": {"parts": [{"text": "Partial "}], "role": "model"}}]},
        {"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}},
    ]
    mocks["gemini"].enqueue(Stream(sse(events)))
    stream = client.chat.completions.create(model="gemini", messages=user("x"), stream=True)
    text = ""
    with pytest.raises(openai.APIError) as e:
        for c in stream:
            text += (c.choices[0].delta.content or "") if c.choices else ""
    assert text == "Partial "
    assert "overloaded" in e.value.message


def test_wrong_key_through_a_second_gateway(mocks):
    env = gateway_env(mocks)
    env["GEMINI_API_KEY"] = "AIzaSyWrongKeyWrongKeyWrongKey000000000"
    with Envoy(gateway_config(mocks), env=env, concurrency=1) as envoy:
        c = openai.OpenAI(base_url=f"{envoy.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model="gemini", messages=user("x"))
    assert e.value.code == "invalid_api_key"
    assert "AIzaSyWrong" not in json.dumps(e.value.body)
    assert mocks["gemini"].last().headers["x-goog-api-key"] == env["GEMINI_API_KEY"]


def test_embeddings_base64_default(client, mocks):
    r = client.embeddings.create(model="gemini-embed", input=["first text", "second"], dimensions=8)
    assert r.model == "gemini-embed" and r.object == "list"
    assert [d.index for d in r.data] == [0, 1]
    assert len(r.data[0].embedding) == 8 and isinstance(r.data[0].embedding[0], float)
    # Gemini reports no token count for embeddings.
    assert r.usage.prompt_tokens == 0 and r.usage.total_tokens == 0
    got = mocks["gemini"].last()
    assert got.path == EMBED_PATH
    assert got.headers["x-goog-api-key"] == GEMINI_KEY
    assert got.json == {"requests": [
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "first text"}]}, "outputDimensionality": 8},
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "second"}]}, "outputDimensionality": 8},
    ]}


def test_embeddings_float_and_errors(client, mocks):
    r = client.embeddings.create(model="gemini-embed", input="just one", encoding_format="float")
    assert len(r.data) == 1 and len(r.data[0].embedding) == 768
    assert "outputDimensionality" not in mocks["gemini"].last().json["requests"][0]
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="gemini-embed", input=[[1, 2, 3]])
    assert e.value.body["param"] == "input"
    mocks["gemini"].enqueue(gemini_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for embed_content."))
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model="gemini-embed", input="x")


def test_embeddings_base64_decodes_to_the_vector(client, mocks):
    mocks["gemini"].enqueue(Json({"embeddings": [{"values": [0.5, -1.25, 2.0]}]}))
    r = client.embeddings.with_raw_response.create(model="gemini-embed", input="x", encoding_format="base64")
    data = json.loads(r.text)["data"][0]["embedding"]
    assert struct.unpack("<3f", base64.b64decode(data)) == (0.5, -1.25, 2.0)


def test_mock_speaks_proto_json_like_the_real_api(mocks):
    """The mock itself, called directly: snake_case and camelCase names, Google's refusals."""
    base = mocks["gemini"].base_url
    key = {"x-goog-api-key": GEMINI_KEY, "content-type": "application/json"}
    body = {"system_instruction": {"parts": [{"text": "Be brief."}]},
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "generation_config": {"max_output_tokens": 10, "response_mime_type": "application/json",
                                  "response_json_schema": {"type": "object", "additionalProperties": False}}}
    status, _, out = http("POST", f"{base}{CHAT_PATH}", body, key)
    assert status == 200 and json.loads(json.loads(out)["candidates"][0]["content"]["parts"][0]["text"]) == {"answer": "hi"}
    body["generationConfig"] = {"responseSchema": {"type": "OBJECT", "additionalProperties": False}}
    del body["generation_config"]
    status, _, out = http("POST", f"{base}{CHAT_PATH}", body, key)
    err = json.loads(out)["error"]
    assert status == 400 and err["status"] == "INVALID_ARGUMENT"
    assert err["message"].startswith('Invalid JSON payload received. Unknown name "additionalProperties" '
                                     "at 'generation_config.response_schema'")
    status, _, out = http("POST", f"{base}{CHAT_PATH}", {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, key)
    assert status == 400 and "valid role" in json.loads(out)["error"]["message"]
    status, _, out = http("POST", f"{base}{CHAT_PATH}", {"contents": []}, {"content-type": "application/json"})
    assert status == 403 and json.loads(out)["error"]["status"] == "PERMISSION_DENIED"
    status, _, out = http("POST", f"{base}{CHAT_PATH}?key=wrong", {"contents": []}, {"content-type": "application/json"})
    assert status == 400 and json.loads(out)["error"]["details"][0]["reason"] == "API_KEY_INVALID"
