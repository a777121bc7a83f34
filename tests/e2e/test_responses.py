"""OpenAI's Responses API in (`POST /v1/responses`) through the real Envoy, with the official
`openai` SDK as the client (`client.responses.create` and `.stream`): passed through to an OpenAI
deployment, translated to every other provider, OpenAI-shaped errors the SDK raises."""

import json

import openai
import pytest

from conftest import MASTER_KEY
from mocks.anthropic_mock import thinking_signature
from mocks.openai_mock import OPENAI_KEY

FUNCTION = {"type": "function", "name": "get_weather", "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                           "required": ["location"]}}

# Every provider family the Responses API is translated for: Anthropic, the OpenAI-compatible
# family (their chat completions), Bedrock (Converse) and Gemini.
TRANSLATED = ["claude", "groq-llama", "bedrock-claude", "gemini"]
ALL = ["gpt"] + TRANSLATED
MOCK_OF = {"claude": "anthropic", "gpt": "openai", "groq-llama": "compat", "bedrock-claude": "bedrock",
           "gemini": "gemini"}


def test_pass_through_to_openai(client, mocks):
    body = {"model": "gpt", "instructions": "Be brief.", "input": "hello there", "store": False,
            "metadata": {"team": "a"}, "max_output_tokens": 300}
    r = client.responses.create(**body, extra_body={"service_tier": "default"})
    assert r.object == "response" and r.status == "completed"
    assert r.output_text == "echo: hello there"
    assert r.model == "gpt"
    assert r.id.startswith("resp_") and len(r.id) == 53  # OpenAI's own answer, relayed
    assert (r.usage.input_tokens, r.usage.output_tokens) == (7, 3)
    got = mocks["openai"].last()
    assert got.path == "/v1/responses"
    # The client's body as it came, with the deployment's model.
    assert got.json == dict(body, model="gpt-4o-mini", service_tier="default")
    assert got.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert MASTER_KEY not in json.dumps(got.headers)


def test_pass_through_to_azure(client, mocks):
    # Azure serves the API under its v1 API, whatever version the deployment's chat uses.
    r = client.responses.create(model="azure-gpt", input="hello azure", max_output_tokens=100)
    assert r.output_text == "echo: hello azure" and r.model == "azure-gpt"
    got = mocks["azure"].last()
    assert got.path == "/openai/v1/responses" and "api-version" not in got.query
    assert got.json == {"model": "my-gpt4o-deployment", "input": "hello azure", "max_output_tokens": 100}
    assert "authorization" not in got.headers
    with client.responses.stream(model="azure-gpt", input="one two") as s:
        assert s.get_final_response().output_text == "echo: one two"


def test_pass_through_stream(client, mocks):
    with client.responses.stream(model="gpt", input="one two three") as s:
        deltas = [e.delta for e in s if e.type == "response.output_text.delta"]
        final = s.get_final_response()
    assert "".join(deltas) == "echo: one two three"
    assert final.output_text == "echo: one two three" and final.model == "gpt"
    assert final.usage.output_tokens == 4
    assert mocks["openai"].last().json["stream"] is True


@pytest.mark.parametrize("alias", TRANSLATED)
def test_create_translated(client, mocks, alias):
    r = client.responses.create(model=alias, instructions="Be brief.", input="hello there",
                                max_output_tokens=200)
    assert r.object == "response" and r.model == alias and r.status == "completed"
    assert r.id.startswith("resp_")
    assert "hello there" in r.output_text
    assert r.output[-1].type == "message" and r.output[-1].role == "assistant"
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    # The provider got its own API: the instructions as its system prompt.
    assert "Be brief." in json.dumps(mocks[MOCK_OF[alias]].last().json)


@pytest.mark.parametrize("alias", ALL)
def test_stream_every_provider(client, alias):
    types = []
    with client.responses.stream(model=alias, input="hello stream") as s:
        for e in s:
            types.append(e.type)
        final = s.get_final_response()
    assert "hello stream" in final.output_text
    assert final.model == alias and final.status == "completed"
    assert final.usage.output_tokens > 0
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert "response.output_text.delta" in types and "response.output_item.done" in types


@pytest.mark.parametrize("alias", ALL)
def test_function_tool_round_trip(client, mocks, alias):
    r = client.responses.create(model=alias, input="Weather in Paris?", tools=[FUNCTION], tool_choice="required")
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments).get("location")
    assert calls[0].call_id
    follow = client.responses.create(model=alias, tools=[FUNCTION], input=[
        {"role": "user", "content": "Weather in Paris?"},
        *[o.model_dump(exclude_none=True) for o in r.output],
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C, sunny"},
    ], tool_choice="none")
    assert follow.status == "completed" and follow.output_text
    sent = json.dumps(mocks[MOCK_OF[alias]].last().json)
    assert "18C, sunny" in sent and "get_weather" in sent


