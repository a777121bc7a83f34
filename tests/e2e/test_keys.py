"""Virtual keys, teams, budgets, rate limits and spend, through a real Envoy with 4 workers."""

import concurrent.futures
import hashlib
import json
import re
import socket
import time
import urllib.request

import openai
import pytest

from conftest import MASTER_KEY, gateway_config, gateway_env
from estimate import prompt_estimate
from harness import Envoy, http
from mocks.base import Stream, sse

PRICE_IN, PRICE_OUT = 1e-6, 2e-6  # one and two micro-dollars per token: costs are whole micro-dollars

KEYS = {
    "KEY_SEARCH": "sk-search-prod-0a1b2c3d4e",
    "KEY_OTHER": "sk-other-key-5f6g7h8i9j",
    "KEY_BUDGET": "sk-small-budget-k1l2m3n4",
    "KEY_RESET": "sk-reset-budget-o5p6q7r8",
    "KEY_RPM": "sk-rpm-limited-s9t0u1v2",
    "KEY_TPM": "sk-tpm-limited-w3x4y5z6",
    "KEY_PAR": "sk-parallel-2-a7b8c9d0",
    "KEY_DISC": "sk-disconnect-e1f2g3h4",
    "KEY_EXPIRED": "sk-expired-i5j6k7l8",
    "KEY_BLOCKED": "sk-blocked-m9n0o1p2",
    "KEY_GPT_ONLY": "sk-gpt-only-q3r4s5t6",
}
HASHED_KEY = "sk-only-its-hash-is-configured"


@pytest.fixture(scope="module")
def gw(mocks):
    config = gateway_config(mocks)
    for e in config["model_list"]:
        if e["model_name"] in ("gpt", "claude"):
            e["litellm_params"].update({"input_cost_per_token": PRICE_IN, "output_cost_per_token": PRICE_OUT})
    config["teams"] = [
        {"team_id": "search", "max_budget": 100.0, "budget_duration": "30d", "rpm_limit": 100000, "models": ["gpt", "claude"]},
    ]
    config["keys"] = [
        {"key": "os.environ/KEY_SEARCH", "key_alias": "search-prod", "team_id": "search", "models": ["gpt", "claude"],
         "max_budget": 25.0, "soft_budget": 0.000001, "rpm_limit": 100000, "tpm_limit": 100000000,
         "max_parallel_requests": 64, "metadata": {"owner": "search@example.com"}},
        {"key": "os.environ/KEY_OTHER", "key_alias": "other", "max_budget": 25.0},
        {"key_hash": "sha256:" + hashlib.sha256(HASHED_KEY.encode()).hexdigest(), "key_alias": "hashed"},
        {"key": "os.environ/KEY_BUDGET", "key_alias": "small-budget", "max_budget": 0.0005},
        {"key": "os.environ/KEY_RESET", "key_alias": "reset", "max_budget": 0.0002, "budget_duration": "4s"},
        {"key": "os.environ/KEY_RPM", "key_alias": "rpm5", "rpm_limit": 5},
        {"key": "os.environ/KEY_TPM", "key_alias": "tpm", "tpm_limit": 2000},
        {"key": "os.environ/KEY_PAR", "key_alias": "par2", "max_parallel_requests": 2},
        {"key": "os.environ/KEY_DISC", "key_alias": "disc", "max_parallel_requests": 3, "max_budget": 10.0},
        {"key": "os.environ/KEY_EXPIRED", "key_alias": "expired", "expires": "2020-01-01T00:00:00Z"},
        {"key": "os.environ/KEY_BLOCKED", "key_alias": "blocked", "blocked": True},
        {"key": "os.environ/KEY_GPT_ONLY", "key_alias": "gpt-only", "models": ["gpt"]},
    ]
    with Envoy(config, env={**gateway_env(mocks), **KEYS}, concurrency=4) as envoy:
        yield envoy


def client(gw, key, **kw):
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=key, max_retries=0, timeout=30, **kw)


def admin(gw, method, path, body=None, key=MASTER_KEY):
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    status, _, raw = http(method, f"{gw.base_url}{path}", body if body is not None else (b"" if method == "POST" else None), headers)
    return status, json.loads(raw) if raw else None


