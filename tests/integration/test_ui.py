"""The Streamlit page through AppTest, against the Ollama-protocol test server.

Each test drives the real app (ui/app.py and its pages) with a temporary runs folder
($DUOLOGUE_RUNS_DIR); runs go through the page's background worker to the test server.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from support import ROOT
from support.duet import A_REPLIES, B_REPLIES, duet_models, turn_sections
from support.fakeollama import FakeModel, fake_ollama

from graphs import (
    DuologueError,
    RunFailed,
    RunRecord,
    RunRequest,
    RunStore,
    Shape,
    load_shape,
    run_dialogue,
    with_overrides,
)
from graphs.ui import common
from graphs.ui.live import LiveRun, Registry

APP = str(ROOT / "ui" / "app.py")
HOSTILE = "See <img src=x onerror=alert(1)> and <script>alert(2)</script>, for $5 or $10. ![t](http://x.invalid/t.png)"


@pytest.fixture
def page_env(runs_dir: Path, monkeypatch) -> Path:
    monkeypatch.setenv("DUOLOGUE_RUNS_DIR", str(runs_dir))
    return runs_dir


def wait_until(predicate: Callable[[], object], timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def run_status(runs_dir: Path, run_id: str) -> str | None:
    path = runs_dir / run_id / "run.json"
    return json.loads(path.read_text())["status"] if path.exists() else None


def texts(at: AppTest) -> str:
    """Everything the page says, for assertions that don't care which element says it."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info]
    return "\n".join(parts)


def launch_page(url: str, monkeypatch) -> AppTest:
    monkeypatch.setenv("OLLAMA_HOST", url)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def pick(at: AppTest, key: str, label: str) -> None:
    at.selectbox(key=key).set_value(label)


def finish(at: AppTest, runs_dir: Path, run_id: str) -> AppTest:
    """Wait for the run to end on disk, then for the page to swap its live view for the record."""
    wait_until(lambda: run_status(runs_dir, run_id) not in (None, "running"), what=f"run {run_id}")
    wait_until(lambda: not _has_stop(at.run(), run_id), what="the page to show the finished run")
    return at


def _has_stop(at: AppTest, run_id: str) -> bool:
    return any(b.key == f"stop:{run_id}" for b in at.button)


# ---- launch, stream, inspect ------------------------------------------------------------------


def test_launch_a_duet_then_inspect_every_turn(page_env: Path, monkeypatch):
    first_token = threading.Event()  # turn 1 sends nothing until the page has shown the run live
    with fake_ollama(duet_models(), token_delay_s=0.01, hold_first_token=(1, first_token)) as (server, _):
        try:
            at = launch_page(server.url, monkeypatch)
            # The host's models (/api/tags) and the embedded ones are offered to each participant.
            offered = at.selectbox(key="Built-in:duet:a:model").options
            assert offered[:2] == ["glm-4.7-flash", "qwen3:32b"]
            assert any("embedded" in label for label in offered[2:])
            pick(at, "Built-in:duet:a:model", "glm-4.7-flash")
            pick(at, "Built-in:duet:b:model", "qwen3:32b")
            at.number_input(key="Built-in:duet:a:temperature").set_value(0.3)
            at.number_input(key="Built-in:duet:b:num_ctx").set_value(8192)
            at.text_area(key="topic-text").set_value("Inherited memory: who owes what to a predecessor?")
            at.button(key="launch").click().run()
            assert not at.exception, at.exception

            # The page now names the run in its URL and shows it live, with a Stop button (the run
            # cannot have ended: its first token is held back).
            run_id = at.query_params["run"]
            run_id = run_id[0] if isinstance(run_id, list) else run_id
            assert _has_stop(at, run_id)
        finally:
            first_token.set()
        at = finish(at, page_env, run_id)

    assert not at.exception, at.exception
    run = RunStore(page_env).load(run_id)
    assert run.meta.status == "completed"
    options = {p.name: p.options for p in run.meta.participants}
    assert options["a"]["temperature"] == 0.3 and options["b"]["num_ctx"] == 8192

    page = texts(at)
    for heading in ("Turn 1: glm-4.7-flash — Opening", "Turn 4: qwen3:32b — Closing"):
        assert heading in page
    assert A_REPLIES[0] in page and B_REPLIES[1] in page
    assert "tok/s" in page  # the stats lines

    [table] = [d for d in at.dataframe if d.key == "trace-table"] or [at.dataframe[0]]
    trace = table.value
    assert list(trace["turn"]) == [1, 2, 3, 4]
    assert list(trace["model"]) == ["glm-4.7-flash", "qwen3:32b"] * 2
    assert trace["tok/s"].round(1).tolist() == [9.0, 1.4, 9.0, 1.4]
    assert len(at.get("vega_lite_chart")) == 4  # tok/s, latency, tokens, time split
    sent = [e.label for e in at.expander]
    assert sent[0] == "Turn 1: glm-4.7-flash was sent 2 messages" and len(sent) == 4
    inputs = run.inputs()
    assert [c.value for c in at.code][: len(inputs[0].messages)] == [m["content"] for m in inputs[0].messages]
    assert len(at.get("graphviz_chart")) == 1
    downloads = {b.proto.label for b in at.get("download_button")}
    assert {"transcript.md", "trace.jsonl"} <= downloads


