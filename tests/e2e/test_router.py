"""Model groups through a real Envoy: load balancing, retries, cooldowns and fallbacks (to another
provider too), with the official OpenAI SDK as the client."""

import concurrent.futures
import http.client
import json
import re
import time
import urllib.request

import openai
import pytest

from conftest import MASTER_KEY, gateway_env
from harness import Envoy, free_port
from mocks.base import Hang, Json, Stream, sse
from mocks.openai_mock import OpenAIMock, openai_error

N_MOCKS = 10


@pytest.fixture(scope="module")
def pool():
    """OpenAI-compatible mock servers of this module's own (each test sets their behaviour)."""
    mocks = [OpenAIMock().start() for _ in range(N_MOCKS)]
    yield mocks
    for m in mocks:
        m.stop()


@pytest.fixture(autouse=True)
def _reset_pool(pool):
    for m in pool:
        m.reset()
    yield


def deployment(alias, mock, model, **params):
    return {"model_name": alias, "litellm_params": {"model": f"openai/{model}", "api_base": f"{mock.base_url}/v1",
                                                    "api_key": "os.environ/OPENAI_API_KEY", **params},
            "model_info": {"id": model}}


def gateway(mocks, model_list, router_settings, concurrency=2):
    anthropic = mocks["anthropic"]
    model_list = model_list + [{
        "model_name": "smart-backup",
        "litellm_params": {"model": "anthropic/claude-sonnet-4-5", "api_base": anthropic.base_url, "api_key": "os.environ/ANTHROPIC_API_KEY"},
        "model_info": {"id": "backup-claude"},
    }]
    config = {"model_list": model_list, "router_settings": router_settings,
              "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"}}
    return Envoy(config, env=gateway_env(mocks), concurrency=concurrency)


def sdk(gw):
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)


