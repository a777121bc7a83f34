"""One corpus of malformed and wrongly typed requests against both forms of the filter at once:
an Envoy with the .wasm and an Envoy with the dynamic module, from the same config, must give
every case the same answer (status, and the error's type, param, code and message), refuse it
before anything goes upstream, and keep serving.

The .wasm reads the request's model from Envoy's own JSON parser (json_to_metadata), the module
from its own scan of the body; this is what keeps the two honest. It starts both forms itself, so
it runs once, in the .wasm run of the suite (TOLLGATE_FILTER unset or wasm)."""

import json

import pytest

from conftest import MASTER_KEY, gateway_config, gateway_env
from harness import FILTER, Envoy, http

pytestmark = pytest.mark.skipif(FILTER != "wasm", reason="starts both forms itself: runs in the .wasm run only")

CHAT = "/v1/chat/completions"
EMBED = "/v1/embeddings"
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
JSON_CT = {**AUTH, "content-type": "application/json"}
MSGS = [{"role": "user", "content": "hi"}]
GOOD = {"model": "gpt", "messages": MSGS}


def chat(**fields):
    return json.dumps({**GOOD, **fields}).encode()


def embed(**fields):
    return json.dumps({"model": "text-embed", "input": "hi", **fields}).encode()


def raw_chat(extra):
    """A chat body with `extra` (raw JSON text, bytes) spliced in as the value of an unknown field."""
    return b'{"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "x": ' + extra + b"}"


def nested(depth, model=b"gpt", open_=b"[", close=b"]"):
    """A chat body whose unknown field nests so that the whole body is `depth` levels deep."""
    inner = depth - 1
    return (b'{"model": "' + model + b'", "messages": [{"role": "user", "content": "hi"}], "x": '
            + open_ * inner + close * inner + b"}")


def nested_objects(depth):
    inner = depth - 1
    return b'{"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "x": ' + b'{"a":' * inner + b"1" + b"}" * inner + b"}"


# (name, path, body, headers)
CASES = []


def case(name, body, headers=JSON_CT, path=CHAT):
    CASES.append((name, path, body, headers))


# The cases of test_bad_input.py.
case("malformed json", b'{"model": "gpt", "messages": [')
case("trailing garbage", b'{"model": "gpt"} xyz')
case("not an object", b"[1, 2, 3]")
case("a string", b'"hello"')
case("empty body", b"")
case("missing model", json.dumps({"messages": MSGS}).encode())
case("empty model", json.dumps({"model": "", "messages": []}).encode())
case("numeric model", json.dumps({"model": 5, "messages": []}).encode())
case("boolean model", json.dumps({"model": True, "messages": []}).encode())
case("object model", json.dumps({"model": {"a": 1}, "messages": []}).encode())
case("missing messages", json.dumps({"model": "gpt"}).encode())
case("empty messages", chat(messages=[]))
case("messages wrong type", chat(messages="hi"))
case("bad role", chat(messages=[{"role": "robot", "content": "x"}]))
case("temperature wrong type", chat(temperature="hot"))
case("temperature out of range", chat(temperature=7))
case("max_tokens negative", chat(max_tokens=-1))
case("stream not a boolean", chat(stream="yes"))
case("tool_choice unknown function", chat(tool_choice={"type": "function", "function": {"name": "nope"}}))
case("invalid utf-8", b'{"model": "gpt", "messages": [{"role": "user", "content": "\xff\xfe"}]}')
case("deeply nested", b'{"model": "gpt", "x": ' + b"[" * 100000 + b"]" * 100000 + b"}")
case("wrong content type", chat(), {**AUTH, "content-type": "text/plain"})
case("form content type", b"model=gpt", {**AUTH, "content-type": "application/x-www-form-urlencoded"})

# The examples.
case("logprobs yes", chat(logprobs="yes"))
case("n 1000", chat(n=1000))
case("metadata 5", chat(metadata=5))
case("messages of arrays", chat(messages=[["user", "hi"]]))
case("stream_options array", chat(stream_options=[True]))
case("max_tokens 2^63", b'{"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 9223372036854775808}')
case("lone surrogate in an unknown field", raw_chat(b'"\\ud800"'))
case("number out of f64 range in an unknown field", raw_chat(b"1e999999"))
for depth in (129, 130, 150, 200):
    case(f"nesting {depth}", nested(depth))

