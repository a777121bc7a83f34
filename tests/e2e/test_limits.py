"""What a client can make the gateway hold, over every protocol the listener speaks: the request
body limit (exact, over HTTP/1.1 and h2c), the response buffer (its own limit), the time to send a
request, the connections; and the OpenAI shape of the replies Envoy makes itself for them."""

import json
import os
import re
import socket
import threading
import time

import openai
import pytest

import h2c
from conftest import MASTER_KEY, gateway_config, gateway_env
from harness import Envoy, http, run_cli
from mocks.base import Stream

LIMIT = 64 * 1024  # tollgate_settings.max_request_body_bytes
RESPONSE_LIMIT = 256 * 1024  # tollgate_settings.max_response_body_bytes
KEY = "sk-limits-key-7c3e1a9b"
AUTH = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}


@pytest.fixture(scope="module")
def gw(mocks):
    config = gateway_config(mocks, tollgate_settings={
        "max_request_body_bytes": LIMIT, "max_response_body_bytes": RESPONSE_LIMIT,
        "request_headers_timeout": 1, "request_receive_timeout": 1.5})
    base = mocks["openai"].base_url + "/v1"
    for e in config["model_list"]:
        if e["model_name"] in ("gpt", "text-embed"):
            e["litellm_params"].update({"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6})
    # Two deployments make a routed group: its requests go through the attempt listener.
    config["model_list"] += [
        {"model_name": "pair", "litellm_params": {"model": f"openai/text-embedding-3-{size}", "api_base": base,
                                                  "api_key": "os.environ/OPENAI_API_KEY"},
         "model_info": {"mode": "embedding", "id": f"pair-{size}"}}
        for size in ("small", "large")]
    config["keys"] = [{"key": "os.environ/LIMITS_KEY", "key_alias": "limits", "max_budget": 10.0}]
    with Envoy(config, env={**gateway_env(mocks), "LIMITS_KEY": KEY}, concurrency=2) as envoy:
        yield envoy


def chat_body(size):
    """A chat request body of exactly `size` bytes, whose answer is short (the mock echoes the
    user's message; the padding is the system prompt)."""
    head = b'{"model":"gpt","messages":[{"role":"user","content":"hi"},{"role":"system","content":"'
    tail = b'"}]}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def post_h1(gw, body, headers=AUTH, path="/v1/chat/completions"):
    return http("POST", f"{gw.base_url}{path}", body, headers)


def post_h2(gw, body, headers=AUTH, path="/v1/chat/completions"):
    r = h2c.post(gw.port, path, body, headers)
    return r.status, r.headers, r.body


def error(body):
    return json.loads(body)["error"]


def too_large(status, body):
    err = error(body)
    return status == 413 and err["code"] == "request_too_large" and str(LIMIT) in err["message"] \
        and err["type"] == "invalid_request_error"


@pytest.mark.parametrize("post", [post_h1, post_h2], ids=["http1", "h2c"])
def test_a_body_of_exactly_the_limit_is_accepted_and_one_byte_more_is_a_413(gw, mocks, post):
    for size in (LIMIT - 1, LIMIT):
        status, _, body = post(gw, chat_body(size))
        assert status == 200, (size, body[:300])
    assert mocks["openai"].count() == 2
    status, _, body = post(gw, chat_body(LIMIT + 1))
    assert too_large(status, body), (status, body[:300])
    assert mocks["openai"].count() == 2


@pytest.mark.parametrize("cluster_header", [False, True], ids=["plain", "route-header"])
def test_h2_bodies_far_over_the_limit_are_refused(gw, mocks, cluster_header):
    """A client that names a cluster itself makes Envoy match the provider's route (whose buffer
    limit is the response's) before any filter runs: the limit holds all the same."""
    headers = dict(AUTH)
    if cluster_header:
        headers["x-tollgate-cluster"] = "tollgate_127.0.0.1_%d" % mocks["openai"].port
    r = h2c.post(gw.port, "/v1/chat/completions", chat_body(4 << 20), headers)
    assert too_large(r.status, r.body), (r.status, r.body[:300])
    assert mocks["openai"].count() == 0


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_parallel_oversized_h2_requests_pin_little_memory(gw, mocks):
    body = chat_body(8 << 20)
    before = rss_mib(gw.proc.pid)
    statuses, peak = [], [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib(gw.proc.pid))
            time.sleep(0.01)

    def one():
        statuses.append(h2c.post(gw.port, "/v1/chat/completions", body, AUTH).status)

    sampler = threading.Thread(target=sample)
    sampler.start()
    clients = [threading.Thread(target=one) for _ in range(16)]
    for t in clients:
        t.start()
    for t in clients:
        t.join()
    done.set()
    sampler.join()
    assert statuses == [413] * 16
    assert mocks["openai"].count() == 0
    # 16 x 8 MiB offered; each request may hold about the 64 KiB limit.
    assert peak[0] - before < 32, (before, peak[0])


def embeddings_client(gw, key=MASTER_KEY):
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=key, max_retries=0, timeout=20)


@pytest.mark.parametrize("model", ["text-embed", "pair"])
def test_a_response_over_the_request_limit_is_delivered(gw, mocks, model):
    """Response buffers are sized by max_response_body_bytes, not by the request limit: 8 inputs
    of 3,072 dimensions in base64 (the SDK's default) are a 130 KB body."""
    r = embeddings_client(gw).embeddings.create(model=model, input=["x"] * 8, dimensions=3072)
    assert len(r.data) == 8 and all(len(d.embedding) == 3072 for d in r.data)


def spend(gw, key):
    status, _, body = http("GET", f"{gw.base_url}/key/info?key={key}", None, {"authorization": f"Bearer {MASTER_KEY}"})
    assert status == 200, body
    return round(json.loads(body)["info"]["spend"] * 1_000_000)


@pytest.mark.parametrize("model", ["text-embed", "pair"])
def test_a_response_over_the_response_limit_is_an_openai_502_charged_its_reservation(gw, mocks, model):
    with pytest.raises(openai.InternalServerError) as e:
        embeddings_client(gw).embeddings.create(model=model, input=["x"] * 24, dimensions=3072)
    assert e.value.status_code == 502
    assert e.value.body["code"] == "response_too_large" and str(RESPONSE_LIMIT) in e.value.body["message"]
    assert e.value.body["type"] == "api_error"

    # The provider did the work and bills for it, but its usage never arrived: the reservation
    # (every body byte a prompt token at one micro-dollar), as for a stream cut off.
    before = spend(gw, KEY)
    body = json.dumps({"model": "text-embed", "input": ["x"] * 24, "dimensions": 3072}).encode()
    status, _, raw = post_h1(gw, body, {"authorization": f"Bearer {KEY}", "content-type": "application/json"},
                             path="/v1/embeddings")
    assert status == 502 and error(raw)["code"] == "response_too_large"
    assert spend(gw, KEY) - before == len(body)


def test_an_upstream_reset_in_the_middle_of_a_body_is_an_openai_502(gw, mocks):
    mocks["openai"].enqueue(Stream([b'{"id":"chatcmpl-1","object":"chat.completion",', b'"choices":[]}'],
                                   content_type="application/json", abort_after=1))
    c = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
    with pytest.raises(openai.InternalServerError) as e:
        c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 502
    assert e.value.body["code"] == "upstream_error" and "before its response was complete" in e.value.body["message"]


def check_errors(tmp_path, settings):
    doc = {"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-x"}}],
           "tollgate_settings": settings}
    path = os.path.join(tmp_path, "config.yaml")
    with open(path, "w") as f:
        json.dump(doc, f)
    r = run_cli("check", path)
    assert r.returncode == 1
    return r.stderr + r.stdout


