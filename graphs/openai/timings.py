"""A turn's numbers from an OpenAI-compatible stream, in the trace's fields (see ollama/timings).

The counts come from the stream's usage (`stream_options.include_usage`); llama.cpp's
llama-server also sends its own `timings`, which are preferred: they time the prompt and the
decoding on the server, not over the network. A server that sends neither (llama-cpp-python's
own server ignores include_usage) gets what the stream itself shows: one token per content
chunk, and the rates timed between chunks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphs.ollama.timings import NS, rate

MS = 1e6
"""llama.cpp's timings are in milliseconds; the rate rule takes nanoseconds."""


@dataclass
class StreamClock:
    """What the connector saw of a stream: when its pieces came, and how many."""

    pieces: int = 0
    """Content (or reasoning) chunks: one token each on the servers this was tried with."""
    first: float | None = None
    last: float | None = None

    def piece(self, now: float) -> None:
        self.pieces += 1
        self.first = now if self.first is None else self.first
        self.last = now


def openai_turn_numbers(
    usage: Mapping[str, Any] | None, timings: Mapping[str, Any] | None, clock: StreamClock
) -> dict[str, Any]:
    """prompt_tokens, completion_tokens, tokens_per_s, prompt_tokens_per_s and load_s, as
    timings.turn_numbers gives them for Ollama, plus `counted_by`: usage, timings or stream."""
    usage, timings = usage or {}, timings or {}
    prompt_n, cache_n = whole(timings.get("prompt_n")), whole(timings.get("cache_n")) or 0
    predicted_n = whole(timings.get("predicted_n"))
    prompt_tokens = whole(usage.get("prompt_tokens"))
    completion_tokens = whole(usage.get("completion_tokens"))
    counted_by = "usage" if completion_tokens is not None else None
    if prompt_tokens is None and prompt_n is not None:
        prompt_tokens = prompt_n + cache_n  # llama.cpp's prompt_n leaves out the cached tokens
    if completion_tokens is None and predicted_n is not None:
        completion_tokens, counted_by = predicted_n, "timings"
    if completion_tokens is None and clock.pieces:
        completion_tokens, counted_by = clock.pieces, "stream"
    decode = per_second(timings.get("predicted_per_second"))
    if decode is None and completion_tokens and clock.first is not None and clock.last is not None:
        # the first piece's wait is the prompt's; the rest are decoding, one token each
        decode = rate(completion_tokens - 1, round((clock.last - clock.first) * NS))
    prompt_rate = per_second(timings.get("prompt_per_second"))
    if prompt_rate is None and prompt_n and timings.get("prompt_ms"):
        prompt_rate = rate(prompt_n, round(float(timings["prompt_ms"]) * MS))
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "tokens_per_s": decode,
        "prompt_tokens_per_s": prompt_rate,
        "load_s": None,
        "counted_by": counted_by,
    }


def whole(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def per_second(value: Any) -> float | None:
    """A server's own rate, rounded as the rate rule rounds; None when it sent none or zero."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        return None
    return round(float(value), 3)
