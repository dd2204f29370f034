"""Run records on disk: atomic files, torn lines, ids that cannot leave the runs folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.records import run_meta, trace_record

from graphs.errors import RunNotFound
from graphs.records.store import RunStore, write_atomic


def test_a_torn_last_line_is_skipped_and_earlier_turns_survive(runs_dir: Path):
    writer = RunStore(runs_dir).create(run_meta("r1"))
    writer.append_trace(trace_record("r1", 1, 1))
    writer.append_trace(trace_record("r1", 2, 2))
    with open(writer.folder / "trace.jsonl", "a") as handle:
        handle.write('{"run_id": "r1", "seq": 3, "no')  # a crash in the middle of an append
    run = RunStore(runs_dir).load("r1")
    assert [(r.seq, r.turn) for r in run.trace] == [(1, 1), (2, 2)]


def test_whole_files_are_replaced_without_leftovers(tmp_path: Path):
    target = tmp_path / "run.json"
    write_atomic(target, "first")
    write_atomic(target, "second")
    assert target.read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_status_changes_rewrite_run_json(runs_dir: Path):
    writer = RunStore(runs_dir).create(run_meta("r1"))
    writer.save_meta(status="failed", error="boom")
    loaded = RunStore(runs_dir).load("r1").meta
    assert (loaded.status, loaded.error) == ("failed", "boom")


def test_list_is_newest_first_and_skips_unreadable_folders(runs_dir: Path):
    store = RunStore(runs_dir)
    store.create(run_meta("old", "2026-11-25T10:00:00.000Z"))
    store.create(run_meta("new", "2026-11-25T11:00:00.000Z"))
    (runs_dir / "broken").mkdir()
    (runs_dir / "broken" / "run.json").write_text("{not json")
    (runs_dir / "README.md").write_text("runs live here")
    assert [r.meta.run_id for r in store.list()] == ["new", "old"]


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
