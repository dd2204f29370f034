"""Disk and permission faults: one line each, no temporary file left, a record that says how
the run ended (or a line that says it could not), and finished turns kept.

Root ignores file modes, so the refused writes come from filesystems that refuse them to
everyone (support.mounts); where a test cannot mount, it is skipped, and the tests at the end
emulate the same faults at the run store's write seam.
"""

from __future__ import annotations

import errno
import json
import re
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from support.duet import A_REPLIES, B_REPLIES, duet_models, only_run, run_args, turn_sections
from support.fakeollama import FakeModel, fake_ollama
from support.mounts import read_only, remount, tmpfs

from graphs.commands.cli import main
from graphs.records import store as store_module
from graphs.records.store import RunRecord

RUN_ID = r"\d{8}-\d{6}-duet-[0-9a-f]{8}"


def one_line(capsys: Any) -> str:
    """What the command said on stderr: exactly one line, no traceback."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary files anywhere under the folder: there must be none."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.tmp"))


def totals(runs_dir: Path, capsys: Any) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["runs", "--json", "--runs-dir", str(runs_dir)]) == 0
    [run] = json.loads(capsys.readouterr().out)
    return {key: run[key] for key in ("status", "turns_done", "turns", "tokens")}


def shown_turns(runs_dir: Path, run_id: str, capsys: Any) -> list[int]:
    capsys.readouterr()
    assert main(["show", run_id, "--trace", "--json", "--runs-dir", str(runs_dir)]) == 0
    return [row["turn"] for row in json.loads(capsys.readouterr().out)]


def by_turn(replies: list[str]) -> Any:
    """Replies by the model's own turn (its assistant messages so far), not by the server's call
    count, so a resume on a new server says what one unbroken run would have said."""
    return lambda request, n: replies[sum(m["role"] == "assistant" for m in request.messages) % len(replies)]


def steady_duet() -> list[FakeModel]:
    return [
        FakeModel("glm-4.7-flash", replies=by_turn(A_REPLIES), gpu_tok_s=9.0),
        FakeModel("qwen3:32b", replies=by_turn(B_REPLIES), gpu_tok_s=1.4),
    ]


def reference_run(tmp_path: Path, turns: int) -> RunRecord:
    """The same duet on a disk with room: what the faulty one's turns must equal."""
    runs = tmp_path / "reference"
    with fake_ollama(steady_duet()) as (server, _):
        assert main(run_args(server.url, runs, "--turns", str(turns), "--json")) == 0
    return only_run(runs)


def test_a_read_only_runs_dir_is_refused_before_a_run_folder_exists(tmp_path: Path, capsys):
    with tmpfs(tmp_path / "ro", read_only=True) as runs, fake_ollama(duet_models()) as (server, backend):
        assert main(run_args(server.url, runs)) == 2
        assert backend.chat_requests == []
    assert re.fullmatch(
        rf"duologue: error: cannot create run folder {re.escape(str(runs))}/{RUN_ID}: the file system is "
        r"read-only; make it writable, or give another folder with --runs-dir DIR",
        one_line(capsys),
    )


def test_a_runs_dir_that_is_a_file_is_one_line_for_run_and_for_runs(tmp_path: Path, capsys):
    runs = tmp_path / "runs"
    runs.write_text("not a folder")
    said = (
        f"duologue: error: the runs folder {runs} is a file, not a folder; give a folder with --runs-dir DIR "
        "(or $DUOLOGUE_RUNS_DIR)"
    )
    with fake_ollama(duet_models()) as (server, backend):
        assert main(run_args(server.url, runs)) == 2
        assert backend.chat_requests == []
    assert one_line(capsys) == said
    assert main(["runs", "--runs-dir", str(runs)]) == 2
    assert one_line(capsys) == said
    assert runs.read_text() == "not a folder"


