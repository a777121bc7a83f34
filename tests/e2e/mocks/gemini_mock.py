"""Google AI Studio's Gemini API (generativelanguage.googleapis.com, v1beta) as it answers:
generateContent, streamGenerateContent?alt=sse and batchEmbedContents, with its proto-JSON
request parsing (camelCase or snake_case names, unknown names refused), its validation messages,
its google.rpc.Status errors and its key check (x-goog-api-key or ?key=)."""

import base64
import binascii
import json
import math
import re

from .base import Json, MockProvider, Stream

GEMINI_KEY = "AIzaSyMockGeminiKey-4fT9qW2xZ7nB1vC3dE"
CHAT_MODELS = {"gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash"}
EMBED_MODELS = {"text-embedding-004": 768, "gemini-embedding-001": 3072}
# Signatures this mock hands out on function calls, as Gemini 2.5 does when it thinks.
SIGNATURE_PREFIX = b"mock-thought-signature:"
SKIP_SIGNATURES = {"skip_thought_signature_validator", "context_engineering_is_the_way_to_go"}


def gemini_error(code, status, message, details=None):
    """A google.rpc.Status error body, as the API sends it."""
    err = {"code": code, "message": message, "status": status}
    if details is not None:
        err["details"] = details
    return Json({"error": err}, status=code)


def invalid(message):
    return gemini_error(400, "INVALID_ARGUMENT", message)


def bad_request(field, description):
    """Google's field-violation shape for request validation errors."""
    return gemini_error(400, "INVALID_ARGUMENT", f"* {field}: {description}\n", details=[
        {"@type": "type.googleapis.com/google.rpc.BadRequest",
         "fieldViolations": [{"field": field, "description": description}]}])


API_KEY_INVALID = gemini_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", details=[
    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
     "metadata": {"service": "generativelanguage.googleapis.com"}},
    {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
     "message": "API key not valid. Please pass a valid API key."}])

NO_KEY = gemini_error(403, "PERMISSION_DENIED",
                      "Method doesn't allow unregistered callers (callers without established identity). "
                      "Please use API Key or other form of API consumer identity to call this API.")


# Proto-JSON parsing ---------------------------------------------------------------------------
# Each message: field (camelCase) -> kind. Kinds: None (scalar or list of scalars),
# ("msg", Name), ("list", Name), ("map", Name), "value" (google.protobuf.Value/Struct: kept verbatim).

SPEC = {
    "GenerateContentRequest": {
        "model": None, "contents": ("list", "Content"), "systemInstruction": ("msg", "Content"),
        "tools": ("list", "Tool"), "toolConfig": ("msg", "ToolConfig"),
        "generationConfig": ("msg", "GenerationConfig"), "safetySettings": ("list", "SafetySetting"),
        "cachedContent": None,
    },
    "Content": {"role": None, "parts": ("list", "Part")},
    "Part": {
        "text": None, "thought": None, "thoughtSignature": None, "inlineData": ("msg", "Blob"),
        "fileData": ("msg", "FileData"), "functionCall": ("msg", "FunctionCall"),
        "functionResponse": ("msg", "FunctionResponse"), "executableCode": "value",
        "codeExecutionResult": "value", "videoMetadata": "value",
    },
    "Blob": {"mimeType": None, "data": None},
    "FileData": {"mimeType": None, "fileUri": None},
    "FunctionCall": {"id": None, "name": None, "args": "value"},
    "FunctionResponse": {"id": None, "name": None, "response": "value", "willContinue": None, "scheduling": None},
    "Tool": {
        "functionDeclarations": ("list", "FunctionDeclaration"), "googleSearch": "value",
        "googleSearchRetrieval": "value", "codeExecution": "value", "urlContext": "value",
    },
    "FunctionDeclaration": {
        "name": None, "description": None, "behavior": None, "parameters": ("msg", "Schema"),
        "parametersJsonSchema": "value", "response": ("msg", "Schema"), "responseJsonSchema": "value",
    },
    "ToolConfig": {"functionCallingConfig": ("msg", "FunctionCallingConfig"), "retrievalConfig": "value"},
    "FunctionCallingConfig": {"mode": None, "allowedFunctionNames": None},
    "GenerationConfig": {
        "stopSequences": None, "responseMimeType": None, "responseSchema": ("msg", "Schema"),
        "responseJsonSchema": "value", "responseModalities": None, "candidateCount": None,
        "maxOutputTokens": None, "temperature": None, "topP": None, "topK": None, "seed": None,
        "presencePenalty": None, "frequencyPenalty": None, "responseLogprobs": None, "logprobs": None,
        "enableEnhancedCivicAnswers": None, "speechConfig": "value", "thinkingConfig": ("msg", "ThinkingConfig"),
        "imageConfig": "value", "mediaResolution": None,
    },
    "ThinkingConfig": {"includeThoughts": None, "thinkingBudget": None, "thinkingLevel": None},
    "SafetySetting": {"category": None, "threshold": None},
    "Schema": {
        "type": None, "format": None, "title": None, "description": None, "nullable": None, "enum": None,
        "maxItems": None, "minItems": None, "properties": ("map", "Schema"), "required": None,
        "minProperties": None, "maxProperties": None, "minLength": None, "maxLength": None, "pattern": None,
        "example": "value", "anyOf": ("list", "Schema"), "propertyOrdering": None, "default": "value",
        "items": ("msg", "Schema"), "minimum": None, "maximum": None,
    },
    "BatchEmbedContentsRequest": {"requests": ("list", "EmbedContentRequest")},
    "EmbedContentRequest": {
        "model": None, "content": ("msg", "Content"), "taskType": None, "title": None,
        "outputDimensionality": None,
    },
}


