"""Run records as `duologue runs` lists them: a run no process holds, each flag once."""

from __future__ import annotations

import json
from pathlib import Path

from support.records import run_meta, trace_record

from graphs.records.store import RunStore


def test_a_run_recorded_as_running_that_no_process_holds_shows_as_stopped(runs_dir: Path, capsys):
    from graphs.commands.cli import main

    writer = RunStore(runs_dir).create(run_meta("r1"))
    with writer.lock():
        assert RunStore(runs_dir).load("r1").status == "running"
        assert main(["runs", "--json", "--runs-dir", str(runs_dir)]) == 0
        assert [r["status"] for r in json.loads(capsys.readouterr().out)] == ["running"]
    assert RunStore(runs_dir).load("r1").status == "stopped", (
        "its process is gone: killed, or the machine went down"
    )
    assert RunStore(runs_dir).load("r1").meta.status == "running", "the record itself is left as it was"
    assert main(["runs", "--runs-dir", str(runs_dir)]) == 0
    [row] = capsys.readouterr().out.splitlines()[2:]
    assert row.split() == ["r1", "2026-11-25", "20:00", "duet", "stopped", "0/4", "0", "0.0", "-"]


def test_runs_table_names_each_flag_once_and_whole(runs_dir: Path, capsys):
    from graphs.commands.cli import main

    writer = RunStore(runs_dir).create(run_meta("r1"))
    writer.append_trace(
        trace_record("r1", 1, 1).model_copy(update={"gpu_fraction": 0.48, "done_reason": "length"})
    )
    writer.append_trace(trace_record("r1", 2, 2).model_copy(update={"gpu_fraction": 0.0}))
    writer.save_meta(status="completed")
    assert main(["runs", "--json", "--runs-dir", str(runs_dir)]) == 0
    assert json.loads(capsys.readouterr().out)[0]["flags"] == ["CPU", "cut by length"]
