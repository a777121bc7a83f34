"""Anthropic deployments through the real Envoy, with the official OpenAI SDK as the client."""

import base64
import json

import openai
import pytest

from conftest import MASTER_KEY, gateway_config, gateway_env
from harness import Envoy, http
from mocks.anthropic_mock import ANTHROPIC_KEY, MESSAGE_ID, AnthropicMock, anthropic_error
from mocks.base import Json, Raw, Stream, sse

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}]
TOOL_ID = "toolu_01A09q90qw90lq917835lq9"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n tiny").decode()


def user(text):
    return [{"role": "user", "content": text}]


def stream_text(chunks):
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def stream_tool_calls(chunks):
    calls = {}
    for c in chunks:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            call = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
            if tc.id:
                call["id"] = tc.id
            if tc.function and tc.function.name:
                call["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                call["arguments"] += tc.function.arguments
    return [calls[i] for i in sorted(calls)]


def assert_nothing_sent(mock):
    # Envoy opens the upstream request when the headers pass, before the body is translated, so
    # a request refused in the body phase reaches the mock as headers and an aborted, empty body.
    assert not any(r.body for r in mock.received), [r.body for r in mock.received]


def finish_reasons(chunks):
    return [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


def test_chat_completion(client, mocks):
    r = client.chat.completions.create(
        model="claude", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}])
    assert r.choices[0].message.content == "echo: hello there"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "claude" and r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-") and MESSAGE_ID not in r.id
    # Mock: 10 + words of "Be brief. hello there"; output "echo: hello there".
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (14, 3, 17)
    got = mocks["anthropic"].last()
    assert (got.method, got.path, got.query) == ("POST", "/v1/messages", {})
    assert got.headers["x-api-key"] == ANTHROPIC_KEY
    assert got.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in got.headers
    assert MASTER_KEY not in json.dumps(got.headers)
    assert not any(k.startswith("x-stainless") for k in got.headers)
    assert got.json == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
    }


def test_consecutive_turns_are_merged(client, mocks):
    r = client.chat.completions.create(model="claude", messages=[
        {"role": "developer", "content": "Rule one."},
        {"role": "user", "content": "a"}, {"role": "user", "content": "b", "name": "bob"},
        {"role": "assistant", "content": "c"}, {"role": "assistant", "content": [{"type": "text", "text": "d"}]},
        {"role": "system", "content": "Rule two."},
        {"role": "user", "content": "e"}])
    assert r.choices[0].message.content == "echo: e"
    got = mocks["anthropic"].last().json
    assert got["system"] == [{"type": "text", "text": "Rule one."}, {"type": "text", "text": "Rule two."}]
    assert got["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]},
        {"role": "user", "content": [{"type": "text", "text": "e"}]},
    ]