def test_check_names_each_bad_body_limit(tmp_path):
    out = check_errors(tmp_path, {"max_response_body_bytes": 10, "max_request_body_bytes": 1 << 33})
    for field in ("max_response_body_bytes", "max_request_body_bytes"):
        assert f"tollgate_settings.{field}" in out, field


def request_head(version=b"HTTP/1.1", extra=b""):
    return (b"POST /v1/chat/completions " + version + b"\r\nhost: gw\r\nauthorization: Bearer "
            + MASTER_KEY.encode() + b"\r\ncontent-type: application/json\r\n" + extra)


def complete(reply):
    """Whether `reply` holds a whole HTTP/1.1 response (Envoy's replies carry a content-length)."""
    head, sep, body = reply.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    return bool(sep and length and len(body) >= int(length.group(1)))


def slow(port, first, drip, every, seconds):
    """Sends `first`, then `drip` every `every` s; returns (elapsed, reply) once the gateway has
    answered (or closed), or after `seconds`."""
    started = time.monotonic()
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as s:
        s.sendall(first)
        s.settimeout(every)
        while time.monotonic() - started < seconds:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                try:
                    s.sendall(drip)
                except OSError:
                    break
                continue
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if complete(out):
                break
    return time.monotonic() - started, out


def test_a_request_sent_too_slowly_is_an_openai_408(gw, mocks):
    # Headers a line at a time: request_headers_timeout (1 s).
    elapsed, reply = slow(gw.port, b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n", b"x-a: b\r\n", 0.2, 10)
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert "request_headers_timeout" in error(reply.partition(b"\r\n\r\n")[2])["message"]
    assert elapsed < 5
    # The body a byte at a time: request_receive_timeout (1.5 s), however often a byte arrives.
    elapsed, reply = slow(gw.port, request_head(extra=b"content-length: 1000\r\n\r\n"), b" ", 0.2, 10)
    assert reply.startswith(b"HTTP/1.1 408"), reply
    err = error(reply.partition(b"\r\n\r\n")[2])
    assert err["code"] == "request_timeout" and "request_receive_timeout" in err["message"]
    assert elapsed < 5
    assert mocks["openai"].count() == 0


def test_a_stream_may_last_longer_than_the_request_timeout(gw, mocks):
    def slow_stream(req):
        s = mocks["openai"].respond(req)
        s.delay = 0.3
        return s

    mocks["openai"].enqueue(slow_stream)
    c = openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
    started = time.monotonic()
    chunks = list(c.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "one two three four five six"}],
                                            stream=True))
    assert time.monotonic() - started > 2  # longer than request_receive_timeout
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "echo: one two three four five six"


