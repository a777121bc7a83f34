"""A deployment cooled down by one replica is skipped by all: three Envoy replicas sharing one
Redis behind webdis, a model group of two deployments, one of which answers 429. The OpenAI SDK
is the client. Run with the form TOLLGATE_FILTER names."""

import time

import openai
import pytest

from conftest import MASTER_KEY
from fleet_common import stack, started  # noqa: F401 (a fixture)
from harness import Envoy
from mocks.openai_mock import OPENAI_KEY, OpenAIMock, openai_error

TICK_MS = 100
COOLDOWN_S = 6


@pytest.fixture(scope="module")
def pair():
    ms = [OpenAIMock().start() for _ in range(2)]
    yield ms
    for m in ms:
        m.stop()


def deployment(mock, model_id):
    return {"model_name": "pool", "model_info": {"id": model_id},
            "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": f"{mock.base_url}/v1",
                               "api_key": "os.environ/OPENAI_API_KEY"}}


@pytest.fixture(scope="module")
def fleet(stack, pair):
    bad, good = pair
    config = {
        "model_list": [deployment(bad, "limited"), deployment(good, "spare")],
        "router_settings": {"allowed_fails": 1, "cooldown_time": COOLDOWN_S, "num_retries": 1},
        "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"},
        "tollgate_settings": {"store": {"url": stack.webdis.url, "auth": "os.environ/TOLLGATE_STORE_AUTH",
                                        "tick_ms": TICK_MS}},
    }
    env = {"TOLLGATE_MASTER_KEY": MASTER_KEY, "TOLLGATE_STORE_AUTH": stack.webdis.auth, "OPENAI_API_KEY": OPENAI_KEY}
    envoys = [Envoy(config, env=env, concurrency=2) for _ in range(3)]
    with started(envoys):
        yield envoys


def served_by(gw):
    """One chat completion; the deployment that served it (`x-tollgate-model-id`)."""
    client = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)
    raw = client.chat.completions.with_raw_response.create(
        model="pool", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    raw.parse()
    return raw.headers.get("x-tollgate-model-id")


def test_a_deployment_cooled_down_on_one_replica_is_skipped_by_all(fleet, stack, pair):
    bad, good = pair
    bad.forced = lambda req: openai_error(429, "Rate limit reached for requests", "requests", code="rate_limit_exceeded")
    a, b, c = fleet
    # Replica A meets the 429 (retried on the other deployment: the client sees a success).
    for _ in range(40):
        assert served_by(a) == "spare"
        if bad.count():
            break
    assert bad.count() == 1
    cooled = time.time()
    # Within a second every replica knows: B and C never try it while it cools down.
    time.sleep(1.0)
    assert stack.redis.command("ZSCORE", "tg:cooldowns", "limited") is not None
    for gw in (b, c):
        for _ in range(20):
            assert served_by(gw) == "spare"
    assert bad.count() == 1, "a replica sent a request to the cooled-down deployment"
    assert time.time() - cooled < COOLDOWN_S - 1, "the check ran past the cooldown"
    # Once it is over, it serves again everywhere.
    bad.forced = None
    time.sleep(max(0.0, COOLDOWN_S + 0.5 - (time.time() - cooled)))
    for gw in (b, c):
        assert "limited" in {served_by(gw) for _ in range(20)}
