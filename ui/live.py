"""Runs held in background threads, outside Streamlit's script runs.

Streamlit stops the script run on every widget interaction, so a dialogue can't live in
one. Each launched run gets a thread and a LiveRun, which is its RunObserver: the thread
writes tokens and finished turns into it, and the page reads consistent snapshots of it
on a timer. The Registry holding them is process-wide (st.cache_resource), so a rerun, a
page change or a browser reload finds the run again by its id; each run has its own
LiveRun and its own stop event, so two runs at once never mix. A resumed run keeps its
id: its new LiveRun takes the place of the finished one, never of one still going.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphs import (
    ContinueOptions,
    DuologueError,
    PlannedTurn,
    RunInterrupted,
    RunRecord,
    RunRequest,
    TraceRecord,
    Turn,
    labels,
    new_run_id,
    rate,
    recorded_request,
    resume_dialogue,
    run_dialogue,
    stats_line,
)

log = logging.getLogger("duologue.ui")

TERMINAL = frozenset({"completed", "failed", "interrupted"})
KEEP_FINISHED = 50
"""Finished runs kept in memory (their records stay on disk regardless)."""
POLL_S = 0.5
"""How often the page reads a run's snapshot while it streams (ui/watch.py), and the bench's poller."""
PERSON_WAIT_S = 0.2
"""How often a run waiting for a person's words checks whether it was stopped."""
RATE_SPAN_S = 0.5
"""A live rate needs tokens this far apart: over less, a burst of buffered tokens reads as thousands."""


@dataclass(frozen=True)
class LiveTurn:
    """A turn as the page shows it while the run goes on.

    A finished turn has its trace record (its stats line and flags come from it); the turn
    in progress has what its stream has shown so far: tokens counted as they arrive, the
    time to the first, the rate since, and where its model was placed before the request.
    """

    number: int
    speaker: str
    label: str
    kind: str
    model: str
    text: str
    thinking: str = ""
    stats: str = ""
    flags: tuple[str, ...] = ()
    record: TraceRecord | None = None
    """A finished turn's trace record (None if the log lacks it)."""
    tokens: int = 0
    """The turn in progress: pieces streamed so far, thinking included (one per token with Ollama)."""
    elapsed_s: float | None = None
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    """Tokens after the first over the time from the first to the latest, once that is RATE_SPAN_S."""
    placement: TraceRecord | None = None
    """The turn's record so far once its model was placed: gpu_fraction, residency, preload_s."""


@dataclass(frozen=True)
class PersonDue:
    """A person's turn the run waits for: the page shows its box with Send."""

    number: int
    speaker: str
    label: str
    kind: str


@dataclass(frozen=True)
class Snapshot:
    """A consistent copy of a LiveRun, safe to render while the worker keeps writing."""

    run_id: str
    status: str
    error: str | None
    folder: Path | None
    turns: tuple[LiveTurn, ...]
    current: LiveTurn | None
    planned_turns: int
    elapsed_s: float
    stopping: bool
    resumed_after: int | None = None
    """For a resumed run, how many turns were finished before it resumed; None for a new run."""
    earlier: str = ""
    """For a resumed run, its transcript as it was when it resumed."""
    person_due: PersonDue | None = None
    """The person's turn the run waits for, until Send gives it their words."""

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


