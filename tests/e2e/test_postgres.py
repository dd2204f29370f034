"""Runs that keep their checkpoints in Postgres, against a real PostgreSQL server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.duet import A_REPLIES, B_REPLIES, duet_models, only_run, run_args, turn_sections, user
from support.fakeollama import FakeModel, fake_ollama
from support.net import free_port
from support.pgserver import PASSWORD, bin_dir, postgres_server

from graphs.commands.cli import main
from graphs.records.store import RunStore

psycopg = pytest.importorskip("psycopg", reason="needs the postgres extra (pip install -e '.[postgres]')")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(bin_dir() is None, reason="needs Debian's postgresql (make postgres)"),
]


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def redacted(url: str) -> str:
    return url.replace(f":{PASSWORD}@", ":***@")


def checkpoint_threads(url: str) -> dict[str, int]:
    """How many checkpoints the database holds for each thread (run id)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("select thread_id, count(*) from checkpoints group by thread_id").fetchall()
    return {thread: count for thread, count in rows}


def files_mention(folder: Path, secret: str) -> list[str]:
    return [p.name for p in folder.iterdir() if p.is_file() and secret.encode() in p.read_bytes()]


def test_a_run_kept_in_postgres_resumes_after_a_fault(database: str, runs_dir: Path, monkeypatch, capsys):
    with fake_ollama(duet_models(), fail_on_call=3) as (server, _):
        assert main(run_args(server.url, runs_dir, "--checkpoint-url", database)) == 1
    failed = only_run(runs_dir)
    run_id = failed.meta.run_id
    assert failed.meta.status == "failed"
    assert failed.meta.checkpoint_store == redacted(database)
    assert sorted(p.name for p in failed.folder.iterdir()) == [
        ".lock", "inputs.jsonl", "run.json", "trace.jsonl", "transcript.md",
    ], "no SQLite file: the checkpoints are in Postgres"  # fmt: skip
    assert run_id in checkpoint_threads(database)
    before = turn_sections(failed.transcript())
    assert len(before) == 2

    capsys.readouterr()
    monkeypatch.setenv("DUOLOGUE_CHECKPOINT_URL", database)  # resume finds the database from the environment
    with fake_ollama(duet_models()) as (server, backend):
        assert main(["resume", run_id, "--host", server.url, "--runs-dir", str(runs_dir)]) == 0
    resumed = only_run(runs_dir)
    assert resumed.meta.status == "completed"
    after = turn_sections(resumed.transcript())
    assert after[:2] == before, "finished turns are byte-identical"
    assert [s.splitlines()[0] for s in after] == [
        "### Turn 1: glm-4.7-flash — Opening",
        "### Turn 2: qwen3:32b — Response",
        "### Turn 3: glm-4.7-flash — Reply",
        "### Turn 4: qwen3:32b — Closing",
    ]
    # The checkpoints in Postgres gave the resume turns 1 and 2: only turns 3 and 4 were asked for,
    # each with the speaker's whole history (this server's model starts its replies over).
    assert [(r.model, r.messages[1:]) for r in backend.chat_requests] == [
        (
            "glm-4.7-flash",
            [
                user(
                    "Open the conversation: give your reading of the subject and end with a question for qwen3:32b."
                ),
                {"role": "assistant", "content": A_REPLIES[0]},
                user(B_REPLIES[0]),
                user("Reply to what was said."),
            ],
        ),
        (
            "qwen3:32b",
            [
                user(A_REPLIES[0]),
                user("Respond to what was said."),
                {"role": "assistant", "content": B_REPLIES[0]},
                user(A_REPLIES[0]),
                user(
                    "Close the conversation with a synthesis: where you converge, where you diverge, and what surprised you."
                ),
            ],
        ),
    ]
    assert files_mention(resumed.folder, PASSWORD) == []
    assert PASSWORD not in capsys.readouterr().err


def test_a_run_kept_in_postgres_needs_its_database_to_resume(database: str, runs_dir: Path, capsys):
    with fake_ollama(duet_models(), fail_on_call=3) as (server, backend):
        assert main(run_args(server.url, runs_dir, "--checkpoint-url", database)) == 1
        run_id = only_run(runs_dir).meta.run_id
        record = (runs_dir / run_id / "run.json").read_bytes()
        capsys.readouterr()
        assert main(["resume", run_id, "--runs-dir", str(runs_dir)]) == 2
        assert capsys.readouterr().err == (
            f"duologue: error: run {run_id} keeps its checkpoints in Postgres at {redacted(database)}; "
            "give its connection string with --checkpoint-url or $DUOLOGUE_CHECKPOINT_URL\n"
        )
        elsewhere = database.rsplit("/", 1)[0] + "/another"
        assert main(["resume", run_id, "--checkpoint-url", elsewhere, "--runs-dir", str(runs_dir)]) == 2
        assert capsys.readouterr().err == (
            f"duologue: error: run {run_id} keeps its checkpoints in {redacted(database)}, but the connection "
            f"string given names {redacted(elsewhere)}; give the run's own database\n"
        )
        requests = len(backend.chat_requests)
    assert requests == 3
    assert (runs_dir / run_id / "run.json").read_bytes() == record


def test_a_run_kept_in_its_folder_refuses_a_database(database: str, runs_dir: Path, capsys):
    with fake_ollama(duet_models(), fail_on_call=3) as (server, _):
        assert main(run_args(server.url, runs_dir)) == 1
        run_id = only_run(runs_dir).meta.run_id
        capsys.readouterr()
        assert main(["resume", run_id, "--checkpoint-url", database, "--runs-dir", str(runs_dir)]) == 2
    assert capsys.readouterr().err == (
        f"duologue: error: run {run_id} keeps its checkpoints in its own folder (SQLite); "
        "continue it without --checkpoint-url\n"
    )


