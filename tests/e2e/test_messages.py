"""Anthropic's Messages API in (`POST /v1/messages`) through the real Envoy, with the official
`anthropic` SDK as the client: passed through to an Anthropic deployment, translated to every other
provider, and Anthropic-shaped errors the SDK raises as its own exception classes."""

import json

import anthropic
import pytest

from conftest import MASTER_KEY
from mocks.anthropic_mock import ANTHROPIC_KEY, MESSAGE_ID

TOOLS = [{"name": "get_weather", "description": "Current weather for a city",
          "input_schema": {"type": "object", "properties": {"location": {"type": "string"}},
                           "required": ["location"]}}]

# Every provider family: Anthropic (passed through), OpenAI, Azure and the OpenAI-compatible
# family (their chat completions answers read), Bedrock (Converse) and Gemini (translated).
TRANSLATED = ["gpt", "azure-gpt", "groq-llama", "bedrock-claude", "gemini"]
ALL = ["claude"] + TRANSLATED


@pytest.fixture
def claude(gateway):
    """The official Anthropic SDK, pointed at the gateway; the virtual key as `x-api-key`."""
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)


def text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


def test_pass_through_to_anthropic(claude, mocks):
    body = {"model": "claude", "max_tokens": 300, "system": [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "hello there"}],
        "metadata": {"user_id": "user-42"}}
    m = claude.messages.create(**body, extra_body={"top_k": 5},
                               extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"})
    assert m.type == "message" and m.role == "assistant"
    assert text_of(m) == "echo: hello there"
    assert m.model == "claude" and m.stop_reason == "end_turn"
    assert m.id.startswith("msg_") and m.id == MESSAGE_ID  # Anthropic's own answer, relayed
    assert (m.usage.input_tokens, m.usage.output_tokens) == (14, 3)
    got = mocks["anthropic"].last()
    assert got.path == "/v1/messages"
    # The client's body as it came, with the deployment's model: nothing dropped or reordered.
    assert got.json == dict(body, model="claude-sonnet-4-5", top_k=5)
    assert got.headers["x-api-key"] == ANTHROPIC_KEY
    assert got.headers["anthropic-version"] == "2023-06-01"
    assert got.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert MASTER_KEY not in json.dumps(got.headers)
    assert not any(k.startswith("x-stainless") for k in got.headers)


def test_what_only_anthropic_serves_passes_through(claude, mocks):
    """A pass-through is read for its bounds, not translated: server tools (and blocks only
    Anthropic serves) reach the Anthropic deployment as they came, where a translated backend
    refuses them by name."""
    tools = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}] + TOOLS
    m = claude.messages.create(model="claude", max_tokens=100, tools=tools, tool_choice={"type": "none"},
                               messages=[{"role": "user", "content": "news today"}])
    assert text_of(m) == "echo: news today"
    assert mocks["anthropic"].last().json["tools"] == tools
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="gpt", max_tokens=100, tools=tools,
                               messages=[{"role": "user", "content": "news today"}])
    assert "tools.0.type" in e.value.body["error"]["message"]


