"""Azure OpenAI clients pointed at the gateway: `AzureOpenAI(azure_endpoint=GATEWAY, api_version=...)`
sends `POST /openai/deployments/{deployment}/chat/completions?api-version=...` (and `/embeddings`)
with an `api-key` header. Tollgate serves them as the same operations, the deployment name being
the alias."""

import json

import openai
import pytest

from conftest import MASTER_KEY
from harness import http
from mocks.openai_mock import OPENAI_KEY


@pytest.fixture
def azure(gateway):
    return openai.AzureOpenAI(azure_endpoint=gateway.base_url, api_key=MASTER_KEY, api_version="2024-10-21",
                              max_retries=0, timeout=20)


def test_chat_and_stream_through_the_azure_form(azure, mocks):
    r = azure.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "hello there"}], max_tokens=9)
    assert r.choices[0].message.content == "echo: hello there" and r.model == "gpt"
    got = mocks["openai"].last()
    assert got.path == "/v1/chat/completions" and got.json["model"] == "gpt-4o-mini"
    # The client's api-key never goes upstream; the deployment's key does.
    assert got.headers["authorization"] == f"Bearer {OPENAI_KEY}" and "api-key" not in got.headers
    assert MASTER_KEY not in json.dumps(got.headers)
    chunks = list(azure.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "one two"}],
                                                stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: one two"


def test_embeddings_through_the_azure_form(azure, mocks):
    r = azure.embeddings.create(model="text-embed", input=["a b", "c"])
    assert len(r.data) == 2 and r.model == "text-embed"
    assert mocks["openai"].last().path == "/v1/embeddings"


def test_the_path_names_the_deployment(gateway, mocks):
    url = f"{gateway.base_url}/openai/deployments/gpt/chat/completions?api-version=2024-10-21"
    headers = {"api-key": MASTER_KEY, "content-type": "application/json"}
    status, _, raw = http("POST", url, {"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}, headers)
    assert status == 200 and json.loads(raw)["model"] == "gpt", raw
    # The SDKs send the deployment's name in the body too: another name is a clear 400.
    status, _, raw = http("POST", url, {"model": "text-embed", "messages": [{"role": "user", "content": "hi"}]},
                          headers)
    assert status == 400 and json.loads(raw)["error"]["code"] == "model_mismatch", raw
    status, _, raw = http("POST", url, {"messages": [{"role": "user", "content": "hi"}]}, headers)
    assert status == 400 and json.loads(raw)["error"]["param"] == "model", raw
    status, _, raw = http("POST", f"{gateway.base_url}/openai/deployments/nope/chat/completions", {
        "model": "nope", "messages": [{"role": "user", "content": "hi"}]}, headers)
    assert status == 404 and json.loads(raw)["error"]["code"] == "model_not_found", raw
    status, _, raw = http("GET", url, None, headers)
    assert status == 405, raw
    assert mocks["openai"].count() == 1


def test_an_unknown_endpoint_lists_what_is_served(gateway):
    status, _, raw = http("POST", f"{gateway.base_url}/v1/completions", {"model": "gpt", "prompt": "x"},
                          {"authorization": f"Bearer {MASTER_KEY}", "content-type": "application/json"})
    assert status == 404
    err = json.loads(raw)["error"]
    assert err["code"] == "unknown_url"
    for served in ("/v1/chat/completions", "/v1/embeddings", "/v1/models", "/openai/deployments/"):
        assert served in err["message"], err["message"]