def test_fork_of_a_run_kept_in_postgres(database: str, runs_dir: Path, capsys):
    with fake_ollama(
        [*duet_models(), FakeModel("llama3.2:3b", replies=["Llama disagrees.", "Llama closes."])]
    ) as (server, backend):
        assert main(run_args(server.url, runs_dir, "--checkpoint-url", database)) == 0
        original = only_run(runs_dir)
        before = len(backend.chat_requests)
        fork = ["fork", original.meta.run_id, "--at", "2", "--model", "b=llama3.2:3b"]
        assert main([*fork, "--checkpoint-url", database, "--runs-dir", str(runs_dir)]) == 0
        forked_requests = backend.chat_requests[before:]
    forked = next(r for r in RunStore(runs_dir).list() if r.meta.run_id != original.meta.run_id)
    assert forked.meta.forked_from == {"run_id": original.meta.run_id, "at": 2}
    assert forked.meta.status == "completed" and forked.meta.checkpoint_store == redacted(database)
    assert [(r.model, len(r.messages)) for r in forked_requests] == [("glm-4.7-flash", 5), ("llama3.2:3b", 6)]
    assert turn_sections(forked.transcript())[0] == turn_sections(original.transcript())[0]
    threads = checkpoint_threads(database)
    assert threads[forked.meta.run_id] > 0 and threads[original.meta.run_id] > 0
    assert not (forked.folder / "checkpoints.sqlite").exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "mysql://duologue:pw@127.0.0.1/db",
            "checkpoint URL 'mysql://duologue:***@127.0.0.1/db' is not a Postgres connection string; give one "
            "like postgresql://USER:PASSWORD@HOST:5432/DATABASE (or leave it out for SQLite in the run's folder)",
        ),
        (
            "postgresql://duologue:pw@127.0.0.1:PORT/postgres",
            "cannot reach the checkpoint database postgresql://duologue:***@127.0.0.1:PORT/postgres: "
            'connection to server at "127.0.0.1", port PORT failed: Connection refused; '
            "check that it is running and the connection string is right",
        ),
    ],
    ids=["not-postgres", "nothing-listening"],
)
def test_a_database_that_cannot_be_used_stops_the_run_before_it_starts(
    url: str, message: str, runs_dir: Path, capsys
):
    port = str(free_port())
    url, message = url.replace("PORT", port), message.replace("PORT", port)
    with fake_ollama(duet_models()) as (server, backend):
        assert main(run_args(server.url, runs_dir, "--checkpoint-url", url)) == 2
        assert backend.chat_requests == []
    assert capsys.readouterr().err == f"duologue: error: {message}\n"
    assert not runs_dir.exists() or list(runs_dir.iterdir()) == []


def test_the_database_going_away_mid_run_fails_the_run_and_keeps_its_turns(runs_dir: Path, capsys):
    with postgres_server() as url, fake_ollama(duet_models(), token_delay_s=0.05) as (server, backend):
        codes: list[int] = []
        worker = threading.Thread(
            target=lambda: codes.append(main(run_args(server.url, runs_dir, "--checkpoint-url", url)))
        )
        worker.start()
        deadline = time.monotonic() + 60
        while (
            not list(runs_dir.glob("*/transcript.md"))
            or "### Turn 2" not in next(runs_dir.glob("*/transcript.md")).read_text()
        ):
            assert time.monotonic() < deadline, "the run never finished two turns"
            time.sleep(0.02)
        with psycopg.connect(url, autocommit=True) as conn:  # as a server restart or a DBA would
            conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where pid <> pg_backend_pid()"
                " and datname = current_database()"
            )
        worker.join(timeout=60)
    run = only_run(runs_dir)
    assert codes == [1] and run.meta.status == "failed"
    finished = turn_sections(run.transcript())
    assert len(finished) >= 2, "the turns finished before the database went away are kept"
    assert [s.splitlines()[0] for s in finished] == [
        "### Turn 1: glm-4.7-flash — Opening",
        "### Turn 2: qwen3:32b — Response",
        "### Turn 3: glm-4.7-flash — Reply",
    ][: len(finished)]
    failed_turn = len(finished) + 1
    assert run.meta.error and run.meta.error.startswith(
        f"turn {failed_turn}: the checkpoint database {redacted(url)} failed: "
    ), "the error says the database failed, not the model"
    assert capsys.readouterr().err == (
        f"duologue: run failed: {run.meta.error} (run {run.meta.run_id}: {len(finished)} finished turn(s) kept)\n"
    )
    assert json.loads((run.folder / "run.json").read_text())["checkpoint_store"] == redacted(url)


def test_doctor_checks_the_checkpoint_database(database: str, capsys):
    with fake_ollama(["qwen3:32b"]) as (server, _):
        assert (
            main(["doctor", "--model", "qwen3:32b", "--host", server.url, "--checkpoint-url", database]) == 0
        )
        lines = capsys.readouterr().out.splitlines()
        assert lines[-2:] == [
            f"checkpoints: {redacted(database)}: ready (Postgres)",
            "ok: every model is there and runs as required",
        ]
        nobody = f"postgresql://duologue:{PASSWORD}@127.0.0.1:{free_port()}/postgres"
        assert main(["doctor", "--model", "qwen3:32b", "--host", server.url, "--checkpoint-url", nobody]) == 1
        out = capsys.readouterr().out
    assert out.splitlines()[-2:] == [
        f"checkpoints: {redacted(nobody)}: unusable",
        f"problem: cannot reach the checkpoint database {redacted(nobody)}: connection to server at "
        f'"127.0.0.1", port {nobody.rsplit(":", 1)[1].split("/")[0]} failed: Connection refused; '
        "check that it is running and the connection string is right",
    ]
    assert PASSWORD not in out
