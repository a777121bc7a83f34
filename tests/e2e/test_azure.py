"""Azure OpenAI deployments through the real Envoy, with the official OpenAI SDK as the client."""

import base64
import json
import struct

import openai
import pytest

from conftest import MASTER_KEY
from mocks.azure_mock import AZURE_KEY, azure_error, filters, vector
from mocks.base import Json, Raw, Stream, sse

CHAT_PATH = "/openai/deployments/my-gpt4o-deployment/chat/completions"
USER = [{"role": "user", "content": "hello there"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}]


@pytest.fixture
def azure(mocks):
    return mocks["azure"]


def assert_azure_request(got, path=CHAT_PATH):
    assert got.path == path
    assert got.query == {"api-version": "2024-10-21"}
    assert got.headers["api-key"] == AZURE_KEY
    assert "authorization" not in got.headers
    assert MASTER_KEY not in json.dumps(got.headers)


def test_chat_completion(client, azure):
    r = client.chat.completions.create(model="azure-gpt", messages=USER, temperature=0.2, top_p=0.9,
                                       max_tokens=50, stop=["END"], user="user-7")
    assert r.choices[0].message.content == "echo: hello there"
    assert r.model == "azure-gpt"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens == 11 and r.usage.completion_tokens == 3 and r.usage.total_tokens == 14
    # Azure's annotations pass through.
    assert r.prompt_filter_results[0]["content_filter_results"]["hate"] == {"filtered": False, "severity": "safe"}
    assert r.choices[0].content_filter_results["violence"]["severity"] == "safe"
    got = azure.last()
    assert_azure_request(got)
    assert got.json == {"model": "my-gpt4o-deployment", "messages": USER, "temperature": 0.2, "top_p": 0.9,
                        "max_tokens": 50, "stop": ["END"], "user": "user-7"}


def test_streaming_without_usage(client, azure):
    chunks = list(client.chat.completions.create(model="azure-gpt", messages=[{"role": "user", "content": "one two three"}], stream=True))
    # Azure's choice-less annotation chunk does not reach clients as an empty `choices`.
    assert all(c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: one two three"
    assert all(c.model == "azure-gpt" and c.object == "chat.completion.chunk" and c.id == "chatcmpl-AZ7Ys3tream" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].prompt_filter_results[0]["prompt_index"] == 0
    assert [c.choices[0].finish_reason for c in chunks].count("stop") == 1
    assert all(c.usage is None for c in chunks)
    got = azure.last()
    assert_azure_request(got)
    # The gateway asks for usage to charge the stream exactly; the client, which did not, sees none.
    assert got.json["stream"] is True and got.json["stream_options"] == {"include_usage": True}


def test_streaming_with_usage(client, azure):
    chunks = list(client.chat.completions.create(model="azure-gpt", messages=[{"role": "user", "content": "one two"}],
                                                 stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: one two"
    assert [bool(c.choices) for c in chunks].count(False) == 1 and not chunks[-1].choices
    assert chunks[-1].usage.prompt_tokens == 11 and chunks[-1].usage.completion_tokens == 3
    assert azure.last().json["stream_options"] == {"include_usage": True}


def test_stream_helper_accumulates(client):
    with client.chat.completions.stream(model="azure-gpt", messages=[{"role": "user", "content": "a b"}]) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.content == "echo: a b"


def test_tools(client, azure):
    r = client.chat.completions.create(model="azure-gpt", messages=[{"role": "user", "content": "weather?"}],
                                       tools=TOOLS, tool_choice="auto", parallel_tool_calls=False)
    call = r.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name) == ("call_AzR2xk9", "get_weather")
    assert json.loads(call.function.arguments) == {"location": "Paris"}
    assert r.choices[0].finish_reason == "tool_calls"
    sent = azure.last().json
    assert sent["tools"] == TOOLS and sent["tool_choice"] == "auto" and sent["parallel_tool_calls"] is False


def test_tools_streaming(client):
    chunks = list(client.chat.completions.create(model="azure-gpt", messages=[{"role": "user", "content": "weather?"}],
                                                 tools=TOOLS, stream=True))
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].id == "call_AzR2xk9" and calls[0].function.name == "get_weather"
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"location": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_result_round_trip(client, azure):
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_AzR2xk9", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_AzR2xk9", "content": "18C and sunny"},
    ]
    r = client.chat.completions.create(model="azure-gpt", messages=messages, tools=TOOLS)
    assert r.choices[0].message.content == "tool said: 18C and sunny"
    assert azure.last().json["messages"] == messages


