"""Runs a sweep's cells on its pool of hosts, in this process: a thread per host slot.

Each cell is a normal run (run_dialogue), or, when the sweep ran before and its cell's run did
not complete, that run resumed from its last finished turn (resume_dialogue), so no finished
turn is generated twice. A host that fails twice in a row leaves the pool; the cells it had
still to run go to the others, and a cell that failed on it is resumed on another.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from graphs.errors import DuologueError, RunInterrupted
from graphs.records.schema import TraceRecord
from graphs.records.store import RunStore
from graphs.records.tables import run_totals
from graphs.run.observe import SilentObserver
from graphs.run.runner import ModelSource
from graphs.sweep.plan import Cell, next_cell, schedule
from graphs.sweep.report import SweepReport, cell_runs, sweep_report
from graphs.sweep.spec import LeftPool, Sweep, manifest_of, sweep_cells

FAILURES_TO_LEAVE = 2
"""A host that fails this many cells in a row leaves the pool."""
POLL_S = 0.1


@dataclass
class SweepProgress:
    """What the progress line shows."""

    total: int
    done: int
    failed: int
    running: int
    tokens: int
    eta_s: float | None
    """From the cells finished in this session: their mean time, over the slots still working."""


@dataclass
class SweepOutcome:
    report: SweepReport
    interrupted: bool

    @property
    def all_completed(self) -> bool:
        return all(row.status == "completed" for row in self.report.cells)


@dataclass
class CellTracker(SilentObserver):
    """A cell's run as the driver sees it: its folder once started, and its tokens."""

    driver: SweepDriver
    cell: int
    folder: Path | None = None

    def run_started(self, run_id: str, folder: Path) -> None:
        self.folder = folder
        self.driver.cell_started(self.cell, run_id, folder)

    def turn_finished(self, turn: object, record: TraceRecord | None) -> None:
        self.driver.tokens_added((record.completion_tokens or 0) if record else 0)


