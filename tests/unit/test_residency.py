"""Residency's pieces: how a placement reads, the expected prompt size, a turn's flags."""

from __future__ import annotations

import pytest

from graphs.ollama import residency
from graphs.ollama.api import describe_processor
from graphs.records.schema import TraceRecord


@pytest.mark.parametrize(
    ("size", "size_vram", "shown"),
    [(100, 100, "100% GPU"), (100, 0, "100% CPU"), (100, 48, "52%/48% CPU/GPU"), (0, 0, "100% GPU")],
)
def test_processor_reads_like_ollama_ps(size: int, size_vram: int, shown: str):
    assert describe_processor(size, size_vram) == shown


def test_expected_prompt_tokens_grows_from_the_previous_count():
    first = [{"role": "system", "content": "a b c"}, {"role": "user", "content": "d e"}]
    assert residency.expected_prompt_tokens(first, None) == 5
    seen = residency._Seen(first, 20)
    second = [*first, {"role": "assistant", "content": "f g h"}, {"role": "user", "content": "i"}]
    assert residency.expected_prompt_tokens(second, seen) == 24
    # Not a continuation of the previous prompt: only the words count.
    assert residency.expected_prompt_tokens(second[1:], seen) == 6


def test_trace_record_flags():
    base = {"run_id": "r", "seq": 1, "node": "a", "started_at": "t", "ended_at": "t", "latency_s": 1.0}
    record = TraceRecord.model_validate(base | {"gpu_fraction": 0.48, "slow": True, "truncated": True})
    assert record.flags == ["CPU 52%", "slow", "truncated"]
    assert TraceRecord.model_validate(base | {"gpu_fraction": 0.0}).flags == ["CPU"]
