"""The dialogue graphs as LangGraph Server holds them, with every guarantee `duologue run` gives.

A served run brings its context as JSON (ServedContext): per-participant model, host and
option overrides, and the run-wide residency settings. It is read once, where the server
builds the run's graph (graphs/run/studio.py), into a ServedDialogue: the shape with the
overrides applied, and a `connect` that reaches the models exactly as the runner does
(runner.prepare, then the source's connect: pinned options, residency placement with
require_gpu, the truncation check, thinking kept apart). With $DUOLOGUE_RUNS_DIR set the run
is also recorded, through the run store, under the thread's id; with
$OTEL_EXPORTER_OTLP_ENDPOINT set its trace is exported as `duologue run` exports one.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from uuid import UUID

from langchain_core.runnables import Runnable
from langgraph.types import Command
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from graphs.engine.context import DialogueContext
from graphs.engine.relay import labels
from graphs.engine.schedule import plan_turns
from graphs.engine.spec import ModelOptions, Participant, Shape, describe_validation_error, with_overrides
from graphs.engine.state import Turn
from graphs.errors import DuologueError, RunNotFound
from graphs.ollama.api import normalize_host
from graphs.ollama.residency import Policy
from graphs.ollama.timeouts import TIMEOUT_S
from graphs.records.schema import InputsRecord, TraceRecord
from graphs.records.store import RUNS_DIR_ENV, RunStore, RunWriter
from graphs.records.transcript import TurnStats, stats_of
from graphs.run import otel
from graphs.run.runner import (
    RunOutcome,
    RunRequest,
    RunSession,
    failure_message,
    initial_meta,
    prepare,
    record_ending,
    residency_settings,
    summary_sentences,
)
from graphs.run.tracing import TraceRecorder

HELD_BY = "langgraph-server"
"""run.json's `held_by` for a served run: its checkpoints are the server's."""


class ContextError(DuologueError, ValueError):
    """A served run's context does not describe the dialogue: one line naming the field.

    A ValueError, since LangGraph Server shows a run's error message only for the builtin kinds.
    """


class ServedRunFailed(DuologueError, RuntimeError):
    """A served run stopped early: its one line, as `duologue run` says it (a RuntimeError, so
    the server shows the message rather than "An internal error occurred")."""


class ParticipantSettings(BaseModel):
    """What a run changes for one participant; unset fields keep the shape's."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    model: str | None = Field(default=None, min_length=1)
    """The Ollama model it speaks with, as `--model NAME=MODEL`."""
    host: str | None = Field(default=None, min_length=1)
    """Its Ollama server, as `--host NAME=URL`; unset: the shape's, else $OLLAMA_HOST."""
    options: ModelOptions | None = None
    """Its model options, as `--set NAME.KEY=VALUE`: only the keys given change."""


class ServedContext(BaseModel):
    """A served run's context, the JSON Studio and the SDK send; every field is optional."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    shape: str | None = None
    """The shape, a built-in name or a shape file: the server mirrors the assistant's
    `configurable.shape` here."""
    participants: dict[str, ParticipantSettings] = Field(default_factory=dict)
    """Overrides by participant name (`a`, `b`, `pro`, ...)."""
    residency_policy: Policy | None = None
    """Where models sit while they speak: auto (the default), exclusive or shared."""
    require_gpu: bool | None = None
    """Stop rather than let a turn run partly on the CPU; unset: once its host has shown VRAM."""
    strict_context: bool | None = None
    """Stop when Ollama truncated a prompt, instead of flagging the turn."""
    timeout_s: float | None = Field(default=None, gt=0)
    """Give up on a turn after this many seconds without a chunk from its model."""


def read_context(raw: Any) -> ServedContext:
    """The run's context, or one ContextError naming the first field that is wrong."""
    if raw is None:
        return ServedContext()
    if isinstance(raw, ServedContext):
        return raw
    if not isinstance(raw, Mapping):
        raise ContextError(f"the run's context should be a JSON object, got {type(raw).__name__}")
    try:
        return ServedContext.model_validate(dict(raw))
    except ValidationError as exc:
        raise ContextError(f"the run's context: {describe_validation_error(exc)}") from None


