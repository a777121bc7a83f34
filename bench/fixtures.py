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


def main():
    os.makedirs(HERE, exist_ok=True)
    files = {
        "chat_request.json": json.dumps(CHAT_REQUEST, separators=(",", ":")),
        "openai_response.json": json.dumps(OPENAI_RESPONSE, separators=(",", ":")),
        "anthropic_response.json": json.dumps(ANTHROPIC_RESPONSE, separators=(",", ":")),
        "anthropic_stream.sse": anthropic_stream(),
    }
    for name, text in files.items():
        with open(os.path.join(HERE, name), "w") as f:
            f.write(text)
        print(f"bench/fixtures/{name}: {len(text.encode())} bytes")


if __name__ == "__main__":
    main()
