"""Provider keys never reach clients (bodies, headers, stream events, errors) or Envoy's log, and the
client's own key never reaches a provider."""

import json
import urllib.request

import openai
import pytest

from conftest import MASTER_KEY, gateway_env
from harness import http
from mocks.base import Raw, Stream, sse


def chat_aliases(mocks):
    for m in mocks.values():
        for entry in m.model_list(m.base_url):
            if (entry.get("model_info") or {}).get("mode") != "embedding":
                yield m, entry["model_name"]


def leaky_error(req):
    # A provider that echoes the credential it rejected, in every common error field.
    creds = " ".join(v for k, v in req.headers.items() if k in ("authorization", "x-api-key", "api-key", "x-goog-api-key"))
    msg = f"invalid credential {creds}"
    body = {"type": "error", "message": msg, "error": {"type": "authentication_error", "message": msg, "code": 401, "status": "UNAUTHENTICATED"}}
    return Raw(json.dumps(body).encode(), status=401, headers={"x-amzn-errortype": "UnrecognizedClientException"})


def test_no_key_leaks(gateway, mocks):
    secrets = {k: v for k, v in gateway_env(mocks).items() if k != "TOLLGATE_MASTER_KEY"}
    assert secrets
    seen = []
    headers = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}
    for mock, alias in chat_aliases(mocks):
        for body in ({"model": alias, "messages": [{"role": "user", "content": "hi"}]},
                     {"model": alias, "messages": [{"role": "user", "content": "hi"}], "stream": True}):
            s, h, b = http("POST", f"{gateway.base_url}/v1/chat/completions", body, headers)
            seen.append((alias, s, json.dumps(h), b.decode(errors="replace")))
        mock.enqueue(leaky_error)
        s, h, b = http("POST", f"{gateway.base_url}/v1/chat/completions",
                       {"model": alias, "messages": [{"role": "user", "content": "hi"}]}, headers)
        assert s >= 400, (alias, b)
        seen.append((alias, s, json.dumps(h), b.decode(errors="replace")))
        # A non-JSON error page echoing the credentials this request carried (all a provider can know).
        mock.enqueue(lambda req: Raw(("Unauthorized: " + "; ".join(req.headers.values())).encode(), status=401, content_type="text/plain"))
        s, h, b = http("POST", f"{gateway.base_url}/v1/chat/completions",
                       {"model": alias, "messages": [{"role": "user", "content": "hi"}]}, headers)
        seen.append((alias, s, json.dumps(h), b.decode(errors="replace")))

    for alias, status, hdrs, body in seen:
        for name, value in secrets.items():
            assert value not in hdrs and value not in body, f"{name} leaked to the client via {alias} ({status}): {body[:300]}"

    for m in mocks.values():
        for req in m.received:
            assert MASTER_KEY not in json.dumps(req.headers), f"the client's key reached {m.name}"

    log = gateway.log()
    for name, value in {**secrets, "TOLLGATE_MASTER_KEY": MASTER_KEY}.items():
        assert value not in log, f"{name} appears in Envoy's log"
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.admin_port}/config_dump", timeout=10) as r:
        dump = r.read().decode()
    for name, value in secrets.items():
        assert value not in dump, f"{name} appears in Envoy's config dump"


# Every provider-originated byte a client can see is checked against every configured secret:
# error events inside streams (each provider's own format), response headers (including the ones
# a gateway might think harmless), and answer text that happens to carry a key.

def _secrets(mocks):
    return {k: v for k, v in gateway_env(mocks).items() if k != "TOLLGATE_MASTER_KEY"}


def _echo_headers(secret_text):
    # Headers a careless provider (or a proxy in front of it) might echo a credential into.
    return {"x-echo-credentials": secret_text, "x-request-id": secret_text, "set-cookie": f"session={secret_text}",
            "x-amzn-requestid": secret_text, "retry-after": secret_text, "x-debug-upstream-auth": secret_text}


