"""AWS Bedrock (Converse / ConverseStream) through the real Envoy, with the official OpenAI SDK as the client.

`bedrock-claude` is signed with SigV4 by Envoy's aws_request_signing filter (the mock recomputes the signature
as AWS does); `bedrock-apikey` uses a Bedrock API key as a Bearer token."""

import hashlib
import http.server
import json
import os
import subprocess
import threading
import urllib.request
from urllib.parse import unquote

import openai
import pytest
import yaml

from conftest import MASTER_KEY, gateway_config, gateway_env
from harness import ENVOY, Envoy, run_cli
from mocks.base import Json, Raw, Stream
from mocks.bedrock_mock import (ACCESS_KEY_ID, API_KEY, EVENTSTREAM, SECRET_ACCESS_KEY, aws_error, event,
                                exception)

CLAUDE_PATH = "/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse"
NOVA_PATH = "/model/amazon.nova-lite-v1%3A0/converse"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                                             "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                                                            "required": ["location"]}}}]


def user(text):
    return [{"role": "user", "content": text}]


def assert_signed(got):
    auth = got.headers["authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/"), auth
    assert "/us-east-1/bedrock/aws4_request" in auth
    assert got.headers["x-amz-content-sha256"] == hashlib.sha256(got.body).hexdigest()
    assert "x-amz-date" in got.headers
    assert SECRET_ACCESS_KEY not in json.dumps(got.headers)
    assert MASTER_KEY not in json.dumps(got.headers)


def tool_calls_from_stream(chunks):
    calls = {}
    for c in chunks:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            slot = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
            if tc.id:
                slot["id"] = tc.id
            if tc.function and tc.function.name:
                slot["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                slot["arguments"] += tc.function.arguments
    return [calls[i] for i in sorted(calls)]


def test_plain_signed_request(client, mocks):
    r = client.chat.completions.create(
        model="bedrock-claude",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}],
        temperature=0.2, top_p=0.9, max_tokens=50, stop=["STOP"], user="alice@example.com")
    assert r.choices[0].message.content == "echo: hello there"
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "bedrock-claude"
    assert r.object == "chat.completion"
    assert r.usage.prompt_tokens == 5 + 4 + 3  # input + cache reads
    assert r.usage.prompt_tokens_details.cached_tokens == 3
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    got = mocks["bedrock"].last()
    assert got.path == CLAUDE_PATH
    assert_signed(got)
    body = got.json
    assert body["system"] == [{"text": "Be brief."}]
    assert body["messages"] == [{"role": "user", "content": [{"text": "hello there"}]}]
    assert body["inferenceConfig"] == {"maxTokens": 50, "temperature": 0.2, "topP": 0.9, "stopSequences": ["STOP"]}
    assert body["requestMetadata"] == {"user": "alice@example.com"}
    assert "model" not in body and "x-amzn-requestid" not in {k.lower() for k in r.to_dict()}


def test_api_key_deployment_uses_bearer(client, mocks):
    r = client.chat.completions.create(model="bedrock-apikey", messages=user("hi nova"))
    assert r.choices[0].message.content == "echo: hi nova"
    assert r.model == "bedrock-apikey"
    got = mocks["bedrock"].last()
    assert got.path == NOVA_PATH
    assert unquote(got.path.split("/")[2]) == "amazon.nova-lite-v1:0"
    assert got.headers["authorization"] == f"Bearer {API_KEY}"
    assert "x-amz-date" not in got.headers and "x-amz-content-sha256" not in got.headers


def test_max_tokens_and_stop_sequence_finish_reasons(client, mocks):
    r = client.chat.completions.create(model="bedrock-claude", messages=user("one two three four"), max_tokens=2)
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content == "echo: one"
    r = client.chat.completions.create(model="bedrock-claude", messages=user("alpha beta gamma"), stop="beta")
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == "echo: alpha "


@pytest.mark.parametrize("include_usage", [True, False])
def test_streaming(client, mocks, include_usage):
    kwargs = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = client.chat.completions.create(model="bedrock-claude", messages=user("one two three"), stream=True, **kwargs)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.model == "bedrock-claude" for c in chunks)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    if include_usage:
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
        assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 3
    else:
        assert all(c.usage is None for c in chunks)
    got = mocks["bedrock"].last()
    assert got.path == CLAUDE_PATH.replace("/converse", "/converse-stream")
    assert_signed(got)
    assert "stream" not in got.json


