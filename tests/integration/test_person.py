"""A person at the keyboard (kind: person): `duologue run interview` as a subprocess, their turns
typed on its standard input (a pipe, then a pty with Ctrl-C at the prompt), its model on the
Ollama-protocol test server."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.duet import only_run, turn_sections, user
from support.fakeollama import FakeModel, fake_ollama

from graphs.records.store import RunStore

REPLIES = ["Memory is inheritance, not storage.", "We agree on inheritance and part on storage."]
FIRST = "Is memory something a model has?\nOr something it does?"
SECOND = "Then what does it inherit?"
EXIT_PAUSED = 3


def interview_args(url: str, runs_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "graphs", "run", "interview", "--model", "guest=qwen3:32b",
        "--topic", "Memory.", "--host", url, "--runs-dir", str(runs_dir), *extra,
    ]  # fmt: skip


def guest() -> list[FakeModel]:
    return [FakeModel("qwen3:32b", replies=REPLIES, gpu_tok_s=20.0)]


def test_a_persons_turns_typed_into_a_pipe(runs_dir: Path):
    typed = f"{FIRST}\n.\n{SECOND}\n"  # the second turn ends with the input (EOF), no `.`
    with fake_ollama(guest()) as (server, backend):
        done = subprocess.run(
            interview_args(server.url, runs_dir), input=typed, capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 0, done.stderr
    run = only_run(runs_dir)
    assert run.meta.status == "completed"
    transcript = (run.folder / "transcript.md").read_text()
    assert transcript.splitlines()[0] == "# Dialogue: Interviewer vs qwen3:32b"
    assert "## Person: Interviewer (typed at the keyboard)" in transcript
    person = {r.turn: r for r in run.turn_records if r.speaker == "you"}
    assert [(r.speaker_kind, r.words, r.model, r.prompt_tokens) for r in person.values()] == [
        ("person", 10, None, None),
        ("person", 5, None, None),
    ]
    model = {r.turn: r for r in run.turn_records if r.speaker == "guest"}
    assert turn_sections(transcript) == [
        f"### Turn 1: Interviewer — Opening\n*(person, 10 words, {person[1].latency_s:.0f}s)*\n\n{FIRST}",
        f"### Turn 2: qwen3:32b — Response\n*({model[2].completion_tokens} tokens, 20.0 tok/s, "
        f"{model[2].latency_s:.0f}s)*\n\n{REPLIES[0]}",
        f"### Turn 3: Interviewer — Reply\n*(person, 5 words, {person[3].latency_s:.0f}s)*\n\n{SECOND}",
        f"### Turn 4: qwen3:32b — Closing\n*({model[4].completion_tokens} tokens, 20.0 tok/s, "
        f"{model[4].latency_s:.0f}s)*\n\n{REPLIES[1]}",
    ]
    # The model was sent the person's words exactly, as any participant's turn.
    sent = [[m for m in r.messages if m["role"] != "system"] for r in backend.chat_requests]
    assert sent == [
        [user(FIRST), user("Respond to what was said.")],
        [
            user(FIRST),
            user("Respond to what was said."),
            {"role": "assistant", "content": REPLIES[0]},
            user(SECOND),
            user("Close the conversation with a synthesis: where you converge, where you diverge, "
                 "and what surprised you."),
        ],
    ]  # fmt: skip
    # inputs.jsonl holds what models were sent; the person was sent nothing.
    inputs = [json.loads(line) for line in (run.folder / "inputs.jsonl").read_text().splitlines()]
    assert [(i["turn"], i["speaker"]) for i in inputs] == [(2, "guest"), (4, "guest")]
    # The prompt went to stderr; stdout streamed the dialogue, the typed turns included.
    assert "Interviewer, your turn 1 (opening)" in done.stderr
    assert "your turn" not in done.stdout
    assert FIRST in done.stdout and SECOND in done.stdout


def test_input_that_ends_before_a_word_stops_the_run_and_resume_asks_again(runs_dir: Path):
    with fake_ollama(guest()) as (server, _backend):
        stopped = subprocess.run(
            interview_args(server.url, runs_dir, "--json"),
            input=f"{FIRST}\n.\n",
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert stopped.returncode == EXIT_PAUSED, stopped.stderr
        summary = json.loads(stopped.stdout)  # the prompts stayed off --json's stdout
        assert (summary["status"], summary["awaiting_person"]) == ("interrupted", 3)
        run = only_run(runs_dir)
        assert run.meta.status == "interrupted"
        last = stopped.stderr.strip().splitlines()[-1]
        assert last == (
            f"duologue: no words came for turn 3 (standard input ended); run {run.meta.run_id} is kept, "
            f"interrupted; `duologue resume {run.meta.run_id}` asks again"
        )
        resumed = subprocess.run(
            [sys.executable, "-m", "graphs", "resume", run.meta.run_id, "--runs-dir", str(runs_dir)],
            input=f"{SECOND}\n.\n",
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert resumed.returncode == 0, resumed.stderr
    assert "Interviewer, your turn 3 (reply)" in resumed.stderr
    run = RunStore(runs_dir).load(run.meta.run_id)
    assert run.meta.status == "completed"
    texts = [s.split("\n\n", 1)[1] for s in turn_sections((run.folder / "transcript.md").read_text())]
    assert texts == [FIRST, REPLIES[0], SECOND, REPLIES[1]]


def read_until(fd: int, wanted: str, seen: list[str], deadline_s: float = 90) -> None:
    """Read the pty until `wanted` has appeared in what the process wrote."""
    deadline = time.monotonic() + deadline_s
    while wanted not in "".join(seen):
        if time.monotonic() > deadline:
            pytest.fail(f"never saw {wanted!r}; the terminal showed: {''.join(seen)[-2000:]}")
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen.append(os.read(fd, 4096).decode(errors="replace"))
            except OSError:  # the process ended: its side of the pty is closed
                pytest.fail(f"the process ended before {wanted!r}: {''.join(seen)[-2000:]}")


def on_a_terminal(args: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    main_fd, child_fd = pty.openpty()
    process = subprocess.Popen(
        args,
        stdin=child_fd,
        stdout=child_fd,
        stderr=child_fd,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"},
        start_new_session=True,
    )
    os.close(child_fd)
    return process, main_fd


def finish(process: subprocess.Popen[bytes], fd: int, seen: list[str]) -> int:
    """Drain the terminal until the process exits; its exit code."""
    deadline = time.monotonic() + 90
    while process.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen.append(os.read(fd, 4096).decode(errors="replace"))
            except OSError:
                break
    code = process.wait(timeout=30)
    os.close(fd)
    return code


def test_ctrl_c_at_the_prompt_then_resume_asks_again_on_a_terminal(runs_dir: Path):
    with fake_ollama(guest()) as (server, _backend):
        process, fd = on_a_terminal(interview_args(server.url, runs_dir))
        seen: list[str] = []
        read_until(fd, "your turn 1 (opening)", seen)
        os.write(fd, f"{FIRST}\n.\n".encode())
        read_until(fd, "your turn 3 (reply)", seen)
        os.write(fd, b"half a thought")
        time.sleep(0.5)  # let the terminal take the keys before the signal
        process.send_signal(signal.SIGINT)  # Ctrl-C at the prompt, the turn half typed
        assert finish(process, fd, seen) == 130, "".join(seen)
        run = only_run(runs_dir)
        assert run.meta.status == "interrupted"
        assert run.meta.error == "interrupted by the user"
        assert [t.turn for t in run.turn_records] == [1, 2], "the person's turn 3 is not finished"

        process, fd = on_a_terminal(
            [sys.executable, "-m", "graphs", "resume", run.meta.run_id, "--runs-dir", str(runs_dir)]
        )
        seen = []
        read_until(fd, "your turn 3 (reply)", seen)
        os.write(fd, f"{SECOND}\n".encode())
        os.write(fd, b"\x04")  # Ctrl-D at the start of a line ends the turn
        assert finish(process, fd, seen) == 0, "".join(seen)
    run = RunStore(runs_dir).load(run.meta.run_id)
    assert run.meta.status == "completed"
    texts = [s.split("\n\n", 1)[1] for s in turn_sections((run.folder / "transcript.md").read_text())]
    assert texts == [FIRST, REPLIES[0], SECOND, REPLIES[1]]


def test_doctor_checks_the_model_and_not_the_person(capsys):
    from graphs.commands.cli import main

    with fake_ollama(guest()) as (server, backend):
        assert main(["doctor", "interview", "--model", "guest=qwen3:32b", "--host", server.url]) == 0
    out = capsys.readouterr().out
    assert "  guest  qwen3:32b  present" in out and " you " not in out
    assert {r.model for r in backend.chat_requests} == {"qwen3:32b"}


def test_a_fork_of_an_interview_asks_the_person_for_their_next_turn(runs_dir: Path):
    with fake_ollama(guest()) as (server, _backend):
        held = subprocess.run(
            interview_args(server.url, runs_dir), input=f"{FIRST}\n.\n{SECOND}\n.\n", capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        assert held.returncode == 0, held.stderr
        original = only_run(runs_dir)
        forked = subprocess.run(
            [sys.executable, "-m", "graphs", "fork", original.meta.run_id, "--at", "2", "--runs-dir", str(runs_dir)],
            input="Another question?\n.\n", capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert forked.returncode == 0, forked.stderr
    assert forked.stderr.count("your turn") == 1 and "Interviewer, your turn 3 (reply)" in forked.stderr
    [fork] = [r for r in RunStore(runs_dir).list() if r.meta.run_id != original.meta.run_id]
    texts = [s.split("\n\n", 1)[1] for s in turn_sections(fork.transcript())]
    assert texts[:3] == [FIRST, REPLIES[0], "Another question?"]
    assert fork.meta.status == "completed"