def call(gw, model, content="hello", stream=False, **kw):
    """One request with a fresh connection (so calls spread over Envoy's workers). Returns
    (status, headers, body)."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": content}], "stream": stream, **kw}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.request("POST", "/v1/chat/completions", body,
                      {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def prometheus(gw):
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.admin_port}/stats/prometheus", timeout=10) as r:
        return r.read().decode()


def metric(text, name, **labels):
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m and all(dict(re.findall(r'(\w+)="([^"]*)"', m.group(1))).get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


# --- load balancing ---------------------------------------------------------------------------

def test_weighted_shuffle_distribution(mocks, pool):
    a, b = pool[0], pool[1]
    with gateway(mocks, [deployment("weighted", a, "wa", weight=3), deployment("weighted", b, "wb", weight=1)],
                 {"routing_strategy": "simple-shuffle"}) as gw:
        def one(i):
            s, h, _ = call(gw, "weighted", f"n{i}")
            assert s == 200
            return h["x-tollgate-model-id"]
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            served = list(ex.map(one, range(2000)))
    share = served.count("wa") / len(served)
    # Binomial(2000, 0.75): standard deviation 0.0097; five of them either side.
    assert abs(share - 0.75) < 0.05, share
    assert a.count() == served.count("wa") and b.count() == served.count("wb")


def slow(mock, seconds):
    def action(req):
        time.sleep(seconds)
        return mock.respond(req)
    return action


def test_least_busy_avoids_a_deployment_held_busy(mocks, pool):
    busy, free = pool[2], pool[3]
    busy.forced = slow(busy, 1.5)
    with gateway(mocks, [deployment("pair", busy, "busy"), deployment("pair", free, "free")],
                 {"routing_strategy": "least-busy"}) as gw:
        # Hold the slow deployment busy: the first requests find both idle and some land on it.
        with concurrent.futures.ThreadPoolExecutor(24) as ex:
            first = [ex.submit(call, gw, "pair", "warm") for _ in range(6)]
            time.sleep(0.3)
            # One at a time, so the idle deployment stays idle between them.
            later = [call(gw, "pair", f"n{i}")[1]["x-tollgate-model-id"] for i in range(30)]
            for f in first:
                assert f.result()[0] == 200
    # While the slow one holds requests, new ones go to the idle one.
    assert later.count("free") >= 27, later


def test_latency_routing_moves_traffic_off_a_slow_deployment(mocks, pool):
    a, b = pool[4], pool[5]
    with gateway(mocks, [deployment("lat", a, "lat-a"), deployment("lat", b, "lat-b")],
                 {"routing_strategy": "latency-based-routing"}) as gw:
        for i in range(10):
            assert call(gw, "lat", f"warm {i}")[0] == 200
        a.forced = slow(a, 0.4)
        served = [call(gw, "lat", f"n{i}")[1]["x-tollgate-model-id"] for i in range(30)]
    # After the slow answers are measured, the fast deployment takes (nearly) all the traffic.
    assert served[10:].count("lat-b") >= 19, served


# --- retries, timeouts and fallbacks to another provider --------------------------------------

FAILURES = {
    "429": lambda m: Json({"error": {"message": "Rate limit reached", "type": "requests", "param": None, "code": "rate_limit_exceeded"}}, status=429),
    "500": lambda m: Json({"error": {"message": "The server had an error", "type": "server_error", "param": None, "code": None}}, status=500),
    "529": lambda m: Json({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, status=529),
    "timeout": lambda m: Hang(3),
}


@pytest.fixture(scope="module")
def fallback_gw(mocks, pool):
    primary, dead_port = pool[6], free_port()
    model_list = [
        deployment("smart", primary, "primary", timeout=1),
        {"model_name": "dead", "litellm_params": {"model": "openai/x", "api_base": f"http://127.0.0.1:{dead_port}/v1",
                                                  "api_key": "os.environ/OPENAI_API_KEY"}, "model_info": {"id": "dead-one"}},
    ]
    with gateway(mocks, model_list, {"num_retries": 1, "disable_cooldowns": True,
                                     "fallbacks": [{"smart": ["smart-backup"]}, {"dead": ["smart-backup"]}]}) as gw:
        yield gw


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("failure", list(FAILURES), ids=list(FAILURES))
def test_a_failing_primary_falls_back_to_another_provider(fallback_gw, mocks, pool, failure, stream):
    primary = pool[6]
    primary.forced = FAILURES[failure](primary)
    client = sdk(fallback_gw)
    msgs = [{"role": "user", "content": "rescue me"}]
    if stream:
        raw = client.chat.completions.with_raw_response.create(model="smart", messages=msgs, stream=True,
                                                              stream_options={"include_usage": True})
        chunks = list(raw.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert all(c.model == "smart" for c in chunks)
        assert chunks[-1].usage is not None
    else:
        raw = client.chat.completions.with_raw_response.create(model="smart", messages=msgs)
        r = raw.parse()
        text = r.choices[0].message.content
        assert r.model == "smart"
    assert "rescue me" in text
    h = raw.headers
    assert h["x-tollgate-model-id"] == "backup-claude"
    assert h["x-tollgate-attempted-fallbacks"] == "1"
    # One retry on the same (only) deployment of the group, then the fallback.
    assert h["x-tollgate-attempted-retries"] == "1"
    assert primary.count() == 2 or failure == "timeout"
    assert mocks["anthropic"].count() == 1
    # The fallback got Anthropic's native request, built from the client's original body.
    sent = mocks["anthropic"].last()
    assert sent.path == "/v1/messages"
    assert sent.json["messages"][0]["content"] == [{"type": "text", "text": "rescue me"}]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_an_unreachable_primary_falls_back(fallback_gw, mocks, stream):
    raw = sdk(fallback_gw).chat.completions.with_raw_response.create(model="dead", messages=[{"role": "user", "content": "hi"}], stream=stream)
    assert raw.headers["x-tollgate-model-id"] == "backup-claude"
    if stream:
        chunks = list(raw.parse())
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) and all(c.model == "dead" for c in chunks)
    else:
        assert raw.parse().model == "dead"
    log = fallback_gw.log()
    assert re.search(r"falling back from 'dead' to 'smart-backup' after ServerError", log), log[-2000:]


def test_a_bad_request_is_not_retried(fallback_gw, pool, mocks):
    primary = pool[6]
    primary.forced = lambda req: openai_error(400, "Invalid value for 'temperature'", param="temperature")
    with pytest.raises(openai.BadRequestError):
        sdk(fallback_gw).chat.completions.create(model="smart", messages=[{"role": "user", "content": "x"}])
    assert primary.count() == 1 and mocks["anthropic"].count() == 0


def test_retry_and_fallback_stats(fallback_gw):
    text = prometheus(fallback_gw)
    assert metric(text, "tollgate_router_retries_total", model="smart", provider="openai") > 0
    assert metric(text, "tollgate_router_fallbacks_total", model="smart", provider="openai") > 0


# --- cooldown ----------------------------------------------------------------------------------

def test_cooldown_is_shared_by_all_workers(mocks, pool):
    bad, good = pool[7], pool[8]
    bad.forced = lambda req: Json({"error": {"message": "boom", "type": "server_error", "param": None, "code": None}}, status=500)
    with gateway(mocks, [deployment("cool", bad, "bad"), deployment("cool", good, "good")],
                 {"allowed_fails": 2, "cooldown_time": 3, "num_retries": 2}, concurrency=4) as gw:
        for i in range(20):
            s, h, _ = call(gw, "cool", f"n{i}")
            assert s == 200 and h["x-tollgate-model-id"] == "good"
            if bad.count() >= 2:
                break
        assert bad.count() == 2, "the failing deployment cools down after allowed_fails failures"
        cooled_at = time.time()
        text = prometheus(gw)
        assert metric(text, "tollgate_deployment_cooling", deployment="bad") == 1
        assert metric(text, "tollgate_router_cooldowns_total", deployment="bad") == 1
        # Every worker skips it for the cooldown (new connections land on all four).
        while time.time() - cooled_at < 2.5:
            assert call(gw, "cool", "while cooling")[0] == 200
        assert bad.count() == 2
        time.sleep(max(0, 3.2 - (time.time() - cooled_at)))
        bad.forced = None
        served = {call(gw, "cool", f"after {i}")[1]["x-tollgate-model-id"] for i in range(20)}
        assert "bad" in served, "after the cooldown the deployment receives requests again"


# --- context-window and content-policy chains --------------------------------------------------

@pytest.fixture(scope="module")
def chains_gw(mocks, pool):
    main, longer, safer, general = pool[9], pool[0], pool[1], pool[2]
    model_list = [
        deployment("ctx", main, "ctx-main", input_cost_per_token=1e-6, output_cost_per_token=1e-6),
        deployment("ctx-long", longer, "long"),
        deployment("ctx-safe", safer, "safe"),
        deployment("ctx-general", general, "general"),
        deployment("tiny", main, "tiny-main"),
    ]
    model_list[-1]["model_info"]["max_input_tokens"] = 50
    with gateway(mocks, model_list, {
        "fallbacks": [{"ctx": ["ctx-general"]}],
        "context_window_fallbacks": [{"ctx": ["ctx-long"]}, {"tiny": ["ctx-long"]}],
        "content_policy_fallbacks": [{"ctx": ["ctx-safe"]}],
    }) as gw:
        yield gw


def test_context_window_errors_use_their_own_chain(chains_gw, pool):
    main, longer, general = pool[9], pool[0], pool[2]
    main.enqueue(openai_error(400, "This model's maximum context length is 8192 tokens.", param="messages", code="context_length_exceeded"))
    raw = sdk(chains_gw).chat.completions.with_raw_response.create(model="ctx", messages=[{"role": "user", "content": "long one"}])
    assert raw.headers["x-tollgate-model-id"] == "long"
    assert raw.parse().choices[0].message.content == "echo: long one"
    assert (main.count(), longer.count(), general.count()) == (1, 1, 0)


def test_content_policy_errors_use_their_own_chain(chains_gw, pool):
    main, safer, general = pool[9], pool[1], pool[2]
    main.enqueue(Json({"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
                                 "type": None, "param": "prompt", "code": "content_filter"}}, status=400))
    raw = sdk(chains_gw).chat.completions.with_raw_response.create(model="ctx", messages=[{"role": "user", "content": "edgy"}])
    assert raw.headers["x-tollgate-model-id"] == "safe"
    assert (main.count(), safer.count(), general.count()) == (1, 1, 0)


def test_pre_call_check_skips_a_too_small_context_window(chains_gw, pool):
    main, longer = pool[9], pool[0]
    raw = sdk(chains_gw).chat.completions.with_raw_response.create(model="tiny", messages=[{"role": "user", "content": "word " * 200}])
    assert raw.headers["x-tollgate-model-id"] == "long"
    assert main.count() == 0, "the deployment whose context window is too small is never called"
    assert longer.count() == 1


# --- everything down ---------------------------------------------------------------------------

def test_every_deployment_down_fails_fast_without_a_retry_storm(mocks, pool):
    a, b = pool[3], pool[4]
    for m in (a, b):
        m.forced = lambda req: Json({"error": {"message": "down", "type": "server_error", "param": None, "code": None}}, status=503)
    anthropic = mocks["anthropic"]
    anthropic.forced = lambda req: Json({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, status=529)
    with gateway(mocks, [deployment("down", a, "down-a"), deployment("down", b, "down-b")],
                 {"num_retries": 2, "allowed_fails": 100, "fallbacks": [{"down": ["smart-backup"]}]}) as gw:
        started = time.time()
        with pytest.raises(openai.InternalServerError) as e:
            sdk(gw).chat.completions.create(model="down", messages=[{"role": "user", "content": "anyone?"}])
        assert time.time() - started < 5
        assert e.value.status_code == 503
        # Three attempts in the group (1 + num_retries), then three in the fallback group.
        assert a.count() + b.count() == 3 and anthropic.count() == 3
        assert e.value.response.headers["x-tollgate-attempted-fallbacks"] == "1"
    # With cooldowns on, a group whose deployments all cool down answers at once, without
    # calling anyone (a lone deployment is never cooled: there would be nothing to try instead).
    with gateway(mocks, [deployment("down", a, "down-a2"), deployment("down", b, "down-b2")],
                 {"allowed_fails": 1, "cooldown_time": 30, "num_retries": 1}) as gw:
        call(gw, "down")
        assert a.count() + b.count() == 5, "one attempt on each, then both cool down"
        before = a.count() + b.count()
        with pytest.raises(openai.RateLimitError) as e:
            sdk(gw).chat.completions.create(model="down", messages=[{"role": "user", "content": "anyone?"}])
        assert e.value.code == "no_deployments_available"
        assert a.count() + b.count() == before