def test_connections_past_the_limit_are_closed(mocks):
    config = gateway_config(mocks, tollgate_settings={"max_downstream_connections": 2})
    with Envoy(config, env=gateway_env(mocks), concurrency=1) as envoy:
        held = [socket.create_connection(("127.0.0.1", envoy.port), timeout=5) for _ in range(2)]
        try:
            time.sleep(0.2)
            with socket.create_connection(("127.0.0.1", envoy.port), timeout=5) as extra:
                try:
                    extra.sendall(b"GET /health/liveliness HTTP/1.1\r\nhost: gw\r\n\r\n")
                    assert extra.recv(4096) == b""
                except ConnectionResetError:
                    pass
            assert "downstream_global_cx_overflow: 1" in envoy.stats("downstream_global_cx_overflow")
        finally:
            for s in held:
                s.close()
        time.sleep(0.2)
        status, _, _ = http("GET", f"{envoy.base_url}/health/liveliness")
        assert status == 200


def test_check_names_each_bad_client_limit(tmp_path):
    out = check_errors(tmp_path, {"request_headers_timeout": -1, "request_receive_timeout": "soon",
                                  "max_downstream_connections": 0})
    for field in ("request_headers_timeout", "request_receive_timeout", "max_downstream_connections"):
        assert f"tollgate_settings.{field}" in out, field


def raw_exchange(port, data, timeout=5):
    """Sends raw bytes, returns (status, body) of the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while not complete(out) and (chunk := s.recv(65536)):
                out += chunk
        except ConnectionResetError:
            pass
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


BODY = b'{"model":"gpt","messages":[{"role":"user","content":"hi"}]}'


@pytest.mark.parametrize("name,data,status,contains", [
    ("malformed chunk", request_head(extra=b"transfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"), 400, "http1.codec_error"),
    ("content-length with chunked", request_head(extra=b"content-length: %d\r\ntransfer-encoding: chunked\r\n\r\n" % len(BODY))
     + b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY), 400, "content_length_and_chunked_not_allowed"),
    ("invalid header", request_head(extra=b"bad header: x\r\n\r\n"), 400, "http1.codec_error"),
    ("http/1.0", request_head(b"HTTP/1.0", b"content-length: %d\r\n\r\n" % len(BODY)) + BODY, 426, "HTTP/1.0 is not supported"),
])
def test_requests_envoys_codec_refuses_get_openai_errors(gw, name, data, status, contains):
    got, body = raw_exchange(gw.port, data)
    assert got == status
    err = error(body)
    assert contains in err["message"] and err["type"] == "invalid_request_error", err


def test_the_filters_own_errors_keep_their_message(gw):
    status, _, body = post_h1(gw, b'{"model": "gpt", "messages": [')
    assert status == 400 and "could not parse" in error(body)["message"]
