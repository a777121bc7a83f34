"""AWS Bedrock Runtime's Converse / ConverseStream API, as bedrock-runtime.<region>.amazonaws.com speaks it.

It authenticates like AWS: SigV4 recomputed from the request as received (canonical request with the
double-encoded path, signed headers, the body's SHA-256, credential scope `<date>/us-east-1/bedrock/aws4_request`,
the fake secret), or a Bedrock API key as `Authorization: Bearer`. Failures get AWS's 403 errors with
`x-amzn-ErrorType`. Bodies are validated the way Converse does, answers are Converse JSON, and streams are
binary `application/vnd.amazon.eventstream` frames with real CRCs.
"""

import base64
import binascii
import datetime
import hashlib
import hmac
import json
import re
import struct
import uuid
import zlib
from urllib.parse import quote, unquote

from .base import Json, MockProvider, Stream

ACCESS_KEY_ID = "AKIAMOCKTOLLGATE7Q2X"
SECRET_ACCESS_KEY = "mockSecretKey/Tollgate+Bedrock/9fK2pL4vR8wQ"
API_KEY = "ABSKQmVkcm9ja0FQSUtleS1tb2NrLXRvbGxnYXRlLTRrUDhx"  # the shape of a long-term Bedrock API key
REGION = "us-east-1"
SERVICE = "bedrock"
CORAL = "http://internal.amazon.com/coral/com.amazon.coral.service/"
BEDROCK_NS = "http://internal.amazon.com/coral/com.amazon.bedrock/"
EVENTSTREAM = "application/vnd.amazon.eventstream"
PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0"

TOP_LEVEL = {"messages", "system", "inferenceConfig", "toolConfig", "requestMetadata", "guardrailConfig",
             "additionalModelRequestFields", "additionalModelResponseFieldPaths", "promptVariables",
             "performanceConfig"}
METADATA_RE = re.compile(r"^[a-zA-Z0-9\s._:/=+$@-]{0,256}$")
TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def aws_error(status, type_, message, namespace=BEDROCK_NS, key="message"):
    """An AWS JSON error: `{"message": ...}` with the type in `x-amzn-ErrorType`."""
    return Json({key: message}, status=status, headers={
        "x-amzn-ErrorType": f"{type_}:{namespace}",
        "x-amzn-RequestId": str(uuid.uuid4()),
    })


def validation(message):
    return aws_error(400, "ValidationException", message)


# Event-stream framing ------------------------------------------------------------------------------