# Every documented parameter with wrong types and values out of range.
WRONG = {
    "temperature": ["hot", -0.1, 2.5, True, [], {}],
    "top_p": [1.5, -1, "x"],
    "frequency_penalty": [3, -3, "x"],
    "presence_penalty": [2.01, "x", [1]],
    "max_tokens": [0, 1.5, "10", True],
    "max_completion_tokens": [0, "x", 2.5, -7],
    "n": [0, 129, "2", 1.5],
    "seed": ["1", 1.5],
    "user": [5, {}, []],
    "stream": [1, {}],
    "stream_options": [5, "usage", {"include_usage": "yes"}, {"include_obfuscation": 1}],
    "logprobs": [1, [True]],
    "top_logprobs": [21, -1, "5", 2.5],
    "logit_bias": [[], 5, {"50256": 101}, {"50256": -101}, {"50256": "ban"}],
    "metadata": [[], "x", {"a": 1}, {"a": None}, {f"k{i}": "v" for i in range(17)}, {"k" * 65: "v"}, {"k": "v" * 513}],
    "modalities": ["text", ["video"], [1], {}],
    "reasoning_effort": ["huge", 1, ["low"]],
    "verbosity": ["loud", 2],
    "service_tier": ["gold", 5],
    "store": ["yes", 0],
    "prediction": ["x", {"type": "content"}, {"type": "other", "content": "x"}, {"type": "content", "content": 5},
                   {"type": "content", "content": [{"type": "image"}]}, {"type": "content", "content": [5]}],
    "audio": ["alloy", {"voice": "alloy"}, {"format": "ogg", "voice": "alloy"}, {"format": "mp3", "voice": 5},
              {"format": "mp3", "voice": {}}],
    "web_search_options": [[], {"search_context_size": "huge"}, {"user_location": {"type": "exact"}},
                           {"user_location": {"type": "approximate", "approximate": {"city": 5}}}],
    "parallel_tool_calls": ["yes"],
    "safety_identifier": [5, "x" * 129],
    "prompt_cache_key": [5],
    "prompt_cache_retention": ["1h"],
    "prompt_cache_options": [{"mode": "always"}, {"ttl": "1h"}, []],
    "moderation": [{}, {"model": 5}, {"model": "omni-moderation-latest", "policy": {"input": {"mode": "x"}}}],
    "functions": [{}, [5], [{}], [{"name": 5}]],
    "function_call": [5, "sometimes", {}],
    "tools": [{}, [5], [{"type": "web"}], [["function", {"name": "f"}]]],
    "tool_choice": [5, "sometimes"],
    "response_format": ["json", {"type": "xml"}, {"type": "json_schema"}, ["json_object"]],
    "stop": [5, [1], {}],
    "messages": [[5], [{"content": "x"}], [{"role": 5, "content": "x"}], [{"role": "user", "content": 5}],
                 [{"role": "user", "content": {}}], [{"role": "user", "content": [{"type": "text"}]}],
                 [{"role": "user", "content": [["text", "hi"]]}], [{"role": "assistant", "tool_calls": [5]}]],
    "model": [None, [], "m" * 9000],
}
for param, values in WRONG.items():
    for i, v in enumerate(values):
        case(f"{param} wrong {i}", chat(**{param: v}))
case("seed above i64", b'{"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "seed": 9223372036854775808}')
case("n 1e1", b'{"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "n": 1e1}')
case("temperature 1e999", b'{"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e999}')

# Embeddings.
case("embeddings no input", json.dumps({"model": "text-embed"}).encode(), path=EMBED)
for i, body in enumerate([embed(input={}), embed(input=[]), embed(input=[[1, "a"]]), embed(input=5), embed(dimensions=0),
                          embed(dimensions="x"), embed(dimensions=1.5), embed(encoding_format="hex"), embed(user=5),
                          json.dumps({"input": "hi"}).encode(), embed(model=5), b'{"model": "text-embed", "input": "\\udc00"}',
                          b'{"model": "text-embed", "input": "hi", "dimensions": 9223372036854775808}']):
    case(f"embeddings wrong {i}", body, path=EMBED)

# Broken JSON of every kind.
BROKEN = [b"{", b"}", b"[", b"{}}", b'{"model"', b'{"model":', b'{"model": "gpt"', b'{"model": "gpt",',
          b"{'model': 'gpt'}", b'{model: "gpt"}', b'{"model": "gpt", /* c */ "messages": []}',
          b'{"model": "gpt", "messages": [],}', b'{"model": "gpt", "messages": [1,]}', b'{"model" "gpt"}',
          b'{"model": "gpt" "messages": []}', b"null", b"1", b"true", b"[]", b"{}", b"   ", b"\n",
          b'{"model": "gpt", "messages": [{"role": "user", "content": "unterminated}]}']
for i, body in enumerate(BROKEN):
    case(f"broken {i}", body)
for name, value in [("leading zero", b"01"), ("NaN", b"NaN"), ("Infinity", b"Infinity"), ("True", b"True"),
                    ("plus", b"+1"), ("dot", b".5"), ("trailing dot", b"1."), ("bare e", b"1e"),
                    ("hex", b"0x10"), ("control char", b'"a\x01b"'), ("tab in string", b'"a\tb"'),
                    ("bad escape", b'"\\x"'), ("short unicode escape", b'"\\u00"'), ("high surrogate then text", b'"\\ud800\\u0041"'),
                    ("low surrogate", b'"\\udc00"'), ("two highs", b'"\\ud800\\ud800"'), ("invalid utf-8", b'"\xff"'),
                    ("overlong utf-8", b'"\xc0\xaf"'), ("utf-8 surrogate", b'"\xed\xa0\x80"'), ("above U+10FFFF", b'"\xf4\x90\x80\x80"'),
                    ("truncated utf-8", b'"\xe2\x82"'), ("-1e999", b"-1e999"), ("1.8e308", b"1.7976931348623159e308"),
                    ("2^63", b"9223372036854775808"), ("2^64-1", b"18446744073709551615"), ("single quote", b"'x'")]:
    case(f"unknown field: {name}", raw_chat(value))