def camel(name):
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def snake(name):
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


class ProtoError(Exception):
    pass


def parse_message(obj, message, path):
    """Normalizes a proto-JSON object to camelCase names, refusing unknown names the way
    Google's ESF does. `path` is the snake_case field path used in its messages."""
    where = path or "(root)"
    if not isinstance(obj, dict):
        raise ProtoError(f"Invalid value at '{where}' ({message}), {json.dumps(obj)[:40]}")
    spec = SPEC[message]
    out = {}
    for key, value in obj.items():
        name = camel(key)
        if name not in spec:
            at = f" at '{path}'" if path else ""
            raise ProtoError(f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.')
        sub = f"{path}.{snake(name)}" if path else snake(name)
        kind = spec[name]
        if kind is None or kind == "value" or value is None:
            out[name] = value
        elif kind[0] == "msg":
            out[name] = parse_message(value, kind[1], sub)
        elif kind[0] == "list":
            if not isinstance(value, list):
                raise ProtoError(f"Invalid value at '{sub}', expected a list")
            out[name] = [parse_message(v, kind[1], f"{sub}[{i}]") for i, v in enumerate(value)]
        elif kind[0] == "map":
            if not isinstance(value, dict):
                raise ProtoError(f"Invalid value at '{sub}', expected an object")
            out[name] = {k: parse_message(v, kind[1], f'{sub}["{k}"]') for k, v in value.items()}
    return out


# Request content helpers ----------------------------------------------------------------------

def words(text):
    return len(re.findall(r"\S+", text or ""))


def part_text(parts):
    return " ".join(p["text"] for p in parts if isinstance(p.get("text"), str) and not p.get("thought"))


def prompt_tokens(body):
    n = 0
    for c in body.get("contents") or []:
        for p in c.get("parts") or []:
            n += words(p.get("text")) + (258 if "inlineData" in p or "fileData" in p else 0)
            for key in ("functionCall", "functionResponse"):
                if key in p:
                    n += 4 + words(json.dumps(p[key]))
    si = body.get("systemInstruction")
    if si:
        n += words(part_text(si.get("parts") or []))
    return max(n, 1)


def issue_signature(n):
    return base64.b64encode(SIGNATURE_PREFIX + str(n).encode()).decode()


class GeminiMock(MockProvider):
    name = "gemini"
    env = {"GEMINI_API_KEY": GEMINI_KEY}
    key = GEMINI_KEY

    def model_list(self, base_url):
        return [
            {"model_name": "gemini", "litellm_params": {
                "model": "gemini/gemini-2.5-flash", "api_base": base_url, "api_key": "os.environ/GEMINI_API_KEY"}},
            {"model_name": "gemini-embed", "litellm_params": {
                "model": "gemini/text-embedding-004", "api_base": base_url, "api_key": "os.environ/GEMINI_API_KEY"},
             "model_info": {"mode": "embedding"}},
        ]

    def respond(self, req):
        key = req.headers.get("x-goog-api-key") or req.query.get("key")
        if not key:
            return NO_KEY
        if key != self.key:
            return API_KEY_INVALID
        m = re.fullmatch(r"/v1beta/models/([^/:]+):(\w+)", req.path)
        if req.method != "POST" or not m:
            return gemini_error(404, "NOT_FOUND", f"Requested entity was not found. ({req.method} {req.path})")
        model, method = m.groups()
        try:
            raw = json.loads(req.body or b"{}")
        except ValueError as e:
            return invalid(f"Invalid JSON payload received. {e}")
        known = CHAT_MODELS if method in ("generateContent", "streamGenerateContent") else EMBED_MODELS
        if model not in known or method not in ("generateContent", "streamGenerateContent", "batchEmbedContents"):
            return gemini_error(404, "NOT_FOUND",
                                f"models/{model} is not found for API version v1beta, or is not supported for {method}. "
                                "Call ListModels to see the list of available models and their supported methods.")
        try:
            if method == "batchEmbedContents":
                return self.embed(model, parse_message(raw, "BatchEmbedContentsRequest", ""))
            body = parse_message(raw, "GenerateContentRequest", "")
        except ProtoError as e:
            return invalid(str(e))
        problem = self.validate(body)
        if problem:
            return problem
        if method == "streamGenerateContent":
            if req.query.get("alt") != "sse":
                return invalid("This mock only streams server-sent events: add ?alt=sse.")
            return self.stream(model, body)
        return Json(self.generate(model, body))

    # Validation, with the API's own messages -------------------------------------------------

    def validate(self, body):
        contents = body.get("contents") or []
        if not contents:
            return bad_request("GenerateContentRequest.contents", "contents is not specified")
        prev = None
        for i, c in enumerate(contents):
            role = c.get("role") or "user"
            if role not in ("user", "model"):
                return invalid("Please use a valid role: user, model.")
            parts = c.get("parts") or []
            if not parts:
                return bad_request(f"GenerateContentRequest.contents[{i}].parts", "contents.parts must not be empty.")
            for j, p in enumerate(parts):
                problem = self.validate_part(p, f"contents[{i}].parts[{j}]", role)
                if problem:
                    return problem
            responses = sum(1 for p in parts if "functionResponse" in p)
            if responses:
                calls = sum(1 for p in (prev or {}).get("parts", []) if "functionCall" in p)
                if (prev or {}).get("role") != "model" or calls != responses:
                    return invalid("Please ensure that the number of function response parts is equal to the number "
                                   "of function call parts of the function call turn.")
            prev = dict(c, role=role)
        si = body.get("systemInstruction")
        if si is not None:
            for j, p in enumerate(si.get("parts") or []):
                if "text" not in p:
                    return invalid("System instruction must only contain text parts.")
        declared = []
        for t, tool in enumerate(body.get("tools") or []):
            for k, fd in enumerate(tool.get("functionDeclarations") or []):
                name = fd.get("name") or ""
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}", name):
                    return bad_request(f"GenerateContentRequest.tools[{t}].function_declarations[{k}].name",
                                       "Invalid function name. Must start with a letter or an underscore. Must be "
                                       "a-z, A-Z, 0-9, or contain underscores, dots, colons and dashes, with a maximum length of 64.")
                if "parameters" in fd and "parametersJsonSchema" in fd:
                    return bad_request(f"GenerateContentRequest.tools[{t}].function_declarations[{k}]",
                                       "parameters and parameters_json_schema are mutually exclusive.")
                schema = fd.get("parametersJsonSchema")
                if schema is not None and (not isinstance(schema, dict) or schema.get("type") != "object"):
                    return bad_request(f"GenerateContentRequest.tools[{t}].function_declarations[{k}].parameters_json_schema",
                                       "The schema must describe an object.")
                declared.append(name)
        fcc = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        if fcc:
            mode = fcc.get("mode", "MODE_UNSPECIFIED")
            if mode not in ("MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"):
                return invalid(f"Invalid value at 'tool_config.function_calling_config.mode' (type.googleapis.com/"
                               f"google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), \"{mode}\"")
            allowed = fcc.get("allowedFunctionNames") or []
            if allowed and mode != "ANY":
                return bad_request("GenerateContentRequest.tool_config.function_calling_config.allowed_function_names",
                                   "allowed_function_names is only allowed when mode is ANY.")
            for name in allowed:
                if name not in declared:
                    return bad_request("GenerateContentRequest.tool_config.function_calling_config.allowed_function_names",
                                       f"function name '{name}' is not declared in tools.")
        gc = body.get("generationConfig") or {}
        checks = [
            ("temperature", lambda v: 0 <= v <= 2, "temperature must be in [0.0, 2.0]"),
            ("topP", lambda v: 0 <= v <= 1, "top_p must be in [0.0, 1.0]"),
            ("candidateCount", lambda v: 1 <= v <= 8, "candidate_count must be in [1, 8]"),
            ("maxOutputTokens", lambda v: v >= 1, "max_output_tokens must be positive"),
            ("stopSequences", lambda v: len(v) <= 5, "stop_sequences must have at most 5 items"),
            ("presencePenalty", lambda v: -2 <= v < 2, "presence_penalty must be in [-2.0, 2.0)"),
            ("frequencyPenalty", lambda v: -2 <= v < 2, "frequency_penalty must be in [-2.0, 2.0)"),
            ("seed", lambda v: -2**31 <= v < 2**31, "seed must be an int32"),
        ]
        for field, ok, msg in checks:
            if field in gc and not ok(gc[field]):
                return bad_request(f"GenerateContentRequest.generation_config.{snake(field)}", msg)
        if "responseSchema" in gc and "responseJsonSchema" in gc:
            return bad_request("GenerateContentRequest.generation_config",
                               "response_schema and response_json_schema are mutually exclusive.")
        if ("responseSchema" in gc or "responseJsonSchema" in gc) and gc.get("responseMimeType") != "application/json":
            return bad_request("GenerateContentRequest.generation_config.response_mime_type",
                               "response_mime_type must be application/json when a response schema is set.")
        return None

    def validate_part(self, p, where, role):
        data_fields = [k for k in ("text", "inlineData", "fileData", "functionCall", "functionResponse",
                                   "executableCode", "codeExecutionResult") if k in p]
        if len(data_fields) != 1:
            return bad_request(f"GenerateContentRequest.{where}.data",
                               "required oneof field 'data' must have one initialized field")
        if "text" in p and p["text"] == "" and not p.get("thoughtSignature"):
            return invalid("Unable to submit request because it has an empty text parameter. "
                           "Add a value to the parameter and try again.")
        if "inlineData" in p:
            blob = p["inlineData"]
            if not blob.get("mimeType"):
                return bad_request(f"GenerateContentRequest.{where}.inline_data.mime_type", "mime_type is required")
            if not blob["mimeType"].startswith(("image/", "audio/", "video/", "text/", "application/pdf")):
                return invalid(f"Unsupported MIME type: {blob['mimeType']}")
            try:
                base64.b64decode(blob.get("data") or "", validate=True)
            except (binascii.Error, ValueError):
                return invalid(f"Invalid value at '{snake(where)}.inline_data.data' (TYPE_BYTES), "
                               f"Base64 decoding failed for \"{(blob.get('data') or '')[:20]}\"")
        if "fileData" in p and not p["fileData"].get("fileUri"):
            return bad_request(f"GenerateContentRequest.{where}.file_data.file_uri", "file_uri is required")
        if "functionCall" in p:
            fc = p["functionCall"]
            if role != "model":
                return invalid("Please ensure that function call turns come from the model.")
            if not fc.get("name") or not isinstance(fc.get("args", {}), dict):
                return bad_request(f"GenerateContentRequest.{where}.function_call", "name is required and args must be an object")
        if "functionResponse" in p:
            fr = p["functionResponse"]
            if not fr.get("name") or not isinstance(fr.get("response"), dict):
                return bad_request(f"GenerateContentRequest.{where}.function_response",
                                   "name is required and response must be an object")
        sig = p.get("thoughtSignature")
        if sig is not None and sig not in SKIP_SIGNATURES:
            try:
                base64.b64decode(sig, validate=True)
            except (binascii.Error, ValueError):
                return invalid(f"Invalid value at '{snake(where)}.thought_signature' (TYPE_BYTES), "
                               f"Base64 decoding failed for \"{sig[:20]}\"")
        return None

    # Answers ----------------------------------------------------------------------------------

    def plan(self, body):
        """What the model 'says' for each candidate: (thought, text parts, function calls, finish)."""
        contents = body["contents"]
        last = contents[-1]
        last_parts = last.get("parts") or []
        tool_results = [p["functionResponse"] for p in last_parts if "functionResponse" in p]
        user_text = ""
        for c in reversed(contents):
            if (c.get("role") or "user") == "user" and part_text(c.get("parts") or []):
                user_text = part_text(c["parts"])
                break
        gc = body.get("generationConfig") or {}
        declared = [fd["name"] for t in body.get("tools") or [] for fd in t.get("functionDeclarations") or []]
        fcc = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        mode = fcc.get("mode", "AUTO")
        call = None
        if declared and mode != "NONE" and not tool_results:
            name = (fcc.get("allowedFunctionNames") or declared)[0]
            call = {"name": name, "args": {"location": "Paris"}}
        if tool_results:
            text = "Tool results: " + "; ".join(f"{r['name']} -> {json.dumps(r['response'], sort_keys=True)}"
                                                 for r in tool_results)
        else:
            text = f"echo: {user_text}"
        if gc.get("responseMimeType") == "application/json":
            text = json.dumps({"answer": user_text})
        thinking = (gc.get("thinkingConfig") or {}).get("includeThoughts")
        thought = f"The user said: {user_text}" if thinking else None
        finish = "STOP"
        if call is None:
            for stop in gc.get("stopSequences") or []:
                if stop and stop in text:
                    text = text[:text.index(stop)]
            limit = gc.get("maxOutputTokens")
            tokens = text.split(" ")
            if limit and len(tokens) > limit:
                text = " ".join(tokens[:limit])
                finish = "MAX_TOKENS"
        return thought, (None if call else text), call, finish

    def usage(self, body, thought, text, call, n):
        prompt = prompt_tokens(body)
        out = (words(text) + (6 if call else 0)) * n
        thoughts = words(thought) * n if thought else 0
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": out, "totalTokenCount": prompt + out + thoughts,
                 "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        return usage

    def candidate_parts(self, thought, text, call, i):
        parts = []
        if thought:
            parts.append({"text": thought, "thought": True})
        if call:
            parts.append({"functionCall": call, "thoughtSignature": issue_signature(i)})
        elif text is not None:
            parts.append({"text": text})
        return parts

    def generate(self, model, body):
        n = (body.get("generationConfig") or {}).get("candidateCount", 1)
        thought, text, call, finish = self.plan(body)
        candidates = []
        for i in range(n):
            c = {"content": {"parts": self.candidate_parts(thought, text, call, i), "role": "model"},
                 "finishReason": finish, "avgLogprobs": -0.0123}
            if i:
                c["index"] = i  # proto3 JSON leaves out the zero index
            candidates.append(c)
        return {"candidates": candidates, "usageMetadata": self.usage(body, thought, text, call, n),
                "modelVersion": model, "responseId": "mQcCaZ-mockResponseId"}

    def stream(self, model, body):
        n = (body.get("generationConfig") or {}).get("candidateCount", 1)
        thought, text, call, finish = self.plan(body)
        prompt = prompt_tokens(body)
        base = {"modelVersion": model, "responseId": "mQcCaZ-mockStreamId"}

        def event(cands, usage):
            return "data: " + json.dumps(dict(base, candidates=cands, usageMetadata=usage)) + "\r\n\r\n"

        def cand(i, parts, finish_reason=None):
            c = {"content": {"parts": parts, "role": "model"}}
            if finish_reason:
                c["finishReason"] = finish_reason
            if i:
                c["index"] = i
            return c

        running = {"promptTokenCount": prompt, "totalTokenCount": prompt,
                   "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}
        events = []
        if thought:
            events.append(event([cand(i, [{"text": thought, "thought": True}]) for i in range(n)], running))
        pieces = [] if text is None else re.findall(r"\S+\s*|\s+", text) or [""]
        # Gemini streams a few words per chunk; the last chunk carries finishReason and usage.
        chunks = [pieces[k:k + 2] for k in range(0, len(pieces), 2)] or [[]]
        final_usage = self.usage(body, thought, text, call, n)
        for k, chunk in enumerate(chunks):
            is_last = k == len(chunks) - 1
            cands = []
            for i in range(n):
                parts = [{"text": "".join(chunk)}] if chunk else []
                if is_last and call:
                    parts.append({"functionCall": call, "thoughtSignature": issue_signature(i)})
                cands.append(cand(i, parts, finish if is_last else None))
            events.append(event(cands, final_usage if is_last else running))
        return Stream(events)

    def embed(self, model, body):
        requests = body.get("requests") or []
        if not requests:
            return bad_request("BatchEmbedContentsRequest.requests", "requests must not be empty")
        if len(requests) > 100:
            return bad_request("BatchEmbedContentsRequest.requests", "at most 100 requests can be in one batch")
        out = []
        for i, r in enumerate(requests):
            if r.get("model") != f"models/{model}":
                return bad_request(f"BatchEmbedContentsRequest.requests[{i}].model",
                                   "the model in each request must match the model of the batch request")
            parts = (r.get("content") or {}).get("parts") or []
            if not parts or any(not isinstance(p.get("text"), str) for p in parts):
                return bad_request(f"BatchEmbedContentsRequest.requests[{i}].content", "content must contain text parts")
            text = part_text(parts)
            dims = r.get("outputDimensionality") or EMBED_MODELS[model]
            if not 1 <= dims <= EMBED_MODELS[model]:
                return bad_request(f"BatchEmbedContentsRequest.requests[{i}].output_dimensionality",
                                   f"output_dimensionality must be in [1, {EMBED_MODELS[model]}]")
            out.append({"values": [round(math.sin(i + j + len(text)), 6) for j in range(dims)]})
        return Json({"embeddings": out})
