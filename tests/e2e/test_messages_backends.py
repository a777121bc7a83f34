"""What a Messages client's request carries beyond chat completions (thinking, top_k, thinking
blocks, cache_control, documents, beta flags), through the real Envoy to each backend in the
backend's own terms: the provider mocks refuse what their APIs refuse."""

import json

import anthropic
import pytest

from conftest import MASTER_KEY, gateway_config, gateway_env

TOOLS = [{"name": "get_weather", "description": "Current weather for a city",
          "input_schema": {"type": "object", "properties": {"location": {"type": "string"}},
                           "required": ["location"]}, "cache_control": {"type": "ephemeral"}}]
SYSTEM = [{"type": "text", "text": "You are a coding agent."},
          {"type": "text", "text": "Project instructions.", "cache_control": {"type": "ephemeral"}}]
OPENAI_SHAPED = {"gpt": "openai", "gpt-5": "openai", "azure-gpt": "azure", "groq-llama": "compat",
                 "vllm-local": "compat"}


@pytest.fixture(scope="module")
def gw(mocks):
    """Every mock's deployments, plus a reasoning OpenAI model, Claude Sonnet 4 on Bedrock and a
    Groq deployment that drops what it cannot take."""
    from harness import Envoy
    config = gateway_config(mocks)
    openai_base = f"{mocks['openai'].base_url}/v1"
    bedrock = next(d for d in mocks["bedrock"].model_list(mocks["bedrock"].base_url) if d["model_name"] == "bedrock-claude")
    config["model_list"] += [
        {"model_name": "gpt-5", "litellm_params": {"model": "openai/gpt-5-mini", "api_base": openai_base,
                                                   "api_key": "os.environ/OPENAI_API_KEY"}},
        dict(bedrock, model_name="bedrock-sonnet-4",
             litellm_params=dict(bedrock["litellm_params"], model="bedrock/anthropic.claude-sonnet-4-20250514-v1:0")),
        {"model_name": "groq-drop", "litellm_params": {
            "model": "groq/llama-3.3-70b-versatile", "api_base": f"{mocks['compat'].base_url}/openai/v1",
            "api_key": "os.environ/GROQ_API_KEY", "drop_params": True}},
    ]
    with Envoy(config, env=gateway_env(mocks), concurrency=2) as envoy:
        yield envoy


@pytest.fixture
def claude(gw):
    return anthropic.Anthropic(base_url=gw.base_url, api_key=MASTER_KEY, max_retries=0, timeout=20)


def text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


def agent_turn(c, alias, messages, stream, **extra):
    args = dict(model=alias, max_tokens=8000, system=SYSTEM, tools=TOOLS, messages=messages,
                thinking={"type": "enabled", "budget_tokens": 4000}, **extra)
    if stream:
        with c.messages.stream(**args) as s:
            return s.get_final_message()
    return c.messages.create(**args)


def no_extensions(sent):
    """The body holds nothing OpenAI's API would refuse: LiteLLM's extensions are gone."""
    text = json.dumps(sent)
    assert "thinking" not in sent and "top_k" not in sent
    assert "cache_control" not in text and "thinking_blocks" not in text


