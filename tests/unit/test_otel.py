"""Where a run's OpenTelemetry trace goes, and what a turn's span says (graphs/run/otel.py)."""

from __future__ import annotations

import pytest

from graphs.commands.cli import main
from graphs.engine.spec import load_shape
from graphs.records.schema import TraceRecord
from graphs.run import otel

COLLECTOR = "http://collector.example:4318"


def test_the_flag_wins_and_the_environment_is_read_as_the_sdk_reads_it():
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env.example:4318/"}
    assert otel.settings_for(COLLECTOR, environ=env) == otel.OtelSettings(f"{COLLECTOR}/v1/traces", "--otel")
    assert otel.settings_for(f"{COLLECTOR}/v1/traces/", environ={}) == otel.OtelSettings(
        f"{COLLECTOR}/v1/traces", "--otel"
    )
    assert otel.settings_for(None, environ=env) == otel.OtelSettings(
        "http://env.example:4318/v1/traces", "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    # The signal's own endpoint is taken as it stands, and before the general one.
    traces = env | {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://cloud.example/api/otel/traces"}
    assert otel.settings_for(None, environ=traces) == otel.OtelSettings(
        "https://cloud.example/api/otel/traces", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )


def test_nothing_named_or_no_trace_exports_nothing():
    assert otel.settings_for(None, environ={}) is None
    assert otel.settings_for("", environ={"OTEL_EXPORTER_OTLP_ENDPOINT": " "}) is None
    assert otel.settings_for(COLLECTOR, trace=False, environ={}) is None
    assert otel.settings_for(None, trace=False, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": COLLECTOR}) is None
    disabled = {"OTEL_EXPORTER_OTLP_ENDPOINT": COLLECTOR, "OTEL_SDK_DISABLED": "true"}
    assert otel.settings_for(None, environ=disabled) is None


def test_messages_show_the_endpoint_without_its_password():
    settings = otel.settings_for("https://user:pa55word@collector.example/otel", environ={})
    assert settings is not None
    assert settings.shown == "https://user:***@collector.example/otel/v1/traces"


def test_span_times_are_the_rows_times_to_the_millisecond():
    assert otel.nanoseconds("1970-01-01T00:00:01.001Z") == 1_001_000_000
    assert otel.nanoseconds("2026-12-02T02:06:27.123Z") == 1_796_177_187_123_000_000


def row(**fields) -> TraceRecord:
    base = {
        "run_id": "r1",
        "seq": 4,
        "node": "b",
        "turn": 2,
        "kind": "response",
        "speaker": "b",
        "model": "qwen3:32b",
        "host": "http://duo:hostpass@gpu-box:11434",
        "started_at": "2026-12-02T02:06:27.123Z",
        "ended_at": "2026-12-02T02:06:29.500Z",
    }
    return TraceRecord.model_validate(base | fields)


def test_a_degraded_turns_span_carries_its_flags_and_no_secret():
    shape = load_shape("duet")
    scrub = otel.Scrubber(["http://duo:hostpass@gpu-box:11434"], ["Bearer tok3n-value"])
    cpu = row(prompt_tokens=120, completion_tokens=40, done_reason="length", gpu_fraction=0.6, thinking="why")
    attributes = otel.row_attributes(cpu, shape, scrub)
    assert attributes["gen_ai.response.finish_reasons"] == ["length"]
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (120, 40)
    assert attributes["duologue.flags"] == ["CPU 40%", "cut by length"] == cpu.flags
    assert attributes["duologue.degraded"] is True
    assert (attributes["server.address"], attributes["server.port"]) == ("gpu-box", 11434)
    assert attributes["duologue.host"] == "http://***@gpu-box:11434"
    assert "duologue.thinking" not in attributes and "why" not in attributes.values()
    assert not any("hostpass" in str(value) for value in attributes.values())


def test_a_failed_turn_says_what_failed_and_a_stopped_one_is_no_error():
    shape = load_shape("duet")
    scrub = otel.Scrubber(["http://duo:hostpass@gpu-box:11434"], ["Bearer tok3n-value"])
    failed = row(error="ConnectError: cannot reach http://duo:hostpass@gpu-box:11434 (Bearer tok3n-value)")
    attributes = otel.row_attributes(failed, shape, scrub)
    assert attributes["error.type"] == "ConnectError"
    assert attributes["duologue.error"] == "ConnectError: cannot reach http://***@gpu-box:11434 (***)"
    assert "gen_ai.response.model" not in attributes  # Ollama never answered
    stopped = row(error="stopped by the user before the turn finished", stopped=True)
    attributes = otel.row_attributes(stopped, shape, scrub)
    assert "error.type" not in attributes and attributes["duologue.flags"] == ["stopped"]


def test_without_a_collector_the_run_is_told_nothing():
    with otel.exporting(None, "r1", load_shape("duet"), {}) as spans:
        assert isinstance(spans, otel.NoExport) and spans.settings is None
        spans.row(row())
        spans.run_ended("completed")


@pytest.mark.parametrize("url", ["localhost:4318", "ftp://collector.example", "http://"])
def test_otel_refuses_what_is_not_a_collectors_url(url: str, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["run", "duet", "--topic", "x", "--otel", url])
    assert exit.value.code == 2
    [line] = [line for line in capsys.readouterr().err.splitlines() if "--otel" in line]
    assert "is not a collector's URL; give one like http://localhost:4318" in line


def test_a_turn_on_an_openai_compatible_server_names_openai_as_its_provider():
    shape = load_shape("duet")
    moved = shape.model_copy(
        update={
            "participants": [
                shape.participants[0],
                shape.participants[1].model_copy(
                    update={"provider": "openai", "base_url": "http://127.0.0.1:8080/v1"}
                ),
            ]
        }
    )
    scrub = otel.Scrubber([], [])
    on_openai = otel.row_attributes(row(host="http://127.0.0.1:8080/v1"), moved, scrub)
    on_ollama = otel.row_attributes(row(speaker="a", node="a"), moved, scrub)
    assert (on_openai["gen_ai.provider.name"], on_openai["gen_ai.system"]) == ("openai", "openai")
    assert (on_ollama["gen_ai.provider.name"], on_ollama["gen_ai.system"]) == ("ollama", "ollama")