def served_shape(shape: Shape, context: ServedContext) -> Shape:
    """The shape with the context's models and options applied, as --model and --set are."""
    for name in context.participants:
        if name not in shape.participant_names:
            raise ContextError(
                f"the run's context: participants.{name}: shape '{shape.name}' has no participant "
                f"'{name}'; its participants are {', '.join(shape.participant_names)}"
            )
    models = {name: p.model for name, p in context.participants.items() if p.model}
    settings = [
        (name, key, value)
        for name, p in context.participants.items()
        if p.options is not None
        for key, value in p.options.model_dump(exclude_unset=True).items()
    ]
    try:
        return with_overrides(shape, models, settings)
    except DuologueError as exc:
        raise ContextError(f"the run's context: {exc}") from None


def served_hosts(shape: Shape, context: ServedContext) -> dict[str, str]:
    """Each participant's host: the context's, else the shape's, else $OLLAMA_HOST (as the CLI's)."""
    from graphs.run.providers import participant_hosts

    named = {name: normalize_host(p.host) for name, p in context.participants.items() if p.host}
    return participant_hosts(shape, None, named)


def stopped_by_user(error: BaseException | None) -> bool:
    """The run was cancelled: Studio's or the SDK's cancel reaches the graph as the server's
    UserInterrupt (langgraph_api.errors, a package only the server has), or as a cancelled task."""
    if isinstance(error, (asyncio.CancelledError, KeyboardInterrupt)):
        return True
    return any(
        kind.__name__ == "UserInterrupt" and kind.__module__.startswith("langgraph_api")
        for kind in type(error).__mro__
    )


def runs_dir_from_env() -> Path | None:
    """Where served runs are recorded: $DUOLOGUE_RUNS_DIR, or nowhere when it is unset."""
    value = os.environ.get(RUNS_DIR_ENV)
    return Path(value) if value else None


class ServedDialogue:
    """One served run's hold on its models and, when recorded, on its run record."""

    def __init__(
        self, shape: Shape, context: ServedContext, run_id: str | None, runs_dir: Path | None
    ) -> None:
        self.shape = served_shape(shape, context)
        self.context = context
        self.hosts = served_hosts(self.shape, context)
        self.run_id = run_id
        self.runs_dir = runs_dir if run_id else None
        self.request: RunRequest | None = None
        self.models: dict[str, Runnable] = {}
        self.stop = threading.Event()
        collector = otel.settings_for(None) if run_id else None  # $OTEL_EXPORTER_OTLP_ENDPOINT
        wanted = self.runs_dir is not None or collector is not None
        self.recording = ServedRecording(self, self.runs_dir, collector) if wanted else None
        self._lock = threading.Lock()

    def dialogue_context(self) -> DialogueContext:
        return DialogueContext(self.shape, connect=self.connect, summarize=summary_sentences)

    def connect(self, participant: Participant, topic: str, turns: int) -> Runnable:
        """The participant's guarded chat model; the first call prepares the run as the runner does."""
        with self._lock:
            if self.request is None:
                self._open(topic, turns)
            return self.models[participant.name]

    def _open(self, topic: str, turns: int) -> None:
        context = self.context
        request = RunRequest(
            shape=self.shape,
            topic=topic,
            turns=turns,
            hosts=self.hosts,
            runs_dir=self.runs_dir,
            run_id=self.run_id,
            stop=self.stop,
            residency_policy=context.residency_policy or "auto",
            require_gpu=context.require_gpu,
            strict_context=bool(context.strict_context),
            timeout_s=context.timeout_s or TIMEOUT_S,
            trace=False,  # the server traces to LangSmith itself
            checkpoint_url=None,  # the server keeps the checkpoints
        )
        request, versions = prepare(request)
        connect = request.source.connect(
            request.shape, request.hosts, residency_settings(request), request.stop, request.timeout_s
        )
        self.models = {p.name: connect(p, request.hosts[p.name]) for p in request.shape.connected}
        self.request = request
        if self.recording is not None:
            self.recording.open(request, versions)

    def ended(self, error: BaseException | None) -> str | None:
        """The server's run ended (with `error`, or None): record how, close the models, and
        return the failure's one line."""
        stopped = stopped_by_user(error)
        if stopped:
            self.stop.set()  # the turn in progress ends at its next chunk (connector.until_stopped)
        if error is None and self.request is None and self.recording is not None:
            self._open_at_a_pause(self.recording.state)
        message = self.failure(error) if error is not None and not stopped else None
        try:
            if self.recording is not None:
                self.recording.ended(error, message)
        finally:
            request = self.request
            for model in self.models.values():
                if request is not None:
                    request.source.close(model)
        return message

    def _open_at_a_pause(self, state: Mapping[str, Any]) -> None:
        """A run that paused before it reached a model (a person opens the dialogue): its record
        starts here, so it says whose words it waits for, as `duologue run`'s does."""
        if "topic" not in state or "max_turns" not in state:
            return
        try:
            with self._lock:
                self._open(str(state["topic"]), int(state["max_turns"]))
        except DuologueError:
            return  # its servers' check failed: the run that resumes it says so, in its own line

    def failure(self, error: BaseException) -> str:
        if self.request is None:  # before any model was reached: the servers' check, say
            return str(error) if isinstance(error, DuologueError) else f"{error.__class__.__name__}: {error}"
        outcome = self.recording.outcome if self.recording is not None else None
        done = outcome or RunOutcome(self.request.run_id or "", Path(), "failed")
        return failure_message(error, self.request, done)


