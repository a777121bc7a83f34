"""Replies Envoy makes itself (unreachable upstream, timeout, oversized body) reach clients in OpenAI shape."""

import json
import time

import openai
import pytest

from conftest import MASTER_KEY, gateway_config, gateway_env
from harness import Envoy, http
from mocks.base import Hang


def test_unreachable_upstream_is_an_openai_502(client):
    started = time.time()
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="dead-end", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 502
    assert e.value.body["type"] == "api_error"
    assert "could not reach" in e.value.message.lower()
    assert "sk-unused-dead-end" not in json.dumps(e.value.body)
    assert time.time() - started < 10
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="dead-end", messages=[{"role": "user", "content": "x"}], stream=True)


@pytest.fixture(scope="module")
def limited(mocks):
    config = gateway_config(mocks, litellm_settings={"request_timeout": 1}, general_settings={"max_request_size_mb": 0.0625})
    with Envoy(config, env=gateway_env(mocks), concurrency=1) as envoy:
        yield envoy


def test_timeout_is_an_openai_504(limited, mocks):
    mocks["openai"].enqueue(Hang(3))
    c = openai.OpenAI(base_url=f"{limited.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
    with pytest.raises(openai.InternalServerError) as e:
        c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 504
    assert e.value.body["code"] == "timeout"


def test_body_over_the_limit_is_an_openai_413(limited, mocks):
    big = {"model": "gpt", "messages": [{"role": "user", "content": "x" * 100_000}]}
    s, h, b = http("POST", f"{limited.base_url}/v1/chat/completions", big,
                   {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"})
    assert s == 413
    err = json.loads(b)["error"]
    assert err["code"] == "request_too_large" and "65536" in err["message"]
    assert mocks["openai"].count() == 0
    c = openai.OpenAI(base_url=f"{limited.base_url}/v1", api_key=MASTER_KEY, max_retries=0)
    assert c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "small"}]).choices[0].message.content == "echo: small"


def test_envoys_own_replies_to_a_messages_client_are_anthropic_shaped(limited, mocks, gateway):
    """The same replies for a client of the Messages API: in Anthropic's shape, as the SDK reads them."""
    import anthropic
    c = anthropic.Anthropic(base_url=limited.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)
    with pytest.raises(anthropic.APIStatusError) as e:
        c.messages.create(model="gpt", max_tokens=10, messages=[{"role": "user", "content": "x" * 100_000}])
    assert e.value.status_code == 413
    assert e.value.body == {"type": "error", "error": {"type": "request_too_large", "message": e.value.body["error"]["message"]}}
    assert "65536" in e.value.body["error"]["message"]
    mocks["openai"].enqueue(Hang(3))
    with pytest.raises(anthropic.APIStatusError) as e:
        c.messages.create(model="gpt", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 504 and e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "timeout_error"
    # The unreachable upstream, from the filter: Anthropic-shaped too.
    shared = anthropic.Anthropic(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)
    with pytest.raises(anthropic.InternalServerError) as e:
        shared.messages.create(model="dead-end", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 502 and e.value.body["error"]["type"] == "api_error"
