"""Azure OpenAI's data-plane inference API as an `*.openai.azure.com` resource speaks it:
deployments in the path, `api-version` in the query, the key in `api-key`, OpenAI bodies with
Azure's content-filter annotations, and Azure's error shapes."""

import base64
import json
import math
import struct

from .base import Json, MockProvider, Stream, sse
from .openai_mock import last_user_text, unknown_parameter

AZURE_KEY = "3f9a1c0d7e2b4a6f8c5d9e0a1b2c3d4e"
API_VERSIONS = {"2024-02-01", "2024-06-01", "2024-10-21", "2024-12-01-preview", "2025-04-01-preview"}
# deployment -> (operation it serves, model behind it)
DEPLOYMENTS = {
    "my-gpt4o-deployment": ("chat/completions", "gpt-4o-2024-08-06"),
    "my-embedding-deployment": ("embeddings", "text-embedding-3-small"),
}
# The 2024-10-21 chat request schema; Azure refuses anything else.
GA_CHAT_FIELDS = {
    "model", "messages", "stream", "stream_options", "temperature", "top_p", "stop", "max_tokens",
    "max_completion_tokens", "presence_penalty", "frequency_penalty", "logit_bias", "user",
    "data_sources", "logprobs", "top_logprobs", "n", "parallel_tool_calls", "response_format", "seed",
    "tools", "tool_choice", "function_call", "functions",
}
SAFE = {"filtered": False, "severity": "safe"}


def filters(**over):
    f = {"hate": SAFE, "self_harm": SAFE, "sexual": SAFE, "violence": SAFE}
    f.update(over)
    return f


def prompt_filters():
    return [{"prompt_index": 0, "content_filter_results": dict(filters(), jailbreak={"filtered": False, "detected": False})}]


def azure_error(status, code, message, **extra):
    return Json({"error": dict({"code": code, "message": message}, **extra)}, status=status,
                headers={"apim-request-id": "0c1d2e3f-aaaa-bbbb-cccc-1234567890ab"})


