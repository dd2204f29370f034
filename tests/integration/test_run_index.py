"""The runs folder's index across processes and on a folder that refuses writes: runs written by
two processes while a third lists them, and a read-only runs folder listed whole, with or without
an index, without a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from support import ROOT
from support.mounts import read_only, tmpfs
from support.records import run_meta, trace_record, written_run

from graphs.commands.cli import main
from graphs.records.index import INDEX
from graphs.records.store import RunStore
from graphs.records.tables import RUNS_HEADERS, runs_rows, table

WRITER = textwrap.dedent(
    """
    import sys
    from support.records import run_meta, trace_record
    from graphs.records.store import RunStore

    store, prefix, count = RunStore(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    for n in range(count):
        writer = store.create(run_meta(f"{prefix}-{n:03d}", f"2026-12-01T10:{n // 60:02d}:{n % 60:02d}.000Z"))
        for turn in (1, 2):
            writer.append_trace(trace_record(writer.run_id, turn, turn).model_copy(update={"completion_tokens": n}))
        writer.save_meta(status="completed")
    """
)
LISTER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from graphs.records.store import RunStore

    store, stop = RunStore(sys.argv[1]), Path(sys.argv[2])
    listings = 0
    while not stop.exists() or listings == 0:
        store.summaries()
        listings += 1
    print(listings)
    """
)


def from_folders(runs_dir: Path):
    return [run.summary() for run in RunStore(runs_dir).list()]


def child(script: str, *args: str) -> subprocess.Popen[str]:
    env = {"PYTHONPATH": f"{ROOT / 'tests'}:{ROOT}", "PATH": "/usr/bin:/bin"}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_runs_written_by_two_processes_while_a_third_lists_are_all_listed_whole(runs_dir: Path, tmp_path):
    runs_dir.mkdir(parents=True, exist_ok=True)
    RunStore(runs_dir).summaries()  # the index exists, so every write below updates it
    stop = tmp_path / "stop"
    lister = child(LISTER, str(runs_dir), str(stop))
    writers = [child(WRITER, str(runs_dir), prefix, "40") for prefix in ("a", "b")]
    for _ in range(20):  # and this process lists as they write
        assert len(RunStore(runs_dir).summaries()) <= 80
    results = [writer.communicate(timeout=300) for writer in writers]
    stop.touch()
    listed_out, listed_err = lister.communicate(timeout=300)
    assert [writer.returncode for writer in writers] == [0, 0], results
    assert (lister.returncode, listed_err) == (0, ""), "no listing failed while runs were written"
    assert int(listed_out) >= 1

    listed = RunStore(runs_dir).summaries()
    assert listed == from_folders(runs_dir)
    assert len(listed) == 80 and {run.status for run in listed} == {"completed"}
    assert sorted((run.run_id, run.turns_done, run.tokens) for run in listed) == sorted(
        (f"{prefix}-{n:03d}", 2, 2 * n) for prefix in ("a", "b") for n in range(40)
    )


def test_a_read_only_runs_folder_is_listed_whole_with_or_without_its_index(tmp_path: Path, capsys):
    with tmpfs(tmp_path / "runs") as runs_dir:
        for n in range(3):
            written_run(
                runs_dir, f"20261201-10000{n}-duet-0000000{n}", "duet", ["qwen3:32b"], "completed",
                f"2026-12-01T10:00:0{n}.000Z", f"topic {n}", "# duet\n", completion_tokens=n,
            )  # fmt: skip
        truth = from_folders(runs_dir)
        with read_only(runs_dir):  # no index yet, and none can be made
            assert RunStore(runs_dir).summaries() == truth
            assert not (runs_dir / INDEX).exists()
        assert RunStore(runs_dir).summaries() == truth  # the index, made
        meta = runs_dir / truth[0].run_id / "run.json"
        meta.write_text(json.dumps(json.loads(meta.read_text()) | {"status": "failed"}))
        edited = from_folders(runs_dir)
        with read_only(runs_dir):  # an index that is stale, and can't be brought up to date
            assert RunStore(runs_dir).summaries() == edited
            assert main(["runs", "--runs-dir", str(runs_dir)]) == 0
            out, err = capsys.readouterr()
            assert (out, err) == (table(RUNS_HEADERS, runs_rows(edited)) + "\n", "")
            assert edited[0].status == "failed"


def test_a_run_writing_into_a_read_only_index_still_records_its_turns(tmp_path: Path):
    """The index is the one file that refuses writes: the run's own record is written whole."""
    with tmpfs(tmp_path / "runs") as runs_dir:
        store = RunStore(runs_dir)
        store.summaries()
        (runs_dir / INDEX).chmod(0o444)
        for name in (INDEX, f"{INDEX}-wal", f"{INDEX}-shm"):
            (runs_dir / name).touch()
        with read_only(runs_dir / INDEX):
            writer = store.create(run_meta("r1"))
            writer.append_trace(trace_record("r1", 1, 1).model_copy(update={"completion_tokens": 9}))
            writer.save_meta(status="completed")
        [run] = store.summaries()
        assert (run.run_id, run.status, run.tokens) == ("r1", "completed", 9)
        assert [run] == from_folders(runs_dir)
