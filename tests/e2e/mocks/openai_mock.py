"""OpenAI's Chat Completions and Embeddings APIs, as api.openai.com speaks them."""

import json
import secrets
import math
import struct
import base64

from .base import Json, MockProvider, Stream, sse

OPENAI_KEY = "sk-test-openai-Zq3XkP9vW2mT7yR4"
MODEL_VERSION = "gpt-4o-mini-2024-07-18"


def openai_error(status, message, type_="invalid_request_error", param=None, code=None):
    return Json({"error": {"message": message, "type": type_, "param": param, "code": code}}, status=status)


# What Chat Completions documents: OpenAI answers any other field, top-level or inside a message or
# a content part, with a 400 `unknown_parameter` naming its path.
CHAT_FIELDS = {
    "model", "messages", "audio", "frequency_penalty", "function_call", "functions", "logit_bias",
    "logprobs", "max_completion_tokens", "max_tokens", "metadata", "modalities", "n",
    "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key",
    "prompt_cache_retention", "reasoning_effort", "response_format", "safety_identifier", "seed",
    "service_tier", "stop", "store", "stream", "stream_options", "temperature", "tool_choice",
    "tools", "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
}
MESSAGE_FIELDS = {"role", "content", "name", "tool_calls", "tool_call_id", "refusal", "audio", "function_call"}
PART_FIELDS = {"text": {"text"}, "image_url": {"image_url"}, "input_audio": {"input_audio"},
               "file": {"file"}, "refusal": {"refusal"}}
FILE_FIELDS = {"file_data", "file_id", "filename"}
TOOL_FIELDS = {"type", "function"}


def unknown_parameter(body, extra=()):
    """The first field OpenAI would refuse, as its path (`messages[0].content[1].cache_control`)."""
    for k in body:
        if k not in CHAT_FIELDS and k not in extra:
            return k
    for i, m in enumerate(body.get("messages") or []):
        for k in m:
            if k not in MESSAGE_FIELDS:
                return f"messages[{i}].{k}"
        if isinstance(m.get("content"), list):
            for j, part in enumerate(m["content"]):
                allowed = PART_FIELDS.get(part.get("type"), set())
                for k in part:
                    if k != "type" and k not in allowed:
                        return f"messages[{i}].content[{j}].{k}"
                for k in (part.get("file") or {}) if part.get("type") == "file" else ():
                    if k not in FILE_FIELDS:
                        return f"messages[{i}].content[{j}].file.{k}"
    for i, t in enumerate(body.get("tools") or []):
        for k in t:
            if k not in TOOL_FIELDS:
                return f"tools[{i}].{k}"
    return None


def last_user_text(body):
    for m in reversed(body.get("messages") or []):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            if isinstance(c, list):
                return " ".join(p.get("text", "") for p in c if p.get("type") == "text")
    return ""