@pytest.mark.parametrize("stream", [False, True])
def test_claude_reasoning_round_trips_with_a_tool(client, mocks, stream):
    """Reasoning effort and a tool to Claude: turn 1 answers a reasoning item whose
    encrypted_content is Claude's signature, and a function call; turn 2 sends the output items
    back with the call's output, and Anthropic gets the signed thinking first in the assistant
    turn, which it requires with thinking on (the mock refuses the turn without it)."""
    args = dict(model="claude", tools=[FUNCTION], reasoning={"effort": "low"})

    def create(**kw):
        if stream:
            with client.responses.stream(**args, **kw) as s:
                return s.get_final_response()
        return client.responses.create(**args, **kw)

    r = create(input="Weather in Paris?")
    sent = mocks["anthropic"].last().json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert sent["max_tokens"] == 4096 and "reasoning_effort" not in sent
    assert [o.type for o in r.output] == ["reasoning", "function_call"]
    reasoning, call = r.output
    assert reasoning.summary[0].text == "Thinking about: Weather in Paris?"
    assert reasoning.encrypted_content == thinking_signature(reasoning.summary[0].text)
    history = [{"role": "user", "content": "Weather in Paris?"},
               *[o.model_dump(exclude_none=True) for o in r.output],
               {"type": "function_call_output", "call_id": call.call_id, "output": "18C, sunny"}]
    follow = create(input=history)
    assert follow.status == "completed" and "18C, sunny" in follow.output_text
    assert follow.output[0].type == "reasoning" and follow.output[0].encrypted_content
    turn = mocks["anthropic"].last().json["messages"][1]
    assert turn["role"] == "assistant"
    assert turn["content"][0] == {"type": "thinking", "thinking": reasoning.summary[0].text,
                                  "signature": reasoning.encrypted_content}
    assert turn["content"][1]["type"] == "tool_use" and turn["content"][1]["id"] == call.call_id
    # Without its reasoning item the turn is Anthropic's 400, as the client's error.
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(**args, input=[h for h in history if h.get("type") != "reasoning"])
    assert "thinking" in e.value.message


@pytest.mark.parametrize("alias", ["gpt", "claude", "bedrock-claude", "gemini"])
def test_streamed_function_call(client, alias):
    with client.responses.stream(model=alias, input="Weather in Paris?", tools=[FUNCTION],
                                 tool_choice="required") as s:
        final = s.get_final_response()
    calls = [o for o in final.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments).get("location")


@pytest.mark.parametrize("alias", ["gpt", "claude", "gemini"])
def test_json_schema_output(client, mocks, alias):
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
              "additionalProperties": False}
    r = client.responses.create(model=alias, input="say yes", text={"format": {
        "type": "json_schema", "name": "answer", "schema": schema, "strict": True}})
    assert "answer" in json.loads(r.output_text)


@pytest.mark.parametrize("alias", ["gpt", "claude", "bedrock-claude", "gemini"])
def test_an_image(client, mocks, alias):
    png = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAA"
           "AABJRU5ErkJggg==")
    r = client.responses.create(model=alias, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "what is this"}, {"type": "input_image", "image_url": png}]}])
    assert "what is this" in r.output_text
    assert "iVBORw0KGgo" in json.dumps(mocks[MOCK_OF[alias]].last().json)


def test_errors_raise_the_sdks_exceptions(gateway, client):
    bad = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key="sk-not-a-key", max_retries=0, timeout=20)
    with pytest.raises(openai.AuthenticationError):
        bad.responses.create(model="gpt", input="x")
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="x")
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="claude", input="x", tools=[{"type": "web_search"}])
    assert e.value.body["param"] == "tools[0].type"
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="gemini", input="x", previous_response_id="resp_1")
    assert e.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.BadRequestError) as e:
        client.post("/responses", body={"model": "claude"}, cast_to=object)
    assert e.value.body["param"] == "input"


