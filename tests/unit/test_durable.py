"""Durable runs on scripted models: a turn is shown finished only once it is saved."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

from support.duet import A_REPLIES, B_REPLIES, only_run
from support.fakes import ScriptedChatModel, ScriptedSource

from graphs.engine.spec import load_shape, with_overrides
from graphs.records.store import RunWriter
from graphs.run.observe import SilentObserver
from graphs.run.runner import RunRequest, run_dialogue


def test_a_turn_is_shown_finished_only_once_its_checkpoint_is_saved(runs_dir: Path, monkeypatch):
    """A kill between the two would leave a turn in the transcript that a resume generates again."""
    saving_turn_2, release = threading.Event(), threading.Event()
    open_checkpointer = RunWriter.checkpointer

    @contextmanager
    def slow_to_save_turn_2(self):
        with open_checkpointer(self) as saver:
            inner = saver.put_writes

            def put_writes(config, writes, task_id, task_path=""):
                if any(channel == "turns" and 2 in [t["number"] for t in value] for channel, value in writes):
                    saving_turn_2.set()
                    release.wait(30)
                inner(config, writes, task_id, task_path)

            saver.put_writes = put_writes
            yield saver

    monkeypatch.setattr(RunWriter, "checkpointer", slow_to_save_turn_2)
    shown: list[int] = []

    class Watching(SilentObserver):
        def turn_finished(self, turn, record):
            shown.append(turn["number"])

    request = RunRequest(
        shape=with_overrides(load_shape("duet"), {"a": "glm-4.7-flash", "b": "qwen3:32b"}, []),
        topic="An essay.",
        turns=4,
        hosts={"a": "http://127.0.0.1:9", "b": "http://127.0.0.1:9"},
        runs_dir=runs_dir,
    )
    scripted = {
        "a": ScriptedChatModel(model="glm-4.7-flash", replies=A_REPLIES, calls=[]),
        "b": ScriptedChatModel(model="qwen3:32b", replies=B_REPLIES, calls=[]),
    }
    request.source = ScriptedSource(scripted)
    worker = threading.Thread(target=run_dialogue, args=(request, Watching()))
    worker.start()
    try:
        assert saving_turn_2.wait(30), "turn 2 was never saved"
        time.sleep(0.3)  # room for turn 2 to be shown early, as it was before the engine waited
        [transcript] = runs_dir.glob("*/transcript.md")
        assert shown == [1] and "### Turn 2" not in transcript.read_text()
    finally:
        release.set()
        worker.join(30)
    assert shown == [1, 2, 3, 4] and only_run(runs_dir).meta.status == "completed"
