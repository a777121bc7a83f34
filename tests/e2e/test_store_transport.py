"""How the filter reaches the shared store: Envoy processes against one Redis behind webdis, in
both forms. A tiny probe library stands in for Tollgate's: its `tg_sync` counts each process's
heartbeats under the replica id it is called with. Shown here: one heartbeat per process per
period whatever the worker count, each process under its own replica id, with webdis's basic
auth; failures counted (and requests served) while webdis is down; a request whose body phase
waits for a store call and then goes on; the store's health check; the last call at a stop."""

import json
import os
import re
import signal
import subprocess
import time
import urllib.request

import openai
import pytest
import yaml

from conftest import MASTER_KEY
from harness import ENVOY, FILTER, MODULE, ROOT, WASM, Envoy, free_port, http, run_cli
from redis_stack import Stack, Webdis

TICK_MS = 100
LIBRARY_VERSION = re.search(r"^local VERSION = '([^']+)'", open(os.path.join(ROOT, "src", "store", "tollgate.lua")).read(), re.M).group(1)

# Counts each call per replica, and keeps (time, seq) of each. Named like Tollgate's library, so
# the health check finds it.
PROBE = """#!lua name=tollgate
redis.register_function('tg_sync', function(keys, args)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HINCRBY', 'probe:beats', args[1], 1)
  redis.call('RPUSH', 'probe:at:' .. args[1], now)
  redis.call('SET', 'probe:payload', args[3])
  return cjson.encode({seq = tonumber(args[2]), now_ms = now})
end)
"""


def load_probe(stack):
    assert stack.webdis.call_when_up("FUNCTION", "LOAD", "REPLACE", PROBE) == (200, {"FUNCTION": "tollgate"})


def beats(stack):
    """Heartbeats so far, by replica id."""
    flat = stack.redis.command("HGETALL", "probe:beats") or []
    return {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}


@pytest.fixture(scope="module")
def stack():
    with Stack() as s:
        load_probe(s)
        yield s


@pytest.fixture(autouse=True)
def _fresh_probe(stack):
    # Whatever a test did to webdis or the library, the next starts with both up.
    if stack.webdis.proc.poll() is not None:
        stack.webdis.start()
    load_probe(stack)
    stack.redis.command("DEL", "probe:beats", "probe:payload")
    yield


def store_config(stack, mocks=None, auth="os.environ/TOLLGATE_STORE_AUTH", **store):
    store.setdefault("tick_ms", TICK_MS)
    config = {
        "model_list": mocks["openai"].model_list(mocks["openai"].base_url)[:1] if mocks else [
            {"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-unused",
                                                   "api_base": "http://127.0.0.1:9/v1"}}],
        "general_settings": {"master_key": "os.environ/TOLLGATE_MASTER_KEY"},
        "tollgate_settings": {"store": {"url": stack.webdis.url, "auth": auth, **store}},
    }
    return config


def gateway_env(stack, mocks=None):
    env = {"TOLLGATE_MASTER_KEY": MASTER_KEY, "TOLLGATE_STORE_AUTH": stack.webdis.auth}
    if mocks:
        env.update(mocks["openai"].env)
    return env


def prometheus(envoy):
    with urllib.request.urlopen(f"http://127.0.0.1:{envoy.admin_port}/stats/prometheus", timeout=10) as r:
        return r.read().decode()


def metric(envoy, name, **labels):
    for line in prometheus(envoy).splitlines():
        m = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            return float(m.group(2))
    return 0.0


def health(envoy, key=MASTER_KEY):
    status, _, body = http("GET", envoy.base_url + "/tollgate/store/health",
                           headers={"authorization": f"Bearer {key}"}, timeout=10)
    return status, json.loads(body)


