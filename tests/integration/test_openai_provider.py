"""Participants on OpenAI-compatible servers, through the CLI: llama-cpp-python's own server for
what a run does, a scripted one for what that server never sends (usage in a stream, llama.cpp's
timings, reasoning) and for a server failing mid-run.

Every test here runs under `loopback_only`: $OPENAI_BASE_URL and $OPENAI_API_KEY point elsewhere,
and a test whose code dials beyond 127.0.0.1 (or asks tiktoken for an encoding) fails.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.duet import A_REPLIES, duet_models, only_run, turn_sections
from support.fakeollama import fake_ollama
from support.net import free_port
from support.openaiserver import (
    MODEL_ALIAS,
    ScriptedReply,
    llama_cpp_server,
    loopback_only,  # noqa: F401 - the fixture, used by every test below
    recording_proxy,
    scripted_openai,
    sse_chunks,
    streamed_text,
)
from support.otlp import otlp_receiver

from graphs.commands.cli import main
from graphs.engine.schedule import PlannedTurn
from graphs.engine.spec import load_shape, with_overrides
from graphs.errors import RunInterrupted
from graphs.records.store import RunStore
from graphs.run.observe import SilentObserver
from graphs.run.runner import RunRequest, run_dialogue

pytestmark = pytest.mark.usefixtures("loopback_only")

SECRET = "sk-local-7f3a9c1e5b2d8046"
KEY_VARIABLE = "DUOLOGUE_TEST_LLAMA_KEY"


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's server with the embedded SmolLM2 as `smol`: its base_url."""
    with llama_cpp_server(log=tmp_path_factory.mktemp("llama") / "server.log") as base_url:
        yield base_url


def origin(base_url: str) -> str:
    return base_url.removesuffix("/v1")


def duet(ollama_url: str, runs_dir: Path, b: str, *extra: str) -> list[str]:
    return [
        "run", "duet", "--model", "a=glm-4.7-flash", "--model", f"b={b}", "--topic", "An essay.",
        "--host", ollama_url, "--runs-dir", str(runs_dir), "--no-trace", *extra,
    ]  # fmt: skip


SAMPLING = ["--set", "b.temperature=0", "--set", "b.seed=7", "--set", "b.num_predict=12"]


def test_a_duet_with_one_participant_on_llama_cpp_server(llama: str, runs_dir: Path, capsys):
    with fake_ollama(duet_models()) as (server, _backend), recording_proxy(origin(llama)) as proxy:
        b = f"openai:{MODEL_ALIAS}@{proxy.url}/v1"
        assert main(duet(server.url, runs_dir, b, "--turns", "4", *SAMPLING)) == 0
    out, err = capsys.readouterr()
    assert err == ""
    run = only_run(runs_dir)
    base_url = f"{proxy.url}/v1"

    # The server was asked for its models once, before any turn, then for b's two turns.
    assert [(e.method, e.path) for e in proxy.exchanges] == [
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/chat/completions"),
    ]
    chats = proxy.chats()
    bodies = [chat.json() for chat in chats]
    for body in bodies:
        assert {k: v for k, v in body.items() if k != "messages"} == {
            "model": MODEL_ALIAS,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": 0.0,
            "seed": 7,
            "max_tokens": 12,
        }
    # No key named: a placeholder goes, never $OPENAI_API_KEY's.
    assert {chat.headers["authorization"] for chat in proxy.exchanges} == {"Bearer none"}

    # What b said is what the server streamed; a's is the Ollama server's.
    replies = [streamed_text(chat.response).strip() for chat in chats]
    assert all(replies)
    said = [section.split("\n", 2)[2].strip() for section in turn_sections(run.transcript())]
    assert said == [A_REPLIES[0], replies[0], A_REPLIES[1], replies[1]]
    # b's second turn is sent its own first one as its own words, then a's, then the framing.
    second = bodies[1]["messages"]
    assert [m["role"] for m in second][-3:] == ["assistant", "user", "user"]
    assert second[-3]["content"] == replies[0]
    assert A_REPLIES[1] in second[-2]["content"]

    # Each of b's turns: the tokens it streamed (this server sends no usage), residency unknown.
    rows = {row.turn: row for row in run.trace if row.is_turn}
    for number, chat in zip((2, 4), chats, strict=True):
        row = rows[number]
        pieces = [
            c for c in sse_chunks(chat.response) if (c["choices"] or [{}])[0].get("delta", {}).get("content")
        ]
        finish = [c["choices"][0]["finish_reason"] for c in sse_chunks(chat.response) if c["choices"]][-1]
        assert (row.host, row.model, row.residency, row.gpu_fraction) == (
            base_url,
            MODEL_ALIAS,
            "unknown",
            None,
        )
        assert (row.completion_tokens, row.prompt_tokens, row.done_reason) == (len(pieces), None, finish)
        assert row.model_extra and row.model_extra["counted_by"] == "stream"
        assert row.tokens_per_s is not None and row.tokens_per_s > 0
        assert row.ttft_s is not None and row.ttft_s <= row.latency_s
        assert row.flags == (["cut by length"] if finish == "length" else [])
        assert f"{row.completion_tokens} tokens" in out  # the stats line, as the terminal showed it

    # inputs.jsonl holds exactly the messages the server was sent.
    inputs = {record.turn: record.messages for record in run.inputs()}
    assert [inputs[2], inputs[4]] == [body["messages"] for body in bodies]

    meta = run.meta
    assert [(p.name, p.host) for p in meta.participants] == [("a", server.url), ("b", base_url)]
    assert meta.participants[1].options == {"temperature": 0.0, "seed": 7, "num_predict": 12}
    assert meta.versions[f"openai@{base_url}"] == "unknown (OpenAI-compatible)"
    assert meta.spec and meta.spec["participants"][1]["provider"] == "openai"


