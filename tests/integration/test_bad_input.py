"""Bad input to the `duologue` CLI (issue 13, points 6, 7, 11 and 14): one line on stderr, exit 2,
and no run folder, even with a server ready to hold the run; and the messages a new user meets."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from support.duet import A_REPLIES, B_REPLIES, duet_models, only_run, run_args
from support.fakeollama import FakeBackend, FakeModel, fake_ollama

from graphs.commands.cli import main
from graphs.embedded.protocol import OllamaServer
from graphs.engine.prompting import template_names
from graphs.engine.spec import load_shape, with_overrides
from graphs.records.tables import RUNS_HEADERS, runs_rows, table
from graphs.run.observe import SilentObserver
from graphs.run.runner import RunRequest, run_dialogue

GiB = 2**30
SHAPE_FILE = """\
name: pair
participants:
  - {name: a, model: glm-4.7-flash}
  - {name: b, model: qwen3:32b}
order: [a, b]
"""


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """The files the cases name: shape files that are wrong in one way each, and topic files."""
    made = {
        "INTERJECT": SHAPE_FILE + "interject_before: [-5, 1000]\n",
        "TRAVERSAL": SHAPE_FILE + "framing: {system: ../../../etc/passwd}\n",
        "NULS": "\x00" * 32,
    }
    paths = {}
    for name, text in made.items():
        paths[name] = tmp_path / f"{name.lower()}.yaml"
        paths[name].write_text(text)
    paths["BINARY"] = tmp_path / "binary.yaml"
    paths["BINARY"].write_bytes(b"name: pair\n\x89PNG\r\n\x1a\n\x00\x00")
    paths["DIR"] = tmp_path / "essays"
    paths["DIR"].mkdir()
    return paths


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["duet", "--topic", "t", "--turns", "1000000000"],
            "--turns 1000000000: a dialogue has at most 500 turns, as in a shape file",
        ),
        (
            ["duet", "--topic", "t", "--set", "a.temperature=inf"],
            "--set a.temperature=inf: temperature should be a finite number",
        ),
        (
            ["duet", "--topic", "t", "--set", "b.temperature=nan"],
            "--set b.temperature=nan: temperature should be a finite number",
        ),
        (
            ["duet", "--topic", "t", "--set", "a.num_ctx=99999999999999999999"],
            "--set a.num_ctx=99999999999999999999: num_ctx should be at most 16777216",
        ),
        (
            ["duet", "--topic", "t", "--set", "a.num_ctx=abc"],
            "--set a.num_ctx=abc: num_ctx should be a whole number",
        ),
        (
            ["duet", "--topic", "t", "--interject", "0"],
            "--interject 0: turn 0 is not a turn to pause before; name one from 2 to 4",
        ),
        (
            ["duet", "--topic", "t", "--interject", "99"],
            "--interject 99: turn 99 is not a turn to pause before; name one from 2 to 4",
        ),
        (
            ["INTERJECT", "--topic", "t"],
            "INTERJECT: interject_before: turn -5 is not a turn to pause before; name one from 2 to 4",
        ),
        (
            ["TRAVERSAL", "--topic", "t"],
            "TRAVERSAL: framing.system: no prompt template '../../../etc/passwd' in prompts/; known: KNOWN",
        ),
        (
            ["BINARY", "--topic", "t"],
            "BINARY: not UTF-8 text (byte 12 is 0x89); give a shape file saved as UTF-8",
        ),
        (
            ["DIR", "--topic", "t"],
            "DIR: is a directory, not a shape file",
        ),
        (
            ["duet", "--topic-file", "/dev/zero"],
            "--topic-file /dev/zero: is a character device, not a text file",
        ),
        (
            ["duet", "--topic-file", "DIR"],
            "--topic-file DIR: is a directory, not a text file",
        ),
        (
            ["duet", "--topic-file", "NULS"],
            "--topic-file NULS: it holds NUL bytes, so it is not text (UTF-16? save it as UTF-8); give a text file",
        ),
    ],
)
def test_bad_input_is_refused_before_a_run_folder_exists(
    runs_dir: Path, files: dict[str, Path], capsys, args: list[str], message: str
):
    def named(text: str) -> str:
        for name, path in files.items():
            text = text.replace(name, str(path))
        return text.replace("KNOWN", ", ".join(template_names()))

    with fake_ollama(duet_models()) as (server, backend):
        command = ["run", *[named(a) for a in args], "--model", "a=glm-4.7-flash", "--model", "b=qwen3:32b"]
        assert main([*command, "--host", server.url, "--runs-dir", str(runs_dir)]) == 2
    assert capsys.readouterr().err == f"duologue: error: {named(message)}\n"
    assert not runs_dir.exists()
    assert backend.chat_requests == [], "refused before any model was asked"


def test_embedded_names_the_models_it_has_rather_than_a_port_and_ollama_pull(runs_dir: Path, capsys):
    # Refused before the embedded server starts, so this needs neither llama-cpp-python nor a port.
    args = [
        "run",
        "duet",
        "--embedded",
        "--model",
        "b=qwen3:32b",
        "--topic",
        "t",
        "--runs-dir",
        str(runs_dir),
    ]
    assert main(args) == 2
    assert capsys.readouterr().err == (
        "duologue: error: --embedded: the embedded server has no model 'qwen3:32b' (for b); it has "
        "smollm2:135m, smollm2:135m-warm; pick one with --model b=smollm2:135m, or drop --embedded to use "
        "Ollama\n"
    )
    assert not runs_dir.exists()


def test_a_thinking_turn_as_long_as_the_references_is_not_cut(runs_dir: Path, capsys):
    """The reference's turn 3 ran to 1,546 tokens, thinking included: the old default cut it at 1024."""
    long_turn = " ".join(f"w{i}" for i in range(1537))  # and 9 words of thinking
    models = [
        FakeModel("glm-4.7-flash", replies=A_REPLIES),
        FakeModel("qwen3:32b", replies=[long_turn, B_REPLIES[1]], thinks=True),
    ]
    with fake_ollama(models) as (server, backend):
        assert main(run_args(server.url, runs_dir)) == 0
        options = {r.model: r.options for r in backend.chat_requests}
    assert (options["qwen3:32b"]["num_predict"], options["qwen3:32b"]["num_ctx"]) == (4096, 9216)
    assert (options["glm-4.7-flash"]["num_predict"], options["glm-4.7-flash"]["num_ctx"]) == (1024, 6144)
    turn2 = only_run(runs_dir).turn_records[1]
    assert (turn2.done_reason, turn2.flags, turn2.completion_tokens) == ("stop", ["thinking"], 1546)