def test_streaming_without_usage(client, mocks):
    chunks = list(client.chat.completions.create(model="claude", messages=user("one two three"), stream=True))
    assert stream_text(chunks) == "echo: one two three"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert finish_reasons(chunks) == ["stop"]
    assert all(c.usage is None for c in chunks)
    assert all(c.model == "claude" and c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    got = mocks["anthropic"].last().json
    assert got["stream"] is True and "stream_options" not in got


def test_streaming_with_usage(client, mocks):
    chunks = list(client.chat.completions.create(
        model="claude", messages=user("one two three"), stream=True, stream_options={"include_usage": True}))
    assert stream_text(chunks) == "echo: one two three"
    last = chunks[-1]
    assert last.choices == []
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (13, 4, 17)
    assert all(c.usage is None for c in chunks[:-1])


def test_tools(client, mocks):
    r = client.chat.completions.create(model="claude", messages=user("weather in Paris?"), tools=TOOLS,
                                       tool_choice="required", parallel_tool_calls=False)
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls"
    assert msg.content is None
    call = msg.tool_calls[0]
    assert (call.id, call.type, call.function.name) == (TOOL_ID, "function", "get_weather")
    assert json.loads(call.function.arguments) == {"location": "Paris"}
    got = mocks["anthropic"].last().json
    assert got["tools"] == [{"name": "get_weather", "description": "Current weather for a city",
                             "input_schema": TOOLS[0]["function"]["parameters"]}]
    assert got["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_tool_choice_mapping(client, mocks):
    cases = [("auto", {"type": "auto"}), ("none", {"type": "none"}),
             ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"})]
    for choice, native in cases:
        r = client.chat.completions.create(model="claude", messages=user("hi"), tools=TOOLS, tool_choice=choice)
        assert mocks["anthropic"].last().json["tool_choice"] == native
        assert r.choices[0].finish_reason == ("stop" if choice == "none" else "tool_calls")
    client.chat.completions.create(model="claude", messages=user("hi"), tools=TOOLS)
    assert "tool_choice" not in mocks["anthropic"].last().json


def test_tools_streaming(client, mocks):
    chunks = list(client.chat.completions.create(
        model="claude", messages=user("weather?"), tools=TOOLS, stream=True,
        tool_choice={"type": "function", "function": {"name": "get_weather"}}))
    calls = stream_tool_calls(chunks)
    assert len(calls) == 1
    assert (calls[0]["id"], calls[0]["name"]) == (TOOL_ID, "get_weather")
    assert json.loads(calls[0]["arguments"]) == {"location": "Paris"}
    # The mock streams the arguments in 6-byte pieces: several deltas reassembled.
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.tool_calls) > 3
    assert finish_reasons(chunks) == ["tool_calls"]
    assert mocks["anthropic"].last().json["tool_choice"] == {"type": "tool", "name": "get_weather"}


def test_tool_result_round_trip(client, mocks):
    first = client.chat.completions.create(model="claude", messages=user("weather in Paris?"), tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    messages = user("weather in Paris?") + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"},
    ]
    r = client.chat.completions.create(model="claude", messages=messages, tools=TOOLS)
    assert r.choices[0].message.content == "result: 18C and sunny"
    assert r.choices[0].finish_reason == "stop"
    got = mocks["anthropic"].last().json
    assert got["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "weather in Paris?"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": TOOL_ID, "name": "get_weather",
                                           "input": {"location": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": TOOL_ID, "content": "18C and sunny"}]},
    ]


def test_invalid_tool_arguments_are_refused(client, mocks):
    messages = user("x") + [
        {"role": "assistant", "tool_calls": [{"id": "t1", "type": "function",
                                              "function": {"name": "get_weather", "arguments": "{not json"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "ok"}]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="claude", messages=messages, tools=TOOLS)
    assert e.value.param == "messages"
    assert "arguments" in e.value.message
    assert_nothing_sent(mocks["anthropic"])


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
          "required": ["city", "population"], "additionalProperties": False}


def test_json_object(client, mocks):
    r = client.chat.completions.create(model="claude", messages=user("facts please"),
                                       response_format={"type": "json_object"})
    assert json.loads(r.choices[0].message.content) == {"answer": "facts please"}
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.tool_calls is None
    got = mocks["anthropic"].last().json
    assert got["tools"] == [{"name": "json_tool_call", "input_schema": {
        "type": "object", "additionalProperties": True, "properties": {}}}]
    assert got["tool_choice"] == {"type": "tool", "name": "json_tool_call"}


def test_json_schema(client, mocks):
    r = client.chat.completions.create(
        model="claude", messages=user("Lyon"),
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}})
    assert json.loads(r.choices[0].message.content) == {"city": "Lyon", "population": 42}
    assert r.choices[0].finish_reason == "stop"
    got = mocks["anthropic"].last().json
    assert got["tools"] == [{"name": "json_tool_call", "input_schema": SCHEMA}]
    assert got["tool_choice"] == {"type": "tool", "name": "json_tool_call"}


@pytest.mark.parametrize("response_format,expected", [
    ({"type": "json_object"}, {"answer": "Lyon"}),
    ({"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}}, {"city": "Lyon", "population": 42}),
])
def test_json_mode_streaming(client, mocks, response_format, expected):
    chunks = list(client.chat.completions.create(model="claude", messages=user("Lyon"), stream=True,
                                                 response_format=response_format))
    assert json.loads(stream_text(chunks)) == expected
    assert stream_tool_calls(chunks) == []
    assert finish_reasons(chunks) == ["stop"]


def test_images(client, mocks):
    r = client.chat.completions.create(model="claude", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://images.example.com/cat.jpg"}},
    ]}])
    assert r.choices[0].message.content == "echo: what is this?"
    assert mocks["anthropic"].last().json["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://images.example.com/cat.jpg"}},
    ]