def test_stop_interrupts_the_run_and_keeps_finished_turns(page_env: Path, monkeypatch):
    with fake_ollama(duet_models(), token_delay_s=0.05) as (server, _backend):
        at = launch_page(server.url, monkeypatch)
        pick(at, "Built-in:duet:a:model", "glm-4.7-flash")
        pick(at, "Built-in:duet:b:model", "qwen3:32b")
        at.number_input(key="Built-in:duet:turns").set_value(6)
        at.button(key="launch").click().run()
        run_id = at.query_params["run"]
        run_id = run_id[0] if isinstance(run_id, list) else run_id
        wait_until(lambda: (page_env / run_id / "transcript.md").exists(), what="a finished turn")
        at.run()
        at.button(key=f"stop:{run_id}").click().run()
        at = finish(at, page_env, run_id)

    run = RunStore(page_env).load(run_id)
    assert run.meta.status == "interrupted"
    kept = len(run.turn_records)
    assert 1 <= kept < 6
    assert any("interrupted" in w.value for w in at.warning)
    assert len(at.dataframe[0].value) == kept
    assert "Turn 1: glm-4.7-flash — Opening" in texts(at)


def test_the_worker_streams_tokens_and_two_runs_never_mix(runs_dir: Path):
    """Two runs at once, each with its own buffer: no token or turn of one shows in the other."""
    alpha = FakeModel("alpha:1b", replies=["alpha " * 30])
    omega = FakeModel("omega:1b", replies=["omega " * 30])
    registry = Registry()
    with fake_ollama([alpha, omega], token_delay_s=0.01) as (server, _backend):
        duet = load_shape("duet")

        def request(model: str) -> RunRequest:
            shape = with_overrides(duet, {"a": model, "b": model}, [])
            return RunRequest(shape, "a topic", 4, {"a": server.url, "b": server.url}, runs_dir=runs_dir)

        first, second = registry.launch(request("alpha:1b")), registry.launch(request("omega:1b"))
        assert first.run_id != second.run_id
        partial: list[str] = []

        def saw_partial_text() -> bool:
            current = first.snapshot().current
            if current is not None and 0 < len(current.text.split()) < 30:
                partial.append(current.text)
            return bool(partial) or first.done

        wait_until(saw_partial_text, what="a turn mid-stream")
        wait_until(lambda: first.done and second.done, what="both runs")

    assert partial, "the current turn's tokens were never seen while streaming"
    for live, word, other in ((first, "alpha", "omega"), (second, "omega", "alpha")):
        snap = live.snapshot()
        assert snap.status == "completed" and len(snap.turns) == 4
        assert all(word in t.text and other not in t.text for t in snap.turns)
        assert all(t.stats.startswith("*(") for t in snap.turns)
        assert other not in RunStore(runs_dir).load(live.run_id).transcript()
        assert registry.get(live.run_id) is live
    assert registry.active() == []


def test_runs_still_going_when_the_server_stops_are_recorded_as_interrupted(runs_dir: Path):
    registry = Registry()
    with fake_ollama(duet_models(), token_delay_s=0.05) as (server, _backend):
        shape = with_overrides(load_shape("duet"), {"a": "glm-4.7-flash", "b": "qwen3:32b"}, [])
        live = registry.launch(
            RunRequest(shape, "t", 8, {"a": server.url, "b": server.url}, runs_dir=runs_dir)
        )
        wait_until(lambda: live.snapshot().turns, what="a finished turn")
        registry.shutdown(timeout_s=10)  # what the server's exit hook does
    assert live.snapshot().status == "interrupted"
    run = RunStore(runs_dir).load(live.run_id)
    assert run.meta.status == "interrupted" and 1 <= len(run.turn_records) < 8