def wait_for(predicate, timeout=10.0, every=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    return predicate()


def test_each_process_heartbeats_once_per_period_under_its_own_id(stack):
    """Three Envoy processes, two workers each: each heartbeats once per period (not once per
    worker), under a replica id of its own that its health check reports, with the store's
    credentials (webdis refuses Tollgate's commands without them)."""
    envoys = [Envoy(store_config(stack), env=gateway_env(stack), concurrency=2) for _ in range(3)]
    try:
        for e in envoys:
            e.start()
        ids = [health(e)[1]["replica"] for e in envoys]
        assert len(set(ids)) == 3 and all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids), ids
        assert wait_for(lambda: set(beats(stack)) >= set(ids)), beats(stack)
        start = beats(stack)
        window = 2.0
        time.sleep(window)
        end = beats(stack)
        expected = window * 1000 / TICK_MS
        for i in ids:
            got = end[i] - start.get(i, 0)
            # Once per process per period: about 20, where once per worker would be about 40.
            assert 0.7 * expected <= got <= 1.3 * expected, (i, got, expected)
            times = [int(t) for t in stack.redis.command("LRANGE", f"probe:at:{i}", -10, -1)]
            gaps = sorted(b - a for a, b in zip(times, times[1:]))
            assert gaps[len(gaps) // 2] >= 0.75 * TICK_MS, gaps
        # The replica's own account of it, in Prometheus (call and outcome labels).
        ok = metric(envoys[0], "tollgate_store_calls_total", call="tg_sync", outcome="ok")
        assert ok >= end[ids[0]] - 1, (ok, end[ids[0]])
        assert metric(envoys[0], "tollgate_store_up") == 1
        # The payload: the engine's sync with nothing to settle, naming the library it speaks to.
        payload = json.loads(stack.redis.command("GET", "probe:payload"))
        payload.pop("changes_after", None)  # the key change log's cursor, once a sync answered
        assert payload == {"library": LIBRARY_VERSION, "ttl_ms": 3000, "parties": [],
                           "spend_log_keep": 100_000}, payload
    finally:
        for e in envoys:
            e.stop()


def test_calls_without_the_right_credentials_are_refused_and_counted(stack):
    e = Envoy(store_config(stack, auth="os.environ/WRONG_AUTH"),
              env={**gateway_env(stack), "WRONG_AUTH": "tollgate:not-the-password"})
    with e:
        assert wait_for(lambda: metric(e, "tollgate_store_calls_total", call="tg_sync", outcome="forbidden") >= 3)
        assert beats(stack) == {}
        assert metric(e, "tollgate_store_up") == 0
        status, body = health(e)
        assert status == 503 and body["error"]["code"] == "store_unavailable"
        assert "403" in body["error"]["message"]
        # The credentials never reach a client.
        assert "not-the-password" not in str(body)


@pytest.fixture(scope="module")
def gateway_with_store(stack, mocks):
    e = Envoy(store_config(stack, mocks), env=gateway_env(stack, mocks), concurrency=2)
    e.start()
    yield e
    e.stop()


def test_while_webdis_is_down_calls_fail_counted_and_requests_are_served(stack, gateway_with_store, mocks):
    e = gateway_with_store
    client = openai.OpenAI(base_url=f"{e.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
    assert wait_for(lambda: beats(stack))
    stack.webdis.stop()
    failed = lambda: sum(metric(e, "tollgate_store_calls_total", call="tg_sync", outcome=o)
                         for o in ("unanswered", "unavailable", "not_sent"))
    before = failed()
    assert wait_for(lambda: failed() >= before + 5)
    assert metric(e, "tollgate_store_up") == 0
    stopped = beats(stack)
    # Requests keep being served, and the health check says what is wrong.
    r = client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "still there?"}])
    assert r.choices[0].message.content
    assert client.models.list().data
    status, body = health(e)
    assert status == 503 and body["error"]["code"] == "store_unavailable"
    # Back: heartbeats resume where they stopped (no worker's VM died meanwhile).
    stack.webdis.start()
    assert wait_for(lambda: sum(beats(stack).values()) >= sum(stopped.values()) + 3)
    assert wait_for(lambda: metric(e, "tollgate_store_up") == 1)
    assert health(e)[0] == 200
    log = e.log()
    assert "the shared store does not answer" in log and "the shared store answers again" in log
    assert "panicked" not in log


def test_a_missing_library_is_loaded_by_the_filter(stack, gateway_with_store):
    """Redis without the library (a fresh Redis, or one whose functions were flushed): the sync
    finds it missing (counted), loads the library the filter carries, and goes on with it."""
    e = gateway_with_store
    stack.redis.command("FUNCTION", "DELETE", "tollgate")
    assert wait_for(lambda: metric(e, "tollgate_store_calls_total", call="function_load", outcome="ok") >= 1)
    assert metric(e, "tollgate_store_calls_total", call="tg_sync", outcome="library_missing") >= 1
    assert wait_for(lambda: stack.webdis.call("FCALL", "tg_version", 0)[1] == {"FCALL": json.dumps({"version": LIBRARY_VERSION}, separators=(",", ":"))})
    assert wait_for(lambda: health(e)[1].get("library_loaded") is True)
    assert metric(e, "tollgate_store_up") == 1


def commandstat(stack, command):
    info = stack.redis.command("INFO", "commandstats") or ""
    m = re.search(rf"cmdstat_{command}:calls=(\d+)", info)
    return int(m.group(1)) if m else 0


def test_a_request_waits_in_its_body_phase_for_the_store_then_goes_on(stack, gateway_with_store, mocks):
    """The master key's `x-tollgate-store-probe` makes the body phase wait for one store call:
    the request reaches the provider only after the store answered, translated as usual, and is
    refused (the provider never sees it) when the store does not answer."""
    e = gateway_with_store
    client = openai.OpenAI(base_url=f"{e.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20,
                           default_headers={"x-tollgate-store-probe": "1"})
    calls = commandstat(stack, "function\\|list")
    r = client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "wait for the store"}])
    assert r.choices[0].message.content and r.model == "gpt"
    assert commandstat(stack, "function\\|list") == calls + 1
    sent = mocks["openai"].received
    assert len(sent) == 1 and sent[0].json["model"] == "gpt-4o-mini"
    assert "x-tollgate-store-probe" not in sent[0].headers

    stack.webdis.stop()
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "no store"}])
    assert err.value.status_code == 503
    assert err.value.body["code"] == "store_unavailable"
    assert len(mocks["openai"].received) == 1
    stack.webdis.start()