def test_a_run_stopped_then_resumed_is_listed_completed_without_the_stop(runs_dir: Path, capsys):
    shape = with_overrides(load_shape("duet"), {"a": "glm-4.7-flash", "b": "qwen3:32b"}, [])
    long_reply = " ".join(f"word{i}" for i in range(40))
    models = [FakeModel("glm-4.7-flash", replies=A_REPLIES), FakeModel("qwen3:32b", replies=[long_reply])]
    with fake_ollama(models, token_delay_s=0.02) as (server, _):
        request = RunRequest(
            shape=shape,
            topic="An essay.",
            turns=4,
            hosts={"a": server.url, "b": server.url},
            runs_dir=runs_dir,
        )

        class StopInTurnTwo(SilentObserver):
            def __init__(self) -> None:
                self.turn = 0

            def turn_started(self, planned, label, model):
                self.turn = planned.number

            def token(self, text, thinking):
                if self.turn == 2:
                    request.stop.set()

        with pytest.raises(Exception, match="interrupted"):
            run_dialogue(request, StopInTurnTwo())
        stopped = only_run(runs_dir)
        assert (stopped.status, stopped.flags) == ("interrupted", ["stopped"])
        assert main(["resume", stopped.meta.run_id, "--runs-dir", str(runs_dir)]) == 0
    resumed = only_run(runs_dir)
    assert [(r.turn, r.stopped) for r in resumed.turn_records] == [
        (1, False),
        (2, True),
        (2, False),
        (3, False),
        (4, False),
    ]
    capsys.readouterr()
    assert main(["runs", "--runs-dir", str(runs_dir)]) == 0
    assert capsys.readouterr().out == table(RUNS_HEADERS, runs_rows([resumed])) + "\n"
    row = runs_rows([resumed])[0]
    assert (row[4], row[-1]) == ("completed", "-")
    assert main(["runs", "--json", "--runs-dir", str(runs_dir)]) == 0
    assert json.loads(capsys.readouterr().out)[0]["flags"] == []


