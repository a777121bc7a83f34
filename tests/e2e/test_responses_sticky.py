"""Responses the gateway passed through to OpenAI deployments, found again through the real Envoy
with the official `openai` SDK: a `previous_response_id` turn goes to the deployment holding the
earlier response (sticky routing by response id), and `client.responses.retrieve` (also as an
event stream, under the alias)/`.delete`/`.input_items.list` reach that deployment; an id the
gateway does not know, or one made for a model the caller's key may not use, is OpenAI's 404."""

import json

import openai
import pytest

from conftest import MASTER_KEY
from harness import Envoy, http
from mocks.openai_mock import OPENAI_KEY, OpenAIMock

SIDES = ("east", "west")


@pytest.fixture(scope="module")
def mock():
    """One OpenAI mock; each api_base path (`/east/v1`, `/west/v1`) is a deployment of its own that
    holds its own responses (404 for another's, as two OpenAI projects answer)."""
    m = OpenAIMock().start()
    yield m
    m.stop()


@pytest.fixture(autouse=True)
def _reset(mock):
    mock.reset()
    yield


def deployment(alias, mock, side):
    return {"model_name": alias,
            "litellm_params": {"model": "openai/gpt-4.1", "api_base": f"{mock.base_url}/{side}/v1",
                               "api_key": "os.environ/OPENAI_API_KEY"},
            "model_info": {"id": f"{alias}-{side}"}}


@pytest.fixture(scope="module")
def gw(mock):
    config = {
        "model_list": [deployment("duo", mock, s) for s in SIDES] + [deployment("solo", mock, "east")],
        "router_settings": {"routing_strategy": "simple-shuffle", "num_retries": 2, "cooldown_time": 60},
        "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"},
    }
    envoy = Envoy(config, env={"TOLLGATE_MASTER_KEY": MASTER_KEY, "OPENAI_API_KEY": OPENAI_KEY}, concurrency=2)
    envoy.start()
    yield envoy
    envoy.stop()


def sdk(gw, key=MASTER_KEY):
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=key, max_retries=0, timeout=20)


def side_of(path):
    side = path.split("/")[1]
    assert side in SIDES, path
    return side


def test_a_later_turn_goes_to_the_deployment_holding_the_earlier(gw, mock):
    client = sdk(gw)
    firsts = set()
    for i in range(10):
        stream = i % 2 == 1
        if stream:
            with client.responses.stream(model="duo", input=f"first {i}") as s:
                first = s.get_final_response()
        else:
            first = client.responses.create(model="duo", input=f"first {i}")
        side = side_of(mock.last().path)
        firsts.add(side)
        if stream:
            with client.responses.stream(model="duo", input=f"second {i}", previous_response_id=first.id) as s:
                second = s.get_final_response()
        else:
            second = client.responses.create(model="duo", input=f"second {i}", previous_response_id=first.id)
        got = mock.last()
        assert side_of(got.path) == side, f"turn 2 of chain {i} left {side}"
        assert got.json["previous_response_id"] == first.id
        assert second.previous_response_id == first.id and second.model == "duo"
        assert second.output_text == f"echo: second {i}"
        # A third turn follows the second.
        third = client.responses.create(model="duo", input=f"third {i}", previous_response_id=second.id)
        assert side_of(mock.last().path) == side and third.output_text == f"echo: third {i}"
    assert mock.count() == 30


def test_retrieve_input_items_and_delete_reach_the_holder(gw, mock):
    client = sdk(gw)
    for i in range(4):
        made = client.responses.create(model="duo", input=f"keep {i}")
        side = side_of(mock.last().path)
        got = client.responses.retrieve(made.id)
        asked = mock.last()
        assert (asked.method, asked.path) == ("GET", f"/{side}/v1/responses/{made.id}")
        assert asked.headers["authorization"] == f"Bearer {OPENAI_KEY}"
        assert MASTER_KEY not in json.dumps(asked.headers)
        assert got.id == made.id and got.model == "duo" and got.output_text == f"echo: keep {i}"
        items = client.responses.input_items.list(made.id)
        assert mock.last().path == f"/{side}/v1/responses/{made.id}/input_items"
        assert [item.content[0].text for item in items.data] == [f"keep {i}"]
        client.responses.delete(made.id)
        asked = mock.last()
        assert (asked.method, asked.path) == ("DELETE", f"/{side}/v1/responses/{made.id}")
        # Deleted: the gateway no longer knows it, and answers itself.
        n = mock.count()
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(made.id)
        assert mock.count() == n