# --- 1. the OpenAI family ----------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("alias", ["gpt", "azure-gpt", "groq-llama", "vllm-local"])
def test_an_agent_session_reaches_openai_shaped_backends(claude, mocks, alias, stream):
    """Thinking on, cache_control on system blocks, messages and tools, earlier reasoning sent back:
    the OpenAI family gets a body its API takes (the mocks refuse unknown fields as OpenAI does)."""
    msgs = [{"role": "user", "content": [{"type": "text", "text": "Weather in Paris?",
                                          "cache_control": {"type": "ephemeral"}}]}]
    first = agent_turn(claude, alias, msgs, stream)
    assert first.stop_reason == "tool_use", first
    sent = mocks[OPENAI_SHAPED[alias]].last().json
    no_extensions(sent)
    assert "reasoning_effort" not in sent  # not a reasoning model: thinking is dropped
    assert sent["messages"][0]["content"][1]["text"] == "Project instructions."
    call = next(b for b in first.content if b.type == "tool_use")
    msgs += [{"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Let me look it up.", "signature": "sig-from-claude"},
                {"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}]},
             {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C"}]}]
    second = agent_turn(claude, alias, msgs, stream)
    assert second.type == "message"
    sent = mocks[OPENAI_SHAPED[alias]].last().json
    no_extensions(sent)
    assert sent["messages"][2]["role"] == "assistant" and sent["messages"][2]["tool_calls"]
    assert "18C" in json.dumps(sent)


@pytest.mark.parametrize("budget,effort", [(1024, "minimal"), (4000, "low"), (6000, "medium"), (16000, "high")])
def test_thinking_becomes_reasoning_effort_for_a_reasoning_model(claude, mocks, budget, effort):
    m = claude.messages.create(model="gpt-5", max_tokens=20000, thinking={"type": "enabled", "budget_tokens": budget},
                               messages=[{"role": "user", "content": "think hard"}])
    assert "think hard" in text_of(m)
    sent = mocks["openai"].last().json
    assert sent["reasoning_effort"] == effort
    assert sent["max_completion_tokens"] == 20000 and "thinking" not in sent


def test_top_k_is_refused_dropped_or_kept(claude, mocks):
    # OpenAI has no top_k: an Anthropic-shaped 400 naming it, before anything goes upstream.
    mocks["openai"].reset()
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="gpt", max_tokens=50, extra_body={"top_k": 5}, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["type"] == "error" and "top_k" in e.value.body["error"]["message"]
    assert "drop_params" in e.value.body["error"]["message"]
    assert mocks["openai"].count() == 0
    # With drop_params it is dropped; a vLLM server takes it.
    m = claude.messages.create(model="groq-drop", max_tokens=50, extra_body={"top_k": 5}, messages=[{"role": "user", "content": "dropped"}])
    assert "dropped" in text_of(m) and "top_k" not in mocks["compat"].last().json
    m = claude.messages.create(model="vllm-local", max_tokens=50, extra_body={"top_k": 5}, messages=[{"role": "user", "content": "kept"}])
    assert "kept" in text_of(m) and mocks["compat"].last().json["top_k"] == 5


# --- 2. Bedrock cache checkpoints --------------------------------------------------------------

CACHED_TOOLS = [dict(TOOLS[0], cache_control=None), dict(TOOLS[0], name="read_file", cache_control={"type": "ephemeral"})]
CACHED_TOOLS[0].pop("cache_control")


@pytest.mark.parametrize("stream", [False, True])
def test_cache_control_becomes_bedrock_cache_points(claude, mocks, stream):
    """A `cache_control` block gets a cachePoint after it, in system, messages and tools; the cache
    reads and writes Bedrock reports come back as Anthropic's usage and are priced as such."""
    msgs = [{"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                               "input": {"location": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C",
                 "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "And tomorrow?", "cache_control": {"type": "ephemeral"}}]}]
    args = dict(model="bedrock-claude", max_tokens=100, system=SYSTEM, tools=CACHED_TOOLS, messages=msgs)
    if stream:
        with claude.messages.stream(**args) as s:
            m = s.get_final_message()
        cost = None
    else:
        raw = claude.messages.with_raw_response.create(**args)
        m, cost = raw.parse(), float(raw.headers["x-tollgate-response-cost"])
    sent = mocks["bedrock"].last().json
    point = {"cachePoint": {"type": "default"}}
    assert sent["system"] == [{"text": "You are a coding agent."}, {"text": "Project instructions."}, point]
    assert [list(t) for t in sent["toolConfig"]["tools"]] == [["toolSpec"], ["toolSpec"], ["cachePoint"]]
    last = sent["messages"][-1]["content"]
    assert [list(b) for b in last] == [["toolResult"], ["cachePoint"], ["text"], ["cachePoint"]]
    assert "cachePoint" not in json.dumps(sent["messages"][:-1])
    # Four checkpoints, 100 tokens written each (the mock's rule), 3 read.
    u = m.usage
    assert (u.cache_creation_input_tokens, u.cache_read_input_tokens) == (400, 3)
    if cost is not None:
        # claude-3-5-sonnet-v2 on Bedrock: $3 / $15 a million, reads $0.30, writes $3.75.
        expected = (u.input_tokens * 3 + u.output_tokens * 15 + 3 * 0.3 + 400 * 3.75) / 1e6
        assert cost == pytest.approx(expected, abs=2e-6), (cost, u)


def test_a_misplaced_cache_point_is_bedrocks_400(claude):
    """Five checkpoints: Bedrock refuses them, as Anthropic refuses five cache_control blocks."""
    content = [{"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}} for i in range(5)]
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model="bedrock-claude", max_tokens=10, messages=[{"role": "user", "content": content}])
    assert "cachePoint" in e.value.body["error"]["message"]


# --- 3. documents ------------------------------------------------------------------------------

PDF_B64 = "JVBERi0xLjQKJcOkw7zDtsOfCjEgMCBvYmoKPDwvVHlwZS9DYXRhbG9nPj4KZW5kb2JqCnRyYWlsZXIKPDw+PgolJUVPRgo="
PDF = {"type": "document", "title": "Q3 report: final.pdf",
       "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_B64}}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("alias", ["bedrock-claude", "gemini", "gpt"])
def test_a_pdf_reaches_bedrock_gemini_and_openai(claude, mocks, alias, stream):
    args = dict(model=alias, max_tokens=100, messages=[{"role": "user", "content": [
        PDF, {"type": "text", "text": "summarize the report"}]}])
    if stream:
        with claude.messages.stream(**args) as s:
            m = s.get_final_message()
    else:
        m = claude.messages.create(**args)
    assert "summarize the report" in text_of(m)
    if alias == "bedrock-claude":
        blocks = mocks["bedrock"].last().json["messages"][0]["content"]
        # A name of the characters Bedrock allows, from the title.
        assert blocks[0] == {"document": {"format": "pdf", "name": "Q3 report- final",
                                          "source": {"bytes": PDF_B64}}}
    elif alias == "gemini":
        parts = mocks["gemini"].last().json["contents"][0]["parts"]
        assert parts[0] == {"inlineData": {"mimeType": "application/pdf", "data": PDF_B64}}
    else:
        part = mocks["openai"].last().json["messages"][0]["content"][0]
        assert part == {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF_B64}",
                                                 "filename": "Q3 report: final.pdf"}}


def test_an_untitled_pdf_and_a_text_document_to_bedrock(claude, mocks):
    untitled = {k: v for k, v in PDF.items() if k != "title"}
    text_doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}}
    m = claude.messages.create(model="bedrock-claude", max_tokens=100, messages=[{"role": "user", "content": [
        untitled, text_doc, {"type": "text", "text": "compare"}]}])
    assert m.type == "message"
    blocks = mocks["bedrock"].last().json["messages"][0]["content"]
    assert blocks[0]["document"]["name"] == "document-0-0"
    assert blocks[1] == {"text": "plain words"}


def test_a_document_by_url(claude, mocks):
    url_doc = {"type": "document", "source": {"type": "url", "url": "https://example.com/q3.pdf"}}
    msgs = [{"role": "user", "content": [url_doc, {"type": "text", "text": "read it"}]}]
    # Gemini takes it by URL, as it takes images.
    m = claude.messages.create(model="gemini", max_tokens=100, messages=msgs)
    assert m.type == "message"
    assert mocks["gemini"].last().json["contents"][0]["parts"][0] == {
        "fileData": {"mimeType": "application/pdf", "fileUri": "https://example.com/q3.pdf"}}
    # Bedrock and OpenAI cannot fetch it: an Anthropic-shaped 400 naming the field, nothing sent.
    for alias, mock in [("bedrock-claude", "bedrock"), ("gpt", "openai")]:
        mocks[mock].reset()
        with pytest.raises(anthropic.BadRequestError) as e:
            claude.messages.create(model=alias, max_tokens=100, messages=msgs)
        message = e.value.body["error"]["message"]
        assert "file" in message and "base64" in message, message
        assert mocks[mock].count() == 0


# --- 4. anthropic-beta to other backends -------------------------------------------------------

CLAUDE_CODE_BETA = {"anthropic-beta": "interleaved-thinking-2025-05-14,claude-code-20250219"}


@pytest.mark.parametrize("stream", [False, True])
def test_beta_flags_bedrock_takes_reach_it_the_rest_are_dropped(gw, claude, mocks, stream):
    """Claude Code's flags to Claude Sonnet 4 on Bedrock: the one Bedrock takes goes in
    additionalModelRequestFields.anthropic_beta, Claude Code's own is dropped (and logged), so the
    request does not fail on it."""
    args = dict(model="bedrock-sonnet-4", max_tokens=8000, messages=[{"role": "user", "content": "Weather?"}],
                thinking={"type": "enabled", "budget_tokens": 4000}, extra_headers=CLAUDE_CODE_BETA)
    if stream:
        with claude.messages.stream(**args) as s:
            m = s.get_final_message()
    else:
        m = claude.messages.create(**args)
    assert [b.type for b in m.content] == ["thinking", "text"]
    got = mocks["bedrock"].last()
    assert got.json["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 4000},
        "anthropic_beta": ["interleaved-thinking-2025-05-14"]}
    assert "anthropic-beta" not in got.headers
    assert "anthropic-beta claude-code-20250219 dropped for deployment" in gw.log()


def test_beta_flags_a_backend_cannot_take_are_dropped(gw, claude, mocks):
    # Claude 3.5 on Bedrock has no interleaved thinking; OpenAI takes no flags at all.
    for alias, mock in [("bedrock-claude", "bedrock"), ("gpt", "openai")]:
        m = claude.messages.create(model=alias, max_tokens=100, messages=[{"role": "user", "content": "hi"}],
                                   extra_headers=CLAUDE_CODE_BETA)
        assert m.type == "message", alias
        got = mocks[mock].last()
        assert "anthropic-beta" not in got.headers and "anthropic_beta" not in json.dumps(got.json), alias
    # An Anthropic deployment gets the header as it came.
    claude.messages.create(model="claude", max_tokens=100, messages=[{"role": "user", "content": "hi"}],
                           extra_headers=CLAUDE_CODE_BETA)
    assert mocks["anthropic"].last().headers["anthropic-beta"] == CLAUDE_CODE_BETA["anthropic-beta"]
