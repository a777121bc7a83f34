"""Wildcard model names (LiteLLM's pattern routing) and `/v1/models` per key, through a real Envoy
with the official OpenAI SDK: `model_name: "*"` with `model: openai/*` sends any model to OpenAI
with the client's model id; `anthropic/*` with `anthropic/*` sends `anthropic/claude-...` as
`claude-...`; explicit entries win; prices, keys' `models` lists and fallbacks work as for explicit
entries."""

import json
import os
import urllib.request

import openai
import pytest
import yaml

from conftest import DEAD_PORT, MASTER_KEY
from harness import ROOT, Envoy, http, run_cli

KEY_TWO = "sk-two-models-4b5c6d7e8f"
TWO_MODELS = ["gpt-4.1-mini", "anthropic/claude-haiku-4-5"]

with open(os.path.join(ROOT, "src", "pricing", "prices.json")) as f:
    PRICES = json.load(f)["models"]


def wildcard_config(mocks):
    oa, an = mocks["openai"], mocks["anthropic"]
    return {
        "model_list": [
            {"model_name": "*", "litellm_params": {
                "model": "openai/*", "api_base": f"{oa.base_url}/v1", "api_key": "os.environ/OPENAI_API_KEY"}},
            {"model_name": "anthropic/*", "litellm_params": {
                "model": "anthropic/*", "api_base": an.base_url, "api_key": "os.environ/ANTHROPIC_API_KEY"}},
            # Explicit entries win over wildcards.
            {"model_name": "gpt-4o", "litellm_params": {
                "model": "openai/gpt-4o-mini", "api_base": f"{oa.base_url}/v1", "api_key": "os.environ/OPENAI_API_KEY"}},
            # A wildcard whose provider does not answer, falling back to a name "*" serves.
            {"model_name": "dead/*", "litellm_params": {
                "model": "openai/*", "api_base": f"http://127.0.0.1:{DEAD_PORT}/v1", "api_key": "sk-unused-dead"}},
        ],
        "router_settings": {"fallbacks": [{"dead/gpt-4.1-mini": ["gpt-4.1-nano"]}]},
        "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"},
        "keys": [{"key": "os.environ/KEY_TWO", "key_alias": "two-models", "models": TWO_MODELS, "max_budget": 10.0}],
    }


@pytest.fixture(scope="module")
def gw(mocks):
    env = {"TOLLGATE_MASTER_KEY": MASTER_KEY, "KEY_TWO": KEY_TWO,
           **mocks["openai"].env, **mocks["anthropic"].env}
    with Envoy(wildcard_config(mocks), env=env) as envoy:
        yield envoy


def client(gw, key=MASTER_KEY):
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=key, max_retries=0, timeout=30)


def micro_cost(provider, model, usage):
    """What the gateway charges, in micro-USD: the price table's pico-USD per token, rounded."""
    price = PRICES[provider][model]
    pico = usage.prompt_tokens * price[0] + usage.completion_tokens * price[1]
    return (pico + 500_000) // 1_000_000


def chat(c, model, text="hello wildcard"):
    raw = c.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=50)
    return raw.parse(), raw.headers


