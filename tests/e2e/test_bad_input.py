"""Bad input gets an OpenAI-shaped 4xx a developer understands, and the worker VMs keep serving."""

import json

import openai
import pytest

from conftest import MASTER_KEY
from harness import http

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
JSON_AUTH = {**AUTH, "content-type": "application/json"}
GOOD = {"model": "gpt", "messages": [{"role": "user", "content": "still alive"}]}


def assert_openai_error(status, body, want_status, param=None, contains=None):
    assert status == want_status, body
    err = json.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert err["type"]
    if param is not None:
        assert err["param"] == param, err
    if contains:
        assert contains.lower() in err["message"].lower(), err
    return err


def assert_still_serving(gateway):
    # New connections land on either worker; several calls cover both VMs.
    for _ in range(6):
        status, _, body = http("POST", f"{gateway.base_url}/v1/chat/completions", GOOD,
                               {**JSON_AUTH, "connection": "close"})
        assert status == 200, body
        assert json.loads(body)["choices"][0]["message"]["content"] == "echo: still alive"


CASES = [
    ("malformed json", b'{"model": "gpt", "messages": [', JSON_AUTH, 400, None, "could not parse"),
    ("trailing garbage", b'{"model": "gpt"} xyz', JSON_AUTH, 400, None, "could not parse"),
    ("not an object", b'[1, 2, 3]', JSON_AUTH, 400, "model", "model"),
    ("a string", b'"hello"', JSON_AUTH, 400, "model", "model"),
    ("empty body", b"", JSON_AUTH, 400, None, "no body"),
    ("missing model", json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), JSON_AUTH, 400, "model", "model"),
    ("empty model", json.dumps({"model": "", "messages": []}).encode(), JSON_AUTH, 400, "model", "model"),
    ("numeric model", json.dumps({"model": 5, "messages": []}).encode(), JSON_AUTH, 400, "model", "expected a string"),
    ("boolean model", json.dumps({"model": True, "messages": []}).encode(), JSON_AUTH, 400, "model", "expected a string"),
    ("object model", json.dumps({"model": {"a": 1}, "messages": []}).encode(), JSON_AUTH, 400, "model", "model"),
    ("missing messages", json.dumps({"model": "gpt"}).encode(), JSON_AUTH, 400, "messages", "messages"),
    ("empty messages", json.dumps({"model": "gpt", "messages": []}).encode(), JSON_AUTH, 400, "messages", "empty"),
    ("messages wrong type", json.dumps({"model": "gpt", "messages": "hi"}).encode(), JSON_AUTH, 400, "messages", "messages"),
    ("bad role", json.dumps({"model": "gpt", "messages": [{"role": "robot", "content": "x"}]}).encode(), JSON_AUTH, 400, "messages[0].role", "robot"),
    ("temperature wrong type", json.dumps({**GOOD, "temperature": "hot"}).encode(), JSON_AUTH, 400, "temperature", "expected a number"),
    ("temperature out of range", json.dumps({**GOOD, "temperature": 7}).encode(), JSON_AUTH, 400, "temperature", "above maximum value"),
    ("max_tokens negative", json.dumps({**GOOD, "max_tokens": -1}).encode(), JSON_AUTH, 400, "max_tokens", None),
    ("stream not a boolean", json.dumps({**GOOD, "stream": "yes"}).encode(), JSON_AUTH, 400, "stream", None),
    ("tool_choice unknown function", json.dumps({**GOOD, "tool_choice": {"type": "function", "function": {"name": "nope"}}}).encode(), JSON_AUTH, 400, "tool_choice", "nope"),
    ("invalid utf-8", b'{"model": "gpt", "messages": [{"role": "user", "content": "\xff\xfe"}]}', JSON_AUTH, 400, None, "could not parse"),
    ("deeply nested", (b'{"model": "gpt", "messages": [{"role": "user", "content": "x"}], "x": ' + b"[" * 100000 + b"]" * 100000 + b"}"), JSON_AUTH, 400, None, "could not parse"),
    ("nested 129 deep", (b'{"model": "gpt", "messages": [{"role": "user", "content": "x"}], "x": ' + b"[" * 128 + b"]" * 128 + b"}"), JSON_AUTH, 400, None, "more than 128 levels"),
    ("lone surrogate", b'{"model": "gpt", "messages": [{"role": "user", "content": "x"}], "x": "\\ud800"}', JSON_AUTH, 400, None, "surrogate"),
    ("number out of range", b'{"model": "gpt", "messages": [{"role": "user", "content": "x"}], "x": 1e999999}', JSON_AUTH, 400, None, "out of range"),
    ("logprobs not a boolean", json.dumps({**GOOD, "logprobs": "yes"}).encode(), JSON_AUTH, 400, "logprobs", "expected a boolean"),
    ("n too large", json.dumps({**GOOD, "n": 1000}).encode(), JSON_AUTH, 400, "n", "Expected a value <= 128"),
    ("metadata not an object", json.dumps({**GOOD, "metadata": 5}).encode(), JSON_AUTH, 400, "metadata", "expected an object"),
    ("message as an array", json.dumps({**GOOD, "messages": [["user", "hi"]]}).encode(), JSON_AUTH, 400, "messages[0]", "expected an object"),
    ("stream_options as an array", json.dumps({**GOOD, "stream_options": [True]}).encode(), JSON_AUTH, 400, "stream_options", "expected an object"),
    ("max_tokens above i64", b'{"model": "gpt", "messages": [{"role": "user", "content": "x"}], "max_tokens": 9223372036854775808}', JSON_AUTH, 400, "max_tokens", "integer above maximum value"),
    ("wrong content type", json.dumps(GOOD).encode(), {**AUTH, "content-type": "text/plain"}, 400, None, "content-type"),
    ("form content type", b"model=gpt", {**AUTH, "content-type": "application/x-www-form-urlencoded"}, 400, None, "content-type"),
]


