"""Holds one dialogue: checks the servers, runs the graph, and records every turn.

The runner is what the CLI and the Streamlit page call. It streams the graph, hands
tokens and finished turns to a RunObserver, and has the run store write each turn
as it finishes, so whatever stops the run, the finished turns are on disk.
"""

from __future__ import annotations

import dataclasses
import platform
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessageChunk
from langchain_core.runnables import Runnable
from langgraph.types import Command

from graphs.engine.build import build_graph, recursion_limit
from graphs.engine.context import DialogueContext
from graphs.engine.nodes import CLOSING, FACILITATOR
from graphs.engine.relay import labels
from graphs.engine.schedule import PlannedTurn, plan_turns, turn_due
from graphs.engine.spec import OPENAI_OPTIONS, Participant, Shape
from graphs.engine.state import DialogueState, Observation, PersonAnswer, PersonAsk, Turn
from graphs.errors import DuologueError, RunFailed, RunInterrupted
from graphs.ollama import api as ollama
from graphs.ollama import residency
from graphs.openai import api as openai_api
from graphs.records import checkpoints
from graphs.records.faults import RecordError, fault_of
from graphs.records.schema import InputsRecord, ParticipantRecord, RunMeta, TraceRecord, package_version
from graphs.records.store import (
    CHECKPOINTS,
    META,
    TRACE,
    TRANSCRIPT,
    RunStore,
    RunWriter,
    new_run_id,
    now_iso,
)
from graphs.records.transcript import TurnStats, header_text, transcript_pieces, with_observer_notes
from graphs.run import langsmith as smith
from graphs.run import otel
from graphs.run.observe import RunObserver, SilentObserver
from graphs.run.providers import ByProvider
from graphs.run.tracing import TraceRecorder


class ModelSource(Protocol):
    """Where a run's models come from: Ollama by default, a test's scripted models otherwise.

    A run, a resume and a fork take the same four steps through it, whatever the source.
    """

    def versions(self, shape: Shape, hosts: Mapping[str, str]) -> dict[str, str]:
        """Each host's version, after checking it serves its participants' models."""
        ...

    def resolve(self, shape: Shape, hosts: Mapping[str, str], topic: str, turns: int) -> Shape:
        """The shape with what its options leave open pinned for this dialogue."""
        ...

    def connect(
        self,
        shape: Shape,
        hosts: Mapping[str, str],
        settings: residency.ResidencySettings,
        stop: threading.Event | None,
        timeout_s: float,
    ) -> Callable[[Participant, str], Runnable]:
        """A factory of chat models for the resolved shape: connect(participant, host); a turn
        gives up after `timeout_s` seconds without a chunk from its model."""
        ...

    def close(self, model: Runnable) -> None:
        """Release what the model opened (its HTTP client)."""
        ...


@dataclass
class RunRequest:
    """A dialogue to hold: the shape (overrides applied), the topic, and where to reach models."""

    shape: Shape
    topic: str
    turns: int
    hosts: Mapping[str, str]
    runs_dir: Path | None = None
    run_id: str | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    """Set it (from any thread) to interrupt the run, as Ctrl-C would."""
    embedded: bool = False
    """The models are on duologue's embedded server, which a resume must start again."""
    residency_policy: residency.Policy = "auto"
    """Where models sit while they speak: auto, exclusive or shared (graphs/ollama/residency.py)."""
    require_gpu: bool | None = None
    """Stop rather than let a turn run partly on the CPU; None: once its host has shown VRAM."""
    strict_context: bool = False
    """Stop when Ollama truncated a prompt, instead of flagging the turn."""
    timeout_s: float = ollama.TIMEOUT_S
    """Give up on a turn when its model sends nothing for this long, before its first token or
    between two chunks (--timeout); the default suits a 32B model loading from disk."""
    trace: bool = True
    """Export the run's trace to LangSmith and over OpenTelemetry when they are configured
    (graphs/run/langsmith.py, graphs/run/otel.py); --no-trace turns both off."""
    otel: str | None = None
    """The OTLP/HTTP collector for the run's trace (--otel URL, a base URL as in
    $OTEL_EXPORTER_OTLP_ENDPOINT, which it overrides); None: as the environment says at the start."""
    checkpoint_url: str | None = field(default_factory=checkpoints.url_from_env)
    """Keep checkpoints in this Postgres database ($DUOLOGUE_CHECKPOINT_URL); None: SQLite in the folder."""
    source: ModelSource = field(default_factory=ByProvider, repr=False)
    """Where the models come from; tests give scripted ones, which take the same path."""
    sweep_id: str | None = None
    """The sweep this run is a cell of, recorded in run.json with `cell` (graphs/sweep)."""
    cell: int | None = None


