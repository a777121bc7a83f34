"""Keys across three Envoy replicas (two workers each) sharing one Redis behind webdis: a key made,
changed, blocked or deleted through any replica's admin API holds on every replica (made: at its
first use anywhere; changed: within 1 s), aliases and custom keys stay unique across the fleet,
and a replica killed with SIGKILL and started again still knows every key. The OpenAI SDK is the
client. Run with the form TOLLGATE_FILTER names."""

import hashlib
import json
import time

import openai
import pytest

from conftest import MASTER_KEY
from fleet_common import provider, stack, started  # noqa: F401 (fixtures)
from harness import Envoy, http
from mocks.base import Json
from mocks.openai_mock import OPENAI_KEY

TICK_MS = 100
CONFIG_KEY = "sk-fleet-config-9a8b7c6d5e"


def answer(req):
    return Json({"id": "chatcmpl-k", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}})


@pytest.fixture(autouse=True)
def _reset(provider):
    provider.reset()
    provider.forced = answer
    yield


def config(stack, provider):
    return {
        "model_list": [{"model_name": "gpt", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_base": f"{provider.base_url}/v1", "api_key": "os.environ/OPENAI_API_KEY",
            "input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}}],
        "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"},
        "tollgate_settings": {"store": {"url": stack.webdis.url, "auth": "os.environ/TOLLGATE_STORE_AUTH",
                                        "tick_ms": TICK_MS, "replica_ttl_ms": 2000}},
        "keys": [{"key": "os.environ/CONFIG_KEY", "key_alias": "fleet-config"}],
    }


def replica(stack, provider):
    env = {"TOLLGATE_MASTER_KEY": MASTER_KEY, "TOLLGATE_STORE_AUTH": stack.webdis.auth,
           "OPENAI_API_KEY": OPENAI_KEY, "CONFIG_KEY": CONFIG_KEY}
    return Envoy(config(stack, provider), env=env, concurrency=2)


@pytest.fixture(scope="module")
def fleet(stack, provider):
    envoys = [replica(stack, provider) for _ in range(3)]
    with started(envoys):
        yield envoys


def admin(gw, path, payload=None):
    """A key-management call with the master key: (status, JSON body)."""
    method = "GET" if payload is None else "POST"
    data = None if payload is None else json.dumps(payload).encode()
    status, _, body = http(method, f"{gw.base_url}{path}", data,
                           {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"})
    return status, json.loads(body)


def ask(gw, key):
    """One chat completion through the OpenAI SDK: its status and, when refused, the error's code."""
    client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=key, max_retries=0, timeout=30)
    try:
        client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
        return 200, None
    except openai.APIStatusError as e:
        return e.status_code, (e.body or {}).get("code")


def until(what, want, timeout):
    """Polls `what()` until it equals `want` or `timeout` seconds passed: (value, seconds taken)."""
    start = time.time()
    while True:
        value = what()
        took = time.time() - start
        if value == want or took > timeout:
            return value, took
        time.sleep(0.02)


def everywhere(fleet, key):
    return [ask(gw, key) for gw in fleet]


def test_a_key_made_on_one_replica_works_at_once_on_every_replica(fleet, provider):
    status, made = admin(fleet[0], "/key/generate", {"key_alias": "made-on-a", "max_budget": 5.0})
    assert status == 200, made
    key = made["key"]
    # Its first use anywhere: no wait for a sync.
    assert everywhere(fleet[1:], key) == [(200, None)] * 2
    assert ask(fleet[0], key) == (200, None)
    assert provider.count() == 3
    # /key/info on a replica that never saw it.
    other = admin(fleet[2], f"/key/info?key={made['token']}")
    assert other[0] == 200, other
    assert other[1]["info"]["key_alias"] == "made-on-a"
    # A key nobody made is refused everywhere, as invalid.
    assert everywhere(fleet, "sk-never-made-0000000000") == [(401, "invalid_api_key")] * 3


def test_a_key_reads_its_own_fleet_info_on_a_replica_that_never_saw_it(fleet):
    status, made = admin(fleet[0], "/key/generate", {"key_alias": "reads-itself", "max_budget": 5.0})
    assert status == 200, made
    assert ask(fleet[1], made["key"]) == (200, None)
    status, _, body = http("GET", f"{fleet[2].base_url}/key/info", None, {"authorization": f"Bearer {made['key']}"})
    assert status == 200, body
    info = json.loads(body)["info"]
    assert info["key_alias"] == "reads-itself" and info["spend_scope"] == "fleet"
    status, _, body = http("GET", f"{fleet[2].base_url}/key/info?key={MASTER_KEY}", None,
                           {"authorization": f"Bearer {made['key']}"})
    assert status == 403, body


def test_block_update_and_delete_reach_every_replica_within_a_second(fleet):
    status, made = admin(fleet[0], "/key/generate", {"key_alias": "changing"})
    assert status == 200, made
    key = made["key"]
    assert everywhere(fleet, key) == [(200, None)] * 3  # every replica holds a copy now

    status, out = admin(fleet[1], "/key/block", {"key": key})
    assert status == 200 and out["blocked"] is True, out
    for gw in (fleet[0], fleet[2]):
        seen, took = until(lambda: ask(gw, key), (403, "key_blocked"), timeout=3)
        assert seen == (403, "key_blocked") and took < 1.0, (seen, took)

    status, out = admin(fleet[2], "/key/unblock", {"key": key})
    assert status == 200 and out["blocked"] is False, out
    for gw in (fleet[0], fleet[1]):
        seen, took = until(lambda: ask(gw, key), (200, None), timeout=3)
        assert seen == (200, None) and took < 1.0, (seen, took)

    status, out = admin(fleet[2], "/key/update", {"key": key, "key_alias": "changed"})
    assert status == 200 and out["key_alias"] == "changed", out
    seen, took = until(lambda: admin(fleet[0], f"/key/info?key={made['token']}")[1]["info"]["key_alias"],
                       "changed", timeout=3)
    assert seen == "changed" and took < 1.0, (seen, took)

    status, out = admin(fleet[0], "/key/delete", {"keys": [key]})
    assert status == 200 and out["deleted_keys"] == [made["token"]], out
    for gw in (fleet[1], fleet[2]):
        seen, took = until(lambda: ask(gw, key), (401, "invalid_api_key"), timeout=3)
        assert seen == (401, "invalid_api_key") and took < 1.0, (seen, took)


def test_aliases_and_custom_keys_are_unique_across_the_fleet(fleet):
    status, made = admin(fleet[0], "/key/generate", {"key_alias": "only-one"})
    assert status == 200, made
    status, out = admin(fleet[1], "/key/generate", {"key_alias": "only-one"})
    assert status == 400 and out["error"]["code"] == "key_alias_exists", out
    custom = "sk-custom-fleet-key-1234567"
    assert admin(fleet[1], "/key/generate", {"key": custom})[0] == 200
    status, out = admin(fleet[2], "/key/generate", {"key": custom})
    assert status == 400 and out["error"]["code"] == "key_exists", out
    # The refused calls changed nothing: the custom key works on the replica that refused it.
    assert ask(fleet[2], custom) == (200, None)


def test_a_config_key_blocked_on_one_replica_is_blocked_on_all(fleet):
    assert everywhere(fleet, CONFIG_KEY) == [(200, None)] * 3
    assert admin(fleet[2], "/key/block", {"key": CONFIG_KEY})[0] == 200
    for gw in fleet[:2]:
        seen, took = until(lambda: ask(gw, CONFIG_KEY), (403, "key_blocked"), timeout=3)
        assert seen == (403, "key_blocked") and took < 1.0, (seen, took)
    assert admin(fleet[0], "/key/unblock", {"key": CONFIG_KEY})[0] == 200
    for gw in fleet:
        seen, _ = until(lambda: ask(gw, CONFIG_KEY), (200, None), timeout=3)
        assert seen == (200, None)


def test_a_replica_killed_and_started_again_knows_every_key(stack, provider, fleet):
    victim = replica(stack, provider)
    victim.start()
    try:
        status, made = admin(victim, "/key/generate", {"key_alias": "outlives-its-replica"})
        assert status == 200, made
        assert admin(victim, "/key/block", {"key": CONFIG_KEY})[0] == 200
        victim.proc.kill()  # SIGKILL: no drain, no last sync
        victim.proc.wait(timeout=10)
    finally:
        victim.stop()
    again = replica(stack, provider)
    again.start()
    try:
        # A new process: its shared data is empty, Redis is not.
        assert ask(again, made["key"]) == (200, None)
        assert ask(again, CONFIG_KEY) == (403, "key_blocked")
        assert ask(fleet[0], made["key"]) == (200, None)
        assert admin(again, "/key/unblock", {"key": CONFIG_KEY})[0] == 200
    finally:
        again.stop()
    for gw in fleet:
        seen, _ = until(lambda: ask(gw, CONFIG_KEY), (200, None), timeout=3)
        assert seen == (200, None)


def test_keys_live_in_redis_as_the_admin_api_wrote_them(fleet, stack):
    status, made = admin(fleet[1], "/key/generate", {"key_alias": "in-redis", "max_budget": 2.5})
    assert status == 200, made
    record = json.loads(stack.redis.command("HGET", f"tg:k:{made['token']}", "record"))
    assert record["token"] == hashlib.sha256(made["key"].encode()).hexdigest()
    assert record["max_budget"] == 2.5 and record["key_alias"] == "in-redis"
    assert made["key"] not in json.dumps(record)  # only the hash is kept
    assert stack.redis.command("GET", "tg:alias:in-redis") == made["token"]


def test_spend_logs_and_key_spend_are_the_fleets(fleet, stack):
    status, made = admin(fleet[0], "/key/generate", {"key_alias": "logged", "max_budget": 1.0})
    assert status == 200, made
    key, token = made["key"], made["token"]
    for gw in fleet:
        for _ in range(3):
            assert ask(gw, key) == (200, None)
    cost_micro = 5 * 1 + 1 * 2  # the mock's usage at $1/$2 per million tokens

    def logs(query=f"api_key={key}"):
        status, body = admin(fleet[2], f"/spend/logs?{query}")
        assert status == 200, body
        return body

    got, took = until(lambda: len(logs()), 9, timeout=5)
    assert got == 9, (got, logs())
    records = logs()
    assert len({r["request_id"] for r in records}) == 9 and all(r["request_id"] for r in records)
    for r in records:
        assert r["api_key"] == token and r["key_alias"] == "logged"
        assert (r["model_group"], r["custom_llm_provider"], r["call_type"]) == ("gpt", "openai", "chat")
        assert (r["prompt_tokens"], r["completion_tokens"], r["total_tokens"]) == (5, 1, 6)
        assert r["spend_micro"] == cost_micro and abs(r["spend"] - cost_micro / 1e6) < 1e-12
        assert (r["status"], r["status_code"]) == ("success", 200)
        assert r["startTime"] <= r["endTime"]
        assert key not in json.dumps(r)
    # The hash filters too; dates bound the records (today: all; a day long past: none).
    assert len(logs(f"api_key={token}")) == 9
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert len(logs(f"api_key={key}&start_date={today}&end_date={today}")) == 9
    assert logs(f"api_key={key}&end_date=2020-01-01") == []
    assert admin(fleet[0], "/spend/logs?start_date=soon")[0] == 400
    # Only the master key reads them.
    status, _, _ = http("GET", f"{fleet[0].base_url}/spend/logs", None, {"authorization": f"Bearer {key}"})
    assert status == 403
    # Every replica's /key/info shows the fleet's spend of the key, not its own third of it.
    for gw in fleet:
        info, _ = until(lambda: admin(gw, f"/key/info?key={token}")[1]["info"]["spend"], 9 * cost_micro / 1e6,
                        timeout=3)
        assert abs(info - 9 * cost_micro / 1e6) < 1e-12, info


def test_the_access_log_line_carries_the_spend_record(stack, provider, tmp_path):
    log_path = str(tmp_path / "access.log")
    cfg = config(stack, provider)
    cfg["tollgate_settings"]["access_log"] = log_path
    env = {"TOLLGATE_MASTER_KEY": MASTER_KEY, "TOLLGATE_STORE_AUTH": stack.webdis.auth,
           "OPENAI_API_KEY": OPENAI_KEY, "CONFIG_KEY": CONFIG_KEY}
    # Envoy writes a file log every 10 s unless told otherwise.
    with Envoy(cfg, env=env, concurrency=2, extra_args=["--file-flush-interval-msec", "200"]) as gw:
        status, made = admin(gw, "/key/generate", {"key_alias": "access-logged"})
        assert status == 200, made
        assert ask(gw, made["key"]) == (200, None)

        def lines():
            try:
                with open(log_path) as f:
                    return [json.loads(line) for line in f if "/v1/chat/completions" in line]
            except FileNotFoundError:
                return []

        found, _ = until(lambda: len(lines()), 1, timeout=5)
        assert found == 1, lines()
        line = lines()[0]
        assert line["response_code"] == 200 and line["method"] == "POST"
        assert (line["key_alias"], line["key_hash"]) == ("access-logged", made["token"])
        assert (line["model_group"], line["model_id"], line["provider"]) == ("gpt", "gpt.0", "openai")
        assert [int(line[f]) for f in ("prompt_tokens", "completion_tokens", "cached_tokens")] == [5, 1, 0]
        assert line["cost"] == "0.000007" and line["status"] == "success"
        # The same request in /spend/logs.
        until(lambda: len(admin(gw, f"/spend/logs?api_key={made['token']}")[1]), 1, timeout=5)
        logged = admin(gw, f"/spend/logs?api_key={made['token']}")[1]
        assert [r["request_id"] for r in logged] == [line["request_id"]]
        assert made["key"] not in open(log_path).read()