def test_streaming_with_api_key(client, mocks):
    chunks = list(client.chat.completions.create(model="bedrock-apikey", messages=user("streamed key"), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: streamed key"
    assert mocks["bedrock"].last().headers["authorization"] == f"Bearer {API_KEY}"


def test_tools_non_streaming(client, mocks):
    r = client.chat.completions.create(model="bedrock-claude", messages=user("weather?"), tools=WEATHER,
                                       tool_choice="required")
    call = r.choices[0].message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert call.id.startswith("tooluse_")
    assert json.loads(call.function.arguments) == {"location": "Paris"}
    assert r.choices[0].finish_reason == "tool_calls"
    assert r.choices[0].message.content is None
    tc = mocks["bedrock"].last().json["toolConfig"]
    assert tc["tools"] == [{"toolSpec": {"name": "get_weather", "description": "Current weather", "inputSchema": {
        "json": WEATHER[0]["function"]["parameters"]}}}]
    assert tc["toolChoice"] == {"any": {}}


TIME = {"type": "function", "function": {"name": "get_time", "description": "Current time",
                                         "parameters": {"type": "object", "properties": {}}}}


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_tool_calls_false_is_accepted(client, mocks, stream):
    """LangChain's with_structured_output(method="function_calling") sends one forced tool with
    parallel_tool_calls=false; agents send it with several tools. Converse has no such switch: the
    gateway drops it, and Bedrock gets a valid request."""
    cases = [(WEATHER, {"type": "function", "function": {"name": "get_weather"}}), (WEATHER + [TIME], "auto")]
    for tools, choice in cases:
        r = client.chat.completions.create(model="bedrock-claude", messages=user("weather?"), tools=tools,
                                           tool_choice=choice, parallel_tool_calls=False, stream=stream)
        calls = tool_calls_from_stream(list(r)) if stream else [
            {"name": c.function.name, "arguments": c.function.arguments} for c in r.choices[0].message.tool_calls]
        assert [c["name"] for c in calls] == ["get_weather"]
        got = mocks["bedrock"].last()
        assert b"parallel" not in got.body
        assert set(got.json) <= {"messages", "inferenceConfig", "toolConfig"}
        assert [t["toolSpec"]["name"] for t in got.json["toolConfig"]["tools"]] == [
            t["function"]["name"] for t in tools]
        want = {"tool": {"name": "get_weather"}} if isinstance(choice, dict) else {"auto": {}}
        assert got.json["toolConfig"]["toolChoice"] == want


def test_tools_streaming_and_round_trip(client, mocks):
    chunks = list(client.chat.completions.create(model="bedrock-claude", messages=user("weather?"), tools=WEATHER,
                                                 stream=True))
    calls = tool_calls_from_stream(chunks)
    assert len(calls) == 1 and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"location": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]

    messages = user("weather?") + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": calls[0]["id"], "type": "function", "function": {"name": "get_weather", "arguments": calls[0]["arguments"]}}]},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "18C and sunny"},
    ]
    r = client.chat.completions.create(model="bedrock-claude", messages=messages, tools=WEATHER)
    assert r.choices[0].message.content == "echo: tool said: 18C and sunny"
    assert r.choices[0].finish_reason == "stop"
    sent = mocks["bedrock"].last().json["messages"]
    assert sent[1] == {"role": "assistant", "content": [{"toolUse": {
        "toolUseId": calls[0]["id"], "name": "get_weather", "input": {"location": "Paris"}}}]}
    assert sent[2] == {"role": "user", "content": [{"toolResult": {
        "toolUseId": calls[0]["id"], "content": [{"text": "18C and sunny"}]}}]}


@pytest.mark.parametrize("stream", [False, True])
def test_json_mode(client, mocks, stream):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    formats = [{"type": "json_object"},
               {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}}]
    for fmt in formats:
        r = client.chat.completions.create(model="bedrock-claude", messages=user("capital of France"),
                                           response_format=fmt, stream=stream)
        if stream:
            chunks = list(r)
            content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
            assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)
        else:
            content, finish = r.choices[0].message.content, [r.choices[0].finish_reason]
            assert r.choices[0].message.tool_calls is None
        assert json.loads(content) == {"answer": "capital of France"}
        assert finish == ["stop"]
        tc = mocks["bedrock"].last().json["toolConfig"]
        assert tc["toolChoice"] == {"tool": {"name": "json_tool_call"}}
        want = schema if fmt["type"] == "json_schema" else {"type": "object"}
        assert tc["tools"][0]["toolSpec"]["inputSchema"]["json"] == want


