#!/usr/bin/env python3
"""Regenerates src/pricing/prices.json from LiteLLM's public price map.

    python3 tools/extract_prices.py litellm-<version>-...whl [--today YYYY-MM-DD]

Reads litellm/model_prices_and_context_window_backup.json from the wheel and keeps the chat and
embedding models of the providers Tollgate serves, keyed by Tollgate's provider name and the model
id as written after the provider prefix in `litellm_params.model`. Prices become integer pico-USD
per token (1e-12 USD), rounded half-up from the decimal text of LiteLLM's floats, so sums in the
gateway are exact.
"""

import argparse
import datetime
import json
import re
import sys
import zipfile
from decimal import ROUND_HALF_UP, Decimal

PRICE_MAP = "litellm/model_prices_and_context_window_backup.json"

# Tollgate provider -> the `litellm_provider` values of its entries in LiteLLM's map.
PROVIDERS = {
    "openai": ["openai"],
    "azure": ["azure"],
    "anthropic": ["anthropic"],
    "gemini": ["gemini"],
    "bedrock": ["bedrock", "bedrock_converse"],
    "groq": ["groq"],
    "mistral": ["mistral"],
    "deepseek": ["deepseek"],
    "xai": ["xai"],
    "together_ai": ["together_ai"],
    "fireworks_ai": ["fireworks_ai", "fireworks_ai-embedding-models"],
    "openrouter": ["openrouter"],
    "cerebras": ["cerebras"],
    "perplexity": ["perplexity"],
    "hosted_vllm": ["hosted_vllm"],
    # LiteLLM prices ollama_chat/ deployments from its ollama/ entries.
    "ollama_chat": ["ollama"],
}

MODES = {"chat", "embedding"}
COLUMNS = ["input", "output", "cache_read", "cache_creation", "max_input_tokens", "max_output_tokens"]

# Together AI's parameter-count buckets ("together-ai-4.1b-8b") price unlisted models by size; they
# are not model ids.
TOGETHER_BUCKET = re.compile(r"^together-ai-")


def pico(value, key, problems):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        problems.append(f"{key}: not a non-negative number: {value!r}")
        return None
    exact = Decimal(repr(value)) * (10**12)
    rounded = exact.quantize(Decimal(1), rounding=ROUND_HALF_UP)
    if rounded != exact:
        problems.append(f"{key}: {value!r} USD is not a whole number of pico-USD; rounded")
    return int(rounded)


def tokens(value):
    # LiteLLM writes 0 (and, in its sample entry, prose) where a limit is unknown.
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def model_id(provider, data_provider, key):
    """The id after the provider prefix, and whether the key carried a prefix (prefixed keys are
    what LiteLLM looks up first, so they win over a bare key for the same id)."""
    for prefix in (provider, data_provider):
        if key.startswith(prefix + "/"):
            return key[len(prefix) + 1 :], True
    return key, False


def extract(prices):
    out = {p: {} for p in PROVIDERS}
    prefixed = {p: set() for p in PROVIDERS}
    by_lower = {p: {} for p in PROVIDERS}  # LiteLLM matches model names case-insensitively
    problems = []
    by_data_provider = {dp: p for p, dps in PROVIDERS.items() for dp in dps}
    for key, entry in prices.items():
        if not isinstance(entry, dict) or entry.get("mode") not in MODES:
            continue
        provider = by_data_provider.get(entry.get("litellm_provider"))
        if provider is None:
            continue
        mid, has_prefix = model_id(provider, entry["litellm_provider"], key)
        if not mid.isascii():
            problems.append(f"{key}: skipped: Tollgate matches model ids ASCII-case-insensitively")
            continue
        if provider == "bedrock" and "/" in mid:
            continue  # region- or commitment-specific paths (bedrock/us-east-1/..., .../1-month-commitment/...)
        if provider == "together_ai" and TOGETHER_BUCKET.match(mid):
            continue
        row = [
            pico(entry.get("input_cost_per_token"), f"{key}.input_cost_per_token", problems),
            pico(entry.get("output_cost_per_token"), f"{key}.output_cost_per_token", problems),
            pico(entry.get("cache_read_input_token_cost"), f"{key}.cache_read_input_token_cost", problems),
            pico(entry.get("cache_creation_input_token_cost"), f"{key}.cache_creation_input_token_cost", problems),
            tokens(entry.get("max_input_tokens")),
            tokens(entry.get("max_output_tokens")) or tokens(entry.get("max_tokens")),
        ]
        if row[1] is None and entry["mode"] == "embedding" and row[0] is not None:
            row[1] = 0  # embeddings produce no output tokens
        if row[0] is None or row[1] is None:
            continue  # priced per second, per query or not at all: nothing Tollgate can charge per token
        while row and row[-1] is None:
            row.pop()
        existing = by_lower[provider].get(mid.lower())
        if existing is not None:
            if existing in prefixed[provider] or not has_prefix:
                continue
            del out[provider][existing]
        out[provider][mid] = row
        by_lower[provider][mid.lower()] = mid
        if has_prefix:
            prefixed[provider].add(mid)
    return out, problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheel", help="a LiteLLM wheel (litellm-<version>-*.whl)")
    ap.add_argument("-o", "--output", default="src/pricing/prices.json")
    ap.add_argument("--today", default=datetime.date.today().isoformat(), help="extraction date to record")
    args = ap.parse_args()

    with zipfile.ZipFile(args.wheel) as whl:
        info = whl.getinfo(PRICE_MAP)
        prices = json.loads(whl.read(PRICE_MAP))
        version = next(
            (
                line.split(":", 1)[1].strip()
                for name in whl.namelist()
                if name.endswith(".dist-info/METADATA")
                for line in whl.read(name).decode().splitlines()
                if line.startswith("Version:")
            ),
            "unknown",
        )
    dated = "%04d-%02d-%02d" % info.date_time[:3]

    models, problems = extract(prices)
    for p in problems:
        print("note:", p, file=sys.stderr)

    lines = [
        "{",
        f'"source": {json.dumps(f"LiteLLM {version}, {PRICE_MAP} (dated {dated} in the wheel)")},',
        f'"extracted": {json.dumps(args.today)},',
        f'"generator": "tools/extract_prices.py",',
        '"units": "prices in pico-USD (1e-12 USD) per token; token limits in tokens; missing trailing columns are unknown",',
        f'"columns": {json.dumps(COLUMNS)},',
        '"models": {',
    ]
    providers = [p for p in PROVIDERS if models[p]]
    for i, provider in enumerate(providers):
        lines.append(f"{json.dumps(provider)}: {{")
        entries = sorted(models[provider].items())
        for j, (mid, row) in enumerate(entries):
            comma = "," if j + 1 < len(entries) else ""
            lines.append(f"{json.dumps(mid)}: {json.dumps(row, separators=(',', ':'))}{comma}")
        lines.append("}," if i + 1 < len(providers) else "}")
    lines += ["}", "}", ""]
    with open(args.output, "w") as f:
        f.write("\n".join(lines))

    for provider in PROVIDERS:
        print(f"{provider}: {len(models[provider])}")
    print(f"total: {sum(len(m) for m in models.values())} -> {args.output}")


if __name__ == "__main__":
    main()
