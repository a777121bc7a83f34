"""Anthropic's Messages API (POST /v1/messages), as api.anthropic.com speaks it: x-api-key and
anthropic-version headers, strict request validation with Anthropic's error shapes, JSON answers
and named SSE events (message_start, content_block_*, ping, message_delta, message_stop)."""

import base64
import hashlib
import hmac
import json

from .base import Json, MockProvider, Stream, sse

ANTHROPIC_KEY = "sk-ant-api03-test-Hq7Lw2Xv9Rk4Tz8Nm3Pc"
MODEL_VERSION = "claude-sonnet-4-5-20250929"
MESSAGE_ID = "msg_01XFDUDYJgAACzvnptvVoYEL"
REQUEST_ID = "req_011CSHoEeqs5C35K2UUqR7Fy"

# Top-level fields the Messages API accepts; anything else is "Extra inputs are not permitted".
TOP_LEVEL = {
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
    "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier",
    "container", "mcp_servers", "context_management",
}
BLOCK_TYPES = {"text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"}
# Server tools (run on Anthropic's side), each type with the name the API requires of it.
SERVER_TOOLS = {"web_search_20250305": "web_search", "web_fetch_20250910": "web_fetch",
                "code_execution_20250825": "code_execution", "bash_20250124": "bash"}
IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}


def anthropic_error(status, type_, message):
    return Json({"type": "error", "error": {"type": type_, "message": message}, "request_id": REQUEST_ID},
                status=status, headers={"request-id": REQUEST_ID})


def invalid(message):
    return anthropic_error(400, "invalid_request_error", message)


THINKING_DOCS = "Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"


def thinking_signature(text):
    """The signature Claude puts on its thinking (here: a MAC the mock checks when it comes back)."""
    return base64.b64encode(hmac.new(b"anthropic-thinking", text.encode(), hashlib.sha256).digest()).decode()


def thinking_budget(body):
    """`thinking.budget_tokens` when thinking is enabled, else None."""
    t = body.get("thinking") or {}
    return t.get("budget_tokens") if t.get("type") == "enabled" else None


def validate_thinking(body):
    """Anthropic's rules for extended thinking, with its messages; None when they hold."""
    t = body.get("thinking")
    if t is None:
        return None
    if not isinstance(t, dict) or t.get("type") not in ("enabled", "disabled", "adaptive"):
        return invalid("thinking: Input tag does not match any of the expected tags: 'enabled', 'disabled', 'adaptive'")
    if t["type"] != "enabled":
        if "budget_tokens" in t:
            return invalid(f"thinking.{t['type']}.budget_tokens: Extra inputs are not permitted")
        return None
    budget = t.get("budget_tokens")
    if not isinstance(budget, int) or budget < 1024:
        return invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
    if body["max_tokens"] <= budget:
        return invalid(f"`max_tokens` must be greater than `thinking.budget_tokens`. {THINKING_DOCS}")
    if body.get("temperature") is not None and body["temperature"] != 1:
        return invalid(f"`temperature` may only be set to 1 when thinking is enabled. {THINKING_DOCS}")
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        return invalid("Thinking may not be enabled when tool_choice forces tool use.")
    # The assistant turn before the last tool results must start with its thinking.
    messages = body["messages"]
    last = messages[-1]
    if last.get("role") == "user" and any(b.get("type") == "tool_result" for b in _blocks(last["content"])) \
            and len(messages) >= 2:
        k = len(messages) - 2
        first = (_blocks(messages[k]["content"]) or [{}])[0].get("type")
        if first not in ("thinking", "redacted_thinking"):
            return invalid(
                f"messages.{k}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{first}`. "
                "When `thinking` is enabled, a final `assistant` message must start with a thinking block "
                "(preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include "
                f"thinking blocks from previous turns. To avoid this requirement, disable `thinking`. {THINKING_DOCS}")
    return None


