"""Budgets usable to within one request (issue 17, item 2), through a real Envoy with the
official OpenAI SDK: the prompt is estimated from its text rather than its JSON envelope, and a
request the budget left cannot pay whole has its output capped to what it can (the provider is
sent the cap, the client told it in `x-tollgate-max-tokens-capped`). Prices: $1/$2 per million
tokens, so costs are whole micro-dollars."""

import concurrent.futures
import json

import openai
import pytest

from conftest import MASTER_KEY, gateway_config, gateway_env
from estimate import prompt_estimate
from harness import Envoy, http

KEYS = {
    "KEY_TWENTY": "sk-budget-twenty-1a2b3c",
    "KEY_TEAM": "sk-budget-team-four-4d5e6f",
    "KEY_FEW_CENTS": "sk-budget-few-cents-7a8b9c",
    "KEY_FEW_DOLLARS_OAI": "sk-budget-few-dollars-oai-0d1e",
    "KEY_FEW_DOLLARS_PAIR": "sk-budget-few-dollars-pair-2f3a",
    "KEY_CONCURRENT": "sk-budget-concurrent-4b5c6d",
}
# Six words: the OpenAI mock reports 5 + 6 = 11 prompt tokens and answers "echo: <them>", 7.
WORDS = "one two three four five six"
COST = 11 * 1 + 7 * 2  # micro-dollars
CAPPED = "x-tollgate-max-tokens-capped"


