"""A turn's numbers from Ollama's final chunk: counts, rates and load time.

Durations are nanoseconds. Ollama counts the whole prompt in prompt_eval_count, cached
tokens included (prompt_eval_cached_count, on newer servers), while prompt_eval_duration
covers only what it evaluated, so the prompt rate is taken over the evaluated part.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NS = 1e9
RAW_FIELDS = (
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_cached_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
)


def rate(count: int | None, duration_ns: int | None) -> float | None:
    """Tokens per second, or None when either number is missing or zero."""
    if not count or not duration_ns:
        return None
    return round(count / (duration_ns / NS), 3)


def raw_fields(final: Mapping[str, Any]) -> dict[str, int]:
    """Ollama's own counts and durations, as integers, where the chunk has them."""
    return {key: int(final[key]) for key in RAW_FIELDS if final.get(key) is not None}


def turn_numbers(final: Mapping[str, Any]) -> dict[str, Any]:
    """prompt_tokens, completion_tokens, tokens_per_s, prompt_tokens_per_s and load_s."""
    raw = raw_fields(final)
    prompt_count = raw.get("prompt_eval_count")
    evaluated = prompt_count - raw.get("prompt_eval_cached_count", 0) if prompt_count else None
    return {
        "prompt_tokens": prompt_count,
        "completion_tokens": raw.get("eval_count"),
        "tokens_per_s": rate(raw.get("eval_count"), raw.get("eval_duration")),
        "prompt_tokens_per_s": rate(evaluated, raw.get("prompt_eval_duration")),
        "load_s": raw["load_duration"] / NS if "load_duration" in raw else None,
    }


def decode_rate(final: Mapping[str, Any]) -> float | None:
    """The decode rate, eval_count over eval_duration."""
    return turn_numbers(final)["tokens_per_s"]