def test_any_model_reaches_openai_with_its_id_and_is_priced(gw, mocks):
    oa = mocks["openai"]
    before = oa.count()
    r, h = chat(client(gw, KEY_TWO), "gpt-4.1-mini", "a longer prompt " * 50)
    assert oa.count() == before + 1
    sent = oa.last()
    assert sent.json["model"] == "gpt-4.1-mini"
    assert sent.headers["authorization"] == f"Bearer {oa.key}"
    assert r.model == "gpt-4.1-mini"
    cost = micro_cost("openai", "gpt-4.1-mini", r.usage)
    assert cost > 0
    assert h["x-tollgate-response-cost"] == f"{cost / 1e6:.6f}"
    assert h["x-tollgate-model-id"] == "*.0"
    # The key's spend is that cost.
    status, _, body = http("GET", f"{gw.base_url}/key/info?key={KEY_TWO}", headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert status == 200, body
    assert round(json.loads(body)["info"]["spend"] * 1e6) == cost


def test_a_provider_pattern_sends_the_id_after_its_prefix(gw, mocks):
    an = mocks["anthropic"]
    r, h = chat(client(gw), "anthropic/claude-haiku-4-5")
    sent = an.last()
    assert sent.path == "/v1/messages"
    assert sent.json["model"] == "claude-haiku-4-5"
    assert r.model == "anthropic/claude-haiku-4-5"
    assert r.choices[0].message.content == "echo: hello wildcard"
    assert h["x-tollgate-response-cost"] == f"{micro_cost('anthropic', 'claude-haiku-4-5', r.usage) / 1e6:.6f}"
    # Streams too.
    chunks = list(client(gw).chat.completions.create(
        model="anthropic/claude-haiku-4-5", messages=[{"role": "user", "content": "stream it"}], max_tokens=20, stream=True))
    assert an.last().json["model"] == "claude-haiku-4-5"
    assert {c.model for c in chunks} == {"anthropic/claude-haiku-4-5"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: stream it"


def test_explicit_entries_win_and_unknown_models_go_through_unpriced(gw, mocks):
    oa = mocks["openai"]
    r, _ = chat(client(gw), "gpt-4o")
    assert oa.last().json["model"] == "gpt-4o-mini", "the explicit gpt-4o entry, not the wildcard"
    assert r.model == "gpt-4o"
    # A model the price table does not know still reaches the provider, charged 0.
    r, h = chat(client(gw), "my-finetuned-model")
    assert oa.last().json["model"] == "my-finetuned-model"
    assert h["x-tollgate-response-cost"] == "0.000000"
    # Metrics count such a name under its wildcard: clients cannot grow the series.
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.admin_port}/stats/prometheus", timeout=10) as resp:
        prom = resp.read().decode()
    requests = [line for line in prom.splitlines() if line.startswith("tollgate_requests_total{")]
    assert any('model="*"' in line and 'provider="openai"' in line for line in requests), requests
    assert any('model="gpt-4o"' in line for line in requests), requests
    assert not any("my-finetuned-model" in line for line in prom.splitlines())
    # A name no provider model id can be is the usual 404.
    with pytest.raises(openai.NotFoundError) as e:
        chat(client(gw), "no spaces allowed")
    assert e.value.code == "model_not_found"


def test_models_lists_each_wildcards_known_models(gw):
    ids = [m.id for m in client(gw).models.list()]
    assert len(ids) == len(set(ids))
    assert ids[0] == "gpt-4o"
    openai_ids = set(PRICES["openai"])
    anthropic_ids = {f"anthropic/{m}" for m in PRICES["anthropic"]}
    dead_ids = {f"dead/{m}" for m in PRICES["openai"]}
    assert set(ids) == openai_ids | anthropic_ids | dead_ids
    assert not any("*" in i for i in ids)
    assert client(gw).models.retrieve("anthropic/claude-haiku-4-5").id == "anthropic/claude-haiku-4-5"


def test_a_key_allowed_two_models_sees_and_uses_only_those(gw, mocks):
    c = client(gw, KEY_TWO)
    assert sorted(m.id for m in c.models.list()) == sorted(TWO_MODELS)
    assert c.models.retrieve("gpt-4.1-mini").id == "gpt-4.1-mini"
    with pytest.raises(openai.NotFoundError):
        c.models.retrieve("gpt-4o-mini")
    before = mocks["openai"].count()
    with pytest.raises(openai.PermissionDeniedError) as e:
        chat(c, "gpt-4o-mini")
    assert e.value.status_code == 403
    assert e.value.code == "model_not_allowed"
    assert e.value.body["type"] == "permission_error" and e.value.body["param"] == "model"
    assert "gpt-4o-mini" in e.value.message
    assert mocks["openai"].count() == before
    # The other allowed model works.
    r, _ = chat(c, "anthropic/claude-haiku-4-5")
    assert r.model == "anthropic/claude-haiku-4-5"


def test_a_fallback_between_wildcards_is_priced_as_the_model_that_served(gw, mocks):
    oa = mocks["openai"]
    r, h = chat(client(gw), "dead/gpt-4.1-mini")
    assert oa.last().json["model"] == "gpt-4.1-nano"
    assert r.model == "dead/gpt-4.1-mini"
    assert h["x-tollgate-attempted-fallbacks"] == "1"
    assert h["x-tollgate-model-id"] == "*.0"
    assert "x-tollgate-served-name" not in h
    assert h["x-tollgate-response-cost"] == f"{micro_cost('openai', 'gpt-4.1-nano', r.usage) / 1e6:.6f}"


def write_config(tmp_path, config):
    p = tmp_path / "config.yaml"
    p.write_text(yaml.safe_dump(config))
    return str(p)


def test_check_and_render_take_a_wildcard_config(tmp_path, mocks):
    env = {**os.environ, "TOLLGATE_MASTER_KEY": MASTER_KEY, "KEY_TWO": KEY_TWO,
           **mocks["openai"].env, **mocks["anthropic"].env}
    path = write_config(tmp_path, wildcard_config(mocks))
    r = run_cli("check", path, env=env)
    assert r.returncode == 0, r.stderr
    listed = len(PRICES["openai"]) * 2 + len(PRICES["anthropic"])
    assert f"OK: 4 deployments in 1 model groups and 3 wildcard patterns (GET /v1/models lists {listed} models)" in r.stdout, r.stdout
    assert not [line for line in r.stderr.splitlines() if "model_list" in line], r.stderr
    out = tmp_path / "envoy.yaml"
    r = run_cli("render", path, "--wasm", "/tmp/tollgate.wasm", "-o", str(out), env=env)
    assert r.returncode == 0, r.stderr
    clusters = {c["name"] for c in yaml.safe_load(out.read_text())["static_resources"]["clusters"]}
    assert {f"tollgate_127.0.0.1_{mocks['openai'].port}", f"tollgate_127.0.0.1_{mocks['anthropic'].port}",
            f"tollgate_127.0.0.1_{DEAD_PORT}"} <= clusters

    bad = wildcard_config(mocks)
    bad["model_list"][2]["litellm_params"]["model"] = "openai/*"
    r = run_cli("check", write_config(tmp_path, bad), env=env)
    assert r.returncode == 1
    assert "error: model_list[2].litellm_params.model: has a '*' but model_name 'gpt-4o' has none" in r.stderr, r.stderr