def test_a_provider_failure_mid_stream_is_raised(client, mocks):
    from mocks.base import Stream
    mocks["anthropic"].forced = Stream([
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
        b'"role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"usage":'
        b'{"input_tokens":5,"output_tokens":1}}}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":'
        b'{"type":"text","text":""}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
        b'{"type":"text_delta","text":"Hel"}}\n\n',
    ])
    seen = []
    with pytest.raises(openai.APIError):
        with client.responses.stream(model="claude", input="x") as s:
            for e in s:
                seen.append(e.type)
    assert "response.output_text.delta" in seen and "response.failed" in seen


# --- the OpenAI Agents SDK: an agent with two function tools, run to completion --------------------

@pytest.mark.parametrize("alias", ["gpt", "claude", "bedrock-claude"])
def test_an_agents_sdk_agent_runs_to_completion(gateway, mocks, alias):
    import asyncio

    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    called = []

    @function_tool
    def get_weather(location: str) -> str:
        """Current weather for a city."""
        called.append(("get_weather", location))
        return f"18C and sunny in {location}"

    @function_tool
    def get_time(location: str) -> str:
        """Local time in a city."""
        called.append(("get_time", location))
        return "12:00"

    client = openai.AsyncOpenAI(base_url=f"{gateway.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
    agent = Agent(name="assistant", instructions="Answer with the tools.", tools=[get_weather, get_time],
                  model=OpenAIResponsesModel(model=alias, openai_client=client))
    result = asyncio.run(Runner.run(agent, "What is the weather in Paris?", max_turns=4))
    assert called and called[0][0] == "get_weather" and called[0][1]
    assert "18C and sunny" in result.final_output
    # The provider got both tool definitions and, on the second turn, the tool's output.
    sent = json.dumps(mocks[MOCK_OF[alias]].last().json)
    assert "get_time" in sent and "18C and sunny" in sent


# --- model groups: retries and fallbacks behind the attempt listener ----------------------------

@pytest.fixture(scope="module")
def fallback_gw(mocks):
    """`flaky` is an OpenAI deployment that fails, retried then falling back to `backup`, the
    Anthropic deployment; `mixed` balances an OpenAI and a Bedrock deployment."""
    from conftest import gateway_env
    from harness import Envoy
    openai_mock, anthropic_mock, bedrock_mock = mocks["openai"], mocks["anthropic"], mocks["bedrock"]
    bedrock = next(d for d in bedrock_mock.model_list(bedrock_mock.base_url) if d["model_name"] == "bedrock-claude")
    gpt = {"model": "openai/gpt-4o-mini", "api_base": f"{openai_mock.base_url}/v1",
           "api_key": "os.environ/OPENAI_API_KEY"}
    model_list = [
        {"model_name": "flaky", "litellm_params": gpt, "model_info": {"id": "flaky-gpt"}},
        {"model_name": "backup", "litellm_params": {"model": "anthropic/claude-sonnet-4-5",
                                                    "api_base": anthropic_mock.base_url,
                                                    "api_key": "os.environ/ANTHROPIC_API_KEY"},
         "model_info": {"id": "backup-claude"}},
        {"model_name": "mixed", "litellm_params": gpt, "model_info": {"id": "mixed-gpt"}},
        dict(bedrock, model_name="mixed", model_info={"id": "mixed-bedrock"}),
    ]
    config = {"model_list": model_list,
              "router_settings": {"num_retries": 1, "allowed_fails": 100, "fallbacks": [{"flaky": ["backup"]}]},
              "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"}}
    with Envoy(config, env=gateway_env(mocks), concurrency=2) as gw:
        yield gw