def test_image_data_url_and_http_url(client, mocks):
    r = client.chat.completions.create(model="bedrock-claude", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}])
    assert r.choices[0].message.content == "echo: what is this"
    assert mocks["bedrock"].last().json["messages"][0]["content"][1] == {
        "image": {"format": "png", "source": {"bytes": PNG}}}
    n = mocks["bedrock"].count()
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="bedrock-claude", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    assert e.value.body["param"] == "messages"
    assert mocks["bedrock"].count() == n


def test_unsupported_parameter(client, mocks):
    n = mocks["bedrock"].count()
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="bedrock-claude", messages=user("x"), frequency_penalty=0.5)
    assert e.value.body["param"] == "frequency_penalty"
    assert e.value.body["code"] == "unsupported_parameter"
    assert "frequency_penalty" in e.value.message
    assert mocks["bedrock"].count() == n


ERRORS = [
    (aws_error(400, "ValidationException", "Malformed input request: bad field"), openai.BadRequestError, 400, None),
    (aws_error(400, "ValidationException", "Input is too long for requested model."), openai.BadRequestError, 400,
     "context_length_exceeded"),
    (aws_error(403, "AccessDeniedException", "You don't have access to the model with the specified model ID."),
     openai.PermissionDeniedError, 403, None),
    (aws_error(404, "ResourceNotFoundException", "Model not found."), openai.NotFoundError, 404, None),
    (aws_error(429, "ThrottlingException", "Too many requests, please wait before trying again."),
     openai.RateLimitError, 429, None),
    (aws_error(400, "ServiceQuotaExceededException", "Your request exceeded the quota."), openai.RateLimitError, 429, None),
    (aws_error(500, "InternalServerException", "Internal server error"), openai.InternalServerError, 500, None),
    (aws_error(503, "ServiceUnavailableException", "Bedrock is unable to process your request."),
     openai.InternalServerError, 503, None),
    (aws_error(429, "ModelNotReadyException", "Model is not ready for inference."), openai.InternalServerError, 503, None),
    (aws_error(408, "ModelTimeoutException", "Model has timed out in processing the request."), openai.APIStatusError,
     408, None),
]


@pytest.mark.parametrize("answer,exc,status,code", ERRORS)
def test_upstream_errors(client, mocks, answer, exc, status, code):
    mocks["bedrock"].enqueue(answer)
    with pytest.raises(exc) as e:
        client.chat.completions.create(model="bedrock-claude", messages=user("x"))
    assert e.value.status_code == status
    assert e.value.body["message"] == answer.body["message"]
    assert e.value.body["code"] == code


def test_error_on_streaming_request(client, mocks):
    mocks["bedrock"].enqueue(aws_error(429, "ThrottlingException", "Too many tokens, please wait before trying again."))
    with pytest.raises(openai.RateLimitError):
        list(client.chat.completions.create(model="bedrock-claude", messages=user("x"), stream=True))


CORAL = "http://internal.amazon.com/coral/com.amazon.coral.service/"
CREDENTIAL_ERRORS = [
    aws_error(403, "UnrecognizedClientException", "The security token included in the request is invalid.", namespace=CORAL),
    aws_error(403, "InvalidSignatureException", "The request signature we calculated does not match the signature you "
              "provided. Check your AWS Secret Access Key and signing method.", namespace=CORAL),
    aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token", namespace=CORAL),
    aws_error(400, "IncompleteSignatureException", "Authorization header requires 'Signature' parameter.", namespace=CORAL),
    aws_error(403, "ExpiredTokenException", "The security token included in the request is expired", namespace=CORAL),
    Json({"message": "Unauthorized"}, status=401),
]