@pytest.mark.parametrize("name,body,headers,status,param,contains", CASES, ids=[c[0] for c in CASES])
def test_bad_body(gateway, mocks, name, body, headers, status, param, contains):
    s, h, b = http("POST", f"{gateway.base_url}/v1/chat/completions", body, headers)
    assert_openai_error(s, b, status, param, contains)
    assert h["content-type"] == "application/json"
    assert mocks["openai"].count() == 0, "a refused request must not reach the provider"
    assert mocks["openai"].incomplete == 0, "a refused request must not even open an upstream request"
    assert_still_serving(gateway)


def test_unknown_model_and_paths(gateway, client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "model_not_found"
    s, _, b = http("POST", f"{gateway.base_url}/v1/completions", {"model": "gpt", "prompt": "x"}, JSON_AUTH)
    assert_openai_error(s, b, 404, contains="invalid url")
    s, _, b = http("GET", f"{gateway.base_url}/v1/chat/completions", None, AUTH)
    assert_openai_error(s, b, 405, contains="use POST")
    s, _, b = http("POST", f"{gateway.base_url}/v1/embeddings", {"model": "gpt", "input": "x"}, JSON_AUTH)
    assert s in (200, 400)
    assert_still_serving(gateway)


def test_bad_keys(gateway):
    for headers in ({}, {"authorization": "Bearer sk-wrong"}, {"authorization": "Basic abc"}, {"api-key": "nope"}):
        s, _, b = http("POST", f"{gateway.base_url}/v1/chat/completions", GOOD, {**headers, "content-type": "application/json"})
        assert_openai_error(s, b, 401)
    bad = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(**GOOD)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    # The Azure SDK's header works too.
    s, _, b = http("POST", f"{gateway.base_url}/chat/completions", GOOD, {"api-key": MASTER_KEY, "content-type": "application/json"})
    assert s == 200, b
    assert_still_serving(gateway)


def test_no_panics_in_log(gateway):
    log = gateway.log()
    assert "panicked" not in log
    assert "Function: proxy_on" not in log  # the host's report of a trapped wasm call
