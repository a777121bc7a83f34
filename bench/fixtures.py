"""Writes the benchmark's fixed payloads into bench/fixtures/ (committed; rerun after editing).

The same bytes feed the load tests (the client's request and the mock provider's answers) and
the criterion micro-benchmarks in benches/, so both measure the same work. Shapes follow the
providers' real wire formats, as the e2e mocks in tests/e2e/mocks/ do.
"""

import json
import os

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")

# A typical chat request: system prompt, a short conversation, common sampling parameters (~1 KB).
CHAT_REQUEST = {
    "model": "MODEL",
    "messages": [
        {"role": "system", "content": "You are a concise assistant for an online bookshop. Answer in at most "
                                      "three sentences, cite the catalogue number when you name a book, and "
                                      "never invent prices or availability. If the customer asks about an order, "
                                      "ask for the order number first and do not guess delivery dates."},
        {"role": "user", "content": "I liked The Left Hand of Darkness. What should I read next, and is it in stock?"},
        {"role": "assistant", "content": "You might enjoy The Dispossessed (catalogue 48213), also by Ursula K. Le "
                                         "Guin, which explores a similar anthropological premise. I can check its "
                                         "stock if you tell me which store you use."},
        {"role": "user", "content": "The one on Market Street, please. Also, is there an audiobook edition, and "
                                    "how long is it compared with the paperback? I commute about forty minutes each way, "
                                    "mostly by train, so something I can follow in short sittings would be ideal."},
    ],
    "temperature": 0.7,
    "max_tokens": 256,
    "user": "customer-5521",
}

WORDS = ("The Dispossessed is in stock at the Market Street store, and an unabridged audiobook edition of about "
         "twelve hours is available, which at forty minutes a day would take you roughly eighteen commutes to "
         "finish compared with a paperback of three hundred and eighty pages today").split(" ")
ANSWER = " ".join(WORDS)

OPENAI_RESPONSE = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER, "refusal": None, "annotations": []},
                 "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 171, "completion_tokens": len(WORDS), "total_tokens": 171 + len(WORDS),
              "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}},
    "service_tier": "default",
    "system_fingerprint": "fp_06737a9306",
}

ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"
ANTHROPIC_USAGE = {"input_tokens": 171, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                   "output_tokens": len(WORDS), "service_tier": "standard"}
ANTHROPIC_RESPONSE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": ANTHROPIC_MODEL,
    "content": [{"type": "text", "text": ANSWER}], "stop_reason": "end_turn", "stop_sequence": None,
    "usage": ANTHROPIC_USAGE,
}

STREAM_DELTAS = 50


def anthropic_stream():
    """The SSE sequence api.anthropic.com sends for one text block, with exactly 50 content deltas."""
    words = (WORDS * 2)[:STREAM_DELTAS]
    events = [
        ("message_start", {"type": "message_start", "message": {
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": ANTHROPIC_MODEL,
            "content": [], "stop_reason": None, "stop_sequence": None, "usage": dict(ANTHROPIC_USAGE, output_tokens=1)}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
    ]
    for i, w in enumerate(words):
        events.append(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "text_delta", "text": w if i == 0 else " " + w}}))
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": STREAM_DELTAS}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return "".join(f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n" for name, data in events)