@dataclass
class RunOutcome:
    run_id: str
    folder: Path
    status: str
    turns: list[Turn] = field(default_factory=list)
    stats: dict[int, TurnStats] = field(default_factory=dict)
    """What the transcript reads of each finished turn's trace row (its stats line, the total)."""
    interjections: dict[int, str] = field(default_factory=dict)
    paused_before_turn: int | None = None
    awaiting_person: int | None = None
    """The person's turn the run stopped at, no words given: `duologue resume` asks again."""
    observation: Observation | None = None
    """The observer's notes, once its node has run."""
    _read: tuple[tuple[int, ...], dict[int, TraceRecord]] = field(
        default_factory=lambda: ((), {}), init=False, repr=False, compare=False
    )
    """The turns `records` last read rows for, and those rows."""

    @property
    def records(self) -> dict[int, TraceRecord]:
        """Each finished turn's trace row, read back from trace.jsonl once more turns have finished:
        a run holds only their stats while it lasts. Empty for a run without a folder."""
        known = tuple(sorted(self.stats))  # a failed attempt's turn too, which has no finished row
        if known != self._read[0]:
            on_disk = self.folder != Path() and (self.folder / TRACE).exists()  # Path(): a served run's, none
            rows = RunStore(self.folder.parent).load(self.run_id).finished_records if on_disk else {}
            self._read = (known, {n: rows[n] for n in known if n in rows})
        return self._read[1]


def run_dialogue(request: RunRequest, observer: RunObserver | None = None) -> RunOutcome:
    """Hold a new dialogue; raise RunFailed (after recording it) if it stops early."""
    request, server_versions = prepare(request)  # num_ctx and think pinned before run.json records them
    writer = RunStore(request.runs_dir).create(
        initial_meta(request, server_versions), redraw=request.run_id is None
    )
    state: DialogueState = {"topic": request.topic, "max_turns": request.turns, "turns": []}
    outcome = RunOutcome(writer.run_id, writer.folder, "running")
    session = RunSession(request, writer, outcome, observer or SilentObserver())
    return drive(session, state)


def prepare(request: RunRequest) -> tuple[RunRequest, dict[str, str]]:
    """A copy of the request with its servers checked and its options pinned, and each host's
    version: the step a run, a resume and a fork share, taken once before anything is written."""
    checkpoints.check_reachable(request.checkpoint_url)
    source = request.source
    hosts = model_servers(request.shape, request.hosts)
    server_versions = source.versions(request.shape, hosts)
    shape = source.resolve(request.shape, hosts, request.topic, request.turns)
    return dataclasses.replace(request, shape=shape, hosts=hosts), server_versions


def model_servers(shape: Shape, hosts: Mapping[str, str]) -> dict[str, str]:
    """Each participant's server: its host, or for one on an OpenAI-compatible server its
    base_url, whatever host a flag, the shape or a recorded run gave it."""
    return {**hosts, **{p.name: p.base_url for p in shape.connected if p.base_url is not None}}


