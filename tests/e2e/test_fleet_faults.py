"""Fleet mode through its faults, against a real Redis behind webdis: a replica that restarts, a
replica killed with SIGKILL, and Redis itself killed and restarted, with `failure_mode: local` and
`closed`. The client is the official OpenAI SDK. Run with the form TOLLGATE_FILTER names."""

import hashlib
import time

import openai
import pytest

from conftest import MASTER_KEY
from harness import Envoy
from mocks.base import Json
from mocks.openai_mock import OPENAI_KEY, OpenAIMock
from redis_stack import Stack

PRICE_IN, PRICE_OUT = 1e-6, 2e-6  # whole micro-dollars per token
MAX_TOKENS = 10
PROMPT = "fleet fault request"
TICK_MS = 100
SYNC_TIMEOUT_MS = 300
REPLICA_TTL_MS = 1500
# What a lease may be used for without the store confirming it (replica_ttl_ms - sync_timeout_ms).
LEASE_MAX_AGE_S = (REPLICA_TTL_MS - SYNC_TIMEOUT_MS) / 1000

KEYS = {
    "KEY_SMALL": "sk-fault-small-0a1b2c3d4e",
    "KEY_KILL": "sk-fault-kill-5f6a7b8c9d",
    "KEY_OUTAGE": "sk-fault-outage-0e1f2a3b4c",
    "KEY_CLOSED": "sk-fault-closed-5d6e7f8a9b",
}


def messages():
    return [{"role": "user", "content": PROMPT}]


def answer(req):
    return Json({"id": "chatcmpl-f", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 40, "completion_tokens": MAX_TOKENS, "total_tokens": 40 + MAX_TOKENS}})


# What one request costs (less than it reserves: its body's bytes as prompt tokens).
COST_MICRO = 40 * 1 + MAX_TOKENS * 2


def party(key):
    return "key." + hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def stack():
    with Stack() as s:
        yield s


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


def config(stack, provider, failure_mode="local"):
    return {
        "model_list": [{"model_name": "gpt", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_base": f"{provider.base_url}/v1", "api_key": "os.environ/OPENAI_API_KEY",
            "input_cost_per_token": PRICE_IN, "output_cost_per_token": PRICE_OUT}}],
        "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"},
        "tollgate_settings": {"store": {
            "url": stack.webdis.url, "auth": "os.environ/TOLLGATE_STORE_AUTH", "failure_mode": failure_mode,
            "tick_ms": TICK_MS, "sync_timeout_ms": SYNC_TIMEOUT_MS, "call_timeout_ms": 200,
            "replica_ttl_ms": REPLICA_TTL_MS}},
        "keys": [
            {"key": "os.environ/KEY_SMALL", "key_alias": "small", "max_budget": 5 * COST_MICRO / 1e6},
            {"key": "os.environ/KEY_KILL", "key_alias": "kill", "max_budget": 1000.0},
            {"key": "os.environ/KEY_OUTAGE", "key_alias": "outage", "max_budget": 1000.0, "rpm_limit": 10_000},
            {"key": "os.environ/KEY_CLOSED", "key_alias": "closed", "max_budget": 1000.0},
        ],
    }


def envoy(stack, provider, failure_mode="local"):
    env = {"TOLLGATE_MASTER_KEY": MASTER_KEY, "TOLLGATE_STORE_AUTH": stack.webdis.auth,
           "OPENAI_API_KEY": OPENAI_KEY, **KEYS}
    return Envoy(config(stack, provider, failure_mode), env=env, concurrency=2)


def client(gw, key):
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=key, max_retries=0, timeout=30)


def ask(gw, key):
    """One chat completion; its HTTP status (and the error's body when refused)."""
    try:
        client(gw, key).chat.completions.create(model="gpt", messages=messages(), max_tokens=MAX_TOKENS)
        return 200, None
    except openai.APIStatusError as e:
        return e.status_code, e


def redis_party(stack, key):
    flat = stack.redis.command("HGETALL", "tg:p:{" + party(key) + "}") or []
    return {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}


def wait_for(what, predicate, timeout=10):
    deadline = time.time() + timeout
    while True:
        value = what()
        if predicate(value) or time.time() > deadline:
            return value
        time.sleep(0.05)


