"""Fleet mode through its faults, against a real Redis behind webdis: a replica that restarts, a
replica killed with SIGKILL, and Redis itself killed and restarted, with `failure_mode: local` and
`closed`. The client is the official OpenAI SDK. Run with the form TOLLGATE_FILTER names."""

import concurrent.futures
import hashlib
import threading
import time
import urllib.request

import openai
import pytest

from conftest import MASTER_KEY
from fleet_common import provider, stack  # noqa: F401 (fixtures)
from harness import Envoy
from mocks.base import Json, Stream, sse
from mocks.openai_mock import OPENAI_KEY

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
    "KEY_PARALLEL": "sk-fault-parallel-0c1d2e3f4a",
    "KEY_ROLLING": "sk-fault-rolling-5b6c7d8e9f",
}


def messages():
    return [{"role": "user", "content": PROMPT}]


def answer(req):
    return Json({"id": "chatcmpl-f", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": MAX_TOKENS,
                           "total_tokens": PROMPT_TOKENS + MAX_TOKENS}})


# What one request costs: less than it reserves (the gateway estimates PROMPT at 14 tokens).
PROMPT_TOKENS = 10
COST_MICRO = PROMPT_TOKENS * 1 + MAX_TOKENS * 2


def party(key):
    return "key." + hashlib.sha256(key.encode()).hexdigest()


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
            {"key": "os.environ/KEY_PARALLEL", "key_alias": "parallel", "max_budget": 1000.0,
             "max_parallel_requests": 2},
            {"key": "os.environ/KEY_ROLLING", "key_alias": "rolling", "max_budget": 1000.0},
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


def slow_stream(seconds):
    """An OpenAI stream that takes about `seconds` (usage in its last chunk)."""
    base = {"id": "chatcmpl-slow", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini"}
    parts = 20
    events = [dict(base, choices=[{"index": 0, "delta": {"content": "x"}, "finish_reason": None}])
              for _ in range(parts)]
    events.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    events.append(dict(base, choices=[], usage={"prompt_tokens": 40, "completion_tokens": MAX_TOKENS,
                                                "total_tokens": 40 + MAX_TOKENS}))
    return Stream(sse(events) + [b"data: [DONE]\n\n"], delay=seconds / parts)


def test_kill_9_mid_streams_returns_the_parallel_slots(stack, provider):
    """A replica killed while it streams: the fleet-wide parallel slots its streams held come back
    once the store counts it dead (replica_ttl_ms, then the next sync of any replica)."""
    key = KEYS["KEY_PARALLEL"]
    with envoy(stack, provider) as survivor:
        victim = envoy(stack, provider)
        victim.start()
        streams = []
        try:
            provider.forced = lambda req: slow_stream(30)

            def stream():
                try:
                    for _ in client(victim, key).chat.completions.create(
                            model="gpt", messages=messages(), max_tokens=MAX_TOKENS, stream=True):
                        pass
                except openai.APIError:
                    pass  # the victim dies under it

            streams = [threading.Thread(target=stream, daemon=True) for _ in range(2)]
            for t in streams:
                t.start()
            provider.wait_for(2)
            provider.forced = answer
            # Both slots are the victim's: no replica may start a third request.
            status, err = ask(survivor, key)
            assert status == 429 and err.code == "parallel_limit_exceeded", (status, err)
            victim.proc.kill()
            victim.proc.wait(timeout=10)
        finally:
            victim.stop()
        killed = time.time()
        assert wait_for(lambda: ask(survivor, key)[0], lambda s: s == 200, timeout=10) == 200
        took = time.time() - killed
        assert took < (REPLICA_TTL_MS + 4 * TICK_MS) / 1000 + 1, took
        # Only the survivor holds a lease now (its own slots, sized to its demand).
        leases = stack.redis.command("HGETALL", "tg:l:{" + party(key) + "}") or []
        assert len(leases) == 2, leases
        for t in streams:
            t.join(timeout=5)


def drain_and_stop(gw):
    """A graceful stop, as a preStop hook does it: drain the listeners, give the periodic job a
    tick and a sync timeout to carry what the replica settled, then SIGTERM."""
    req = urllib.request.Request(f"http://127.0.0.1:{gw.admin_port}/drain_listeners?graceful", method="POST")
    urllib.request.urlopen(req, timeout=5).read()
    time.sleep((TICK_MS + SYNC_TIMEOUT_MS) / 1000 + 0.2)
    gw.stop()


def test_a_rolling_restart_under_load_loses_no_spend(stack, provider):
    """Every replica restarted in turn while clients keep sending: the spend in Redis afterwards is
    exactly the sum of the requests' costs, nothing lost, nothing counted twice."""
    key = KEYS["KEY_ROLLING"]
    replicas = [envoy(stack, provider) for _ in range(3)]
    for r in replicas:
        r.start()
    up = list(replicas)
    lock = threading.Lock()
    busy = {}  # replica -> requests in flight
    done = threading.Event()
    statuses = []

    def client_loop(n):
        i = n
        while not done.is_set():
            with lock:
                if not up:
                    continue
                gw = up[i % len(up)]
                busy[gw] = busy.get(gw, 0) + 1
            try:
                statuses.append(ask(gw, key)[0])
            finally:
                with lock:
                    busy[gw] -= 1
            i += 1

    try:
        with concurrent.futures.ThreadPoolExecutor(6) as ex:
            loops = [ex.submit(client_loop, n) for n in range(6)]
            time.sleep(1.0)
            for k in range(len(replicas)):
                old = replicas[k]
                with lock:
                    up.remove(old)
                # Its clients move to the others; it finishes what it has in flight.
                assert wait_for(lambda: busy.get(old, 0), lambda b: b == 0, timeout=10) == 0
                drain_and_stop(old)
                new = envoy(stack, provider)
                new.start()
                replicas[k] = new
                with lock:
                    up.append(new)
                time.sleep(0.7)
            done.set()
            for f in loops:
                f.result()
        served = statuses.count(200)
        assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
        assert served > 50, served
        assert provider.count() == served
        spend = wait_for(lambda: redis_party(stack, key).get("spend", 0), lambda s: s == served * COST_MICRO)
        assert spend == served * COST_MICRO, (spend, served)
    finally:
        for r in replicas:
            r.stop()