def info(gw, key):
    status, body = admin(gw, "GET", f"/key/info?key={key}")
    assert status == 200, body
    return body["info"]


def micro(usd):
    return round(usd * 1_000_000)


def cost(usage):
    return usage.prompt_tokens * 1 + usage.completion_tokens * 2


def prometheus(gw):
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.admin_port}/stats/prometheus", timeout=10) as r:
        return r.read().decode()


def metric_sum(text, metric, **labels):
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{metric}\{{(.*)\}} (\S+)$", line)
        if m:
            got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            if all(got.get(k) == v for k, v in labels.items()):
                total += float(m.group(2))
    return total


def one_call(gw, key, i):
    """A request of one of four shapes; returns its usage as the client saw it."""
    c = client(gw, key)
    model = "gpt" if i % 2 == 0 else "claude"
    msgs = [{"role": "user", "content": f"request number {i} " + "word " * (i % 5)}]
    if i % 4 < 2:
        r = c.chat.completions.create(model=model, messages=msgs, max_tokens=50)
        return r.usage
    chunks = list(c.chat.completions.create(model=model, messages=msgs, max_tokens=50, stream=True,
                                            stream_options={"include_usage": True}))
    return chunks[-1].usage


def test_spend_is_exact_under_concurrency(gw, mocks):
    keys = [KEYS["KEY_SEARCH"], KEYS["KEY_OTHER"], HASHED_KEY]
    before = {k: micro(info(gw, k)["spend"]) for k in keys}
    prom_before = prometheus(gw)
    jobs = [(keys[i % 3], i) for i in range(120)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        usages = list(pool.map(lambda job: (job[0], one_call(gw, *job)), jobs))
    expected = {k: sum(cost(u) for kk, u in usages if kk == k) for k in keys}
    for k in keys:
        got = info(gw, k)
        assert micro(got["spend"]) - before[k] == expected[k], (k, got)
        assert got["current_parallel_requests"] == 0
        assert got["reserved_spend"] == 0
    after = prometheus(gw)
    for k, alias in zip(keys, ["search-prod", "other", "hashed"]):
        spent = metric_sum(after, "tollgate_spend_micro_usd", key_alias=alias) - metric_sum(prom_before, "tollgate_spend_micro_usd", key_alias=alias)
        assert spent == expected[k], alias
        prompt = sum(u.prompt_tokens for kk, u in usages if kk == k)
        got_prompt = metric_sum(after, "tollgate_tokens_total", key_alias=alias, token_type="input") - metric_sum(prom_before, "tollgate_tokens_total", key_alias=alias, token_type="input")
        assert got_prompt == prompt
    assert metric_sum(after, "tollgate_spend_micro_usd", key_alias="search-prod", team="search", model="claude", provider="anthropic") > 0
    assert mocks["openai"].count() + mocks["anthropic"].count() == 120
    # The team's own record saw the search key's spend.
    assert metric_sum(after, "tollgate_team_budget_remaining_micro_usd", team="search") == 100_000_000 - expected[KEYS["KEY_SEARCH"]] - before[KEYS["KEY_SEARCH"]]


def test_success_headers(gw):
    raw = client(gw, KEYS["KEY_SEARCH"]).chat.completions.with_raw_response.create(
        model="gpt", messages=[{"role": "user", "content": "headers please"}], max_tokens=20)
    r = raw.parse()
    h = raw.headers
    assert float(h["x-tollgate-response-cost"]) == pytest.approx(cost(r.usage) / 1e6)
    assert h["x-tollgate-key-alias"] == "search-prod"
    assert float(h["x-tollgate-key-max-budget"]) == 25.0
    assert float(h["x-tollgate-key-spend"]) >= 0
    assert h["x-ratelimit-limit-requests"] == "100000"
    assert int(h["x-ratelimit-remaining-requests"]) < 100000
    assert h["x-ratelimit-limit-tokens"] == "100000000"
    assert h["x-ratelimit-reset-requests"].endswith("s")
    assert h["x-tollgate-soft-budget-exceeded"] == "true"
    assert "x-tollgate-key-alias" in client(gw, KEYS["KEY_SEARCH"]).chat.completions.with_raw_response.create(
        model="claude", messages=[{"role": "user", "content": "x"}], stream=True).headers


def test_budget_holds_under_concurrent_load(gw, mocks):
    key = KEYS["KEY_BUDGET"]
    c = client(gw, key)

    def call(i):
        # Every request has the same shape (so the same worst case): which ones fit is about spend.
        try:
            r = c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": f"spend {i % 10}"}], max_tokens=10)
            return cost(r.usage)
        except openai.RateLimitError as e:
            assert e.body["type"] == "insufficient_quota" and e.body["code"] == "budget_exceeded"
            assert e.response.headers["x-should-retry"] == "false"
            return None

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(80)))
    charged = [r for r in results if r is not None]
    assert charged and None in results
    got = info(gw, key)
    assert micro(got["spend"]) == sum(charged)
    # Reservations are worst cases (actual <= estimate here), so the budget is never passed.
    assert micro(got["spend"]) <= 500
    # Spend what is left, one request at a time, until even one worst case no longer fits.
    for i in range(200):
        if call(1000 + i) is None:
            break
    else:
        pytest.fail("the budget never ran out")
    assert micro(info(gw, key)["spend"]) <= 500
    seen = mocks["openai"].count()
    for i in range(5):
        assert call(i) is None
    assert mocks["openai"].count() == seen, "a refused request reached the provider"


