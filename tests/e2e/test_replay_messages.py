"""The `../shared/replay` corpus (other projects' recorded provider payloads, each with the
OpenAI-shaped result their tests expect) replayed through Anthropic's Messages API in
(`POST /v1/messages`), with the official `anthropic` SDK as the client.

The corpus stays in `../shared/replay`: this file reads its cases and its `mock.py` at run time and
commits none of their content. `mock.py`'s own server needs aiohttp, which the test venv does not
carry, so the upstream here is the suite's mock server (`mocks.base`) answering with `mock.py`'s
own pieces: its case loader, its route classifier (a call to the wrong provider API, or in the
wrong streaming mode, is a 418 and fails the case) and its AWS event-stream encoder; SSE bodies go
in 97-byte pieces and event streams in 777-byte ones, as `mock.py` sends them. The gateway's config
is `run.py`'s: one alias per provider, all pointing at that upstream.

Each case's OpenAI request becomes the equivalent Messages request (system and developer messages
as `system`, tools, `tool_choice`, `max_tokens` or 1024, `stream`), and its `expected` is read in
Anthropic's terms, following what Tollgate implements (`src/ingress/anthropic`):
  text -> the text blocks joined; reasoning -> the thinking blocks' text; tool_calls -> the
  tool_use blocks in order (name, input as parsed JSON); finish_reason -> stop_reason (stop
  end_turn, length max_tokens, tool_calls tool_use, content_filter refusal); usage ->
  input_tokens + cache_creation_input_tokens + cache_read_input_tokens = prompt_tokens (OpenAI's
  prompt counts cache reads and writes; Anthropic's input_tokens neither), cache_read_input_tokens
  = cached_tokens, output_tokens = completion_tokens, and their sum = total_tokens; error -> the
  SDK's exception class for the status and Anthropic's error type for it; stream_error -> the SDK
  raises an `error` event during iteration, after exactly the text the upstream sent before it.
Not read, having no Messages counterpart: `reasoning_tokens` (Tollgate reports no
`output_tokens_details`), an error's OpenAI `code`, and `usage_absent` (a Messages answer always
carries usage; those cases' text and stop reason are still checked). Cases that cannot be asked or
answered in the Messages API at all are skipped, each with its reason.
"""

import importlib.util
import json
import os

import anthropic
import pytest

from harness import ROOT, Envoy
from mocks.base import Json, MockProvider, Raw, Stream

REPLAY = os.path.normpath(os.path.join(ROOT, "..", "shared", "replay"))
if not os.path.isdir(os.path.join(REPLAY, "cases")):
    pytest.skip(f"no replay corpus at {REPLAY} (../shared/replay beside the checkout)", allow_module_level=True)