# ---- untrusted text ---------------------------------------------------------------------------


def test_model_text_is_markdown_with_html_off(page_env: Path, monkeypatch):
    models = [FakeModel("glm-4.7-flash", replies=[HOSTILE]), FakeModel("qwen3:32b")]
    with fake_ollama(models) as (server, _backend):
        shape = with_overrides(load_shape("duet"), {"a": "glm-4.7-flash", "b": "qwen3:32b"}, [])
        outcome = run_dialogue(
            RunRequest(shape, "t", 2, {"a": server.url, "b": server.url}, runs_dir=page_env)
        )
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/run.py")
    at.query_params["run"] = outcome.run_id
    at.run()
    assert not at.exception, at.exception
    [shown] = [m for m in at.markdown if "onerror" in m.value]
    assert not shown.proto.allow_html
    assert "\\$5" in shown.value and "!\\[t]" in shown.value


# ---- bad input and faults ---------------------------------------------------------------------


@pytest.mark.parametrize("run_id", ["../..", "../outside", "no-such-run"])
def test_a_run_id_that_is_not_a_run(page_env: Path, tmp_path: Path, run_id: str):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "run.json").write_text('{"secret": "must not be read"}')
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/run.py")
    at.query_params["run"] = run_id
    at.run()
    assert not at.exception, at.exception
    [error] = at.error
    assert "not a run id" in error.value or "no run" in error.value
    assert "secret" not in texts(at)


def test_unreachable_host_says_so_and_offers_the_embedded_model(page_env: Path, monkeypatch):
    with fake_ollama([]) as (server, _backend):
        closed = server.url  # nothing listens here once the server has stopped
    at = launch_page(closed, monkeypatch)
    assert any("cannot reach Ollama" in e.value for e in at.error)
    assert any("embedded model" in i.value for i in at.info)
    assert at.selectbox(key="Built-in:duet:a:model").options == [
        "smollm2:135m · embedded (CPU, this machine)",
        "smollm2:135m-warm · embedded (CPU, this machine)",
    ]


def test_a_failed_run_shows_its_error_and_finished_turns(page_env: Path, monkeypatch):
    with fake_ollama(duet_models(), fail_on_call=3) as (server, _backend):
        registry = Registry()
        shape = with_overrides(load_shape("duet"), {"a": "glm-4.7-flash", "b": "qwen3:32b"}, [])
        live = registry.launch(
            RunRequest(shape, "t", 4, {"a": server.url, "b": server.url}, runs_dir=page_env)
        )
        wait_until(lambda: live.done, what="the run to fail")
        missing = with_overrides(shape, {"b": "not-pulled:7b"}, [])
        early = common.registry().launch(  # the page's own registry, which the run page reads
            RunRequest(missing, "t", 4, {"a": server.url, "b": server.url}, runs_dir=page_env)
        )
        wait_until(lambda: early.done, what="the run to fail")

    assert live.snapshot().status == "failed" and "fake failure" in (live.error or "")
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/run.py")
    at.query_params["run"] = live.run_id
    at.run()
    [error] = at.error
    assert "The run failed" in error.value and "turn 3" in error.value
    trace = at.dataframe[0].value  # the two finished turns, and the failed one flagged
    assert list(trace["turn"]) == [1, 2, 3] and list(trace["flags"]) == ["", "", "error"]
    assert B_REPLIES[0] in texts(at)

    # A run that failed before its first turn has no folder: the page shows the worker's error.
    assert early.snapshot().status == "failed" and early.snapshot().folder is None
    assert "not-pulled:7b" in (early.error or "")
    at.query_params["run"] = early.run_id
    at.run()
    [error] = at.error
    assert "failed before its first turn" in error.value and "not-pulled:7b" in error.value