def test_budget_window_resets(gw, mocks):
    c = client(gw, KEYS["KEY_RESET"])
    refused = False
    for i in range(40):
        try:
            c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}], max_tokens=5)
        except openai.RateLimitError as e:
            assert e.body["code"] == "budget_exceeded"
            assert "resets at" in e.body["message"]
            refused = True
            break
    assert refused
    time.sleep(4.5)
    r = c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "again"}], max_tokens=5)
    assert r.choices[0].message.content


def wait_for_fresh_minute(margin=12):
    # A limit per minute is tested inside one minute.
    if time.time() % 60 > 60 - margin:
        time.sleep(60 - time.time() % 60 + 0.5)


def test_rpm_limit_under_concurrency(gw):
    wait_for_fresh_minute()
    c = client(gw, KEYS["KEY_RPM"])

    def call(i):
        try:
            c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "rpm"}])
            return "ok"
        except openai.RateLimitError as e:
            h = e.response.headers
            assert e.body["type"] == "rate_limit_error"
            assert h["x-ratelimit-limit-requests"] == "5" and h["x-ratelimit-remaining-requests"] == "0"
            assert 0 < int(h["retry-after"]) <= 60
            return "limited"

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        results = list(pool.map(call, range(12)))
    assert results.count("ok") == 5, results


def slow_completion(mock, seconds):
    def action(req):
        time.sleep(seconds)
        return mock.respond(req)
    return action


def test_tpm_limit_counts_reservations(gw, mocks):
    wait_for_fresh_minute()
    for _ in range(6):
        mocks["openai"].enqueue(slow_completion(mocks["openai"], 1.5))
    c = client(gw, KEYS["KEY_TPM"])

    def call(i):
        try:
            c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "tpm"}], max_tokens=800)
            return "ok"
        except openai.RateLimitError as e:
            assert e.response.headers["x-ratelimit-limit-tokens"] == "2000"
            return "limited"

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(call, range(6)))
    # Each request reserves its prompt's estimate plus max_tokens (~810 tokens): two fit in 2000.
    assert results.count("ok") == 2, results


def test_parallel_limit_and_release(gw, mocks):
    for _ in range(6):
        mocks["openai"].enqueue(slow_completion(mocks["openai"], 1.5))
    c = client(gw, KEYS["KEY_PAR"])

    def call(i):
        try:
            c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "par"}])
            return "ok"
        except openai.RateLimitError as e:
            assert e.body["code"] == "parallel_limit_exceeded"
            return "limited"

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(call, range(6)))
    assert results.count("ok") == 2, results
    assert info(gw, KEYS["KEY_PAR"])["current_parallel_requests"] == 0