def test_json_modes(client, azure):
    r = client.chat.completions.create(model="azure-gpt", messages=[{"role": "system", "content": "Reply in JSON."}, *USER],
                                       response_format={"type": "json_object"})
    assert json.loads(r.choices[0].message.content) == {"answer": "hello there"}
    assert azure.last().json["response_format"] == {"type": "json_object"}
    schema = {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": {
        "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"], "additionalProperties": False}}}
    r = client.chat.completions.create(model="azure-gpt", messages=USER, response_format=schema)
    assert json.loads(r.choices[0].message.content) == {"answer": "hello there"}
    assert azure.last().json["response_format"] == schema


def test_images(client, azure):
    parts = [{"type": "text", "text": "what is this?"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==", "detail": "low"}},
             {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/wikipedia/commons/4/47/PNG_transparency_demonstration_1.png"}}]
    r = client.chat.completions.create(model="azure-gpt", messages=[{"role": "user", "content": parts}])
    assert r.choices[0].message.content == "echo: what is this?"
    assert azure.last().json["messages"][0]["content"] == parts


def test_unsupported_parameter(client, azure):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="azure-gpt", messages=USER, reasoning_effort="low")
    assert e.value.status_code == 400
    assert e.value.param == "reasoning_effort" and e.value.code == "unsupported_parameter"
    assert "reasoning_effort" in e.value.message and "drop_params" in e.value.message
    # Envoy may already have opened the upstream request when the body is refused; it is reset
    # before any body reaches Azure.
    assert all(not r.body for r in azure.received), [r.body for r in azure.received]


def test_context_length(client, azure):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="azure-gpt", messages=[{"role": "user", "content": "word " * 6000}])
    assert e.value.code == "context_length_exceeded"
    assert "maximum context length" in e.value.message
    assert azure.count() == 1


def test_content_filter_error(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="azure-gpt", messages=[{"role": "user", "content": "trigger-content-filter please"}])
    assert e.value.code == "content_filter"
    assert e.value.param == "messages"
    assert e.value.body["type"] == "invalid_request_error"
    assert "content management policy" in e.value.message and "violence (medium)" in e.value.message


def test_filtered_completion(client):
    r = client.chat.completions.create(model="azure-gpt", messages=[{"role": "user", "content": "filter-completion"}])
    assert r.choices[0].finish_reason == "content_filter"
    assert r.choices[0].message.content is None
    chunks = list(client.chat.completions.create(model="azure-gpt", messages=[{"role": "user", "content": "filter-completion"}], stream=True))
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert chunks[-1].choices[0].content_filter_results["sexual"]["filtered"] is True


@pytest.mark.parametrize("action, exc, status, code", [
    (Json({"error": {"message": "Invalid value for 'n': must be at least 1.", "type": "invalid_request_error", "param": "n", "code": None}}, status=400),
     openai.BadRequestError, 400, None),
    (azure_error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."),
     openai.AuthenticationError, 401, "invalid_api_key"),
    (Json({"statusCode": 401, "message": "Access denied due to invalid subscription key or wrong API endpoint."}, status=401),
     openai.AuthenticationError, 401, "invalid_api_key"),
    (azure_error(403, "403", "Access denied due to Virtual Network/Firewall rules."), openai.PermissionDeniedError, 403, "403"),
    (azure_error(404, "DeploymentNotFound", "The API deployment for this resource does not exist."), openai.NotFoundError, 404, "model_not_found"),
    (Json({"error": {"code": "429", "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after 6 seconds."}},
          status=429, headers={"retry-after": "6", "retry-after-ms": "6000"}), openai.RateLimitError, 429, "rate_limit_exceeded"),
    (Json({"error": {"message": "The server had an error while processing your request. Sorry about that!", "type": "server_error", "param": None, "code": None}}, status=500),
     openai.InternalServerError, 500, None),
    (azure_error(503, "ServiceUnavailable", "The service is temporarily unable to process your request. Please try again later."),
     openai.InternalServerError, 503, "ServiceUnavailable"),
    (Raw(b"<html><body>502 Bad Gateway</body></html>", status=502, content_type="text/html"), openai.InternalServerError, 502, None),
])
def test_errors(client, azure, action, exc, status, code):
    azure.enqueue(action)
    with pytest.raises(exc) as e:
        client.chat.completions.create(model="azure-gpt", messages=USER)
    assert e.value.status_code == status
    assert e.value.code == code
    assert e.value.body["message"] and e.value.body["type"]
    assert AZURE_KEY not in e.value.message
    assert_azure_request(azure.last())


def test_operation_not_supported(client, azure):
    # A chat deployment cannot serve embeddings: Azure's own 400.
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="azure-gpt", input="x")
    assert "does not work with the specified model" in e.value.message
    assert e.value.code == "OperationNotSupported"
    assert azure.last().path == "/openai/deployments/my-gpt4o-deployment/embeddings"


