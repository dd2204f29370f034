"""The Streamlit page through AppTest, against the Ollama-protocol test server.

Each test drives the real app (ui/app.py and its pages) with a temporary runs folder
($DUOLOGUE_RUNS_DIR); runs go through the page's background worker to the test server.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from support import ROOT
from support.duet import A_REPLIES, B_REPLIES, duet_models, turn_sections
from support.fakeollama import FakeModel, fake_ollama
from support.hostile import FIELDS, hostile_models, hostile_run, planted
from support.markup import armed, page_markdown, visible
from support.net import free_port
from support.pageserver import duologue_ui, serving

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
from graphs.embedded.backend import BackendFailure
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
    """Everything the page says, as a reader sees it, for assertions that don't care which element says it."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info]
    return "\n".join(visible(part) for part in parts)


def assert_page_ok(at: AppTest) -> None:
    """No exception, and no fault the page caught and reported in its one line."""
    assert not at.exception, at.exception
    failed = [visible(e.value) for e in at.error if visible(e.value).startswith("The page failed")]
    assert not failed, failed


def launch_page(url: str, monkeypatch) -> AppTest:
    monkeypatch.setenv("OLLAMA_HOST", url)
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert_page_ok(at)
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
            assert_page_ok(at)

            # The page now names the run in its URL and shows it live, with a Stop button (the run
            # cannot have ended: its first token is held back).
            run_id = at.query_params["run"]
            run_id = run_id[0] if isinstance(run_id, list) else run_id
            assert _has_stop(at, run_id)
        finally:
            first_token.set()
        at = finish(at, page_env, run_id)

    assert_page_ok(at)
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
    # tok/s, latency, tokens, time split, timeline; then the Analysis tab's agreements/challenges and similarity
    assert len(at.get("vega_lite_chart")) == 7
    sent = [visible(e.label) for e in at.expander]
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
    assert any("interrupted" in visible(w.value) for w in at.warning)
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
    code = "```python\nprint('![c](http://x.invalid/c.png)')\n```"
    models = [FakeModel("glm-4.7-flash", replies=[f"{HOSTILE} **Bold** and `$HOME`.\n\n{code}"]), "qwen3:32b"]
    with fake_ollama(models) as (server, _backend):
        shape = with_overrides(load_shape("duet"), {"a": "glm-4.7-flash", "b": "qwen3:32b"}, [])
        outcome = run_dialogue(
            RunRequest(shape, "t", 2, {"a": server.url, "b": server.url}, runs_dir=page_env)
        )
    at = open_run(outcome.run_id)
    [shown] = [m for m in at.markdown if "onerror" in m.value]
    assert not shown.proto.allow_html
    # The reader sees the text as written; no image, link, tag or LaTeX in it works.
    assert f"{HOSTILE} **Bold** and $HOME." in visible(shown.value)
    assert "\\$5" in shown.value and armed(shown.value) == []
    assert "**Bold** and `$HOME`." in shown.value  # emphasis and code spans keep their meaning
    # Fenced code is shown as code, which reads no Markdown at all.
    assert "print('![c](http://x.invalid/c.png)')" in [c.value for c in at.code]
    assert_nothing_armed(at)


SINK = "http://127.0.0.1:9"
"""Where planted text points; AppTest fetches nothing, so it only has to be recognisable."""


def assert_nothing_armed(at: AppTest) -> None:
    """No Markdown string on the page holds a link, image, HTML or URL the browser would act on."""
    found = {markdown: armed(markdown) for markdown in page_markdown(at) if armed(markdown)}
    assert not found, found


def shown_text(at: AppTest) -> str:
    return "\n".join(visible(markdown) for markdown in page_markdown(at))


