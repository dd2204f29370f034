"""A person's turns through the page (AppTest): launch `interview`, the run waits with a text box and
Send, the words sent are relayed to the model as typed, and the run goes on; against the
Ollama-protocol test server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from support import ROOT
from support.duet import turn_sections, user
from support.fakeollama import FakeModel, fake_ollama
from support.markup import visible

from graphs import RunStore
from graphs.ui import common

APP = str(ROOT / "ui" / "app.py")
REPLIES = ["Memory is inheritance, not storage.", "We agree on inheritance and part on storage."]
FIRST = "Is memory something a model has, or something it does?"
SECOND = "Then what does it inherit?"


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


def launched_interview(url: str, monkeypatch) -> tuple[AppTest, str]:
    """The Launch page with `interview` picked and launched, then the run's page."""
    monkeypatch.setenv("OLLAMA_HOST", url)
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.selectbox(key="shape-name").set_value("interview").run()
    assert not at.exception, at.exception
    captions = [visible(c.value) for c in at.caption]
    assert "A person: you write their turns in the run's box, each one sent with Send." in captions
    assert at.selectbox(key="Built-in:interview:guest:model").value == "qwen3:32b"
    assert [s.key for s in at.selectbox if s.key.endswith(":model")] == ["Built-in:interview:guest:model"]
    at.button(key="launch").click().run()
    assert not at.exception, at.exception
    assert not at.error, [visible(e.value) for e in at.error]
    run_id = at.query_params["run"]
    return at, run_id[0] if isinstance(run_id, list) else run_id


def box_shown(at: AppTest, run_id: str, number: int) -> bool:
    at.run()
    return any(t.key == f"person-text:{run_id}:{number}" for t in at.text_area)


def send(at: AppTest, run_id: str, number: int, text: str) -> None:
    at.text_area(key=f"person-text:{run_id}:{number}").input(text)
    [button] = [b for b in at.button if b.label == "Send"]
    button.click().run()
    assert not at.exception, at.exception


def test_launch_interview_the_send_box_appears_and_the_run_goes_on(page_env: Path, monkeypatch):
    with fake_ollama([FakeModel("qwen3:32b", replies=REPLIES)]) as (server, backend):
        at, run_id = launched_interview(server.url, monkeypatch)
        wait_until(lambda: box_shown(at, run_id, 1), "the box for turn 1")
        assert (
            visible(at.text_area(key=f"person-text:{run_id}:1").label) == "Interviewer, your turn 1 (opening)"
        )
        assert "Waiting for your words: write the turn below and press Send." in [
            visible(c.value) for c in at.caption
        ]
        # An empty turn is not sent: the box stays, with a line saying why.
        [button] = [b for b in at.button if b.label == "Send"]
        button.click().run()
        assert [visible(w.value) for w in at.warning] == [
            "An empty turn is not sent: write your words, then Send."
        ]
        assert common.registry().get(run_id).snapshot().person_due is not None
        send(at, run_id, 1, FIRST)
        wait_until(lambda: box_shown(at, run_id, 3), "the box for turn 3, after the model's turn 2")
        send(at, run_id, 3, SECOND)
        live = common.registry().get(run_id)
        assert live is not None
        assert live.wait_ended(60), "the run did not end"
        at.run()  # the run's page, its record whole: the person's turns among the others
        assert not at.exception, at.exception
        assert "### Turn 3: Interviewer — Reply" in [visible(m.value) for m in at.markdown]
    run = RunStore(page_env).load(run_id)
    assert run.meta.status == "completed"
    sections = turn_sections(run.transcript())
    assert [s.split("\n")[0] for s in sections] == [
        "### Turn 1: Interviewer — Opening",
        "### Turn 2: qwen3:32b — Response",
        "### Turn 3: Interviewer — Reply",
        "### Turn 4: qwen3:32b — Closing",
    ]
    person = {r.turn: r for r in run.turn_records if r.speaker_kind == "person"}
    assert [(n, r.words) for n, r in person.items()] == [(1, 10), (3, 5)]
    assert sections[0].split("\n")[1] == f"*(person, 10 words, {person[1].latency_s:.0f}s)*"
    assert [s.split("\n\n", 1)[1] for s in sections] == [FIRST, REPLIES[0], SECOND, REPLIES[1]]
    # The model was sent the words as typed, as any participant's turn.
    assert [m for m in backend.chat_requests[-1].messages if m["role"] == "user"][::2] == [
        user(FIRST),
        user(SECOND),
    ]
    assert json.loads((page_env / run_id / "run.json").read_text())["participants"][0]["model"] == "person"


def test_stop_while_the_page_waits_for_the_person_then_resume_asks_again(page_env: Path, monkeypatch):
    with fake_ollama([FakeModel("qwen3:32b", replies=REPLIES)]) as (server, _backend):
        at, run_id = launched_interview(server.url, monkeypatch)
        wait_until(lambda: box_shown(at, run_id, 1), "the box for turn 1")
        at.button(key=f"stop:{run_id}").click().run()
        stopped = common.registry().get(run_id)
        assert stopped is not None and stopped.wait_ended(60)
        run = RunStore(page_env).load(run_id)
        assert (run.meta.status, run.meta.error) == ("interrupted", "interrupted by the user")
        assert run.finished_turns == set()
        # Resume asks again: the box for turn 1, then the dialogue goes on to its end.
        at.run()
        assert "Turn 1 is Interviewer's: Resume asks for their words here." in [
            visible(i.value) for i in at.info
        ]
        at.button(key=f"resume:{run_id}").click().run()
        assert not at.exception, at.exception
        wait_until(lambda: box_shown(at, run_id, 1), "the box for turn 1, asked again")
        send(at, run_id, 1, FIRST)
        wait_until(lambda: box_shown(at, run_id, 3), "the box for turn 3")
        send(at, run_id, 3, SECOND)
        resumed = common.registry().get(run_id)
        assert resumed is not None and resumed is not stopped and resumed.wait_ended(60)
    run = RunStore(page_env).load(run_id)
    assert run.meta.status == "completed"
    assert [s.split("\n\n", 1)[1] for s in turn_sections(run.transcript())] == [
        FIRST,
        REPLIES[0],
        SECOND,
        REPLIES[1],
    ]
