"""Content types as clients and providers really send them: `application/json` with parameters
(.NET's HttpClient and Java clients send `; charset=utf-8`), in any case, on requests; and a
provider answering `application/json; charset=UTF-8` (Gemini's real API does) is still read
for usage and cost."""

import json

import pytest

from conftest import MASTER_KEY
from harness import http
from mocks.base import Raw

CHAT = {"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def post(gateway, body, content_type):
    status, _, raw = http("POST", f"{gateway.base_url}/v1/chat/completions", body, timeout=20,
                          headers={"authorization": f"Bearer {MASTER_KEY}", "content-type": content_type})
    return status, json.loads(raw)


@pytest.mark.parametrize("ct", ["application/json; charset=utf-8", "application/json;charset=UTF-8",
                                "Application/JSON", "APPLICATION/JSON ; charset=utf-8"])
def test_json_with_parameters_and_any_case_is_json(gateway, mocks, ct):
    status, answer = post(gateway, json.dumps(CHAT).encode(), ct)
    assert status == 200, answer
    assert answer["object"] == "chat.completion"
    assert mocks["openai"].last().json["messages"] == CHAT["messages"]


@pytest.mark.parametrize("ct", ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"])
def test_a_body_that_is_not_json_names_the_header(gateway, mocks, ct):
    status, answer = post(gateway, json.dumps(CHAT).encode(), ct)
    assert status == 400
    err = answer["error"]
    assert err["code"] == "invalid_content_type" and "Content-Type" in err["message"] and ct in err["message"]
    assert mocks["openai"].count() == 0


def test_a_provider_answering_json_with_a_charset_is_priced(gateway, mocks, client):
    gemini = mocks["gemini"]
    ask = dict(model="gemini", messages=[{"role": "user", "content": "hello there"}])
    plain = client.chat.completions.with_raw_response.create(**ask)
    cost = float(plain.headers["x-tollgate-response-cost"])
    assert cost > 0
    gemini.forced = lambda req: Raw(json.dumps(gemini.respond(req).body).encode(),
                                    content_type="application/json; charset=UTF-8")
    charset = client.chat.completions.with_raw_response.create(**ask)
    assert charset.parse().usage.total_tokens == plain.parse().usage.total_tokens
    assert float(charset.headers["x-tollgate-response-cost"]) == cost