@pytest.fixture(scope="module")
def gw(mocks):
    config = gateway_config(mocks)
    for e in config["model_list"]:
        if e["model_name"] == "gpt":
            e["litellm_params"].update({"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6})
    openai_base = next(e for e in config["model_list"] if e["model_name"] == "gpt")["litellm_params"]["api_base"]
    anthropic_base = next(e for e in config["model_list"] if e["model_name"] == "claude")["litellm_params"]["api_base"]
    big_price = {"input_cost_per_token": 15e-6, "output_cost_per_token": 75e-6}
    config["model_list"] += [
        # Large models at $15/$75 a million tokens: Anthropic is sent 4,096 output tokens without
        # max_tokens ($0.31), OpenAI-shaped ones may use the model's 32,000 ($2.40).
        {"model_name": "big", "litellm_params": {"model": "anthropic/claude-opus-4-1", "api_base": anthropic_base,
                                                 "api_key": "os.environ/ANTHROPIC_API_KEY", **big_price},
         "model_info": {"max_output_tokens": 32000}},
        {"model_name": "big-oai", "litellm_params": {"model": "openai/gpt-4.1", "api_base": openai_base,
                                                     "api_key": "os.environ/OPENAI_API_KEY", **big_price},
         "model_info": {"max_output_tokens": 32000}},
    ] + [
        # Two deployments: the request is handed to the attempt listener, the cap goes with it.
        {"model_name": "big-pair", "litellm_params": {"model": "openai/gpt-4.1", "api_base": openai_base,
                                                      "api_key": "os.environ/OPENAI_API_KEY", **big_price},
         "model_info": {"max_output_tokens": 32000, "id": f"pair-{i}"}}
        for i in range(2)
    ]
    config["teams"] = [{"team_id": "four", "max_budget": 4 * COST / 1e6}]
    config["keys"] = [
        {"key": "os.environ/KEY_TWENTY", "key_alias": "twenty", "max_budget": 20 * COST / 1e6},
        {"key": "os.environ/KEY_TEAM", "key_alias": "team-four", "team_id": "four"},
        {"key": "os.environ/KEY_FEW_CENTS", "key_alias": "few-cents", "max_budget": 0.2},
        {"key": "os.environ/KEY_FEW_DOLLARS_OAI", "key_alias": "few-dollars-oai", "max_budget": 2.0},
        {"key": "os.environ/KEY_FEW_DOLLARS_PAIR", "key_alias": "few-dollars-pair", "max_budget": 2.0},
        {"key": "os.environ/KEY_CONCURRENT", "key_alias": "concurrent", "max_budget": 0.001},
    ]
    with Envoy(config, env={**gateway_env(mocks), **KEYS}, concurrency=2) as envoy:
        yield envoy


def client(gw, key):
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=key, max_retries=0, timeout=30)


def spend(gw, key):
    status, _, raw = http("GET", f"{gw.base_url}/key/info?key={key}", None, {"authorization": f"Bearer {MASTER_KEY}"})
    assert status == 200, raw
    return round(json.loads(raw)["info"]["spend"] * 1_000_000)


def admitted(gw, key, attempts=30):
    """Sequential requests of 11+7 tokens with max_tokens 7 until the budget refuses them."""
    c = client(gw, key)
    n = 0
    for _ in range(attempts):
        try:
            r = c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": WORDS}], max_tokens=7)
            assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (11, 7)
            n += 1
        except openai.RateLimitError as e:
            assert e.body["code"] == "budget_exceeded", e.body
    return n


def test_a_key_budget_for_20_requests_admits_20(gw):
    n = admitted(gw, KEYS["KEY_TWENTY"])
    assert 19 <= n <= 21, n
    # The estimate is above what each request cost: the budget is never passed.
    assert spend(gw, KEYS["KEY_TWENTY"]) == n * COST <= 20 * COST


def test_a_team_budget_for_4_requests_admits_4(gw):
    n = admitted(gw, KEYS["KEY_TEAM"], attempts=10)
    assert 3 <= n <= 5, n
    assert n * COST <= 4 * COST


@pytest.mark.parametrize("model, key, mock, budget", [
    ("big", "KEY_FEW_CENTS", "anthropic", 200_000),
    ("big-oai", "KEY_FEW_DOLLARS_OAI", "openai", 2_000_000),
    ("big-pair", "KEY_FEW_DOLLARS_PAIR", "openai", 2_000_000),
])
def test_a_few_dollars_reach_a_large_model_without_max_tokens(gw, mocks, model, key, mock, budget):
    body = {"model": model, "messages": [{"role": "user", "content": "Write me a long story about a lighthouse."}]}
    raw = client(gw, KEYS[key]).chat.completions.with_raw_response.create(**body)
    r = raw.parse()
    assert r.choices[0].message.content
    cap = int(raw.headers[CAPPED])
    # The most output the budget (micro-dollars) pays for beside the prompt's estimate.
    assert cap == (budget * 1_000_000 - prompt_estimate(body) * 15_000_000) // 75_000_000
    sent = mocks[mock].received[-1].json
    assert sent["max_tokens"] == cap, sent
    # What the request was charged fits the budget.
    assert 0 < spend(gw, KEYS[key]) <= budget
    # A streamed request is capped the same way, the header on its response.
    with client(gw, KEYS[key]).chat.completions.with_streaming_response.create(**body, stream=True) as s:
        assert int(s.headers[CAPPED]) <= cap
        assert list(s.iter_lines())
    assert mocks[mock].received[-1].json["max_tokens"] == int(s.headers[CAPPED])


def test_a_request_the_budget_pays_whole_is_not_capped(gw, mocks):
    raw = client(gw, KEYS["KEY_FEW_CENTS"]).chat.completions.with_raw_response.create(
        model="big", messages=[{"role": "user", "content": "hi"}], max_tokens=1000)
    assert CAPPED not in raw.headers
    assert mocks["anthropic"].received[-1].json["max_tokens"] == 1000


def test_capped_requests_in_flight_never_pass_the_budget(gw, mocks):
    """Requests without max_tokens, 16 at a time, against $0.001: each is capped to what is left
    when it is admitted (reservations included), so no spend passes the budget."""
    key = KEYS["KEY_CONCURRENT"]

    def call(i):
        try:
            raw = client(gw, key).chat.completions.with_raw_response.create(
                model="gpt", messages=[{"role": "user", "content": f"{WORDS} {i}"}])
            return int(raw.headers[CAPPED])
        except openai.RateLimitError as e:
            assert e.body["code"] == "budget_exceeded", e.body
            return None

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        caps = list(pool.map(call, range(120)))
    served = [c for c in caps if c is not None]
    assert served and None in caps
    assert all(16 <= c <= 16384 for c in served), served
    assert spend(gw, key) <= 1000
    assert mocks["openai"].count() == len(served)
    assert [json.loads(r.body).get("max_tokens") for r in mocks["openai"].received] and \
        sorted(json.loads(r.body)["max_tokens"] for r in mocks["openai"].received) == sorted(served)
