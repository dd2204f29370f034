"""The live view through AppTest: the turn in progress with its numbers, finished turns folded, Stop
that answers at once, and a run's URL that opens the run; against the Ollama-protocol test server.

A turn is held mid-stream (the test server's stall) so the page is looked at while it streams.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from support import ROOT
from support.duet import duet_models
from support.fakeollama import fake_ollama
from support.markup import visible

from graphs import RunRequest, RunStore, load_shape, with_overrides
from graphs.ui import common
from graphs.ui.live import LiveRun

APP = str(ROOT / "ui" / "app.py")
GB = 2**30


@pytest.fixture
def page_env(runs_dir: Path, monkeypatch) -> Path:
    monkeypatch.setenv("DUOLOGUE_RUNS_DIR", str(runs_dir))
    return runs_dir


def wait_until(predicate: Callable[[], object], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def launch(url: str, runs_dir: Path, turns: int = 4) -> LiveRun:
    """A duet launched into the page's registry, as the Launch button does; GPU not required, so a
    model that spills to the CPU runs there."""
    shape = with_overrides(load_shape("duet"), {"a": "glm-4.7-flash", "b": "qwen3:32b"}, [])
    hosts = {"a": url, "b": url}
    return common.registry().launch(RunRequest(shape, "An essay.", turns, hosts, runs_dir, require_gpu=False))


def streaming_turn(live: LiveRun, number: int, tokens: int) -> Callable[[], bool]:
    def reached() -> bool:
        current = live.snapshot().current
        return current is not None and current.number == number and current.tokens >= tokens

    return reached


def open_page(query: dict[str, str], page: str | None = "views/run.py") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    if page:
        at.switch_page(page)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def markdown(at: AppTest) -> list[str]:
    return [visible(m.value) for m in at.markdown]


def stop_button(at: AppTest, run_id: str):
    found = [b for b in at.button if b.key == f"stop:{run_id}"]
    return found[0] if found else None


def test_the_turn_in_progress_shows_its_numbers_and_finished_turns_fold(page_env: Path):
    """Turn 2 (qwen3:32b, too big for the card: partly on the CPU) has finished; turn 3 streams."""
    gate = threading.Event()
    models = duet_models(weights_bytes=3 * GB)
    with fake_ollama(models, vram_bytes=2 * GB, stall=(3, 4, gate), token_delay_s=0.25) as (server, _backend):
        try:
            live = launch(server.url, page_env)
            wait_until(streaming_turn(live, 3, 4), "turn 3 to stream its first 4 tokens")
            at = open_page({"run": live.run_id})

            # The turn in progress: its heading, then its numbers, counted as they streamed.
            page = markdown(at)
            assert any(line.endswith("Turn 3: glm-4.7-flash — Reply") for line in page)
            [numbers] = [line for line in page if line.endswith("writing…")]
            parts = numbers.split(" · ")
            assert parts[:3] == ["glm-4.7-flash", ":green-badge[100% GPU]", "4 tokens"], numbers
            assert re.fullmatch(r"\d+\.\d tok/s", parts[3]) and re.fullmatch(r"TTFT \d+\.\d s", parts[4])
            assert "None" not in numbers
            assert re.search(r"running\*\* · turn 3 of 4 · \d+ s$", page[0]), page[0]

            # The finished turns below it, newest first, folded to heading and stats line; the one on
            # the CPU in red.
            labels = [e.label for e in at.expander]
            assert len(labels) == 2, labels
            second, first = (visible(label) for label in labels)
            assert re.fullmatch(
                r"Turn 1: glm-4\.7-flash — Opening · \*\(\d+ tokens, [\d.]+ tok/s, \d+s\)\*", first
            )
            assert re.fullmatch(
                r":red\[Turn 2: qwen3:32b — Response · \*\(\d+ tokens, [\d.]+ tok/s, \d+s, CPU \d+%\)\*\]",
                second,
            ), second
            assert [e.proto.icon for e in at.expander] == [":material/warning:", ""]
            # Opened, a finished turn holds its words.
            assert any("The tension is profound." in line for line in page)
        finally:
            gate.set()
        wait_until(lambda: live.done, "the run to finish")
        record = RunStore(page_env).load(live.run_id)
        assert record.meta.status == "completed"
        assert [r.degraded for r in record.turn_records] == [False, True, False, True]
        at.run()
        assert not at.exception and stop_button(at, live.run_id) is None  # the record now, not the live view


def test_the_placement_of_a_model_on_the_cpu_shows_in_red_while_it_streams(page_env: Path):
    gate = threading.Event()
    models = duet_models(weights_bytes=3 * GB)
    with fake_ollama(models, vram_bytes=2 * GB, stall=(2, 3, gate)) as (server, _backend):
        try:
            live = launch(server.url, page_env)
            wait_until(streaming_turn(live, 2, 3), "turn 2 to stream")
            at = open_page({"run": live.run_id})
            [numbers] = [m.value for m in at.markdown if m.value.endswith("writing…")]
            assert re.search(r":red-badge\[:material/memory: CPU \d+%\]", numbers), numbers
        finally:
            gate.set()
        wait_until(lambda: live.done, "the run to finish")


def test_stop_says_stopping_at_once_then_shows_the_interrupted_run(page_env: Path):
    gate = threading.Event()
    with fake_ollama(duet_models(), stall=(2, 3, gate)) as (server, _backend):
        try:
            live = launch(server.url, page_env, turns=6)
            wait_until(streaming_turn(live, 2, 3), "turn 2 to stream")
            at = open_page({"run": live.run_id})
            button = stop_button(at, live.run_id)
            assert button is not None and not button.disabled
            button.click().run()
            # The same redraw that handled the click says so (the model is stalled: the run can't end yet).
            assert not at.exception
            assert re.fullmatch(r"\*\*stopping…\*\* · turn 2 of 6 · \d+ s", markdown(at)[0]), markdown(at)[0]
            button = stop_button(at, live.run_id)
            assert button is not None and button.disabled
        finally:
            gate.set()  # the next token arrives, and the run stops at it
        wait_until(lambda: live.done, "the run to stop")
        at.run()
        assert not at.exception and stop_button(at, live.run_id) is None
        assert any(
            "The run was interrupted; its 1 finished turn(s) are kept below." in visible(w.value)
            for w in at.warning
        )
    assert RunStore(page_env).load(live.run_id).meta.status == "interrupted"


def test_the_root_url_with_a_run_opens_that_run(page_env: Path):
    with fake_ollama(duet_models()) as (server, _backend):
        live = launch(server.url, page_env, turns=2)
        wait_until(lambda: live.done, "the run to finish")
    at = open_page({"run": live.run_id}, page=None)  # /?run=ID: the root URL, which is Launch's
    assert [visible(t.value) for t in at.title] == [f"Run {live.run_id}"]
    assert any("Turn 2: qwen3:32b — Closing" in line for line in markdown(at)), markdown(at)
    # Without a run, the root URL is still Launch.
    launch_page = open_page({}, page=None)
    assert "Launch a dialogue" in " ".join(visible(t.value) for t in launch_page.title)