def test_topic_upload_has_a_limit_and_must_be_text(page_env: Path, monkeypatch):
    with fake_ollama(duet_models()) as (server, _backend):
        at = launch_page(server.url, monkeypatch)
        at.radio(key="topic-source").set_value("From a file").run()
        uploader = at.file_uploader(key="topic-file")
        uploader.set_value(("big.md", b"word " * 250_000, "text/markdown")).run()
        assert any("the limit is 1,000 kB" in e.value for e in at.error)
        at.file_uploader(key="topic-file").set_value(
            ("latin.txt", "caf\xe9".encode("latin-1"), "text/plain")
        ).run()
        assert any("not UTF-8" in e.value for e in at.error)
        at.file_uploader(key="topic-file").set_value(
            ("essay.md", b"An essay in five words.", "text/markdown")
        )
        at.run()
        assert not at.error
        assert any("essay.md: 5 words" in c.value for c in at.caption)


# ---- resume, and the facilitator's words ------------------------------------------------------

WORDS = "An echo doesn't remember. What, then, does a successor inherit?"
CLOSING = (
    "Close the conversation with a synthesis: where you converge, where you diverge, and what surprised you."
)


def duet_shape(**update) -> Shape:
    shape = with_overrides(load_shape("duet"), {"a": "glm-4.7-flash", "b": "qwen3:32b"}, [])
    return shape.model_copy(update=update)


def paused_run(url: str, runs_dir: Path) -> str:
    """A duet held until it pauses for the facilitator before turn 3."""
    hosts = {"a": url, "b": url}
    outcome = run_dialogue(RunRequest(duet_shape(interject_before=[3]), "t", 4, hosts, runs_dir=runs_dir))
    assert outcome.paused_before_turn == 3 and run_status(runs_dir, outcome.run_id) == "interrupted"
    return outcome.run_id


def failed_run(url: str, runs_dir: Path, turns: int = 4) -> RunRecord:
    """A duet whose server fails mid-way (the test server's fail_on_call)."""
    hosts = {"a": url, "b": url}
    with pytest.raises(RunFailed):
        run_dialogue(RunRequest(duet_shape(), "t", turns, hosts, runs_dir=runs_dir))
    [run] = RunStore(runs_dir).list()
    assert run.meta.status == "failed"
    return run


