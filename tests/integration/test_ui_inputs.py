"""The run page's inputs: each turn's prompt rebuilt from inputs.jsonl, and what could not be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from support import ROOT
from support.duet import duet_models
from support.fakeollama import fake_ollama
from support.markup import visible

from graphs import RunRequest, RunStore, load_shape, run_dialogue, with_overrides

APP = str(ROOT / "ui" / "app.py")


@pytest.fixture
def held_run(runs_dir: Path, monkeypatch) -> str:
    monkeypatch.setenv("DUOLOGUE_RUNS_DIR", str(runs_dir))
    shape = with_overrides(load_shape("duet"), {"a": "glm-4.7-flash", "b": "qwen3:32b"}, [])
    with fake_ollama(duet_models()) as (server, _backend):
        request = RunRequest(shape, "What a record owes its reader.", 4, {"a": server.url, "b": server.url})
        request.runs_dir = runs_dir
        return run_dialogue(request).run_id


def inputs_tab(run_id: str) -> tuple[list[str], list[str]]:
    """The inputs tab's expander labels and warnings, as a reader sees them."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/run.py")
    at.query_params["run"] = run_id
    at.run()
    assert not at.exception, at.exception
    sent = [visible(e.label) for e in at.expander if " was sent " in visible(e.label)]
    return sent, [visible(w.value) for w in at.warning]


def test_every_turns_prompt_is_shown_rebuilt(held_run: str):
    sent, warnings = inputs_tab(held_run)
    assert sent == [
        "Turn 1: glm-4.7-flash was sent 2 messages",
        "Turn 2: qwen3:32b was sent 3 messages",
        "Turn 3: glm-4.7-flash was sent 5 messages",
        "Turn 4: qwen3:32b was sent 6 messages",
    ]
    assert warnings == []


def test_an_edited_row_is_said_and_not_shown_with_the_rows_built_on_it(held_run: str, runs_dir: Path):
    path = runs_dir / held_run / "inputs.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["added"][0]["content"] = "You are someone else."  # turn 1's system prompt, edited
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    sent, warnings = inputs_tab(held_run)
    # Turn 3 starts from turn 1's prompt, so it cannot be rebuilt either; b's turns are whole.
    assert sent == ["Turn 2: qwen3:32b was sent 3 messages", "Turn 4: qwen3:32b was sent 6 messages"]
    assert warnings == [
        "inputs.jsonl lines 1, 3: the prompt could not be rebuilt to match its recorded digest "
        "(the file was edited or damaged), so those turns are not shown."
    ]
    assert [(i.turn, i.speaker) for i in RunStore(runs_dir).load(held_run).inputs()] == [(2, "b"), (4, "b")]
