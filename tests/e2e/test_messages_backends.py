"""What a Messages client's request carries beyond chat completions (thinking, top_k, thinking
blocks, cache_control, documents, beta flags), through the real Envoy to each backend in the
backend's own terms: the provider mocks refuse what their APIs refuse."""

import json

import anthropic
import pytest

from conftest import MASTER_KEY, gateway_config, gateway_env

TOOLS = [{"name": "get_weather", "description": "Current weather for a city",
          "input_schema": {"type": "object", "properties": {"location": {"type": "string"}},
                           "required": ["location"]}, "cache_control": {"type": "ephemeral"}}]
SYSTEM = [{"type": "text", "text": "You are a coding agent."},
          {"type": "text", "text": "Project instructions.", "cache_control": {"type": "ephemeral"}}]
OPENAI_SHAPED = {"gpt": "openai", "gpt-5": "openai", "azure-gpt": "azure", "groq-llama": "compat",
                 "vllm-local": "compat"}


@pytest.fixture(scope="module")
def gw(mocks):
    """Every mock's deployments, plus a reasoning OpenAI model and a Groq one that drops what it
    cannot take."""
    from harness import Envoy
    config = gateway_config(mocks)
    openai_base = f"{mocks['openai'].base_url}/v1"
    config["model_list"] += [
        {"model_name": "gpt-5", "litellm_params": {"model": "openai/gpt-5-mini", "api_base": openai_base,
                                                   "api_key": "os.environ/OPENAI_API_KEY"}},
        {"model_name": "groq-drop", "litellm_params": {
            "model": "groq/llama-3.3-70b-versatile", "api_base": f"{mocks['compat'].base_url}/openai/v1",
            "api_key": "os.environ/GROQ_API_KEY", "drop_params": True}},
    ]
    with Envoy(config, env=gateway_env(mocks), concurrency=2) as envoy:
        yield envoy


@pytest.fixture
def claude(gw):
    return anthropic.Anthropic(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)


def text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


def agent_turn(c, alias, messages, stream, **extra):
    args = dict(model=alias, max_tokens=8000, system=SYSTEM, tools=TOOLS, messages=messages,
                thinking={"type": "enabled", "budget_tokens": 4000}, **extra)
    if stream:
        with c.messages.stream(**args) as s:
            return s.get_final_message()
    return c.messages.create(**args)


def no_extensions(sent):
    """The body holds nothing OpenAI's API would refuse: LiteLLM's extensions are gone."""
    text = json.dumps(sent)
    assert "thinking" not in sent and "top_k" not in sent
    assert "cache_control" not in text and "thinking_blocks" not in text


# --- 1. the OpenAI family ----------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("alias", ["gpt", "azure-gpt", "groq-llama", "vllm-local"])
def test_an_agent_session_reaches_openai_shaped_backends(claude, mocks, alias, stream):
    """Thinking on, cache_control on system blocks, messages and tools, earlier reasoning sent back:
    the OpenAI family gets a body its API takes (the mocks refuse unknown fields as OpenAI does)."""
    msgs = [{"role": "user", "content": [{"type": "text", "text": "Weather in Paris?",
                                          "cache_control": {"type": "ephemeral"}}]}]
    first = agent_turn(claude, alias, msgs, stream)
    assert first.stop_reason == "tool_use", first
    sent = mocks[OPENAI_SHAPED[alias]].last().json
    no_extensions(sent)
    assert "reasoning_effort" not in sent  # not a reasoning model: thinking is dropped
    assert sent["messages"][0]["content"][1]["text"] == "Project instructions."
    call = next(b for b in first.content if b.type == "tool_use")
    msgs += [{"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Let me look it up.", "signature": "sig-from-claude"},
                {"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C"}]}]
    second = agent_turn(claude, alias, msgs, stream)
    assert second.type == "message"
    sent = mocks[OPENAI_SHAPED[alias]].last().json
    no_extensions(sent)
    assert sent["messages"][2]["role"] == "assistant" and sent["messages"][2]["tool_calls"]
    assert "18C" in json.dumps(sent)


@pytest.mark.parametrize("budget,effort", [(1024, "minimal"), (4000, "low"), (6000, "medium"), (16000, "high")])
def test_thinking_becomes_reasoning_effort_for_a_reasoning_model(claude, mocks, budget, effort):
    m = claude.messages.create(model="gpt-5", max_tokens=20000, thinking={"type": "enabled", "budget_tokens": budget},
                               messages=[{"role": "user", "content": "think hard"}])
    assert "think hard" in text_of(m)
    sent = mocks["openai"].last().json
    assert sent["reasoning_effort"] == effort
    assert sent["max_completion_tokens"] == 20000 and "thinking" not in sent


def test_top_k_is_refused_dropped_or_kept(claude, mocks):
    # OpenAI has no top_k: an Anthropic-shaped 400 naming it, before anything goes upstream.
    mocks["openai"].reset()
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="gpt", max_tokens=50, extra_body={"top_k": 5}, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["type"] == "error" and "top_k" in e.value.body["error"]["message"]
    assert "drop_params" in e.value.body["error"]["message"]
    assert mocks["openai"].count() == 0
    # With drop_params it is dropped; a vLLM server takes it.
    m = claude.messages.create(model="groq-drop", max_tokens=50, extra_body={"top_k": 5}, messages=[{"role": "user", "content": "dropped"}])
    assert "dropped" in text_of(m) and "top_k" not in mocks["compat"].last().json
    m = claude.messages.create(model="vllm-local", max_tokens=50, extra_body={"top_k": 5}, messages=[{"role": "user", "content": "kept"}])
    assert "kept" in text_of(m) and mocks["compat"].last().json["top_k"] == 5