@dataclass
class RunSession:
    """One process's hold on a run: the request, its folder's writer, what it has finished so far,
    and who watches it."""

    request: RunRequest
    writer: RunWriter
    outcome: RunOutcome
    observer: RunObserver = field(default_factory=SilentObserver)
    spans: otel.Export | otel.NoExport = field(default_factory=otel.NoExport)
    """The run's OpenTelemetry export, told each trace row as it is written and the run's end."""
    names: dict[str, str] = field(init=False)
    plan: list[PlannedTurn] = field(init=False)
    heads: dict[tuple[Any, ...], str] = field(default_factory=dict)
    """Each finished turn's transcript text before its words, as rendered at an earlier turn
    (transcript_pieces)."""

    def __post_init__(self) -> None:
        self.names = labels(self.request.shape)
        self.plan = plan_turns(self.request.shape, self.request.turns)

    def announce(self, number: int) -> None:
        """Tell the observer that turn `number` (1-based) starts, if the plan has it."""
        if number <= len(self.plan):
            planned = self.plan[number - 1]
            model = self.request.shape.participant(planned.speaker).model
            self.observer.turn_started(planned, self.names[planned.speaker], model)

    def save_transcript(self, ending: str | None = None) -> None:
        pieces = transcript_pieces_of(self.request, self.writer.meta, self.outcome, ending, self.heads)
        self.writer.save_transcript(pieces)

    def ended(self) -> None:
        """Tell the observer how the run ended, once run.json says so (its optional run_ended)."""
        hook = getattr(self.observer, "run_ended", None)
        if hook is not None and self.outcome.status == self.writer.meta.status != "running":
            hook(self.outcome.status)


def drive(session: RunSession, graph_input: Any) -> RunOutcome:
    """Run the graph from `graph_input` (a first state, None to continue, or a resume Command).

    The trace's flush to LangSmith and to an OTLP collector (a wait of up to FLUSH_TIMEOUT_S
    each) comes last: after the ending is recorded and the folder unlocked, and after the
    observer's optional run_ended(status), so a stopped run is recorded, and a page shows it
    ended, at once.
    """
    request, writer, outcome = session.request, session.writer, session.outcome
    collector = otel.settings_for(request.otel, request.trace)
    with (
        smith.exporting(request.trace, writer.run_id, request.shape, request.hosts),
        otel.exporting(collector, writer.run_id, request.shape, request.hosts) as session.spans,
    ):
        exported_to = getattr(session.observer, "trace_exported", None)  # an optional hook (observe.py)
        if exported_to is not None and session.spans.settings is not None:
            exported_to(session.spans.settings.shown)
        try:
            return drive_locked(session, graph_input)
        finally:
            session.ended()
            session.spans.run_ended(outcome.status, writer.meta.error, outcome.paused_before_turn)


def drive_locked(session: RunSession, graph_input: Any) -> RunOutcome:
    request, writer, outcome = session.request, session.writer, session.outcome
    shape, source = request.shape, request.source
    models: dict[str, Runnable] = {}
    with writer.lock():
        try:
            writer.save_meta(status="running", ended_at=None, error=None, paused_before_turn=None)
            session.observer.run_started(writer.run_id, writer.folder)
            connect = source.connect(
                shape, request.hosts, residency_settings(request), request.stop, request.timeout_s
            )
            models = {p.name: connect(p, request.hosts[p.name]) for p in shape.connected}
            with checkpoints.checkpointer(writer, request.checkpoint_url) as checkpointer:
                hold(session, models, graph_input, checkpointer)
        except (KeyboardInterrupt, RunInterrupted) as exc:
            ending = "Run interrupted by the user"
            unrecorded = record_ending(session, "interrupted", "interrupted by the user", ending)
            if unrecorded:
                failed = RunInterrupted(f"run {writer.run_id} interrupted, but {unrecorded}")
                failed.recorded = False
                raise failed from exc
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, then re-raised as one line
            message = failure_message(exc, request, outcome)
            unrecorded = record_ending(session, "failed", message, f"Run failed: {message}")
            kept = f"run {writer.run_id}: {len(outcome.turns)} finished turn(s) kept"
            raise RunFailed(f"{message} ({kept}{f'; but {unrecorded}' if unrecorded else ''})") from exc
        finally:
            for model in models.values():
                source.close(model)
        if outcome.paused_before_turn is not None:
            pause = f"Waiting for the facilitator before turn {outcome.paused_before_turn}"
            unrecorded = record_ending(
                session, "interrupted", None, pause, paused_before_turn=outcome.paused_before_turn
            )
        elif outcome.awaiting_person is not None:
            waiting = awaiting_line(session, outcome.awaiting_person)
            unrecorded = record_ending(session, "interrupted", waiting, f"Run interrupted: {waiting}")
        else:
            unrecorded = record_ending(session, "completed", None)
        if unrecorded:
            raise RunFailed(f"run {writer.run_id} held all its turns, but {unrecorded}")
    return outcome