def test_the_health_check_is_for_the_master_key(gateway_with_store):
    status, body = health(gateway_with_store, key="sk-not-a-key")
    assert status == 401
    status, body = health(gateway_with_store)
    assert status == 200 and body["status"] == "healthy" and body["library_loaded"] is True


def test_the_last_call_when_envoy_stops(stack):
    """SIGTERM: one last call per process. The dynamic module sends it over a socket of its own
    and it lands; the `.wasm`'s, from its root contexts' `on_done`, is made once (not once per
    worker) but never answered: Envoy stops its event loop first (see ARCHITECTURE.md)."""
    # Long periods: the first heartbeat comes a quarter period after the start, the next only
    # after the stop, so a heartbeat after the stop is the last call.
    e = Envoy(store_config(stack, tick_ms=4000, replica_ttl_ms=6000), env=gateway_env(stack), concurrency=2)
    e.start()
    replica = health(e)[1]["replica"]
    assert wait_for(lambda: beats(stack).get(replica))
    before = beats(stack)[replica]
    e.proc.send_signal(signal.SIGTERM)
    assert e.proc.wait(timeout=20) == 0
    log = e.log()
    after = beats(stack)[replica]
    if FILTER == "module":
        assert "the store's last tg_sync before stopping was answered" in log
        assert after == before + 1
    else:
        assert log.count("stopping: the store's last tg_sync") == 1, log[-3000:]
    assert "panicked" not in log
    e.stop()


once = pytest.mark.skipif(FILTER == "module", reason="no filter involved: run once")


@once
def test_webdis_config_lets_through_only_tollgates_calls_with_its_credentials(stack, tmp_path):
    """`tollgate webdis-config` writes a webdis.json that real webdis runs with: Tollgate's
    commands pass with the store's credentials, nothing passes without them, and no other
    command passes at all."""
    port = free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-a"}}],
        "router_settings": {"redis_host": "127.0.0.1", "redis_port": stack.redis.port},
        "tollgate_settings": {"store": {"url": f"http://127.0.0.1:{port}", "auth": "os.environ/TOLLGATE_STORE_AUTH"}},
    }))
    out = tmp_path / "webdis.json"
    r = run_cli("webdis-config", str(cfg), "-o", str(out),
                env={**os.environ, "TOLLGATE_STORE_AUTH": "tg:side-car-pw"})
    assert r.returncode == 0, r.stderr
    assert "router_settings.redis_host" in r.stderr and "webdis" in r.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    written = json.loads(out.read_text())
    assert (written["http_host"], written["http_port"], written["redis_port"]) == ("127.0.0.1", port, stack.redis.port)
    written["logfile"] = str(tmp_path / "webdis.log")
    w = Webdis(stack.redis, user="tg", password="side-car-pw")
    w.port = port
    try:
        w.start(config=written)
        assert w.call_when_up("FCALL", "tg_sync", 0, "r", "1", "{}")[0] == 200
        assert w.call("FUNCTION", "LIST", "LIBRARYNAME", "tollgate") == (200, {"FUNCTION": [None]})
        assert w.call("FCALL", "tg_sync", 0, "r", "2", "{}", auth=False)[0] == 403
        for command in (("SET", "a", "b"), ("KEYS", "*"), ("FLUSHALL",), ("CONFIG", "GET", "dir")):
            assert w.call(*command, timeout=3)[0] == 403, command
    finally:
        w.close()
    # Without the credentials in the environment, it says what is missing.
    r = run_cli("webdis-config", str(cfg), env={k: v for k, v in os.environ.items() if k != "TOLLGATE_STORE_AUTH"})
    assert r.returncode != 0 and "TOLLGATE_STORE_AUTH is not set" in r.stderr


@once
def test_check_names_store_errors_and_the_example_renders(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-a"}}],
        "tollgate_settings": {"store": {"url": "https://webdis:7379", "tick_ms": 5, "failure_mode": "open"}},
    }))
    r = run_cli("check", str(bad))
    assert r.returncode == 1
    for needle in ("tollgate_settings.store.url: 'https://webdis:7379' is https",
                   "tollgate_settings.store.tick_ms: must be a number >= 10",
                   "tollgate_settings.store.failure_mode: 'open' is not a failure mode"):
        assert needle in r.stderr, r.stderr
    example = f"{ROOT}/examples/replicas.yaml"
    r = run_cli("check", example)
    assert r.returncode == 0, r.stderr
    env = {**os.environ, "OPENAI_API_KEY": "sk-x", "TOLLGATE_MASTER_KEY": "sk-m",
           "TOLLGATE_STORE_AUTH": "tg:pw"}
    for flag, path in (("--wasm", WASM), ("--module", MODULE)):
        out = tmp_path / "envoy.yaml"
        assert run_cli("render", example, flag, path, "-o", str(out)).returncode == 0
        text = out.read_text()
        assert "tollgate_store" in text and "tg:pw" not in text
        v = subprocess.run([ENVOY, "--mode", "validate", "-c", str(out)], capture_output=True, text=True,
                           timeout=60, env=env)
        assert v.returncode == 0, v.stdout[-2000:] + v.stderr[-2000:]
