"""Proxy-wide caps through a real Envoy: `litellm_settings.max_budget` / `budget_duration` cap the
spend of every call (virtual keys and the master key alike), `general_settings.
global_max_parallel_requests` caps requests in flight across the gateway, and
`general_settings.max_parallel_requests` is the parallel limit of a key without its own. The
OpenAI SDK is the client. Run with the form TOLLGATE_FILTER names."""

import concurrent.futures
import re
import threading
import time
import urllib.request

import openai
import pytest

from conftest import MASTER_KEY, gateway_config, gateway_env
from harness import Envoy
from mocks.base import Stream, sse

PRICE_IN, PRICE_OUT = 1e-6, 2e-6  # one and two micro-dollars per token
MAX_TOKENS = 10
KEYS = {"KEY_A": "sk-proxy-cap-a-1a2b3c4d", "KEY_B": "sk-proxy-cap-b-5e6f7a8b"}


def priced(mocks, **settings):
    config = gateway_config(mocks, **settings)
    for e in config["model_list"]:
        if e["model_name"] in ("gpt", "claude"):
            e["litellm_params"].update({"input_cost_per_token": PRICE_IN, "output_cost_per_token": PRICE_OUT})
    return config


def start(mocks, config):
    return Envoy(config, env={**gateway_env(mocks), **KEYS}, concurrency=4)


@pytest.fixture(scope="module")
def budget_gw(mocks):
    config = priced(mocks, litellm_settings={"max_budget": 0.0015})
    config["keys"] = [{"key": "os.environ/KEY_A", "key_alias": "a"}, {"key": "os.environ/KEY_B", "key_alias": "b"}]
    with start(mocks, config) as envoy:
        yield envoy


@pytest.fixture(scope="module")
def reset_gw(mocks):
    config = priced(mocks, litellm_settings={"max_budget": 0.0004, "budget_duration": "3s"})
    with start(mocks, config) as envoy:
        yield envoy


@pytest.fixture(scope="module")
def parallel_gw(mocks):
    config = priced(mocks, general_settings={"global_max_parallel_requests": 2, "max_parallel_requests": 1})
    config["keys"] = [{"key": "os.environ/KEY_A", "key_alias": "a"},
                      {"key": "os.environ/KEY_B", "key_alias": "b", "max_parallel_requests": 10}]
    with start(mocks, config) as envoy:
        yield envoy


def client(gw, key):
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=key, max_retries=0, timeout=30)


def cost(usage):
    return usage.prompt_tokens * 1 + usage.completion_tokens * 2


def prometheus(gw):
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.admin_port}/stats/prometheus", timeout=10) as r:
        return r.read().decode()


def call(gw, key, i):
    """One request; its cost in micro-dollars, or the refusal the SDK raised."""
    try:
        r = client(gw, key).chat.completions.create(
            model="gpt" if i % 2 == 0 else "claude", max_tokens=MAX_TOKENS,
            messages=[{"role": "user", "content": f"proxy budget {i % 10}"}])
        return cost(r.usage)
    except openai.RateLimitError as e:
        return e


def assert_budget_refusal(e):
    assert isinstance(e, openai.RateLimitError), e
    assert e.status_code == 429
    assert e.body["type"] == "insufficient_quota" and e.body["code"] == "budget_exceeded"
    assert "proxy" in e.body["message"]
    assert e.response.headers["x-should-retry"] == "false"


