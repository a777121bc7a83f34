"""The OpenAI-compatible family (Groq, vLLM, Ollama) through the real Envoy with the official
OpenAI SDK, and `drop_params` on a second gateway."""

import json

import openai
import pytest

from conftest import MASTER_KEY, gateway_config, gateway_env
from harness import Envoy
from mocks.compat_mock import GROQ_KEY

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}]

# alias -> (path the server sees, authorization it gets, model id it gets)
ALIASES = {
    "groq-llama": ("/openai/v1/chat/completions", f"Bearer {GROQ_KEY}", "llama-3.3-70b-versatile"),
    "vllm-local": ("/v1/chat/completions", None, "meta-llama/Llama-3.1-8B-Instruct"),
    "ollama": ("/v1/chat/completions", None, "llama3.2"),
}


@pytest.fixture
def compat(mocks):
    return mocks["compat"]


def assert_landed(got, alias):
    path, auth, model = ALIASES[alias]
    assert got.path == path and got.query == {}
    assert got.headers.get("authorization") == auth
    assert got.json["model"] == model
    assert MASTER_KEY not in json.dumps(got.headers)


@pytest.mark.parametrize("alias", ALIASES)
def test_plain(client, compat, alias):
    r = client.chat.completions.create(model=alias, messages=[{"role": "user", "content": "hello there"}],
                                       temperature=0.1, max_tokens=20, seed=3)
    assert r.choices[0].message.content == "echo: hello there"
    assert r.model == alias
    assert r.usage.total_tokens > 0
    got = compat.last()
    assert_landed(got, alias)
    assert (got.json["temperature"], got.json["max_tokens"], got.json["seed"]) == (0.1, 20, 3)


@pytest.mark.parametrize("alias", ALIASES)
def test_streaming(client, compat, alias):
    chunks = list(client.chat.completions.create(model=alias, messages=[{"role": "user", "content": "one two"}],
                                                 stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: one two"
    assert all(c.model == alias for c in chunks)
    assert chunks[-1].usage.completion_tokens == 3
    got = compat.last()
    assert_landed(got, alias)
    assert got.json["stream"] is True and got.json["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("alias", ALIASES)
def test_tools(client, compat, alias):
    r = client.chat.completions.create(model=alias, messages=[{"role": "user", "content": "weather?"}], tools=TOOLS)
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"location": "Paris"}
    assert r.choices[0].finish_reason == "tool_calls" and r.model == alias
    assert_landed(compat.last(), alias)
    assert compat.last().json["tools"] == TOOLS
    chunks = list(client.chat.completions.create(model=alias, messages=[{"role": "user", "content": "weather?"}],
                                                 tools=TOOLS, stream=True))
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].function.name == "get_weather"
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"location": "Paris"}
    assert all(c.model == alias for c in chunks)
    assert_landed(compat.last(), alias)


def test_provider_extras_pass_through(client):
    r = client.chat.completions.create(model="groq-llama", messages=[{"role": "user", "content": "x"}])
    assert r.x_groq == {"id": "req_01jcompat"}


def test_errors_keep_openai_shape(client, compat):
    from mocks.compat_mock import error
    compat.enqueue(error(429, "Rate limit reached for model `llama-3.3-70b-versatile` on tokens per minute (TPM): Limit 6000, Used 5990, Requested 40. Please try again in 300ms.",
                         "tokens", code="rate_limit_exceeded"))
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="groq-llama", messages=[{"role": "user", "content": "x"}])
    assert e.value.code == "rate_limit_exceeded" and e.value.body["type"] == "rate_limit_error"


# drop_params on a second gateway -------------------------------------------------------------

@pytest.fixture(scope="module")
def dropping_gateway(mocks):
    envoy = Envoy(gateway_config(mocks, litellm_settings={"drop_params": True}), env=gateway_env(mocks), concurrency=1)
    envoy.start()
    yield envoy
    envoy.stop()


def test_drop_params_drops_what_the_provider_rejects(dropping_gateway, client, mocks):
    # Azure's 2024-10-21 API has no `reasoning_effort`: refused on the shared gateway...
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="azure-gpt", messages=[{"role": "user", "content": "hi"}], reasoning_effort="low")
    assert e.value.param == "reasoning_effort"
    # ...dropped where `litellm_settings.drop_params` is true.
    dropping = openai.OpenAI(base_url=f"{dropping_gateway.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
    r = dropping.chat.completions.create(model="azure-gpt", messages=[{"role": "user", "content": "hi"}],
                                         reasoning_effort="low", temperature=0.5)
    assert r.choices[0].message.content == "echo: hi"
    sent = mocks["azure"].last().json
    assert "reasoning_effort" not in sent and sent["temperature"] == 0.5
    # OpenAI-compatible servers take the body as it is; nothing is dropped for them.
    dropping.chat.completions.create(model="vllm-local", messages=[{"role": "user", "content": "hi"}], reasoning_effort="low")
    assert mocks["compat"].last().json["reasoning_effort"] == "low"