def open_run(run_id: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/run.py")
    at.query_params["run"] = run_id
    at.run()
    assert not at.exception, at.exception
    return at


def finish_resume(at: AppTest, run_id: str) -> tuple[AppTest, LiveRun]:
    """Wait for the resume the page launched to end, then for the page to show the whole run."""
    live = common.registry().get(run_id)
    assert live is not None and live.resumed_after is not None, "the page launched no resume"
    wait_until(lambda: live.done, what=f"the resume of {run_id}")
    wait_until(lambda: not _has_stop(at.run(), run_id), what="the page to show the finished run")
    assert not at.exception, at.exception
    return at, live


def headings(transcript: str) -> list[str]:
    return [line for line in transcript.splitlines() if line.startswith("### ")]


def test_the_facilitators_words_are_relayed_before_the_paused_turn(page_env: Path):
    with fake_ollama(duet_models(), token_delay_s=0.01) as (server, backend):
        run_id = paused_run(server.url, page_env)
        before = turn_sections(RunStore(page_env).load(run_id).transcript())
        at = open_run(run_id)
        words = at.text_area(key=f"say:{run_id}:3")
        assert words.label == "The facilitator's words before turn 3"
        assert any(f"duologue resume {run_id} --say TEXT" in c.value for c in at.caption)
        words.set_value(WORDS)
        at.button(key=f"say-it:{run_id}").click().run()
        assert not at.exception and not at.error
        at, _live = finish_resume(at, run_id)
        requests = list(backend.chat_requests)

    run = RunStore(page_env).load(run_id)
    assert run.meta.status == "completed" and run.meta.paused_before_turn is None
    transcript = run.transcript()
    assert headings(transcript) == [
        "### Turn 1: glm-4.7-flash — Opening",
        "### Turn 2: qwen3:32b — Response",
        "### Facilitator — before Turn 3",
        "### Turn 3: glm-4.7-flash — Reply",
        "### Turn 4: qwen3:32b — Closing",
    ]
    assert (
        f"### Facilitator — before Turn 3\n\n{WORDS}\n\n---\n\n### Turn 3: glm-4.7-flash — Reply\n"
        in transcript
    )
    assert turn_sections(transcript)[:2] == before
    for said in [*A_REPLIES, *B_REPLIES, WORDS]:
        assert transcript.count(said) == 1, said
    # Turns 1 and 2 were not asked for again; turn 3's speaker heard the words as the facilitator's.
    assert [r.model for r in requests] == ["glm-4.7-flash", "qwen3:32b"] * 2
    assert requests[2].messages == [
        *requests[0].messages,
        {"role": "assistant", "content": A_REPLIES[0]},
        {"role": "user", "content": B_REPLIES[0]},
        {"role": "user", "content": f"Facilitator: {WORDS}"},
        {"role": "user", "content": "Reply to what was said."},
    ]
    # The page shows the whole run again, the facilitator's words in their place.
    assert not at.error and not at.text_area
    assert list(at.dataframe[0].value["turn"]) == [1, 2, 3, 4]
    assert f"Facilitator — before Turn 3\n\n{WORDS}" in texts(at)


def test_continue_without_a_word_relays_nothing(page_env: Path):
    with fake_ollama(duet_models()) as (server, backend):
        run_id = paused_run(server.url, page_env)
        at = open_run(run_id)
        at.button(key=f"no-word:{run_id}").click().run()
        assert not at.exception and not at.error
        at, _live = finish_resume(at, run_id)
        requests = list(backend.chat_requests)

    run = RunStore(page_env).load(run_id)
    assert run.meta.status == "completed"
    assert headings(run.transcript()) == [
        "### Turn 1: glm-4.7-flash — Opening",
        "### Turn 2: qwen3:32b — Response",
        "### Turn 3: glm-4.7-flash — Reply",
        "### Turn 4: qwen3:32b — Closing",
    ]
    assert requests[2].messages == [
        *requests[0].messages,
        {"role": "assistant", "content": A_REPLIES[0]},
        {"role": "user", "content": B_REPLIES[0]},
        {"role": "user", "content": "Reply to what was said."},
    ]
    assert requests[3].messages == [
        *requests[1].messages,
        {"role": "assistant", "content": B_REPLIES[0]},
        {"role": "user", "content": A_REPLIES[1]},
        {"role": "user", "content": CLOSING},
    ]
    assert len(requests) == 4 and list(at.dataframe[0].value["turn"]) == [1, 2, 3, 4]


def test_say_it_with_no_words_says_so_and_launches_nothing(page_env: Path):
    with fake_ollama(duet_models()) as (server, backend):
        run_id = paused_run(server.url, page_env)
        recorded = (page_env / run_id / "run.json").read_bytes()
        at = open_run(run_id)
        at.text_area(key=f"say:{run_id}:3").set_value("  \n ")
        at.button(key=f"say-it:{run_id}").click().run()
        assert not at.exception, at.exception
        [error] = at.error
        assert error.value == "Write the facilitator's words first, or continue without a word."
        assert common.registry().get(run_id) is None  # no worker was started
        assert not _has_stop(at, run_id)
        at.run()  # the page again, as it was
        assert not at.error and at.text_area(key=f"say:{run_id}:3")
        assert len(backend.chat_requests) == 2
    assert (page_env / run_id / "run.json").read_bytes() == recorded


def test_resume_a_failed_run_keeps_its_finished_turns(page_env: Path):
    with fake_ollama(duet_models(), fail_on_call=3) as (server, backend):
        failed = failed_run(server.url, page_env)
        run_id = failed.meta.run_id
        kept = [r.model_dump() for r in failed.turn_records if r.turn in (1, 2)]
        sent = [i.model_dump() for i in failed.inputs() if i.turn in (1, 2)]
        before = turn_sections(failed.transcript())
        assert len(before) == 2 and len(kept) == 2
        at = open_run(run_id)
        [error] = at.error
        assert "The run failed" in error.value and "turn 3" in error.value
        at.button(key=f"resume:{run_id}").click().run()
        assert not at.exception, at.exception
        at, _live = finish_resume(at, run_id)
        resumed = backend.chat_requests[3:]

    run = RunStore(page_env).load(run_id)
    assert run.meta.status == "completed" and run.meta.error is None
    after = turn_sections(run.transcript())
    assert after[:2] == before, "finished turns are byte-identical"
    assert [s.splitlines()[0] for s in after[2:]] == [
        "### Turn 3: glm-4.7-flash — Reply",
        "### Turn 4: qwen3:32b — Closing",
    ]
    assert [r.model_dump() for r in run.turn_records if r.turn in (1, 2)] == kept
    assert [i.model_dump() for i in run.inputs() if i.turn in (1, 2)] == sent
    # The server was asked for turns 3 and 4 only, each speaker with its whole history.
    assert [(r.model, len(r.messages)) for r in resumed] == [("glm-4.7-flash", 5), ("qwen3:32b", 6)]
    assert not at.error
    assert f"resume:{run_id}" not in [b.key for b in at.button]
    trace = at.dataframe[0].value  # the failed attempt of turn 3 stays in the log
    assert list(trace["turn"]) == [1, 2, 3, 3, 4] and list(trace["flags"]) == ["", "", "error", "", ""]
    assert B_REPLIES[1] in texts(at)


def test_a_killed_run_shows_as_stopped_and_resumes(page_env: Path):
    with fake_ollama(duet_models(), fail_on_call=3) as (server, backend):
        run_id = failed_run(server.url, page_env).meta.run_id
        # What a kill leaves: the record still says running, and no process holds the run.
        record = json.loads((page_env / run_id / "run.json").read_text())
        (page_env / run_id / "run.json").write_text(json.dumps(record | {"status": "running", "error": None}))
        at = open_run(run_id)
        [warning] = at.warning
        assert warning.value == (
            "This run is marked running, but no process holds it: it was killed, or its machine went down. "
            "Its 2 finished turn(s) are kept below."
        )
        assert "stopped" in texts(at)
        at.button(key=f"resume:{run_id}").click().run()
        at, _live = finish_resume(at, run_id)
        resumed = backend.chat_requests[3:]
    run = RunStore(page_env).load(run_id)
    assert (run.meta.status, run.status) == ("completed", "completed")
    assert [(r.model, len(r.messages)) for r in resumed] == [("glm-4.7-flash", 5), ("qwen3:32b", 6)]
    assert headings(run.transcript()) == [
        "### Turn 1: glm-4.7-flash — Opening",
        "### Turn 2: qwen3:32b — Response",
        "### Turn 3: glm-4.7-flash — Reply",
        "### Turn 4: qwen3:32b — Closing",
    ]


def test_stop_a_resumed_run_and_a_second_tab_does_not_start_it_again(page_env: Path):
    with fake_ollama(duet_models(), fail_on_call=2, token_delay_s=0.05) as (server, _backend):
        run_id = failed_run(server.url, page_env, turns=8).meta.run_id
        tab, other = open_run(run_id), open_run(run_id)
        tab.button(key=f"resume:{run_id}").click().run()
        assert not tab.exception and not tab.error
        live = common.registry().get(run_id)
        assert live is not None
        wait_until(lambda: live.snapshot().turns, what="a turn finished after resuming")
        tab.run()
        assert "Resumed: continuing from turn 2; turns 1–1 are kept as they were." in texts(tab)
        # The other tab still shows the Resume button; its click finds the run going and watches it.
        other.button(key=f"resume:{run_id}").click().run()
        assert _has_stop(other, run_id) and common.registry().get(run_id) is live
        with pytest.raises(DuologueError, match="already running here"):
            common.registry().resume(RunStore(page_env).load(run_id))
        tab.button(key=f"stop:{run_id}").click().run()
        tab, _live = finish_resume(tab, run_id)

    run = RunStore(page_env).load(run_id)
    assert run.meta.status == "interrupted" and run.meta.paused_before_turn is None
    kept = [s.splitlines()[0] for s in turn_sections(run.transcript())]
    assert 2 <= len(kept) < 8  # turn 1 from before, turn 2 (at least) from the resume
    assert kept[:2] == ["### Turn 1: glm-4.7-flash — Opening", "### Turn 2: qwen3:32b — Response"]
    assert [int(k.split()[2].rstrip(":")) for k in kept] == list(range(1, len(kept) + 1))
    assert any("interrupted" in w.value for w in tab.warning)
    assert f"resume:{run_id}" in [b.key for b in tab.button]  # it can be resumed again


def test_a_resume_the_engine_refuses_is_one_error_line(page_env: Path):
    with fake_ollama(duet_models()) as (server, backend):
        run_id = paused_run(server.url, page_env)
        recorded = (page_env / run_id / "run.json").read_bytes()
        at = open_run(run_id)
        with RunStore(page_env).reopen(run_id).lock():  # as a `duologue resume` elsewhere holds it
            at.button(key=f"no-word:{run_id}").click().run()
            refused = common.registry().get(run_id)
            assert refused is not None
            wait_until(lambda: refused.done, what="the refused resume")
        if _has_stop(at, run_id):  # the page was still watching it start
            at.run()
        assert not at.exception, at.exception
        [error] = at.error
        assert error.value == (
            f"The run was not continued: run {run_id} is being driven by process {os.getpid()}; "
            "wait for it to finish or stop it first"
        )
        assert (page_env / run_id / "run.json").read_bytes() == recorded
        assert len(backend.chat_requests) == 2
        at.run()
        assert not at.error  # said once

        # Once the other holder has let go, the same run (and id) continues from the page.
        at.button(key=f"no-word:{run_id}").click().run()
        at, live = finish_resume(at, run_id)
        assert live is not refused and len(backend.chat_requests) == 4
    assert run_status(page_env, run_id) == "completed"
    assert not at.error


# ---- the other pages ---------------------------------------------------------------------------


def test_runs_page_lists_every_run_with_its_flags(page_env: Path):
    # qwen3:32b is bigger than the emulated GPU, so it spills to the CPU: the CPU flag.
    with fake_ollama(duet_models(weights_bytes=30 * 2**30), vram_bytes=24 * 2**30) as (server, _backend):
        shape = with_overrides(load_shape("duet"), {"a": "glm-4.7-flash", "b": "qwen3:32b"}, [])
        hosts = {"a": server.url, "b": server.url}
        run_dialogue(
            RunRequest(shape, "t", 4, hosts, runs_dir=page_env, residency_policy="shared", require_gpu=False)
        )
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/runs.py").run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert list(table.columns) == [
        "started", "shape", "models", "turns", "tokens", "generation s", "status", "flags", "run",
    ]  # fmt: skip
    [row] = table.to_dict("records")
    assert row["shape"] == "duet" and row["turns"] == "4/4" and row["status"] == "completed"
    assert row["models"] == "glm-4.7-flash, qwen3:32b" and "CPU" in row["flags"]