def test_text_from_servers_and_files_is_shown_as_text(tmp_path: Path, monkeypatch):
    # The runs folder's own path is shown too, and a folder may be called anything.
    runs = tmp_path / "www.runs_[x]*y*.example"
    monkeypatch.setenv("DUOLOGUE_RUNS_DIR", str(runs))
    for page in ("views/run.py", "views/runs.py"):
        at = AppTest.from_file(APP, default_timeout=60).run()
        at.switch_page(page).run()
        assert_page_ok(at)
        assert_nothing_armed(at)
        assert f"No runs in {runs} yet." in shown_text(at)

    gate = threading.Event()
    with fake_ollama(hostile_models(SINK), hold_first_token=(2, gate)) as (server, _backend):
        # Live: turn 1 finished and turn 2 on its way, as the page shows a run it launched.
        shape = with_overrides(
            load_shape("duet"),
            {"a": "glm-4.7-flash", "b": "qwen3:32b"},
            [("a", "label", planted("label", SINK))],
        )
        live = common.registry().launch(
            RunRequest(shape, planted("topic", SINK), 4, {"a": server.url, "b": server.url}, runs_dir=runs)
        )
        try:
            wait_until(lambda: live.snapshot().current is not None and live.snapshot().turns, what="turn 2")
            at = open_run(live.run_id)
            assert _has_stop(at, live.run_id)
            assert_nothing_armed(at)
            assert f"Turn 1: {planted('label', SINK)} — Opening" in shown_text(at)
            assert planted("reply", SINK) in shown_text(at)
        finally:
            gate.set()
        wait_until(lambda: live.done, what="the live run to fail")
    with fake_ollama(hostile_models(SINK)) as (server, _backend):
        run = hostile_run(server.url, runs / "record", SINK)

    # The record: its header, error, totals, transcript, trace, inputs and graph.
    monkeypatch.setenv("DUOLOGUE_RUNS_DIR", str(runs / "record"))
    at = open_run(run.meta.run_id)
    assert_nothing_armed(at)
    seen = shown_text(at)
    for field in FIELDS:  # the transcript's header cuts the topic short
        assert (planted(field, SINK) if field != "topic" else f"Topic: {planted(field, SINK)[:60]}") in seen
    [error] = at.error
    assert visible(error.value).startswith("The run failed: turn 3 ") and planted("error", SINK) in visible(
        error.value
    )
    # The run picker, the Runs page, and a run id in the URL that is planted too.
    for page, query in (
        ("views/run.py", None),
        ("views/runs.py", None),
        ("views/run.py", planted("id", SINK)),
    ):
        at = AppTest.from_file(APP, default_timeout=60).run()
        at.switch_page(page)
        if query:
            at.query_params["run"] = query
        at.run()
        assert_page_ok(at)
        assert_nothing_armed(at)
    assert "No such run: " in visible(at.error[0].value) and planted("id", SINK) in visible(at.error[0].value)
    # The Compare page, named runs in its URL: the run and a planted id.
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/compare.py")
    at.query_params["runs"] = f"{run.meta.run_id},{planted('id', SINK)}"
    at.run()
    assert_page_ok(at)
    assert_nothing_armed(at)
    assert planted("id", SINK) in visible(at.error[0].value)


def test_a_hosts_error_and_uploaded_files_are_shown_as_text(page_env: Path, monkeypatch):
    with fake_ollama([]) as (server, backend):

        def refusing() -> list:
            raise BackendFailure(planted("host", SINK))

        monkeypatch.setattr(backend, "models", refusing)
        at = launch_page(server.url, monkeypatch)
        assert_nothing_armed(at)
        assert any(planted("host", SINK) in visible(e.value) for e in at.error)

        # A shape file: its name, description and labels, then a topic file's name.
        name = planted("file", SINK).replace("/", "_") + ".yaml"
        own = (
            f"name: mine\ndescription: {json.dumps(planted('description', SINK))}\nparticipants:\n"
            f"  - {{name: a, model: m, label: {json.dumps(planted('label', SINK))}}}\n  - {{name: b, model: n}}\n"
            "order: [a, b]\nturns: 4\nclosing: {speaker: next}\n"
        )
        at.radio(key="shape-source").set_value("Shape file").run()
        at.file_uploader(key="shape-file").set_value((name, own.encode(), "text/yaml")).run()
        assert_page_ok(at)
        assert_nothing_armed(at)
        seen = shown_text(at)
        assert planted("description", SINK) in seen and planted("label", SINK) in seen
        at.radio(key="topic-source").set_value("From a file").run()
        topic = name.removesuffix(".yaml") + ".md"
        at.file_uploader(key="topic-file").set_value((topic, b"A topic.", "text/markdown")).run()
        assert_nothing_armed(at)
        assert f"{topic}: 2 words" in shown_text(at)
        at.file_uploader(key="topic-file").set_value((topic, b"\xff", "text/markdown")).run()
        assert_nothing_armed(at)
        assert f"{topic} is not UTF-8 text" in shown_text(at)

    # The Shapes page's check: a valid shape, then one whose error quotes the file.
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/shapes.py").run()
    at.file_uploader(key="own-shape").set_value((name, own.encode(), "text/yaml")).run()
    assert_page_ok(at)
    assert_nothing_armed(at)
    assert f"{name} is a valid shape: mine, 2 participants." in shown_text(at)
    bad = f"name: mine\nparticipants: {json.dumps(planted('shape', SINK))}\n"
    at.file_uploader(key="own-shape").set_value((name, bad.encode(), "text/yaml")).run()
    assert_nothing_armed(at)
    assert at.error and name in visible(at.error[0].value)