def test_a_full_disk_fails_the_run_in_one_line_then_a_resume_counts_each_turn_once(tmp_path: Path, capsys):
    """156 kB holds the duet's first two turns (its checkpoints take most of it); turn 3's fill it."""
    reference = reference_run(tmp_path, 6)
    with tmpfs(tmp_path / "small", size="156k") as runs:
        with fake_ollama(steady_duet()) as (server, _):
            assert main(run_args(server.url, runs, "--turns", "6")) == 1
        failed = only_run(runs)
        run_id, folder = failed.meta.run_id, failed.folder
        message = (
            f"turn 3's checkpoint could not be saved in {folder}/checkpoints.sqlite: the disk is full; "
            f"free some space, then continue it with `duologue resume {run_id}`"
        )
        assert one_line(capsys) == (
            f"duologue: run failed: {message} (run {run_id}: 2 finished turn(s) kept; "
            "but transcript.md could not be updated (the disk is full))"
        )
        assert (failed.meta.status, failed.meta.error) == ("failed", message)
        assert leftovers(runs) == []
        assert turn_sections(failed.transcript()) == turn_sections(reference.transcript())[:2]
        # Turn 3 was generated, but its checkpoint was never saved: at most an attempt in the log
        # (if the full disk took its row at all), never a finished turn.
        assert failed.finished_turns == {1, 2}
        assert all(
            r.error == "its checkpoint was not saved: the disk is full" for r in failed.turn_records[2:]
        )
        assert totals(runs, capsys) == {"status": "failed", "turns_done": 2, "turns": 6, "tokens": 14}

        remount(runs, "size=10m")
        with fake_ollama(steady_duet()) as (server, backend):
            assert main(["resume", run_id, "--host", server.url, "--runs-dir", str(runs), "--json"]) == 0
        assert len(backend.chat_requests) == 4, "turn 3 is generated again, turns 1 and 2 are not"
        resumed = only_run(runs)
        assert turn_sections(resumed.transcript()) == turn_sections(reference.transcript())
        assert shown_turns(runs, run_id, capsys) == [1, 2, 3, 4, 5, 6]
        assert totals(runs, capsys) == {
            "status": "completed",
            "turns_done": 6,
            "turns": 6,
            "tokens": sum(r.completion_tokens or 0 for r in reference.turn_records),
        }
        assert leftovers(runs) == []


def test_a_run_folder_turning_read_only_mid_run_says_its_record_could_not_be_updated(tmp_path: Path, capsys):
    stack = ExitStack()

    def b_reply(request: Any, n: int) -> str:
        if n == 1:  # while qwen3:32b writes turn 2, the run's folder turns read-only
            [folder] = [p for p in runs.iterdir() if p.is_dir()]
            stack.enter_context(read_only(folder))
        return B_REPLIES[(n - 1) % len(B_REPLIES)]

    models = [
        FakeModel("glm-4.7-flash", replies=A_REPLIES, gpu_tok_s=9.0),
        FakeModel("qwen3:32b", replies=b_reply, gpu_tok_s=1.4),
    ]
    with tmpfs(tmp_path / "runs") as runs, stack:
        with fake_ollama(models) as (server, _):
            assert main(run_args(server.url, runs)) == 1
        run = only_run(runs)
        run_id, folder = run.meta.run_id, run.folder
        assert one_line(capsys) == (
            f"duologue: run failed: turn 2 could not be recorded: cannot write {folder}/inputs.jsonl: "
            f"the file system is read-only; make it writable, then continue it with `duologue resume "
            f"{run_id}` (run {run_id}: 2 finished turn(s) kept; but run.json could not be updated (the "
            "file system is read-only) and still says running)"
        )
        assert (run.meta.status, run.status) == ("running", "stopped"), "resume continues a stopped run"
        assert leftovers(runs) == []
        assert [s.splitlines()[0] for s in turn_sections(run.transcript())] == [
            "### Turn 1: glm-4.7-flash — Opening"
        ], "what was written before the folder turned read-only"

        stack.close()  # writable again
        with fake_ollama(duet_models()) as (server, backend):
            assert main(["resume", run_id, "--host", server.url, "--runs-dir", str(runs), "--json"]) == 0
        # Turn 2's checkpoint was saved through the database's open file: it is not generated again,
        # and counts once, with the stats its refused row took with it.
        assert [r.model for r in backend.chat_requests] == ["glm-4.7-flash", "qwen3:32b"]
        resumed = only_run(runs)
        assert [s.splitlines()[:2] for s in turn_sections(resumed.transcript())] == [
            ["### Turn 1: glm-4.7-flash — Opening", "*(10 tokens, 9.0 tok/s, 0s)*"],
            ["### Turn 2: qwen3:32b — Response", "*(no stats)*"],
            ["### Turn 3: glm-4.7-flash — Reply", "*(10 tokens, 9.0 tok/s, 0s)*"],
            ["### Turn 4: qwen3:32b — Closing", "*(4 tokens, 1.4 tok/s, 0s)*"],
        ]
        assert shown_turns(runs, run_id, capsys) == [1, 2, 3, 4]
        assert totals(runs, capsys) == {"status": "completed", "turns_done": 4, "turns": 4, "tokens": 24}