class OpenAIMock(MockProvider):
    name = "openai"
    env = {"OPENAI_API_KEY": OPENAI_KEY}
    key = OPENAI_KEY
    # Fields beyond Chat Completions' own that the server takes.
    extra_params = ()
    # OpenAI's own models: reasoning_effort only for reasoning models, which refuse max_tokens.
    openai_models = True

    def model_list(self, base_url):
        return [
            {"model_name": "gpt", "litellm_params": {
                "model": "openai/gpt-4o-mini", "api_base": f"{base_url}/v1", "api_key": "os.environ/OPENAI_API_KEY"}},
            {"model_name": "text-embed", "litellm_params": {
                "model": "openai/text-embedding-3-small", "api_base": f"{base_url}/v1", "api_key": "os.environ/OPENAI_API_KEY"},
             "model_info": {"mode": "embedding"}},
        ]

    def respond(self, req):
        if req.headers.get("authorization") != f"Bearer {self.key}":
            return openai_error(401, "Incorrect API key provided: sk-abc***xyz. You can find your API key at https://platform.openai.com/account/api-keys.",
                                code="invalid_api_key")
        if "/responses/" in req.path:
            return self.stored_response(req)
        try:
            body = req.json
        except ValueError:
            return openai_error(400, "We could not parse the JSON body of your request.")
        if req.path.endswith("/chat/completions"):
            return self.chat(body)
        if req.path.endswith("/embeddings"):
            return self.embeddings(body)
        if req.path.endswith("/responses"):
            # Each api_base path is a deployment of its own, holding its own responses.
            return self.responses(body, prefix=req.path[:-len("/responses")])
        return openai_error(404, f"Invalid URL ({req.method} {req.path})")

    def chat(self, body, extra=None):
        for required in ("model", "messages"):
            if required not in body:
                return openai_error(400, f"Missing required parameter: '{required}'.", param=required, code="missing_required_parameter")
        unknown = unknown_parameter(body, self.extra_params if extra is None else extra)
        if unknown:
            return openai_error(400, f"Unknown parameter: '{unknown}'.", param=unknown, code="unknown_parameter")
        model = str(body["model"])
        reasoning = self.openai_models and model.startswith(("o1", "o3", "o4", "gpt-5"))
        if "reasoning_effort" in body and self.openai_models:
            efforts = ("minimal", "low", "medium", "high") if model.startswith("gpt-5") else ("low", "medium", "high")
            if not reasoning:
                return openai_error(400, f"Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                                    param="reasoning_effort", code="unsupported_parameter")
            if body["reasoning_effort"] not in efforts:
                return openai_error(400, f"Unsupported value: 'reasoning_effort' does not support '{body['reasoning_effort']}' with this model.",
                                    param="reasoning_effort", code="unsupported_value")
        if reasoning and "max_tokens" in body:
            return openai_error(400, "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
                                param="max_tokens", code="unsupported_parameter")
        text = last_user_text(body)
        prompt_tokens = 5 + len(text.split())
        tools = body.get("tools") or []
        use_tool = tools and body.get("tool_choice") != "none"
        if body.get("response_format", {}).get("type") in ("json_object", "json_schema"):
            content = json.dumps({"answer": text})
        else:
            content = f"echo: {text}"
        if body.get("stream"):
            return self.chat_stream(body, content, tools if use_tool else [], prompt_tokens)
        message = {"role": "assistant", "content": None if use_tool else content, "refusal": None, "annotations": []}
        if use_tool:
            message["tool_calls"] = [{"id": "call_abc123", "type": "function", "function": {
                "name": tools[0]["function"]["name"], "arguments": json.dumps({"location": "Paris"})}}]
        completion_tokens = len((content or "").split())
        return Json({
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "object": "chat.completion",
            "created": 1741569952,
            "model": MODEL_VERSION,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": "tool_calls" if use_tool else "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                    "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
            "service_tier": "default",
            "system_fingerprint": "fp_06737a9306",
        }, headers={"openai-organization": "org-secret-123", "x-request-id": "req_abc"})

    def chat_stream(self, body, content, tools, prompt_tokens):
        base = {"id": "chatcmpl-stream1", "object": "chat.completion.chunk", "created": 1741569952,
                "model": MODEL_VERSION, "system_fingerprint": "fp_06737a9306"}
        include_usage = (body.get("stream_options") or {}).get("include_usage")
        events = [dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
                                       "logprobs": None, "finish_reason": None}])]
        if tools:
            args = json.dumps({"location": "Paris"})
            events.append(dict(base, choices=[{"index": 0, "delta": {"tool_calls": [
                {"index": 0, "id": "call_abc123", "type": "function", "function": {"name": tools[0]["function"]["name"], "arguments": ""}}]},
                "logprobs": None, "finish_reason": None}]))
            for i in range(0, len(args), 5):
                events.append(dict(base, choices=[{"index": 0, "delta": {"tool_calls": [
                    {"index": 0, "function": {"arguments": args[i:i + 5]}}]}, "logprobs": None, "finish_reason": None}]))
            finish = "tool_calls"
        else:
            words = content.split(" ")
            for i, w in enumerate(words):
                events.append(dict(base, choices=[{"index": 0, "delta": {"content": w if i == 0 else " " + w},
                                                   "logprobs": None, "finish_reason": None}]))
            finish = "stop"
        events.append(dict(base, choices=[{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}]))
        if include_usage:
            for e in events:
                e["usage"] = None
            ct = len(content.split())
            events.append(dict(base, choices=[], usage={"prompt_tokens": prompt_tokens, "completion_tokens": ct,
                                                        "total_tokens": prompt_tokens + ct,
                                                        "prompt_tokens_details": {"cached_tokens": 0},
                                                        "completion_tokens_details": {"reasoning_tokens": 0}}))
        return Stream(sse(events) + [b"data: [DONE]\n\n"])

    def embeddings(self, body):
        inputs = body.get("input")
        if inputs is None:
            return openai_error(400, "Missing required parameter: 'input'.", param="input")
        if isinstance(inputs, str):
            inputs = [inputs]
        dims = body.get("dimensions") or 8
        data = []
        for i, text in enumerate(inputs):
            vec = [round(math.sin(i + j + len(str(text))), 6) for j in range(dims)]
            if body.get("encoding_format") == "base64":
                emb = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode()
            else:
                emb = vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(len(str(t).split()) for t in inputs)
        return Json({"object": "list", "data": data, "model": "text-embedding-3-small",
                     "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    # The Responses API (POST /v1/responses), as the API reference shows its objects and events.

    def held(self):
        """The responses this server keeps, by (api_base path, id), as OpenAI keeps stored ones."""
        return self.__dict__.setdefault("stored_responses", {})

    def stored_response(self, req):
        # GET .../responses/{id}, GET .../responses/{id}/input_items, DELETE .../responses/{id}
        prefix, _, rest = req.path.partition("/responses/")
        rid, _, tail = rest.partition("/")
        found = self.held().get((prefix, rid))
        if found is None or tail not in ("", "input_items") or (tail and req.method != "GET"):
            return openai_error(404, f"Response with id '{rid}' not found.")
        response, items = found
        if req.method == "DELETE":
            del self.held()[(prefix, rid)]
            return Json({"id": rid, "object": "response", "deleted": True})
        if tail == "input_items":
            return Json({"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
                         "last_id": items[-1]["id"] if items else None, "has_more": False})
        if req.query.get("stream") == "true":
            return OpenAIMock.replay(response, req.query)
        return Json(response)

    @staticmethod
    def replay(response, query):
        """`GET /v1/responses/{id}?stream=true`: the response's events again, those after
        `starting_after` when given, as OpenAI sends them: one `event:`/`data:` frame each, compact
        JSON, and an `obfuscation` field on deltas unless `include_obfuscation=false`. (OpenAI
        replays only responses made with `background: true`; this mock replays any it keeps.)"""
        after = int(query.get("starting_after", -1))
        obfuscate = query.get("include_obfuscation") != "false"
        frames = []
        for name, data in OpenAIMock.responses_events(response):
            if data["sequence_number"] <= after:
                continue
            if obfuscate and name.endswith(".delta"):
                data = dict(data, obfuscation=secrets.token_urlsafe(9))
            frames.append(f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode())
        return Stream(frames)

    def responses(self, body, prefix=""):
        for required in ("model", "input"):
            if required not in body:
                return openai_error(400, f"Missing required parameter: '{required}'.", param=required,
                                    code="missing_required_parameter")
        previous = body.get("previous_response_id")
        held = OpenAIMock.held(self)
        if previous is not None and (prefix, previous) not in held:
            return openai_error(404, f"Previous response with id '{previous}' not found.",
                                param="previous_response_id", code="previous_response_not_found")
        items = body["input"] if isinstance(body["input"], list) else [{"role": "user", "content": body["input"]}]
        text = ""
        for item in reversed(items):
            if item.get("type", "message") == "function_call_output":
                text = f"tool said {item.get('output')}"
                break
            if item.get("type", "message") == "message" and item.get("role") == "user":
                c = item.get("content")
                text = c if isinstance(c, str) else " ".join(
                    p.get("text", "") for p in c if p.get("type") == "input_text")
                break
        tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
        answered_tool = any(i.get("type") == "function_call_output" for i in items)
        use_tool = tools and body.get("tool_choice") != "none" and not answered_tool
        fmt = ((body.get("text") or {}).get("format") or {}).get("type")
        content = json.dumps({"answer": text}) if fmt in ("json_object", "json_schema") else f"echo: {text}"
        prompt_tokens = 5 + len(text.split())
        if use_tool:
            output = [{"type": "function_call", "id": "fc_67ca09c6bedc8190a7abfec07b1a1332", "call_id": "call_abc123",
                       "name": tools[0]["name"], "arguments": json.dumps({"location": "Paris"}), "status": "completed"}]
            output_tokens = 9
        else:
            output = [{"type": "message", "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e6", "status": "completed",
                       "role": "assistant", "content": [{"type": "output_text", "text": content, "annotations": []}]}]
            output_tokens = len(content.split())
        rid = "resp_" + secrets.token_hex(24)
        response = {
            "id": rid, "object": "response", "created_at": 1741476542,
            "status": "completed", "error": None, "incomplete_details": None,
            "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
            "model": "gpt-4.1-2025-04-14", "output": output, "parallel_tool_calls": True,
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None}, "store": body.get("store", True),
            "temperature": 1.0, "text": {"format": {"type": fmt or "text"}}, "tool_choice": "auto",
            "tools": body.get("tools") or [], "top_p": 1.0, "truncation": "disabled",
            "usage": {"input_tokens": prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": prompt_tokens + output_tokens},
            "user": None, "metadata": body.get("metadata") or {},
        }
        if body.get("store", True):
            inputs = [dict(i, id=f"msg_{secrets.token_hex(8)}", type=i.get("type", "message"),
                           **({"content": [{"type": "input_text", "text": i["content"]}]}
                              if isinstance(i.get("content"), str) else {})) for i in items]
            held[(prefix, rid)] = (response, inputs)
        if not body.get("stream"):
            return Json(response, headers={"openai-organization": "org-secret-123", "x-request-id": "req_abc"})
        return Stream(sse(OpenAIMock.responses_events(response)))

    @staticmethod
    def responses_events(response):
        seq = iter(range(1000))
        start = dict(response, status="in_progress", output=[], usage=None)
        events = [("response.created", {"type": "response.created", "sequence_number": next(seq), "response": start}),
                  ("response.in_progress", {"type": "response.in_progress", "sequence_number": next(seq),
                                            "response": start})]

        def ev(kind, **fields):
            events.append((kind, dict(type=kind, sequence_number=next(seq), **fields)))
        for i, item in enumerate(response["output"]):
            if item["type"] == "message":
                text = item["content"][0]["text"]
                ev("response.output_item.added", output_index=i, item=dict(item, status="in_progress", content=[]))
                ev("response.content_part.added", item_id=item["id"], output_index=i, content_index=0,
                   part={"type": "output_text", "text": "", "annotations": []})
                words = text.split(" ")
                for j, w in enumerate(words):
                    ev("response.output_text.delta", item_id=item["id"], output_index=i, content_index=0,
                       delta=w if j == 0 else " " + w, logprobs=[])
                ev("response.output_text.done", item_id=item["id"], output_index=i, content_index=0, text=text,
                   logprobs=[])
                ev("response.content_part.done", item_id=item["id"], output_index=i, content_index=0,
                   part=item["content"][0])
            else:
                args = item["arguments"]
                ev("response.output_item.added", output_index=i, item=dict(item, status="in_progress", arguments=""))
                for j in range(0, len(args), 5):
                    ev("response.function_call_arguments.delta", item_id=item["id"], output_index=i,
                       delta=args[j:j + 5])
                ev("response.function_call_arguments.done", item_id=item["id"], output_index=i, arguments=args)
            ev("response.output_item.done", output_index=i, item=item)
        ev("response.completed", response=response)
        return events
