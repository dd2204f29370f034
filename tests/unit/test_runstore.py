"""Run records on disk: atomic files, torn lines, unreadable runs, ids that cannot leave the runs
folder or collide."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest
from support.records import run_meta, trace_record

from graphs.errors import RunNotFound
from graphs.records import store as store_module
from graphs.records.faults import RecordError
from graphs.records.store import RunStore, new_run_id, write_atomic
from graphs.records.tables import run_totals


def test_a_torn_last_line_is_skipped_and_earlier_turns_survive(runs_dir: Path):
    writer = RunStore(runs_dir).create(run_meta("r1"))
    writer.append_trace(trace_record("r1", 1, 1))
    writer.append_trace(trace_record("r1", 2, 2))
    with open(writer.folder / "trace.jsonl", "a") as handle:
        handle.write('{"run_id": "r1", "seq": 3, "no')  # a crash in the middle of an append
    run = RunStore(runs_dir).load("r1")
    assert [(r.seq, r.turn) for r in run.trace] == [(1, 1), (2, 2)]


def test_an_append_after_a_torn_line_ends_it_so_only_the_torn_record_is_lost(runs_dir: Path):
    writer = RunStore(runs_dir).create(run_meta("r1"))
    writer.append_trace(trace_record("r1", 1, 1))
    with open(writer.folder / "trace.jsonl", "a") as handle:
        handle.write('{"run_id": "r1", "seq": 2, "no')  # a crash in the middle of an append
    writer.append_trace(trace_record("r1", 3, 2))  # the resumed process appends
    run = RunStore(runs_dir).load("r1")
    assert [(r.seq, r.turn) for r in run.trace] == [(1, 1), (3, 2)]
    assert run.finished_turns == {1, 2}


def test_a_line_with_a_byte_that_is_not_utf8_costs_only_that_line(runs_dir: Path):
    writer = RunStore(runs_dir).create(run_meta("r1"))
    for seq in (1, 2, 3):
        writer.append_trace(trace_record("r1", seq, seq))
    path = writer.folder / "trace.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"seq":2', b'"seq":2,"x":"\xff"'))
    assert [r.turn for r in RunStore(runs_dir).load("r1").trace] == [1, 3]


def test_whole_files_are_replaced_without_leftovers(tmp_path: Path):
    target = tmp_path / "run.json"
    write_atomic(target, "first")
    write_atomic(target, "second")
    assert target.read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_a_text_in_pieces_is_written_whole_across_its_writes(tmp_path: Path):
    target = tmp_path / "transcript.md"
    pieces = [
        f"### Turn {n}: Ä — Reply\n\nwörds {n}\n\n" for n in range(1, 3 * store_module.PIECES_PER_WRITE + 2)
    ]
    write_atomic(target, pieces)
    assert target.read_text(encoding="utf-8") == "".join(pieces)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["transcript.md"]


def refuse_replace(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """The disk refuses the rename that would put the new file in place (emulated)."""

    def refusing(src: object, dst: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(store_module.os, "replace", refusing)


def test_a_refused_write_leaves_the_old_file_and_no_temporary_one(tmp_path: Path, monkeypatch):
    target = tmp_path / "transcript.md"
    write_atomic(target, "first")
    refuse_replace(monkeypatch, errno.EROFS)
    with pytest.raises(OSError):
        write_atomic(target, "second")
    assert target.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["transcript.md"]


def test_on_a_full_disk_run_json_is_rewritten_in_place_when_it_fits(runs_dir: Path, monkeypatch):
    writer = RunStore(runs_dir).create(run_meta("r1"))
    refuse_replace(monkeypatch, errno.ENOSPC)
    writer.save_meta(status="failed", error="the disk is full")
    assert RunStore(runs_dir).load("r1").meta.model_dump() == writer.meta.model_dump()
    assert writer.meta.status == "failed"
    assert sorted(p.name for p in writer.folder.iterdir()) == ["run.json"]
    with pytest.raises(RecordError, match=r"run\.json: the disk is full; free some space$"):
        writer.save_meta(error="x" * 10_000)  # too long for the blocks run.json holds
    assert RunStore(runs_dir).load("r1").meta.error == "the disk is full", "as it was"
    assert writer.meta.error == "the disk is full", "meta changes only once run.json says so"


def test_status_changes_rewrite_run_json(runs_dir: Path):
    writer = RunStore(runs_dir).create(run_meta("r1"))
    writer.save_meta(status="failed", error="boom")
    loaded = RunStore(runs_dir).load("r1").meta
    assert (loaded.status, loaded.error) == ("failed", "boom")


def test_list_is_newest_first_and_lists_unreadable_runs_with_the_reason(runs_dir: Path):
    store = RunStore(runs_dir)
    store.create(run_meta("old", "2026-11-25T10:00:00.000Z"))
    store.create(run_meta("new", "2026-11-25T11:00:00.000Z"))
    (runs_dir / "broken").mkdir()
    (runs_dir / "broken" / "run.json").write_text("{not json")
    os.utime(runs_dir / "broken", (0, 1_795_000_000))  # 2026-11-18: listed by its folder's time
    (runs_dir / "README.md").write_text("runs live here")
    (runs_dir / "notes").mkdir()  # no run.json: not a run
    listed = [(r.meta.run_id, r.status, r.unreadable) for r in store.list()]
    assert listed == [
        ("new", "stopped", None),
        ("old", "stopped", None),
        ("broken", "unreadable", "run.json is not valid JSON (key must be a string at line 1 column 2)"),
    ]
    with pytest.raises(RunNotFound, match=r"^run broken cannot be read: its run.json is not valid JSON"):
        store.load("broken")


@pytest.mark.parametrize("run_id", ["..", "../..", "../etc", "/etc/passwd", "a/b", "", ".hidden"])
def test_ids_that_could_leave_the_runs_folder_are_refused(runs_dir: Path, run_id: str):
    with pytest.raises(RunNotFound, match="is not a run id"):
        RunStore(runs_dir).load(run_id)


def test_a_status_probe_at_that_moment_does_not_refuse_the_run(runs_dir: Path):
    """`duologue runs` or the page probing the lock must not make a resume fail as busy."""
    import fcntl
    import threading

    writer = RunStore(runs_dir).create(run_meta("r1"))
    (writer.folder / ".lock").touch()
    with open(writer.folder / ".lock") as probe:
        fcntl.flock(probe, fcntl.LOCK_SH)  # what lock_held takes, for a moment
        threading.Timer(0.02, fcntl.flock, (probe, fcntl.LOCK_UN)).start()
        with writer.lock():
            assert RunStore(runs_dir).load("r1").status == "running"


def test_a_taken_id_is_drawn_again_or_refused_in_one_line(runs_dir: Path, monkeypatch):
    store = RunStore(runs_dir)
    store.create(run_meta("20261125-200000-duet-0000aaaa"))
    with pytest.raises(RecordError, match=r"^a run 20261125-200000-duet-0000aaaa exists already in "):
        store.create(run_meta("20261125-200000-duet-0000aaaa"))
    monkeypatch.setattr(store_module.secrets, "token_hex", lambda n: "0000bbbb")
    writer = store.create(run_meta("20261125-200000-duet-0000aaaa"), redraw=True)
    assert re.fullmatch(r"\d{8}-\d{6}-duet-0000bbbb", writer.run_id)
    assert RunStore(runs_dir).load(writer.run_id).meta.run_id == writer.run_id


def test_a_run_id_is_the_time_the_shape_and_8_hex_digits():
    assert re.fullmatch(r"\d{8}-\d{6}-panel-[0-9a-f]{8}", new_run_id("panel"))


def test_totals_count_each_finished_turn_once_whatever_the_log_holds(runs_dir: Path):
    writer = RunStore(runs_dir).create(run_meta("r1"))
    rows = [
        trace_record("r1", 1, 1).model_copy(update={"completion_tokens": 100}),
        trace_record("r1", 2, 2).model_copy(
            update={"completion_tokens": 50, "error": "its checkpoint was not saved"}
        ),
        trace_record("r1", 3, 2).model_copy(update={"completion_tokens": 60}),
        # A record from before a row waited for its checkpoint: turn 1 generated again, both ok.
        trace_record("r1", 4, 1).model_copy(update={"completion_tokens": 110}),
    ]
    for row in rows:
        writer.append_trace(row)
    run = RunStore(runs_dir).load("r1")
    assert [r.seq for r in run.turn_rows] == [4, 3], "one row per turn: its last finished attempt"
    assert {k: run_totals(run)[k] for k in ("turns_done", "tokens", "generation_minutes")} == {
        "turns_done": 2,
        "tokens": 170,
        "generation_minutes": 0.0,
    }