def test_shapes_page_draws_each_shape_and_shows_its_file():
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/shapes.py").run()
    assert not at.exception, at.exception
    assert [h.value for h in at.header][:3] == ["debate", "duet", "panel"]
    assert len(at.get("graphviz_chart")) == 3
    assert any("name: duet" in c.value for c in at.code)
    at.file_uploader(key="own-shape").set_value(
        ("mine.yaml", b"name: mine\nparticipants: []\n", "text/yaml")
    ).run()
    assert any("mine.yaml" in e.value for e in at.error)


def test_duologue_ui_runs_streamlit_on_localhost(monkeypatch, tmp_path: Path):
    import subprocess

    from graphs.commands.cli import main

    seen: dict[str, object] = {}

    def call(command, env):
        seen.update(command=command, env=env)
        return 0

    monkeypatch.setattr(subprocess, "call", call)
    database = "postgresql://duologue:pw@127.0.0.1:5432/runs"
    assert main(["ui", "--port", "8611", "--runs-dir", str(tmp_path), "--checkpoint-url", database]) == 0
    command = seen["command"]
    assert isinstance(command, list) and command[1:4] == ["-m", "streamlit", "run"]
    assert Path(command[4]).resolve() == Path(APP).resolve()
    assert command[command.index("--server.address") + 1] == "127.0.0.1"
    assert command[command.index("--server.port") + 1] == "8611"
    assert seen["env"]["DUOLOGUE_RUNS_DIR"] == str(tmp_path.resolve())  # type: ignore[index]
    assert seen["env"]["DUOLOGUE_CHECKPOINT_URL"] == database  # type: ignore[index]


@pytest.fixture(autouse=True)
def _no_stray_threads() -> Iterator[None]:
    """Every run a test starts has ended by its end (the test server is gone by then)."""
    before = {t.name for t in threading.enumerate()}
    yield
    stray = [t for t in threading.enumerate() if t.name.startswith("duologue-run-") and t.name not in before]
    for thread in stray:
        thread.join(10)
    assert not [t for t in stray if t.is_alive()]
