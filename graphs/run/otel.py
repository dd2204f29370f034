"""OpenTelemetry export: one trace per run over OTLP/HTTP, one GenAI `chat` span per turn.

The sibling of langsmith.py, for Langfuse, Phoenix, Jaeger, Grafana and any OTLP collector.
`exporting()` wraps a run: with a collector named (`--otel URL`, else the environment's
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT, read as the run starts)
it opens a root span for the run, and the runner hands it each trace row as the run store
writes it. The row is the one source of a span's numbers: the span's times are the row's
started_at and ended_at, its attributes the row's fields, named as the GenAI semantic
conventions name them (`gen_ai.usage.input_tokens`, ...) and all of them again under
`duologue.` as trace.jsonl names them.

Each run has a TracerProvider of its own (never the global one: a page server holds many
runs), a batch processor whose thread is a daemon, and an exporter that gives up after
FLUSH_TIMEOUT_S; at the end the run waits at most that long for the collector, and an export
that failed ends in one warning on this module's logger. The SDK is imported only when a
run exports, so duologue runs without the `otel` extra. Prompts, replies and thinking are
never exported, nor a host's password or a header's value.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from graphs.engine.spec import Shape
from graphs.records.checkpoints import redact_url
from graphs.records.schema import TraceRecord, package_version

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

logger = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 3.0
"""The longest a run waits at its end for its trace to reach the collector."""
BATCH_DELAY_MS = 2_000
"""How often finished turns' spans are sent while the run goes on."""
TRACES_PATH = "/v1/traces"
SERVICE_NAME = "duologue"
PROVIDER = "ollama"
"""A span's provider when its row names no participant of the shape; else the participant's own."""
INSTALL = "pip install 'duologue[otel]'"
LEFT_OUT = frozenset({"thinking", "started_at", "ended_at", "host", "error"})
"""Row fields that are not attributes as they stand: content, the span's own times, and
text that may carry a host's password (they go in redacted)."""
OPTION_ATTRIBUTES = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "seed": "gen_ai.request.seed",
    "num_predict": "gen_ai.request.max_tokens",
}
USERINFO = re.compile(r"(?<=://)[^/\s@]+@")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HEADERS_VARS = ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")


@dataclass(frozen=True)
class OtelSettings:
    """Where a run's trace goes: the OTLP/HTTP traces URL, and what named it (for messages)."""

    endpoint: str
    source: str

    @property
    def shown(self) -> str:
        """The endpoint as messages print it, its password hidden."""
        return redact_url(self.endpoint)