@dataclass
class LiveRun:
    """One run's observer buffer; the worker thread writes it, the page reads snapshots."""

    run_id: str
    request: RunRequest
    status: str = "starting"
    error: str | None = None
    folder: Path | None = None
    turns: list[LiveTurn] = field(default_factory=list)
    current: LiveTurn | None = None
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    thread: threading.Thread | None = None
    resumed_after: int | None = None
    """Set for a resume: the turns finished before it, which this buffer never sees."""
    earlier: str = ""
    _text: list[str] = field(default_factory=list)
    _thinking: list[str] = field(default_factory=list)
    _tokens: int = 0
    _turn_started: float = 0.0
    _first_token: float | None = None
    _last_token: float = 0.0
    _placements: dict[int, TraceRecord] = field(default_factory=dict)
    """By turn: a turn's model may be placed before the worker has announced the turn."""
    _person_due: PersonDue | None = None
    _words: queue.Queue[str] = field(default_factory=queue.Queue)
    """What Send gave for the person's turn due, which the worker waits on."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ended: threading.Event = field(default_factory=threading.Event)

    # RunObserver: called from the worker thread.

    def run_started(self, run_id: str, folder: Path) -> None:
        with self._lock:
            self.status, self.folder = "running", folder

    def turn_started(self, planned: PlannedTurn, label: str, model: str) -> None:
        with self._lock:
            self.current = LiveTurn(planned.number, planned.speaker, label, planned.kind, model, "")
            self._reset_turn()
            self._turn_started = time.monotonic()

    def turn_placed(self, placement: TraceRecord) -> None:
        with self._lock:
            if placement.turn is not None:
                self._placements[placement.turn] = placement

    def token(self, text: str, thinking: bool) -> None:
        now = time.monotonic()
        with self._lock:
            (self._thinking if thinking else self._text).append(text)
            self._tokens += 1
            self._last_token = now
            if self._first_token is None:
                self._first_token = now

    def _reset_turn(self) -> None:
        self._text, self._thinking = [], []
        self._tokens, self._first_token = 0, None

    def turn_finished(self, turn: Turn, record: TraceRecord | None) -> None:
        names = labels(self.request.shape)
        model = record.model if record and record.model else ""
        with self._lock:
            if self.current is not None and self.current.number == turn["number"]:
                model = model or self.current.model
            self.turns.append(
                LiveTurn(
                    number=turn["number"],
                    speaker=turn["speaker"],
                    label=names.get(turn["speaker"], turn["speaker"]),
                    kind=turn["kind"],
                    model=model,
                    text=turn["text"],
                    thinking=turn.get("thinking", ""),
                    stats=stats_line(record),
                    flags=tuple(record.flags) if record else (),
                    record=record,
                )
            )
            self.current = None
            self._reset_turn()
            self._placements = {n: p for n, p in self._placements.items() if n > turn["number"]}

    def person_turn(self, planned: PlannedTurn, label: str) -> str | None:
        """The runner's hook for a person's turn: wait for the page's Send (the run's graph waits
        on its interrupt meanwhile); Stop, or the server's exit, ends the run as interrupted."""
        with self._lock:
            self._person_due = PersonDue(planned.number, planned.speaker, label, planned.kind)
        try:
            while not self.request.stop.is_set():
                try:
                    return self._words.get(timeout=PERSON_WAIT_S)
                except queue.Empty:
                    continue
            raise RunInterrupted(f"run {self.run_id} stopped before {label} wrote turn {planned.number}")
        finally:
            with self._lock:
                self._person_due = None

    def send(self, text: str) -> bool:
        """The page's Send: the person's words for the turn due; False when no turn waits for them
        (the run went on, or ended, since the page was drawn)."""
        with self._lock:
            if self._person_due is None or not text.strip():
                return False
            self._person_due = None  # the page redrawn at once shows the turn as sent
            self._words.put(text)
            return True

    def run_ended(self, status: str) -> None:
        """The run's ending is recorded: the page may show the record, though the worker may
        still be flushing its trace to LangSmith."""
        with self._lock:
            self.status, self.ended = status, time.monotonic()
            self.current = None
        self._ended.set()

    # The page's side.

    def snapshot(self) -> Snapshot:
        now = time.monotonic()
        with self._lock:
            current = self.current
            if current is not None:
                first = self._first_token
                span = 0.0 if first is None else self._last_token - first
                current = dataclasses.replace(
                    current,
                    text="".join(self._text),
                    thinking="".join(self._thinking),
                    tokens=self._tokens,
                    elapsed_s=now - self._turn_started,
                    ttft_s=None if first is None else first - self._turn_started,
                    tokens_per_s=rate(self._tokens - 1, int(span * 1e9)) if span >= RATE_SPAN_S else None,
                    placement=self._placements.get(current.number),
                )
            end = self.ended if self.ended is not None else now
            return Snapshot(
                run_id=self.run_id,
                status=self.status,
                error=self.error,
                folder=self.folder,
                turns=tuple(self.turns),
                current=current,
                planned_turns=self.request.turns,
                elapsed_s=end - self.started,
                stopping=self.request.stop.is_set() and self.status not in TERMINAL,
                resumed_after=self.resumed_after,
                earlier=self.earlier,
                person_due=self._person_due,
            )

    def stop(self) -> None:
        """Ask the run to stop; it ends as `interrupted` and keeps its finished turns."""
        self.request.stop.set()

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def wait_ended(self, timeout_s: float) -> bool:
        """Wait up to timeout_s for the run's ending to be recorded; whether it was."""
        return self._ended.wait(timeout_s)

    @property
    def start_error(self) -> str | None:
        """Why the run ended before it started (a resume the engine refused, a host that is
        down...): its error, when the worker never got as far as the run's folder."""
        with self._lock:
            return self.error if self.status in TERMINAL and self.folder is None else None

    def work(self, runner: Callable[..., Any] = run_dialogue) -> None:
        """The worker thread's body: hold the run and record how it ended."""
        status, error = "failed", None
        try:
            outcome = runner(self.request, self)
            status = outcome.status
        except RunInterrupted:
            status = "interrupted"
        except DuologueError as exc:  # RunFailed included: its message says which turn and why
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a worker must never die silently
            log.exception("run %s failed", self.run_id)
            error = f"{exc.__class__.__name__}: {exc}"
        with self._lock:
            self.status, self.error = status, error
            self.ended = self.ended or time.monotonic()
            if status != "running":
                self.current = None
        self._ended.set()