def test_error_mid_stream(client, azure):
    head = azure.chat_stream({"stream": True}, "gpt-4o-2024-08-06", "echo: a b c", [], 10, False).parts[:3]
    error = sse([{"error": {"code": "500", "message": "The server had an error processing your request."}}])
    azure.enqueue(Stream(head + error))
    stream = client.chat.completions.create(model="azure-gpt", messages=USER, stream=True)
    got = []
    with pytest.raises(openai.APIError) as e:
        for c in stream:
            got.append(c.choices[0].delta.content or "")
    assert "".join(got) == "echo:"
    assert "server had an error" in e.value.message
    assert e.value.body["type"] == "api_error"


@pytest.mark.parametrize("split", [1, 7])
def test_awkward_stream_boundaries(client, azure, split):
    whole = azure.chat_stream({"stream": True}, "gpt-4o-2024-08-06", "echo: split ✓ me", [], 10, False)
    azure.enqueue(Stream(whole.parts, split=split))
    chunks = list(client.chat.completions.create(model="azure-gpt", messages=USER, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "echo: split ✓ me"
    assert all(c.choices and c.model == "azure-gpt" for c in chunks)


def test_embeddings(client, azure):
    # The SDK asks for base64 unless told otherwise; Azure answers base64.
    r = client.embeddings.create(model="azure-embed", input=["a b", "c"])
    got = azure.last()
    assert_azure_request(got, "/openai/deployments/my-embedding-deployment/embeddings")
    assert got.json == {"model": "my-embedding-deployment", "input": ["a b", "c"], "encoding_format": "base64"}
    assert r.model == "azure-embed"
    assert r.data[0].embedding == pytest.approx(vector(0, "a b"), abs=1e-6)
    assert r.data[1].embedding == pytest.approx(vector(1, "c"), abs=1e-6)
    assert r.usage.prompt_tokens == 3
    r = client.embeddings.create(model="azure-embed", input="x", encoding_format="float", dimensions=4)
    assert azure.last().json["encoding_format"] == "float" and azure.last().json["dimensions"] == 4
    assert r.data[0].embedding == pytest.approx(vector(0, "x", 4))


def test_embeddings_from_an_older_api_version(client, azure):
    # Versions before `encoding_format` answer floats; the client that asked for base64 gets base64.
    azure.enqueue(Json({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -1.25]}],
                        "model": "text-embedding-ada-002", "usage": {"prompt_tokens": 1, "total_tokens": 1}}))
    r = client.embeddings.with_raw_response.create(model="azure-embed", input="x")
    raw = json.loads(r.http_response.text)
    assert isinstance(raw["data"][0]["embedding"], str)
    assert struct.unpack("<2f", base64.b64decode(raw["data"][0]["embedding"])) == (0.5, -1.25)
    assert r.parse().data[0].embedding == [0.5, -1.25]