def test_a_fork_moves_a_participant_to_llama_cpp_server(llama: str, runs_dir: Path, capsys):
    with fake_ollama(duet_models()) as (server, _backend):
        assert main(duet(server.url, runs_dir, "qwen3:32b", "--turns", "4")) == 0
        original = only_run(runs_dir)
        b = f"b=openai:{MODEL_ALIAS}@{llama}"
        fork = ["fork", original.meta.run_id, "--at", "2", "--model", b, *SAMPLING]
        assert main([*fork, "--runs-dir", str(runs_dir), "--no-trace"]) == 0
    capsys.readouterr()
    [forked] = [run for run in RunStore(runs_dir).list() if run.meta.forked_from]
    assert [(p.name, p.model, p.host) for p in forked.meta.participants] == [
        ("a", "glm-4.7-flash", server.url),
        ("b", MODEL_ALIAS, llama),
    ]
    rows = {row.turn: row for row in forked.trace if row.is_turn}
    assert rows[4].host == llama and rows[4].residency == "unknown"
    assert rows[4].completion_tokens is not None and 0 < rows[4].completion_tokens <= 12


def test_the_api_key_is_read_from_its_variable_and_never_written(
    runs_dir: Path, tmp_path: Path, capsys, monkeypatch
):
    monkeypatch.setenv(KEY_VARIABLE, SECRET)
    with (
        llama_cpp_server(api_key=SECRET) as base_url,
        fake_ollama(duet_models()) as (server, _backend),
        otlp_receiver() as collector,
    ):
        shape = tmp_path / "keyed.yaml"
        shape.write_text(
            "name: keyed\nparticipants:\n  - {name: a, model: glm-4.7-flash}\n"
            f"  - {{name: b, model: {MODEL_ALIAS}, provider: openai, base_url: '{base_url}', "
            f"api_key_env: {KEY_VARIABLE}, options: {{temperature: 0, num_predict: 8}}}}\n"
            "order: [a, b]\nturns: 2\n"
        )
        command = [
            "run",
            str(shape),
            "--topic",
            "An essay.",
            "--host",
            server.url,
            "--runs-dir",
            str(runs_dir),
        ]
        assert main([*command, "--otel", collector.url]) == 0  # the trace exported, too
        out, err = capsys.readouterr()

        # A wrong key: refused up front, in one line, the key not in it.
        monkeypatch.setenv(KEY_VARIABLE, "sk-wrong")
        assert main([*command, "--no-trace"]) == 2
        refused = capsys.readouterr().err
    assert refused == (
        f"duologue: error: the server at {base_url} refused the API key (/models: HTTP 401); "
        "check the variable api_key_env names\n"
    )
    run = only_run(runs_dir)
    assert run.meta.status == "completed"
    assert run.meta.spec and run.meta.spec["participants"][1]["api_key_env"] == KEY_VARIABLE
    written = {path: path.read_bytes() for path in runs_dir.rglob("*") if path.is_file()}
    assert {path.name for path in written} >= {"run.json", "trace.jsonl", "inputs.jsonl", "transcript.md"}
    assert [path for path, data in written.items() if SECRET.encode() in data] == []
    assert SECRET not in out + err
    exported = [(span.name, span.attributes) for span in collector.spans]
    assert any(attributes.get("duologue.speaker") == "b" for _name, attributes in exported), exported
    assert SECRET not in repr(exported)