def test_bearer_auth_token_works_too(gateway, mocks):
    # ANTHROPIC_AUTH_TOKEN: the SDK sends `Authorization: Bearer`.
    c = anthropic.Anthropic(base_url=gateway.base_url, auth_token=MASTER_KEY, max_retries=0, timeout=20)
    m = c.messages.create(model="claude", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert text_of(m) == "echo: hi"
    assert "authorization" not in mocks["anthropic"].last().headers


def test_pass_through_stream(claude, mocks):
    with claude.messages.stream(model="claude", max_tokens=100,
                                messages=[{"role": "user", "content": "one two three"}]) as s:
        texts = list(s.text_stream)
        final = s.get_final_message()
    assert "".join(texts) == "echo: one two three"
    assert final.model == "claude" and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4
    assert mocks["anthropic"].last().json["stream"] is True


@pytest.mark.parametrize("alias", TRANSLATED)
def test_create_translated(claude, mocks, alias):
    m = claude.messages.create(model=alias, max_tokens=200, system="Be brief.",
                               messages=[{"role": "user", "content": "hello there"}])
    assert m.type == "message" and m.model == alias
    assert m.id.startswith("msg_")
    assert "hello there" in text_of(m)
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0


@pytest.mark.parametrize("alias", ALL)
def test_stream_every_provider(claude, alias):
    events = []
    with claude.messages.stream(model=alias, max_tokens=200,
                                messages=[{"role": "user", "content": "hello stream"}]) as s:
        for ev in s:
            events.append(ev.type)
        final = s.get_final_message()
    assert "hello stream" in text_of(final)
    assert final.model == alias and final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "content_block_start" in events and "content_block_stop" in events


MOCK_OF = {"claude": "anthropic", "gpt": "openai", "azure-gpt": "azure", "groq-llama": "compat",
           "bedrock-claude": "bedrock", "gemini": "gemini"}


@pytest.mark.parametrize("alias", ALL)
def test_tool_round_trip(claude, mocks, alias):
    m = claude.messages.create(model=alias, max_tokens=200, tools=TOOLS,
                               tool_choice={"type": "any"},
                               messages=[{"role": "user", "content": "Weather in Paris?"}])
    assert m.stop_reason == "tool_use"
    calls = [b for b in m.content if b.type == "tool_use"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert isinstance(calls[0].input, dict) and calls[0].input.get("location")
    follow = claude.messages.create(model=alias, max_tokens=200, tools=TOOLS, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": calls[0].id, "content": "18C, sunny"}]},
    ], tool_choice={"type": "none"})
    assert follow.stop_reason == "end_turn" and text_of(follow)
    # The provider got the call and its result, in its own API's terms.
    sent = json.dumps(mocks[MOCK_OF[alias]].last().json)
    assert "18C, sunny" in sent and "get_weather" in sent


@pytest.mark.parametrize("alias", ["claude", "gpt", "bedrock-claude", "gemini"])
def test_streamed_tool_call(claude, alias):
    with claude.messages.stream(model=alias, max_tokens=200, tools=TOOLS, tool_choice={"type": "any"},
                                messages=[{"role": "user", "content": "Weather in Paris?"}]) as s:
        final = s.get_final_message()
    calls = [b for b in final.content if b.type == "tool_use"]
    assert final.stop_reason == "tool_use"
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].input.get("location")


def test_errors_raise_the_sdks_exceptions(gateway, claude):
    bad = anthropic.Anthropic(base_url=gateway.base_url, api_key="sk-not-a-key", max_retries=0, timeout=20)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model="claude", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError) as e:
        claude.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="gpt", max_tokens=10, messages=[{"role": "system", "content": "x"}])
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "messages.0.role" in e.value.body["error"]["message"]
    # Missing max_tokens (the SDK insists on it; a raw request shows the gateway does too).
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.post("/v1/messages", body={"model": "gpt", "messages": [{"role": "user", "content": "x"}]},
                    cast_to=object)
    assert "max_tokens" in e.value.body["error"]["message"]


def test_provider_errors_come_back_in_anthropics_shape(claude):
    # The Anthropic mock refuses both temperature and top_p for this model: its own 400, relayed.
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="claude", max_tokens=10, extra_body={"temperature": 0.5, "top_p": 0.5},
                               messages=[{"role": "user", "content": "x"}])
    assert e.value.body["type"] == "error"
    assert "temperature" in e.value.body["error"]["message"]


def test_count_tokens(claude, mocks):
    msgs = [{"role": "user", "content": "three words here"}]
    # Anthropic's own count, from its endpoint (the mock counts 10 + words).
    r = claude.messages.count_tokens(model="claude", system="Be brief.", messages=msgs)
    assert r.input_tokens == 10 + 2 + 3
    got = mocks["anthropic"].last()
    assert got.path == "/v1/messages/count_tokens"
    assert got.json == {"model": "claude-sonnet-4-5", "system": "Be brief.", "messages": msgs}
    assert got.headers["x-api-key"] == ANTHROPIC_KEY
    # Other backends: the gateway's estimate (about 4 characters a token, 4 a message).
    for alias in TRANSLATED:
        r = claude.messages.count_tokens(model=alias, messages=msgs)
        assert r.input_tokens == 4 + 4, alias
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.count_tokens(model="no-such-model", messages=msgs)


def test_models_list_with_the_anthropic_sdk(claude):
    ids = [m.id for m in claude.models.list()]
    assert "claude" in ids and "gpt" in ids


# --- model groups: retries and fallbacks behind the attempt listener ----------------------------

