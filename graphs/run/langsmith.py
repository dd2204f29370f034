"""LangSmith export: one trace per run, one readable child run per turn.

Nothing here is in the nodes. `exporting()` wraps a run: when LangSmith is configured
(`LANGSMITH_TRACING=true` and an API key, read from the environment as it is at the
start of the run) it makes a TurnTracer - LangChain's LangSmith tracer with an explicit
client - the run's tracer; otherwise, or with `trace=False`, it keeps LangChain's own
environment-driven tracer away, so a run is traced once or not at all.

Left to itself, langsmith retries an unreachable endpoint for about 12 s in a
non-daemon thread (which also holds up the exit) and logs the first and last characters
of the API key. Here the client has short timeouts and one retry, its threads are
daemons, the end-of-run flush waits at most FLUSH_TIMEOUT_S and then drops what is left,
and every log record that would carry the key is redacted. A tracing failure never
fails the run: it ends in one warning on the `graphs.run.langsmith` logger.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import traceback
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from queue import Empty, PriorityQueue
from typing import Any, cast

from langchain_core.tracers.context import tracing_v2_callback_var
from langchain_core.tracers.langchain import LangChainTracer
from langsmith.run_helpers import tracing_context

from graphs.engine.schedule import PlannedTurn, turn_due
from graphs.engine.spec import Shape
from graphs.ollama.connector import FINDINGS_KEY
from graphs.ollama.timings import turn_numbers

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://api.smith.langchain.com"
DEFAULT_PROJECT = "duologue"
FLUSH_TIMEOUT_S = 3.0
"""The longest a run waits at its end for its trace to reach LangSmith."""
CONNECT_TIMEOUT_MS = 2_000
READ_TIMEOUT_MS = 10_000
TURN_SEPARATOR = " · "


@dataclass(frozen=True)
class SmithSettings:
    """Where a run's trace goes. The key is kept out of repr, so it can't leak by printing."""

    endpoint: str
    project: str
    api_key: str = field(repr=False)


def settings_from_env(environ: Mapping[str, str] | None = None) -> SmithSettings | None:
    """LangSmith's settings if tracing is on and a key is set, read now (langsmith caches its own)."""
    env = os.environ if environ is None else environ

    def first(*names: str) -> str | None:
        for name in names:
            value = (env.get(name) or "").strip()
            if value:
                return value
        return None

    tracing = first("LANGSMITH_TRACING_V2", "LANGCHAIN_TRACING_V2", "LANGSMITH_TRACING", "LANGCHAIN_TRACING")
    if (tracing or "").lower() != "true":
        return None
    key = first("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY")
    if key is None:
        logger.warning(
            "LangSmith: LANGSMITH_TRACING is true but LANGSMITH_API_KEY is not set; this run is not traced"
        )
        return None
    endpoint = first("LANGSMITH_ENDPOINT", "LANGCHAIN_ENDPOINT") or DEFAULT_ENDPOINT
    project = first("LANGSMITH_PROJECT", "LANGCHAIN_PROJECT") or DEFAULT_PROJECT
    return SmithSettings(endpoint=endpoint.rstrip("/"), project=project, api_key=key)


# --- Keeping the key out of logs -------------------------------------------------------

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
_factory_installed = False
API_KEY_LINE = re.compile(r"(API Key:\s*)\S+")
REDACTED = "[redacted]"


def masked(secret: str) -> str:
    """How langsmith prints a key in its connection errors: 5 characters, stars, 2 characters."""
    return f"{secret[:5]}{'*' * max(0, len(secret) - 7)}{secret[-2:]}"


def redact_secrets(text: str) -> str:
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, REDACTED).replace(masked(secret), REDACTED)
    return API_KEY_LINE.sub(rf"\g<1>{REDACTED}", text) if secrets else text


