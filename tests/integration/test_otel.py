"""OpenTelemetry export (graphs/run/otel.py) against an OTLP/HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from support.duet import A_REPLIES, B_REPLIES, duet_models, only_run, run_args
from support.fakeollama import FakeModel, fake_ollama
from support.net import free_port
from support.otlp import Receiver, Span, otlp_receiver

from graphs.commands.cli import main
from graphs.records.schema import TraceRecord
from graphs.records.store import TRANSCRIPT, RunRecord, RunStore
from graphs.run import otel

HOST_PASSWORD = "hostpass-9f3e"
HEADER_TOKEN = "s3cret-otel-token"
SPAN_NAMES = ["chat glm-4.7-flash", "chat qwen3:32b", "chat glm-4.7-flash", "chat qwen3:32b"]
CLIENT, INTERNAL = 3, 1  # OTLP's SpanKind
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2
DEADLINE_S = otel.FLUSH_TIMEOUT_S + 20
"""How long a run with a dead collector may take in all: a deadline for a hang, not a speed check."""


@pytest.fixture(autouse=True)
def no_collector_in_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    return monkeypatch


def with_password(url: str) -> str:
    """The test server's URL with a user and password in it, as a user may give --host."""
    return url.replace("http://", f"http://duo:{HOST_PASSWORD}@")


def ns(moment: str) -> int:
    """A trace row's ISO time in Unix nanoseconds, the way OTLP carries a span's times."""
    when = datetime.strptime(moment, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return (int(when.replace(microsecond=0).timestamp()) * 10**6 + when.microsecond) * 1000


def expected_turn_attributes(row: TraceRecord, options: dict[str, Any], port: int) -> dict[str, Any]:
    """What a turn's span carries, read off its trace.jsonl row: the GenAI conventions' names,
    then every field of the row under duologue. (thinking and the times aside, host redacted);
    the request's settings are the participant's pinned options, as run.json records them."""
    genai = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "ollama",
        "gen_ai.system": "ollama",
        "gen_ai.conversation.id": row.run_id,
        "gen_ai.request.model": row.model,
        "gen_ai.response.model": row.model,
        "gen_ai.response.finish_reasons": [row.done_reason],
        "gen_ai.usage.input_tokens": row.prompt_tokens,
        "gen_ai.usage.output_tokens": row.completion_tokens,
        "gen_ai.response.time_to_first_chunk": row.ttft_s,
        "gen_ai.request.temperature": options["temperature"],
        "gen_ai.request.seed": options["seed"],
        "gen_ai.request.max_tokens": options["num_predict"],
        "server.address": "127.0.0.1",
        "server.port": port,
        "duologue.host": f"http://***@127.0.0.1:{port}",
        "duologue.flags": row.flags,
        "duologue.degraded": row.degraded,
    }
    fields = row.model_dump(
        exclude={"thinking", "started_at", "ended_at", "host", "error"}, exclude_none=True
    )
    return genai | {f"duologue.{key}": value for key, value in fields.items() if value != []}


def hold_duet(ollama_url: str, runs_dir: Path, *extra: str) -> int:
    return main(run_args(ollama_url, runs_dir, "--turns", "4", *extra))


def turn_spans(spans: list[Span]) -> list[Span]:
    return sorted(
        (s for s in spans if s.name.startswith("chat ")), key=lambda s: s.attributes["duologue.seq"]
    )


def assert_no_secret(receiver: Receiver, *secrets: str) -> None:
    for body in receiver.bodies:
        for secret in secrets:
            assert secret.encode() not in body
    for span in receiver.spans:
        text = repr((span.name, span.attributes, span.resource, span.status_message))
        for secret in secrets:
            assert secret not in text, span.name


def tracing_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What duologue's export and the OpenTelemetry SDK said at WARNING or above."""
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith(("graphs.run.otel", "opentelemetry"))
    ]