def awaiting_line(session: RunSession, number: int) -> str:
    """Why a run stopped at a person's turn, and how it goes on: run.json's error, the transcript's end."""
    speaker = session.plan[number - 1].speaker
    return (
        f"waiting for {session.names[speaker]} ({speaker}) to write turn {number}; "
        f"`duologue resume {session.writer.run_id}` asks again"
    )


def record_ending(
    session: RunSession, status: str, error: str | None, ending: str | None = None, **more: Any
) -> str | None:
    """Say in run.json how the run ended, then in the transcript (with `ending`); what could not
    be written is returned, not raised, for the run's one line, since how it ended matters more."""
    writer = session.writer
    try:
        finish(writer, session.outcome, status, error, **more)
    except RecordError as exc:
        return f"{META} could not be updated ({what_failed(exc)}) and still says {writer.meta.status}"
    if ending is not None:
        try:
            session.save_transcript(ending)
        except RecordError as exc:
            return f"{TRANSCRIPT} could not be updated ({what_failed(exc)})"
    return None


def what_failed(exc: RecordError) -> str:
    return exc.fault.what if exc.fault else str(exc)


def hold(session: RunSession, models: Mapping[str, Runnable], graph_input: Any, checkpointer: Any) -> None:
    request, writer, outcome = session.request, session.writer, session.outcome
    shape = request.shape

    held = HeldRows(writer, outcome, session.spans.row)
    last_seq = max((r.seq for r in RunStore(writer.folder.parent).load(writer.run_id).trace), default=0)
    for turn in outcome.turns:
        if turn["number"] not in outcome.stats:
            last_seq += 1
            held.write_saved(lost_row(session, turn, last_seq))
    recorder = TraceRecorder(
        writer.run_id,
        held.add,
        held.add_inputs,
        planner=lambda state: turn_due(shape, state),
        hosts=dict(request.hosts),
        first_seq=last_seq + 1,
        on_placed=getattr(session.observer, "turn_placed", None),  # an optional hook (observe.py)
    )
    graph: Any = build_graph(shape, checkpointer=checkpointer)
    config: Any = {
        "callbacks": [recorder, TokenRelay(session.observer)],
        "recursion_limit": recursion_limit(request.turns),
        "run_name": f"duologue {shape.name} {writer.run_id}",
        "metadata": {"run_id": writer.run_id, "shape": shape.name},
        "configurable": {"thread_id": writer.run_id},
    }
    saved = checkpoints.SavedTurns(checkpointer, config)
    session.announce(len(outcome.turns) + 1)
    context = DialogueContext(shape, models, summarize=summary_sentences)
    while graph_input is not DONE:
        asked = stream_graph(session, graph, config, context, saved, held, graph_input)
        graph_input = DONE if asked is None else person_answer(session, asked)


DONE = object()
"""hold's loop is over: the dialogue ended, or waits (for the facilitator, or for a person)."""


