"""Continuing runs: resume one that stopped, or fork one at a turn.

A run's checkpoints (SQLite in its folder or Postgres, thread id = run id) hold the finished turns;
its run.json holds the whole shape as it ran. Together they let a run continue where
it stopped without generating a finished turn again.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph.types import Command

from graphs.engine.build import build_graph
from graphs.engine.spec import Shape, with_overrides
from graphs.engine.state import DialogueState, Turn
from graphs.errors import DuologueError
from graphs.records import checkpoints
from graphs.records.schema import FORMAT_VERSION, RunMeta, TraceRecord
from graphs.records.store import RunRecord, RunStore, finished_records
from graphs.records.transcript import stats_of
from graphs.run.observe import RunObserver, SilentObserver
from graphs.run.runner import (
    ModelSource,
    RunOutcome,
    RunRequest,
    RunSession,
    drive,
    initial_meta,
    person_asked,
    prepare,
)

RECORDED_SETTINGS = frozenset({"residency_policy", "require_gpu", "strict_context", "trace", "timeout_s"})


class NothingToResume(DuologueError):
    """The run is complete already: a request that cannot be done, refused (exit 2) with the
    run left as it was, so a script that resumes until done does not take it for a resume."""


@dataclass
class ContinueOptions:
    """How to continue a recorded run: what a resume and a fork both take."""

    runs_dir: Path | str | None = None
    hosts: Mapping[str, str] | None = None
    """Hosts that replace the recorded ones, by participant name (an embedded server's port changes)."""
    observer: RunObserver | None = None
    trace: bool | None = None
    """Export the trace to LangSmith and over OpenTelemetry (None: as the run was recorded)."""
    otel: str | None = None
    """The OTLP/HTTP collector for this hold's trace (None: $OTEL_EXPORTER_OTLP_ENDPOINT, if set)."""
    timeout_s: float | None = None
    """Give up on a turn after this many seconds without a chunk (None: as the run was recorded)."""
    stop: threading.Event | None = None
    """Set it to interrupt the run."""
    checkpoint_url: str | None = None
    """A run kept in Postgres is reached with it ($DUOLOGUE_CHECKPOINT_URL when None); a fork keeps
    its new checkpoints there."""
    source: ModelSource | None = None
    """Where the models come from (None: Ollama)."""


def resume_dialogue(
    run_id: str, options: ContinueOptions | None = None, say: str | None = None
) -> RunOutcome:
    """Continue a failed or interrupted run from its last finished turn.

    `say` answers a pause for the facilitator's interjection.
    """
    options = options or ContinueOptions()
    store = RunStore(options.runs_dir)
    run = store.load(run_id)
    shape = continuable_shape(run)
    if run.meta.status == "completed":
        raise NothingToResume(
            f"run {run_id} is already completed; nothing to resume "
            f"(`duologue fork {run_id} --at N` continues it differently from turn N+1)"
        )
    request = recorded_request(run, shape, options)
    request.checkpoint_url = checkpoints.url_for_run(
        run.meta.checkpoint_store, options.checkpoint_url, run_id
    )
    state = checkpoint_state(store, run, shape, request.checkpoint_url)
    values: dict[str, Any] = dict(state.values) if state else {}
    awaits_person = state is not None and person_asked(state.interrupts) is not None
    paused = bool(state and state.interrupts) and not awaits_person  # the facilitator's pause
    if awaits_person and say is not None:
        raise DuologueError(
            f"run {run_id} is waiting for a person's turn, not the facilitator; resume it without --say "
            "and it asks them again"
        )
    if paused and say is None:
        raise DuologueError(
            f"run {run_id} is waiting for the facilitator before turn {len(values.get('turns', [])) + 1}; "
            "resume it with --say TEXT (or --say '' to add nothing)"
        )
    if say is not None and not paused:
        raise DuologueError(f"run {run_id} is not waiting for the facilitator; resume it without --say")
    graph_input: Any
    if paused:
        graph_input = Command(resume=say)
    elif values:
        graph_input = None  # a person's turn pending: the graph interrupts again and the run asks
    else:
        graph_input = first_state(request, [], [])
    request, _versions = prepare(request)
    outcome = RunOutcome(run_id, run.folder, "running")
    outcome.turns = list(values.get("turns", []))
    outcome.stats = stats_of(latest_records(run.trace, len(outcome.turns)))
    outcome.interjections = {i["before_turn"]: i["text"] for i in values.get("interjections", [])}
    outcome.observation = values.get("observation")
    writer = store.reopen(run_id)
    held_with = writer.meta.settings | {"timeout_s": request.timeout_s}  # a new --timeout counts from now on
    writer.meta = writer.meta.model_copy(update={"settings": held_with})  # saved once drive holds the run
    session = RunSession(request, writer, outcome, options.observer or SilentObserver())
    return drive(session, graph_input)


def fork_dialogue(
    run_id: str,
    at: int,
    options: ContinueOptions | None = None,
    model_overrides: Mapping[str, str] | None = None,
    settings: list[tuple[str, str, Any]] | None = None,
) -> RunOutcome:
    """A new run whose first `at` turns are the original's, continued with changed participants.

    The new run keeps its checkpoints at `options.checkpoint_url` ($DUOLOGUE_CHECKPOINT_URL when
    None), else in its folder; an original kept in Postgres is read from there.
    """
    options = options or ContinueOptions()
    store = RunStore(options.runs_dir)
    run = store.load(run_id)
    original = continuable_shape(run)
    recorded = run.meta.checkpoint_store
    source_url = checkpoints.url_for_run(recorded, options.checkpoint_url if recorded else None, run_id)
    state = checkpoint_state(store, run, original, source_url)
    values: dict[str, Any] = dict(state.values) if state else {}
    done: list[Turn] = list(values.get("turns", []))
    if not 1 <= at <= len(done):
        raise DuologueError(
            f"--at {at}: run {run_id} has {len(done)} finished turn(s); "
            f"fork it at a turn from 1 to {len(done)}"
            if done
            else f"run {run_id} has no finished turn to fork from"
        )
    swapped = {
        name for name, model in (model_overrides or {}).items() if original.participant(name).model != model
    }
    shape = with_overrides(unpinned(original, swapped), dict(model_overrides or {}), list(settings or []))
    request = recorded_request(run, shape, options)
    request.run_id = None
    request.checkpoint_url = options.checkpoint_url or checkpoints.url_from_env()
    request, server_versions = prepare(request)  # a new model gets its own num_ctx and think
    meta = initial_meta(request, server_versions).model_copy(
        update={"forked_from": {"run_id": run_id, "at": at}, "embedded": run.meta.embedded}
    )
    writer = store.create(meta, redraw=True)  # its id was drawn for it
    copied = latest_records(run.trace, at)
    for seq, number in enumerate(sorted(copied), start=1):
        copied[number] = copied[number].model_copy(update={"run_id": writer.run_id, "seq": seq})
        writer.append_trace(copied[number])
    inputs = {i.turn: i for i in run.inputs() if i.turn <= at}
    for number in sorted(inputs):
        writer.append_inputs(inputs[number].model_copy(update={"run_id": writer.run_id}))
    interjections = [i for i in values.get("interjections", []) if i["before_turn"] <= at]
    outcome = RunOutcome(writer.run_id, writer.folder, "running")
    outcome.turns = done[:at]
    outcome.stats = stats_of(copied)
    outcome.interjections = {i["before_turn"]: i["text"] for i in interjections}
    session = RunSession(request, writer, outcome, options.observer or SilentObserver())
    return drive(session, first_state(request, done[:at], interjections))


def unpinned(shape: Shape, names: set[str]) -> Shape:
    """The shape with num_predict, num_ctx and think left open again for the named participants.

    The recorded shape holds the options resolved for the old model; a fork that swaps the
    model must size them for the new one (a --set in the fork pins them again).
    """
    reopened = {"num_predict": None, "num_ctx": None, "think": None}
    participants = [
        p.model_copy(update={"options": p.options.model_copy(update=reopened)}) if p.name in names else p
        for p in shape.participants
    ]
    return shape.model_copy(update={"participants": participants})


def continuable_shape(run: RunRecord) -> Shape:
    """The run's shape, if this duologue can continue a run of its record format."""
    meta: RunMeta = run.meta
    if meta.held_by:
        raise DuologueError(
            f"run {meta.run_id} was held by {meta.held_by}, which keeps its checkpoints; continue it "
            f"there, on thread {meta.run_id} (Studio's resume, or the SDK's Command(resume=...))"
        )
    if meta.format_version != FORMAT_VERSION or meta.spec is None:
        raise DuologueError(
            f"run {meta.run_id} was recorded in run-record format {meta.format_version}, which this "
            f"duologue (format {FORMAT_VERSION}) can read but not continue; start a new run instead"
        )
    return run.shape()


def recorded_request(
    run: RunRecord, shape: Shape | None = None, options: ContinueOptions | None = None
) -> RunRequest:
    """The run's request as it was recorded (its shape unless `shape` is given); the options'
    hosts, trace, otel, timeout, stop and source override what they name."""
    options = options or ContinueOptions()
    shape = shape or run.shape()
    recorded = {p.name: p.host for p in [*run.meta.participants, *filter(None, [run.meta.observer])]}
    hosts = options.hosts or {}
    chosen = {p.name: hosts.get(p.name) or recorded.get(p.name, "") for p in shape.connected}
    kept = {key: value for key, value in run.meta.settings.items() if key in RECORDED_SETTINGS}
    if options.trace is not None:
        kept["trace"] = options.trace
    if options.timeout_s is not None:
        kept["timeout_s"] = options.timeout_s
    request = RunRequest(
        shape=shape,
        topic=run.meta.topic,
        turns=run.meta.turns,
        hosts=chosen,
        runs_dir=run.folder.parent,
        run_id=run.meta.run_id,
        embedded=run.meta.embedded,
        otel=options.otel,
        **kept,
    )
    if options.stop is not None:
        request.stop = options.stop
    if options.source is not None:
        request.source = options.source
    return request


def checkpoint_state(store: RunStore, run: RunRecord, shape: Shape, url: str | None) -> Any:
    """The last checkpoint of the run's thread, or None if it has none; one line if its
    checkpoints.sqlite can't be opened (read-only, damaged), and the run is left as it was."""
    writer = store.reopen(run.meta.run_id)
    try:
        with checkpoints.checkpointer(writer, url) as checkpointer:
            graph = build_graph(shape, checkpointer)
            state = graph.get_state({"configurable": {"thread_id": run.meta.run_id}})
    except sqlite3.Error as exc:
        raise checkpoints.unusable(run.meta.run_id, run.folder, exc) or exc from None
    return state if state.values or state.next else None


def latest_records(trace: list[TraceRecord], up_to_turn: int) -> dict[int, TraceRecord]:
    """The last record of each finished turn; earlier attempts of a turn stay in the log."""
    return finished_records(trace, up_to_turn)


def first_state(request: RunRequest, turns: list[Turn], interjections: list[Any]) -> DialogueState:
    return {
        "topic": request.topic,
        "max_turns": request.turns,
        "turns": turns,
        "interjections": interjections,
    }