def test_a_run_is_one_trace_with_a_genai_span_per_turn(
    no_collector_in_env: pytest.MonkeyPatch, runs_dir: Path, capsys
):
    with otlp_receiver() as collector, fake_ollama(duet_models()) as (server, _):
        no_collector_in_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        no_collector_in_env.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer {HEADER_TOKEN}")
        assert hold_duet(with_password(server.url), runs_dir) == 0
        port = int(server.url.rsplit(":", 1)[1])
    run = only_run(runs_dir)
    run_id = run.meta.run_id
    spans = collector.spans

    # Where it went is said once, before the run.
    out = capsys.readouterr().out
    assert out.count("duologue: trace → OpenTelemetry collector at") == 1
    assert f"duologue: trace → OpenTelemetry collector at {collector.url}/v1/traces\n" in out

    # OTLP/HTTP protobuf to /v1/traces, with the headers the environment names.
    assert {path for path, _ in collector.requests} == {"/v1/traces"}
    assert {h["content-type"] for _, h in collector.requests} == {"application/x-protobuf"}
    assert {h["authorization"] for _, h in collector.requests} == {f"Bearer {HEADER_TOKEN}"}

    # One trace: the run's root span, and a chat span per turn beneath it.
    [root] = [s for s in spans if not s.parent_span_id]
    assert sorted(s.name for s in spans) == sorted(["invoke_workflow duet", *SPAN_NAMES])
    assert {s.trace_id for s in spans} == {root.trace_id}
    assert {s.parent_span_id for s in spans if s is not root} == {root.span_id}
    assert (root.name, root.kind, root.status_code) == ("invoke_workflow duet", INTERNAL, STATUS_OK)
    assert root.attributes == {
        "gen_ai.operation.name": "invoke_workflow",
        "gen_ai.workflow.name": "duet",
        "gen_ai.conversation.id": run_id,
        "duologue.run_id": run_id,
        "duologue.shape": "duet",
        "duologue.status": "completed",
    }
    assert {s.resource["service.name"] for s in spans} == {"duologue"}
    assert {s.scope for s in spans} == {"duologue"}

    # Each turn's span is its trace row: its numbers, its flags, its real times.
    rows = [r for r in run.trace if r.is_turn]
    turns = turn_spans(spans)
    assert [s.name for s in turns] == SPAN_NAMES == [f"chat {r.model}" for r in rows]
    options = {p.name: p.options for p in run.meta.participants}
    for span, row in zip(turns, rows, strict=True):
        assert (span.kind, span.status_code) == (CLIENT, STATUS_UNSET)
        assert span.attributes == expected_turn_attributes(row, options[row.speaker or ""], port)
        assert (span.start_ns, span.end_ns) == (ns(row.started_at), ns(row.ended_at))
        assert root.start_ns <= span.start_ns <= span.end_ns <= root.end_ns
    assert [s.attributes["duologue.turn"] for s in turns] == [1, 2, 3, 4]
    assert all(s.attributes["gen_ai.usage.output_tokens"] > 0 for s in turns)

    # No host password, no header value, no prompt or reply: not in an attribute, nor anywhere sent.
    assert_no_secret(collector, HOST_PASSWORD, HEADER_TOKEN, *A_REPLIES, *B_REPLIES, "An essay.")


def test_otel_flag_wins_over_the_environment_and_service_name_is_honoured(
    no_collector_in_env: pytest.MonkeyPatch, runs_dir: Path, caplog
):
    nowhere = f"http://127.0.0.1:{free_port()}"
    with otlp_receiver() as collector, fake_ollama(duet_models()) as (server, _):
        no_collector_in_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", nowhere)
        no_collector_in_env.setenv("OTEL_SERVICE_NAME", "dialogue-lab")
        assert hold_duet(server.url, runs_dir, "--otel", collector.url) == 0
    run_id = only_run(runs_dir).meta.run_id
    assert sorted(s.name for s in collector.spans) == sorted(["invoke_workflow duet", *SPAN_NAMES])
    assert {s.resource["service.name"] for s in collector.spans} == {"dialogue-lab"}
    assert {s.attributes["gen_ai.conversation.id"] for s in collector.spans} == {run_id}
    assert tracing_warnings(caplog) == []


