"""OpenAI deployments through the real Envoy, with the official OpenAI SDK as the client."""

import json

import openai
import pytest

from conftest import MASTER_KEY
from harness import FILTER, http
from mocks.base import Json, Raw
from mocks.openai_mock import OPENAI_KEY


def test_chat_completion(client, mocks):
    r = client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hello there"}], temperature=0.2)
    assert r.choices[0].message.content == "echo: hello there"
    assert r.model == "gpt"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0
    got = mocks["openai"].last()
    assert got.path == "/v1/chat/completions"
    assert got.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert got.json["model"] == "gpt-4o-mini"
    assert got.json["temperature"] == 0.2
    assert MASTER_KEY not in json.dumps(got.headers)
    assert not any(k.startswith("x-stainless") or k.startswith("x-tollgate") for k in got.headers), got.headers


def test_streaming_with_usage(client, mocks):
    stream = client.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": "one two three"}],
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three"
    assert all(c.model == "gpt" for c in chunks)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert mocks["openai"].last().json["stream"] is True


def test_tools_round_trip(client, mocks):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}]
    r = client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "weather?"}], tools=tools)
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}
    assert r.choices[0].finish_reason == "tool_calls"
    assert mocks["openai"].last().json["tools"] == tools


def test_embeddings_base64_and_float(client, mocks):
    r = client.embeddings.create(model="text-embed", input=["a b", "c"])
    assert len(r.data) == 2 and len(r.data[0].embedding) == 8
    assert mocks["openai"].last().path == "/v1/embeddings"
    assert r.model == "text-embed"
    r = client.embeddings.create(model="text-embed", input="x", encoding_format="float")
    assert isinstance(r.data[0].embedding[0], float)


def test_upstream_errors_map_to_sdk_exceptions(client, mocks):
    cases = [
        (400, "invalid_request_error", openai.BadRequestError),
        (401, "invalid_request_error", openai.AuthenticationError),
        (403, "permission_error", openai.PermissionDeniedError),
        (404, "invalid_request_error", openai.NotFoundError),
        (429, "rate_limit_error", openai.RateLimitError),
        (500, "server_error", openai.InternalServerError),
    ]
    for status, kind, exc in cases:
        mocks["openai"].enqueue(Json({"error": {"message": f"boom {status}", "type": kind, "param": None, "code": None}}, status=status))
        with pytest.raises(exc) as e:
            client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
        assert e.value.status_code == status
        assert f"boom {status}" in e.value.message


def test_non_json_upstream_error(client, mocks):
    mocks["openai"].enqueue(Raw(b"<html>502 Bad Gateway</html>", status=502, content_type="text/html"))
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 502
    assert e.value.body["type"] == "api_error"


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert "gpt" in ids and "text-embed" in ids
    assert client.models.retrieve("gpt").id == "gpt"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_provider_headers_hidden(gateway):
    status, headers, body = http("POST", f"{gateway.base_url}/v1/chat/completions",
                                 {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]},
                                 {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"})
    assert status == 200, body
    assert "openai-organization" not in headers
    assert headers["content-type"] == "application/json"


def test_bodies_the_gateway_rewrites_carry_their_length(gateway, mocks):
    # Tollgate rewrites both bodies. The .wasm must let headers go before it has the body, so
    # Envoy sends the new bodies chunked; the dynamic module holds them, so it states the length.
    status, headers, body = http("POST", f"{gateway.base_url}/v1/chat/completions",
                                 {"model": "claude", "messages": [{"role": "user", "content": "how long"}]},
                                 {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"})
    assert status == 200, body
    upstream = mocks["anthropic"].last()
    if FILTER == "module":
        assert headers.get("content-length") == str(len(body))
        assert "transfer-encoding" not in headers
        assert upstream.headers.get("content-length") == str(len(upstream.body))
    else:
        assert headers.get("transfer-encoding") == "chunked"
    assert json.loads(body)["choices"][0]["message"]["content"]
