"""The gateway's prompt estimate (src/filter/accounting.rs, `prompt_tokens`), for tests that
compute what a request reserves: its messages' text at 3 bytes a token, 4 tokens a message and 3
a request, never more than the body's length."""

import json
import math

BYTES_PER_TOKEN, MESSAGE_TOKENS, REQUEST_TOKENS = 3, 4, 3


def prompt_estimate(body):
    """Prompt tokens reserved for a chat body (a dict) whose messages' contents are strings."""
    messages = body["messages"]
    text = sum(len(m["content"].encode()) for m in messages)
    estimate = math.ceil(text / BYTES_PER_TOKEN) + MESSAGE_TOKENS * len(messages) + REQUEST_TOKENS
    return min(estimate, len(json.dumps(body).encode()))