class ServedRecording:
    """What a served run leaves behind, as the runner leaves it: its record (run.json,
    transcript.md, trace.jsonl, inputs.jsonl, by the thread's id, written by the run store)
    when a runs folder is named, and its OpenTelemetry trace when a collector is.

    The server saves its own checkpoints, so a turn's row is written as the turn ends.
    """

    def __init__(
        self, served: ServedDialogue, runs_dir: Path | None, collector: otel.OtelSettings | None
    ) -> None:
        self.served = served
        self.runs_dir = runs_dir
        self.collector = collector
        self.request: RunRequest | None = None
        self.outcome: RunOutcome | None = None
        self.session: RunSession | None = None
        """The run record's writer and what it holds, once the run reached its models."""
        self.spans: otel.Export | otel.NoExport = otel.NoExport()
        self.recorder = ServedRecorder(self)
        self._pending: list[TraceRecord | InputsRecord] = []
        self._seq = 0
        self._state: dict[str, Any] = {}
        self._lock = threading.RLock()

    def open(self, request: RunRequest, versions: dict[str, str]) -> None:
        run_id = request.run_id or ""
        stats: dict[int, TurnStats] = {}
        session = None
        if self.runs_dir is not None:
            store = RunStore(self.runs_dir)
            try:
                run = store.load(run_id)
            except RunNotFound:
                meta = initial_meta(request, versions).model_copy(update={"held_by": HELD_BY})
                writer = store.create(meta)
            else:
                writer = RunWriter(run.folder, run.meta)
                stats = stats_of(run.finished_records)
                self._seq = max((r.seq for r in run.trace), default=0)
            writer.save_meta(status="running", ended_at=None, error=None, paused_before_turn=None)
            outcome = RunOutcome(writer.run_id, writer.folder, "running", stats=stats)
            session = RunSession(request, writer, outcome)
        else:
            outcome = RunOutcome(run_id, Path(), "running")
        spans = otel.start_export(self.collector, run_id, request.shape, request.hosts)
        with self._lock:
            self.request, self.outcome, self.session, self.spans = request, outcome, session, spans
            self._take_state(outcome)
            pending, self._pending = self._pending, []
        for row in pending:
            self.add(row)

    def add(self, row: TraceRecord | InputsRecord) -> None:
        """A trace or inputs row from the recorder; held until the run reached its models."""
        with self._lock:
            if self.outcome is None:
                self._pending.append(row)
                return
            writer = self.session.writer if self.session is not None else None
            if isinstance(row, InputsRecord):
                if writer is not None:
                    writer.append_inputs(row)
                return
            self._seq += 1
            row = row.model_copy(update={"seq": self._seq})
            if writer is not None:
                writer.append_trace(row)
            self.spans.row(row)
            if row.is_turn and row.turn is not None and not row.error:
                self.outcome.stats[row.turn] = TurnStats.of(row)

    @property
    def state(self) -> dict[str, Any]:
        """The state the latest node started on."""
        with self._lock:
            return dict(self._state)

    def saw_state(self, state: Mapping[str, Any]) -> None:
        """A node starts on this state: what was finished before this server run took the thread."""
        with self._lock:
            self._state = dict(state)
            if self.outcome is not None:
                self._take_state(self.outcome)

    def _take_state(self, outcome: RunOutcome) -> None:
        turns: list[Turn] = list(self._state.get("turns") or [])
        if len(turns) > len(outcome.turns):
            outcome.turns = turns
        for said in self._state.get("interjections") or []:
            outcome.interjections[said["before_turn"]] = said["text"]

    def finished(self, outputs: Any) -> None:
        """A node finished with `outputs`: keep its turn, interjection or notes, as the runner does."""
        update = outputs.update if isinstance(outputs, Command) else outputs
        if not isinstance(update, Mapping):
            return
        with self._lock:
            outcome = self.outcome
            if outcome is None:
                return
            for said in update.get("interjections") or []:
                outcome.interjections[said["before_turn"]] = said["text"]
            for turn in update.get("turns") or []:
                if not outcome.turns or turn["number"] > outcome.turns[-1]["number"]:
                    outcome.turns.append(turn)
            if update.get("observation"):
                outcome.observation = update["observation"]
            if self.session is not None and (update.get("turns") or update.get("observation")):
                self.session.save_transcript()

    def ended(self, error: BaseException | None, message: str | None) -> None:
        """Record how the run ended, then flush its trace (bounded, as the runner's)."""
        request, outcome = self.request, self.outcome
        if request is None or outcome is None:
            return  # the run stopped before it reached a model: nothing was recorded
        paused = None
        ending: str | None = None
        if stopped_by_user(error):
            status, message, ending = "interrupted", "interrupted by the user", "Run interrupted by the user"
        elif error is not None:
            status, ending = "failed", f"Run failed: {message}"
        elif len(outcome.turns) >= request.turns and (
            request.shape.observer is None or outcome.observation is not None
        ):
            status = "completed"
        else:
            status = "interrupted"
            number = len(outcome.turns) + 1
            paused = number if number in request.shape.interject_before else None
            ending = f"Waiting for the facilitator before turn {number}" if paused else None
            person = person_due(request, number) if not paused else None
            if person is not None:  # its interrupt waits for their words: Command(resume=TEXT)
                message = f"waiting for {person} to write turn {number}; resume the thread with their words"
                ending = f"Run interrupted: {message}"
        try:
            if self.session is not None:
                record_ending(self.session, status, message, ending, paused_before_turn=paused)
            outcome.status = status
            self.spans.run_ended(status, message, paused)
        finally:
            self.spans.close()


def person_due(request: RunRequest, number: int) -> str | None:
    """The label of the person whose turn `number` is, if it is a person's."""
    if number > request.turns:
        return None
    speaker = plan_turns(request.shape, request.turns)[number - 1].speaker
    return labels(request.shape)[speaker] if request.shape.participant(speaker).is_person else None


class ServedRecorder(TraceRecorder):
    """The runner's TraceRecorder, also keeping each node's state and result for the transcript."""

    def __init__(self, recording: ServedRecording) -> None:
        self.recording = recording
        shape = recording.served.shape
        from graphs.engine.schedule import turn_due

        super().__init__(
            recording.served.run_id or "",
            recording.add,
            recording.add,
            planner=lambda state: turn_due(shape, state),
            hosts=recording.served.hosts,
        )

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().on_chain_start(serialized, inputs, run_id=run_id, metadata=metadata, **kwargs)
        if run_id in self._open and isinstance(inputs, Mapping):
            self.recording.saw_state(inputs)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        node = run_id in self._open
        super().on_chain_end(outputs, run_id=run_id, **kwargs)
        if node:
            self.recording.finished(outputs)
