"""Damaged and clashing run records: a checkpoint that failed to save, a bad byte, a torn line,
a run id drawn twice, and a reader that leaves. Each is one line at most, and costs only what it
damaged: every finished turn is counted once and shown once.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.sqlite import SqliteSaver
from streamlit.testing.v1 import AppTest
from support import ROOT
from support.duet import duet_models, only_run, run_args, turn_sections
from support.fakeollama import fake_ollama
from support.records import run_meta

from graphs.commands.cli import main
from graphs.records import checkpoints
from graphs.records.store import RunRecord, RunStore
from graphs.run import runner

APP = str(ROOT / "ui" / "app.py")


def err_lines(capsys: Any) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def runs_json(runs_dir: Path, capsys: Any) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert main(["runs", "--json", "--runs-dir", str(runs_dir)]) == 0
    return json.loads(capsys.readouterr().out)


def shown_turns(runs_dir: Path, run_id: str, capsys: Any) -> list[int]:
    capsys.readouterr()
    assert main(["show", run_id, "--trace", "--json", "--runs-dir", str(runs_dir)]) == 0
    return [row["turn"] for row in json.loads(capsys.readouterr().out)]


def resume(runs_dir: Path, run_id: str) -> None:
    with fake_ollama(duet_models()) as (server, _):
        assert main(["resume", run_id, "--host", server.url, "--runs-dir", str(runs_dir), "--json"]) == 0


def failed_run(runs_dir: Path, capsys: Any) -> RunRecord:
    """A duet whose server fails turn 3: turns 1 and 2 finished."""
    with fake_ollama(duet_models(), fail_on_call=3) as (server, _):
        assert main(run_args(server.url, runs_dir)) == 1
    capsys.readouterr()
    return only_run(runs_dir)


# 2. A trace row counts only once its turn's checkpoint is saved.


def test_a_turn_whose_checkpoint_failed_to_save_is_counted_once_after_the_resume(
    runs_dir: Path, monkeypatch, capsys
):
    """The checkpoint database refuses turn 3's writes, as a full disk does (emulated here; the
    real full disk is in test_faults_disk.py)."""
    put_writes = SqliteSaver.put_writes

    def full_at_turn_3(self: Any, config: Any, writes: Any, *args: Any, **kwargs: Any) -> None:
        if 3 in checkpoints.turn_numbers(writes):
            raise sqlite3.OperationalError("database or disk is full")
        put_writes(self, config, writes, *args, **kwargs)

    monkeypatch.setattr(SqliteSaver, "put_writes", full_at_turn_3)
    with fake_ollama(duet_models()) as (server, _):
        assert main(run_args(server.url, runs_dir)) == 1
    monkeypatch.setattr(SqliteSaver, "put_writes", put_writes)
    failed = only_run(runs_dir)
    run_id = failed.meta.run_id
    message = (
        f"turn 3's checkpoint could not be saved in {failed.folder}/checkpoints.sqlite: the disk is full; "
        f"free some space, then continue it with `duologue resume {run_id}`"
    )
    assert err_lines(capsys) == [f"duologue: run failed: {message} (run {run_id}: 2 finished turn(s) kept)"]
    assert failed.meta.error == message
    assert [(r.turn, r.error) for r in failed.turn_records] == [
        (1, None),
        (2, None),
        (3, "its checkpoint was not saved: the disk is full"),
    ]
    unsaved_tokens = failed.turn_records[2].completion_tokens
    assert unsaved_tokens, "turn 3 was generated whole: only its save failed"
    assert [r["tokens"] for r in runs_json(runs_dir, capsys)] == [14], "turns 1 and 2 only"

    resume(runs_dir, run_id)
    resumed = only_run(runs_dir)
    assert [r.turn for r in resumed.turn_records] == [1, 2, 3, 3, 4], "the unsaved attempt stays in the log"
    assert shown_turns(runs_dir, run_id, capsys) == [1, 2, 3, 4]
    [totals] = runs_json(runs_dir, capsys)
    assert (totals["turns_done"], totals["tokens"]) == (4, 28), "turn 3's tokens counted once"
    assert "\nTotal: 28 tokens across 4 turns" in resumed.transcript()


# 3. One bad byte in one run breaks nothing else.


UNREADABLE = "run.json is not UTF-8 text (byte 0xff at offset 40)"


def test_a_bad_byte_in_one_run_breaks_no_listing_and_an_unreadable_run_says_why(runs_dir: Path, capsys):
    good = failed_run(runs_dir / "a", capsys)
    damaged_trace = failed_run(runs_dir / "b", capsys)
    unreadable = failed_run(runs_dir / "c", capsys)
    for run in (good, damaged_trace, unreadable):
        run.folder.rename(runs_dir / run.folder.name)
    lines = (runs_dir / damaged_trace.meta.run_id / "trace.jsonl").read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b'"qwen3:32b"', b'"qwen3:\xff32b"')  # turn 2's row
    (runs_dir / damaged_trace.meta.run_id / "trace.jsonl").write_bytes(b"\n".join(lines))
    meta = runs_dir / unreadable.meta.run_id / "run.json"
    meta.write_bytes(meta.read_bytes()[:40] + b"\xff" + meta.read_bytes()[41:])

    assert main(["runs", "--runs-dir", str(runs_dir)]) == 0
    out, err = capsys.readouterr()
    rows = {
        columns[0]: columns[3:] for columns in (re.split(r"\s{2,}", line) for line in out.splitlines()[2:])
    }
    models = "glm-4.7-flash, qwen3:32b"
    assert rows == {
        good.meta.run_id: [models, "failed", "2/4", "14", "0.0", "error"],
        damaged_trace.meta.run_id: [models, "failed", "1/4", "10", "0.0", "error"],  # turn 2's row is lost
        unreadable.meta.run_id: ["-", "unreadable", "-", "-", "-", UNREADABLE],
    }
    assert err.splitlines() == [
        f"duologue: could not read 1 of the 3 runs in {runs_dir} (status unreadable, with the reason)"
    ]
    listed = {r["run_id"]: (r["status"], r["unreadable"]) for r in runs_json(runs_dir, capsys)}
    assert listed[unreadable.meta.run_id] == ("unreadable", UNREADABLE)

    assert main(["show", unreadable.meta.run_id, "--runs-dir", str(runs_dir)]) == 2
    assert err_lines(capsys) == [
        f"duologue: error: run {unreadable.meta.run_id} cannot be read: its run.json is not UTF-8 text (byte "
        f"0xff at offset 40); restore it, or move {runs_dir / unreadable.meta.run_id} out of the runs folder"
    ]


def test_a_binary_transcript_is_one_line_and_the_trace_still_shows(runs_dir: Path, capsys):
    run = failed_run(runs_dir, capsys)
    (run.folder / "transcript.md").write_bytes(bytes(range(256)))
    assert main(["show", run.meta.run_id, "--runs-dir", str(runs_dir)]) == 2
    assert err_lines(capsys) == [
        f"duologue: error: run {run.meta.run_id}: transcript.md is not UTF-8 text (byte 0x80 at offset 128); "
        f"its turns are still in {run.folder}/trace.jsonl (`duologue show {run.meta.run_id} --trace`)"
    ]
    assert shown_turns(runs_dir, run.meta.run_id, capsys) == [1, 2, 3]


def test_the_pages_runs_list_and_run_picker_show_an_unreadable_run(runs_dir: Path, monkeypatch, capsys):
    run = failed_run(runs_dir, capsys)
    RunStore(runs_dir).create(run_meta("20261125-200000-duet-0badf00d"))
    (runs_dir / "20261125-200000-duet-0badf00d" / "run.json").write_bytes(b"\xff\xfe not json")
    monkeypatch.setenv("DUOLOGUE_RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/runs.py").run()
    assert not at.exception, at.exception
    listed = {row["run"]: row["status"] for row in at.dataframe[0].value.to_dict("records")}
    assert listed == {run.meta.run_id: "failed", "20261125-200000-duet-0badf00d": "unreadable"}
    at.switch_page("views/run.py").run()
    assert not at.exception, at.exception
    labels = [link.proto.label.replace("\\", "") for link in at.get("page_link")]  # Markdown-escaped
    fields = [label.split(" · ") for label in labels]  # id · icon status · models · topic · started
    picked = {field[0]: field[1].split()[-1] for field in fields}
    assert picked == {run.meta.run_id: "failed", "20261125-200000-duet-0badf00d": "unreadable"}


# 4. A torn last line costs only its own record.


@pytest.mark.parametrize("name", ["trace.jsonl", "inputs.jsonl"])
def test_a_torn_last_line_costs_only_its_record_after_a_resume(runs_dir: Path, capsys, name: str):
    run = failed_run(runs_dir, capsys)
    path = run.folder / name
    path.write_bytes(path.read_bytes()[:-200])  # head -c -200: a crash in the middle of turn 3's line
    resume(runs_dir, run.meta.run_id)
    resumed = only_run(runs_dir)
    [totals] = runs_json(runs_dir, capsys)
    assert (totals["status"], totals["turns_done"], totals["tokens"]) == ("completed", 4, 28)
    assert shown_turns(runs_dir, run.meta.run_id, capsys) == [1, 2, 3, 4]
    assert [i.turn for i in resumed.inputs()] == ([1, 2, 3, 3, 4] if name == "trace.jsonl" else [1, 2, 3, 4])
    assert len(turn_sections(resumed.transcript())) == 4


# 9. Run ids are drawn again when they collide.


def test_a_run_id_drawn_twice_is_drawn_again(runs_dir: Path, monkeypatch, capsys):
    taken = "20261125-200000-duet-0000aaaa"
    RunStore(runs_dir).create(run_meta(taken))
    before = (runs_dir / taken / "run.json").read_bytes()
    monkeypatch.setattr(runner, "new_run_id", lambda shape: taken)  # the first draw collides
    with fake_ollama(duet_models()) as (server, _):
        assert main(run_args(server.url, runs_dir, "--json")) == 0
    new = json.loads(capsys.readouterr().out)["run_id"]
    assert new != taken and len(new.rsplit("-", 1)[1]) == 8
    assert sorted(p.name for p in runs_dir.iterdir()) == sorted([taken, new])
    assert (runs_dir / taken / "run.json").read_bytes() == before
    assert RunStore(runs_dir).load(new).meta.status == "completed"


# A reader that leaves.


def test_runs_into_a_pipe_that_closes_ends_quietly(runs_dir: Path):
    store = RunStore(runs_dir)
    for n in range(800):  # a table longer than a pipe holds, so the write meets the closed end
        store.create(run_meta(f"20261125-200000-duet-{n:08x}"))
    process = subprocess.Popen(
        [sys.executable, "-m", "graphs", "runs", "--runs-dir", str(runs_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().split()[0] == b"run"  # `| head -1`
    process.stdout.close()
    assert process.wait(timeout=60) == 141  # 128 + SIGPIPE, as `yes | head -1` ends
    assert process.stderr.read() == b""
