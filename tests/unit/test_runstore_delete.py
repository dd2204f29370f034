"""RunStore.delete: the one way a run's folder goes, refused for a run being driven or an id that
is no run folder in the runs folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.records import run_meta, trace_record

from graphs.errors import RunBusy, RunNotFound
from graphs.records.store import RunStore


def finished(store: RunStore, run_id: str, status: str = "completed") -> Path:
    writer = store.create(run_meta(run_id))
    writer.append_trace(trace_record(run_id, 1, 1))
    writer.save_transcript("# A run\n")
    writer.save_meta(status=status)
    return writer.folder


@pytest.mark.parametrize("status", ["completed", "failed", "interrupted", "running"])
def test_delete_removes_the_whole_folder_and_leaves_the_others(runs_dir: Path, status: str):
    # "running" with no process holding the lock: a run that was killed, shown as stopped.
    store = RunStore(runs_dir)
    folder = finished(store, "gone", status)
    finished(store, "kept")
    store.delete("gone")
    assert not folder.exists()
    assert sorted(path.name for path in runs_dir.iterdir()) == ["kept"]  # nothing left over, hidden or not
    assert [run.meta.run_id for run in store.list()] == ["kept"]


def test_delete_removes_an_unreadable_run(runs_dir: Path):
    store = RunStore(runs_dir)
    broken = runs_dir / "broken"
    broken.mkdir(parents=True)
    (broken / "run.json").write_bytes(b"\xff")
    store.delete("broken")
    assert not broken.exists()


def test_delete_refuses_a_run_being_driven_and_keeps_it(runs_dir: Path):
    store = RunStore(runs_dir)
    folder = finished(store, "held", status="running")
    writer = store.reopen("held")
    with writer.lock(), pytest.raises(RunBusy) as refused:  # what a run's process holds while it runs
        store.delete("held")
    assert str(refused.value) == (
        f"run held is being driven by process {os.getpid()}; stop it or let it finish, then delete it"
    )
    assert sorted(path.name for path in folder.iterdir()) == [
        ".lock", "run.json", "trace.jsonl", "transcript.md",
    ]  # fmt: skip
    assert [run.meta.run_id for run in store.list()] == ["held"]
    store.delete("held")  # once it has let go
    assert not folder.exists()


@pytest.mark.parametrize("run_id", ["../outside", "..", ".", "a/b", "", "/etc"])
def test_delete_refuses_an_id_that_would_leave_the_runs_folder(tmp_path: Path, runs_dir: Path, run_id: str):
    store = RunStore(runs_dir)
    finished(store, "kept")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "run.json").write_text("{}")
    with pytest.raises(RunNotFound) as refused:
        store.delete(run_id)
    assert str(refused.value) == f"'{run_id}' is not a run id (see `duologue runs`)"
    assert (outside / "run.json").read_text() == "{}"
    assert [run.meta.run_id for run in store.list()] == ["kept"]


def test_delete_refuses_a_missing_run(runs_dir: Path):
    store = RunStore(runs_dir)
    finished(store, "kept")
    (runs_dir / "no-record").mkdir()  # a folder, but no run's
    for run_id in ("missing", "no-record"):
        with pytest.raises(RunNotFound) as refused:
            store.delete(run_id)
        assert str(refused.value) == f"no run '{run_id}' in {runs_dir} (see `duologue runs`)"
    assert sorted(path.name for path in runs_dir.iterdir()) == ["kept", "no-record"]


def test_delete_refuses_a_folder_that_links_out_of_the_runs_folder(tmp_path: Path, runs_dir: Path):
    store = RunStore(runs_dir)
    finished(store, "kept")
    elsewhere = finished(RunStore(tmp_path / "elsewhere"), "theirs")
    (runs_dir / "linked").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(RunNotFound) as refused:
        store.delete("linked")
    assert str(refused.value) == f"'linked' is not a run folder in {runs_dir}, so it is not deleted"
    assert (elsewhere / "run.json").is_file() and (runs_dir / "linked").is_symlink()
    assert sorted(path.name for path in runs_dir.iterdir()) == ["kept", "linked"]