def frame(headers, payload):
    """One event-stream message: prelude, CRC, string headers (type 7), payload, message CRC."""
    block = b""
    for name, value in headers:
        n, v = name.encode(), value.encode()
        block += bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v
    prelude = struct.pack(">II", 16 + len(block) + len(payload), len(block))
    prelude += struct.pack(">I", zlib.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + block + payload
    return message + struct.pack(">I", zlib.crc32(message) & 0xFFFFFFFF)


def event(event_type, payload):
    body = dict(payload, p=PADDING[: 1 + len(json.dumps(payload)) % len(PADDING)])
    return frame([(":event-type", event_type), (":content-type", "application/json"), (":message-type", "event")],
                 json.dumps(body, separators=(",", ":")).encode())


def exception(exception_type, message):
    """A modeled exception in the stream, e.g. `throttlingException`."""
    return frame([(":exception-type", exception_type), (":content-type", "application/json"),
                  (":message-type", "exception")], json.dumps({"message": message}).encode())


# SigV4, as AWS verifies it -----------------------------------------------------------------------------

def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def canonical_uri(raw_path):
    """Non-S3 services normalize the path and URI-encode each segment of the path as sent, so an
    already-encoded `%3A` becomes `%253A`."""
    segments = []
    for seg in raw_path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if segments:
                segments.pop()
            continue
        segments.append(quote(seg, safe="-_.~"))
    uri = "/" + "/".join(segments)
    if raw_path.endswith("/") and uri != "/":
        uri += "/"
    return uri


def canonical_query(raw_query):
    pairs = []
    for part in filter(None, raw_query.split("&")):
        k, _, v = part.partition("=")
        pairs.append((quote(unquote(k), safe="-_.~"), quote(unquote(v), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def verify_sigv4(req, raw_query=""):
    """Returns None when the request is signed correctly, else AWS's error answer."""
    auth = req.headers.get("authorization", "")
    m = re.match(r"^AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$", auth)
    if not m:
        return aws_error(400, "IncompleteSignatureException",
                         f"Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters. Authorization={auth[:40]}",
                         namespace=CORAL)
    credential, signed_headers, signature = m.groups()
    parts = credential.split("/")
    if len(parts) != 5:
        return aws_error(400, "IncompleteSignatureException", "Credential must have exactly 5 slash-delimited elements.", namespace=CORAL)
    key_id, date, region, service, terminator = parts
    if key_id != ACCESS_KEY_ID:
        return aws_error(403, "UnrecognizedClientException", "The security token included in the request is invalid.", namespace=CORAL)
    if region != REGION:
        return aws_error(403, "InvalidSignatureException", f"Credential should be scoped to a valid region. ", namespace=CORAL)
    if service != SERVICE:
        return aws_error(403, "InvalidSignatureException", f"Credential should be scoped to correct service: '{SERVICE}'. ", namespace=CORAL)
    if terminator != "aws4_request":
        return aws_error(403, "InvalidSignatureException", "Credential should be scoped with a valid terminator: 'aws4_request'.", namespace=CORAL)
    amz_date = req.headers.get("x-amz-date", "")
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return aws_error(400, "IncompleteSignatureException", "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.", namespace=CORAL)
    if amz_date[:8] != date:
        return aws_error(403, "InvalidSignatureException", f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{date}' != '{amz_date[:8]}'", namespace=CORAL)
    now = datetime.datetime.now(datetime.timezone.utc)
    if abs((now - when).total_seconds()) > 300:
        return aws_error(403, "InvalidSignatureException", f"Signature expired: {amz_date} is now earlier than {now.strftime('%Y%m%dT%H%M%SZ')}", namespace=CORAL)
    names = signed_headers.split(";")
    if "host" not in names:
        return aws_error(403, "InvalidSignatureException", "'Host' must be a 'SignedHeader' in the AWS Authorization.", namespace=CORAL)
    if names != sorted(names):
        return aws_error(403, "InvalidSignatureException", "SignedHeaders must be sorted.", namespace=CORAL)
    body_hash = _sha256(req.body)
    claimed = req.headers.get("x-amz-content-sha256")
    if claimed is not None and claimed != body_hash:
        return aws_error(400, "ValidationException", "The provided 'x-amz-content-sha256' header does not match what was computed.")
    canonical_headers = ""
    for name in names:
        value = req.headers.get(name)
        if value is None:
            return aws_error(403, "InvalidSignatureException", f"The signed header '{name}' is missing from the request.", namespace=CORAL)
        canonical_headers += f"{name}:{' '.join(value.split())}\n"
    canonical = "\n".join([req.method, canonical_uri(req.path), canonical_query(raw_query), canonical_headers,
                           signed_headers, body_hash])
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, _sha256(canonical.encode())])
    key = _hmac(("AWS4" + SECRET_ACCESS_KEY).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return aws_error(403, "InvalidSignatureException",
                         "The request signature we calculated does not match the signature you provided. Check your "
                         "AWS Secret Access Key and signing method. Consult the service documentation for details.\n\n"
                         f"The Canonical String for this request should have been\n'{canonical}'\n\n"
                         f"The String-to-Sign should have been\n'{string_to_sign}'\n", namespace=CORAL)
    return None


# Converse validation -----------------------------------------------------------------------------------

DOCUMENT_NAME_RE = re.compile(r"^[A-Za-z0-9\-()\[\] ]{1,200}$")


def validate_block(block, where, role):
    if not isinstance(block, dict) or len(block) != 1:
        return f"The content block at {where} must set exactly one member."
    (kind, value), = block.items()
    if kind == "text":
        if not isinstance(value, str) or not value.strip():
            return f"The text field in the ContentBlock object at {where} is blank. Add text to the text field, and try again."
    elif kind == "image":
        if role != "user":
            return f"The image block at {where} is only allowed in user messages."
        if value.get("format") not in ("png", "jpeg", "gif", "webp"):
            return f"Value at '{where}.image.format' failed to satisfy constraint: Member must satisfy enum value set: [gif, jpeg, png, webp]"
        try:
            base64.b64decode(value.get("source", {}).get("bytes", ""), validate=True)
        except (binascii.Error, ValueError, AttributeError):
            return f"Invalid base64 in {where}.image.source.bytes"
    elif kind == "toolUse":
        if role != "assistant" or not {"toolUseId", "name", "input"} <= set(value):
            return f"The toolUse block at {where} needs toolUseId, name and input."
    elif kind == "reasoningContent":
        # Claude's earlier reasoning, sent back as it came: its signature must be the one the
        # model gave it (Claude checks it), redacted content valid base64.
        if role != "assistant":
            return f"The reasoningContent block at {where} is only allowed in assistant messages."
        if "reasoningText" in value:
            rt = value["reasoningText"]
            if rt.get("signature") != thinking_signature(rt.get("text", "")):
                return f"Invalid signature in the reasoningContent block at {where}."
        elif "redactedContent" in value:
            try:
                base64.b64decode(value["redactedContent"], validate=True)
            except (binascii.Error, ValueError, TypeError):
                return f"Invalid base64 in {where}.reasoningContent.redactedContent"
        else:
            return f"The reasoningContent block at {where} must set reasoningText or redactedContent."
    elif kind == "document":
        if role != "user":
            return f"The document block at {where} is only allowed in user messages."
        if value.get("format") not in ("pdf", "csv", "doc", "docx", "xls", "xlsx", "html", "txt", "md"):
            return f"Value at '{where}.document.format' failed to satisfy constraint: Member must satisfy enum value set: [docx, csv, html, txt, pdf, md, doc, xlsx, xls]"
        name = value.get("name")
        if not isinstance(name, str) or not DOCUMENT_NAME_RE.match(name) or "  " in name:
            return (f"The document file name at {where} can only contain alphanumeric characters, whitespace characters, "
                    "hyphens, parentheses, and square brackets. The name can't contain more than one consecutive whitespace character.")
        try:
            base64.b64decode(value.get("source", {}).get("bytes", ""), validate=True)
        except (binascii.Error, ValueError, AttributeError):
            return f"Invalid base64 in {where}.document.source.bytes"
    elif kind == "cachePoint":
        # A checkpoint caches what precedes it: never first, never right after another.
        if value != {"type": "default"}:
            return f"Value at '{where}.cachePoint.type' failed to satisfy constraint: Member must satisfy enum value set: [default]"
    elif kind == "toolResult":
        if role != "user" or "toolUseId" not in value or not isinstance(value.get("content"), list):
            return f"The toolResult block at {where} needs toolUseId and content."
        for i, c in enumerate(value["content"]):
            if not isinstance(c, dict) or len(c) != 1 or next(iter(c)) not in ("text", "json", "image", "document"):
                return f"Invalid tool result content at {where}.toolResult.content.{i}"
    else:
        return f"Unsupported content block type '{kind}' at {where}."
    return None


def thinking_signature(text):
    """The signature Claude puts on its reasoning (here: a MAC the mock can check again)."""
    return base64.b64encode(hmac.new(b"claude-thinking", text.encode(), hashlib.sha256).digest()).decode()


def thinking_of(body):
    """Claude's `thinking`, from additionalModelRequestFields, when enabled: its budget."""
    t = (body.get("additionalModelRequestFields") or {}).get("thinking") or {}
    return t.get("budget_tokens") if t.get("type") == "enabled" else None


MODELS = ("anthropic.claude-3-5-sonnet-20241022-v2:0", "anthropic.claude-sonnet-4-20250514-v1:0", "amazon.nova-lite-v1:0")
# The anthropic_beta flags Claude on Bedrock takes, and the first Claude version that takes each
# (AWS's Claude request reference); any other flag is Bedrock's 400.
CLAUDE_BETAS = {
    "computer-use-2024-10-22": 3, "computer-use-2025-01-24": 3, "token-efficient-tools-2025-02-19": 3,
    "output-128k-2025-02-19": 3, "interleaved-thinking-2025-05-14": 4, "dev-full-thinking-2025-05-14": 4,
    "context-1m-2025-08-07": 4,
}


def validate_betas(body, model_id):
    betas = (body.get("additionalModelRequestFields") or {}).get("anthropic_beta")
    if betas is None:
        return None
    if not model_id.startswith("anthropic.") or not isinstance(betas, list):
        return "The model returned the following errors: anthropic_beta: Extra inputs are not permitted"
    version = 4 if "sonnet-4" in model_id else 3
    for flag in betas:
        if CLAUDE_BETAS.get(flag, 99) > version:
            return "invalid beta flag"
    return None


MAX_CACHE_POINTS = 4


def cache_points(blocks, where):
    """The checkpoints in a list of blocks, or a problem with where one stands."""
    count = 0
    for j, block in enumerate(blocks):
        if isinstance(block, dict) and "cachePoint" in block:
            if j == 0 or "cachePoint" in blocks[j - 1]:
                return None, f"The cachePoint at {where}.{j} must follow content to cache."
            if block != {"cachePoint": {"type": "default"}}:
                return None, f"Value at '{where}.{j}.cachePoint' failed to satisfy constraint: type must be default."
            count += 1
    return count, None


def validate(body):
    extra = set(body) - TOP_LEVEL
    if extra:
        return f"Malformed input request: extraneous key [{sorted(extra)[0]}] is not permitted, please reformat your input and try again."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "A conversation must start with a user message. Try again with a conversation that starts with a user message."
    if messages[0].get("role") != "user":
        return "A conversation must start with a user message. Try again with a conversation that starts with a user message."
    tool_ids, uses_tools = set(), False
    for i, m in enumerate(messages):
        role = m.get("role")
        if role not in ("user", "assistant"):
            return f"Value at 'messages.{i}.role' failed to satisfy constraint: Member must satisfy enum value set: [user, assistant]"
        if i and messages[i - 1].get("role") == role:
            return "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again."
        content = m.get("content")
        if not isinstance(content, list) or not content:
            return f"The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again."
        for j, block in enumerate(content):
            err = validate_block(block, f"messages.{i}.content.{j}", role)
            if err:
                return err
            if "toolUse" in block:
                uses_tools = True
                tool_ids.add(block["toolUse"]["toolUseId"])
            if "toolResult" in block:
                uses_tools = True
                if block["toolResult"]["toolUseId"] not in tool_ids:
                    return f"messages.{i}.content.{j}.toolResult.toolUseId: no toolUse with this id precedes it."
    for i, s in enumerate(body.get("system") or []):
        if s == {"cachePoint": {"type": "default"}}:
            continue
        if set(s) != {"text"} or not s["text"].strip():
            return f"The text field in the SystemContentBlock object at system.{i} is blank."
    points = 0
    places = [(body.get("system") or [], "system"), ((body.get("toolConfig") or {}).get("tools") or [], "toolConfig.tools")]
    places += [(m.get("content") or [], f"messages.{i}.content") for i, m in enumerate(messages)]
    for blocks, where in places:
        count, problem = cache_points(blocks, where)
        if problem:
            return problem
        points += count
    if points > MAX_CACHE_POINTS:
        return f"The request has {points} cachePoint blocks; the maximum is {MAX_CACHE_POINTS}."
    ic = body.get("inferenceConfig") or {}
    if set(ic) - {"maxTokens", "temperature", "topP", "stopSequences"}:
        return "Malformed input request: extraneous key in inferenceConfig."
    if "maxTokens" in ic and (not isinstance(ic["maxTokens"], int) or ic["maxTokens"] < 1):
        return "Value at 'inferenceConfig.maxTokens' failed to satisfy constraint: Member must have value greater than or equal to 1"
    for k in ("temperature", "topP"):
        if k in ic and not (isinstance(ic[k], (int, float)) and 0 <= ic[k] <= 1):
            return f"Value at 'inferenceConfig.{k}' failed to satisfy constraint: Member must have value less than or equal to 1"
    if not all(isinstance(s, str) and s for s in ic.get("stopSequences", [])):
        return "Value at 'inferenceConfig.stopSequences' failed to satisfy constraint: Member must have length greater than or equal to 1"
    tc = body.get("toolConfig")
    if uses_tools and not tc:
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    if tc is not None:
        tools = tc.get("tools")
        if not isinstance(tools, list) or not tools:
            return "Value at 'toolConfig.tools' failed to satisfy constraint: Member must have length greater than or equal to 1"
        names = []
        for i, t in enumerate(tools):
            if isinstance(t, dict) and "cachePoint" in t:
                continue
            spec = t.get("toolSpec") if isinstance(t, dict) else None
            if not spec or not TOOL_NAME_RE.match(spec.get("name", "")) or not isinstance(spec.get("inputSchema", {}).get("json"), dict):
                return f"Value at 'toolConfig.tools.{i}.toolSpec' failed to satisfy constraint: name and inputSchema.json are required."
            names.append(spec["name"])
        choice = tc.get("toolChoice")
        if choice is not None:
            if not isinstance(choice, dict) or len(choice) != 1 or next(iter(choice)) not in ("auto", "any", "tool"):
                return "Value at 'toolConfig.toolChoice' failed to satisfy constraint: set exactly one of auto, any, tool."
            if "tool" in choice and choice["tool"].get("name") not in names:
                return "The tool named in toolConfig.toolChoice.tool is not among toolConfig.tools."
    md = body.get("requestMetadata")
    if md is not None:
        for k, v in md.items():
            if not METADATA_RE.match(k) or not k or not isinstance(v, str) or not METADATA_RE.match(v):
                return "Value at 'requestMetadata' failed to satisfy constraint: Map value must satisfy regular expression pattern: [a-zA-Z0-9\\s._:/=+$@-]{0,256}"
    return None


def last_user_text(messages):
    """The text of the last user turn, or what the tools said when that turn holds tool results."""
    for m in reversed(messages):
        if m["role"] != "user":
            continue
        results = [c["text"] for b in m["content"] if "toolResult" in b for c in b["toolResult"]["content"] if "text" in c]
        if results:
            return "tool said: " + " ".join(results), True
        return " ".join(b["text"] for b in m["content"] if "text" in b), False
    return "", False


def count_words(body):
    words = 0
    for m in body["messages"]:
        for b in m["content"]:
            words += len(b.get("text", "").split())
    for s in body.get("system") or []:
        words += len(s.get("text", "").split())
    return words


class BedrockMock(MockProvider):
    name = "bedrock"
    env = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_BEARER_TOKEN_BEDROCK": API_KEY,
    }

    def model_list(self, base_url):
        return [
            {"model_name": "bedrock-claude", "litellm_params": {
                "model": "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0",
                "aws_region_name": REGION,
                "aws_bedrock_runtime_endpoint": base_url,
                "aws_access_key_id": "os.environ/AWS_ACCESS_KEY_ID",
                "aws_secret_access_key": "os.environ/AWS_SECRET_ACCESS_KEY"}},
            {"model_name": "bedrock-apikey", "litellm_params": {
                "model": "bedrock/amazon.nova-lite-v1:0",
                "aws_region_name": REGION,
                "aws_bedrock_runtime_endpoint": base_url,
                "api_key": "os.environ/AWS_BEARER_TOKEN_BEDROCK"}},
        ]

    def authenticate(self, req):
        auth = req.headers.get("authorization")
        if auth is None:
            return aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token", namespace=CORAL)
        if auth.startswith("Bearer "):
            if hmac.compare_digest(auth[len("Bearer "):], API_KEY):
                return None
            return aws_error(403, "AccessDeniedException", "Authentication failed: Please make sure your API Key is valid.",
                             namespace=CORAL, key="Message")
        return verify_sigv4(req)

    def respond(self, req):
        denied = self.authenticate(req)
        if denied:
            return denied
        m = re.match(r"^/model/([^/]+)/(converse|converse-stream)$", req.path)
        if req.method != "POST" or not m:
            return aws_error(404, "UnknownOperationException", "Unknown operation", namespace=CORAL)
        model_id = unquote(m.group(1))
        if model_id not in MODELS:
            return validation("The provided model identifier is invalid.")
        try:
            body = json.loads(req.body)
        except ValueError:
            return validation("Malformed input request, please reformat your input and try again.")
        if not isinstance(body, dict):
            return validation("Malformed input request, please reformat your input and try again.")
        problem = validate(body) or validate_betas(body, model_id)
        if problem:
            return validation(problem)
        return self.converse(body, model_id, stream=m.group(2) == "converse-stream")

    # Answers ---------------------------------------------------------------------------------------

    def plan(self, body):
        """What the model does: (text, tool_use or None, stop_reason)."""
        text, after_tool = last_user_text(body["messages"])
        tc = body.get("toolConfig")
        choice = (tc or {}).get("toolChoice") or {"auto": {}}
        tool = None
        if tc and not (after_tool and "auto" in choice):
            name = choice["tool"]["name"] if "tool" in choice else tc["tools"][0]["toolSpec"]["name"]
            args = {"answer": text} if name == "json_tool_call" else {"location": "Paris"}
            tool = {"toolUseId": "tooluse_" + hashlib.sha1(text.encode()).hexdigest()[:22], "name": name, "input": args}
        answer = f"echo: {text}"
        stop = "tool_use" if tool else "end_turn"
        ic = body.get("inferenceConfig") or {}
        for s in ic.get("stopSequences", []):
            if not tool and s in answer:
                answer, stop = answer[: answer.index(s)], "stop_sequence"
        limit = ic.get("maxTokens")
        if not tool and limit is not None and len(answer.split()) > limit:
            answer, stop = " ".join(answer.split()[:limit]), "max_tokens"
        return ("" if tool else answer), tool, stop

    def usage(self, body, text, tool):
        inp = 5 + count_words(body)
        out = len(text.split()) + (len(json.dumps(tool["input"]).split()) if tool else 0)
        # Each checkpoint writes the prefix before it to the cache (here: 100 tokens a checkpoint).
        written = 100 * json.dumps(body).count('"cachePoint"')
        return {"inputTokens": inp, "outputTokens": out, "totalTokens": inp + out + 3 + written,
                "cacheReadInputTokens": 3, "cacheWriteInputTokens": written}

    def converse(self, body, model_id, stream):
        text, tool, stop = self.plan(body)
        usage = self.usage(body, text, tool)
        budget = thinking_of(body)
        if budget is not None and (not isinstance(budget, int) or budget < 1024):
            return validation("thinking.budget_tokens: Input should be greater than or equal to 1024")
        reasoning = None
        if budget is not None:
            said, _ = last_user_text(body["messages"])
            reasoning = f"Thinking about: {said}"
        if stream:
            return Stream(self.stream_frames(text, tool, stop, usage, reasoning), content_type=EVENTSTREAM,
                          headers={"x-amzn-RequestId": str(uuid.uuid4())})
        content = []
        if reasoning:
            content.append({"reasoningContent": {"reasoningText": {
                "text": reasoning, "signature": thinking_signature(reasoning)}}})
        if text:
            content.append({"text": text})
        if tool:
            content.append({"toolUse": tool})
        return Json({
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": stop,
            "usage": usage,
            "metrics": {"latencyMs": 412},
        }, headers={"x-amzn-RequestId": str(uuid.uuid4())})

    @staticmethod
    def stream_frames(text, tool, stop, usage, reasoning=None):
        frames = [event("messageStart", {"role": "assistant"})]
        index = 0
        if reasoning:
            for i in range(0, len(reasoning), 7):
                frames.append(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {
                    "reasoningContent": {"text": reasoning[i:i + 7]}}}))
            frames.append(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {
                "reasoningContent": {"signature": thinking_signature(reasoning)}}}))
            frames.append(event("contentBlockStop", {"contentBlockIndex": 0}))
            index = 1
        if text:
            words = text.split(" ")
            for i, w in enumerate(words):
                frames.append(event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": w if i == 0 else " " + w}}))
            frames.append(event("contentBlockStop", {"contentBlockIndex": index}))
            index += 1
        if tool:
            frames.append(event("contentBlockStart", {"contentBlockIndex": index, "start": {
                "toolUse": {"toolUseId": tool["toolUseId"], "name": tool["name"]}}}))
            args = json.dumps(tool["input"])
            for i in range(0, len(args), 5):
                frames.append(event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": args[i:i + 5]}}}))
            frames.append(event("contentBlockStop", {"contentBlockIndex": index}))
        frames.append(event("messageStop", {"stopReason": stop}))
        frames.append(event("metadata", {"usage": usage, "metrics": {"latencyMs": 388}}))
        return frames