def test_no_trace_exports_nothing_and_a_fork_exports_its_own_turns(
    no_collector_in_env: pytest.MonkeyPatch, runs_dir: Path
):
    with otlp_receiver() as collector, fake_ollama(duet_models()) as (server, _):
        no_collector_in_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        assert hold_duet(server.url, runs_dir, "--no-trace") == 0
        assert collector.requests == []
        original = only_run(runs_dir).meta.run_id
        no_collector_in_env.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
        fork = ["fork", original, "--at", "2", "--runs-dir", str(runs_dir), "--otel", f"{collector.url}/"]
        assert main(fork) == 0
    [forked] = [r for r in RunStore(runs_dir).list() if r.meta.run_id != original]
    spans = collector.spans
    [root] = [s for s in spans if not s.parent_span_id]
    assert root.attributes["duologue.run_id"] == forked.meta.run_id
    assert [s.attributes["duologue.turn"] for s in turn_spans(spans)] == [3, 4]  # turns 1-2 were copied
    assert {s.trace_id for s in spans} == {root.trace_id}


def run_in_thread(target: Any) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}

    def hold() -> None:
        result["code"] = target()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    return thread, result


def assert_whole(run: RunRecord) -> None:
    assert run.meta.status == "completed"
    assert [r.turn for r in run.turn_records] == [1, 2, 3, 4]
    assert (run.folder / TRANSCRIPT).read_text().count("### Turn ") == 4


@pytest.mark.parametrize("collector_state", ["down", "never answers"])
def test_a_dead_collector_costs_the_run_one_warning_and_no_more(
    collector_state: str, no_collector_in_env: pytest.MonkeyPatch, runs_dir: Path, caplog
):
    before = set(threading.enumerate())
    with otlp_receiver(hang=True) as hanging, fake_ollama(duet_models()) as (server, _):
        endpoint = hanging.url if collector_state == "never answers" else f"http://127.0.0.1:{free_port()}"
        no_collector_in_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        thread, result = run_in_thread(lambda: hold_duet(server.url, runs_dir, "--json"))
        thread.join(DEADLINE_S)
        assert not thread.is_alive(), f"the run did not end within {DEADLINE_S:g} s"
    assert result["code"] == 0
    assert_whole(only_run(runs_dir))
    warnings = tracing_warnings(caplog)
    assert [r.name for r in warnings] == ["graphs.run.otel"]
    [line] = [r.getMessage() for r in warnings]
    assert f"did not fully reach {endpoint}/v1/traces" in line and "dropped" in line
    assert "\n" not in line and not warnings[0].exc_info
    # Nothing left behind that would hold up the process's exit.
    assert [t.name for t in set(threading.enumerate()) - before if not t.daemon] == []


def test_the_process_ends_soon_after_its_run_when_the_collector_never_answers(runs_dir: Path):
    with otlp_receiver(hang=True) as hanging, fake_ollama(duet_models()) as (server, _):
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = hanging.url
        process = subprocess.run(
            [sys.executable, "-m", "graphs", *run_args(server.url, runs_dir, "--turns", "4", "--json")],
            capture_output=True,
            text=True,
            env=env,
            timeout=DEADLINE_S + 40,  # the interpreter's start on a loaded machine, then the deadline
        )
    assert process.returncode == 0, process.stderr
    assert_whole(only_run(runs_dir))
    assert process.stderr.splitlines() == [
        f"OpenTelemetry: the trace of run {only_run(runs_dir).meta.run_id} did not fully reach "
        f"{hanging.url}/v1/traces (no answer within {otel.FLUSH_TIMEOUT_S:g} s); what was left is "
        "dropped, the run's record is complete"
    ]


def test_without_the_extra_a_named_collector_gets_one_line_and_the_run_goes_on(
    no_collector_in_env: pytest.MonkeyPatch, runs_dir: Path, capsys, caplog
):
    no_collector_in_env.setitem(sys.modules, "opentelemetry", None)  # `import opentelemetry` fails
    with otlp_receiver() as collector, fake_ollama(duet_models()) as (server, _):
        no_collector_in_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        assert hold_duet(server.url, runs_dir) == 0
    assert collector.requests == []
    assert_whole(only_run(runs_dir))
    assert "OpenTelemetry collector" not in capsys.readouterr().out
    [line] = [r.getMessage() for r in tracing_warnings(caplog)]
    assert line == (
        "OpenTelemetry: OTEL_EXPORTER_OTLP_ENDPOINT names a collector, but the OpenTelemetry packages "
        "are not installed; this run is not exported (pip install 'duologue[otel]')"
    )