def test_client_disconnect_mid_stream_releases_and_charges_the_reservation(gw, mocks):
    key = KEYS["KEY_DISC"]
    spend_before = micro(info(gw, key)["spend"])
    events = [("message_start", {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                                                                        "model": "claude-sonnet-4-5", "content": [], "stop_reason": None,
                                                                        "usage": {"input_tokens": 5, "output_tokens": 1}}})]
    events += [("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "tick "}})] * 40
    for _ in range(3):
        mocks["anthropic"].enqueue(Stream(sse(events), delay=0.25))
    body = json.dumps({"model": "claude", "messages": [{"role": "user", "content": "stream forever"}], "max_tokens": 100, "stream": True}).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {key}\r\n"
               f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body
    socks = []
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
        s.sendall(request)
        first = s.recv(4096)
        assert first.startswith(b"HTTP/1.1 200"), first
        while b"data:" not in first:
            first += s.recv(4096)
        socks.append(s)
    assert info(gw, key)["current_parallel_requests"] == 3
    for s in socks:
        # The client goes away mid-stream.
        s.shutdown(socket.SHUT_RDWR)
        s.close()
    deadline = time.time() + 10
    while time.time() < deadline and info(gw, key)["current_parallel_requests"]:
        time.sleep(0.1)
    got = info(gw, key)
    assert got["current_parallel_requests"] == 0 and got["reserved_spend"] == 0
    # Cut off before its usage arrived: each stream is charged its reservation (the prompt's
    # estimate + max_tokens * 2).
    assert micro(got["spend"]) - spend_before == 3 * (prompt_estimate(json.loads(body)) * 1 + 100 * 2)


def test_models_list_shows_a_key_only_its_models(gw):
    everything = {m.id for m in client(gw, MASTER_KEY).models.list()}
    assert {"gpt", "claude", "text-embed"} <= everything
    assert sorted(m.id for m in client(gw, KEYS["KEY_SEARCH"]).models.list()) == ["claude", "gpt"]
    gpt_only = client(gw, KEYS["KEY_GPT_ONLY"])
    assert [m.id for m in gpt_only.models.list()] == ["gpt"]
    assert gpt_only.models.retrieve("gpt").id == "gpt"
    with pytest.raises(openai.NotFoundError):
        gpt_only.models.retrieve("claude")
    # A key allowed every model sees every model.
    assert {m.id for m in client(gw, KEYS["KEY_OTHER"]).models.list()} == everything


def test_refusals_raise_the_sdk_exceptions(gw):
    msg = [{"role": "user", "content": "x"}]
    with pytest.raises(openai.AuthenticationError) as e:
        client(gw, "sk-not-a-key-at-all").chat.completions.create(model="gpt", messages=msg)
    assert e.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError) as e:
        client(gw, KEYS["KEY_EXPIRED"]).chat.completions.create(model="gpt", messages=msg)
    assert e.value.code == "key_expired" and "expired" in e.value.message
    with pytest.raises(openai.PermissionDeniedError) as e:
        client(gw, KEYS["KEY_BLOCKED"]).chat.completions.create(model="gpt", messages=msg)
    assert e.value.code == "key_blocked"
    with pytest.raises(openai.PermissionDeniedError) as e:
        client(gw, KEYS["KEY_GPT_ONLY"]).chat.completions.create(model="claude", messages=msg)
    assert e.value.code == "model_not_allowed" and "claude" in e.value.message
    assert client(gw, KEYS["KEY_GPT_ONLY"]).chat.completions.create(model="gpt", messages=msg).choices
    # The Azure SDK's header and x-api-key carry virtual keys too.
    for header in ("api-key", "x-api-key"):
        s, _, b = http("POST", f"{gw.base_url}/v1/chat/completions", {"model": "gpt", "messages": msg},
                       {header: KEYS["KEY_OTHER"], "content-type": "application/json"})
        assert s == 200, b


def test_generated_keys_work_on_every_worker_and_block_at_once(gw):
    status, g = admin(gw, "POST", "/key/generate", {"key_alias": "generated", "max_budget": 1.0, "models": ["gpt"], "rpm_limit": 1000})
    assert status == 200, g
    key = g["key"]
    assert g["token"] == hashlib.sha256(key.encode()).hexdigest()
    body = {"model": "gpt", "messages": [{"role": "user", "content": "new key"}]}

    def call(_):
        # A new connection each time, so requests spread over the 4 workers.
        return http("POST", f"{gw.base_url}/v1/chat/completions", body,
                    {"authorization": f"Bearer {key}", "content-type": "application/json", "connection": "close"})[0]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert set(pool.map(call, range(24))) == {200}
    assert admin(gw, "POST", "/key/block", {"key": key})[0] == 200
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert set(pool.map(call, range(24))) == {403}
    assert admin(gw, "POST", "/key/unblock", {"key": key})[0] == 200
    assert call(0) == 200
    status, up = admin(gw, "POST", "/key/update", {"key": key, "models": ["claude"]})
    assert status == 200 and up["models"] == ["claude"]
    assert call(0) == 403
    status, listed = admin(gw, "GET", "/key/list?return_full_object=true&key_alias=generated")
    assert status == 200 and listed["keys"][0]["token"] == g["token"]
    assert admin(gw, "POST", "/key/delete", {"keys": [key]}) == (200, {"deleted_keys": [g["token"]]})
    assert call(0) == 401


def test_bad_admin_input_changes_nothing(gw):
    before = admin(gw, "GET", "/key/list")[1]
    cases = [
        (b"{not json", 400),
        ({"key_alias": "x", "max_budget": -5}, 400),
        ({"key_alias": "x", "max_budgett": 5}, 400),
        ({"key_alias": "x", "budget_duration": "soon"}, 400),
        ({"key_alias": "x", "team_id": "no-such-team"}, 400),
        ({"key_alias": "x", "models": ["no-such-model"]}, 400),
        ([1, 2], 400),
    ]
    for body, want in cases:
        status, err = admin(gw, "POST", "/key/generate", body)
        assert status == want, (body, err)
        assert set(err["error"]) == {"message", "type", "param", "code"}
    assert admin(gw, "POST", "/key/generate", {"key_alias": "x"}, key=KEYS["KEY_SEARCH"])[0] == 403
    s, _, _ = http("POST", f"{gw.base_url}/key/generate", b"{}", {"content-type": "application/json"})
    assert s == 401
    assert admin(gw, "GET", "/key/generate")[0] == 405
    assert admin(gw, "POST", "/key/update", {"key": "sk-unknown-000000", "rpm_limit": 1})[0] == 404
    assert admin(gw, "GET", "/key/list")[1] == before


def test_budget_and_rate_limit_stats(gw):
    text = prometheus(gw)
    assert metric_sum(text, "tollgate_budget_refused_total", key_alias="small-budget") > 0
    assert metric_sum(text, "tollgate_rate_limited_total", key_alias="rpm5") > 0
    assert metric_sum(text, "tollgate_key_budget_remaining_micro_usd", key_alias="search-prod", team="search") > 0
    assert metric_sum(text, "tollgate_soft_budget_exceeded_total", key_alias="search-prod") > 0


def test_client_gone_before_the_response_is_charged_its_reservation(gw, mocks):
    key = KEYS["KEY_DISC"]
    spend_before = micro(info(gw, key)["spend"])
    mocks["openai"].enqueue(slow_completion(mocks["openai"], 2))
    body = json.dumps({"model": "gpt", "messages": [{"role": "user", "content": "then leave"}], "max_tokens": 40}).encode()
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
    s.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {key}\r\n"
               f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body)
    assert mocks["openai"].wait_for(1, timeout=5), "the request reached the provider"
    s.shutdown(socket.SHUT_RDWR)
    s.close()
    deadline = time.time() + 10
    while time.time() < deadline and info(gw, key)["current_parallel_requests"]:
        time.sleep(0.1)
    got = info(gw, key)
    assert got["current_parallel_requests"] == 0 and got["reserved_spend"] == 0
    assert micro(got["spend"]) - spend_before == prompt_estimate(json.loads(body)) * 1 + 40 * 2