@pytest.mark.parametrize("stream", [False, True])
def test_a_failing_openai_deployment_falls_back_to_anthropic(fallback_gw, mocks, stream):
    from mocks.openai_mock import openai_error
    mocks["openai"].forced = openai_error(500, "The server had an error", "server_error")
    c = openai.OpenAI(base_url=f"{fallback_gw.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)
    if stream:
        with c.responses.stream(model="flaky", input="hello fallback") as s:
            r = s.get_final_response()
    else:
        raw = c.responses.with_raw_response.create(model="flaky", input="hello fallback")
        assert raw.headers["x-tollgate-attempted-fallbacks"] == "1"
        assert raw.headers["x-tollgate-model-id"] == "backup-claude"
        r = raw.parse()
    assert r.output_text == "echo: hello fallback" and r.model == "flaky" and r.object == "response"
    # OpenAI was asked at its Responses API (twice: the try and a retry), Anthropic in its own.
    assert mocks["openai"].count() == 2 and mocks["openai"].last().path == "/v1/responses"
    sent = mocks["anthropic"].last()
    assert sent.path == "/v1/messages" and "hello fallback" in json.dumps(sent.json["messages"][-1])


@pytest.mark.parametrize("stream", [False, True])
def test_a_balanced_group_answers_in_the_responses_shape(fallback_gw, mocks, stream):
    c = openai.OpenAI(base_url=f"{fallback_gw.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)
    # Until both deployments have answered (the balancer picks at random: 30 tries all on one
    # side would be a 1 in 500 million chance).
    for _ in range(30):
        if mocks["openai"].count() > 0 and mocks["bedrock"].count() > 0:
            break
        args = dict(model="mixed", input="Weather?", tools=[FUNCTION], tool_choice="required")
        if stream:
            with c.responses.stream(**args) as s:
                r = s.get_final_response()
        else:
            r = c.responses.create(**args)
        assert r.model == "mixed"
        assert [o.name for o in r.output if o.type == "function_call"] == ["get_weather"]
    assert mocks["openai"].count() > 0 and mocks["bedrock"].count() > 0


# --- virtual keys on this API: budgets, limits, spend, as for chat completions ----------------------

def admin(gw, method, path, body=None):
    from harness import http
    status, _, raw = http(method, f"{gw.base_url}{path}", body,
                          {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"})
    return status, json.loads(raw or b"null")


def test_virtual_keys_budgets_and_limits(gateway):
    status, k = admin(gateway, "POST", "/key/generate", {"key_alias": "responses-key", "max_budget": 10.0,
                                                         "rpm_limit": 2, "models": ["claude", "gpt"]})
    assert status == 200, k
    c = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=k["key"], max_retries=0, timeout=20)
    assert c.responses.create(model="gpt", input="count me").output_text == "echo: count me"
    with c.responses.stream(model="claude", input="me too") as s:
        s.get_final_response()
    with pytest.raises(openai.PermissionDeniedError):
        c.responses.create(model="gemini", input="x")
    with pytest.raises(openai.RateLimitError):
        c.responses.create(model="claude", input="x")
    # Spend was charged from the usage each answer reported, the pass-through's included.
    status, info = admin(gateway, "GET", f"/key/info?key={k['key']}")
    assert status == 200 and info["info"]["spend"] > 0, info


def test_a_low_budget_caps_max_output_tokens_sent_upstream(gateway, mocks):
    status, k = admin(gateway, "POST", "/key/generate", {"key_alias": "responses-cap", "max_budget": 0.01})
    assert status == 200, k
    c = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=k["key"], max_retries=0, timeout=20)
    for alias, mock, field in [("gpt", "openai", lambda b: b["max_output_tokens"]),
                               ("claude", "anthropic", lambda b: b["max_tokens"])]:
        raw = c.responses.with_raw_response.create(model=alias, input="hi", max_output_tokens=64000)
        capped = int(raw.headers["x-tollgate-max-tokens-capped"])
        assert 16 <= capped < 64000, alias
        assert field(mocks[mock].last().json) == capped, alias
        assert raw.parse().object == "response"


def test_a_spent_budget_is_refused(gateway):
    status, k = admin(gateway, "POST", "/key/generate", {"key_alias": "responses-poor", "max_budget": 0.0000001})
    assert status == 200, k
    c = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=k["key"], max_retries=0, timeout=20)
    with pytest.raises(openai.RateLimitError) as e:
        c.responses.create(model="gpt", input="x", max_output_tokens=4000)
    assert "Budget" in e.value.body["message"]


def test_requests_are_counted_by_client_api(gateway, client):
    from test_stats import prometheus, value
    before = prometheus(gateway)
    client.responses.create(model="gpt", input="count")
    client.responses.create(model="claude", input="count")
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="x")
    after = prometheus(gateway)

    def delta(**labels):
        return value(after, "tollgate_requests_total", **labels) - value(before, "tollgate_requests_total", **labels)
    assert delta(api="responses", model="gpt", provider="openai", status="2xx") == 1
    assert delta(api="responses", model="claude", provider="anthropic", status="2xx") == 1
    assert delta(api="responses", status="4xx") == 1