def test_sampling_params_land_in_native_fields(client, mocks):
    client.chat.completions.create(model="claude", messages=user("hi"), temperature=0.4,
                                   max_tokens=50, stop=["END", "FIN"], user="user-123")
    got = mocks["anthropic"].last().json
    assert (got["temperature"], got["max_tokens"]) == (0.4, 50)
    assert got["stop_sequences"] == ["END", "FIN"]
    assert got["metadata"] == {"user_id": "user-123"}
    for absent in ("stop", "user", "top_p", "top_k"):
        assert absent not in got
    client.chat.completions.create(model="claude", messages=user("hi"), top_p=0.8)
    got = mocks["anthropic"].last().json
    assert got["top_p"] == 0.8 and "temperature" not in got


def test_temperature_and_top_p_together_are_anthropics_400(client, mocks):
    # Sonnet 4.5 takes one of the two; the gateway forwards what the client chose.
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="claude", messages=user("hi"), temperature=0.4, top_p=0.8)
    assert "cannot both be specified" in e.value.message


def test_max_tokens_and_stop_finish_reasons(client, mocks):
    r = client.chat.completions.create(model="claude", messages=user("a b c d e"), max_completion_tokens=3)
    assert mocks["anthropic"].last().json["max_tokens"] == 3
    assert r.choices[0].message.content == "echo: a b"
    assert r.choices[0].finish_reason == "length"
    r = client.chat.completions.create(model="claude", messages=user("go STOP now"), stop="STOP")
    assert r.choices[0].message.content == "echo: go "
    assert r.choices[0].finish_reason == "stop"


def test_temperature_above_anthropic_range_is_anthropics_400(client, mocks):
    # OpenAI allows up to 2; the gateway passes the value on and Anthropic (0..1) refuses it.
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="claude", messages=user("hi"), temperature=1.5)
    assert "temperature" in e.value.message
    assert mocks["anthropic"].last().json["temperature"] == 1.5


@pytest.mark.parametrize("kwargs,param", [
    ({"seed": 7}, "seed"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"n": 2}, "n"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"logprobs": True}, "logprobs"),
])
def test_unsupported_parameter(client, mocks, kwargs, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="claude", messages=user("hi"), **kwargs)
    assert e.value.status_code == 400
    assert e.value.param == param
    assert e.value.code == "unsupported_parameter"
    assert param in e.value.message
    assert_nothing_sent(mocks["anthropic"])


@pytest.fixture(scope="module")
def dropping_client(mocks):
    envoy = Envoy(gateway_config(mocks, litellm_settings={"drop_params": True}), env=gateway_env(mocks), concurrency=1)
    envoy.start()
    yield openai.OpenAI(base_url=f"{envoy.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
    envoy.stop()


def test_drop_params(dropping_client, mocks):
    r = dropping_client.chat.completions.create(model="claude", messages=user("hi"), seed=7,
                                                logit_bias={"1": 1}, frequency_penalty=0.3, n=2)
    assert r.choices[0].message.content == "echo: hi"
    got = mocks["anthropic"].last().json
    assert set(got) == {"model", "max_tokens", "messages"}


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_effort_asks_for_thinking(client, mocks, stream):
    """OpenAI's reasoning_effort to Claude: LiteLLM's thinking budget, inside the max_tokens the
    budget reservation counted; the thinking comes back as reasoning_content."""
    args = dict(model="claude", messages=user("why is the sky blue"), reasoning_effort="low")
    if stream:
        chunks = list(client.chat.completions.create(**args, stream=True))
        reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or ""
                            for c in chunks if c.choices)
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        r = client.chat.completions.create(**args)
        reasoning, content = r.choices[0].message.reasoning_content, r.choices[0].message.content
    assert reasoning == "Thinking about: why is the sky blue"
    assert content == "echo: why is the sky blue"
    sent = mocks["anthropic"].last().json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024} and sent["max_tokens"] == 4096
    # A cap below the effort's budget: the budget fits under it.
    client.chat.completions.create(**dict(args, reasoning_effort="medium"), max_tokens=1500)
    assert mocks["anthropic"].last().json["thinking"] == {"type": "enabled", "budget_tokens": 1499}
    # `thinking` (LiteLLM's extension) and top_k as Anthropic has them; thinking wins.
    client.chat.completions.create(**args, extra_body={"thinking": {"type": "disabled"}, "top_k": 5})
    sent = mocks["anthropic"].last().json
    assert sent["thinking"] == {"type": "disabled"} and sent["top_k"] == 5


