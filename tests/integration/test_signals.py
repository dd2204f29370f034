"""Signals to a running `duologue run`: one stop however many copies arrive, and a forced exit
that still records the run as interrupted.

`timeout -s INT` signals the process and then its group, so duologue receives SIGINT twice,
microseconds apart; a terminal's Ctrl-C does the same to a process started by a script. Taken
as a second Ctrl-C, that exited at once: run.json said `running` and the stopped turn was lost.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.duet import A_REPLIES, duet_models, only_run, run_args, turn_sections
from support.fakeollama import FakeBackend, fake_ollama

STOPPING = "duologue: stopping; the turn in progress ends at its next token (again to exit at once)"
TURN_1 = f"### Turn 1: glm-4.7-flash — Opening\n*(10 tokens, 9.0 tok/s, 0s)*\n\n{A_REPLIES[0]}"


class Duologue:
    """`python -m graphs run ...` in its own process group, its stderr read line by line."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "graphs", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # its own group, as `timeout` puts it in
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))

    def wait_for_line(self, wanted: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.05)
            except queue.Empty:
                continue
            self.err.append(line)
            if line == wanted:
                return
        pytest.fail(f"duologue never said {wanted!r}; it said {self.err}")

    def finish(self, timeout_s: float = 20) -> list[str]:
        """Its exit code's wait, then every line it wrote on stderr."""
        self.process.wait(timeout=timeout_s)
        time.sleep(0.1)
        while not self.lines.empty():
            self.err.append(self.lines.get())
        return [line for line in self.err if line]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@contextmanager
def held_turn_2(**hold: object) -> Iterator[tuple[str, FakeBackend, threading.Event]]:
    """The duet's fake server, holding turn 2 as `hold` says until the test is over."""
    gate = threading.Event()
    held = {key: (*value, gate) for key, value in hold.items()}  # type: ignore[misc]
    try:
        with fake_ollama(duet_models(), **held) as (server, backend):
            yield server.url, backend, gate
            gate.set()
    finally:
        gate.set()


def wait_for_turn_2(runs_dir: Path, backend: FakeBackend) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = [p for p in runs_dir.glob("*/transcript.md") if p.read_text().count("### Turn") == 1]
        if done and len(backend.chat_requests) == 2:
            time.sleep(0.3)  # turn 2's request is in, and held
            return
        time.sleep(0.05)
    pytest.fail("the run never reached turn 2")


def tmp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_signal_sent_to_the_process_and_its_group_stops_the_run_once(runs_dir: Path) -> None:
    with held_turn_2(hold_first_token=(2,)) as (url, backend, _):
        duologue = Duologue(run_args(url, runs_dir))
        try:
            wait_for_turn_2(runs_dir, backend)
            duologue.process.send_signal(signal.SIGINT)  # as `timeout -s INT` does: the process,
            duologue.wait_for_line(STOPPING)
            os.killpg(duologue.process.pid, signal.SIGINT)  # then its group, a moment later
            err = duologue.finish()
        finally:
            duologue.kill()
    run = only_run(runs_dir)
    assert duologue.process.returncode == 130
    assert err == [STOPPING, f"duologue: interrupted; finished turns kept in {run.folder}"]
    assert (run.meta.status, run.meta.error) == ("interrupted", "interrupted by the user")
    assert turn_sections(run.transcript()) == [TURN_1]
    stopped = run.turn_records[-1]
    assert (stopped.turn, stopped.stopped, stopped.flags) == (2, True, ["stopped"]), "the stopped turn counts"
    assert tmp_files(run.folder) == []


def test_a_second_ctrl_c_later_exits_at_once_and_marks_the_run_interrupted(runs_dir: Path) -> None:
    """A server that stops mid-turn keeps the stopping turn waiting for its next chunk; the
    user's second Ctrl-C then exits at once, and the record still says how the run ended."""
    with held_turn_2(stall=(2, 2)) as (url, backend, _):
        duologue = Duologue(run_args(url, runs_dir))
        try:
            wait_for_turn_2(runs_dir, backend)
            duologue.process.send_signal(signal.SIGINT)
            duologue.wait_for_line(STOPPING)
            time.sleep(1.0)
            assert duologue.process.poll() is None, "the stalled turn holds the run, as it would a user"
            assert only_run(runs_dir).meta.status == "running"
            duologue.process.send_signal(signal.SIGINT)
            err = duologue.finish(timeout_s=10)
        finally:
            duologue.kill()
    run = only_run(runs_dir)
    assert duologue.process.returncode == 130
    assert err == [
        STOPPING,
        f"duologue: exiting at once; run {run.meta.run_id} marked interrupted; finished turns kept in "
        f"{run.folder}",
    ]
    assert (run.meta.status, run.meta.error) == (
        "interrupted",
        "interrupted by the user (exited at once, before the turn in progress ended)",
    )
    assert run.meta.ended_at is not None
    assert run.status == "interrupted", "and no process holds it: `duologue runs` says so too"
    assert turn_sections(run.transcript()) == [TURN_1]
    assert tmp_files(run.folder) == []