def test_the_master_key_and_taken_aliases_are_refused(gw):
    before = admin(gw, "GET", "/key/list")[1]
    # The master key as a custom key would shadow it: never usable as itself.
    status, err = admin(gw, "POST", "/key/generate", {"key": MASTER_KEY, "key_alias": "shadow"})
    assert status == 400 and err["error"]["param"] == "key", err
    assert "master key" in err["error"]["message"]
    # An alias another key holds (a config key's, or a generated key's), as LiteLLM refuses it.
    status, err = admin(gw, "POST", "/key/generate", {"key_alias": "search-prod"})
    assert status == 400, err
    assert err["error"] == {"message": "Key with alias 'search-prod' already exists. Unique key aliases across all keys are required.",
                            "type": "invalid_request_error", "param": "key_alias", "code": "key_alias_exists"}
    assert admin(gw, "GET", "/key/list")[1] == before
    status, first = admin(gw, "POST", "/key/generate", {"key_alias": "unique-alias"})
    assert status == 200, first
    status, second = admin(gw, "POST", "/key/generate", {"key_alias": "unique-alias-2"})
    assert status == 200, second
    assert admin(gw, "POST", "/key/generate", {"key_alias": "unique-alias"})[0] == 400
    status, err = admin(gw, "POST", "/key/update", {"key": second["key"], "key_alias": "unique-alias"})
    assert status == 400 and err["error"]["param"] == "key_alias", err
    # A key keeps its own alias on update, and a deleted key's alias is free again.
    assert admin(gw, "POST", "/key/update", {"key": first["key"], "key_alias": "unique-alias", "rpm_limit": 50})[0] == 200
    assert admin(gw, "POST", "/key/delete", {"keys": [first["key"], second["key"]]})[0] == 200
    status, again = admin(gw, "POST", "/key/generate", {"key_alias": "unique-alias"})
    assert status == 200, again
    assert admin(gw, "POST", "/key/delete", {"keys": [again["key"]]})[0] == 200


