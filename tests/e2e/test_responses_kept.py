"""Responses API conversations kept in the shared store (a real Redis behind webdis), through two
real Envoy replicas (two workers each) with the official `openai` SDK: a turn made on one replica
is continued with `previous_response_id` on the other, for every provider (the gateway reads the
conversation back and sends it whole), streamed or not, tool calls included; `store: false`, an
unknown id, a key that may not use the conversation's model and a deleted turn get OpenAI's
errors; `GET`/`DELETE /v1/responses/{id}` find a kept response on any replica. Run with the form
TOLLGATE_FILTER names."""

import json
import time

import openai
import pytest

from conftest import MASTER_KEY, gateway_config, gateway_env
from fleet_common import stack, started  # noqa: F401 (fixtures)
from harness import Envoy, http
from mocks.openai_mock import OPENAI_KEY, OpenAIMock

FUNCTION = {"type": "function", "name": "get_weather", "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                           "required": ["location"]}}
ALL = ["gpt", "claude", "groq-llama", "bedrock-claude", "gemini"]
MOCK_OF = {"claude": "anthropic", "gpt": "openai", "groq-llama": "compat", "bedrock-claude": "bedrock",
           "gemini": "gemini"}


@pytest.fixture(scope="module")
def fleet(stack, mocks):  # noqa: F811
    config = gateway_config(mocks, tollgate_settings={"store": {
        "url": stack.webdis.url, "auth": "os.environ/TOLLGATE_STORE_AUTH", "tick_ms": 100}})
    env = dict(gateway_env(mocks), TOLLGATE_STORE_AUTH=stack.webdis.auth)
    envoys = [Envoy(config, env=env, concurrency=2) for _ in range(2)]
    with started(envoys):
        yield envoys


def sdk(gw, key=MASTER_KEY):
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=key, max_retries=0, timeout=20)


def make(client, stream, **kw):
    if stream:
        with client.responses.stream(**kw) as s:
            return s.get_final_response()
    return client.responses.create(**kw)


def sent(mocks, alias):
    return json.dumps(mocks[MOCK_OF[alias]].last().json)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("alias", ALL)
def test_a_conversation_goes_on_across_replicas(fleet, mocks, alias, stream):
    a, b = (sdk(gw) for gw in fleet)
    first = make(a, stream, model=alias, instructions="Be brief.", input="alpha words")
    assert first.status == "completed" and "alpha words" in first.output_text
    assert first.store is True and first.previous_response_id is None
    second = make(b, stream, model=alias, input="beta words", previous_response_id=first.id)
    assert second.status == "completed" and "beta words" in second.output_text and second.model == alias
    # As OpenAI says of a kept response: stored, and the turn it continues.
    assert second.store is True and second.previous_response_id == first.id
    got = mocks[MOCK_OF[alias]].last()
    body = json.dumps(got.json)
    if alias == "gpt" and "previous_response_id" in got.json:
        # OpenAI holds its own responses: replica b may already have learnt (from its sync) where
        # the first is held, and sent the link as it came.
        assert got.json["previous_response_id"] == first.id and got.json["input"] == "beta words"
        return
    # The provider got the whole conversation: the first turn's input and answer, then the new input.
    assert body.index("alpha words") < body.index(first.output_text) < body.index("beta words"), body
    # The instructions are the request's own (none here), as OpenAI does.
    assert "Be brief." not in body
    assert "previous_response_id" not in got.json
    third = make(a, stream, model=alias, input="gamma words", previous_response_id=second.id)
    assert "gamma words" in third.output_text
    if alias == "gpt":
        return
    body = sent(mocks, alias)
    assert body.index("alpha words") < body.index("beta words") < body.index("gamma words")


@pytest.mark.parametrize("alias", ["claude", "bedrock-claude", "gemini", "groq-llama"])
def test_a_tool_round_trip_continues_on_the_other_replica(fleet, mocks, alias):
    a, b = (sdk(gw) for gw in fleet)
    r = a.responses.create(model=alias, input="Weather in Paris?", tools=[FUNCTION], tool_choice="required")
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1
    follow = b.responses.create(model=alias, tools=[FUNCTION], tool_choice="none", previous_response_id=r.id, input=[
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "18C, sunny"}])
    assert follow.status == "completed" and follow.output_text
    body = sent(mocks, alias)
    assert body.index("Weather in Paris?") < body.index("get_weather") < body.index("18C, sunny")