def test_the_proxy_budget_holds_for_every_caller(budget_gw, mocks):
    budget = 1500  # 150 requests cost far more, whatever the order they run in
    callers = [KEYS["KEY_A"], KEYS["KEY_B"], MASTER_KEY]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: (i % 3, call(budget_gw, callers[i % 3], i)), range(150)))
    charged = [r for _, r in results if isinstance(r, int)]
    refused = [r for _, r in results if not isinstance(r, int)]
    assert charged and refused
    for e in refused:
        assert_budget_refusal(e)
    # Reservations are worst cases: the budget is never passed (by more than one request).
    assert sum(charged) <= budget + max(charged)
    # Spend what is left, one request at a time, until even one worst case no longer fits.
    last = None
    for i in range(200):
        last = call(budget_gw, callers[i % 3], 1000 + i)
        if not isinstance(last, int):
            break
        charged.append(last)
    else:
        pytest.fail("the proxy budget never ran out")
    # The refusal reports the proxy-wide record's spend: exactly what was charged.
    spend = float(re.search(r"spend \$([0-9.]+)", last.body["message"]).group(1))
    assert round(spend * 1e6) == sum(charged) <= budget
    assert mocks["openai"].count() + mocks["anthropic"].count() == len(charged)
    seen = mocks["openai"].count() + mocks["anthropic"].count()
    # Every caller (two keys without budgets of their own, and the master key) is stopped by the
    # one proxy-wide budget.
    for i in range(6):
        assert_budget_refusal(call(budget_gw, callers[i % 3], i))
    assert mocks["openai"].count() + mocks["anthropic"].count() == seen, "a refused request reached the provider"
    gauge = re.search(r"^tollgate_proxy_budget_remaining_micro_usd\{?[^ ]*\}? (\S+)$", prometheus(budget_gw), re.M)
    assert gauge and 0 <= float(gauge.group(1)) <= budget - min(charged)


def test_the_proxy_budget_window_resets(reset_gw):
    refused = None
    for i in range(40):
        r = call(reset_gw, MASTER_KEY, i)
        if not isinstance(r, int):
            refused = r
            break
    assert refused is not None, "the proxy budget never ran out"
    assert refused.body["code"] == "budget_exceeded" and "proxy" in refused.body["message"]
    assert "resets at" in refused.body["message"]
    time.sleep(3.5)
    assert isinstance(call(reset_gw, MASTER_KEY, 0), int)


def slow_stream(delay=0.3, ticks=5):
    chunk = {"id": "chatcmpl-s", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o"}
    parts = [{**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "tick "}, "finish_reason": None}]}] * ticks
    parts.append({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 5, "completion_tokens": ticks, "total_tokens": 5 + ticks}})
    return Stream(sse(parts + ["[DONE]"]), delay=delay)


def stream(gw, key):
    try:
        chunks = list(client(gw, key).chat.completions.create(
            model="gpt", max_tokens=MAX_TOKENS, stream=True,
            messages=[{"role": "user", "content": "slow"}]))
        assert chunks
        return "ok"
    except openai.RateLimitError as e:
        return e


def test_global_parallel_limit_admits_exactly_two_in_flight(parallel_gw, mocks):
    mocks["openai"].forced = lambda req: slow_stream()
    callers = [KEYS["KEY_B"], MASTER_KEY]
    start = threading.Barrier(6)

    def go(i):
        start.wait()
        return stream(parallel_gw, callers[i % 2])

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(go, range(6)))
    assert results.count("ok") == 2, results
    for e in (r for r in results if r != "ok"):
        assert e.status_code == 429 and e.body["code"] == "parallel_limit_exceeded"
        assert "proxy" in e.body["message"] and "limit is 2" in e.body["message"]
        assert e.response.headers["retry-after"] == "1"
    assert mocks["openai"].count() == 2
    # Slots are released: two more fit again.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        assert list(pool.map(lambda i: stream(parallel_gw, callers[i]), range(2))) == ["ok", "ok"]


def test_a_key_without_its_own_parallel_limit_gets_the_default(parallel_gw, mocks):
    mocks["openai"].forced = lambda req: slow_stream()
    start = threading.Barrier(2)

    def go(_):
        start.wait()
        return stream(parallel_gw, KEYS["KEY_A"])

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(go, range(2)))
    assert results.count("ok") == 1, results
    e = next(r for r in results if r != "ok")
    assert e.body["code"] == "parallel_limit_exceeded"
    assert "this key" in e.body["message"] and "limit is 1" in e.body["message"]
