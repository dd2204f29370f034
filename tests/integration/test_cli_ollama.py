"""The `duologue` CLI through ChatOllama over HTTP, against the Ollama-protocol test server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support.duet import A_REPLIES, B_REPLIES, duet_models
from support.fakeollama import fake_ollama

from graphs.commands.cli import main
from graphs.records.store import RunStore

ESSAY = "Inherited Memory.\n\nAn essay about what a successor owes to its predecessor."


@pytest.fixture
def essay(tmp_path: Path) -> Path:
    path = tmp_path / "essay.md"
    path.write_text(ESSAY)
    return path


def run_duet(url: str, essay: Path, runs_dir: Path, *extra: str) -> int:
    return main(
        [
            "run", "duet", "--model", "a=glm-4.7-flash", "--model", "b=qwen3:32b",
            "--topic-file", str(essay), "--turns", "4", "--host", url, "--runs-dir", str(runs_dir), *extra,
        ]
    )  # fmt: skip


def test_duet_against_an_ollama_server(essay: Path, runs_dir: Path, capsys):
    with fake_ollama(duet_models()) as (server, backend):
        assert run_duet(server.url, essay, runs_dir) == 0
    out = capsys.readouterr().out
    [run] = RunStore(runs_dir).list()
    assert run.meta.status == "completed"
    # The options are worked out once per run: one /api/show per model.
    assert [path for _method, path in server.requests if path == "/api/show"] == ["/api/show"] * 2

    # Every request of a participant carries its complete options, identically.
    bodies = [(r.model, r.options, r.keep_alive, r.stream) for r in backend.chat_requests]
    # num_ctx is sized to the dialogue: 4 turns of up to 1024 tokens, the essay, the templates.
    options = {"num_ctx": 6144, "num_gpu": 999, "temperature": 0.7, "seed": -1, "num_predict": 1024}
    assert bodies == [
        ("glm-4.7-flash", options, "30m", True),
        ("qwen3:32b", options, "30m", True),
        ("glm-4.7-flash", options, "30m", True),
        ("qwen3:32b", options, "30m", True),
    ]
    third = backend.chat_requests[2].messages
    assert [m["role"] for m in third] == ["system", "user", "assistant", "user", "user"]
    assert third[2]["content"] == A_REPLIES[0] and third[3]["content"] == B_REPLIES[0]
    assert ESSAY in third[0]["content"]

    # The transcript follows the reference's structure, line by line.
    lines = run.transcript().splitlines()
    assert lines[0] == "# Model-to-Model Dialogue: glm-4.7-flash vs qwen3:32b"
    assert lines[3] == "## Facilitator: duologue (passed messages, did not participate)"
    headings = [line for line in lines if line.startswith("### Turn")]
    assert headings == [
        "### Turn 1: glm-4.7-flash — Opening",
        "### Turn 2: qwen3:32b — Response",
        "### Turn 3: glm-4.7-flash — Reply",
        "### Turn 4: qwen3:32b — Closing",
    ]
    for heading in headings:
        at = lines.index(heading)
        assert re.fullmatch(r"\*\(\d+ tokens, \d+\.\d tok/s, \d+s\)\*", lines[at + 1]), lines[at + 1]
        assert lines[at + 2] == "" and lines[at + 3]
    assert lines.count("---") == 4
    assert re.fullmatch(r"Total: \d+ tokens across 4 turns \(<1 minute of generation\)", lines[-1])
    assert lines[lines.index(headings[1]) + 1] == "*(4 tokens, 1.4 tok/s, 0s)*"

    # tok/s and token counts come from the server's own fields.
    records = run.turn_records
    assert [r.eval_count for r in records] == [10, 4, 5, 9]
    assert [r.tokens_per_s for r in records] == [9.0, 1.4, 9.0, 1.4]
    assert all(r.prompt_eval_count and r.eval_duration and r.total_duration for r in records)

    # The terminal shows the streamed text and a stats line per turn.
    assert (
        "### Turn 1: glm-4.7-flash — Opening\nThe essay presents a paradox. How do you see it?\n*(10 tokens, 9.0 tok/s"
        in out
    )
    assert f"Run {run.meta.run_id} completed" in out


def test_json_summary(essay: Path, runs_dir: Path, capsys):
    with fake_ollama(duet_models()) as (server, _):
        assert run_duet(server.url, essay, runs_dir, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "completed"
    assert [t["turn"] for t in summary["turns"]] == [1, 2, 3, 4]


def test_server_unreachable(essay: Path, runs_dir: Path, capsys):
    with fake_ollama([]) as (server, _):
        url = server.url
    assert run_duet(url, essay, runs_dir) == 2
    err = capsys.readouterr().err
    assert err == (
        f"duologue: error: cannot reach Ollama at {url}; start it with `ollama serve`, point --host or "
        "OLLAMA_HOST at a running server, or add --embedded to use the built-in model\n"
    )
    assert not runs_dir.exists()


def test_missing_model_lists_what_the_server_has(essay: Path, runs_dir: Path, capsys):
    with fake_ollama(["glm-4.7-flash", "llama3.2:3b"]) as (server, _):
        assert run_duet(server.url, essay, runs_dir) == 2
    assert capsys.readouterr().err == (
        f"duologue: error: the server at {server.url} has no model 'qwen3:32b' "
        "(it has: glm-4.7-flash, llama3.2:3b); pull it with `ollama pull qwen3:32b`\n"
    )


@pytest.mark.parametrize("mode", ["error", "drop"])
def test_server_failing_mid_turn_marks_run_failed_and_keeps_turns(essay: Path, runs_dir: Path, capsys, mode):
    with fake_ollama(duet_models(), fail_on_call=3, fail_mode=mode) as (server, _):
        assert run_duet(server.url, essay, runs_dir) == 1
    err = capsys.readouterr().err
    assert err.startswith("duologue: run failed: turn 3 (glm-4.7-flash) failed: ")
    assert err.endswith(": 2 finished turn(s) kept)\n") and err.count("\n") == 1
    [run] = RunStore(runs_dir).list()
    assert run.meta.status == "failed"
    transcript = run.transcript()
    assert transcript.count("### Turn") == 2
    assert A_REPLIES[0] in transcript and B_REPLIES[0] in transcript
    inputs = [json.loads(line) for line in (run.folder / "inputs.jsonl").read_text().splitlines()]
    assert [i["turn"] for i in inputs] == [1, 2, 3]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--model", "c=x"],
            "duologue: error: --model names 'c', who is not in shape 'duet'; its participants are a, b\n",
        ),
        (
            ["--set", "c.num_ctx=1"],
            "duologue: error: --set names 'c', who is not in shape 'duet'; its participants are a, b\n",
        ),
        (
            ["--set", "a.num_ctxx=8192"],
            "duologue: error: --set a.num_ctxx: unknown key 'num_ctxx'; known keys: keep_alive, label, main_gpu, min_tok_s, model, "
            "num_batch, num_ctx, num_gpu, num_predict, num_thread, persona, repeat_penalty, seed, stop, temperature, "
            "think, top_k, top_p, use_mmap\n",
        ),
        (
            ["--topic-file", "/nonexistent/essay.md"],
            "duologue: error: --topic-file /nonexistent/essay.md: no such file\n",
        ),
        (["--topic-file", "EMPTY"], "duologue: error: --topic-file EMPTY: the file is empty\n"),
        ([], "duologue: error: no topic: give one with --topic TEXT or --topic-file PATH\n"),
        (
            ["--topic", "t", "--turns", "1"],
            "duologue: error: --turns 1: a dialogue needs at least 2 turns (an opening and a closing)\n",
        ),
    ],
)
def test_bad_input_gets_one_line(tmp_path: Path, runs_dir: Path, capsys, args, message):
    empty = tmp_path / "empty.md"
    empty.write_text("  \n")
    args = [str(empty) if a == "EMPTY" else a for a in args]
    message = message.replace("EMPTY", str(empty))
    assert main(["run", "duet", "--runs-dir", str(runs_dir), *args]) == 2
    assert capsys.readouterr().err == message
    assert not runs_dir.exists()


def test_runs_and_show(essay: Path, runs_dir: Path, capsys):
    with fake_ollama(duet_models()) as (server, _):
        assert run_duet(server.url, essay, runs_dir) == 0
    [run] = RunStore(runs_dir).list()
    run_id = run.meta.run_id
    capsys.readouterr()

    assert main(["runs", "--runs-dir", str(runs_dir)]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split() == [
        "run",
        "started",
        "shape",
        "models",
        "status",
        "turns",
        "tokens",
        "minutes",
        "flags",
    ]
    assert listing[2].split()[:2] == [run_id, run.meta.started_at[:10]]
    assert listing[2].split()[3:] == [
        "duet",
        "glm-4.7-flash,",
        "qwen3:32b",
        "completed",
        "4/4",
        "28",
        "0.0",
        "-",
    ]

    assert main(["show", run_id, "--runs-dir", str(runs_dir)]) == 0
    assert capsys.readouterr().out == (runs_dir / run_id / "transcript.md").read_text()

    assert main(["show", run_id, "--trace", "--runs-dir", str(runs_dir)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "turn",
        "speaker",
        "model",
        "in",
        "out",
        "tok/s",
        "ttft",
        "s",
        "load",
        "s",
        "latency",
        "s",
        "GPU",
        "flags",
    ]
    assert [row.split()[:5] for row in table[2:]][1] == ["2", "b", "qwen3:32b", table[3].split()[3], "4"]
    assert len(table) == 6

    assert main(["show", "../..", "--runs-dir", str(runs_dir)]) == 2
    assert capsys.readouterr().err == "duologue: error: '../..' is not a run id (see `duologue runs`)\n"
    assert main(["show", "nope", "--runs-dir", str(runs_dir)]) == 2
    assert capsys.readouterr().err == f"duologue: error: no run 'nope' in {runs_dir} (see `duologue runs`)\n"


def test_runs_dir_from_environment(essay: Path, tmp_path: Path, monkeypatch, capsys):
    target = tmp_path / "elsewhere"
    monkeypatch.setenv("DUOLOGUE_RUNS_DIR", str(target))
    with fake_ollama(duet_models()) as (server, _):
        assert (
            main(
                [
                    "run",
                    "duet",
                    "--model",
                    "a=glm-4.7-flash",
                    "--model",
                    "b=qwen3:32b",
                    "--topic",
                    "t",
                    "--host",
                    server.url,
                ]
            )
            == 0
        )
    assert len(RunStore(target).list()) == 1
    capsys.readouterr()
    assert main(["runs", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1


def test_embedded_without_the_extra_says_how_to_install_it(runs_dir: Path, monkeypatch, capsys):
    from graphs.embedded import llama_backend

    monkeypatch.setattr(llama_backend, "_LLAMA_IMPORT_ERROR", ImportError("No module named 'llama_cpp'"))
    assert main(["run", "duet", "--embedded", "--topic", "t", "--runs-dir", str(runs_dir)]) == 2
    assert capsys.readouterr().err == (
        "duologue: error: llama-cpp-python is not installed (No module named 'llama_cpp'); install it with: "
        "pip install 'duologue[embedded]' (llama-cpp-python compiles from source, about 5 minutes on 2 cores)\n"
    )
    assert not runs_dir.exists()


def test_serve_on_a_port_in_use_is_one_line(monkeypatch, capsys):
    import socket

    pytest.importorskip("llama_cpp")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    assert capsys.readouterr().err == (
        f"duologue: error: port {port} on 127.0.0.1 is already in use; pick another with --port\n"
    )