def test_a_restarted_replica_knows_what_the_fleet_spent(stack, provider):
    key = KEYS["KEY_SMALL"]
    with envoy(stack, provider) as first:
        statuses = [ask(first, key)[0] for _ in range(8)]
        # Each request reserves its worst case (more than it costs): the budget admits a few.
        admitted = statuses.count(200)
        assert admitted >= 2 and statuses == [200] * admitted + [429] * (8 - admitted), statuses
        spend = wait_for(lambda: redis_party(stack, key).get("spend", 0), lambda s: s == admitted * COST_MICRO)
        assert spend == admitted * COST_MICRO
    # A new process (a deploy): its own counters start empty, the fleet's do not.
    with envoy(stack, provider) as second:
        status, err = ask(second, key)
        assert status == 429, status
        assert err.body["code"] == "budget_exceeded", err.body
    assert provider.count() == admitted


def test_a_killed_replicas_lease_returns_to_the_fleet(stack, provider):
    key = KEYS["KEY_KILL"]
    with envoy(stack, provider) as survivor:
        victim = envoy(stack, provider)
        victim.start()
        try:
            for _ in range(30):
                assert ask(victim, key)[0] == 200
            party_state = wait_for(lambda: redis_party(stack, key),
                                   lambda p: p.get("spend") == 30 * COST_MICRO and p.get("leased", 0) > 0)
            assert party_state.get("spend") == 30 * COST_MICRO, party_state
            assert party_state.get("leased", 0) > 0, party_state
            victim.proc.kill()  # SIGKILL: no drain, no last sync
            victim.proc.wait(timeout=10)
        finally:
            victim.stop()
        # The survivor's syncs reclaim the dead replica's lease once its heartbeat expires.
        start = time.time()
        party_state = wait_for(lambda: redis_party(stack, key), lambda p: p.get("leased", 0) == 0)
        took = time.time() - start
        assert party_state.get("leased", 0) == 0, party_state
        assert took < (REPLICA_TTL_MS + 4 * TICK_MS) / 1000 + 1, took
        assert party_state["spend"] == 30 * COST_MICRO
        # The survivor goes on serving the key.
        assert ask(survivor, key)[0] == 200


def test_redis_down_local_serves_and_reports_the_spend_after_closed_refuses(stack, provider):
    local_key, closed_key = KEYS["KEY_OUTAGE"], KEYS["KEY_CLOSED"]
    with envoy(stack, provider, "local") as local, envoy(stack, provider, "closed") as closed:
        for _ in range(10):
            assert ask(local, local_key)[0] == 200
            assert ask(closed, closed_key)[0] == 200
        wait_for(lambda: redis_party(stack, local_key).get("spend", 0), lambda s: s == 10 * COST_MICRO)
        wait_for(lambda: redis_party(stack, closed_key).get("spend", 0), lambda s: s == 10 * COST_MICRO)

        stack.redis.kill()  # SIGKILL; the AOF has every write Redis acknowledged
        try:
            time.sleep(LEASE_MAX_AGE_S + 0.3)  # the leases the store granted may now be reclaimed
            # local: this replica's own counters; no request waits for the store.
            began = time.time()
            for _ in range(20):
                assert ask(local, local_key)[0] == 200
            assert time.time() - began < 20 * 0.2, "requests waited for a store known to be down"
            # closed: virtual keys are refused in OpenAI's shape; the master key is not.
            status, err = ask(closed, closed_key)
            assert status == 503, status
            assert err.code == "store_unavailable", err.body
            assert err.response.headers.get("retry-after") == "1"
            assert ask(closed, MASTER_KEY)[0] == 200
            health = closed.stats("tollgate.store_up")
            assert "store_up: 0" in health, health
        finally:
            stack.redis.start()

        # Back: the spend settled during the outage reaches Redis, exactly once.
        spend = wait_for(lambda: redis_party(stack, local_key).get("spend", 0), lambda s: s == 30 * COST_MICRO,
                         timeout=15)
        assert spend == 30 * COST_MICRO
        assert wait_for(lambda: ask(closed, closed_key)[0], lambda s: s == 200, timeout=15) == 200
        assert redis_party(stack, closed_key)["spend"] in (10 * COST_MICRO, 11 * COST_MICRO)
        assert wait_for(lambda: redis_party(stack, closed_key)["spend"], lambda s: s == 11 * COST_MICRO) \
            == 11 * COST_MICRO
