"""A run's SQLite checkpoints are committed where a turn becomes durable, and no sooner.

Another connection reads what a crash would leave: only what was committed.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from graphs.records.turn_saver import makes_durable, turn_saver

CONFIG = {"configurable": {"thread_id": "run", "checkpoint_ns": "", "checkpoint_id": "c1"}}


def committed_writes(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as other:
        return other.execute("SELECT task_id, channel FROM writes ORDER BY task_id").fetchall()


def test_routing_waits_for_the_turn_that_follows_it_and_is_committed_with_it(tmp_path: Path):
    path = tmp_path / "checkpoints.sqlite"
    with turn_saver(path) as saver:
        saver.put_writes(CONFIG, [("branch:to:a", None)], "facilitator")
        assert committed_writes(path) == [], "a crash here costs only the routing, which a resume redoes"
        saver.put_writes(CONFIG, [("turns", [{"number": 1}])], "speaker")
        assert committed_writes(path) == [("facilitator", "branch:to:a"), ("speaker", "turns")]
        saver.put_writes(CONFIG, [("branch:to:b", None)], "facilitator-2")
        assert ("facilitator-2", "branch:to:b") not in committed_writes(path)
    assert ("facilitator-2", "branch:to:b") in committed_writes(path), "closing commits what waits"


def test_what_a_resume_cannot_recompute_is_committed_at_once():
    assert makes_durable([("turns", [])])
    assert makes_durable([("interjections", [])])
    assert makes_durable([("observation", {})])
    assert makes_durable([("__interrupt__", None)]), "a pause, and LangGraph's own channels"
    assert not makes_durable([("branch:to:a", None)])
    assert not makes_durable([])
