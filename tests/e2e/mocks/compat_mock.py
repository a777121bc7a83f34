"""OpenAI-compatible servers on one port: a hosted API under `/openai/v1` that wants a bearer key
(as Groq does) and self-hosted servers under `/v1` that take none (as vLLM and Ollama do by
default). Bodies are OpenAI's; each server checks the model it serves and answers with its id."""

import json

from .base import Json, Stream
from .openai_mock import MODEL_VERSION, OpenAIMock

GROQ_KEY = "gsk_test_compat_9fK2mQ7xLp4RvW3z"
HOSTED = "/openai/v1/"
LOCAL = "/v1/"
HOSTED_MODELS = {"llama-3.3-70b-versatile"}
LOCAL_MODELS = {"meta-llama/Llama-3.1-8B-Instruct", "llama3.2"}


def error(status, message, type_, code=None, param=None):
    return Json({"error": {"message": message, "type": type_, "param": param, "code": code}}, status=status)


class CompatMock(OpenAIMock):
    name = "compat"
    env = {"GROQ_API_KEY": GROQ_KEY}
    key = GROQ_KEY
    openai_models = False

    def model_list(self, base_url):
        return [
            {"model_name": "groq-llama", "litellm_params": {
                "model": "groq/llama-3.3-70b-versatile", "api_base": f"{base_url}/openai/v1", "api_key": "os.environ/GROQ_API_KEY"}},
            {"model_name": "vllm-local", "litellm_params": {
                "model": "hosted_vllm/meta-llama/Llama-3.1-8B-Instruct", "api_base": base_url}},
            {"model_name": "ollama", "litellm_params": {"model": "ollama_chat/llama3.2", "api_base": base_url}},
        ]

    def respond(self, req):
        if req.path.startswith(HOSTED):
            if req.headers.get("authorization") != f"Bearer {self.key}":
                return error(401, "Invalid API Key", "invalid_request_error", code="invalid_api_key")
            tail, models = req.path[len(HOSTED):], HOSTED_MODELS
        elif req.path.startswith(LOCAL):
            tail, models = req.path[len(LOCAL):], LOCAL_MODELS
        else:
            return error(404, f"Unknown request URL: {req.method} {req.path}. Please check the URL for typos.", "invalid_request_error", code="unknown_url")
        if tail != "chat/completions":
            return error(404, f"Unknown request URL: {req.method} {req.path}.", "invalid_request_error", code="unknown_url")
        try:
            body = req.json
        except ValueError:
            return error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
        model = body.get("model")
        if model not in models:
            return error(404, f"The model `{model}` does not exist or you do not have access to it.", "invalid_request_error",
                         code="model_not_found", param="model")
        # vLLM and Ollama take sampling parameters beyond OpenAI's (top_k); Groq refuses them.
        answer = self.chat(body, extra=("top_k",) if models is LOCAL_MODELS else ())
        # Each server answers with the id of the model it serves.
        if isinstance(answer, Json) and isinstance(answer.body, dict) and "choices" in answer.body:
            answer.body["model"] = model
            if models is HOSTED_MODELS:
                answer.body["x_groq"] = {"id": "req_01jcompat"}
            answer.headers = {}
        elif isinstance(answer, Stream):
            old, new = json.dumps(MODEL_VERSION).encode(), json.dumps(model).encode()
            answer.parts = [p.replace(old, new) for p in answer.parts]
        return answer