def test_errors_are_openais(fleet, mocks):
    a, b = (sdk(gw) for gw in fleet)
    unkept = a.responses.create(model="claude", input="not kept", store=False)
    assert unkept.store is False
    for rid in (unkept.id, "resp_0123456789abcdef"):
        n = mocks["anthropic"].count()
        with pytest.raises(openai.NotFoundError) as e:
            b.responses.create(model="claude", input="next", previous_response_id=rid)
        assert e.value.body == {"message": f"Previous response with id '{rid}' not found.",
                                "type": "invalid_request_error", "param": "previous_response_id",
                                "code": "previous_response_not_found"}
        assert mocks["anthropic"].count() == n
    # A key that may not use the conversation's model does not see it.
    status, _, body = http("POST", f"{fleet[0].base_url}/key/generate",
                           json.dumps({"models": ["gemini"]}).encode(),
                           {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"})
    assert status == 200, body
    key = json.loads(body)["key"]
    made = a.responses.create(model="claude", input="private")
    with pytest.raises(openai.NotFoundError):
        sdk(fleet[1], key).responses.create(model="gemini", input="x", previous_response_id=made.id)
    # The same key may go on with a conversation of a model it may use, on another model.
    mine = sdk(fleet[0], key).responses.create(model="gemini", input="gemini first")
    other = sdk(fleet[1], key).responses.create(model="gemini", input="gemini second", previous_response_id=mine.id)
    assert "gemini second" in other.output_text


def test_retrieve_and_delete_on_any_replica(fleet, mocks):
    a, b = (sdk(gw) for gw in fleet)
    made = a.responses.create(model="claude", input="keep me")
    got = b.responses.retrieve(made.id)
    assert got.id == made.id and got.model == "claude" and got.output_text == made.output_text
    items = b.responses.input_items.list(made.id)
    assert [(i.type, i.role, i.content[0].text) for i in items.data] == [("message", "user", "keep me")]
    second = b.responses.create(model="claude", input="and me", previous_response_id=made.id)
    b.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        a.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        a.responses.delete(made.id)
    # A turn whose earlier turn is gone cannot be continued: the client is told to send it whole.
    with pytest.raises(openai.BadRequestError) as e:
        a.responses.create(model="claude", input="more", previous_response_id=second.id)
    assert e.value.body["param"] == "previous_response_id"
    assert made.id in e.value.body["message"]


@pytest.fixture(scope="module")
def duo_fleet(stack):  # noqa: F811
    """Two replicas over a group of two OpenAI deployments (`/east/v1`, `/west/v1` of one mock:
    each holds only its own responses, as two OpenAI projects do)."""
    mock = OpenAIMock().start()
    config = {
        "model_list": [{"model_name": "duo", "model_info": {"id": f"duo-{side}"}, "litellm_params": {
            "model": "openai/gpt-4.1", "api_base": f"{mock.base_url}/{side}/v1",
            "api_key": "os.environ/OPENAI_API_KEY"}} for side in ("east", "west")],
        "router_settings": {"routing_strategy": "simple-shuffle", "num_retries": 2},
        "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"},
        "tollgate_settings": {"store": {"url": stack.webdis.url, "auth": "os.environ/TOLLGATE_STORE_AUTH",
                                        "tick_ms": 100}},
    }
    env = {"TOLLGATE_MASTER_KEY": MASTER_KEY, "OPENAI_API_KEY": OPENAI_KEY,
           "TOLLGATE_STORE_AUTH": stack.webdis.auth}
    envoys = [Envoy(config, env=env, concurrency=2) for _ in range(2)]
    try:
        with started(envoys):
            yield envoys, mock
    finally:
        mock.stop()


def test_a_later_turn_on_another_replica_goes_to_the_deployment_holding_the_earlier(duo_fleet):
    fleet, mock = duo_fleet
    a, b = (sdk(gw) for gw in fleet)
    for i in range(6):
        first = a.responses.create(model="duo", input=f"first {i}")
        side = mock.last().path.split("/")[1]
        # The replicas learn where it is held from their next syncs (tick_ms 100).
        time.sleep(0.6)
        second = b.responses.create(model="duo", input=f"second {i}", previous_response_id=first.id)
        got = mock.last()
        assert got.path.split("/")[1] == side, f"turn 2 of chain {i} left {side}"
        # Routed to the holder: the link goes as it came, not the conversation.
        assert got.json["previous_response_id"] == first.id and got.json["input"] == f"second {i}"
        assert second.output_text == f"echo: second {i}" and second.model == "duo"