def test_doctor_says_where_traces_go_and_whether_the_collector_takes_them(
    no_collector_in_env: pytest.MonkeyPatch, capsys
):
    doctor = ["doctor", "--model", "glm-4.7-flash", "--json"]
    with otlp_receiver() as collector, fake_ollama(duet_models()) as (server, _):
        no_collector_in_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        assert main([*doctor, "--host", server.url]) == 0
        ready = json.loads(capsys.readouterr().out)
        nowhere = f"http://127.0.0.1:{free_port()}"
        no_collector_in_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", nowhere)
        assert main([*doctor[:-1], "--host", server.url]) == 0  # a caution: runs go on without their trace
        text = capsys.readouterr().out
    assert ready["trace"] == {"endpoint": f"{collector.url}/v1/traces", "error": None}
    assert [path for path, _ in collector.requests] == ["/v1/traces"] and collector.spans == []
    assert (
        f"trace: OpenTelemetry collector at {nowhere}/v1/traces: cannot connect; runs would go on, untraced"
        in text.splitlines()
    )


def test_a_failed_run_ends_its_trace_in_error_with_the_failed_turns_span(
    no_collector_in_env: pytest.MonkeyPatch, runs_dir: Path
):
    with otlp_receiver() as collector, fake_ollama(duet_models(), fail_on_call=3) as (server, _):
        no_collector_in_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        assert hold_duet(with_password(server.url), runs_dir) == 1
    run = only_run(runs_dir)
    assert run.meta.status == "failed" and run.meta.error
    spans = collector.spans
    [root] = [s for s in spans if not s.parent_span_id]
    assert (root.status_code, root.attributes["duologue.status"]) == (STATUS_ERROR, "failed")
    assert (
        root.status_message
        == root.attributes["duologue.error"]
        == run.meta.error.replace(f"duo:{HOST_PASSWORD}@", "***@")
    )
    [failed_row] = [r for r in run.trace if r.is_turn and r.error]
    [failed] = [s for s in turn_spans(spans) if s.status_code == STATUS_ERROR]
    assert failed.attributes["duologue.turn"] == failed_row.turn == 3
    assert failed.attributes["error.type"] == (failed_row.error or "").split(":")[0]
    assert [s.attributes["duologue.turn"] for s in turn_spans(spans)] == [1, 2, 3]
    assert_no_secret(collector, HOST_PASSWORD)


OBSERVED_SHAPE = """\
name: observed
participants:
  - {name: a, model: glm-4.7-flash}
  - {name: b, model: qwen3:32b}
order: [a, b]
turns: 4
observer: {model: nox, label: Nox, options: {temperature: 0.2}}
"""


def test_the_observers_notes_are_a_chat_span_too(no_collector_in_env: pytest.MonkeyPatch, tmp_path, runs_dir):
    shape = tmp_path / "observed.yaml"
    shape.write_text(OBSERVED_SHAPE)
    models = [*duet_models(), FakeModel("nox:latest", replies=["They agree on little."])]
    with otlp_receiver() as collector, fake_ollama(models) as (server, _):
        no_collector_in_env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        args = ["run", str(shape), "--topic", "An essay.", "--host", server.url, "--runs-dir", str(runs_dir)]
        assert main(args) == 0
    [row] = [r for r in only_run(runs_dir).trace if r.node == "observer"]
    [span] = [s for s in collector.spans if s.attributes.get("duologue.kind") == "observer"]
    assert span.name == f"chat {row.model}" == "chat nox"
    assert span.attributes["gen_ai.request.temperature"] == 0.2
    assert span.attributes["gen_ai.usage.output_tokens"] == row.completion_tokens
    assert (span.start_ns, span.end_ns) == (ns(row.started_at), ns(row.ended_at))
    assert_no_secret(collector, "They agree on little.")