def failed_run(runs: Path) -> RunRecord:
    """A duet whose server fails turn 3: two finished turns, recorded as failed."""
    with fake_ollama(duet_models(), fail_on_call=3) as (server, _):
        assert main(run_args(server.url, runs)) == 1
    return only_run(runs)


def test_resume_of_a_run_whose_folder_cannot_be_written_is_refused_and_leaves_it_as_it_was(
    tmp_path: Path, capsys
):
    with tmpfs(tmp_path / "runs") as runs:
        run = failed_run(runs)
        capsys.readouterr()
        before = {p.name: p.read_bytes() for p in run.folder.iterdir()}
        with read_only(run.folder), fake_ollama(duet_models()) as (server, backend):
            assert main(["resume", run.meta.run_id, "--host", server.url, "--runs-dir", str(runs)]) == 2
            assert backend.chat_requests == []
        assert one_line(capsys) == (
            f"duologue: error: cannot open run {run.meta.run_id}'s checkpoints {run.folder}/checkpoints.sqlite: "
            "the file system is read-only; make it writable, then try again"
        )
        assert {p.name: p.read_bytes() for p in run.folder.iterdir()} == before
        assert only_run(runs).meta.status == "failed"


def test_resume_of_a_run_with_a_damaged_checkpoints_file_is_one_line(runs_dir: Path, capsys):
    run = failed_run(runs_dir)
    capsys.readouterr()
    (run.folder / "checkpoints.sqlite").write_bytes(b"this is no database\n" * 200)
    with fake_ollama(duet_models()) as (server, backend):
        assert main(["resume", run.meta.run_id, "--host", server.url, "--runs-dir", str(runs_dir)]) == 2
        assert backend.chat_requests == []
    assert one_line(capsys) == (
        f"duologue: error: run {run.meta.run_id} cannot be continued: checkpoints.sqlite is damaged (file is "
        f"not a database), so no turn can be resumed or forked from it; its finished turns are in "
        f"{run.folder}/transcript.md"
    )
    kept = only_run(runs_dir)
    assert kept.meta.status == "failed" and len(turn_sections(kept.transcript())) == 2


# The same faults at the run store's write seam, for machines where a test cannot mount.


def refuse(monkeypatch: pytest.MonkeyPatch, name: str, code: int, after: int = 0) -> None:
    """Make the store's `name` (write_atomic or append_line) fail with `code` after `after` calls."""
    real = getattr(store_module, name)
    calls = {"n": 0}

    def failing(path: Path, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(code, __import__("os").strerror(code), str(path))
        real(path, *args, **kwargs)

    monkeypatch.setattr(store_module, name, failing)


def test_emulated_read_only_runs_dir_leaves_no_run_folder(runs_dir: Path, monkeypatch, capsys):
    refuse(monkeypatch, "write_atomic", errno.EROFS)
    with fake_ollama(duet_models()) as (server, _):
        assert main(run_args(server.url, runs_dir)) == 2
    assert re.fullmatch(
        rf"duologue: error: cannot create run folder {re.escape(str(runs_dir))}/{RUN_ID}: the file system is "
        r"read-only; make it writable, or give another folder with --runs-dir DIR",
        one_line(capsys),
    )
    assert list(runs_dir.iterdir()) == [], "the empty run folder is removed again"


def test_emulated_full_disk_mid_run_records_the_failure(runs_dir: Path, monkeypatch, capsys):
    """trace.jsonl's appends: 1 facilitator, 2 turn 1, 3 facilitator, 4 turn 2; the 5th fails."""
    refuse(monkeypatch, "append_line", errno.ENOSPC, after=4 + 2)  # inputs.jsonl's two appends count too
    with fake_ollama(duet_models()) as (server, _):
        assert main(run_args(server.url, runs_dir)) == 1
    run = only_run(runs_dir)
    message = (
        f"turn 3 could not be recorded: cannot write {run.folder}/trace.jsonl: the disk is full; free some "
        f"space, then continue it with `duologue resume {run.meta.run_id}`"
    )
    assert (
        one_line(capsys)
        == f"duologue: run failed: {message} (run {run.meta.run_id}: 2 finished turn(s) kept)"
    )
    assert (run.meta.status, run.meta.error) == ("failed", message)
    assert len(turn_sections(run.transcript())) == 2 and leftovers(runs_dir) == []