def traces_url(base: str) -> str:
    """A collector's base URL (as OTEL_EXPORTER_OTLP_ENDPOINT gives it) with the traces path added."""
    base = base.strip().rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def settings_for(
    given: str | None, trace: bool = True, environ: Mapping[str, str] | None = None
) -> OtelSettings | None:
    """Where this run's trace goes: `given` (--otel) wins over the environment; None: not exported.

    The environment is read as the OpenTelemetry SDK reads it: the traces endpoint is used
    as it stands, the general one gets /v1/traces. `trace=False` (--no-trace) exports nothing.
    """
    if not trace:
        return None
    if given and given.strip():
        return OtelSettings(traces_url(given), "--otel")
    env = os.environ if environ is None else environ
    if (env.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
        return None
    traces = (env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or "").strip()
    if traces:
        return OtelSettings(traces, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    base = (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip()
    if base:
        return OtelSettings(traces_url(base), "OTEL_EXPORTER_OTLP_ENDPOINT")
    return None


# --- Spans from trace rows -------------------------------------------------------------


def nanoseconds(moment: str) -> int:
    """A row's UTC ISO 8601 time (`...T02:06:27.123Z`) as Unix nanoseconds, as OTLP carries it."""
    since = datetime.fromisoformat(moment.replace("Z", "+00:00")) - EPOCH
    return since // timedelta(microseconds=1) * 1_000


class Scrubber:
    """Takes the secrets a run knows of (hosts' passwords, the endpoint's, header values)
    out of any text before it becomes an attribute."""

    def __init__(self, urls: list[str], headers: list[str] | None = None) -> None:
        secrets = {urlsplit(url.strip()).password for url in urls if "@" in url}
        for value in headers or ():
            secrets |= {value, value.split()[-1] if value.split() else value}
        self.secrets = sorted((s for s in secrets if s and len(s) > 2), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        text = USERINFO.sub("***@", text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text


def header_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of the headers the exporter sends (OTEL_EXPORTER_OTLP_HEADERS), as the SDK reads them."""
    from opentelemetry.util.re import parse_env_headers

    env = os.environ if environ is None else environ
    return [
        value
        for name in HEADERS_VARS
        for value in parse_env_headers(env.get(name) or "", liberal=True).values()
    ]


def attribute_value(value: Any) -> Any:
    """The value as an OTel attribute takes it (str, bool, int, float or a list of one), else None."""
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def row_attributes(row: TraceRecord, shape: Shape, scrub: Callable[[str], str]) -> dict[str, Any]:
    """A turn's span attributes, all read from its trace row (and its participant's pinned options)."""
    attributes: dict[str, Any] = {"gen_ai.conversation.id": row.run_id}
    speaker = next((p for p in shape.connected if p.name == row.speaker), None)  # the observer too
    provider = speaker.provider if speaker is not None else PROVIDER
    if row.model:
        attributes |= {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.system": provider,
            "gen_ai.request.model": row.model,
        }
        if row.done_reason:  # Ollama answered the request
            attributes["gen_ai.response.model"] = row.model
            attributes["gen_ai.response.finish_reasons"] = [row.done_reason]
    usage = {
        "gen_ai.usage.input_tokens": row.prompt_tokens,
        "gen_ai.usage.output_tokens": row.completion_tokens,
        "gen_ai.usage.cache_read.input_tokens": row.prompt_eval_cached_count,
        "gen_ai.response.time_to_first_chunk": row.ttft_s,
    }
    attributes |= {key: value for key, value in usage.items() if value is not None}
    if speaker is not None and row.model:
        options = speaker.options.model_dump(exclude_none=True)
        attributes |= {OPTION_ATTRIBUTES[k]: v for k, v in options.items() if k in OPTION_ATTRIBUTES}
    if row.host:
        parts = urlsplit(row.host.strip())
        if parts.hostname:
            attributes["server.address"] = parts.hostname
        if parts.port:
            attributes["server.port"] = parts.port
        attributes["duologue.host"] = scrub(redact_url(row.host))
    if row.error:
        attributes["duologue.error"] = scrub(row.error)
        if not row.stopped:
            attributes["error.type"] = row.error.split(":", 1)[0].strip() or "error"
    for key, value in row.model_dump().items():
        if key in LEFT_OUT:
            continue
        value = attribute_value(value)
        if value is not None:
            attributes[f"duologue.{key}"] = scrub(value) if isinstance(value, str) else value
    attributes["duologue.flags"] = row.flags
    attributes["duologue.degraded"] = row.degraded
    return attributes


def span_name(row: TraceRecord) -> str:
    return f"chat {row.model}" if row.model else f"duologue {row.node}"


# --- The run's export ------------------------------------------------------------------


class Export:
    """One run's OTLP export: its root span while the run goes on, a span per row, then a bounded flush."""

    def __init__(self, settings: OtelSettings, run_id: str, shape: Shape, hosts: Mapping[str, str]) -> None:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.settings = settings
        self.run_id = run_id
        self.shape = shape
        self.kinds = {True: trace.SpanKind.CLIENT, False: trace.SpanKind.INTERNAL}  # a model's call or not
        quiet_library_logs()
        exporter = OTLPSpanExporter(endpoint=settings.endpoint, timeout=FLUSH_TIMEOUT_S)
        self.exporter = CountingExporter(exporter)
        self.scrub = Scrubber([settings.endpoint, *hosts.values()], header_values())
        resource = Resource.create(
            {"service.name": SERVICE_NAME, "service.version": package_version("duologue")}
            | dict(OTELResourceDetector().detect().attributes)  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
        )
        self.provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self.processor = BatchSpanProcessor(
            cast("SpanExporter", self.exporter),
            schedule_delay_millis=BATCH_DELAY_MS,
            export_timeout_millis=FLUSH_TIMEOUT_S * 1000,
        )
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("duologue", package_version("duologue"))
        self.root = self.tracer.start_span(
            f"invoke_workflow {shape.name}",
            kind=trace.SpanKind.INTERNAL,
            attributes={
                "gen_ai.operation.name": "invoke_workflow",
                "gen_ai.workflow.name": shape.name,
                "gen_ai.conversation.id": run_id,
                "duologue.run_id": run_id,
                "duologue.shape": shape.name,
            },
        )
        self.parent = trace.set_span_in_context(self.root)
        self.ended = 0
        self._lock = threading.Lock()

    def row(self, row: TraceRecord) -> None:
        """A trace row the run store has just written: its span, with the row's own times.

        A model's rows (the turns, the observer's notes) are spans; the facilitator's steps,
        a fraction of a millisecond each, only when they failed."""
        if not (row.model or row.error):
            return
        try:
            span = self.tracer.start_span(
                span_name(row),
                context=self.parent,
                kind=self.kinds[bool(row.model)],
                attributes=row_attributes(row, self.shape, self.scrub),
                start_time=nanoseconds(row.started_at),
            )
            if row.error and not row.stopped:
                from opentelemetry.trace import Status, StatusCode

                span.set_status(Status(StatusCode.ERROR, self.scrub(row.error)))
            span.end(end_time=max(nanoseconds(row.ended_at), nanoseconds(row.started_at)))
            with self._lock:
                self.ended += 1
        except Exception:  # noqa: BLE001 - tracing never fails the run
            logger.debug("OpenTelemetry: no span for trace row %s", row.seq, exc_info=True)

    def run_ended(self, status: str, error: str | None = None, paused_before_turn: int | None = None) -> None:
        """The root span ends with the run's status, as run.json records it."""
        try:
            from opentelemetry.trace import Status, StatusCode

            self.root.set_attribute("duologue.status", status)
            if paused_before_turn is not None:
                self.root.set_attribute("duologue.paused_before_turn", paused_before_turn)
            if error:
                self.root.set_attribute("duologue.error", self.scrub(error))
            if status == "failed":
                self.root.set_status(Status(StatusCode.ERROR, self.scrub(error or "failed")))
            elif status == "completed":
                self.root.set_status(Status(StatusCode.OK))
            self.root.end()
            with self._lock:
                self.ended += 1
        except Exception:  # noqa: BLE001 - tracing never fails the run
            logger.debug("OpenTelemetry: the run's span could not end", exc_info=True)

    def close(self, timeout: float = FLUSH_TIMEOUT_S) -> bool:
        """Send what is left within about `timeout` seconds, then drop the rest. True if all was sent."""
        if self.root.is_recording():
            self.run_ended("running")
        reason = f"no answer within {timeout:g} s"
        # The processor's worker sends what is queued, then ends; its shutdown waits for that
        # without a bound of its own, so it waits in a daemon thread, for `timeout` at most.
        closing = threading.Thread(target=self.processor.shutdown, daemon=True, name="otel-flush")
        try:
            closing.start()
            closing.join(timeout)
        except KeyboardInterrupt:  # Ctrl-C while waiting: stop waiting, the run stands
            reason = "interrupted while sending"
        if closing.is_alive():
            self.exporter.shutdown()  # ends the exporter's retries; what is left is dropped
        sent = self.exporter.sent >= self.ended and not self.exporter.failures
        if not sent:
            reason = self.exporter.failures[0] if self.exporter.failures else reason
            logger.warning(
                "OpenTelemetry: the trace of run %s did not fully reach %s (%s); what was left is dropped, "
                "the run's record is complete",
                self.run_id,
                self.settings.shown,
                reason,
            )
        return sent


class CountingExporter:
    """The OTLP exporter, counting the spans that reached the collector and why others did not."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent = 0
        self.failures: list[str] = []
        self._last_error: str | None = None
        self._shut = False
        self._lock = threading.Lock()
        client = getattr(inner, "_client", None)  # the SDK's HTTP client: its result says why
        if client is not None and callable(getattr(client, "export", None)):
            send = client.export

            def export(data: bytes) -> Any:
                result = send(data)
                self._last_error = describe_result(result)
                return result

            client.export = export

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self._last_error = None
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # noqa: BLE001 - counted as a failure, said once at the end
            result, self._last_error = SpanExportResult.FAILURE, exc.__class__.__name__
        if result == SpanExportResult.SUCCESS:
            self.sent += len(spans)
        elif len(self.failures) < 5:
            self.failures.append(self._last_error or "the collector did not take it")
        return result

    def shutdown(self) -> None:
        with self._lock:
            done, self._shut = self._shut, True
        if not done:
            self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def describe_result(result: Any) -> str | None:
    """Why an OTLP request failed, in a few words without the URL (None if it went through)."""
    if getattr(result, "success", False):
        return None
    status = getattr(result, "status_code", None)
    if status:
        return f"it answered HTTP {status}"
    name = getattr(getattr(result, "error", None), "__class__", type(None)).__name__
    if "Timeout" in name:
        return f"no answer within {FLUSH_TIMEOUT_S:g} s"
    if "Connection" in name:
        return "cannot connect"
    return f"no answer within {FLUSH_TIMEOUT_S:g} s" if name == "NoneType" else name


def probe(settings: OtelSettings) -> str | None:
    """Does the collector take an export now (an empty one)? None if it does, else why not, in a few words."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        return f"the OpenTelemetry packages are not installed ({INSTALL})"
    quiet_library_logs()
    exporter = CountingExporter(OTLPSpanExporter(endpoint=settings.endpoint, timeout=FLUSH_TIMEOUT_S))
    try:
        exporter.export([])
    finally:
        exporter.shutdown()
    return exporter.failures[0] if exporter.failures else None


def quiet_library_logs() -> None:
    """Leave the SDK's retry warnings and export errors out unless the application set a level
    for them: an export's failure is summed up in one warning on this module's logger instead."""
    library = logging.getLogger("opentelemetry")
    if library.level == logging.NOTSET:
        library.setLevel(logging.CRITICAL)


class NoExport:
    """What a run without an OTLP export is told its rows and its end, for nothing."""

    settings: OtelSettings | None = None

    def row(self, row: TraceRecord) -> None:
        pass

    def run_ended(self, status: str, error: str | None = None, paused_before_turn: int | None = None) -> None:
        pass

    def close(self, timeout: float = FLUSH_TIMEOUT_S) -> bool:
        return True


def start_export(
    settings: OtelSettings | None, run_id: str, shape: Shape, hosts: Mapping[str, str]
) -> Export | NoExport:
    """The run's export if a collector is named, else one that does nothing; close() it at the end.

    Without the `otel` extra, a named collector gets one warning and the run goes on unexported.
    """
    if settings is None:
        return NoExport()
    try:
        return Export(settings, run_id, shape, hosts)
    except ImportError:
        logger.warning(
            "OpenTelemetry: %s names a collector, but the OpenTelemetry packages are not installed; "
            "this run is not exported (%s)",
            settings.source,
            INSTALL,
        )
    except Exception as exc:  # noqa: BLE001 - tracing must never stop a run
        logger.warning(
            "OpenTelemetry: this run is not exported to %s: %s", settings.shown, exc.__class__.__name__
        )
    return NoExport()


@contextmanager
def exporting(
    settings: OtelSettings | None, run_id: str, shape: Shape, hosts: Mapping[str, str]
) -> Iterator[Export | NoExport]:
    """Export the run's trace inside this block if a collector is named; flush it, bounded, at the end."""
    export = start_export(settings, run_id, shape, hosts)
    try:
        yield export
    finally:
        export.close()