def test_a_retrieved_event_stream_names_the_alias(gw, mock):
    # `retrieve(stream=True)` replays the response's events from the deployment holding it; each
    # lifecycle event's `response.model` is the alias, never the deployment's model.
    client = sdk(gw)
    made = client.responses.create(model="duo", input="replay me", background=True)
    side = side_of(mock.last().path)
    events = list(client.responses.retrieve(made.id, stream=True))
    asked = mock.last()
    assert (asked.method, asked.path, asked.query) == ("GET", f"/{side}/v1/responses/{made.id}", {"stream": "true"})
    assert [e.sequence_number for e in events] == list(range(len(events)))
    lifecycle = [e for e in events if e.type.startswith("response.") and hasattr(e, "response")]
    assert [e.type for e in lifecycle] == ["response.created", "response.in_progress", "response.completed"]
    assert all(e.response.model == "duo" and e.response.id == made.id for e in lifecycle)
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert "".join(e.delta for e in deltas) == "echo: replay me"
    assert all(e.obfuscation for e in deltas), "the other events' fields as OpenAI sent them"
    # Resumed after an event: the rest, still under the alias.
    rest = list(client.responses.retrieve(made.id, stream=True, starting_after=3))
    assert mock.last().query == {"stream": "true", "starting_after": "3"}
    assert [e.sequence_number for e in rest] == list(range(4, len(events)))
    assert rest[-1].type == "response.completed" and rest[-1].response.model == "duo"
    # On the wire: no trace of the deployment's model, events framed as OpenAI frames them.
    status, headers, body = http("GET", f"{gw.base_url}/v1/responses/{made.id}?stream=true",
                                 headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert status == 200 and headers["content-type"].startswith("text/event-stream"), body
    text = body.decode()
    assert "gpt-4.1" not in text and text.count('"model":"duo"') == 3, text
    assert text.startswith('event: response.created\ndata: {"type":"response.created","sequence_number":0,')
    assert text.count("\n\n") == len(events) and text.endswith("}\n\n")


def test_an_unknown_id_is_openais_404(gw, mock):
    client = sdk(gw)
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.retrieve("resp_0123456789abcdef")
    assert e.value.body == {"message": "Response with id 'resp_0123456789abcdef' not found.",
                            "type": "invalid_request_error", "param": None, "code": None}
    with pytest.raises(openai.NotFoundError):
        client.responses.delete("resp_0123456789abcdef")
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list("resp_0123456789abcdef")
    assert mock.count() == 0
    status, _, body = http("GET", f"{gw.base_url}/v1/responses/resp_x",
                           headers={"authorization": "Bearer sk-not-a-key"})
    assert status == 401, body
    status, _, body = http("PUT", f"{gw.base_url}/v1/responses/resp_x",
                           headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert status == 405, body


def test_a_key_reads_only_responses_of_its_models(gw, mock):
    status, _, raw = http("POST", f"{gw.base_url}/key/generate", {"models": ["duo"]},
                          {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"})
    assert status == 200, raw
    key = json.loads(raw)["key"]
    master, duo_only = sdk(gw), sdk(gw, key)
    theirs = master.responses.create(model="solo", input="not yours")
    mine = duo_only.responses.create(model="duo", input="yours")
    n = mock.count()
    for call in (duo_only.responses.retrieve, duo_only.responses.delete, duo_only.responses.input_items.list):
        with pytest.raises(openai.NotFoundError) as e:
            call(theirs.id)
        assert e.value.body["message"] == f"Response with id '{theirs.id}' not found."
    assert mock.count() == n
    assert duo_only.responses.retrieve(mine.id).output_text == "echo: yours"
    # Chaining onto another model's response is refused for its model, as any request.
    with pytest.raises(openai.PermissionDeniedError):
        duo_only.responses.create(model="solo", input="again", previous_response_id=theirs.id)
    assert master.responses.retrieve(theirs.id).model == "solo"


def test_an_unremembered_previous_id_goes_where_the_balancer_says(gw, mock):
    # OpenAI answers for an id no deployment of the gateway made: its 404 is the request's error,
    # relayed, and cools no deployment down (three in a row would cool both of the group's, and
    # the next request would find none available).
    client = sdk(gw)
    for i in range(3):
        with pytest.raises(openai.NotFoundError) as e:
            client.responses.create(model="duo", input="hi", previous_response_id=f"resp_made_elsewhere{i}")
        assert e.value.code == "previous_response_not_found" and f"resp_made_elsewhere{i}" in e.value.message
        assert mock.last().json["previous_response_id"] == f"resp_made_elsewhere{i}"
    assert mock.count() == 3, "never retried on the other deployment"
    assert client.responses.create(model="duo", input="still serving").output_text == "echo: still serving"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="solo", input="hi", previous_response_id="resp_made_elsewhere")