class Registry:
    """Every run this server process launched, by run id."""

    def __init__(self) -> None:
        self._runs: dict[str, LiveRun] = {}
        self._lock = threading.Lock()
        # At exit, stop the runs before concurrent.futures shuts its pools down under them (its
        # hook is threading's too; those run newest first), so each is recorded as interrupted.
        register = getattr(threading, "_register_atexit", atexit.register)
        register(self.shutdown)
        REGISTRIES.add(self)

    def launch(self, request: RunRequest, runner: Callable[..., Any] = run_dialogue) -> LiveRun:
        """Start the run in its own thread; the request gets a run id first, so the page can
        name the run (in its URL) before the worker has written anything."""
        if request.run_id is None:
            request.run_id = new_run_id(request.shape.name)
        return self._start(LiveRun(request.run_id, request), runner)

    def resume(
        self, run: RunRecord, say: str | None = None, hosts: Mapping[str, str] | None = None
    ) -> LiveRun:
        """Continue a failed or interrupted run from its last finished turn, under its own id.

        `say` answers a pause for the facilitator ('' adds nothing); `hosts` replaces recorded
        hosts by participant name. The engine refuses what it can't continue (a completed run,
        one another process holds); the worker records that as the LiveRun's error.
        """
        try:
            request = recorded_request(run, options=ContinueOptions(hosts=hosts))
        except DuologueError as exc:
            raise DuologueError(f"{exc}, so it cannot be continued; start a new run instead") from None
        live = LiveRun(run.meta.run_id, request)
        live.resumed_after = len(run.finished_turns)
        live.earlier = run.transcript()

        def runner(request: RunRequest, observer: LiveRun) -> Any:
            options = ContinueOptions(request.runs_dir, hosts, observer, stop=request.stop)
            return resume_dialogue(observer.run_id, options, say)

        return self._start(live, runner)

    def _start(self, live: LiveRun, runner: Callable[..., Any]) -> LiveRun:
        with self._lock:
            previous = self._runs.get(live.run_id)
            if previous is not None and not previous.done:
                raise DuologueError(f"run {live.run_id} is already running here; reload to watch it")
            self._runs.pop(live.run_id, None)  # a resume keeps its id: the old buffer gives way
            self._prune()
            self._runs[live.run_id] = live
        live.thread = threading.Thread(
            target=live.work, args=(runner,), name=f"duologue-run-{live.run_id}", daemon=True
        )
        live.thread.start()
        return live

    def get(self, run_id: str) -> LiveRun | None:
        with self._lock:
            return self._runs.get(run_id)

    def active(self) -> list[LiveRun]:
        with self._lock:
            return [run for run in self._runs.values() if not run.done]

    def shutdown(self, timeout_s: float = 10.0) -> list[LiveRun]:
        """Stop every run at exit, so each is recorded as interrupted rather than left running;
        returns the runs it stopped."""
        runs = self.active()
        for run in runs:
            run.stop()
        deadline = time.monotonic() + timeout_s
        for run in runs:
            if run.thread is not None:
                run.thread.join(max(0.0, deadline - time.monotonic()))
        return runs

    def _prune(self) -> None:
        finished = [run_id for run_id, run in self._runs.items() if run.done]
        for run_id in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._runs[run_id]


REGISTRIES: weakref.WeakSet[Registry] = weakref.WeakSet()
"""Every Registry in this process: the page keeps one (st.cache_resource), tests make more."""


def stop_every_run(timeout_s: float = 10.0) -> list[LiveRun]:
    """Stop the runs of every registry in this process as the page's Stop would, each recorded
    interrupted; what `duologue ui` does once its server has stopped, whatever stopped it."""
    return [run for registry in list(REGISTRIES) for run in registry.shutdown(timeout_s)]
