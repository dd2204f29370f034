"""The page's live buffer and the numbers of the turn in progress, with no server: hooks called by hand."""

from __future__ import annotations

import time

from support.markup import visible

from graphs import PlannedTurn, RunRequest, TraceRecord, load_shape
from graphs.ui.live import LiveRun
from graphs.ui.watch import live_numbers, placement_badge


def placement(turn: int, gpu_fraction: float | None, **more: object) -> TraceRecord:
    return TraceRecord.model_validate(
        {"run_id": "r", "seq": 0, "node": "b", "turn": turn, "speaker": "b", "kind": "response"}
        | {"started_at": "", "ended_at": "", "gpu_fraction": gpu_fraction}
        | more
    )


def streaming(tokens: int, gpu_fraction: float | None = 1.0, apart_s: float = 0.2) -> LiveRun:
    live = LiveRun("r", RunRequest(load_shape("duet"), "a topic", 4, {}))
    live.turn_started(PlannedTurn(2, "b", "response"), "qwen3:32b", "qwen3:32b")
    live.turn_placed(placement(2, gpu_fraction))
    for index in range(tokens):
        if index:
            time.sleep(apart_s)
        live.token(f"w{index} ", thinking=index == 0)
    return live


def test_the_turn_in_progress_counts_its_tokens_and_knows_its_ttft_rate_and_placement():
    live = streaming(tokens=5)
    current = live.snapshot().current
    assert current is not None
    assert (current.tokens, current.text, current.thinking) == (5, "w1 w2 w3 w4 ", "w0 ")
    assert current.ttft_s is not None and current.elapsed_s is not None
    assert 0 < current.ttft_s <= current.elapsed_s
    assert current.tokens_per_s is not None and current.tokens_per_s > 0
    assert current.placement is not None and current.placement.gpu_fraction == 1.0


def test_a_burst_of_tokens_shows_no_rate_until_they_span_enough_time():
    live = streaming(tokens=4, apart_s=0)
    current = live.snapshot().current
    assert current is not None and current.tokens == 4 and current.ttft_s is not None
    assert current.tokens_per_s is None


def test_a_placement_for_another_turn_is_not_this_turns():
    live = streaming(tokens=0)
    live.turn_placed(placement(3, 0.5))  # the next turn's model, placed before that turn is announced
    current = live.snapshot().current
    assert current is not None and current.placement is not None and current.placement.turn == 2
    live.turn_finished({"number": 2, "speaker": "b", "kind": "response", "text": "w"}, None)  # type: ignore[typeddict-item]
    live.turn_started(PlannedTurn(3, "a", "reply"), "glm", "glm")
    current = live.snapshot().current
    assert current is not None and current.placement is not None and current.placement.gpu_fraction == 0.5


def test_before_its_first_token_a_turn_says_it_waits_and_shows_no_none():
    live = streaming(tokens=0, gpu_fraction=None)
    current = live.snapshot().current
    assert current is not None
    assert (current.tokens, current.ttft_s, current.tokens_per_s) == (0, None, None)
    line = " · ".join(live_numbers(current))
    assert "waiting for the first token" in line and "None" not in line and "tok/s" not in line


def test_the_live_line_names_tokens_rate_ttft_and_where_the_model_sits():
    live = streaming(tokens=4)
    current = live.snapshot().current
    assert current is not None
    parts = live_numbers(current)
    assert visible(parts[0]) == "qwen3:32b"
    assert parts[1] == ":green-badge[100% GPU]"
    assert "4 tokens" in parts
    assert any(part.endswith(" tok/s") for part in parts) and any(part.startswith("TTFT ") for part in parts)
    assert "None" not in " ".join(parts)


def test_a_model_partly_on_the_cpu_is_marked_red_with_its_cpu_share():
    live = streaming(tokens=1, gpu_fraction=0.48)
    current = live.snapshot().current
    assert current is not None
    assert placement_badge(current) == ":red-badge[:material/memory: CPU 52%]"
    on_cpu_server = streaming(tokens=1, gpu_fraction=None)
    on_cpu_server.turn_placed(placement(2, None, residency="cpu"))
    assert placement_badge(on_cpu_server.snapshot().current) == ":gray-badge[CPU-only server]"  # type: ignore[arg-type]


def test_the_run_is_done_once_its_ending_is_recorded_before_the_worker_returns():
    live = streaming(tokens=2)
    assert not live.wait_ended(0)
    live.stop()
    assert live.snapshot().stopping
    live.run_ended("interrupted")
    snap = live.snapshot()
    assert live.done and live.wait_ended(0)
    assert (snap.status, snap.stopping, snap.current) == ("interrupted", False, None)