@pytest.fixture
def unset_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_VARIABLE, raising=False)


@pytest.mark.usefixtures("unset_key")
@pytest.mark.parametrize(
    ("b", "extra", "message"),
    [
        (
            "openai:smol@http://127.0.0.1:PORT/v1",
            [],
            "cannot reach an OpenAI-compatible server at http://127.0.0.1:PORT/v1; "
            "is it running, and is that its address?",
        ),
        (
            "openai:qwen3:32b@LLAMA",
            [],
            "the server at LLAMA does not serve 'qwen3:32b' (it serves: smol); "
            "name one of those, as --model NAME=openai:MODEL@URL",
        ),
        (
            "openai:smol@LLAMA",
            ["--set", "b.num_gpu=20"],
            "--set b.num_gpu: num_gpu is an Ollama option the OpenAI API has no field for; "
            "set its GPU layers (llama-server --n-gpu-layers) on the server at LLAMA instead",
        ),
        (
            "openai:smol@LLAMA",
            ["--set", "b.keep_alive=5m"],
            "--set b.keep_alive: keep_alive is an Ollama option the OpenAI API has no field for; "
            "set how long it keeps the model (it holds it while it runs) on the server at LLAMA instead",
        ),
        (
            "openai:smol",
            [],
            "--model b=openai:smol: expected b=openai:MODEL@URL, e.g. b=openai:qwen3@http://127.0.0.1:8080/v1",
        ),
        (
            "openai:smol@LLAMA",
            ["--host", "b=http://127.0.0.1:8081"],
            "--host b=http://127.0.0.1:8081: b is on the OpenAI-compatible server at LLAMA; "
            "move it with --model b=openai:MODEL@URL",
        ),
    ],
)
def test_bad_input_is_one_line_before_any_turn(llama: str, runs_dir: Path, capsys, b: str, extra, message):
    port = str(free_port())
    with fake_ollama(duet_models()) as (server, backend):
        code = main(duet(server.url, runs_dir, b.replace("LLAMA", llama).replace("PORT", port), *extra))
    assert code == 2
    assert (
        capsys.readouterr().err
        == f"duologue: error: {message.replace('LLAMA', llama).replace('PORT', port)}\n"
    )
    assert not runs_dir.exists()
    assert backend.chat_requests == []


@pytest.mark.usefixtures("unset_key")
def test_an_api_key_variable_that_is_not_set(llama: str, runs_dir: Path, tmp_path: Path, capsys):
    shape = tmp_path / "keyed.yaml"
    shape.write_text(
        "name: keyed\nparticipants:\n  - {name: a, model: glm-4.7-flash}\n"
        f"  - {{name: b, model: {MODEL_ALIAS}, provider: openai, base_url: '{llama}', api_key_env: {KEY_VARIABLE}}}\n"
        "order: [a, b]\n"
    )
    with fake_ollama(duet_models()) as (server, backend):
        command = ["run", str(shape), "--topic", "x", "--host", server.url, "--runs-dir", str(runs_dir)]
        assert main(command) == 2
    assert capsys.readouterr().err == (
        f"duologue: error: b: api_key_env names ${KEY_VARIABLE}, which is not set; "
        f"export {KEY_VARIABLE}=KEY for the server at {llama}, or drop api_key_env\n"
    )
    assert not runs_dir.exists() and backend.chat_requests == []