def openai_stream():
    """The SSE sequence api.openai.com sends for one answer with `include_usage`, with exactly 50
    content deltas: a role chunk, the deltas, the finish chunk, the usage chunk, `[DONE]`."""
    words = (WORDS * 2)[:STREAM_DELTAS]
    base = {"id": OPENAI_RESPONSE["id"], "object": "chat.completion.chunk", "created": OPENAI_RESPONSE["created"],
            "model": OPENAI_RESPONSE["model"], "service_tier": "default",
            "system_fingerprint": OPENAI_RESPONSE["system_fingerprint"]}

    def chunk(delta, finish=None):
        return dict(base, choices=[{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                    usage=None)
    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    chunks += [chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words)]
    chunks.append(chunk({}, "stop"))
    chunks.append(dict(base, choices=[], usage=dict(OPENAI_RESPONSE["usage"], completion_tokens=STREAM_DELTAS,
                                                     total_tokens=171 + STREAM_DELTAS)))
    return "".join(f"data: {json.dumps(c, separators=(',', ':'))}\n\n" for c in chunks) + "data: [DONE]\n\n"


RESPONSES_USAGE = {"input_tokens": 171, "input_tokens_details": {"cached_tokens": 0},
                   "output_tokens": len(WORDS), "output_tokens_details": {"reasoning_tokens": 0},
                   "total_tokens": 171 + len(WORDS)}
RESPONSES_RESPONSE = {
    "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b", "object": "response",
    "created_at": 1741476542, "status": "completed", "error": None, "incomplete_details": None,
    "instructions": None, "max_output_tokens": 256, "model": "gpt-4o-mini-2024-07-18",
    "output": [{"type": "message", "id": "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b",
                "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": ANSWER, "annotations": []}]}],
    "parallel_tool_calls": True, "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
    "store": True, "temperature": 0.7, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
    "top_p": 1.0, "truncation": "disabled", "usage": RESPONSES_USAGE, "user": "customer-5521", "metadata": {},
}


def responses_stream():
    """The typed events api.openai.com sends for one message on the Responses API, with exactly
    50 `response.output_text.delta` events."""
    words = (WORDS * 2)[:STREAM_DELTAS]
    text = " ".join(words)
    item_id = RESPONSES_RESPONSE["output"][0]["id"]
    start = dict(RESPONSES_RESPONSE, status="in_progress", output=[], usage=None)
    done_item = dict(RESPONSES_RESPONSE["output"][0], content=[{"type": "output_text", "text": text, "annotations": []}])
    events = [("response.created", {"response": start}), ("response.in_progress", {"response": start}),
              ("response.output_item.added", {"output_index": 0, "item": dict(done_item, status="in_progress",
                                                                             content=[])}),
              ("response.content_part.added", {"item_id": item_id, "output_index": 0, "content_index": 0,
                                               "part": {"type": "output_text", "text": "", "annotations": []}})]
    for i, w in enumerate(words):
        events.append(("response.output_text.delta", {"item_id": item_id, "output_index": 0, "content_index": 0,
                                                      "delta": w if i == 0 else " " + w, "logprobs": []}))
    events += [
        ("response.output_text.done", {"item_id": item_id, "output_index": 0, "content_index": 0, "text": text,
                                       "logprobs": []}),
        ("response.content_part.done", {"item_id": item_id, "output_index": 0, "content_index": 0,
                                        "part": done_item["content"][0]}),
        ("response.output_item.done", {"output_index": 0, "item": done_item}),
        ("response.completed", {"response": dict(RESPONSES_RESPONSE, output=[done_item],
                                                 usage=dict(RESPONSES_USAGE, output_tokens=STREAM_DELTAS,
                                                            total_tokens=171 + STREAM_DELTAS))}),
    ]
    return "".join(
        f"event: {name}\ndata: {json.dumps(dict(type=name, sequence_number=n, **data), separators=(',', ':'))}\n\n"
        for n, (name, data) in enumerate(events))


def main():
    os.makedirs(HERE, exist_ok=True)
    files = {
        "chat_request.json": json.dumps(CHAT_REQUEST, separators=(",", ":")),
        "openai_response.json": json.dumps(OPENAI_RESPONSE, separators=(",", ":")),
        "anthropic_response.json": json.dumps(ANTHROPIC_RESPONSE, separators=(",", ":")),
        "anthropic_stream.sse": anthropic_stream(),
        "openai_stream.sse": openai_stream(),
        "responses_response.json": json.dumps(RESPONSES_RESPONSE, separators=(",", ":")),
        "responses_stream.sse": responses_stream(),
    }
    for name, text in files.items():
        with open(os.path.join(HERE, name), "w") as f:
            f.write(text)
        print(f"bench/fixtures/{name}: {len(text.encode())} bytes")


if __name__ == "__main__":
    main()