def _stream_error(mock, message, headers):
    """A stream that starts well, then carries the provider's own in-stream error event."""
    if mock.name == "anthropic":
        from mocks.anthropic_mock import AnthropicMock
        usage = {"input_tokens": 5, "output_tokens": 1}
        head = AnthropicMock.events([{"type": "text", "text": "partial answer"}], "end_turn", None, usage)[:4]
        tail = sse([("error", {"type": "error", "error": {"type": "overloaded_error", "message": message}})])
        return Stream(head + tail, headers=headers)
    if mock.name == "gemini":
        first = {"candidates": [{"content": {"parts": [{"text": "partial"}], "role": "model"}}], "modelVersion": "gemini-2.5-flash"}
        err = {"error": {"code": 500, "message": message, "status": "INTERNAL"}}
        return Stream([f"data: {json.dumps(first)}\r\n\r\n", f"data: {json.dumps(err)}\r\n\r\n"], headers=headers)
    if mock.name == "bedrock":
        from mocks.bedrock_mock import EVENTSTREAM, event, exception
        frames = [event("messageStart", {"role": "assistant"}),
                  event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "partial"}}),
                  exception("internalServerException", message)]
        return Stream(frames, content_type=EVENTSTREAM, headers=headers)
    chunk = {"id": "chatcmpl-leak", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "partial"}, "finish_reason": None}]}
    return Stream(sse([chunk, {"error": {"message": message, "type": "server_error", "param": None, "code": None}}]),
                  headers=headers)


def _with_headers(answer, headers):
    answer.headers = {**(answer.headers or {}), **headers}
    return answer


def _assert_clean(secrets, where, *texts):
    for name, value in secrets.items():
        for text in texts:
            assert value not in text, f"{name} leaked to the client via {where}: {text[:400]}"


def test_no_key_leaks_in_streams_headers_or_answers(gateway, mocks):
    secrets = _secrets(mocks)
    secret_text = " ".join(secrets.values())
    headers = {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"}
    client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=MASTER_KEY, max_retries=0, timeout=20)
    checked = 0
    for mock, alias in chat_aliases(mocks):
        echo = _echo_headers(secret_text)
        # 1. An in-stream error event that quotes every credential, with headers that echo them.
        mock.enqueue(_stream_error(mock, f"upstream failed for Bearer {secret_text}", echo))
        s, h, b = http("POST", f"{gateway.base_url}/v1/chat/completions",
                       {"model": alias, "messages": [{"role": "user", "content": "hi"}], "stream": True}, headers)
        _assert_clean(secrets, f"{alias} stream error (raw)", json.dumps(h), b.decode(errors="replace"))
        mock.enqueue(_stream_error(mock, f"upstream failed for Bearer {secret_text}", echo))
        with pytest.raises(openai.APIError) as e:
            for _ in client.chat.completions.create(model=alias, stream=True, messages=[{"role": "user", "content": "hi"}]):
                pass
        _assert_clean(secrets, f"{alias} stream error (SDK exception)", str(e.value), repr(e.value.body))
        # 2. Answers, streamed and not, whose text carries the credentials (the mocks echo the prompt).
        for stream in (False, True):
            mock.enqueue(lambda req: _with_headers(mock.respond(req), echo))
            s, h, b = http("POST", f"{gateway.base_url}/v1/chat/completions",
                           {"model": alias, "messages": [{"role": "user", "content": f"say {secret_text}"}], "stream": stream}, headers)
            assert s == 200, (alias, stream, b[:300])
            _assert_clean(secrets, f"{alias} answer (stream={stream})", json.dumps(h), b.decode(errors="replace"))
            assert b"[redacted]" in b, (alias, stream, b[:300])
            # Headers outside the allow-list never reach the client, whatever they hold.
            assert "x-echo-credentials" not in h and "set-cookie" not in h and "x-debug-upstream-auth" not in h, h
        checked += 1
    assert checked >= 7
    log = gateway.log()
    _assert_clean(secrets, "Envoy's log", log)