def test_an_ollama_option_in_a_shape_file(runs_dir: Path, tmp_path: Path, capsys):
    shape = tmp_path / "mixed.yaml"
    shape.write_text(
        "name: mixed\nparticipants:\n  - {name: a, model: glm-4.7-flash}\n"
        "  - {name: b, model: smol, provider: openai, base_url: 'http://127.0.0.1:8080/v1', "
        "options: {num_ctx: 8192}}\norder: [a, b]\n"
    )
    assert main(["run", str(shape), "--topic", "x", "--runs-dir", str(runs_dir)]) == 2
    assert capsys.readouterr().err == (
        f"duologue: error: {shape}: participants.1: num_ctx is an Ollama option the OpenAI API has no field "
        "for; set its context size (llama-server --ctx-size, vLLM --max-model-len) on the server at "
        "http://127.0.0.1:8080/v1 instead\n"
    )


def test_doctor_says_residency_is_unknown_and_checks_what_the_server_serves(llama: str, capsys):
    with fake_ollama(duet_models()) as (server, _backend):
        args = ["doctor", "--model", "a=glm-4.7-flash", "--model", f"b=openai:{MODEL_ALIAS}@{llama}"]
        assert main([*args, "--host", server.url]) == 0
        lines = capsys.readouterr().out.splitlines()
    assert f"{llama}: OpenAI-compatible server (residency unknown: it does not say where models sit)" in lines
    assert (
        f"  b      {MODEL_ALIAS}  served; residency unknown (placement and GPU are the server's own settings)"
        in lines
    )
    assert lines[-1] == "ok: every model is there and runs as required"

    assert main(["doctor", "--model", f"b=openai:qwen3@{llama}"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{llama}: OpenAI-compatible server (residency unknown: it does not say where models sit)",
        "  b      qwen3  missing",
        f"problem: b (qwen3): not served at {llama} (it serves: {MODEL_ALIAS}); "
        f"check one of those with --model b=openai:MODEL@{llama}",
    ]

    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    assert main(["doctor", "--model", f"b=openai:{MODEL_ALIAS}@{nowhere}"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{nowhere}: unreachable",
        f"  b      {MODEL_ALIAS}  not checked",
        f"problem: {nowhere}: cannot reach an OpenAI-compatible server at {nowhere}; "
        "is it running, and is that its address?",
    ]


def test_usage_timings_and_reasoning_from_a_llama_server_style_stream(runs_dir: Path, capsys):
    """What llama.cpp's C++ llama-server sends and llama-cpp-python's does not: the usage
    (include_usage), its own timings, and reasoning_content kept apart from the answer."""
    timings = {
        "cache_n": 12, "prompt_n": 30, "prompt_ms": 120.0, "prompt_per_second": 250.0,
        "predicted_n": 5, "predicted_ms": 250.0, "predicted_per_second": 20.0,
    }  # fmt: skip

    def reply(number: int) -> ScriptedReply:
        return ScriptedReply(
            pieces=["We ", "agree ", "on ", "the ", "duality."],
            reasoning=["Let me ", "weigh it."],
            usage={"prompt_tokens": 42, "completion_tokens": 9, "total_tokens": 51},
            timings=timings,
        )

    with scripted_openai(["smol"], reply) as scripted, fake_ollama(duet_models()) as (server, backend):
        b = f"openai:smol@{scripted.base_url}"
        assert main(duet(server.url, runs_dir, b, "--turns", "4", "--set", "b.min_tok_s=50")) == 0
    capsys.readouterr()
    run = only_run(runs_dir)
    rows = {row.turn: row for row in run.trace if row.is_turn}
    for number in (2, 4):
        row = rows[number]
        assert (row.prompt_tokens, row.completion_tokens) == (42, 9)  # the usage's
        assert (row.tokens_per_s, row.prompt_tokens_per_s) == (20.0, 250.0)  # llama.cpp's own rates
        assert row.thinking == "Let me weigh it." and row.thinking_chars == len("Let me weigh it.")
        assert row.model_extra and row.model_extra["server_timings"] == timings
        assert row.eval_includes_thinking  # the 9 tokens count the thinking, as Ollama's eval_count does
        assert row.flags == ["slow", "thinking"] and row.degraded  # 20 tok/s, under its min_tok_s
    sections = turn_sections(run.transcript())
    assert (
        sections[1]
        == "### Turn 2: smol — Response\n"
        + f"*(9 tokens, 20.0 tok/s, {rows[2].latency_s:.0f}s, slow, thinking)*\n\n"
        + "We agree on the duality."
    )
    # The thinking is never relayed: a is sent b's answer only.
    third = backend.chat_requests[1].messages
    assert any("We agree on the duality." in m["content"] for m in third)
    assert not any("weigh it" in m["content"] for m in third)
    assert all(body["stream_options"] == {"include_usage": True} for body in scripted.requests)


def test_a_server_failing_mid_run_fails_the_run_in_one_line(runs_dir: Path, capsys):
    def reply(number: int) -> ScriptedReply:
        return ScriptedReply(pieces=["Fine."], status=200 if number == 0 else 500)

    with scripted_openai(["smol"], reply) as scripted, fake_ollama(duet_models()) as (server, _backend):
        assert main(duet(server.url, runs_dir, f"openai:smol@{scripted.base_url}", "--turns", "4")) == 1
    err = capsys.readouterr().err
    run = only_run(runs_dir)
    assert err == f"duologue: run failed: {run.meta.error} (run {run.meta.run_id}: 3 finished turn(s) kept)\n"
    assert run.meta.status == "failed"
    assert run.meta.error == (
        f"turn 4 (smol) failed: the server at {scripted.base_url} answered HTTP 500: scripted failure"
    )


def test_a_run_failed_on_such_a_server_resumes_there(runs_dir: Path, capsys):
    healthy = {"now": False}

    def reply(number: int) -> ScriptedReply:
        ok = number == 0 or healthy["now"]
        return ScriptedReply(pieces=[f"Answer {number}."], status=200 if ok else 500)

    with scripted_openai(["smol"], reply) as scripted, fake_ollama(duet_models()) as (server, _backend):
        assert main(duet(server.url, runs_dir, f"openai:smol@{scripted.base_url}", "--turns", "4")) == 1
        failed = only_run(runs_dir)
        healthy["now"] = True
        assert main(["resume", failed.meta.run_id, "--runs-dir", str(runs_dir), "--no-trace"]) == 0
    capsys.readouterr()
    run = only_run(runs_dir)
    assert run.meta.status == "completed"
    said = [section.split("\n", 2)[2].strip() for section in turn_sections(run.transcript())]
    assert said == [A_REPLIES[0], "Answer 0.", A_REPLIES[1], "Answer 2."]  # request 1 was the failed one
    rows = [row for row in run.turn_records if row.speaker == "b"]
    assert [(r.turn, r.host, r.error is None) for r in rows] == [
        (2, scripted.base_url, True),
        (4, scripted.base_url, False),  # the failed attempt, kept in the log
        (4, scripted.base_url, True),
    ]
    assert [r.residency for r in rows if r.error is None] == ["unknown", "unknown"]


class StopAtFirstToken(SilentObserver):
    """Sets the run's stop once b's turn has streamed its first token, as the page's Stop would."""

    def __init__(self) -> None:
        self.request: RunRequest | None = None
        self.speaker = ""

    def turn_started(self, planned: PlannedTurn, label: str, model: str) -> None:
        self.speaker = planned.speaker

    def token(self, text: str, thinking: bool) -> None:
        if self.speaker == "b" and self.request is not None:
            self.request.stop.set()


def test_a_stop_ends_the_turn_in_progress_and_closes_its_stream(runs_dir: Path):
    def reply(number: int) -> ScriptedReply:
        return ScriptedReply(pieces=["word "] * 200, delay_s=0.05)

    with scripted_openai(["smol"], reply) as scripted, fake_ollama(duet_models()) as (server, _backend):
        shape = with_overrides(
            load_shape("duet"), {"a": "glm-4.7-flash", "b": f"openai:smol@{scripted.base_url}"}, []
        )
        request = RunRequest(
            shape=shape, topic="x", turns=4, hosts={"a": server.url, "b": server.url}, runs_dir=runs_dir,
            trace=False,
        )  # fmt: skip
        observer = StopAtFirstToken()
        observer.request = request
        with pytest.raises(RunInterrupted):
            run_dialogue(request, observer)
        wait = 0
        while not scripted.closed and wait < 400:  # the server sees the closed stream at its next piece
            time.sleep(0.05)
            wait += 1
    run = only_run(runs_dir)
    assert run.meta.status == "interrupted"
    [stopped] = [row for row in run.trace if row.turn == 2]
    assert stopped.stopped and stopped.flags == ["stopped"]
    assert scripted.closed == [0], "the request was closed, so the server stopped generating"