def test_cached_usage_and_reasoning(client, mocks):
    mocks["anthropic"].enqueue(Json({
        "id": MESSAGE_ID, "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "thinking", "thinking": "Short answer.", "signature": "EqQBCgIYAhIM"},
                    {"type": "text", "text": "42"}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 12, "cache_creation_input_tokens": 300, "cache_read_input_tokens": 2000,
                  "output_tokens": 9}}))
    r = client.chat.completions.create(model="claude", messages=user("meaning of life?"))
    assert r.choices[0].message.content == "42"
    assert r.choices[0].message.reasoning_content == "Short answer."
    assert r.usage.prompt_tokens == 2312
    assert r.usage.prompt_tokens_details.cached_tokens == 2000
    assert r.usage.completion_tokens == 9


@pytest.mark.parametrize("status,type_,exc,client_status,openai_type", [
    (400, "invalid_request_error", openai.BadRequestError, 400, "invalid_request_error"),
    (401, "authentication_error", openai.AuthenticationError, 401, "authentication_error"),
    (403, "permission_error", openai.PermissionDeniedError, 403, "permission_error"),
    (404, "not_found_error", openai.NotFoundError, 404, "invalid_request_error"),
    (413, "request_too_large", openai.APIStatusError, 413, "invalid_request_error"),
    (429, "rate_limit_error", openai.RateLimitError, 429, "rate_limit_error"),
    (500, "api_error", openai.InternalServerError, 500, "api_error"),
    (529, "overloaded_error", openai.InternalServerError, 503, "api_error"),
])
def test_upstream_errors(client, mocks, status, type_, exc, client_status, openai_type):
    mocks["anthropic"].enqueue(anthropic_error(status, type_, f"boom {status}"))
    with pytest.raises(exc) as e:
        client.chat.completions.create(model="claude", messages=user("x"))
    assert e.value.status_code == client_status
    assert e.value.body["message"] == f"boom {status}"
    assert e.value.body["type"] == openai_type


def test_context_length_error(client, mocks):
    mocks["anthropic"].enqueue(anthropic_error(400, "invalid_request_error",
                                               "prompt is too long: 210000 tokens > 200000 maximum"))
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="claude", messages=user("x"))
    assert e.value.code == "context_length_exceeded"
    assert e.value.param == "messages"
    assert "prompt is too long" in e.value.message


def test_non_json_503_and_key_redaction(client, mocks):
    mocks["anthropic"].enqueue(Raw(b"<html><body>503 Service Unavailable</body></html>", status=503,
                                   content_type="text/html"))
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="claude", messages=user("x"))
    assert e.value.status_code == 503
    assert e.value.body["type"] == "api_error"
    mocks["anthropic"].enqueue(anthropic_error(401, "authentication_error", f"invalid x-api-key: {ANTHROPIC_KEY}"))
    with pytest.raises(openai.AuthenticationError) as e:
        client.chat.completions.create(model="claude", messages=user("x"))
    assert ANTHROPIC_KEY not in e.value.message and ANTHROPIC_KEY not in json.dumps(e.value.body)


