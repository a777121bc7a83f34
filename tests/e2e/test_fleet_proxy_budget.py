"""The proxy-wide budget (`litellm_settings.max_budget`) across two Envoy replicas (two workers
each) sharing one Redis behind webdis: requests of two keys and the master key, spread over both
replicas, stop at the one budget, and the spend settled reaches Redis exactly once. Run with the
form TOLLGATE_FILTER names."""

import concurrent.futures
import time

import pytest

from conftest import MASTER_KEY
from fleet_common import provider, stack, started  # noqa: F401 (fixtures)
from harness import Envoy, http
from mocks.openai_mock import OPENAI_KEY
from test_fleet import COST_MICRO, PRICE_IN, PRICE_OUT, TICK_MS, answer, body

KEYS = {"KEY_A": "sk-fleet-proxy-a-1a2b3c", "KEY_B": "sk-fleet-proxy-b-4d5e6f"}
BUDGET = 20 * COST_MICRO


@pytest.fixture(autouse=True)
def _reset(provider):
    provider.reset()
    provider.forced = answer
    yield


@pytest.fixture(scope="module")
def fleet(stack, provider):
    config = {
        "model_list": [{"model_name": "gpt", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_base": f"{provider.base_url}/v1", "api_key": "os.environ/OPENAI_API_KEY",
            "input_cost_per_token": PRICE_IN, "output_cost_per_token": PRICE_OUT}}],
        "litellm_settings": {"max_budget": BUDGET / 1e6},
        "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"},
        "tollgate_settings": {"store": {"url": stack.webdis.url, "auth": "os.environ/TOLLGATE_STORE_AUTH",
                                        "tick_ms": TICK_MS, "replica_ttl_ms": 2000}},
        "keys": [{"key": "os.environ/KEY_A", "key_alias": "a"}, {"key": "os.environ/KEY_B", "key_alias": "b"}],
    }
    env = {"TOLLGATE_MASTER_KEY": MASTER_KEY, "TOLLGATE_STORE_AUTH": stack.webdis.auth,
           "OPENAI_API_KEY": OPENAI_KEY, **KEYS}
    envoys = [Envoy(config, env=env, concurrency=2) for _ in range(2)]
    with started(envoys):
        yield envoys


def proxy_spend(stack):
    flat = stack.redis.command("HGETALL", "tg:p:{proxy.all}") or []
    return {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}.get("spend", 0)


def test_the_proxy_budget_holds_across_two_replicas(fleet, stack, provider):
    callers = [KEYS["KEY_A"], KEYS["KEY_B"], MASTER_KEY]

    def post(i):
        status, _, raw = http("POST", f"{fleet[i % 2].base_url}/v1/chat/completions", body(i),
                              {"authorization": f"Bearer {callers[i % 3]}", "content-type": "application/json",
                               "connection": "close"})
        return status, raw

    with concurrent.futures.ThreadPoolExecutor(48) as ex:
        results = list(ex.map(post, range(300)))
    statuses = [s for s, _ in results]
    admitted = statuses.count(200)
    assert set(statuses) <= {200, 429}, statuses
    assert 19 <= admitted <= 21, admitted
    assert all(b'"budget_exceeded"' in raw and b"proxy" in raw for s, raw in results if s == 429)
    assert provider.count() == admitted
    deadline = time.time() + 5
    while proxy_spend(stack) != admitted * COST_MICRO and time.time() < deadline:
        time.sleep(0.05)
    spend = proxy_spend(stack)
    assert spend == admitted * COST_MICRO
    assert spend <= BUDGET + COST_MICRO
