"""Durable runs: resume after a fault or a kill, fork at a turn, the facilitator's interjections."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.duet import A_REPLIES, B_REPLIES, duet_models, only_run, run_args, turn_sections
from support.fakeollama import FakeModel, fake_ollama

from graphs.commands.cli import main
from graphs.engine.spec import load_shape, with_overrides
from graphs.records.store import RunStore
from graphs.run.observe import SilentObserver
from graphs.run.runner import RunRequest, run_dialogue


def test_resume_after_a_server_fault_continues_without_regenerating(runs_dir: Path, capsys):
    with fake_ollama(duet_models(), fail_on_call=3) as (server, _):
        assert main(run_args(server.url, runs_dir)) == 1
    failed = only_run(runs_dir)
    assert failed.meta.status == "failed"
    before = turn_sections(failed.transcript())
    assert len(before) == 2

    with fake_ollama(duet_models()) as (server, backend):
        assert main(["resume", failed.meta.run_id, "--host", server.url, "--runs-dir", str(runs_dir)]) == 0
    resumed = only_run(runs_dir)
    after = turn_sections(resumed.transcript())
    assert resumed.meta.status == "completed" and resumed.meta.error is None
    assert after[:2] == before, "finished turns are byte-identical"
    assert [s.splitlines()[0] for s in after] == [
        "### Turn 1: glm-4.7-flash — Opening",
        "### Turn 2: qwen3:32b — Response",
        "### Turn 3: glm-4.7-flash — Reply",
        "### Turn 4: qwen3:32b — Closing",
    ]
    # The healthy server was asked for turns 3 and 4 only: the speaker's full history each time.
    assert [(r.model, len(r.messages)) for r in backend.chat_requests] == [
        ("glm-4.7-flash", 5),
        ("qwen3:32b", 6),
    ]
    assert backend.chat_requests[0].messages[2]["content"] == A_REPLIES[0]
    trace_turns = [r.turn for r in resumed.turn_records]
    assert trace_turns == [1, 2, 3, 3, 4], "the failed attempt of turn 3 stays in the log"
    assert [r.seq for r in resumed.trace] == list(range(1, len(resumed.trace) + 1))


def test_resume_after_sigkill_of_a_real_run(runs_dir: Path, tmp_path: Path, capsys):
    with fake_ollama(duet_models(), token_delay_s=0.15) as (server, backend):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            [sys.executable, "-m", "graphs", *run_args(server.url, runs_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                transcripts = list(runs_dir.glob("*/transcript.md"))
                if transcripts and transcripts[0].read_text().count("### Turn") == 2:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the run never finished two turns")
            time.sleep(0.3)  # into turn 3
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        killed = only_run(runs_dir)
        assert killed.meta.status == "running", "a killed run cannot record anything"
        assert killed.status == "stopped", "but no process holds it, so `duologue runs` says stopped"
        before = turn_sections(killed.transcript())
        requests_before = len(backend.chat_requests)
        assert requests_before == 3

        assert main(["resume", killed.meta.run_id, "--runs-dir", str(runs_dir)]) == 0
        resumed_requests = backend.chat_requests[requests_before:]
    resumed = only_run(runs_dir)
    assert resumed.meta.status == "completed"
    after = turn_sections(resumed.transcript())
    assert after[:2] == before
    assert len(after) == 4 and resumed.transcript().count("### Turn 3:") == 1
    assert [(r.model, len(r.messages)) for r in resumed_requests] == [("glm-4.7-flash", 5), ("qwen3:32b", 6)]


def test_resume_a_completed_run_changes_nothing(runs_dir: Path, capsys):
    with fake_ollama(duet_models()) as (server, backend):
        assert main(run_args(server.url, runs_dir)) == 0
        run = only_run(runs_dir)
        files = {
            p.name: p.read_bytes() for p in run.folder.iterdir() if p.is_file() and p.suffix != ".sqlite"
        }
        capsys.readouterr()
        assert main(["resume", run.meta.run_id, "--runs-dir", str(runs_dir)]) == 2
        assert len(backend.chat_requests) == 4
    assert capsys.readouterr().err == (
        f"duologue: error: run {run.meta.run_id} is already completed; nothing to resume "
        f"(`duologue fork {run.meta.run_id} --at N` continues it differently from turn N+1)\n"
    )
    assert {
        p.name: p.read_bytes() for p in run.folder.iterdir() if p.is_file() and p.suffix != ".sqlite"
    } == files


def test_resume_refuses_what_is_not_a_run(runs_dir: Path, tmp_path: Path, capsys):
    (runs_dir / "stray").mkdir(parents=True)
    assert main(["resume", "nope", "--runs-dir", str(runs_dir)]) == 2
    assert capsys.readouterr().err == f"duologue: error: no run 'nope' in {runs_dir} (see `duologue runs`)\n"
    assert main(["resume", "stray", "--runs-dir", str(runs_dir)]) == 2
    assert capsys.readouterr().err == f"duologue: error: no run 'stray' in {runs_dir} (see `duologue runs`)\n"


def test_resume_refuses_an_older_record_format(runs_dir: Path, capsys):
    with fake_ollama(duet_models(), fail_on_call=2) as (server, _):
        assert main(run_args(server.url, runs_dir)) == 1
    run = only_run(runs_dir)
    meta = json.loads((run.folder / "run.json").read_text())
    meta["format_version"] = 0
    (run.folder / "run.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["resume", run.meta.run_id, "--runs-dir", str(runs_dir)]) == 2
    assert capsys.readouterr().err == (
        f"duologue: error: run {run.meta.run_id} was recorded in run-record format 0, which this duologue "
        "(format 1) can read but not continue; start a new run instead\n"
    )


def test_second_resume_is_refused_while_the_first_holds_the_run(runs_dir: Path, capsys):
    with fake_ollama(duet_models(), fail_on_call=2) as (server, backend):
        assert main(run_args(server.url, runs_dir)) == 1
        run = only_run(runs_dir)
        capsys.readouterr()
        with RunStore(runs_dir).reopen(run.meta.run_id).lock():
            assert main(["resume", run.meta.run_id, "--runs-dir", str(runs_dir)]) == 2
        requests = len(backend.chat_requests)
    assert capsys.readouterr().err == (
        f"duologue: error: run {run.meta.run_id} is being driven by process {os.getpid()}; "
        "wait for it to finish or stop it first\n"
    )
    assert requests == 2
    assert only_run(runs_dir).meta.status == "failed"


def test_fork_copies_the_first_turns_then_continues_with_another_model(runs_dir: Path, capsys):
    with fake_ollama(
        [*duet_models(), FakeModel("llama3.2:3b", replies=["Llama disagrees.", "Llama closes."])]
    ) as (
        server,
        backend,
    ):
        assert main(run_args(server.url, runs_dir)) == 0
        original = only_run(runs_dir)
        before = len(backend.chat_requests)
        assert (
            main(
                [
                    "fork",
                    original.meta.run_id,
                    "--at",
                    "2",
                    "--model",
                    "b=llama3.2:3b",
                    "--runs-dir",
                    str(runs_dir),
                ]
            )
            == 0
        )
        forked_requests = backend.chat_requests[before:]
    forked = next(r for r in RunStore(runs_dir).list() if r.meta.run_id != original.meta.run_id)
    assert forked.meta.forked_from == {"run_id": original.meta.run_id, "at": 2}
    assert forked.meta.status == "completed"
    assert [(p.name, p.model) for p in forked.meta.participants] == [
        ("a", "glm-4.7-flash"),
        ("b", "llama3.2:3b"),
    ]
    assert [(r.model, len(r.messages)) for r in forked_requests] == [("glm-4.7-flash", 5), ("llama3.2:3b", 6)]
    sections = turn_sections(forked.transcript())
    original_sections = turn_sections(original.transcript())
    assert sections[0] == original_sections[0]
    assert sections[1].splitlines()[2:] == original_sections[1].splitlines()[2:]
    assert sections[3].splitlines()[0] == "### Turn 4: llama3.2:3b — Closing"
    assert "Llama disagrees." in sections[3]
    assert [r.turn for r in forked.turn_records] == [1, 2, 3, 4]
    assert all(r.run_id == forked.meta.run_id for r in forked.trace)


def test_fork_beyond_the_run_is_refused(runs_dir: Path, capsys):
    with fake_ollama(duet_models()) as (server, _):
        assert main(run_args(server.url, runs_dir)) == 0
        run = only_run(runs_dir)
        capsys.readouterr()
        assert main(["fork", run.meta.run_id, "--at", "5", "--runs-dir", str(runs_dir)]) == 2
    assert capsys.readouterr().err == (
        f"duologue: error: --at 5: run {run.meta.run_id} has 4 finished turn(s); fork it at a turn from 1 to 4\n"
    )
    assert len(RunStore(runs_dir).list()) == 1


def test_facilitator_interjection_pauses_and_is_relayed(runs_dir: Path, capsys):
    with fake_ollama(duet_models()) as (server, backend):
        assert main(run_args(server.url, runs_dir, "--interject", "3")) == 3
        run = only_run(runs_dir)
        assert run.meta.status == "interrupted" and run.meta.paused_before_turn == 3
        assert capsys.readouterr().err.endswith(
            f"duologue: run {run.meta.run_id} is waiting for the facilitator before turn 3; "
            f'continue with `duologue resume {run.meta.run_id} --say "..."` (--say "" adds nothing)\n'
        )
        assert main(["resume", run.meta.run_id, "--runs-dir", str(runs_dir)]) == 2
        assert "resume it with --say TEXT" in capsys.readouterr().err
        assert (
            main(
                ["resume", run.meta.run_id, "--say", "An echo doesn't remember.", "--runs-dir", str(runs_dir)]
            )
            == 0
        )
        requests = backend.chat_requests
    assert len(requests) == 4
    # Both later speakers hear the facilitator, right before the turn it came before.
    assert [m["content"] for m in requests[2].messages[3:]] == [
        B_REPLIES[0],
        "Facilitator: An echo doesn't remember.",
        "Reply to what was said.",
    ]
    assert requests[3].messages[4]["content"] == "Facilitator: An echo doesn't remember."
    transcript = only_run(runs_dir).transcript()
    assert "### Facilitator — before Turn 3\n\nAn echo doesn't remember.\n\n---\n\n### Turn 3:" in transcript
    assert only_run(runs_dir).meta.status == "completed"


def test_sigterm_marks_the_run_interrupted_and_keeps_finished_turns(runs_dir: Path):
    long_reply = " ".join(f"word{i}" for i in range(60))  # 9 s at this pace, if it ran to its end
    slow = [FakeModel("glm-4.7-flash", replies=A_REPLIES), FakeModel("qwen3:32b", replies=[long_reply])]
    with fake_ollama(slow, token_delay_s=0.15) as (server, backend):
        process = subprocess.Popen(
            [sys.executable, "-m", "graphs", *run_args(server.url, runs_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            p.read_text().count("### Turn") == 1 for p in runs_dir.glob("*/transcript.md")
        ):
            time.sleep(0.05)
        time.sleep(0.5)  # into turn 2
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
        deadline = time.monotonic() + 10
        while ("cancel", "qwen3:32b") not in backend.events and time.monotonic() < deadline:
            time.sleep(0.05)
        events = list(backend.events)
    run = only_run(runs_dir)
    assert process.returncode == 130
    assert err.splitlines()[-2:] == [
        "duologue: stopping; the turn in progress ends at its next token (again to exit at once)",
        f"duologue: interrupted; finished turns kept in {run.folder}",
    ]
    assert run.meta.status == "interrupted"
    assert [s.splitlines()[0] for s in turn_sections(run.transcript())] == [
        "### Turn 1: glm-4.7-flash — Opening"
    ]
    assert ("cancel", "qwen3:32b") in events, "turn 2 was cut off, not left to run to its end"
    stopped = run.turn_records[-1]
    assert (stopped.turn, stopped.stopped, stopped.flags) == (2, True, ["stopped"])
    assert stopped.error == "stopped by the user before the turn finished"


def test_resume_keeps_the_runs_residency_policy(runs_dir: Path, capsys):
    with fake_ollama(duet_models(), fail_on_call=3) as (server, _):
        assert main(run_args(server.url, runs_dir, "--residency", "exclusive")) == 1
    run = only_run(runs_dir)
    assert run.meta.settings["residency_policy"] == "exclusive"
    with fake_ollama(duet_models()) as (server, backend):
        assert main(["resume", run.meta.run_id, "--host", server.url, "--runs-dir", str(runs_dir)]) == 0
        events = list(backend.events)
    # Two small models would share the card under the default policy; exclusive unloads the other.
    assert ("unload", "glm-4.7-flash") in events
    assert only_run(runs_dir).meta.settings == run.meta.settings


def test_fork_to_a_model_that_cannot_think_resizes_its_options(runs_dir: Path, capsys):
    thinking = [
        FakeModel("glm-4.7-flash", replies=A_REPLIES),
        FakeModel("qwen3:32b", replies=B_REPLIES, thinks=True, context_length=8192),
        FakeModel("llama3.2:3b", replies=["Llama speaks."], context_length=4096),
    ]
    with fake_ollama(thinking) as (server, backend):
        assert main(run_args(server.url, runs_dir)) == 0
        original = only_run(runs_dir)
        qwen = next(p for p in original.meta.participants if p.name == "b")
        assert qwen.options["think"] is True
        assert (
            main(
                [
                    "fork",
                    original.meta.run_id,
                    "--at",
                    "1",
                    "--model",
                    "b=llama3.2:3b",
                    "--runs-dir",
                    str(runs_dir),
                ]
            )
            == 0
        )
        llama_requests = [r for r in backend.chat_requests if r.model == "llama3.2:3b"]
    forked = next(r for r in RunStore(runs_dir).list() if r.meta.run_id != original.meta.run_id)
    llama = next(p for p in forked.meta.participants if p.name == "b")
    assert "think" not in llama.options
    assert llama.options["num_ctx"] <= 4096
    assert [r.think for r in llama_requests] == [None, None]
    assert {r.options["num_ctx"] for r in llama_requests} == {llama.options["num_ctx"]}


def test_stop_while_a_model_has_not_sent_its_first_token_does_not_wait_for_it(runs_dir: Path):
    """A model loading or reading a long prompt sends nothing for minutes; a stop must not wait."""
    gate = threading.Event()
    with fake_ollama(duet_models(), hold_first_token=(2, gate), token_delay_s=0.1) as (server, backend):
        request = RunRequest(
            shape=with_overrides(load_shape("duet"), {"a": "glm-4.7-flash", "b": "qwen3:32b"}, []),
            topic="An essay.",
            turns=4,
            hosts={"a": server.url, "b": server.url},
            runs_dir=runs_dir,
        )

        class StopOnceTurnTwoIsAsked(SilentObserver):
            def turn_started(self, planned, label, model):
                if planned.number == 2:
                    threading.Thread(target=lambda: (time.sleep(0.3), request.stop.set())).start()

        ended: list[BaseException] = []

        def hold() -> None:
            try:
                run_dialogue(request, StopOnceTurnTwoIsAsked())
            except BaseException as exc:  # noqa: BLE001 - the test looks at it
                ended.append(exc)

        worker = threading.Thread(target=hold)
        worker.start()
        worker.join(30)
        still_waiting = worker.is_alive()
        gate.set()  # the model is ready at last; the abandoned request is closed then
        worker.join(30)
        deadline = time.monotonic() + 10
        while ("cancel", "qwen3:32b") not in backend.events and time.monotonic() < deadline:
            time.sleep(0.05)
        events = list(backend.events)
    assert not still_waiting, "the stop waited for the model's first token"
    assert [type(e).__name__ for e in ended] == ["RunInterrupted"]
    run = only_run(runs_dir)
    assert run.meta.status == "interrupted"
    assert [s.splitlines()[0] for s in turn_sections(run.transcript())] == [
        "### Turn 1: glm-4.7-flash — Opening"
    ]
    stopped = run.turn_records[-1]
    assert (stopped.turn, stopped.stopped, stopped.flags) == (2, True, ["stopped"])
    assert ("cancel", "qwen3:32b") in events, "the abandoned request was closed once the model answered"