def test_an_unreadable_run_is_listed_with_why_and_hides_no_other(page_env: Path):
    with fake_ollama(duet_models()) as (server, _backend):
        readable = run_dialogue(
            RunRequest(duet_shape(), "t", 2, {"a": server.url, "b": server.url}, runs_dir=page_env)
        )
    broken = page_env / "www.broken.example"  # a folder's name is the run id the page shows
    broken.mkdir()
    (broken / "run.json").write_bytes(b"\xff")
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/runs.py").run()
    assert_page_ok(at)
    assert_nothing_armed(at)
    rows = at.dataframe[0].value.to_dict("records")
    assert {row["run"]: row["status"] for row in rows} == {
        readable.run_id: "completed",
        "www.broken.example": "unreadable",
    }
    [why] = [row["flags"] for row in rows if row["status"] == "unreadable"]
    assert "run.json is not UTF-8 text" in why
    at.switch_page("views/run.py").run()  # the run picker
    assert_page_ok(at)
    assert_nothing_armed(at)
    broken_at = datetime.fromtimestamp(broken.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M")
    started = RunStore(page_env).load(readable.run_id).meta.started_at[:16].replace("T", " ")
    assert [visible(link.value) for link in at.page_link] == [
        f"www.broken.example · :red[:material/broken_image:] unreadable · {broken_at} UTC",
        f"{readable.run_id} · :green[:material/check_circle:] completed · glm-4.7-flash, qwen3:32b · t · "
        f"{started} UTC",
    ]


def test_a_fault_the_page_did_not_foresee_is_one_line_not_a_traceback(page_env: Path, monkeypatch):
    def broken() -> None:
        raise RuntimeError("the store broke at /srv/secret/path")

    monkeypatch.setattr(common, "store", broken)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/runs.py").run()
    assert not at.exception
    assert [visible(e.value) for e in at.error] == [
        "The page failed: RuntimeError: the store broke at /srv/secret/path. The details are in the "
        "terminal that runs duologue ui; reload the page to try again."
    ]


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
    assert_page_ok(at)
    [error] = at.error
    assert "not a run id" in visible(error.value) or "no run" in visible(error.value)
    assert "secret" not in texts(at)


def test_unreachable_host_says_so_and_offers_the_embedded_model(page_env: Path, monkeypatch):
    with fake_ollama([]) as (server, _backend):
        closed = server.url  # nothing listens here once the server has stopped
    at = launch_page(closed, monkeypatch)
    assert any("cannot reach Ollama" in visible(e.value) for e in at.error)
    assert any("embedded model" in visible(i.value) for i in at.info)
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
    assert "The run failed" in visible(error.value) and "turn 3" in visible(error.value)
    trace = at.dataframe[0].value  # the two finished turns, and the failed one flagged
    assert list(trace["turn"]) == [1, 2, 3] and list(trace["flags"]) == ["", "", "error"]
    assert B_REPLIES[0] in texts(at)

    # A run that failed before its first turn has no folder: the page shows the worker's error.
    assert early.snapshot().status == "failed" and early.snapshot().folder is None
    assert "not-pulled:7b" in (early.error or "")
    at.query_params["run"] = early.run_id
    at.run()
    [error] = at.error
    assert "failed before its first turn" in visible(error.value) and "not-pulled:7b" in visible(error.value)


def test_topic_upload_has_a_limit_and_must_be_text(page_env: Path, monkeypatch):
    with fake_ollama(duet_models()) as (server, _backend):
        at = launch_page(server.url, monkeypatch)
        at.radio(key="topic-source").set_value("From a file").run()
        uploader = at.file_uploader(key="topic-file")
        uploader.set_value(("big.md", b"word " * 250_000, "text/markdown")).run()
        assert any("the limit is 1,000 kB" in visible(e.value) for e in at.error)
        at.file_uploader(key="topic-file").set_value(
            ("latin.txt", "caf\xe9".encode("latin-1"), "text/plain")
        ).run()
        assert any("not UTF-8" in visible(e.value) for e in at.error)
        at.file_uploader(key="topic-file").set_value(
            ("essay.md", b"An essay in five words.", "text/markdown")
        )
        at.run()
        assert not at.error
        assert any("essay.md: 5 words" in visible(c.value) for c in at.caption)


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
    assert_page_ok(at)
    return at


def finish_resume(at: AppTest, run_id: str) -> tuple[AppTest, LiveRun]:
    """Wait for the resume the page launched to end, then for the page to show the whole run."""
    live = common.registry().get(run_id)
    assert live is not None and live.resumed_after is not None, "the page launched no resume"
    wait_until(lambda: live.done, what=f"the resume of {run_id}")
    wait_until(lambda: not _has_stop(at.run(), run_id), what="the page to show the finished run")
    assert_page_ok(at)
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
        assert any(f"duologue resume {run_id} --say TEXT" in visible(c.value) for c in at.caption)
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
        assert_page_ok(at)
        [error] = at.error
        assert visible(error.value) == "Write the facilitator's words first, or continue without a word."
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
        assert "The run failed" in visible(error.value) and "turn 3" in visible(error.value)
        at.button(key=f"resume:{run_id}").click().run()
        assert_page_ok(at)
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
        assert visible(warning.value) == (
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
        assert "Resumed: continuing from turn 2; turn 1 is kept as it was." in texts(tab)
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
    assert any("interrupted" in visible(w.value) for w in tab.warning)
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
        assert_page_ok(at)
        [error] = at.error
        assert visible(error.value) == (
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
    assert_page_ok(at)
    table = at.dataframe[0].value
    assert list(table.columns) == [
        "run", "started", "shape", "models", "status", "flags", "topic", "turns", "tokens", "generation s",
    ]  # fmt: skip
    [row] = table.to_dict("records")
    assert row["shape"] == "duet" and row["turns"] == "4/4" and row["status"] == "completed"
    assert row["models"] == "glm-4.7-flash, qwen3:32b" and "CPU" in row["flags"]


def test_shapes_page_draws_each_shape_and_shows_its_file():
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/shapes.py").run()
    assert_page_ok(at)
    assert [h.value for h in at.header][:4] == ["debate", "duet", "interview", "panel"]
    assert len(at.get("graphviz_chart")) == 4
    assert any("name: duet" in visible(c.value) for c in at.code)
    at.file_uploader(key="own-shape").set_value(
        ("mine.yaml", b"name: mine\nparticipants: []\n", "text/yaml")
    ).run()
    assert any("mine.yaml" in visible(e.value) for e in at.error)


def test_duologue_ui_serves_the_page_on_localhost(monkeypatch, tmp_path: Path):
    from streamlit.web import cli as streamlit_cli

    from graphs.commands.cli import main

    seen: dict[str, object] = {}

    def serve(args: list[str], prog_name: str, standalone_mode: bool) -> None:
        seen.update(args=args, env=dict(os.environ))

    monkeypatch.setattr(streamlit_cli, "main", serve)
    for variable in ("DUOLOGUE_RUNS_DIR", "DUOLOGUE_CHECKPOINT_URL"):
        monkeypatch.setenv(variable, "")  # set by the command; put back after the test
    database = "postgresql://duologue:pw@127.0.0.1:5432/runs"
    port = free_port()
    assert main(["ui", "--port", str(port), "--runs-dir", str(tmp_path), "--checkpoint-url", database]) == 0
    args = seen["args"]
    assert isinstance(args, list) and args[0] == "run"
    assert Path(args[1]).resolve() == Path(APP).resolve()
    assert args[args.index("--server.address") + 1] == "127.0.0.1"
    assert args[args.index("--server.port") + 1] == str(port)
    assert args[args.index("--client.showErrorDetails") + 1] == "type"  # no traceback in the browser
    assert seen["env"]["DUOLOGUE_RUNS_DIR"] == str(tmp_path.resolve())  # type: ignore[index]
    assert seen["env"]["DUOLOGUE_CHECKPOINT_URL"] == database  # type: ignore[index]


def test_duologue_ui_on_a_port_in_use_is_one_line(capsys, tmp_path: Path):
    from graphs.commands.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["ui", "--port", str(port), "--runs-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"duologue: error: cannot serve the page on 127.0.0.1:{port} (Address already in use): another "
        "program (another duologue ui?) has the port; stop it, or pick another with --port\n"
    )


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_any_signal_that_stops_duologue_ui_stops_its_page(stop: signal.Signals, tmp_path: Path):
    """As a supervisor, `kill` or a closed terminal stops it: the signal goes to duologue alone."""
    with duologue_ui(tmp_path / "runs", tmp_path / "ui.log") as page:
        assert serving(page.port)
        assert page.stop(stop) == 0
        assert not serving(page.port), "the page's server outlived duologue ui"
    assert page.output().endswith("Stopping...\n")


def test_the_runs_the_page_holds_are_recorded_interrupted_when_it_stops(runs_dir: Path, monkeypatch, capsys):
    """Whatever stopped the page's server, duologue ui then stops its runs as the Stop button does."""
    from streamlit.web import cli as streamlit_cli

    from graphs.commands.cli import main

    held: list[LiveRun] = []
    with fake_ollama(duet_models(), token_delay_s=0.05) as (server, _backend):

        def serve(args: list[str], prog_name: str, standalone_mode: bool) -> None:
            """The page launches a run, then its server stops (on a signal) with the run going."""
            shape = with_overrides(load_shape("duet"), {"a": "glm-4.7-flash", "b": "qwen3:32b"}, [])
            live = Registry().launch(
                RunRequest(shape, "t", 8, {"a": server.url, "b": server.url}, runs_dir=runs_dir)
            )
            wait_until(lambda: live.snapshot().turns, what="a finished turn")
            held.append(live)

        monkeypatch.setattr(streamlit_cli, "main", serve)
        monkeypatch.setenv("DUOLOGUE_RUNS_DIR", "")
        assert main(["ui", "--port", str(free_port()), "--runs-dir", str(runs_dir)]) == 0
    [live] = held
    run = RunStore(runs_dir).load(live.run_id)
    kept = live.snapshot().turns  # every turn the page showed finished is in the record, as shown
    assert run.meta.status == "interrupted" and 1 <= len(kept) < 8
    assert run.finished_turns == set(range(1, len(kept) + 1))
    assert [section.split("\n\n", 1)[1] for section in turn_sections(run.transcript())] == [
        t.text for t in kept
    ]
    assert not list(run.folder.glob("*.tmp")) and not list(run.folder.glob(".*.tmp"))
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"duologue: the page stopped; runs it held are recorded interrupted: {live.run_id}"
    )


@pytest.fixture(autouse=True)
def _no_stray_threads() -> Iterator[None]:
    """Every run a test starts has ended by its end (the test server is gone by then)."""
    before = {t.name for t in threading.enumerate()}
    yield
    stray = [t for t in threading.enumerate() if t.name.startswith("duologue-run-") and t.name not in before]
    for thread in stray:
        thread.join(10)
    assert not [t for t in stray if t.is_alive()]