def invalid_request(message, param=None, code=None, status=400):
    return Json({"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}, status=status)


class AzureMock(MockProvider):
    name = "azure"
    env = {"AZURE_API_KEY": AZURE_KEY}
    key = AZURE_KEY

    def model_list(self, base_url):
        common = {"api_base": base_url, "api_version": "2024-10-21", "api_key": "os.environ/AZURE_API_KEY"}
        return [
            {"model_name": "azure-gpt", "litellm_params": dict(common, model="azure/my-gpt4o-deployment")},
            {"model_name": "azure-embed", "litellm_params": dict(common, model="azure/my-embedding-deployment"),
             "model_info": {"mode": "embedding"}},
        ]

    def respond(self, req):
        if req.headers.get("api-key") != self.key:
            return azure_error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.")
        if req.path == "/openai/v1/responses":
            return self.responses(req)
        parts = req.path.split("/")
        # /openai/deployments/<deployment>/<operation...>
        if len(parts) < 5 or parts[1] != "openai" or parts[2] != "deployments":
            return azure_error(404, "404", "Resource not found")
        version = req.query.get("api-version")
        if version is None:
            return azure_error(404, "404", "Resource not found")
        if version not in API_VERSIONS:
            return azure_error(400, "BadRequest", "API version not supported")
        deployment, operation = parts[3], "/".join(parts[4:])
        if operation not in ("chat/completions", "embeddings"):
            return azure_error(404, "404", "Resource not found")
        if deployment not in DEPLOYMENTS:
            return azure_error(404, "DeploymentNotFound", "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.")
        served, model = DEPLOYMENTS[deployment]
        if served != operation:
            return azure_error(400, "OperationNotSupported", f"The {operation.split('/')[0]} operation does not work with the specified model, {model.rsplit('-', 3)[0]}. Please choose different model and try again. You can learn more about which models can be used with each operation here: https://go.microsoft.com/fwlink/?linkid=2197993.")
        try:
            body = req.json
        except ValueError:
            return invalid_request("We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly.)")
        if not isinstance(body, dict):
            return invalid_request("Invalid request body: expected an object.")
        if operation == "embeddings":
            return self.embeddings(body, model)
        return self.chat(body, model, version)

    # Chat ----------------------------------------------------------------------------------------

    def chat(self, body, model, version):
        if not version.endswith("-preview"):
            for k in body:
                if k not in GA_CHAT_FIELDS:
                    return invalid_request(f"Unrecognized request argument supplied: {k}")
        messages = body.get("messages")
        # Inside messages and tools Azure refuses what OpenAI refuses, whatever the version.
        nested = unknown_parameter({k: body[k] for k in ("messages", "tools") if isinstance(body.get(k), list)})
        if nested:
            return invalid_request(f"Unrecognized request argument supplied: {nested}", param=nested)
        if not isinstance(messages, list) or not messages:
            return invalid_request("'messages' is a required property" if messages is None else "[] is too short - 'messages'", param="messages")
        if "max_tokens" in body and "max_completion_tokens" in body:
            return invalid_request("max_tokens and max_completion_tokens cannot both be set", param="max_tokens")
        text = last_user_text(body)
        total_chars = sum(len(json.dumps(m)) for m in messages)
        if total_chars > 20000:
            tokens = total_chars // 4
            return invalid_request(f"This model's maximum context length is 4096 tokens. However, your messages resulted in {tokens} tokens. Please reduce the length of the messages.",
                                   param="messages", code="context_length_exceeded")
        if "trigger-content-filter" in text:
            return Json({"error": {
                "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
                "type": None, "param": "prompt", "code": "content_filter", "status": 400,
                "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": dict(
                    filters(violence={"filtered": True, "severity": "medium"}),
                    jailbreak={"filtered": False, "detected": False})}}}, status=400)
        prompt_tokens = 9 + len(text.split())
        tools = body.get("tools") or []
        use_tool = bool(tools) and body.get("tool_choice") != "none" and not any(m.get("role") == "tool" for m in messages)
        fmt = (body.get("response_format") or {}).get("type")
        if fmt in ("json_object", "json_schema"):
            content = json.dumps({"answer": text})
        elif any(m.get("role") == "tool" for m in messages):
            tool_result = next(m.get("content") for m in reversed(messages) if m.get("role") == "tool")
            content = f"tool said: {tool_result}"
        else:
            content = f"echo: {text}"
        filtered_completion = "filter-completion" in text
        if body.get("stream"):
            return self.chat_stream(body, model, content, tools if use_tool else [], prompt_tokens, filtered_completion)
        message = {"content": None if use_tool else content, "refusal": None, "role": "assistant"}
        finish = "tool_calls" if use_tool else "stop"
        if use_tool:
            message["tool_calls"] = [{"function": {"arguments": json.dumps({"location": "Paris"}), "name": tools[0]["function"]["name"]},
                                      "id": "call_AzR2xk9", "type": "function"}]
        choice_filters = filters()
        if filtered_completion:
            message = {"role": "assistant"}
            finish = "content_filter"
            choice_filters = filters(sexual={"filtered": True, "severity": "high"})
        completion_tokens = len((content or "").split())
        return Json({
            "choices": [{"content_filter_results": choice_filters, "finish_reason": finish, "index": 0, "logprobs": None, "message": message}],
            "created": 1727000000,
            "id": "chatcmpl-AZ7Yq2xLrVb3",
            "model": model,
            "object": "chat.completion",
            "prompt_filter_results": prompt_filters(),
            "system_fingerprint": "fp_d54531d9eb",
            "usage": {"completion_tokens": completion_tokens, "completion_tokens_details": {"reasoning_tokens": 0},
                      "prompt_tokens": prompt_tokens, "prompt_tokens_details": {"cached_tokens": 0},
                      "total_tokens": prompt_tokens + completion_tokens},
        }, headers={"apim-request-id": "5e6f7a8b-0000-1111-2222-333344445555", "x-ms-region": "East US",
                    "x-ratelimit-remaining-requests": "99", "x-ratelimit-remaining-tokens": "99000"})

    def chat_stream(self, body, model, content, tools, prompt_tokens, filtered_completion):
        def chunk(choices, **extra):
            return dict({"choices": choices, "created": 1727000001, "id": "chatcmpl-AZ7Ys3tream", "model": model,
                         "object": "chat.completion.chunk", "system_fingerprint": "fp_d54531d9eb"}, **extra)

        def choice(delta, finish=None, cf=None):
            return [{"content_filter_results": filters() if cf is None else cf, "delta": delta,
                     "finish_reason": finish, "index": 0, "logprobs": None}]

        include_usage = (body.get("stream_options") or {}).get("include_usage")
        # Azure opens with a choice-less chunk carrying only the prompt's filter results.
        events = [{"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": prompt_filters()},
                  chunk(choice({"content": "", "refusal": None, "role": "assistant"}, cf={}))]
        if tools:
            args = json.dumps({"location": "Paris"})
            events.append(chunk(choice({"tool_calls": [{"function": {"arguments": "", "name": tools[0]["function"]["name"]},
                                                         "id": "call_AzR2xk9", "index": 0, "type": "function"}]}, cf={})))
            for i in range(0, len(args), 4):
                events.append(chunk(choice({"tool_calls": [{"function": {"arguments": args[i:i + 4]}, "index": 0}]}, cf={})))
            finish = "tool_calls"
        elif filtered_completion:
            events.append(chunk(choice({"content": "Once upon"})))
            finish = "content_filter"
        else:
            words = content.split(" ")
            for i, w in enumerate(words):
                events.append(chunk(choice({"content": w if i == 0 else " " + w})))
            # An annotation-only chunk (asynchronous filter): no delta, empty id/object/model.
            events.append({"choices": [{"content_filter_offsets": {"check_offset": 0, "end_offset": len(content), "start_offset": 0},
                                        "content_filter_results": filters(), "finish_reason": None, "index": 0}],
                           "created": 0, "id": "", "model": "", "object": ""})
            finish = "stop"
        cf = filters(sexual={"filtered": True, "severity": "high"}) if filtered_completion else {}
        events.append(chunk(choice({}, finish=finish, cf=cf)))
        if include_usage:
            ct = len(content.split())
            events.append(chunk([], usage={"completion_tokens": ct, "completion_tokens_details": {"reasoning_tokens": 0},
                                           "prompt_tokens": prompt_tokens, "prompt_tokens_details": {"cached_tokens": 0},
                                           "total_tokens": prompt_tokens + ct}))
        return Stream(sse(events) + [b"data: [DONE]\n\n"])

    # Embeddings ----------------------------------------------------------------------------------

    def embeddings(self, body, model):
        inputs = body.get("input")
        if inputs is None:
            return invalid_request("'input' is a required property", param="input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not inputs:
            return invalid_request("[] is too short - 'input'", param="input")
        fmt = body.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            return invalid_request(f"'{fmt}' is not one of ['float', 'base64'] - 'encoding_format'", param="encoding_format")
        dims = body.get("dimensions") or 8
        data = []
        for i, text in enumerate(inputs):
            vec = vector(i, text, dims)
            emb = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if fmt == "base64" else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        tokens = sum(len(str(t).split()) for t in inputs)
        return Json({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


    # The Responses API, which Azure serves under its v1 API (`/openai/v1/responses`, no
    # api-version), the deployment's name as `model`: answered as OpenAI's is.

    def responses(self, req):
        if "api-version" in req.query and req.query["api-version"] not in ("preview", "latest"):
            return azure_error(400, "BadRequest", "API version not supported")
        try:
            body = req.json
        except ValueError:
            return invalid_request("We could not parse the JSON body of your request.")
        if body.get("model") not in DEPLOYMENTS:
            return azure_error(404, "DeploymentNotFound", "The API deployment for this resource does not exist.")
        from .openai_mock import OpenAIMock
        return OpenAIMock.responses(self, body)


def vector(i, text, dims=8):
    """The vector the mock returns for input `i` (for tests)."""
    return [round(math.cos(i + j + len(str(text))), 6) for j in range(dims)]