@pytest.mark.parametrize("answer", CREDENTIAL_ERRORS, ids=lambda a: a.headers.get("x-amzn-ErrorType", "401").split(":")[0])
@pytest.mark.parametrize("stream", [False, True])
def test_refused_gateway_credentials_are_a_502(client, mocks, answer, stream):
    """Bedrock refusing the gateway's AWS credentials is the gateway's failure: a 502 in OpenAI's shape that
    says so, never an authentication error blaming the client's key (which never reaches Bedrock)."""
    mocks["bedrock"].enqueue(answer)
    with pytest.raises(openai.InternalServerError) as e:
        r = client.chat.completions.create(model="bedrock-claude", messages=user("x"), stream=stream)
        list(r) if stream else None
    assert e.value.status_code == 502
    body = e.value.body
    assert body["type"] == "api_error"
    assert body["code"] == "gateway_credentials_rejected"
    assert body["message"].startswith("Bedrock rejected the gateway's AWS credentials (")
    assert answer.body["message"] in body["message"]
    assert "not the problem" in body["message"]
    assert "invalid_api_key" not in json.dumps(body)
    assert e.value.response.headers["content-type"].startswith("application/json")


def test_exception_mid_stream(client, mocks):
    mocks["bedrock"].enqueue(Stream([
        event("messageStart", {"role": "assistant"}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Partial"}}),
        exception("throttlingException", "Too many tokens, please wait before trying again."),
    ], content_type=EVENTSTREAM))
    stream = client.chat.completions.create(model="bedrock-claude", messages=user("x"), stream=True)
    text = ""
    with pytest.raises(openai.APIError) as e:
        for c in stream:
            text += c.choices[0].delta.content or "" if c.choices else ""
    assert text == "Partial"
    assert "Too many tokens" in str(e.value.message)


def test_corrupt_frame_mid_stream(client, mocks):
    bad = bytearray(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " more"}}))
    bad[-1] ^= 0xFF  # message CRC
    mocks["bedrock"].enqueue(Stream([
        event("messageStart", {"role": "assistant"}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello"}}),
        bytes(bad),
    ], content_type=EVENTSTREAM))
    with pytest.raises(openai.APIError) as e:
        list(client.chat.completions.create(model="bedrock-claude", messages=user("x"), stream=True))
    assert "event stream" in str(e.value.message)


@pytest.mark.parametrize("split", [1, 7])
def test_stream_split_at_awkward_boundaries(client, mocks, split):
    mock = mocks["bedrock"]
    body = {"messages": [{"role": "user", "content": [{"text": "split me up please"}]}]}
    text, tool, stop = mock.plan(body)
    mock.enqueue(Stream(mock.stream_frames(text, tool, stop, mock.usage(body, text, tool)),
                        content_type=EVENTSTREAM, split=split))
    chunks = list(client.chat.completions.create(model="bedrock-claude", messages=user("split me up please"),
                                                 stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: split me up please"
    assert chunks[-1].usage.completion_tokens == 5


def test_mock_rejects_bad_signatures_and_keys(mocks):
    """A gateway whose AWS secret and Bedrock key are wrong: the mock answers as AWS does, and the client sees
    403s without the canonical request AWS echoes."""
    env = gateway_env(mocks)
    env["AWS_SECRET_ACCESS_KEY"] = "not-the-right-secret"
    env["AWS_BEARER_TOKEN_BEDROCK"] = "ABSKbm90LXRoZS1yaWdodC1rZXk="
    with Envoy(gateway_config(mocks), env=env, concurrency=1) as gw:
        c = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
        with pytest.raises(openai.InternalServerError) as e:
            c.chat.completions.create(model="bedrock-claude", messages=user("x"))
        assert e.value.status_code == 502
        assert e.value.body["code"] == "gateway_credentials_rejected"
        assert e.value.body["message"].startswith(
            "Bedrock rejected the gateway's AWS credentials (InvalidSignatureException: The request signature we "
            "calculated does not match")
        assert "Canonical String" not in e.value.body["message"]
        got = mocks["bedrock"].last()
        assert got.headers["authorization"].startswith("AWS4-HMAC-SHA256")
        # A refused Bedrock API key is typed from the header (AccessDeniedException: a 403); the body says
        # whose key it is.
        with pytest.raises(openai.PermissionDeniedError) as e:
            c.chat.completions.create(model="bedrock-apikey", messages=user("x"))
        assert e.value.body["code"] == "gateway_credentials_rejected"
        assert e.value.body["message"].startswith("Bedrock rejected the gateway's Bedrock API key")
        assert "API Key is valid" in e.value.message
        assert "ABSK" not in e.value.message


def test_missing_aws_credentials_fail_fast(mocks, monkeypatch):
    """Without the AWS variables Envoy's signer forwards the request unsigned; AWS refuses it at once."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    env = gateway_env(mocks)
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    with Envoy(gateway_config(mocks), env=env, concurrency=1) as gw:
        c = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
        with pytest.raises(openai.InternalServerError) as e:
            c.chat.completions.create(model="bedrock-claude", messages=user("x"))
        assert e.value.status_code == 502
        assert "(MissingAuthenticationTokenException: Missing Authentication Token)" in e.value.body["message"]
        assert "authorization" not in mocks["bedrock"].last().headers


def test_signing_covers_a_large_body(client, mocks):
    text = "word " * 20000
    r = client.chat.completions.create(model="bedrock-claude", messages=user(text.strip()), max_tokens=3)
    assert r.choices[0].finish_reason == "length"
    assert_signed(mocks["bedrock"].last())


# Credentials and region as AWS users have them -----------------------------------------------------------

AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
            "AWS_REGION_NAME", "AWS_DEFAULT_REGION", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN")


@pytest.fixture
def bare_aws_env(monkeypatch, tmp_path):
    """A process environment with no AWS settings of its own: HOME is empty, instance metadata is off."""
    for name in AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


def keyless_config(mocks):
    """A Bedrock deployment with neither keys nor region: both come from where AWS users keep them."""
    return {"model_list": [{"model_name": "bedrock-ambient", "litellm_params": {
        "model": "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0",
        "aws_bedrock_runtime_endpoint": mocks["bedrock"].base_url}}],
        "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"}}


# The mock accepts only signatures scoped to us-east-1: the first variable in LiteLLM's order must win.
REGIONS = {"AWS_REGION_NAME": "us-east-1", "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "ap-south-1"}


def check(config, env, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    r = run_cli("check", str(path), env=env)
    assert r.returncode == 0, r.stderr
    return r.stderr


def test_default_chain_reads_a_credentials_file_and_the_region_from_the_environment(mocks, bare_aws_env):
    creds = bare_aws_env / "credentials"
    creds.write_text(f"[default]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {SECRET_ACCESS_KEY}\n")
    env = {"TOLLGATE_MASTER_KEY": MASTER_KEY, "AWS_SHARED_CREDENTIALS_FILE": str(creds), **REGIONS}
    config = keyless_config(mocks)
    with Envoy(config, env=env, concurrency=1) as gw:
        rendered = yaml.safe_load(open(gw.envoy_yaml))
        signing = [f["typed_config"] for c in rendered["static_resources"]["clusters"]
                   for f in c.get("typed_extension_protocol_options", {}).get(
                       "envoy.extensions.upstreams.http.v3.HttpProtocolOptions", {}).get("http_filters", [])
                   if f["name"] == "envoy.filters.http.aws_request_signing"]
        assert len(signing) == 1 and signing[0]["region"] == "us-east-1"
        assert "credential_provider" not in signing[0]  # Envoy's default chain
        c = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
        r = c.chat.completions.create(model="bedrock-ambient", messages=user("from the file"))
        assert r.choices[0].message.content == "echo: from the file"
        assert_signed(mocks["bedrock"].last())
        assert SECRET_ACCESS_KEY not in gw.log()
    # `tollgate check` sees the file: no warning. Without it, it warns and says what follows.
    assert "no AWS credentials" not in check(config, {**os.environ, **env}, bare_aws_env)
    creds.unlink()
    out = check(config, {**os.environ, **env}, bare_aws_env)
    assert "warning: model_list[0].litellm_params: no AWS credentials are visible here" in out
    assert "instance metadata" in out


def test_default_chain_reads_container_credentials(mocks, bare_aws_env):
    """ECS / EKS Pod Identity style: Envoy fetches temporary credentials (with a session token) from the
    container credentials endpoint and signs with them."""
    served = []

    class Creds(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            served.append(self.headers.get("authorization"))
            body = json.dumps({"AccessKeyId": ACCESS_KEY_ID, "SecretAccessKey": SECRET_ACCESS_KEY,
                               "Token": "container-session-token-1", "Expiration": "2099-01-01T00:00:00Z"}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Creds)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"TOLLGATE_MASTER_KEY": MASTER_KEY, "AWS_REGION": "us-east-1",
               "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://127.0.0.1:{server.server_port}/v2/credentials",
               "AWS_CONTAINER_AUTHORIZATION_TOKEN": "pod-identity-token"}
        with Envoy(keyless_config(mocks), env=env, concurrency=1) as gw:
            c = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
            r = c.chat.completions.create(model="bedrock-ambient", messages=user("from the container"))
            assert r.choices[0].message.content == "echo: from the container"
            got = mocks["bedrock"].last()
            assert_signed(got)
            assert got.headers["x-amz-security-token"] == "container-session-token-1"
            assert "x-amz-security-token" in got.headers["authorization"]
            assert served and served[0] == "pod-identity-token"
    finally:
        server.shutdown()
        server.server_close()


def test_no_credentials_anywhere_is_a_502_naming_the_gateway(mocks, bare_aws_env):
    env = {"TOLLGATE_MASTER_KEY": MASTER_KEY, **REGIONS}
    config = keyless_config(mocks)
    with Envoy(config, env=env, concurrency=1) as gw:
        c = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
        with pytest.raises(openai.InternalServerError) as e:
            c.chat.completions.create(model="bedrock-ambient", messages=user("x"))
        assert e.value.status_code == 502
        assert e.value.body["message"].startswith("Bedrock rejected the gateway's AWS credentials")
        assert "authorization" not in mocks["bedrock"].last().headers


def test_assume_role_renders_envoys_assume_role_provider(mocks, bare_aws_env):
    """aws_role_name + aws_session_name: Envoy's STS AssumeRole provider, signed with the deployment's keys
    (or the default chain). The rendered bootstrap is Envoy's to validate and start with."""
    config = keyless_config(mocks)
    lp = config["model_list"][0]["litellm_params"]
    lp.update({"aws_role_name": "arn:aws:iam::123456789012:role/bedrock-invoke", "aws_session_name": "tollgate-gw",
               "aws_region_name": "us-east-1"})
    config["model_list"].append({"model_name": "bedrock-role-keys", "litellm_params": {
        **lp, "aws_region_name": "us-west-2",
        "aws_access_key_id": "os.environ/AWS_ACCESS_KEY_ID", "aws_secret_access_key": "os.environ/AWS_SECRET_ACCESS_KEY"}})
    env = {"TOLLGATE_MASTER_KEY": MASTER_KEY, "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
           "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY}
    out = check(config, {**os.environ, **env}, bare_aws_env)
    assert "aws_role_name" not in out and "aws_session_name" not in out  # acted on, not "ignored"
    with Envoy(config, env=env, concurrency=1) as gw:
        rendered = yaml.safe_load(open(gw.envoy_yaml))
        providers = {}
        for cl in rendered["static_resources"]["clusters"]:
            for f in cl.get("typed_extension_protocol_options", {}).get(
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions", {}).get("http_filters", []):
                if f["name"] == "envoy.filters.http.aws_request_signing":
                    providers[f["typed_config"]["region"]] = f["typed_config"]["credential_provider"]
        role = {"role_arn": "arn:aws:iam::123456789012:role/bedrock-invoke", "role_session_name": "tollgate-gw"}
        assert providers["us-east-1"] == {"custom_credential_provider_chain": True, "assume_role_credential_provider": role}
        assert providers["us-west-2"] == {"custom_credential_provider_chain": True, "assume_role_credential_provider": {
            **role, "credential_provider": {"custom_credential_provider_chain": True, "environment_credential_provider": {}}}}
        v = subprocess.run([ENVOY, "--mode", "validate", "-c", gw.envoy_yaml], capture_output=True, text=True,
                           timeout=60, env=gw.env)
        assert v.returncode == 0, v.stdout + v.stderr
        # Envoy set up its STS clients (one per region) at start.
        clusters = urllib.request.urlopen(f"http://127.0.0.1:{gw.admin_port}/clusters", timeout=5).read().decode()
        assert "sts_token_service_internal-us-east-1::" in clusters
        assert "sts_token_service_internal-us-west-2::" in clusters


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_effort_is_claudes_thinking(client, mocks, stream):
    """OpenAI's reasoning_effort to Claude on Bedrock: LiteLLM's budget in Claude's own
    `thinking`, the signed reasoning back as reasoning_content."""
    args = dict(model="bedrock-claude", messages=user("why so"), reasoning_effort="low")
    if stream:
        chunks = list(client.chat.completions.create(**args, stream=True))
        reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or ""
                            for c in chunks if c.choices)
    else:
        reasoning = client.chat.completions.create(**args).choices[0].message.reasoning_content
    assert reasoning == "Thinking about: why so"
    sent = mocks["bedrock"].last().json
    assert sent["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 1024}}
