"""`duologue bench`'s pieces that need no server: the instant backend's metrics, the percentiles."""

from __future__ import annotations

import pytest

from graphs.commands import bench
from graphs.embedded.backend import ChatDone, ChatRequest
from graphs.embedded.instant import INSTANT_MODELS, InstantBackend


def test_the_instant_server_caches_a_growing_prompt_and_reports_every_metric():
    backend = InstantBackend()
    first = [{"role": "system", "content": "You are a."}, {"role": "user", "content": "Open, please."}]

    def final(messages):
        request = ChatRequest(model=INSTANT_MODELS[0], messages=messages, options={"num_ctx": 8192})
        items = list(backend.chat(request, lambda: False))
        assert isinstance(items[-1], ChatDone)
        return "".join(getattr(i, "content", "") for i in items[:-1]), items[-1]

    reply, done = final(first)
    assert reply and done.prompt_eval_cached_count == 0 and done.load_duration > 0
    assert done.eval_count > 0 and done.eval_duration > 0 and done.prompt_eval_duration > 0
    grown = [*first, {"role": "assistant", "content": reply}, {"role": "user", "content": "And then?"}]
    _, again = final(grown)
    assert again.load_duration == 0
    assert 0 < again.prompt_eval_cached_count < again.prompt_eval_count
    (loaded,) = backend.loaded()
    assert loaded.size_vram == loaded.size and loaded.context_length == 8192


def test_percentile_interpolates():
    assert bench.percentile([4, 1, 3, 2], 50) == 2.5
    assert bench.percentile([1, 2, 3, 4, 5], 95) == pytest.approx(4.8)
    assert bench.percentile([7], 95) == 7


def test_the_table_puts_the_pages_added_time_beside_the_clis():
    machine = {"cpu": "a CPU", "cores": 2, "python": "3.11", "date": "2026-12-02"}
    result = dict.fromkeys(bench.KEYS) | {"turns": 10, "repeat": 1, "machine": machine}
    result |= {
        "added_ms_per_turn_p50": 1.5,
        "ui_added_ms_per_turn_p50": 4.0,
        "ui_minus_cli_ms_per_turn_p50": 2.5,
    }
    rows = {line.split()[0]: line.split()[1:] for line in bench.render_table(result).splitlines() if line}
    assert rows["ui_added_ms_per_turn_p50"] == [
        "4",
        "ms",
        "<=",
        "added_ms_per_turn_p50",
        "+",
        "2",
        "ms",
        "no",
    ]
    assert rows["ui_minus_cli_ms_per_turn_p50"] == ["2.5", "ms", "<=", "2", "ms", "no"]
    result["ui_minus_cli_ms_per_turn_p50"] = 0.4
    rows = {line.split()[0]: line.split()[1:] for line in bench.render_table(result).splitlines() if line}
    assert rows["ui_added_ms_per_turn_p50"][-1] == rows["ui_minus_cli_ms_per_turn_p50"][-1] == "yes"