@dataclass
class SweepDriver:
    sweep: Sweep
    runs_dir: Path | str | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    """Set it (Ctrl-C) to stop every cell: each is recorded interrupted."""
    progress: Callable[[SweepProgress], None] | None = None
    source: Callable[[], ModelSource] | None = None
    """A model source per cell (tests); None: each run's own (Ollama, OpenAI-compatible)."""
    checkpoint_url: str | None = None
    trace: bool = True

    def __post_init__(self) -> None:
        self.store = RunStore(self.runs_dir)
        self.cells = {c.cell: c for c in sweep_cells(self.sweep)}
        self.lock = threading.Condition()
        self.run_ids: dict[int, str] = {}
        self.running: dict[int, tuple[str, threading.Event, Path | None]] = {}
        self.finished: set[int] = set()
        self.failed: set[int] = set()
        self.refused: dict[int, set[str]] = {}
        self.failures_in_a_row: dict[str, int] = {}
        self.left_pool: list[LeftPool] = []
        self.durations: list[float] = []
        self.tokens = 0
        self.cell_tokens: dict[int, int] = {}
        self.queues: dict[str, list[int]] = {}

    # The plan

    def remaining(self) -> list[Cell]:
        """The cells still to run: every one whose run has not completed."""
        runs = cell_runs(self.sweep.sweep_id, self.store)
        self.run_ids = {cell: run.meta.run_id for cell, run in runs.items()}
        self.cell_tokens = {cell: cast(int, run_totals(run)["tokens"]) for cell, run in runs.items()}
        self.tokens = sum(self.cell_tokens.values())
        done = {cell for cell, run in runs.items() if run.status == "completed"}
        self.finished = set(done)
        return [c for c in self.cells.values() if c.cell not in done]

    def plan(self) -> dict[str, list[int]]:
        return schedule(self.remaining(), self.sweep.hosts)

    # Running

    def run(self) -> SweepOutcome:
        """Run every cell not completed; returns once none is left, or all stopped on `stop`."""
        self.store.save_sweep(self.sweep.sweep_id, manifest_of(self.sweep))
        self.queues = self.plan()
        self.tell()
        slots = [
            threading.Thread(target=self.slot, args=(host,), name=f"sweep {host} #{k + 1}", daemon=True)
            for host in self.sweep.hosts
            for k in range(self.sweep.file.max_per_host)
        ]
        for thread in slots:
            thread.start()
        interrupted = False
        while any(thread.is_alive() for thread in slots):
            try:
                if self.stop.wait(POLL_S):
                    interrupted = True
                    self.stop_cells()
                    for thread in slots:
                        thread.join(POLL_S)
            except KeyboardInterrupt:  # the first Ctrl-C (interrupt_signals set stop as well)
                self.stop.set()
        if self.left_pool:
            self.store.save_sweep(self.sweep.sweep_id, manifest_of(self.sweep, self.left_pool))
        return SweepOutcome(
            sweep_report(self.sweep.sweep_id, self.runs_dir), interrupted or self.stop.is_set()
        )

    def stop_cells(self) -> None:
        with self.lock:
            for _host, event, _folder in self.running.values():
                event.set()
            self.lock.notify_all()

    def slot(self, host: str) -> None:
        """One dialogue at a time on `host`: its next cell, of the models it holds if it can."""
        last_assignment: int | None = None
        while not self.stop.is_set():
            with self.lock:
                number = self.take(host, last_assignment)
                if number is None:
                    if host in self.left_hosts() or not self.could_get_more(host):
                        self.lock.notify_all()
                        return
                    self.lock.wait(POLL_S)
                    continue
                event = threading.Event()
                self.running[number] = (host, event, None)
                self.failed.discard(number)
            self.tell()
            cell = self.cells[number]
            last_assignment = cell.assignment
            started = time.monotonic()
            try:
                status, error = self.hold(cell, host, event)
            except Exception as exc:  # noqa: BLE001 - a slot that died would leave its cell running forever
                status, error = "failed", f"{exc.__class__.__name__}: {exc}"
            with self.lock:
                self.running.pop(number, None)
                self.settle(number, host, status, error, time.monotonic() - started)
                self.lock.notify_all()
            self.tell()

    def take(self, host: str, last_assignment: int | None) -> int | None:
        if host in self.left_hosts():
            return None
        assignment_of = {n: c.assignment for n, c in self.cells.items()}
        return next_cell(self.queues, host, last_assignment, assignment_of, self.refused)

    def could_get_more(self, host: str) -> bool:
        """Whether a running cell could still come back to the queue for this host to take."""
        return any(host not in self.refused.get(n, set()) for n in self.running)

    def left_hosts(self) -> set[str]:
        return {left.host for left in self.left_pool}

    def settle(self, number: int, host: str, status: str, error: str | None, seconds: float) -> None:
        """Count how the cell ended; a failure may take its host out of the pool."""
        if status == "completed":
            self.finished.add(number)
            self.durations.append(seconds)
            self.failures_in_a_row[host] = 0
            return
        if status == "interrupted":
            return
        self.failed.add(number)
        self.failures_in_a_row[host] = self.failures_in_a_row.get(host, 0) + 1
        self.refused.setdefault(number, set()).add(host)
        live = [h for h in self.sweep.hosts if h not in self.left_hosts()]
        if any(h not in self.refused[number] for h in live):
            self.queues.setdefault(host, []).insert(0, number)  # another host resumes it
        if self.failures_in_a_row[host] >= FAILURES_TO_LEAVE and host not in self.left_hosts():
            moved = sorted(self.queues.get(host, []))  # the others take them from its queue (next_cell)
            self.left_pool.append(LeftPool(host=host, reason=error or status, cells_moved=moved))
            self.store.save_sweep(self.sweep.sweep_id, manifest_of(self.sweep, self.left_pool))

    def hold(self, cell: Cell, host: str, stop: threading.Event) -> tuple[str, str | None]:
        """Run or resume the cell's dialogue on `host`; how it ended, and why if it failed."""
        tracker = CellTracker(self, cell.cell)
        try:
            outcome = self.start_or_resume(cell, host, stop, tracker)
        except RunInterrupted:
            return "interrupted", None
        except DuologueError as exc:
            if self.stop.is_set():  # not the cell's own event: a run sets it on any failure
                return "interrupted", None
            return "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - one cell's fault must not end the others
            return "failed", f"{exc.__class__.__name__}: {exc}"
        return outcome, None

    def start_or_resume(self, cell: Cell, host: str, stop: threading.Event, tracker: CellTracker) -> str:
        from graphs.run.durable import ContinueOptions, resume_dialogue
        from graphs.run.runner import RunRequest, run_dialogue

        shape = self.sweep.cell_shape(cell.models, cell.seed)
        hosts = {p.name: self.sweep.url_of(host) for p in shape.connected}
        run_id = self.run_ids.get(cell.cell)
        if run_id is not None:
            if self.store.load(run_id).status == "completed":
                return "completed"
            options = ContinueOptions(
                runs_dir=self.store.root,
                hosts=hosts,
                observer=tracker,
                stop=stop,
                checkpoint_url=self.checkpoint_url,
                source=self.source() if self.source else None,
                trace=self.trace,
            )
            return resume_dialogue(run_id, options).status
        file = self.sweep.file
        request = RunRequest(
            shape=shape,
            topic=self.sweep.topics[cell.topic_index],
            turns=self.sweep.turns,
            hosts=hosts,
            runs_dir=self.store.root,
            stop=stop,
            residency_policy=file.residency,
            require_gpu=file.require_gpu,
            trace=self.trace,
            sweep_id=self.sweep.sweep_id,
            cell=cell.cell,
        )
        if file.timeout_s is not None:
            request.timeout_s = file.timeout_s
        if self.checkpoint_url:
            request.checkpoint_url = self.checkpoint_url
        if self.source:
            request.source = self.source()
        return run_dialogue(request, tracker).status

    # What the progress line and a forced exit see

    def cell_started(self, number: int, run_id: str, folder: Path) -> None:
        with self.lock:
            self.run_ids[number] = run_id
            if number in self.running:
                host, event, _ = self.running[number]
                self.running[number] = (host, event, folder)

    def tokens_added(self, count: int) -> None:
        with self.lock:
            self.tokens += count
        self.tell()

    def running_folders(self) -> list[Path]:
        with self.lock:
            return [folder for _h, _e, folder in self.running.values() if folder is not None]

    def snapshot(self) -> SweepProgress:
        with self.lock:
            left = len(self.cells) - len(self.finished)
            working = max(1, len(self.running))
            eta = None
            if self.durations:
                eta = sum(self.durations) / len(self.durations) * left / working
            return SweepProgress(
                total=len(self.cells),
                done=len(self.finished),
                failed=len(self.failed - self.finished),
                running=len(self.running),
                tokens=self.tokens,
                eta_s=eta,
            )

    def tell(self) -> None:
        if self.progress is not None:
            self.progress(self.snapshot())