def stream_graph(
    session: RunSession,
    graph: Any,
    config: Any,
    context: DialogueContext,
    saved: checkpoints.SavedTurns,
    held: HeldRows,
    graph_input: Any,
) -> PersonAsk | None:
    """Stream the graph from `graph_input` until it ends or pauses; a person's turn that is due
    is returned (the graph waits on its interrupt), a pause for the facilitator is kept."""
    request, writer, outcome = session.request, session.writer, session.outcome
    asked: PersonAsk | None = None
    interrupted = f"run {writer.run_id} interrupted"
    # Only updates: LangGraph's own token stream ("messages") woke this thread once a chunk, a
    # millisecond a turn; the tokens reach the observer through TokenRelay, in the turn's thread.
    stream = graph.stream(graph_input, config, context=context, stream_mode="updates", durability="sync")
    streaming.active = True
    try:
        for payload in stream:
            held.check()
            if "__interrupt__" in payload:
                asked = person_asked(payload["__interrupt__"])
                if asked is None:
                    outcome.paused_before_turn = len(outcome.turns) + 1
            else:
                record_updates(session, saved, held, payload)
            if request.stop.is_set():
                raise RunInterrupted(interrupted)
        held.check()
    except BaseException as exc:
        request.stop.set()  # a turn another thread holds ends at its next token, not its last
        stream.close()
        keep_saved_turns(session, graph, config, held)
        held.unsaved(exc, session.outcome.folder)
        if isinstance(exc, RunInterrupted):  # the turn's own stop (until_stopped) says it for the run
            raise RunInterrupted(interrupted) from exc
        raise
    finally:
        streaming.active = False
    return asked


streaming = threading.local()
"""`active` while this thread streams a run's graph (see stop_is_polled)."""


def stop_is_polled() -> bool:
    """Whether this thread is streaming a run's graph, whose steps run in it and poll the run's
    stop: the turn at its next token (connector.until_stopped), the loop between steps. A signal
    handler then need only set the stop; an exception raised there would cut the turn's request
    and its records short wherever it landed, instead of ending the turn as a stop does."""
    return bool(getattr(streaming, "active", False))


def person_asked(interrupts: Sequence[Any]) -> PersonAsk | None:
    """The person whose turn the graph waits on (graphs/engine/nodes.py person_turn), or None
    when it waits for the facilitator's interjection."""
    for pending in interrupts:
        value = getattr(pending, "value", None)
        if isinstance(value, dict) and "person" in value:
            return cast(PersonAsk, value)
    return None


def person_answer(session: RunSession, asked: PersonAsk) -> Any:
    """What resumes the person's turn: their words from the observer's optional person_turn hook
    (the CLI reads the terminal, the page its Send box), timed; DONE when none came, so the run
    ends interrupted and `duologue resume` asks again."""
    hook = getattr(session.observer, "person_turn", None)
    planned = PlannedTurn(asked["turn"], asked["person"], asked["kind"])
    started = time.monotonic()
    text = hook(planned, asked["label"]) if hook is not None else None
    if text is None:
        session.outcome.awaiting_person = asked["turn"]
        return DONE
    answer: PersonAnswer = {"text": text, "seconds": round(time.monotonic() - started, 3)}
    return Command(resume=answer)


