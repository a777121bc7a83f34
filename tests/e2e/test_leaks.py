"""Provider keys never reach clients (bodies, headers, stream events, errors) or Envoy's log, and the
client's own key never reaches a provider."""

import json
import urllib.request

from conftest import MASTER_KEY, gateway_env
from harness import http
from mocks.base import Raw


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
