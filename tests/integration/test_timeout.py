"""--timeout: a server that stops answering ends the turn in one line, at the time the user allowed.

Before --timeout, a hung server held a turn for 600 s, whatever the user wanted; and the line
that followed said "did not answer in time (ReadTimeout)", without the turn or the model.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from support.duet import A_REPLIES, duet_models, only_run, run_args, turn_sections
from support.fakeollama import fake_ollama

from graphs.commands.cli import main
from graphs.ollama.timeouts import TIMEOUT_S
from graphs.records.store import RunStore

TURN_1 = f"### Turn 1: glm-4.7-flash — Opening\n*(10 tokens, 9.0 tok/s, 0s)*\n\n{A_REPLIES[0]}"


def stopped_answering(url: str, seconds: str, run_id: str) -> str:
    return (
        f"duologue: run failed: turn 2 (qwen3:32b) failed: Ollama at {url} stopped answering: nothing for "
        f"{seconds} s (--timeout); if the model is only slow (loading, or reading a long prompt), resume "
        f"with a longer --timeout SECONDS (run {run_id}: 1 finished turn(s) kept)"
    )


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize(
    ("hold", "what"),
    [("first", "before its first token"), ("stall", "between two chunks, after two of them")],
)
def test_a_server_that_stops_answering_fails_the_turn_at_the_timeout(
    runs_dir: Path, capsys: pytest.CaptureFixture[str], hold: str, what: str
) -> None:
    gate = threading.Event()
    held = {"hold_first_token": (2, gate)} if hold == "first" else {"stall": (2, 2, gate)}
    try:
        with fake_ollama(duet_models(), **held) as (server, _):
            started = time.monotonic()
            code = main(run_args(server.url, runs_dir, "--timeout", "1"))
            took = time.monotonic() - started
            gate.set()
    finally:
        gate.set()
    run = only_run(runs_dir)
    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines() == [stopped_answering(server.url, "1", run.meta.run_id)], what
    assert took < 15, f"the turn waited {took:.0f} s, not the 1 s allowed"
    assert (run.meta.status, run.meta.settings["timeout_s"]) == ("failed", 1.0)
    assert turn_sections(run.transcript()) == [TURN_1], "the finished turn is intact"
    assert leftovers(run.folder) == []


def test_resume_keeps_the_recorded_timeout_and_takes_a_new_one(runs_dir: Path, capsys) -> None:
    gate = threading.Event()
    try:
        with fake_ollama(duet_models(), hold_first_token=(2, gate)) as (server, _):
            assert main(run_args(server.url, runs_dir, "--timeout", "1")) == 1
        run_id = only_run(runs_dir).meta.run_id
        capsys.readouterr()
        # The same hang on resume: the run's own 1 s, not the 300 s default, ends it.
        with fake_ollama(duet_models(), hold_first_token=(1, gate)) as (server, _):
            started = time.monotonic()
            assert main(["resume", run_id, "--host", server.url, "--runs-dir", str(runs_dir)]) == 1
            took = time.monotonic() - started
            gate.set()
    finally:
        gate.set()
    assert took < 15
    assert capsys.readouterr().err.splitlines() == [stopped_answering(server.url, "1", run_id)]

    with fake_ollama(duet_models()) as (server, _):
        resume = ["resume", run_id, "--host", server.url, "--runs-dir", str(runs_dir), "--timeout", "45"]
        assert main(resume) == 0
    resumed = only_run(runs_dir)
    assert (resumed.meta.status, resumed.meta.settings["timeout_s"]) == ("completed", 45.0)
    assert turn_sections(resumed.transcript())[0] == TURN_1


def test_fork_takes_a_timeout_and_a_new_run_records_the_default(runs_dir: Path, capsys) -> None:
    with fake_ollama(duet_models()) as (server, _):
        assert main(run_args(server.url, runs_dir)) == 0
        original = only_run(runs_dir)
        fork = ["fork", original.meta.run_id, "--at", "2", "--runs-dir", str(runs_dir), "--timeout", "90"]
        assert main(fork) == 0
    [forked] = [r for r in RunStore(runs_dir).list() if r.meta.run_id != original.meta.run_id]
    assert original.meta.settings["timeout_s"] == TIMEOUT_S
    assert (forked.meta.status, forked.meta.settings["timeout_s"]) == ("completed", 90.0)


def test_doctor_gives_up_on_a_model_that_does_not_answer(capsys) -> None:
    gate = threading.Event()
    try:
        with fake_ollama(duet_models(), hold_first_token=(1, gate)) as (server, _):
            started = time.monotonic()
            code = main(["doctor", "--model", "qwen3:32b", "--host", server.url, "--timeout", "1"])
            took = time.monotonic() - started
            gate.set()
    finally:
        gate.set()
    out = capsys.readouterr().out
    assert code != 0 and took < 15
    assert f"Ollama at {server.url} did not answer /api/chat within 1s" in out


@pytest.mark.parametrize("value", ["0", "-5", "abc", "inf", "nan"])
def test_a_timeout_that_is_not_seconds_is_refused_before_a_run_exists(
    runs_dir: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(run_args("http://127.0.0.1:9", runs_dir, "--timeout", value))
    assert stopped.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"duologue run: error: argument --timeout: {value!r} is not a number of seconds above 0, "
        "e.g. 600 (see duologue run --help)"
    ]
    assert not runs_dir.exists()
