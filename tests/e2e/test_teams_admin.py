"""Teams made at run time (LiteLLM's /team/new, /team/update, /team/info, /team/list, /team/block,
/team/unblock, /team/delete), through one real Envoy with two workers and no shared store: their
keys, budgets, rate limits, models and blocks act like a config team's, on every worker. The
OpenAI SDK is the client of the model calls. Run with the form TOLLGATE_FILTER names."""

import json
import time

import openai
import pytest

from conftest import MASTER_KEY
from harness import Envoy, http
from mocks.openai_mock import OPENAI_KEY, OpenAIMock
from test_fleet import COST_MICRO, PRICE_IN, PRICE_OUT, answer, body

CONFIG_KEY = "sk-teams-config-key-1a2b3c"


@pytest.fixture(scope="module")
def provider():
    m = OpenAIMock().start()
    yield m
    m.stop()


@pytest.fixture(autouse=True)
def _reset(provider):
    provider.reset()
    provider.forced = answer
    yield


@pytest.fixture(scope="module")
def gw(provider):
    params = {"api_base": f"{provider.base_url}/v1", "api_key": "os.environ/OPENAI_API_KEY",
              "input_cost_per_token": PRICE_IN, "output_cost_per_token": PRICE_OUT}
    config = {
        "model_list": [
            {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o-mini", **params}},
            {"model_name": "gpt-big", "litellm_params": {"model": "openai/gpt-4o", **params}},
        ],
        "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"},
        "teams": [{"team_id": "search", "max_budget": 100.0}],
        "keys": [{"key": "os.environ/CONFIG_KEY", "key_alias": "cfg", "team_id": "search"}],
    }
    env = {"TOLLGATE_MASTER_KEY": MASTER_KEY, "OPENAI_API_KEY": OPENAI_KEY, "CONFIG_KEY": CONFIG_KEY}
    with Envoy(config, env=env, concurrency=2) as envoy:
        yield envoy


def admin(gw, path, payload=None, key=MASTER_KEY):
    """A management call: (status, JSON body)."""
    method = "GET" if payload is None else "POST"
    data = None if payload is None else json.dumps(payload).encode()
    status, _, raw = http(method, f"{gw.base_url}{path}", data,
                          {"authorization": f"Bearer {key}", "content-type": "application/json"})
    return status, json.loads(raw)


def ask(gw, key, model="gpt"):
    """One chat completion through the OpenAI SDK: its status and, when refused, the error's code."""
    client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=key, max_retries=0, timeout=30)
    try:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        return 200, None
    except openai.APIStatusError as e:
        return e.status_code, (e.body or {}).get("code")


def post(gw, key, i=0):
    """A chat request of a known cost (see test_fleet.body)."""
    status, _, raw = http("POST", f"{gw.base_url}/v1/chat/completions", body(i),
                          {"authorization": f"Bearer {key}", "content-type": "application/json"})
    return status, json.loads(raw)


def test_a_team_made_at_run_time_in_litellm_shapes(gw, provider):
    status, team = admin(gw, "/team/new", {"team_id": "ml", "team_alias": "ML", "max_budget": 10.0,
                                           "budget_duration": "30d", "models": ["gpt"],
                                           "members_with_roles": [{"role": "admin", "user_id": "u1"}],
                                           "metadata": {"cost_center": "7"}})
    assert status == 200, team
    assert (team["team_id"], team["team_alias"], team["max_budget"], team["models"]) == ("ml", "ML", 10.0, ["gpt"])
    assert team["blocked"] is False and team["spend"] == 0.0
    status, made = admin(gw, "/key/generate", {"team_id": "ml", "key_alias": "ml-key"})
    assert status == 200 and made["team_id"] == "ml", made
    key = made["key"]
    for _ in range(4):  # both workers
        assert ask(gw, key) == (200, None)
    # The team's models list holds for its keys.
    assert ask(gw, key, "gpt-big") == (403, "model_not_allowed")
    assert provider.count() == 4

    status, info = admin(gw, "/team/info?team_id=ml")
    assert status == 200, info
    assert info["team_id"] == "ml" and info["team_info"]["team_alias"] == "ML"
    assert info["team_info"]["spend"] > 0
    assert [k["key_alias"] for k in info["keys"]] == ["ml-key"]
    status, teams = admin(gw, "/team/list")
    assert status == 200 and sorted(t["team_id"] for t in teams) == ["ml", "search"], teams

    status, out = admin(gw, "/team/update", {"team_id": "ml", "models": ["gpt", "gpt-big"]})
    assert status == 200 and out["team_id"] == "ml" and out["data"]["models"] == ["gpt", "gpt-big"], out
    assert ask(gw, key, "gpt-big") == (200, None)

    status, out = admin(gw, "/team/block", {"team_id": "ml"})
    assert status == 200 and out["blocked"] is True, out
    assert [ask(gw, key) for _ in range(4)] == [(403, "team_blocked")] * 4
    status, out = admin(gw, "/team/unblock", {"team_id": "ml"})
    assert status == 200 and out["blocked"] is False, out
    assert ask(gw, key) == (200, None)

    # Deleting a team deletes its keys, as in LiteLLM.
    status, out = admin(gw, "/team/delete", {"team_ids": ["ml"]})
    assert status == 200, out
    assert out["deleted_teams"] == ["ml"] and out["deleted_keys"] == [made["token"]]
    assert [ask(gw, key) for _ in range(4)] == [(401, "invalid_api_key")] * 4
    assert admin(gw, "/team/info?team_id=ml")[0] == 404
    assert admin(gw, f"/key/info?key={key}")[0] == 404