case("bom", b"\xef\xbb\xbf" + chat())
case("half a bom", b"\xef\xbb" + chat())
case("nul first", b"\x00" + chat())
case("nul after the object", chat() + b"\x00junk")
case("nul inside", b'{"model": "gpt", "messages": [{"role": "user", "content": "h\x00i"}]}')
case("duplicate model, bad last", b'{"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "model": 5}')
case("duplicate model, unknown last", b'{"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "model": "nope"}')
case("duplicate messages, bad last", b'{"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "messages": 5}')
case("escaped key model", b'{"mod\\u0065l": "nope", "messages": []}')
case("model with a lone surrogate", b'{"model": "gpt\\ud800", "messages": []}')
case("model 2^63", b'{"model": 9223372036854775808, "messages": []}')
case("model 1e999", b'{"model": 1e999, "messages": []}')
case("stream 2^63", b'{"model": "gpt", "messages": [], "stream": 9223372036854775808}')
case("unknown model", chat(model="no-such-model"))

# Deep nesting around the limit and far beyond, in arrays and objects, passed through and typed.
for depth in (127, 128):
    case(f"nesting {depth} with a bad param", nested(depth)[:-1] + b', "n": 0}')
for depth in (131, 500, 999, 1000, 1001, 1002, 5000, 50000):
    case(f"nesting {depth}", nested(depth))
for depth in (129, 1001):
    case(f"object nesting {depth}", nested_objects(depth))
    case(f"nesting {depth} with an unknown model", nested(depth, model=b"nope"))
case("nesting 200 in content", b'{"model": "gpt", "messages": [{"role": "user", "content": ' + b"[" * 200 + b"]" * 200 + b"}]}")
case("nesting 129 in a tool's parameters", b'{"model": "gpt", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": ' + b'{"a":' * 125 + b"1" + b"}" * 125 + b"}}]}")

# Content types.
# (`application/json` in any case and with any parameters is JSON: test_content_types.py.)
for ct in ["text/plain", "application/jsonx", "multipart/form-data", "application/json-seq",
           "application/x-www-form-urlencoded"]:
    case(f"content type {ct}", chat(), {**AUTH, "content-type": ct})
case("no content type", chat(), AUTH)
case("charset with a broken body", b'{"model": ', {**AUTH, "content-type": "application/json; charset=utf-8"})
case("charset with a bad param", chat(n=0), {**AUTH, "content-type": "application/json;charset=utf-8"})

# Authentication comes first; wrong methods and paths.
case("bad key and bad body", b"{", {"authorization": "Bearer sk-wrong", "content-type": "application/json"})
case("no key and bad body", raw_chat(b'"\\ud800"'), {"content-type": "application/json"})


@pytest.fixture(scope="module")
def both(mocks):
    config, env = gateway_config(mocks), gateway_env(mocks)
    with Envoy(config, env=env, filter_="wasm") as wasm, Envoy(config, env=env, filter_="module") as module:
        yield wasm, module


def answer(envoy, path, body, headers):
    status, h, raw = http("POST", f"{envoy.base_url}{path}", body, {**headers, "connection": "close"})
    try:
        err = json.loads(raw)["error"]
    except (ValueError, KeyError, TypeError):
        return status, h.get("content-type"), raw[:300]
    assert set(err) == {"message", "type", "param", "code"}, err
    return status, h.get("content-type"), err


def test_the_corpus_is_large():
    assert len(CASES) >= 150, len(CASES)
    assert len({c[0] for c in CASES}) == len(CASES), "case names are unique"


def test_both_forms_give_every_case_the_same_answer(both, mocks):
    wasm, module = both
    differ, forwarded, accepted = [], [], []
    for name, path, body, headers in CASES:
        mocks["openai"].reset()
        a = answer(wasm, path, body, headers)
        b = answer(module, path, body, headers)
        if a != b:
            differ.append(f"{name}:\n  wasm   {a}\n  module {b}")
        if mocks["openai"].count() or mocks["openai"].incomplete:
            forwarded.append(name)
        if a[0] < 400 or b[0] < 400:
            accepted.append(name)
        assert a[1] == "application/json", (name, a)
    assert not differ, f"{len(differ)} of {len(CASES)} cases differ:\n" + "\n".join(differ)
    assert not forwarded, f"reached the provider: {forwarded}"
    assert not accepted, f"accepted: {accepted}"


def test_both_forms_keep_serving(both, mocks):
    for envoy in both:
        for _ in range(6):
            status, _, raw = http("POST", f"{envoy.base_url}{CHAT}", GOOD, {**JSON_CT, "connection": "close"})
            assert status == 200, (envoy.filter, raw)
            assert json.loads(raw)["choices"][0]["message"]["content"] == "echo: hi"
        log = envoy.log()
        assert "panicked" not in log and "Function: proxy_on" not in log, envoy.filter