def _blocks(content):
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def validate(body):
    """The checks api.anthropic.com makes, with its messages; None when the request is valid."""
    if not isinstance(body, dict):
        return invalid("Input should be a valid dictionary")
    for field in body:
        if field not in TOP_LEVEL:
            return invalid(f"{field}: Extra inputs are not permitted")
    for field in ("model", "max_tokens", "messages"):
        if field not in body:
            return invalid(f"{field}: Field required")
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        return invalid("max_tokens: Input should be greater than or equal to 1")
    t = body.get("temperature")
    if t is not None and not 0 <= t <= 1:
        return invalid("temperature: range: 0..1")
    if t is not None and body.get("top_p") is not None and body["model"].startswith(("claude-sonnet-4-5", "claude-opus-4-1")):
        # These models take one sampling control, not both.
        return invalid("`temperature` and `top_p` cannot both be specified for this model. Please use only one.")
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        if not isinstance(system, list) or any(b.get("type") != "text" or not b.get("text") for b in system):
            return invalid("system: Input should be a valid string or a list of non-empty text blocks")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        return invalid("messages: at least one message is required")
    tool_names = set()
    for i, tool in enumerate(body.get("tools") or []):
        kind = tool.get("type")
        if kind not in (None, "custom"):
            if kind not in SERVER_TOOLS:
                return invalid(f"tools.{i}: Input tag '{kind}' found using 'type' does not match any of the expected tags")
            if tool.get("name") != SERVER_TOOLS[kind]:
                return invalid(f"tools.{i}.{kind}.name: Input should be '{SERVER_TOOLS[kind]}'")
            continue
        if "name" not in tool:
            return invalid(f"tools.{i}.custom.name: Field required")
        if not isinstance(tool.get("input_schema"), dict) or tool["input_schema"].get("type") != "object":
            return invalid(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
        tool_names.add(tool["name"])
    choice = body.get("tool_choice")
    if choice is not None:
        if choice.get("type") not in ("auto", "any", "tool", "none"):
            return invalid("tool_choice.type: Input tag does not match any of the expected tags: 'auto', 'any', 'tool', 'none'")
        if choice["type"] == "tool" and choice.get("name") not in tool_names:
            return invalid(f"tool_choice: Tool '{choice.get('name')}' not found in the provided tools")
    pending_tool_uses = set()
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in ("user", "assistant"):
            return invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if "content" not in m:
            return invalid(f"messages.{i}.content: Field required")
        if i > 0 and messages[i - 1].get("role") == role:
            return invalid("messages: roles must alternate between \"user\" and \"assistant\"")
        content = m["content"]
        if isinstance(content, str):
            if not content and not (role == "assistant" and i == len(messages) - 1):
                return invalid("messages: text content blocks must be non-empty")
            content = []
        if not isinstance(content, list) or (not content and isinstance(m["content"], list)):
            return invalid(f"messages.{i}: all messages must have non-empty content except for the optional final assistant message")
        results = set()
        for j, b in enumerate(content):
            kind = b.get("type")
            if kind not in BLOCK_TYPES:
                return invalid(f"messages.{i}.content.{j}.type: Input tag '{kind}' found using 'type' does not match any of the expected tags")
            if kind == "text" and not b.get("text"):
                return invalid("messages: text content blocks must be non-empty")
            if kind in ("thinking", "redacted_thinking") and role != "assistant":
                return invalid(f"messages.{i}.content.{j}: {kind} blocks are only allowed in assistant messages")
            if kind == "thinking" and b.get("signature") != thinking_signature(b.get("thinking", "")):
                return invalid(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")
            if kind == "redacted_thinking" and not b.get("data"):
                return invalid(f"messages.{i}.content.{j}.redacted_thinking.data: Field required")
            if kind in ("image", "document"):
                src = b.get("source") or {}
                if src.get("type") == "base64":
                    if kind == "image" and src.get("media_type") not in IMAGE_TYPES:
                        return invalid(f"messages.{i}.content.{j}.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'")
                    if not src.get("data"):
                        return invalid(f"messages.{i}.content.{j}.{kind}.source.base64.data: Field required")
                elif src.get("type") == "url":
                    if not str(src.get("url", "")).startswith(("http://", "https://")):
                        return invalid(f"messages.{i}.content.{j}.{kind}.source.url.url: invalid URL")
                else:
                    return invalid(f"messages.{i}.content.{j}.{kind}.source: Input tag does not match any of the expected tags: 'base64', 'url'")
            if kind == "tool_use":
                if role != "assistant":
                    return invalid(f"messages.{i}.content.{j}: tool_use blocks are only allowed in assistant messages")
                if not isinstance(b.get("input"), dict):
                    return invalid(f"messages.{i}.content.{j}.tool_use.input: Input should be a valid dictionary")
            if kind == "tool_result":
                if role != "user":
                    return invalid(f"messages.{i}.content.{j}: tool_result blocks are only allowed in user messages")
                if b.get("tool_use_id") not in pending_tool_uses:
                    return invalid(f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {b.get('tool_use_id')}. "
                                   "Each `tool_result` block must have a corresponding `tool_use` block in the previous message.")
                if any(x.get("type") != "tool_result" for x in content[:j]):
                    return invalid(f"messages.{i}: `tool_result` blocks must come first in the user message content, "
                                   "before any other block.")
                results.add(b["tool_use_id"])
        if pending_tool_uses and not pending_tool_uses <= results:
            return invalid(f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                           f"{', '.join(sorted(pending_tool_uses - results))}. Each `tool_use` block must have a corresponding "
                           "`tool_result` block in the next message.")
        pending_tool_uses = {b["id"] for b in content if b.get("type") == "tool_use"} if role == "assistant" else set()
    return validate_thinking(body)


def _words(text):
    return len(text.split())


def request_text(body):
    """Every text the request carries, for a deterministic input token count."""
    parts = []
    system = body.get("system")
    parts.extend([system] if isinstance(system, str) else [b.get("text", "") for b in system or []])
    for m in body["messages"]:
        for b in _blocks(m["content"]):
            if b.get("type") == "text":
                parts.append(b["text"])
            elif b.get("type") == "tool_result":
                c = b.get("content")
                parts.extend([c] if isinstance(c, str) else [x.get("text", "") for x in c or []])
    return " ".join(parts)


def last_user_turn(body):
    for m in reversed(body["messages"]):
        if m["role"] == "user":
            return _blocks(m["content"])
    return []


def sample_input(schema, text):
    """An input object that fits a tool's schema: strings are `text`, numbers 42, booleans true."""
    out = {}
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type")
        out[name] = {"string": text, "integer": 42, "number": 42, "boolean": True,
                     "array": [], "object": {}}.get(kind)
    return out


class AnthropicMock(MockProvider):
    name = "anthropic"
    env = {"ANTHROPIC_API_KEY": ANTHROPIC_KEY}
    key = ANTHROPIC_KEY

    def model_list(self, base_url):
        return [
            {"model_name": "claude", "litellm_params": {
                "model": "anthropic/claude-sonnet-4-5", "api_base": base_url,
                "api_key": "os.environ/ANTHROPIC_API_KEY"}},
        ]

    def respond(self, req):
        if req.method == "POST" and req.path == "/v1/messages/count_tokens":
            return self.count_tokens(req)
        if req.method != "POST" or req.path != "/v1/messages":
            return anthropic_error(404, "not_found_error", "Not found")
        if "x-api-key" not in req.headers:
            return anthropic_error(401, "authentication_error", "x-api-key header is required")
        if req.headers["x-api-key"] != self.key:
            return anthropic_error(401, "authentication_error", "invalid x-api-key")
        if req.headers.get("anthropic-version") != "2023-06-01":
            return invalid("anthropic-version: header is required" if "anthropic-version" not in req.headers
                           else f"anthropic-version: invalid version {req.headers['anthropic-version']}")
        try:
            body = req.json
        except ValueError:
            return invalid("There was an issue with the JSON body of your request.")
        problem = validate(body)
        if problem is not None:
            return problem
        return self.answer(body)

    def count_tokens(self, req):
        """`POST /v1/messages/count_tokens`: the same validation (without max_tokens, which it
        does not take) and the count `answer` would report as input_tokens."""
        if req.headers.get("x-api-key") != self.key:
            return anthropic_error(401, "authentication_error", "invalid x-api-key")
        body = req.json
        if "max_tokens" in body or "stream" in body:
            field = "max_tokens" if "max_tokens" in body else "stream"
            return invalid(f"{field}: Extra inputs are not permitted")
        problem = validate(dict(body, max_tokens=1))
        if problem is not None:
            return problem
        return Json({"input_tokens": 10 + _words(request_text(body))})

    def answer(self, body):
        """Echo the last user text; call a tool when tools are given (the forced one if any)."""
        turn = last_user_turn(body)
        results = [b for b in turn if b.get("type") == "tool_result"]
        if results:
            said = []
            for r in results:
                c = r.get("content")
                said.append(c if isinstance(c, str) else " ".join(x.get("text", "") for x in c or []))
            text = "result: " + "; ".join(said)
        else:
            text = "echo: " + " ".join(b["text"] for b in turn if b.get("type") == "text")
        # Server tools run on Anthropic's side, not as the client's calls.
        tools = [t for t in body.get("tools") or [] if t.get("type") in (None, "custom")]
        choice = body.get("tool_choice") or {"type": "auto"}
        tool = None
        if tools and choice["type"] != "none":
            if choice["type"] == "tool":
                tool = next(t for t in tools if t["name"] == choice["name"])
            elif choice["type"] == "any" or not results:
                tool = next((t for t in tools if t["name"] != "json_tool_call"), tools[0])
        blocks = []
        if thinking_budget(body) is not None:
            # Thinking on: the answer starts with the model's signed thinking.
            reasoning = "Thinking about: " + text.removeprefix("echo: ")
            blocks.append({"type": "thinking", "thinking": reasoning, "signature": thinking_signature(reasoning)})
        stop_reason, stop_sequence = "end_turn", None
        if tool is not None:
            user_text = text.removeprefix("echo: ")
            if tool["name"] != "json_tool_call":
                tool_input = sample_input(tool["input_schema"], "Paris")
            elif tool["input_schema"].get("properties"):
                tool_input = sample_input(tool["input_schema"], user_text)
            else:
                tool_input = {"answer": user_text}
            blocks.append({"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": tool["name"],
                           "input": tool_input})
            stop_reason = "tool_use"
        else:
            for seq in body.get("stop_sequences") or []:
                if seq in text:
                    text, stop_reason, stop_sequence = text[:text.index(seq)], "stop_sequence", seq
                    break
            words = text.split(" ")
            if len(words) > body["max_tokens"]:
                text, stop_reason = " ".join(words[:body["max_tokens"]]), "max_tokens"
            blocks.append({"type": "text", "text": text})
        input_tokens = 10 + _words(request_text(body))
        output_tokens = sum(_words(b.get("text", "") or b.get("thinking", "")) or 1 if b["type"] in ("text", "thinking")
                            else 12 for b in blocks)
        usage = {"input_tokens": input_tokens, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                 "output_tokens": output_tokens, "service_tier": "standard"}
        if body.get("stream"):
            return Stream(self.events(blocks, stop_reason, stop_sequence, usage),
                          headers={"request-id": REQUEST_ID, "anthropic-organization-id": "org-secret-42"})
        return Json({
            "id": MESSAGE_ID, "type": "message", "role": "assistant", "model": MODEL_VERSION,
            "content": blocks, "stop_reason": stop_reason, "stop_sequence": stop_sequence, "usage": usage,
        }, headers={"request-id": REQUEST_ID, "anthropic-organization-id": "org-secret-42"})

    @staticmethod
    def events(blocks, stop_reason, stop_sequence, usage):
        """The SSE sequence the real API sends for these blocks."""
        start_usage = dict(usage, output_tokens=1)
        events = [("message_start", {"type": "message_start", "message": {
            "id": MESSAGE_ID, "type": "message", "role": "assistant", "model": MODEL_VERSION, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": start_usage}})]
        for i, b in enumerate(blocks):
            if b["type"] == "text":
                events.append(("content_block_start", {"type": "content_block_start", "index": i,
                                                       "content_block": {"type": "text", "text": ""}}))
                if i == 0:
                    events.append(("ping", {"type": "ping"}))
                words = b["text"].split(" ")
                for k, w in enumerate(words):
                    piece = w if k == 0 else " " + w
                    if piece:
                        events.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                               "delta": {"type": "text_delta", "text": piece}}))
            elif b["type"] == "thinking":
                events.append(("content_block_start", {"type": "content_block_start", "index": i,
                                                       "content_block": {"type": "thinking", "thinking": "", "signature": ""}}))
                for k in range(0, len(b["thinking"]), 7):
                    events.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                           "delta": {"type": "thinking_delta", "thinking": b["thinking"][k:k + 7]}}))
                events.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                       "delta": {"type": "signature_delta", "signature": b["signature"]}}))
            elif b["type"] == "tool_use":
                events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": {
                    "type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}}))
                if i == 0:
                    events.append(("ping", {"type": "ping"}))
                args = json.dumps(b["input"])
                events.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                       "delta": {"type": "input_json_delta", "partial_json": ""}}))
                for k in range(0, len(args), 6):
                    events.append(("content_block_delta", {"type": "content_block_delta", "index": i,
                                                           "delta": {"type": "input_json_delta", "partial_json": args[k:k + 6]}}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
        events.append(("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                                         "usage": {"output_tokens": usage["output_tokens"]}}))
        events.append(("message_stop", {"type": "message_stop"}))
        return sse(events)