@pytest.fixture(scope="module")
def fallback_gw(mocks):
    """`flaky` is an OpenAI deployment that fails, retried then falling back to `backup`, the
    Anthropic deployment; `mixed` balances an OpenAI and a Bedrock deployment."""
    from conftest import gateway_env
    from harness import Envoy
    openai_mock, anthropic_mock, bedrock_mock = mocks["openai"], mocks["anthropic"], mocks["bedrock"]
    bedrock = next(d for d in bedrock_mock.model_list(bedrock_mock.base_url) if d["model_name"] == "bedrock-claude")
    model_list = [
        {"model_name": "flaky", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": f"{openai_mock.base_url}/v1",
                                                   "api_key": "os.environ/OPENAI_API_KEY"}, "model_info": {"id": "flaky-gpt"}},
        {"model_name": "backup", "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_base": anthropic_mock.base_url,
                                                    "api_key": "os.environ/ANTHROPIC_API_KEY"}, "model_info": {"id": "backup-claude"}},
        {"model_name": "mixed", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": f"{openai_mock.base_url}/v1",
                                                   "api_key": "os.environ/OPENAI_API_KEY"}, "model_info": {"id": "mixed-gpt"}},
        dict(bedrock, model_name="mixed", model_info={"id": "mixed-bedrock"}),
    ]
    config = {"model_list": model_list,
              "router_settings": {"num_retries": 1, "allowed_fails": 100, "fallbacks": [{"flaky": ["backup"]}]},
              "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"}}
    with Envoy(config, env=gateway_env(mocks), concurrency=2) as gw:
        yield gw