def test_error_before_a_stream(client, mocks):
    mocks["anthropic"].enqueue(anthropic_error(529, "overloaded_error", "Overloaded"))
    with pytest.raises(openai.InternalServerError) as e:
        list(client.chat.completions.create(model="claude", messages=user("x"), stream=True))
    assert e.value.status_code == 503
    assert e.value.body["message"] == "Overloaded"


def test_error_in_the_middle_of_a_stream(client, mocks):
    events = sse([
        ("message_start", {"type": "message_start", "message": {
            "id": MESSAGE_ID, "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 8, "output_tokens": 1}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Partial"}}),
        ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ])
    mocks["anthropic"].enqueue(Stream(events))
    received = []
    with pytest.raises(openai.APIError) as e:
        for chunk in client.chat.completions.create(model="claude", messages=user("x"), stream=True):
            received.append(chunk)
    assert stream_text(received) == "Partial"
    assert e.value.message == "Overloaded"
    assert e.value.body["type"] == "api_error"


@pytest.mark.parametrize("split", [1, 7])
def test_stream_split_at_awkward_boundaries(client, mocks, split):
    text = "Grüße, wörld ✓ — “quoted” 🎉 end"
    blocks = [{"type": "text", "text": text},
              {"type": "tool_use", "id": TOOL_ID, "name": "get_weather", "input": {"location": "Zürich ✓"}}]
    usage = {"input_tokens": 20, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 30}
    mocks["anthropic"].enqueue(Stream(AnthropicMock.events(blocks, "tool_use", None, usage), split=split))
    chunks = list(client.chat.completions.create(model="claude", messages=user("x"), tools=TOOLS, stream=True,
                                                 stream_options={"include_usage": True}))
    assert stream_text(chunks) == text
    calls = stream_tool_calls(chunks)
    assert json.loads(calls[0]["arguments"]) == {"location": "Zürich ✓"}
    assert finish_reasons(chunks) == ["tool_calls"]
    assert chunks[-1].usage.completion_tokens == 30


def test_provider_headers_hidden(gateway):
    status, headers, body = http("POST", f"{gateway.base_url}/v1/chat/completions",
                                 {"model": "claude", "messages": user("hi")},
                                 {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"})
    assert status == 200, body
    assert "anthropic-organization-id" not in headers
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["choices"][0]["message"]["content"] == "echo: hi"


def test_mock_validates_like_anthropic(mocks):
    """The mock itself refuses what api.anthropic.com refuses, so the tests above mean something."""
    url = f"{mocks['anthropic'].base_url}/v1/messages"
    good = {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": user("hi")}
    headers = {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    cases = [
        (good, {**headers, "x-api-key": "sk-ant-wrong"}, 401, "authentication_error"),
        (good, {k: v for k, v in headers.items() if k != "x-api-key"}, 401, "authentication_error"),
        (good, {k: v for k, v in headers.items() if k != "anthropic-version"}, 400, "invalid_request_error"),
        ({k: v for k, v in good.items() if k != "max_tokens"}, headers, 400, "invalid_request_error"),
        ({**good, "messages": [{"role": "system", "content": "x"}] + user("hi")}, headers, 400, "invalid_request_error"),
        ({**good, "messages": [{"role": "tool", "content": "x"}]}, headers, 400, "invalid_request_error"),
        ({**good, "messages": user("a") + user("b")}, headers, 400, "invalid_request_error"),
        ({**good, "stop": ["x"]}, headers, 400, "invalid_request_error"),
        ({**good, "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_x", "content": "orphan"}]}]}, headers, 400, "invalid_request_error"),
    ]
    for body, hdrs, status, kind in cases:
        code, _, raw = http("POST", url, body, hdrs)
        assert code == status, (body, raw)
        err = json.loads(raw)
        assert err["type"] == "error" and err["error"]["type"] == kind, raw
    code, _, raw = http("POST", url, good, headers)
    assert code == 200 and json.loads(raw)["content"][0] == {"type": "text", "text": "echo: hi"}