class HeldRows:
    """The trace rows of a run, as the recorder ends them; a turn's row is held until its
    checkpoint is saved, so trace.jsonl never counts a turn that a resume would generate again.

    Other rows (the facilitator's, a failed or stopped attempt's) are written at once. A row
    still held when the run stops is written with the reason its turn was not saved: an attempt
    in the log, not a finished turn.
    """

    def __init__(
        self, writer: RunWriter, outcome: RunOutcome, written: Callable[[TraceRecord], None] | None = None
    ) -> None:
        self.writer = writer
        self.outcome = outcome
        self.written = written
        """Told each row once trace.jsonl has it (the run's OpenTelemetry export)."""
        self.failure: RecordError | None = None
        """A write that failed in a node's thread; check() raises it in the main thread, since
        LangGraph logs a callback's error on stderr and may not pass it on."""
        self._held: dict[int, TraceRecord] = {}
        self._saved: set[int] = set()
        self._lock = threading.Lock()

    def add_inputs(self, record: InputsRecord) -> None:
        """The recorder's on_inputs, in the node's thread."""
        try:
            self.writer.append_inputs(record)
        except RecordError as exc:
            exc.turn = record.turn
            self.failure = self.failure or exc

    def add(self, row: TraceRecord) -> None:
        """The recorder's on_record, in the node's thread."""
        with self._lock:
            if row.is_turn and row.turn is not None and not row.error and row.turn not in self._saved:
                self._held[row.turn] = row
                return
        try:
            self._write(row)
        except RecordError as exc:
            exc.turn = row.turn
            self.failure = self.failure or exc

    def write_saved(self, row: TraceRecord) -> None:
        """The row of a turn whose checkpoint was saved before this process held the run."""
        with self._lock:
            self._saved.add(row.turn or 0)
        self._write(row)

    def saved(self, number: int) -> TraceRecord | None:
        """Turn `number`'s checkpoint is saved: its row counts now. Returns the row it held (the
        observer is shown it), if it held one."""
        with self._lock:
            self._saved.add(number)
            row = self._held.pop(number, None)
        if row is not None:
            self._write(row)
        return row

    def unsaved(self, exc: BaseException, folder: Path) -> None:
        """The run stopped with rows still held: their turns were generated but never saved."""
        with self._lock:
            rows = sorted(self._held.values(), key=lambda r: r.seq)
            self._held.clear()
        stopped = isinstance(exc, (KeyboardInterrupt, RunInterrupted))
        fault = checkpoints.sqlite_fault(exc, folder) or fault_of(exc)
        why = fault.what if fault else f"{exc.__class__.__name__}: {exc}"
        error = f"its checkpoint was not saved: {why}"
        if stopped:
            error = "stopped before its checkpoint was saved"
        for row in rows:
            try:
                self._write(row.model_copy(update={"error": error, "stopped": stopped}))
            except RecordError:
                return  # the disk that refused the checkpoint refuses the log too; the run's error says so

    def _write(self, row: TraceRecord) -> None:
        # A routing row is left to the next row's fsync: a crash that loses it loses no turn, and
        # a resume routes again.
        self.writer.append_trace(row, sync=row.node != FACILITATOR or row.error is not None)
        if row.turn is not None:
            self.outcome.stats[row.turn] = TurnStats.of(row)
        if self.written is not None:
            self.written(row)

    def check(self) -> None:
        """Raise, in the main thread, a write that failed in a node's thread."""
        if self.failure is not None:
            raise self.failure


def lost_row(session: RunSession, turn: Turn, seq: int) -> TraceRecord:
    """The row of a finished turn that the log lacks: its checkpoint was saved, then the disk
    refused its row. It counts as finished, as the checkpoint says, with no stats to show."""
    speaker = turn["speaker"]
    now = now_iso()
    return TraceRecord(
        run_id=session.writer.run_id,
        seq=seq,
        node=CLOSING if turn["kind"] == "closing" else speaker,
        turn=turn["number"],
        kind=turn["kind"],
        speaker=speaker,
        model=session.request.shape.participant(speaker).model,
        host=session.request.hosts.get(speaker),
        started_at=now,
        ended_at=now,
        latency_s=0.0,
    )


def keep_saved_turns(session: RunSession, graph: Any, config: Any, held: HeldRows) -> None:
    """Turns that were saved but not yet streamed when the run stopped: they are finished too."""
    try:
        saved = graph.get_state(config).values.get("turns", [])
    except Exception:  # noqa: BLE001 - the run is failing already; its own error is the one to report
        return
    outcome = session.outcome
    if len(saved) > len(outcome.turns):
        unstreamed = saved[len(outcome.turns) :]
        outcome.turns.extend(unstreamed)
        try:
            for turn in unstreamed:
                held.saved(turn["number"])
            session.save_transcript()
        except RecordError:
            return  # the disk refuses the record; the run's error says so