def _load_replay_mock():
    spec = importlib.util.spec_from_file_location("shared_replay_mock", os.path.join(REPLAY, "mock.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


replay_mock = _load_replay_mock()
CASES = replay_mock.load_cases(os.path.join(REPLAY, "cases"))

MASTER_KEY = "sk-replay-master-7Hq2"
ALIASES = {"openai": "r-openai", "azure": "r-azure", "anthropic": "r-anthropic", "gemini": "r-gemini",
           "bedrock": "r-bedrock"}
ENV_KEYS = {"REPLAY_OPENAI_KEY": "sk-replay-openai", "REPLAY_AZURE_KEY": "replay-azure-key",
            "REPLAY_ANTHROPIC_KEY": "sk-ant-replay", "REPLAY_GEMINI_KEY": "replay-gemini-key",
            "AWS_ACCESS_KEY_ID": "AKIAREPLAYEXAMPLE0",
            "AWS_SECRET_ACCESS_KEY": "replay/secret/key/0000000000000000000000"}

STOP_REASON = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
# The SDK's exception class and Anthropic's error type for each status the corpus expects.
ERRORS = {400: (anthropic.BadRequestError, "invalid_request_error"),
          404: (anthropic.NotFoundError, "not_found_error"),
          429: (anthropic.RateLimitError, "rate_limit_error")}
RAW_EVENTS = {"message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
              "message_stop"}
DELTA_OF_BLOCK = {"text": {"text_delta"}, "thinking": {"thinking_delta", "signature_delta"},
                  "tool_use": {"input_json_delta"}}


class ReplayUpstream(MockProvider):
    """Every provider's native API on one port, answering with the armed case's recording."""

    name = "replay"

    def __init__(self):
        super().__init__()
        self.case = None
        self.errors = []

    def arm(self, case):
        self.reset()
        self.errors = []
        self.case = case

    def respond(self, req):
        try:
            body = json.loads(req.body) if req.body else None
        except ValueError:
            body = None
        provider, streaming = replay_mock.classify(req.path, body)
        case = self.case
        err = None
        if case is None:
            err = f"no case armed (got {req.method} {req.path})"
        elif provider is None:
            err = f"unrecognised upstream path {req.method} {req.path}"
        elif provider != case["provider"]:
            err = f"a {case['provider']} recording, but the gateway called the {provider} API ({req.path})"
        elif streaming != bool(case["request"].get("stream")):
            err = (f"a {'stream' if case['request'].get('stream') else 'whole answer'} recording, but the gateway "
                   f"called the {'streaming' if streaming else 'non-streaming'} API ({req.path})")
        if err:
            self.errors.append(err)
            return Json({"replay_error": err}, status=418)
        up = case["upstream_response"]
        status = int(up.get("status", 200))
        headers = {k.lower(): v for k, v in (up.get("headers") or {}).items()}
        kind = up.get("kind", "json")
        if kind == "json":
            text = up["body_text"] if "body_text" in up else json.dumps(up.get("body"))
            ctype = headers.pop("content-type", "application/json")
            return Raw(text.encode(), status, headers, content_type=ctype)
        if kind == "sse":
            data, split = up["body_text"].encode(), int(up.get("split", 97))
        else:
            data, split = replay_mock.eventstream_bytes(up), int(up.get("split", 777))
            headers.setdefault("x-amzn-requestid", "replay-" + case["id"])
        ctype = headers.pop("content-type", "text/event-stream")
        return Stream([data], status, content_type=ctype, headers=headers, split=split, delay=0.002)


def gateway_config(base):
    return {
        "model_list": [
            {"model_name": "r-openai", "litellm_params": {
                "model": "openai/gpt-5-nano", "api_base": f"{base}/v1", "api_key": "os.environ/REPLAY_OPENAI_KEY"}},
            {"model_name": "r-azure", "litellm_params": {
                "model": "azure/gpt-5-nano-deploy", "api_base": base, "api_version": "2024-10-21",
                "api_key": "os.environ/REPLAY_AZURE_KEY"}},
            {"model_name": "r-anthropic", "litellm_params": {
                "model": "anthropic/claude-sonnet-4-5", "api_base": base,
                "api_key": "os.environ/REPLAY_ANTHROPIC_KEY"}},
            {"model_name": "r-gemini", "litellm_params": {
                "model": "gemini/gemini-2.5-flash", "api_base": base, "api_key": "os.environ/REPLAY_GEMINI_KEY"}},
            {"model_name": "r-bedrock", "litellm_params": {
                "model": "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0", "aws_region_name": "us-east-1",
                "aws_bedrock_runtime_endpoint": base, "aws_access_key_id": "os.environ/AWS_ACCESS_KEY_ID",
                "aws_secret_access_key": "os.environ/AWS_SECRET_ACCESS_KEY"}},
        ],
        "litellm_settings": {"drop_params": True, "request_timeout": 60},
        "router_settings": {"num_retries": 0},
        "general_settings": {"master_key": MASTER_KEY},
    }


@pytest.fixture(scope="module")
def upstream():
    m = ReplayUpstream().start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def claude(upstream):
    envoy = Envoy(gateway_config(upstream.base_url), env=ENV_KEYS, concurrency=2)
    envoy.start()
    try:
        yield anthropic.Anthropic(base_url=envoy.base_url, api_key=MASTER_KEY, max_retries=0, timeout=30)
    finally:
        envoy.stop()


# --------------------------------------------------------------------------- the request


class NotMappable(Exception):
    """The case cannot be asked of, or answered by, the Messages API faithfully."""


def anthropic_tool(function):
    schema = function.get("parameters") or {"type": "object", "properties": {}}
    tool = {"name": function["name"], "input_schema": schema}
    if "description" in function:
        tool["description"] = function["description"]
    return tool


def messages_request(case):
    """The case's OpenAI request as the equivalent Messages API parameters."""
    req = case["request"]
    if "choices" in case["expected"] or (req.get("n") or 1) > 1:
        raise NotMappable(f"n={req.get('n')}: several choices, and the Messages API answers with one message")
    system, messages = [], []
    for m in req["messages"]:
        content = m.get("content")
        if set(m) - {"role", "content"} or not isinstance(content, (str, type(None))):
            raise NotMappable(f"a {m['role']} message with {sorted(set(m) - {'role'})}: not converted here")
        if m["role"] in ("system", "developer"):
            system.append(content or "")
        elif m["role"] in ("user", "assistant"):
            messages.append({"role": m["role"], "content": content})
        else:
            raise NotMappable(f"a {m['role']} message: not converted here")
    if not messages:
        raise NotMappable("only a system/developer message: the Messages API needs at least one user turn")
    params = {"model": ALIASES[case["provider"]], "messages": messages,
              "max_tokens": req.get("max_tokens", req.get("max_completion_tokens", 1024))}
    if system:
        params["system"] = "\n\n".join(system)
    for key, value in req.items():
        if key in ("messages", "max_tokens", "max_completion_tokens", "n"):
            continue
        if key == "stream":
            params["stream"] = bool(value)
        elif key == "stream_options":
            pass  # a Messages stream always reports usage
        elif key in ("temperature", "top_p"):
            # Messages API fields this SDK's create() no longer names: sent as they are.
            params.setdefault("extra_body", {})[key] = value
        elif key == "stop":
            params["stop_sequences"] = [value] if isinstance(value, str) else value
        elif key == "tools":
            params["tools"] = [anthropic_tool(t["function"]) for t in value]
        elif key == "tool_choice":
            params["tool_choice"] = ({"type": "tool", "name": value["function"]["name"]} if isinstance(value, dict)
                                     else {"type": {"auto": "auto", "required": "any", "none": "none"}[value]})
        else:
            raise NotMappable(f"request field {key!r}: not converted here")
    if req.get("parallel_tool_calls") is False and "tool_choice" in params:
        params["tool_choice"]["disable_parallel_tool_use"] = True
    return params


def _param(cid):
    try:
        messages_request(CASES[cid])
    except NotMappable as e:
        return pytest.param(cid, id=cid, marks=pytest.mark.skip(reason=f"{cid}: {e}"))
    return pytest.param(cid, id=cid)


# --------------------------------------------------------------------------- the answer


def check_stream_shape(events):
    """A well-formed Messages stream: message_start, blocks started 0..n-1 in order, each delta of
    its block's kind and to a started block, each block stopped once, one message_delta, then
    message_stop."""
    types = [e.type for e in events]
    assert types[0] == "message_start", types
    assert types[-2:] == ["message_delta", "message_stop"], types
    assert types.count("message_delta") == 1 and types.count("message_stop") == 1, types
    blocks, stopped = [], set()
    for e in events:
        if e.type == "content_block_start":
            assert e.index == len(blocks), f"block {e.index} started after {len(blocks)} blocks"
            blocks.append(e.content_block.type)
        elif e.type == "content_block_delta":
            assert e.index < len(blocks), f"delta to block {e.index} before its start"
            kinds = DELTA_OF_BLOCK.get(blocks[e.index], set())
            assert e.delta.type in kinds, f"{e.delta.type} in a {blocks[e.index]} block"
        elif e.type == "content_block_stop":
            assert e.index < len(blocks) and e.index not in stopped, f"block {e.index} stopped twice or unstarted"
            stopped.add(e.index)
    assert stopped == set(range(len(blocks))), f"blocks {sorted(set(range(len(blocks))) - stopped)} never stopped"


def streamed_text(events):
    return "".join(e.delta.text for e in events
                   if e.type == "content_block_delta" and e.delta.type == "text_delta")


def mismatches(exp, message):
    """What differs between the case's expectation (OpenAI's terms) and the Messages answer."""
    bad = []
    text = "".join(b.text for b in message.content if b.type == "text")
    if "text" in exp and text != (exp["text"] or ""):
        bad.append(f"text: want {exp['text']!r}, got {text!r}")
    if "reasoning" in exp:
        thinking = "".join(b.thinking for b in message.content if b.type == "thinking")
        if thinking != exp["reasoning"]:
            bad.append(f"thinking: want {exp['reasoning']!r}, got {thinking!r}")
    if "tool_calls" in exp:
        got = [(b.name, b.input) for b in message.content if b.type == "tool_use"]
        want = [(t["name"], json.loads(t["args"]) if isinstance(t["args"], str) else t["args"])
                for t in exp["tool_calls"]]
        if got != want:
            bad.append(f"tool_use blocks: want {want}, got {got}")
        if not all(b.id for b in message.content if b.type == "tool_use"):
            bad.append("a tool_use block without an id")
    if "finish_reason" in exp and message.stop_reason != STOP_REASON[exp["finish_reason"]]:
        bad.append(f"stop_reason: want {STOP_REASON[exp['finish_reason']]!r} (for {exp['finish_reason']!r}), "
                   f"got {message.stop_reason!r}")
    if "usage" in exp:
        u, w = message.usage, exp["usage"]
        cache_read, cache_write = u.cache_read_input_tokens or 0, u.cache_creation_input_tokens or 0
        prompt = u.input_tokens + cache_write + cache_read
        got = {"prompt_tokens": prompt, "completion_tokens": u.output_tokens, "total_tokens": prompt + u.output_tokens,
               "cached_tokens": cache_read}
        for key in ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens"):
            if key in w and got[key] != w[key]:
                bad.append(f"usage {key}: want {w[key]}, got {got[key]} (from {u.model_dump(exclude_none=True)})")
    return bad


def send(claude, params):
    """One request; for a stream, the final message and the raw events, through `messages.stream`."""
    params = dict(params)
    if not params.pop("stream", False):
        return claude.messages.create(**params), None
    events = []
    with claude.messages.stream(**params) as s:
        for ev in s:
            if ev.type in RAW_EVENTS:
                events.append(ev)
        return s.get_final_message(), events


@pytest.mark.parametrize("cid", [_param(cid) for cid in sorted(CASES)])
def test_replay_through_messages(claude, upstream, cid):
    case = CASES[cid]
    exp = case["expected"]
    params = messages_request(case)
    upstream.arm(case)
    if "error" in exp:
        want = exp["error"]
        cls, kind = ERRORS[want["status"]]
        with pytest.raises(anthropic.APIStatusError) as ei:
            send(claude, params)
        e = ei.value
        assert type(e) is cls and e.status_code == want["status"], f"{type(e).__name__} {e.status_code}: {e}"
        assert e.body["type"] == "error" and e.body["error"]["type"] == kind, e.body
        if "message_contains" in want:
            assert want["message_contains"] in e.body["error"]["message"], e.body
    elif "stream_error" in exp:
        events = []
        with pytest.raises(anthropic.APIStatusError) as ei:
            with claude.messages.stream(**{k: v for k, v in params.items() if k != "stream"}) as s:
                for ev in s:
                    if ev.type in RAW_EVENTS:
                        events.append(ev)
        e = ei.value
        # Raised by an `error` event inside the 200 stream, not by an HTTP error before it.
        assert e.status_code == 200 and e.body["type"] == "error" and e.body["error"]["message"], e.body
        assert events and events[0].type == "message_start"
        assert streamed_text(events) == exp["stream_error"]["text_prefix"]
    else:
        message, events = send(claude, params)
        assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
        assert message.model == params["model"]
        if events is not None:
            check_stream_shape(events)
            assert streamed_text(events) == "".join(b.text for b in message.content if b.type == "text")
        bad = mismatches(exp, message)
        assert not bad, f"{cid} [{case['provider']}]: " + "; ".join(bad)
    assert not upstream.errors, upstream.errors
    if "error" not in exp:
        assert upstream.count() == 1, f"{upstream.count()} upstream requests"