def protect_secret(secret: str) -> None:
    """Redact `secret` (and langsmith's masked form of it) from every log record from now on.

    A record factory rather than a filter: a logger's filters see only the records made by
    that very logger, and langsmith logs from many modules and from background threads
    that outlive the run.
    """
    global _factory_installed
    with _SECRETS_LOCK:
        _SECRETS.add(secret)
        if _factory_installed:
            return
        _factory_installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        return record

    logging.setLogRecordFactory(factory)


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed record is the logging module's to report
        return
    cleaned = redact_secrets(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[1] is not None:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        cleaned = redact_secrets(text)
        if cleaned != text:
            record.exc_info, record.exc_text = None, cleaned


# --- The tracer ------------------------------------------------------------------------


@dataclass
class RunFacts:
    """What every run of one dialogue's trace is labelled with."""

    run_id: str
    shape: Shape
    hosts: Mapping[str, str]

    def planned(self, state: Any) -> PlannedTurn | None:
        return turn_due(self.shape, state)

    def turn_metadata(self, planned: PlannedTurn) -> dict[str, Any]:
        participant = self.shape.participant(planned.speaker)
        return {
            "run_id": self.run_id,
            "shape": self.shape.name,
            "turn": planned.number,
            "kind": planned.kind,
            "speaker": planned.speaker,
            "model": participant.model,
            "host": self.hosts.get(planned.speaker),
            "options": participant.options.model_dump(exclude_none=True),
        }


def turn_stats(outputs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Ollama's counts and rates from a chat model run's outputs (its final chunk)."""
    try:
        generation = (outputs or {})["generations"][0][0]
    except (KeyError, IndexError, TypeError):
        return {}
    message = generation.get("message") if isinstance(generation, Mapping) else None
    kwargs = message.get("kwargs", {}) if isinstance(message, Mapping) else {}
    final = kwargs.get("response_metadata") or generation.get("generation_info") or {}
    if not isinstance(final, Mapping):
        return {}
    stats: dict[str, Any] = {**turn_numbers(final), "done_reason": final.get("done_reason")}
    if final.get("done_reason") == "length":
        stats["cut_by_length"] = True
    findings = final.get(FINDINGS_KEY)  # the connector's residency findings
    if isinstance(findings, Mapping):
        for key in ("gpu_fraction", "truncated"):
            if key in findings:
                stats[key] = findings[key]
    return {key: value for key, value in stats.items() if value is not None}


class TurnTracer(LangChainTracer):
    """LangChain's LangSmith tracer, naming and labelling the dialogue's runs.

    The root run is named by the run's config (`duologue SHAPE RUN_ID`) and labelled
    with the run id, also as `thread_id`; each speaker node's run becomes
    `turn N · MODEL · KIND` with the turn's metadata and tags, and Ollama's counts
    and rates once it ends; its chat model run carries the same labels.
    """

    def __init__(self, *args: Any, facts: RunFacts | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.facts = facts
        self.labels: dict[str, dict[str, Any]] = {}  # run id -> a turn's labels; shared by copies

    def copy_with_metadata_defaults(self, **kwargs: Any) -> LangChainTracer:
        copy = cast(TurnTracer, super().copy_with_metadata_defaults(**kwargs))
        copy.facts, copy.labels = self.facts, self.labels
        return copy

    def _start_trace(self, run: Any) -> None:
        try:
            self._label(run)
        except Exception:  # noqa: BLE001 - labels are a nicety; the trace goes on without them
            logger.debug("LangSmith: could not label run %s", run.name, exc_info=True)
        super()._start_trace(run)

    def _label(self, run: Any) -> None:
        facts = self.facts
        if facts is None:
            return
        metadata = dict(run.extra.get("metadata") or {})  # a copy: the dict is the callbacks'
        tags: list[str] = []
        if run.parent_run_id is None:
            metadata |= {"run_id": facts.run_id, "shape": facts.shape.name, "thread_id": facts.run_id}
            tags = ["duologue", f"shape:{facts.shape.name}"]
        elif run.run_type == "chain" and metadata.get("langgraph_node") == run.name:
            planned = None if run.name == "facilitator" else facts.planned(run.inputs)
            metadata |= {"run_id": facts.run_id, "shape": facts.shape.name}
            if planned is None:
                tags = [run.name]
            else:
                labels = facts.turn_metadata(planned)
                run.name = TURN_SEPARATOR.join((f"turn {planned.number}", labels["model"], planned.kind))
                metadata |= labels
                tags = ["turn", f"speaker:{planned.speaker}", f"model:{labels['model']}", planned.kind]
                self.labels[str(run.id)] = {"metadata": labels, "tags": tags}
        elif str(run.parent_run_id) in self.labels:
            parent = self.labels[str(run.parent_run_id)]
            metadata |= parent["metadata"]
            tags = list(parent["tags"])
        else:
            return
        run.extra["metadata"] = metadata
        run.tags = sorted(set(run.tags or []) | set(tags))

    def _on_llm_end(self, run: Any) -> None:
        labels = self.labels.get(str(run.parent_run_id))
        if labels is not None:
            labels["stats"] = turn_stats(run.outputs)
        super()._on_llm_end(run)

    def _on_chain_end(self, run: Any) -> None:
        self._add_stats(run)
        super()._on_chain_end(run)

    def _on_chain_error(self, run: Any) -> None:
        self._add_stats(run)
        super()._on_chain_error(run)

    def _add_stats(self, run: Any) -> None:
        labels = self.labels.pop(str(run.id), None)
        if labels and labels.get("stats"):
            run.extra["metadata"] = {**(run.extra.get("metadata") or {}), **labels["stats"]}


# --- The client and the run's export ---------------------------------------------------


def make_client(settings: SmithSettings, on_error: Any = None) -> Any:
    """A langsmith Client that gives up fast and whose background threads never hold up an exit."""
    from langsmith import Client
    from langsmith import utils as ls_utils

    retry = ls_utils.LangSmithRetry(
        total=1,
        backoff_factor=0.2,
        status_forcelist=[429, 500, 502, 503, 504],
        allowed_methods=None,
        raise_on_redirect=False,
        raise_on_status=False,
        respect_retry_after_header=False,
    )
    options: dict[str, Any] = {
        "api_url": settings.endpoint,
        "api_key": settings.api_key,
        "timeout_ms": (CONNECT_TIMEOUT_MS, READ_TIMEOUT_MS),
        "retry_config": retry,
        "tracing_error_callback": on_error,
        # Not LANGSMITH_TRACING_MODE's otel/hybrid: OpenTelemetry's exporter has its own
        # retries and flush at exit, outside the bounded wait above.
        "tracing_mode": "langsmith",
    }
    try:
        from langsmith._internal._background_thread import tracing_control_thread_func
        from langsmith._internal._constants import _TRACING_QUEUE_MAX_SIZE
    except ImportError:  # another langsmith: its own (non-daemon) batching thread
        return Client(**options)
    # What Client(auto_batch_tracing=True) does, but with daemon threads: a thread still
    # waiting on an endpoint after the bounded flush must not hold up the process's exit.
    client = Client(auto_batch_tracing=False, **options)
    client._use_daemon_threads = True
    client.tracing_queue = PriorityQueue(maxsize=_TRACING_QUEUE_MAX_SIZE)
    threading.Thread(
        target=tracing_control_thread_func, args=(weakref.ref(client),), daemon=True, name="langsmith"
    ).start()
    return client


class Export:
    """One run's LangSmith export: its tracer while the run goes on, then a bounded flush."""

    def __init__(self, settings: SmithSettings, facts: RunFacts) -> None:
        self.settings = settings
        self.facts = facts
        self.errors: list[str] = []
        protect_secret(settings.api_key)
        quiet_library_logs()
        self.client = make_client(settings, on_error=self._on_error)
        self.tracer = TurnTracer(project_name=settings.project, client=self.client, facts=facts)

    def _on_error(self, error: Exception) -> None:
        if len(self.errors) < 5:
            self.errors.append(describe_export_error(error))

    def close(self, timeout: float = FLUSH_TIMEOUT_S) -> bool:
        """Send what is left within `timeout` seconds, then drop the rest. True if all was sent."""
        client = self.client
        sent = False
        reason = f"no answer within {timeout:g} s"
        try:
            client.flush(timeout=timeout)
            queue = client.tracing_queue
            sent = not (queue is not None and queue.unfinished_tasks) and not self.errors
            if queue is not None:
                drop(queue)
            client.close(timeout=0)
        except KeyboardInterrupt:  # Ctrl-C while waiting: stop waiting, the run stands
            reason = "interrupted while sending"
        except Exception as exc:  # noqa: BLE001 - tracing never fails the run
            reason = describe_export_error(exc)
        if not sent:
            reason = self.errors[0] if self.errors else reason
            logger.warning(
                "LangSmith: the trace of run %s did not fully reach %s (%s); the run's record is complete",
                self.facts.run_id,
                self.settings.endpoint,
                redact_secrets(reason),
            )
        return sent


def describe_export_error(error: BaseException) -> str:
    """One short line for an export failure (langsmith's own messages run to many lines)."""
    name = error.__class__.__name__
    if "Connection" in name:
        return "cannot connect"
    if "Timeout" in name:
        return "timed out"
    lines = redact_secrets(str(error)).strip().splitlines()
    return f"{name}: {lines[0][:160]}" if lines else name


def quiet_library_logs() -> None:
    """Leave langsmith's many-line warnings out unless the application set a level for them.

    An export's failure is summed up in one warning on this module's logger instead.
    """
    library = logging.getLogger("langsmith")
    if library.level == logging.NOTSET:
        library.setLevel(logging.ERROR)


def drop(queue: PriorityQueue[Any]) -> None:
    while True:
        try:
            queue.get_nowait()
        except Empty:
            return
        queue.task_done()


@contextmanager
def exporting(trace: bool, run_id: str, shape: Shape, hosts: Mapping[str, str]) -> Iterator[Export | None]:
    """Trace the runs started inside this block to LangSmith if it is configured and `trace` is on.

    Inside, our tracer is LangChain's context tracer, so every run gets it and LangChain
    adds no tracer of its own; without an export, LangChain's tracing is switched off
    for the block. At the end, success or not, the trace is flushed with a bounded wait.
    """
    export: Export | None = None
    settings = settings_from_env() if trace else None
    if settings is not None:
        try:
            export = Export(settings, RunFacts(run_id, shape, dict(hosts)))
        except Exception as exc:  # noqa: BLE001 - tracing must never stop a run
            logger.warning("LangSmith: tracing is off for this run: %s", describe_export_error(exc))
    if export is None:
        with tracing_context(enabled=False):
            yield None
        return
    token = tracing_v2_callback_var.set(export.tracer)
    try:
        yield export
    finally:
        tracing_v2_callback_var.reset(token)
        export.close()
