"""Teams made at run time across three Envoy replicas (two workers each) sharing one Redis behind
webdis: a team made on one replica takes keys on another and works on a third; blocked, updated,
unblocked or deleted on any replica, it is so on every replica within 1 s; its budget holds across
the fleet; a replica started again knows it. The OpenAI SDK is the client of the model calls. Run
with the form TOLLGATE_FILTER names."""

import concurrent.futures
import time

import pytest

from fleet_common import provider, stack, started  # noqa: F401 (fixtures)
from harness import http
from test_fleet import COST_MICRO, answer as costed_answer, body
from test_fleet_keys import admin, ask, replica, until


@pytest.fixture(autouse=True)
def _reset(provider):
    provider.reset()
    provider.forced = costed_answer
    yield


@pytest.fixture(scope="module")
def fleet(stack, provider):
    envoys = [replica(stack, provider) for _ in range(3)]
    with started(envoys):
        yield envoys


def test_a_team_made_on_one_replica_holds_on_every_replica(fleet):
    status, team = admin(fleet[0], "/team/new", {"team_id": "fleet-ml", "team_alias": "ML", "models": ["gpt"]})
    assert status == 200, team
    # A replica that never saw the team gives it a key; a third serves the key at once.
    status, made = admin(fleet[1], "/key/generate", {"team_id": "fleet-ml"})
    assert status == 200 and made["team_id"] == "fleet-ml", made
    key = made["key"]
    assert [ask(gw, key) for gw in fleet] == [(200, None)] * 3
    status, info = admin(fleet[2], "/team/info?team_id=fleet-ml")
    assert status == 200 and info["team_info"]["team_alias"] == "ML", info
    assert info["team_info"]["spend_scope"] == "fleet"
    # Its id is taken fleet-wide.
    status, out = admin(fleet[2], "/team/new", {"team_id": "fleet-ml"})
    assert status == 400 and out["error"]["code"] == "team_exists", out

    status, out = admin(fleet[2], "/team/block", {"team_id": "fleet-ml"})
    assert status == 200 and out["blocked"] is True, out
    for gw in fleet[:2]:
        seen, took = until(lambda: ask(gw, key), (403, "team_blocked"), timeout=3)
        assert seen == (403, "team_blocked") and took < 1.0, (seen, took)
    assert admin(fleet[0], "/team/unblock", {"team_id": "fleet-ml"})[0] == 200
    for gw in fleet[1:]:
        seen, took = until(lambda: ask(gw, key), (200, None), timeout=3)
        assert seen == (200, None) and took < 1.0, (seen, took)

    # An update (the team's models) reaches the others too.
    status, out = admin(fleet[1], "/team/update", {"team_id": "fleet-ml", "models": ["no-such-model-yet"]})
    assert status == 400, out  # models are checked against the config
    status, out = admin(fleet[1], "/team/update", {"team_id": "fleet-ml", "models": ["all-proxy-models"], "max_budget": 0.0})
    assert status == 200, out
    for gw in (fleet[0], fleet[2]):
        seen, took = until(lambda: ask(gw, key), (429, "budget_exceeded"), timeout=3)
        assert seen == (429, "budget_exceeded") and took < 1.0, (seen, took)

    # Deleted on one replica: its keys are refused everywhere, as deleted.
    status, out = admin(fleet[0], "/team/delete", {"team_ids": ["fleet-ml"]})
    assert status == 200 and out["deleted_teams"] == ["fleet-ml"], out
    for gw in fleet[1:]:
        seen, took = until(lambda: ask(gw, key), (401, "invalid_api_key"), timeout=3)
        assert seen == (401, "invalid_api_key") and took < 1.0, (seen, took)
    assert admin(fleet[2], "/team/info?team_id=fleet-ml")[0] == 404
    # Made again with the same id: a new team, without the old one's keys.
    assert admin(fleet[2], "/team/new", {"team_id": "fleet-ml"})[0] == 200
    assert [ask(gw, key) for gw in fleet] == [(401, "invalid_api_key")] * 3


def test_a_run_time_team_budget_holds_across_replicas(fleet, provider, stack):
    budget = 20 * COST_MICRO
    status, team = admin(fleet[0], "/team/new", {"team_id": "fleet-budget", "max_budget": budget / 1e6})
    assert status == 200, team
    keys = [admin(fleet[i], "/key/generate", {"team_id": "fleet-budget"})[1]["key"] for i in range(3)]

    def post(i):
        gw = fleet[i % 3]
        status, _, raw = http("POST", f"{gw.base_url}/v1/chat/completions", body(i),
                              {"authorization": f"Bearer {keys[(i // 3) % 3]}", "content-type": "application/json",
                               "connection": "close"})
        return status, raw

    with concurrent.futures.ThreadPoolExecutor(48) as ex:
        results = list(ex.map(post, range(300)))
    statuses = [s for s, _ in results]
    admitted = statuses.count(200)
    assert set(statuses) <= {200, 429}, statuses
    assert 19 <= admitted <= 21, admitted
    assert all(b'"budget_exceeded"' in raw and b"team" in raw for s, raw in results if s == 429)
    assert provider.count() == admitted

    def fleet_spend():
        return round(admin(fleet[2], "/team/info?team_id=fleet-budget")[1]["team_info"]["spend"] * 1e6)

    spend, _ = until(fleet_spend, admitted * COST_MICRO, timeout=5)
    assert spend == admitted * COST_MICRO
    assert spend <= budget + COST_MICRO


def test_a_replica_killed_and_started_again_knows_the_teams_made_before(fleet, stack, provider):
    victim = replica(stack, provider)
    victim.start()
    try:
        assert admin(victim, "/team/new", {"team_id": "fleet-durable", "rpm_limit": 1000})[0] == 200
        key = admin(victim, "/key/generate", {"team_id": "fleet-durable"})[1]["key"]
        assert admin(victim, "/team/block", {"team_id": "fleet-durable"})[0] == 200
        victim.proc.kill()  # SIGKILL: no drain, no last sync
        victim.proc.wait(timeout=10)
    finally:
        victim.stop()
    again = replica(stack, provider)
    again.start()
    try:
        # A new process: its shared data is empty, Redis is not.
        assert ask(again, key) == (403, "team_blocked")
        status, info = admin(again, "/team/info?team_id=fleet-durable")
        assert status == 200 and info["team_info"]["rpm_limit"] == 1000 and info["team_info"]["blocked"], info
        assert admin(again, "/team/unblock", {"team_id": "fleet-durable"})[0] == 200
    finally:
        again.stop()
    for gw in fleet:
        seen, _ = until(lambda: ask(gw, key), (200, None), timeout=3)
        assert seen == (200, None)