def test_a_run_time_team_budget_and_rpm_hold_for_all_its_keys(gw, provider):
    assert admin(gw, "/team/new", {"team_id": "budget4", "max_budget": 4 * COST_MICRO / 1e6})[0] == 200
    keys = [admin(gw, "/key/generate", {"team_id": "budget4"})[1]["key"] for _ in range(2)]
    results = [post(gw, keys[i % 2], i) for i in range(6)]
    assert [s for s, _ in results] == [200] * 4 + [429] * 2, results
    assert results[-1][1]["error"]["code"] == "budget_exceeded"
    assert "team" in results[-1][1]["error"]["message"]
    assert provider.count() == 4
    info = admin(gw, "/team/info?team_id=budget4")[1]
    assert info["team_info"]["spend"] == pytest.approx(4 * COST_MICRO / 1e6)

    assert admin(gw, "/team/new", {"team_id": "rpm3", "rpm_limit": 3})[0] == 200
    key = admin(gw, "/key/generate", {"team_id": "rpm3"})[1]["key"]
    t0 = time.time()
    statuses = [ask(gw, key)[0] for _ in range(5)]
    if int(t0 // 60) == int(time.time() // 60):  # one minute of the limit (else it started over)
        assert statuses == [200] * 3 + [429] * 2, statuses


def test_config_teams_and_bad_calls(gw):
    # A config team's id is taken; the master key alone manages teams.
    status, out = admin(gw, "/team/new", {"team_id": "search"})
    assert status == 400 and out["error"]["code"] == "team_exists", out
    status, out = admin(gw, "/team/new", {"team_alias": "x"}, key=CONFIG_KEY)
    assert status == 403, out
    # Updating a config team overrides it, as /key/update does a config key; blocking it refuses
    # the config's keys too.
    status, out = admin(gw, "/team/update", {"team_id": "search", "rpm_limit": 1000})
    assert status == 200 and out["data"]["max_budget"] == 100.0 and out["data"]["rpm_limit"] == 1000, out
    assert admin(gw, "/team/block", {"team_id": "search"})[0] == 200
    assert ask(gw, CONFIG_KEY) == (403, "team_blocked")
    assert admin(gw, "/team/unblock", {"team_id": "search"})[0] == 200
    assert ask(gw, CONFIG_KEY) == (200, None)

    status, out = admin(gw, "/key/generate", {"team_id": "no-such-team"})
    assert status == 400 and out["error"]["code"] == "team_not_found", out
    status, out = admin(gw, "/team/update", {"team_id": "no-such-team", "rpm_limit": 1})
    assert status == 404 and out["error"]["code"] == "team_not_found", out
    status, out = admin(gw, "/team/new", {"team_id": "bad id"})
    assert status == 400 and out["error"]["param"] == "team_id", out
    status, out = admin(gw, "/team/new", {"model_aliases": {"a": "b"}})
    assert status == 400 and out["error"]["param"] == "model_aliases", out
    status, out = admin(gw, "/team/new", {})
    assert status == 200 and len(out["team_id"]) == 36, out  # a UUID, as LiteLLM makes
    status, _, _ = http("GET", f"{gw.base_url}/team/new", None, {"authorization": f"Bearer {MASTER_KEY}"})
    assert status == 405
