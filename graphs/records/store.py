"""The only code that writes under runs/.

Whole files are replaced atomically (write, fsync, rename) and line files are
appended and fsynced line by line, so a crash never leaves half a file and never
loses a finished turn.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from graphs.engine.spec import Shape, builtin_shape_names, load_shape, with_overrides
from graphs.errors import RunBusy, RunNotFound
from graphs.records.schema import InputsRecord, RunMeta, TraceRecord

RUNS_DIR_ENV = "DUOLOGUE_RUNS_DIR"
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
Row = TypeVar("Row", bound=BaseModel)
META, TRANSCRIPT, TRACE, INPUTS = "run.json", "transcript.md", "trace.jsonl", "inputs.jsonl"
CHECKPOINTS, LOCK = "checkpoints.sqlite", ".lock"
ANALYSIS = "analysis.json"


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id(shape: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{shape}-{secrets.token_hex(2)}"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def append_line(path: Path, row: BaseModel) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(row.model_dump_json() + "\n")
        handle.flush()
        os.fsync(handle.fileno())


class RunWriter:
    """Writes one run's folder as the dialogue proceeds."""

    def __init__(self, folder: Path, meta: RunMeta) -> None:
        self.folder = folder
        self.meta = meta

    @property
    def run_id(self) -> str:
        return self.meta.run_id

    def save_meta(self, **changes: object) -> None:
        self.meta = self.meta.model_copy(update=changes)
        write_atomic(self.folder / META, self.meta.model_dump_json(indent=2) + "\n")

    def append_trace(self, record: TraceRecord) -> None:
        append_line(self.folder / TRACE, record)

    def append_inputs(self, record: InputsRecord) -> None:
        append_line(self.folder / INPUTS, record)

    def save_transcript(self, text: str) -> None:
        write_atomic(self.folder / TRANSCRIPT, text)

    def save_analysis(self, analysis: BaseModel) -> None:
        """analysis.json: what `duologue analyze` found, replaced whole each time it runs."""
        write_atomic(self.folder / ANALYSIS, analysis.model_dump_json(indent=2) + "\n")

    @contextmanager
    def checkpointer(self) -> Iterator[Any]:
        """The run's LangGraph checkpointer: SQLite in the run's folder."""
        from langgraph.checkpoint.sqlite import SqliteSaver

        with SqliteSaver.from_conn_string(str(self.folder / CHECKPOINTS)) as saver:
            yield saver

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Held while a process drives the run, so two cannot write it at once.

        flock is released by the kernel when the holder dies, so a killed run can be resumed.
        """
        with open(self.folder / LOCK, "a+", encoding="utf-8") as handle:
            if not take_lock(handle):
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                raise RunBusy(
                    f"run {self.run_id} is being driven by {holder}; wait for it to finish or stop it first"
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"process {os.getpid()}")
            handle.flush()
            try:
                yield
            finally:
                handle.seek(0)
                handle.truncate()
                fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class RunRecord:
    """A run as read back from disk."""

    folder: Path
    meta: RunMeta
    trace: list[TraceRecord] = field(default_factory=list)

    @property
    def status(self) -> str:
        """The recorded status, except `stopped` for a run recorded as running that no process
        holds: its process was killed or its machine went down, and `resume` continues it."""
        if self.meta.status == "running" and not lock_held(self.folder / LOCK):
            return "stopped"
        return self.meta.status

    @property
    def turn_records(self) -> list[TraceRecord]:
        return [r for r in self.trace if r.is_turn]

    @property
    def finished_turns(self) -> set[int]:
        """The numbers of the run's finished turns (a failed or stopped attempt has a record too)."""
        return {r.turn for r in self.turn_records if r.turn is not None and not r.error}

    @property
    def flags(self) -> list[str]:
        """Every turn's flags, once each, 'CPU 40%' counted as CPU: what `runs` and the page list."""
        return sorted(
            {"CPU" if flag.startswith("CPU") else flag for r in self.turn_records for flag in r.flags}
        )

    def shape(self) -> Shape:
        """The shape as the run held it: run.json's spec (overrides applied and options pinned),
        or for a record that predates it, the built-in it names with the recorded models."""
        meta = self.meta
        if meta.spec is not None:
            try:
                return Shape.model_validate(meta.spec)
            except ValidationError:
                raise RunNotFound(f"run {meta.run_id}: run.json's shape is not readable") from None
        if meta.shape in builtin_shape_names():
            models = {p.name: p.model for p in meta.participants}
            return with_overrides(load_shape(meta.shape), models, [])
        raise RunNotFound(f"run {meta.run_id}: run.json records no shape, and '{meta.shape}' is no built-in")

    def transcript(self) -> str:
        path = self.folder / TRANSCRIPT
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def inputs(self) -> list[InputsRecord]:
        return list(read_lines(self.folder / INPUTS, InputsRecord))


class RunStore:
    """A runs folder: creates run folders and reads them back."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_runs_dir()

    def create(self, meta: RunMeta) -> RunWriter:
        folder = self.root / meta.run_id
        folder.mkdir(parents=True, exist_ok=False)
        writer = RunWriter(folder, meta)
        writer.save_meta()
        return writer

    def reopen(self, run_id: str) -> RunWriter:
        """A writer for a run that exists, to continue it."""
        run = self.load(run_id)
        return RunWriter(run.folder, run.meta)

    def folder(self, run_id: str) -> Path:
        """The run's folder; refuses ids that could step outside the runs folder."""
        if not RUN_ID_PATTERN.match(run_id) or run_id in {".", ".."}:
            raise RunNotFound(f"'{run_id}' is not a run id (see `duologue runs`)")
        folder = self.root / run_id
        if not (folder / META).is_file():
            raise RunNotFound(f"no run '{run_id}' in {self.root} (see `duologue runs`)")
        return folder

    def load(self, run_id: str) -> RunRecord:
        folder = self.folder(run_id)
        try:
            meta = RunMeta.model_validate_json((folder / META).read_text(encoding="utf-8"))
        except (ValidationError, ValueError) as exc:
            raise RunNotFound(
                f"{folder / META} is not a readable run record ({exc.__class__.__name__})"
            ) from None
        return RunRecord(folder, meta, list(read_lines(folder / TRACE, TraceRecord)))

    def list(self) -> list[RunRecord]:
        """Every readable run, newest first; unreadable folders are skipped."""
        if not self.root.is_dir():
            return []
        runs = []
        for folder in self.root.iterdir():
            if (folder / META).is_file():
                try:
                    runs.append(self.load(folder.name))
                except RunNotFound:
                    continue
        return sorted(runs, key=lambda r: r.meta.started_at, reverse=True)


def take_lock(handle: Any, tries: int = 5, pause_s: float = 0.01) -> bool:
    """The run's lock, exclusively; a few tries, since a status probe (lock_held) holds it for
    a moment and must not be mistaken for a process driving the run."""
    for attempt in range(tries):
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt < tries - 1:
                time.sleep(pause_s)
    return False


def lock_held(path: Path) -> bool:
    """Whether a process holds the run's lock now; probing takes a shared lock, so it never blocks one."""
    if not path.exists():
        return False
    with open(path, encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def read_lines(path: Path, model: type[Row]) -> Iterator[Row]:
    """Rows of a .jsonl file; a torn last line (a crash mid-append) is skipped."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                yield model.model_validate(json.loads(line))
            except (ValueError, ValidationError):
                continue