def test_a_key_created_again_after_delete_starts_from_zero(gw, mocks):
    key = "sk-recreated-after-delete-01"
    body = {"key": key, "max_budget": 1.0}
    assert admin(gw, "POST", "/key/generate", body)[0] == 200
    c = client(gw, key)
    c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "spend something"}], max_tokens=20)
    assert micro(info(gw, key)["spend"]) > 0
    # One request still in flight when the key is deleted and created again.
    mocks["openai"].enqueue(slow_completion(mocks["openai"], 1.5))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        late = pool.submit(c.chat.completions.create, model="gpt",
                           messages=[{"role": "user", "content": "in flight"}], max_tokens=20)
        assert mocks["openai"].wait_for(2, timeout=5), "the slow request reached the provider"
        assert admin(gw, "POST", "/key/delete", {"keys": [key]})[0] == 200
        status, again = admin(gw, "POST", "/key/generate", body)
        assert status == 200, again
        assert again["spend"] == 0
        late.result(timeout=10)
    got = info(gw, key)
    assert (got["spend"], got["reserved_spend"], got["current_parallel_requests"]) == (0, 0, 0), got
    c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "fresh"}], max_tokens=20)
    assert 0 < micro(info(gw, key)["spend"]) < 1000
    assert admin(gw, "POST", "/key/delete", {"keys": [key]})[0] == 200


def test_a_key_reads_its_own_info_and_nothing_else(gw):
    """LiteLLM lets a key read its own /key/info (how a team checks what its budget has left)."""
    own = KEYS["KEY_OTHER"]
    client(gw, own).chat.completions.create(model="gpt", messages=[{"role": "user", "content": "spend a little"}],
                                            max_tokens=5)
    for path in ("/key/info", f"/key/info?key={own}",
                 "/key/info?key=" + hashlib.sha256(own.encode()).hexdigest()):
        status, body = admin(gw, "GET", path, key=own)
        assert status == 200, (path, body)
        assert body["info"]["key_alias"] == "other" and body["info"]["max_budget"] == 25.0
        assert body["info"]["spend"] == info(gw, own)["spend"] > 0
    # Another key's info, the list and every write stay the master key's.
    status, body = admin(gw, "GET", f"/key/info?key={KEYS['KEY_SEARCH']}", key=own)
    assert status == 403 and body["error"]["code"] == "not_master_key", body
    assert "search-prod" not in json.dumps(body)
    assert admin(gw, "GET", "/key/list", key=own)[0] == 403
    assert admin(gw, "POST", "/key/generate", {"max_budget": 1}, key=own)[0] == 403
    assert admin(gw, "POST", "/key/update", {"key": own, "max_budget": 1000}, key=own)[0] == 403
    assert info(gw, own)["max_budget"] == 25.0
    # A refused key (blocked, expired, unknown) reads nothing.
    for key in (KEYS["KEY_BLOCKED"], KEYS["KEY_EXPIRED"], "sk-never-issued"):
        status, body = admin(gw, "GET", "/key/info", key=key)
        assert status in (401, 403), (key, status, body)
