"""The shapes held through LangGraph Server (`langgraph dev`) and its SDK, as a Studio user holds them.

One server for the module, started as a subprocess in a temporary folder (where it writes its
.langgraph_api/), against the Ollama-protocol test server in this process; with
$DUOLOGUE_RUNS_DIR set, so every run it holds is also recorded. Each test holds its dialogues
on models of its own, so the requests each model received are that test's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient
from support.fakeollama import FakeBackend, FakeModel, fake_ollama
from support.net import free_port
from support.otlp import Receiver, otlp_receiver

from graphs.commands.cli import EXIT_PAUSED, main
from graphs.records.store import RunStore

REPO = Path(__file__).resolve().parents[2]
STARTUP_S = 240.0  # the first start imports langgraph_api and every graph: slow on a loaded CI machine
GiB = 2**30
TOPIC = "memory and inheritance"


def replies(name: str) -> list[str]:
    return [
        f"{name} says memory is carried by what we repeat.",
        f"{name} says inheritance is a choice we keep.",
    ]


MODELS = [
    FakeModel(name, replies=replies(name))
    for name in ("duet-one", "duet-two", "pause-one", "pause-two", "pause-notes")
]


@dataclass
class Served:
    url: str
    client: SyncLangGraphClient
    backend: FakeBackend
    ollama_url: str
    runs_dir: Path
    folder: Path
    log: Path
    collector: Receiver


def start_server(folder: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`langgraph dev` on a free port, with langgraph.json's graphs by absolute path, in `folder`."""
    config = json.loads((REPO / "langgraph.json").read_text())
    config["dependencies"] = [str(REPO)]
    config["graphs"] = {name: str(REPO / path.removeprefix("./")) for name, path in config["graphs"].items()}
    (folder / "langgraph.json").write_text(json.dumps(config))
    port = free_port()
    log = folder / "server.log"
    command = [str(Path(sys.executable).parent / "langgraph"), "dev", "--no-browser", "--no-reload"]
    command += ["--port", str(port), "--config", str(folder / "langgraph.json")]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                return process, url, log
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(process)
    pytest.fail(f"langgraph dev did not answer {url}/ok (exit {process.poll()}); its log:\n{log.read_text()}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """The server and its workers, as one process group."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("langgraph-dev")
    runs_dir = folder / "runs"
    with fake_ollama(MODELS) as (ollama, backend), otlp_receiver() as collector:
        unset = ("LANGSMITH", "LANGCHAIN", "OTEL_")
        env = {key: value for key, value in os.environ.items() if not key.startswith(unset)}
        env |= {
            "OLLAMA_HOST": ollama.url,
            "DUOLOGUE_RUNS_DIR": str(runs_dir),
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "LANGSMITH_TRACING": "false",
            "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        }
        process, url, log = start_server(folder, env)
        try:
            yield Served(url, get_sync_client(url=url), backend, ollama.url, runs_dir, folder, log, collector)
        finally:
            stop_server(process)
    assert (folder / ".langgraph_api").is_dir()  # where `langgraph dev` keeps its state: not the checkout


def trace_rows(run_folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_folder / "trace.jsonl").read_text().splitlines()]


NUMBERS = (
    "prompt_tokens",
    "completion_tokens",
    "tokens_per_s",
    "prompt_tokens_per_s",
    "ttft_s",
    "load_s",
    "gpu_fraction",
)
"""A turn's numbers that are its trace row's fields, by the same name: the same facts, the same rules."""


def test_a_duet_held_through_the_server_keeps_every_guarantee(served: Served, capsys):
    client = served.client
    thread = client.threads.create()["thread_id"]
    context = {
        "participants": {
            "a": {"model": "duet-one"},
            "b": {"model": "duet-two", "options": {"num_ctx": 4096, "temperature": 0.3}},
        }
    }
    pieces = [
        part.data[0]
        for part in client.runs.stream(
            thread,
            "duet",
            input={"topic": TOPIC, "max_turns": 4},
            context=context,
            stream_mode="messages-tuple",
        )
        if part.event == "messages"
    ]
    state = client.threads.get_state(thread)
    turns = state["values"]["turns"]

    # Tokens streamed in LangGraph's messages mode, piece by piece, and add up to the turns.
    assert len(pieces) > 4 * 3
    assert "".join(str(p["content"]) for p in pieces).replace(" ", "") == "".join(
        t["text"] for t in turns
    ).replace(" ", "")

    # The four turns with their numbers, which are the trace's own (same facts, same rules).
    run_folder = served.runs_dir / thread
    rows = {row["turn"]: row for row in trace_rows(run_folder) if row["turn"] is not None}
    speakers = [("a", "opening", "duet-one", 0), ("b", "response", "duet-two", 0)]
    speakers += [("a", "reply", "duet-one", 1), ("b", "closing", "duet-two", 1)]
    expected = [
        {
            "number": n,
            "speaker": speaker,
            "kind": kind,
            "text": replies(model)[k],
            "thinking": "",
            "numbers": {key: rows[n][key] for key in NUMBERS} | {"flags": []},
        }
        for n, (speaker, kind, model, k) in enumerate(speakers, start=1)
    ]
    assert turns == expected
    assert [(t["numbers"]["gpu_fraction"], t["numbers"]["tokens_per_s"]) for t in turns] == [(1.0, 90.0)] * 4
    assert [t["numbers"]["completion_tokens"] for t in turns] == [9, 9, 8, 8]  # one token a word
    assert all(0 < t["numbers"]["ttft_s"] <= rows[t["number"]]["latency_s"] for t in turns)

    # Every request of a participant, its preloads included, carried the same complete options.
    pinned = {"num_gpu": 999, "seed": -1, "num_predict": 1024}
    sent = {
        "duet-one": pinned | {"num_ctx": 6144, "temperature": 0.7},
        "duet-two": pinned | {"num_ctx": 4096, "temperature": 0.3},
    }
    for model, options in sent.items():
        loads = [opts for name, opts, _keep in served.backend.load_requests if name == model]
        chats = [r.options for r in served.backend.chat_requests if r.model == model]
        assert len(loads) >= 1 and len(chats) == 2
        assert loads + chats == [options] * (len(loads) + len(chats))
    assert not [event for event in served.backend.events if event == ("reload", "duet-one")]

    # The run is recorded under the thread's id, and `duologue show` reads it like any run.
    run = RunStore(served.runs_dir).load(thread)
    assert run.meta.status == "completed" and run.meta.run_id == thread
    assert [(p.name, p.model, p.host) for p in run.meta.participants] == [
        ("a", "duet-one", served.ollama_url),
        ("b", "duet-two", served.ollama_url),
    ]
    assert {
        p.model: {k: v for k, v in p.options.items() if k != "keep_alive"} for p in run.meta.participants
    } == sent
    assert sorted(path.name for path in run_folder.iterdir()) == [
        "inputs.jsonl", "run.json", "trace.jsonl", "transcript.md",
    ]  # fmt: skip
    assert [(i.turn, i.speaker, i.model) for i in run.inputs()] == [
        (1, "a", "duet-one"), (2, "b", "duet-two"), (3, "a", "duet-one"), (4, "b", "duet-two"),
    ]  # fmt: skip
    assert [row["seq"] for row in trace_rows(run_folder)] == list(range(1, 9))
    assert main(["show", thread, "--runs-dir", str(served.runs_dir)]) == 0
    shown = capsys.readouterr().out
    assert all(turn["text"] in shown for turn in turns)
    assert shown.count("### Turn") == 4 and "(9 tokens, 90.0 tok/s" in shown
    assert main(["analyze", thread, "--runs-dir", str(served.runs_dir)]) == 0
    assert "duet-one" in capsys.readouterr().out


def test_an_invalid_context_is_one_line_in_the_runs_result(served: Served):
    client = served.client
    thread = client.threads.create()["thread_id"]
    result = client.runs.wait(
        thread,
        "duet",
        input={"topic": TOPIC, "max_turns": 4},
        context={"participants": {"a": {"options": {"num_ctx": "large"}}}},
        raise_error=False,
    )
    assert result == {
        "__error__": {
            "error": "ContextError",
            "message": "the run's context: participants.a.options.num_ctx: should be a whole number",
        }
    }
    result = client.runs.wait(
        thread,
        "duet",
        input={"topic": TOPIC, "max_turns": 4},
        context={"participants": {"c": {"model": "duet-one"}}},
        raise_error=False,
    )
    assert result["__error__"]["message"] == (
        "the run's context: participants.c: shape 'duet' has no participant 'c'; its participants are a, b"
    )
    assert not (served.runs_dir / thread).exists()  # no model was reached: nothing to record

    assistant = client.assistants.create("dialogue", config={"configurable": {"shape": "no-such-shape"}})
    result = client.runs.wait(
        None, assistant["assistant_id"], input={"topic": TOPIC, "max_turns": 4}, raise_error=False
    )
    assert result["__error__"]["message"] == (
        "configurable.shape: no shape 'no-such-shape': not a built-in (debate, duet, interview, panel) and no such file"
    )


PAUSING_SHAPE = """\
name: pausing
participants:
  - name: a
    model: pause-one
  - name: b
    model: pause-two
order: [a, b]
turns: 4
interject_before: [3]
observer: {model: pause-notes, label: Notes}
"""


def test_an_interjection_pauses_as_an_interrupt_and_resumes_as_resume_say_does(
    served: Served, tmp_path: Path, capsys
):
    shape_file = tmp_path / "pausing.yaml"
    shape_file.write_text(PAUSING_SHAPE)
    client = served.client
    assistant = client.assistants.create("dialogue", config={"configurable": {"shape": str(shape_file)}})
    thread = client.threads.create()["thread_id"]
    paused = client.runs.wait(thread, assistant["assistant_id"], input={"topic": TOPIC, "max_turns": 4})
    assert [t["number"] for t in paused["turns"]] == [1, 2]
    state = client.threads.get_state(thread)
    assert state["next"] == ["facilitator"]
    assert [i["value"] for i in state["interrupts"]] == [{"before_turn": 3}]
    run = RunStore(served.runs_dir).load(thread)
    assert (run.meta.status, run.meta.paused_before_turn) == ("interrupted", 3)

    said = "  Consider twins raised apart.  "
    done = client.runs.wait(thread, assistant["assistant_id"], command={"resume": said})
    assert [t["number"] for t in done["turns"]] == [1, 2, 3, 4]
    assert done["interjections"] == [{"before_turn": 3, "text": "Consider twins raised apart."}]
    assert done["observation"] == {"label": "Notes", "text": replies("pause-notes")[0]}
    served_run = RunStore(served.runs_dir).load(thread)
    assert served_run.meta.status == "completed" and served_run.meta.paused_before_turn is None

    # The same dialogue held by the CLI, paused and resumed with --say: the same record of it.
    cli_runs = tmp_path / "cli-runs"
    models = [FakeModel(m, replies=replies(m)) for m in ("pause-one", "pause-two", "pause-notes")]
    with fake_ollama(models) as (ollama, _):
        common = ["--host", ollama.url, "--runs-dir", str(cli_runs)]
        assert main(["run", str(shape_file), "--topic", TOPIC, *common]) == EXIT_PAUSED
        [cli_run] = RunStore(cli_runs).list()
        assert main(["resume", cli_run.meta.run_id, "--say", said, *common[2:]]) == 0
    capsys.readouterr()
    cli_run = RunStore(cli_runs).load(cli_run.meta.run_id)

    def body(transcript: str) -> str:
        return transcript[transcript.index("### Turn 1") :]

    assert "### Facilitator — before Turn 3\n\nConsider twins raised apart.\n" in served_run.transcript()
    assert body(served_run.transcript()) == body(cli_run.transcript())
    assert [(i.turn, i.messages) for i in served_run.inputs()] == [
        (i.turn, i.messages) for i in cli_run.inputs()
    ]


def spilling_models() -> list[FakeModel]:
    """b does not fit in the emulated 4 GiB card, even alone: it spills to the CPU."""
    return [FakeModel("fits", weights_bytes=2 * GiB), FakeModel("spills", weights_bytes=6 * GiB)]


def test_a_model_spilling_to_the_cpu_stops_the_run_under_require_gpu_as_duologue_run_does(
    served: Served, tmp_path: Path, capsys
):
    with fake_ollama(spilling_models(), vram_bytes=4 * GiB) as (ollama, backend):
        context = {
            "participants": {
                "a": {"model": "fits", "host": ollama.url},
                "b": {"model": "spills", "host": ollama.url},
            },
            "require_gpu": True,
        }
        thread = served.client.threads.create()["thread_id"]
        result = served.client.runs.wait(
            thread, "duet", input={"topic": TOPIC, "max_turns": 4}, context=context, raise_error=False
        )
        assert not [r for r in backend.chat_requests if r.model == "spills"]  # no turn ran on the CPU
    error = result["__error__"]
    assert error["error"] == "ServedRunFailed"
    run = RunStore(served.runs_dir).load(thread)
    assert (run.meta.status, run.meta.error) == ("failed", error["message"])
    assert run.transcript().count("### Turn") == 1
    # The server keeps the run's checkpoints: `duologue resume` sends the user there, in one line.
    assert main(["resume", thread, "--runs-dir", str(served.runs_dir)]) == 2
    assert capsys.readouterr().err == (
        f"duologue: error: run {thread} was held by langgraph-server, which keeps its checkpoints; continue it "
        f"there, on thread {thread} (Studio's resume, or the SDK's Command(resume=...))\n"
    )

    with fake_ollama(spilling_models(), vram_bytes=4 * GiB) as (ollama_cli, _):
        argv = ["run", "duet", "--model", "a=fits", "--model", "b=spills", "--topic", TOPIC]
        argv += ["--host", ollama_cli.url, "--require-gpu", "--runs-dir", str(tmp_path / "cli-runs")]
        assert main(argv) == 1
    [cli_run] = RunStore(tmp_path / "cli-runs").list()
    message = error["message"].replace(ollama.url, ollama_cli.url)
    assert capsys.readouterr().err == (
        f"duologue: run failed: {message} (run {cli_run.meta.run_id}: 1 finished turn(s) kept)\n"
    )
    assert message.startswith(
        f"b (spills) at {ollama_cli.url} is 33% on the CPU (33%/67% CPU/GPU: 4.0 GB of 6.0 GB"
    )


def test_studio_sees_the_context_schema_every_field_optional(served: Served):
    [assistant] = served.client.assistants.search(graph_id="duet")  # the one langgraph dev made
    schemas = served.client.assistants.get_schemas(assistant["assistant_id"])
    context_schema = schemas["context_schema"]
    assert set(context_schema["properties"]) == {
        "shape", "participants", "residency_policy", "require_gpu", "strict_context", "timeout_s",
    }  # fmt: skip
    assert "required" not in context_schema
    assert set(schemas["input_schema"]["properties"]) >= {"topic", "max_turns"}
    assert "turns" in schemas["output_schema"]["properties"]


def test_duologue_runs_turns_carry_the_numbers_of_their_trace_rows(tmp_path: Path):
    """The same connector under `duologue run`: its turns in the graph's state carry the same numbers."""
    from graphs.engine.spec import load_shape, with_overrides
    from graphs.run.runner import RunRequest, run_dialogue

    with fake_ollama([FakeModel(m, replies=replies(m)) for m in ("cli-one", "cli-two")]) as (ollama, _):
        shape = with_overrides(load_shape("duet"), {"a": "cli-one", "b": "cli-two"}, [])
        hosts = {"a": ollama.url, "b": ollama.url}
        outcome = run_dialogue(RunRequest(shape, TOPIC, 4, hosts, runs_dir=tmp_path / "runs", trace=False))
    rows = outcome.records
    assert [t["numbers"] for t in outcome.turns] == [
        {key: getattr(rows[t["number"]], key) for key in NUMBERS} | {"flags": rows[t["number"]].flags}
        for t in outcome.turns
    ]
    assert [t["numbers"]["completion_tokens"] for t in outcome.turns] == [9, 9, 8, 8]


def test_a_served_run_exports_its_trace_to_the_collector_as_duologue_run_does(served: Served):
    """$OTEL_EXPORTER_OTLP_ENDPOINT set for the server: each run it holds is one trace, a span a turn."""
    client = served.client
    thread = client.threads.create()["thread_id"]
    context = {"participants": {"a": {"model": "duet-one"}, "b": {"model": "duet-two"}}}
    client.runs.wait(thread, "duet", input={"topic": TOPIC, "max_turns": 2}, context=context)
    rows = {row["turn"]: row for row in trace_rows(served.runs_dir / thread) if row["turn"] is not None}

    def spans() -> list[Any]:
        return [s for s in served.collector.spans if s.attributes.get("gen_ai.conversation.id") == thread]

    def turn_spans() -> list[Any]:
        return sorted((s for s in spans() if "duologue.turn" in s.attributes), key=lambda s: s.start_ns)

    deadline = time.monotonic() + 60
    while len(turn_spans()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [
        (s.attributes["gen_ai.request.model"], s.attributes["gen_ai.usage.output_tokens"])
        for s in turn_spans()
    ] == [("duet-one", rows[1]["completion_tokens"]), ("duet-two", rows[2]["completion_tokens"])]
    assert len({s.trace_id for s in spans()}) == 1


def test_a_run_cancelled_through_the_sdk_stops_its_turn_and_is_recorded_as_interrupted(served: Served):
    slow = [FakeModel("slow-one", replies=["word " * 200]), FakeModel("slow-two")]
    with fake_ollama(slow, token_delay_s=0.05) as (ollama, backend):
        context = {
            "participants": {
                "a": {"model": "slow-one", "host": ollama.url},
                "b": {"model": "slow-two", "host": ollama.url},
            }
        }
        client = served.client
        thread = client.threads.create()["thread_id"]
        run = client.runs.create(thread, "duet", input={"topic": TOPIC, "max_turns": 4}, context=context)
        deadline = time.monotonic() + 60
        while not backend.chat_requests and time.monotonic() < deadline:
            time.sleep(0.1)  # turn 1 is streaming
        client.runs.cancel(thread, run["run_id"], wait=True)
        record = RunStore(served.runs_dir).load(thread)
        while record.meta.status == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
            record = RunStore(served.runs_dir).load(thread)
        assert (record.meta.status, record.meta.error) == ("interrupted", "interrupted by the user")
        assert record.transcript().count("### Turn") == 0
        while ("cancel", "slow-one") not in backend.events and time.monotonic() < deadline:
            time.sleep(0.1)  # the turn's thread ends its request at its next chunk
        assert ("cancel", "slow-one") in backend.events  # the request in progress was closed
        assert [r.model for r in backend.chat_requests] == ["slow-one"]  # turn 2 never asked for
