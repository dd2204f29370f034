"""`duologue bench` on the embedded real model: decode speed and the prompt cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphs.commands import bench


@pytest.mark.embedded
def test_bench_on_the_embedded_model_measures_decode_and_the_prompt_cache(tmp_path: Path):
    pytest.importorskip("llama_cpp")
    settings = bench.BenchSettings(turns=4, repeat=1, num_predict=16)
    figures = bench.measure_embedded(settings, tmp_path, lambda _line: None)
    assert figures["decode_ratio"] > 0
    assert figures["engine_decode_tok_s"] > 0 and figures["direct_decode_tok_s"] > 0
    # Each speaker's second turn reuses its cached prefix: far fewer tokens evaluated than sent.
    assert 0 < figures["prompt_reeval_ratio"] < 1.2