# -- doctor -----------------------------------------------------------------------------------


class EmbeddedLike(FakeBackend):
    """The test server, marked as duologue's embedded server and serving its models' names."""

    version = "0.15.6+embedded"


def test_doctor_accepts_embedded_as_its_own_hint_says(monkeypatch, capsys):
    from graphs.embedded import serve

    started: list[OllamaServer] = []

    def start_embedded() -> OllamaServer:
        started.append(OllamaServer(EmbeddedLike(["smollm2:135m", "smollm2:135m-warm"])).start())
        return started[0]

    monkeypatch.setattr(serve, "start_embedded", start_embedded)
    assert main(["doctor", "duet", "--embedded"]) == 0
    url = started[0].url
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{url}: Ollama 0.15.6+embedded (duologue's embedded server, CPU only)"
    assert [line.split()[:4] for line in lines[1:3]] == [
        ["a", "smollm2:135m", "present;", "loaded"],
        ["b", "smollm2:135m-warm", "present;", "loaded"],
    ]
    assert lines[-1] == "ok: every model is there and runs as required"
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", started[0].port)):
        pass  # the server started for the check was stopped after it


def test_doctor_with_embedded_refuses_a_model_it_does_not_have(capsys):
    assert main(["doctor", "--embedded", "--model", "qwen3:32b"]) == 2
    assert capsys.readouterr().err == (
        "duologue: error: --embedded: the embedded server has no model 'qwen3:32b' (for a); it has "
        "smollm2:135m, smollm2:135m-warm; pick one with --model a=smollm2:135m, or drop --embedded to use "
        "Ollama\n"
    )


def test_doctor_checks_a_model_named_where_a_shape_goes(capsys):
    with fake_ollama(duet_models()) as (server, _):
        assert main(["doctor", "qwen3:32b", "--host", server.url]) == 0
        assert main(["doctor", "nope.yaml", "--host", server.url]) == 2
    out, err = capsys.readouterr()
    assert out.splitlines()[1].split()[:3] == ["a", "qwen3:32b", "present;"]
    assert err == (
        "duologue: error: no shape 'nope.yaml': not a built-in (debate, duet, interview, panel) and no such file\n"
    )


def test_doctor_says_in_sizes_why_a_model_cannot_be_laid_out(capsys):
    big = FakeModel("qwen3:235b", weights_bytes=42 * GiB)
    with fake_ollama([big], vram_bytes=24 * GiB, strict_num_gpu=True) as (server, backend):
        assert main(["doctor", "qwen3:235b", "--host", server.url]) == 1
        assert backend.loaded() == [], "the probe's load was undone"
    assert capsys.readouterr().out.splitlines()[-1] == (
        "problem: a (qwen3:235b): needs ~42.0 GB with num_gpu 999, the GPU has ~24.0 GB free: try "
        "--set a.num_gpu=null (Ollama puts what fits on the GPU, the rest on the CPU) or a smaller quantization"
    )


def test_doctor_holds_turns_and_options_to_the_same_limits(capsys):
    assert main(["doctor", "duet", "--turns", "100000"]) == 2
    assert main(["doctor", "--model", "qwen3:32b", "--set", "a.num_ctx=abc"]) == 2
    assert capsys.readouterr().err == (
        "duologue: error: --turns 100000: a dialogue has at most 500 turns, as in a shape file\n"
        "duologue: error: --set a.num_ctx=abc: num_ctx should be a whole number\n"
    )
