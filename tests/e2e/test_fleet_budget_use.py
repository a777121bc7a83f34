"""Budgets usable to within one request (issue 17, item 2) with a shared store: two Envoy
replicas (two workers each) and one Redis behind webdis. The prompt's estimate from its text
holds there too, and a request the budget left cannot pay whole is capped to what this replica
knows is left fleet-wide (its lease's room and the pool no replica holds), the store's admission
deciding. The official OpenAI SDK as the client. Run with the form TOLLGATE_FILTER names."""

import time

import openai
import pytest

from conftest import MASTER_KEY
from estimate import prompt_estimate
from fleet_common import provider, stack, started  # noqa: F401 (fixtures)
from harness import Envoy
from mocks.openai_mock import OPENAI_KEY

KEYS = {"KEY_TWENTY": "sk-fleet-use-twenty-1a2b3c", "KEY_FEW_DOLLARS": "sk-fleet-use-few-dollars-4d5e6f"}
# Six words: the OpenAI mock reports 5 + 6 = 11 prompt tokens and answers "echo: <them>", 7.
WORDS = "one two three four five six"
COST = 11 * 1 + 7 * 2  # micro-dollars at $1/$2 a million tokens
CAPPED = "x-tollgate-max-tokens-capped"


@pytest.fixture(autouse=True)
def _reset(provider):
    provider.reset()
    yield


@pytest.fixture(scope="module")
def fleet(stack, provider):
    def model(name, price_in, price_out, **info):
        return {"model_name": name, "litellm_params": {
            "model": "openai/gpt-4.1", "api_base": f"{provider.base_url}/v1", "api_key": "os.environ/OPENAI_API_KEY",
            "input_cost_per_token": price_in, "output_cost_per_token": price_out}, "model_info": info}

    config = {
        "model_list": [model("gpt", 1e-6, 2e-6), model("big", 15e-6, 75e-6, max_output_tokens=32000)],
        "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"},
        "tollgate_settings": {"store": {"url": stack.webdis.url, "auth": "os.environ/TOLLGATE_STORE_AUTH",
                                        "tick_ms": 100, "replica_ttl_ms": 2000}},
        "keys": [
            {"key": "os.environ/KEY_TWENTY", "key_alias": "twenty", "max_budget": 20 * COST / 1e6},
            {"key": "os.environ/KEY_FEW_DOLLARS", "key_alias": "few-dollars", "max_budget": 2.0},
        ],
    }
    env = {"TOLLGATE_MASTER_KEY": MASTER_KEY, "TOLLGATE_STORE_AUTH": stack.webdis.auth,
           "OPENAI_API_KEY": OPENAI_KEY, **KEYS}
    envoys = [Envoy(config, env=env, concurrency=2) for _ in range(2)]
    with started(envoys):
        yield envoys


def client(envoy, key):
    return openai.OpenAI(base_url=f"{envoy.base_url}/v1", api_key=key, max_retries=0, timeout=30)


def test_a_key_budget_for_20_requests_admits_20_across_replicas(fleet):
    admitted = 0
    for i in range(30):
        try:
            r = client(fleet[i % 2], KEYS["KEY_TWENTY"]).chat.completions.create(
                model="gpt", messages=[{"role": "user", "content": WORDS}], max_tokens=7)
            assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (11, 7)
            admitted += 1
        except openai.RateLimitError as e:
            assert e.body["code"] == "budget_exceeded", e.body
    assert 19 <= admitted <= 21, admitted


def test_a_few_dollars_reach_a_large_model_without_max_tokens(fleet, provider):
    body = {"model": "big", "messages": [{"role": "user", "content": "Write me a long story about a lighthouse."}]}
    raw = client(fleet[0], KEYS["KEY_FEW_DOLLARS"]).chat.completions.with_raw_response.create(**body)
    assert raw.parse().choices[0].message.content
    cap = int(raw.headers[CAPPED])
    # All of $2 is left: the most output it pays for beside the prompt's estimate.
    assert cap == (2_000_000_000_000 - prompt_estimate(body) * 15_000_000) // 75_000_000
    assert provider.received[-1].json["max_tokens"] == cap
    # Once the first replica's sync gave back its lease, the other one, which never saw the key,
    # is refused by the store for the cap it thought fit, and asks again capped to what the
    # store said is left (the first request's cost less).
    time.sleep(0.5)
    raw = client(fleet[1], KEYS["KEY_FEW_DOLLARS"]).chat.completions.with_raw_response.create(**body)
    assert 16 <= int(raw.headers[CAPPED]) < cap
    assert provider.received[-1].json["max_tokens"] == int(raw.headers[CAPPED])