@pytest.mark.parametrize("stream", [False, True])
def test_a_failing_deployment_falls_back_across_apis(fallback_gw, mocks, stream):
    from mocks.openai_mock import openai_error
    mocks["openai"].forced = openai_error(500, "The server had an error", "server_error")
    c = anthropic.Anthropic(base_url=fallback_gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    args = dict(model="flaky", max_tokens=100, messages=[{"role": "user", "content": "hello fallback"}])
    if stream:
        with c.messages.stream(**args) as s:
            m = s.get_final_message()
    else:
        raw = c.messages.with_raw_response.create(**args)
        assert raw.headers["x-tollgate-attempted-fallbacks"] == "1"
        assert raw.headers["x-tollgate-model-id"] == "backup-claude"
        m = raw.parse()
    assert text_of(m) == "echo: hello fallback"
    assert m.model == "flaky" and m.type == "message"
    # The Anthropic deployment got the client's own body, its model in place.
    sent = mocks["anthropic"].last().json
    assert sent == dict(args, model="claude-sonnet-4-5", **({"stream": True} if stream else {}))
    assert mocks["openai"].count() == 2  # the first try and one retry


@pytest.mark.parametrize("stream", [False, True])
def test_a_balanced_group_answers_in_messages_shape(fallback_gw, stream):
    c = anthropic.Anthropic(base_url=fallback_gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    for _ in range(6):
        args = dict(model="mixed", max_tokens=100, tools=TOOLS, tool_choice={"type": "any"},
                    messages=[{"role": "user", "content": "Weather?"}])
        if stream:
            with c.messages.stream(**args) as s:
                m = s.get_final_message()
        else:
            m = c.messages.create(**args)
        assert m.stop_reason == "tool_use" and m.model == "mixed"
        assert [b.name for b in m.content if b.type == "tool_use"] == ["get_weather"]


def test_errors_behind_the_attempt_listener_are_anthropic_shaped(fallback_gw):
    c = anthropic.Anthropic(base_url=fallback_gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    with pytest.raises(anthropic.BadRequestError) as e:
        c.messages.create(model="mixed", max_tokens=10, messages=[{"role": "system", "content": "x"}])
    assert e.value.body["type"] == "error"


# --- virtual keys on this API: budgets, limits, blocks and spend, as for chat completions ------

def admin(gw, method, path, body=None):
    from harness import http
    status, _, raw = http(method, f"{gw.base_url}{path}", body,
                          {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"})
    return status, json.loads(raw or b"null")


def test_virtual_keys_budgets_and_limits(gateway, mocks):
    status, k = admin(gateway, "POST", "/key/generate", {"key_alias": "messages-key", "max_budget": 10.0,
                                                         "rpm_limit": 2, "models": ["claude", "gpt"]})
    assert status == 200, k
    c = anthropic.Anthropic(base_url=gateway.base_url, api_key=k["key"], max_retries=0, timeout=20)
    m = c.messages.create(model="claude", max_tokens=50, messages=[{"role": "user", "content": "count me"}])
    assert text_of(m) == "echo: count me"
    with c.messages.stream(model="gpt", max_tokens=50, messages=[{"role": "user", "content": "me too"}]) as s:
        s.get_final_message()
    # A model the key may not use, as the SDK's own exception class.
    with pytest.raises(anthropic.PermissionDeniedError):
        c.messages.create(model="gemini", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    # The rpm limit: the third request of the minute.
    with pytest.raises(anthropic.RateLimitError) as e:
        c.messages.create(model="claude", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "rate_limit_error"
    # Spend was charged from the usage each answer reported.
    status, info = admin(gateway, "GET", f"/key/info?key={k['key']}")
    assert status == 200 and info["info"]["spend"] > 0, info


def test_a_spent_budget_and_a_blocked_key(gateway):
    status, k = admin(gateway, "POST", "/key/generate", {"key_alias": "messages-poor", "max_budget": 0.0000001})
    assert status == 200, k
    c = anthropic.Anthropic(base_url=gateway.base_url, api_key=k["key"], max_retries=0, timeout=20)
    with pytest.raises(anthropic.RateLimitError) as e:
        c.messages.create(model="claude", max_tokens=4000, messages=[{"role": "user", "content": "x"}])
    assert "Budget" in e.value.body["error"]["message"]
    assert admin(gateway, "POST", "/key/block", {"key": k["key"]})[0] == 200
    with pytest.raises(anthropic.PermissionDeniedError) as e:
        c.messages.create(model="claude", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["type"] == "error"


def test_a_low_budget_caps_max_tokens_sent_upstream(gateway, mocks):
    """Near the end of a budget the output is capped to what is left (issue 17): in the client's
    own body too when it passes through to Anthropic, and in the translated one otherwise."""
    status, k = admin(gateway, "POST", "/key/generate", {"key_alias": "messages-cap", "max_budget": 0.01})
    assert status == 200, k
    c = anthropic.Anthropic(base_url=gateway.base_url, api_key=k["key"], max_retries=0, timeout=20)
    for alias, mock, field in [("claude", "anthropic", lambda b: b["max_tokens"]),
                               ("bedrock-claude", "bedrock", lambda b: b["inferenceConfig"]["maxTokens"])]:
        raw = c.messages.with_raw_response.create(model=alias, max_tokens=64000,
                                                  messages=[{"role": "user", "content": "hi"}])
        capped = int(raw.headers["x-tollgate-max-tokens-capped"])
        assert 16 <= capped < 64000, alias
        assert field(mocks[mock].last().json) == capped, alias
        assert raw.parse().type == "message"


# --- a Claude Code-shaped session --------------------------------------------------------------

CLAUDE_CODE_TOOLS = [
    {"name": name, "description": f"{name} tool", "input_schema": {
        "type": "object", "properties": {"location": {"type": "string"}, "path": {"type": "string"}},
        "required": ["location"]}}
    for name in ["get_weather", "Read", "Write", "Edit", "Bash", "Glob", "Grep", "WebFetch", "TodoWrite", "Task"]
]
CLAUDE_CODE_TOOLS[-1]["cache_control"] = {"type": "ephemeral"}
CLAUDE_CODE_HEADERS = {"anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14",
                       "x-app": "cli", "user-agent": "claude-cli/2.0.0 (external, cli)"}


def claude_code_turn(c, alias, messages):
    """One turn as Claude Code sends it: streamed, thinking on, system blocks with cache_control,
    many tools, metadata.user_id, its beta flags."""
    with c.messages.stream(
            model=alias, max_tokens=32000, messages=messages,
            system=[{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
                    {"type": "text", "text": "Project instructions.", "cache_control": {"type": "ephemeral"}}],
            tools=CLAUDE_CODE_TOOLS, tool_choice={"type": "auto"},
            thinking={"type": "enabled", "budget_tokens": 4000},
            metadata={"user_id": "user_0123abcd_account__session_4567"},
            extra_headers=CLAUDE_CODE_HEADERS) as s:
        return s.get_final_message()


def test_claude_code_session_to_anthropic(claude, mocks):
    msgs = [{"role": "user", "content": [{"type": "text", "text": "What is the weather?",
                                          "cache_control": {"type": "ephemeral"}}]}]
    m = claude_code_turn(claude, "claude", msgs)
    got = mocks["anthropic"].last()
    # What Anthropic received is Claude Code's request itself: nothing dropped, reordered or added.
    assert got.json["model"] == "claude-sonnet-4-5"
    assert {k: v for k, v in got.json.items() if k != "model"} == {
        "max_tokens": 32000, "messages": msgs, "stream": True, "tool_choice": {"type": "auto"},
        "system": [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
                   {"type": "text", "text": "Project instructions.", "cache_control": {"type": "ephemeral"}}],
        "tools": CLAUDE_CODE_TOOLS, "thinking": {"type": "enabled", "budget_tokens": 4000},
        "metadata": {"user_id": "user_0123abcd_account__session_4567"}}
    assert got.headers["anthropic-beta"] == CLAUDE_CODE_HEADERS["anthropic-beta"]
    assert "x-app" not in got.headers and MASTER_KEY not in json.dumps(got.headers)
    assert m.stop_reason == "tool_use" and m.content[-1].type == "tool_use"


def test_claude_code_session_to_bedrock_keeps_signed_thinking(claude, mocks):
    """Claude on Bedrock: thinking comes back with its signature; sent back in the next turn with
    the tool result, Bedrock (which checks it, as Claude does) accepts it."""
    msgs = [{"role": "user", "content": "What is the weather?"}]
    first = claude_code_turn(claude, "bedrock-claude", msgs)
    kinds = [b.type for b in first.content]
    assert kinds == ["thinking", "tool_use"], kinds
    thinking = first.content[0]
    assert thinking.thinking == "Thinking about: What is the weather?"
    assert thinking.signature  # Bedrock's, intact
    sent = mocks["bedrock"].last().json
    assert sent["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 4000}}
    tools = sent["toolConfig"]["tools"]
    assert [t["toolSpec"]["name"] for t in tools[:-1]] == [t["name"] for t in CLAUDE_CODE_TOOLS]
    # The last tool's cache_control: a checkpoint after it, and after the cached system block.
    assert tools[-1] == {"cachePoint": {"type": "default"}}
    assert sent["system"][-1] == {"cachePoint": {"type": "default"}}
    assert sent["requestMetadata"] == {"user": "user_0123abcd_account__session_4567"}
    call = first.content[1]
    msgs += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C"}]}]
    second = claude_code_turn(claude, "bedrock-claude", msgs)
    sent = mocks["bedrock"].last().json
    # The earlier reasoning went back first in the assistant turn, its signature unchanged.
    assert sent["messages"][1]["content"][0] == {"reasoningContent": {"reasoningText": {
        "text": thinking.thinking, "signature": thinking.signature}}}
    assert second.stop_reason in ("end_turn", "tool_use")
    assert "18C" in json.dumps(sent)
    # A tampered signature is the provider's 400, in Anthropic's shape.
    msgs[1]["content"][0]["signature"] = "tampered"
    with pytest.raises(anthropic.BadRequestError) as e:
        claude_code_turn(claude, "bedrock-claude", msgs)
    assert "signature" in e.value.body["error"]["message"]


def test_requests_are_counted_by_client_api(gateway, claude, client):
    from test_stats import prometheus, value
    before = prometheus(gateway)
    claude.messages.create(model="gpt", max_tokens=20, messages=[{"role": "user", "content": "count"}])
    client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "count"}])
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    after = prometheus(gateway)

    def delta(**labels):
        return value(after, "tollgate_requests_total", **labels) - value(before, "tollgate_requests_total", **labels)

    assert delta(api="messages", model="gpt", provider="openai", status="2xx") == 1
    assert delta(api="chat", model="gpt", provider="openai", status="2xx") == 1
    assert delta(api="messages", status="4xx") == 1


def test_claude_code_turn_to_gemini(claude, mocks):
    """Thinking on, to Gemini: Anthropic's budget becomes Gemini's, and the turn completes."""
    m = claude_code_turn(claude, "gemini", [{"role": "user", "content": "What is the weather?"}])
    assert m.stop_reason in ("tool_use", "end_turn") and m.model == "gemini"
    sent = mocks["gemini"].last().json
    assert sent["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 4000, "includeThoughts": True}
    assert len(sent["tools"][0]["functionDeclarations"]) == len(CLAUDE_CODE_TOOLS)


PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


@pytest.mark.parametrize("alias", ["claude", "gpt", "bedrock-claude", "gemini"])
def test_an_image_reaches_every_provider(claude, mocks, alias):
    m = claude.messages.create(model=alias, max_tokens=50, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "text", "text": "describe this"}]}])
    assert m.type == "message" and "describe this" in text_of(m)
    # The image went upstream in the provider's own terms, its bytes intact.
    assert PNG_B64 in json.dumps(mocks[MOCK_OF[alias]].last().json)