class TokenRelay(BaseCallbackHandler):
    """Hands each streamed chunk's thinking and text to the observer, in the turn's thread, as
    the model sends them."""

    def __init__(self, observer: RunObserver) -> None:
        self.observer = observer

    def on_llm_new_token(self, token: Any, *, run_id: Any, chunk: Any = None, **kwargs: Any) -> None:
        message = getattr(chunk, "message", None)
        if not isinstance(message, AIMessageChunk):
            return
        thinking = message.additional_kwargs.get("reasoning_content")
        if thinking:
            self.observer.token(str(thinking), True)
        if isinstance(message.content, str) and message.content:
            self.observer.token(message.content, False)


def record_updates(
    session: RunSession, saved: checkpoints.SavedTurns, held: HeldRows, payload: Mapping[str, Any]
) -> None:
    """Keep what a step finished: interjections, and each turn once its checkpoint is saved."""
    outcome = session.outcome
    for update in payload.values():
        if not isinstance(update, dict):
            continue
        if "observation" in update:
            outcome.observation = update["observation"]
            session.save_transcript()
        for said in update.get("interjections", []):
            outcome.interjections[said["before_turn"]] = said["text"]
        for turn in update.get("turns", []):
            if outcome.turns and turn["number"] <= outcome.turns[-1]["number"]:
                continue  # a resume replays a turn saved just before the stop; it is kept already
            saved.wait_for(turn["number"])
            try:
                row = held.saved(turn["number"])
                held.check()
                outcome.turns.append(turn)
                session.save_transcript()
            except RecordError as exc:
                exc.turn = turn["number"]
                raise
            session.observer.turn_finished(turn, row)
            session.announce(turn["number"] + 1)


def transcript_pieces_of(
    request: RunRequest,
    meta: RunMeta,
    outcome: RunOutcome,
    ending: str | None = None,
    heads: dict[tuple[Any, ...], str] | None = None,
) -> list[str]:
    """transcript.md's text, in pieces that join to it (transcript_pieces)."""
    shape = request.shape
    names = labels(shape)
    people = [p for p in shape.participants if p.is_person]
    kind = "Dialogue" if people else "Model-to-Model Dialogue"
    title = f"{kind}: " + " vs ".join(names[p.name] for p in shape.participants)
    header = [
        f"## {meta.started_at[:16].replace('T', ' ')} UTC",
        f"## Topic: {header_text(request.topic)}",
        "## Facilitator: duologue (passed messages, did not participate)",
        f"## Run: {meta.run_id} · shape {shape.name}",
    ]
    labelled = [p for p in shape.participants if p.label and not p.is_person]
    if labelled:  # else each turn's heading names the model already
        header.append("## Models: " + ", ".join(header_text(f"{p.label} = {p.model}") for p in labelled))
    if people:
        typed = ", ".join(header_text(names[p.name]) for p in people)
        header.append(f"## {'Person' if len(people) == 1 else 'People'}: {typed} (typed at the keyboard)")
    copied = None
    if meta.forked_from:
        copied = (str(meta.forked_from["run_id"]), int(meta.forked_from["at"]))
        first = "turn 1" if copied[1] == 1 else f"turns 1-{copied[1]}"
        header.append(f"## Forked from: run {copied[0]} after turn {copied[1]} ({first} copied from it)")
    pieces = transcript_pieces(
        title, header, outcome.turns, names, outcome.stats, ending, outcome.interjections, copied, heads
    )
    if outcome.observation is not None:
        observed = outcome.observation
        return [with_observer_notes("".join(pieces), observed["label"], observed["text"])]
    return pieces


def summary_sentences(turns: Sequence[tuple[int, str, str, str]]) -> list[str]:
    """The analysis's sentences on the dialogue, for the observer to read beside it."""
    from graphs.insight.analysis import DialogueTurn, analyze

    return analyze("observed", [DialogueTurn(*turn) for turn in turns]).summary


def participant_record(participant: Participant, label: str, host: str) -> ParticipantRecord:
    return ParticipantRecord(
        name=participant.name,
        label=label,
        model=participant.model,
        host=host,
        options=participant.options.model_dump(
            exclude_none=True, include=set(OPENAI_OPTIONS) if participant.provider == "openai" else None
        ),
    )


def residency_settings(request: RunRequest) -> residency.ResidencySettings:
    return residency.ResidencySettings(request.residency_policy, request.require_gpu, request.strict_context)


def initial_meta(request: RunRequest, server_versions: Mapping[str, str]) -> RunMeta:
    shape = request.shape
    names = labels(shape)
    versions = {
        "duologue": package_version("duologue"),
        "langgraph": package_version("langgraph"),
        "langchain-ollama": package_version("langchain-ollama"),
        "python": platform.python_version(),
    }
    on_openai = {p.base_url for p in shape.connected if p.provider == "openai"}
    if on_openai:
        versions["langchain-openai"] = package_version("langchain-openai")
    versions |= {
        f"{'openai' if host in on_openai else 'ollama'}@{host}": version
        for host, version in server_versions.items()
    }
    return RunMeta(
        run_id=request.run_id or new_run_id(shape.name),
        shape=shape.name,
        status="running",
        participants=[
            participant_record(p, names[p.name], request.hosts.get(p.name, "")) for p in shape.participants
        ],
        observer=(
            participant_record(observer, observer.display, request.hosts[observer.name])
            if (observer := shape.observer and shape.observer.as_participant())
            else None
        ),
        topic=request.topic,
        turns=request.turns,
        started_at=now_iso(),
        versions=versions,
        spec=shape.model_dump(mode="json"),
        embedded=request.embedded,
        settings={
            "residency_policy": request.residency_policy,
            "require_gpu": request.require_gpu,
            "strict_context": request.strict_context,
            "trace": request.trace,
            "timeout_s": request.timeout_s,
        },
        checkpoint_store=checkpoints.recorded_store(request.checkpoint_url),
        sweep_id=request.sweep_id,
        cell=request.cell,
    )


def finish(writer: RunWriter, outcome: RunOutcome, status: str, error: str | None, **more: Any) -> None:
    outcome.status = status
    writer.save_meta(status=status, ended_at=now_iso(), error=error, **more)


def failure_message(exc: BaseException, request: RunRequest, outcome: RunOutcome) -> str:
    number = len(outcome.turns) + 1
    if isinstance(exc, RecordError) and exc.turn is not None:
        number = exc.turn
    resume = f"then continue it with `duologue resume {outcome.run_id}`"
    if isinstance(exc, RecordError):
        return f"turn {number} could not be recorded: {exc}, {resume}"
    if isinstance(exc, DuologueError):
        return str(exc)
    database = checkpoints.describe_failure(exc, request.checkpoint_url)
    if database:
        return f"turn {number}: {database}"
    fault = checkpoints.sqlite_fault(exc, outcome.folder)
    if fault:
        where = outcome.folder / CHECKPOINTS
        advice = f"; {fault.remedy}, {resume}" if fault.remedy else ""
        return f"turn {number}'s checkpoint could not be saved in {where}: {fault.what}{advice}"
    planned = plan_turns(request.shape, request.turns)[min(len(outcome.turns), request.turns - 1)]
    speaker = request.shape.participant(planned.speaker)
    model = speaker.model
    describe = openai_api.describe_failure if speaker.provider == "openai" else ollama.describe_failure
    detail = describe(exc, request.hosts.get(planned.speaker, "?"))
    return f"turn {planned.number} ({model}) failed: {detail or f'{exc.__class__.__name__}: {exc}'}"
