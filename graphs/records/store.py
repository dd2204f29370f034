"""The only code that writes under runs/.

Whole files are replaced atomically (write, fsync, rename) and line files are
appended and fsynced line by line, so a crash never leaves half a file and never
loses a finished turn. A line torn by a crash mid-append is ended before the next
append, so only the torn record is lost. A write the disk refuses is one RecordError
(graphs/records/faults.py), and leaves no temporary file behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from graphs.engine.spec import Shape, builtin_shape_names, load_shape, with_overrides
from graphs.errors import RunBusy, RunNotFound
from graphs.records.faults import RecordError, RunUnreadable, record_error
from graphs.records.index import (
    RunIndex,
    RunSummary,
    Signature,
    TraceTotals,
    file_signature,
    finishes_turn,
    stat_signature,
    summarize,
    unreadable_summary,
)
from graphs.records.inputs import InputsEncoder, ReadInputs, read_inputs
from graphs.records.schema import InputsRecord, RunMeta, TraceRecord

RUNS_DIR_ENV = "DUOLOGUE_RUNS_DIR"
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
Row = TypeVar("Row", bound=BaseModel)
CHECKPOINT_CACHE_KB = 64
META, TRANSCRIPT, TRACE, INPUTS = "run.json", "transcript.md", "trace.jsonl", "inputs.jsonl"
CHECKPOINTS, LOCK = "checkpoints.sqlite", ".lock"
INDEX_EVERY_S = 1.0
"""The most often a held run's turns rewrite its row in the runs folder's index."""
ID_DRAWS = 5
"""How many ids a new run draws before it gives up: a second draw already collides only by a fluke."""
ANOTHER_FOLDER = ", or give another folder with --runs-dir DIR"
ANALYSIS = "analysis.json"
SWEEPS, SWEEP = "sweeps", "sweep.json"


def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs")


def now_iso() -> str:
    return iso(datetime.now(UTC))


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id(shape: str) -> str:
    """`<UTC date>-<time>-<shape>-<8 hex digits>`: sorts by time, and two runs started in the
    same second collide once in 4 billion draws (RunStore.create draws again if they do)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{shape}-{secrets.token_hex(4)}"


PIECES_PER_WRITE = 512
"""write_atomic joins this many pieces of a text for each write: a long transcript goes out in a
few writes (a system call costs more than the join), and no copy of the whole is ever made."""


def write_atomic(path: Path, text: str | Sequence[str], in_place_when_full: bool = False) -> None:
    """Replace `path` whole; if any step fails, the temporary file goes and `path` is as it was.

    `text` may come in pieces (a run's growing transcript), written one after another, so that
    no copy of the whole is made. `in_place_when_full`: on a full disk, overwrite `path` itself
    if the text fits in the blocks it holds already, so the write cannot run out of space
    half-way. run.json takes this to say `failed` on the disk that made the run fail.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    pieces = [text] if isinstance(text, str) else text
    try:
        with open(tmp, "wb") as handle:
            for start in range(0, len(pieces), PIECES_PER_WRITE):
                handle.write("".join(pieces[start : start + PIECES_PER_WRITE]).encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        if not (in_place_when_full and exc.errno in (errno.ENOSPC, errno.EDQUOT)):
            raise
        data = "".join(pieces).encode("utf-8")
        if not fits(path, data):
            raise
        overwrite(path, data)
    except BaseException:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def fits(path: Path, data: bytes) -> bool:
    try:
        return len(data) <= path.stat().st_blocks * 512
    except OSError:
        return False


def overwrite(path: Path, data: bytes) -> None:
    with open(path, "r+b", buffering=0) as handle:
        view = memoryview(data)
        while view:
            view = view[handle.write(view) or 0 :]
        handle.truncate(len(data))
        os.fsync(handle.fileno())


def append_line(path: Path, row: BaseModel, sync: bool = True) -> None:
    """Append one row; a torn last line (a crash mid-append) is ended first, so it costs only its
    own record, and an append that fails is cut off again rather than left torn. `sync=False`
    leaves the row to the file's next fsync (a later row's), for a row a crash may lose."""
    data = (row.model_dump_json() + "\n").encode("utf-8")
    with open(path, "a+b", buffering=0) as handle:
        size = handle.seek(0, os.SEEK_END)
        if size:
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                data = b"\n" + data
        try:
            view = memoryview(data)
            while view:
                view = view[handle.write(view) or 0 :]
            if sync:
                os.fsync(handle.fileno())
        except BaseException:
            with suppress(OSError):
                handle.truncate(size)
            raise


class RunWriter:
    """Writes one run's folder as the dialogue proceeds, and keeps its row in the runs folder's index."""

    def __init__(self, folder: Path, meta: RunMeta, trace: list[TraceRecord] | None = None) -> None:
        self.folder = folder
        self.meta = meta
        self.totals = TraceTotals.of(trace) if trace is not None else None
        """The trace's totals for the index: from `trace`, else read from the folder at the first write."""
        self.inputs_encoder = InputsEncoder()
        self._indexed_at: float | None = None

    @property
    def run_id(self) -> str:
        return self.meta.run_id

    def save_meta(self, **changes: object) -> None:
        """`meta` changes only once run.json says so (in place, on a full disk, if it fits)."""
        meta = self.meta.model_copy(update=changes)
        text = meta.model_dump_json(indent=2) + "\n"
        totals = self.trace_totals()
        self._write(META, lambda path: write_atomic(path, text, in_place_when_full=True))
        self.meta = meta
        self.index(totals)

    def append_trace(self, record: TraceRecord, sync: bool = True) -> None:
        """The row, and the index's row for the run when it changes what a listing shows (a turn's
        row; a facilitator's changes nothing but the file, which a listing of a running run reads),
        at most every INDEX_EVERY_S: a row the index has not caught up with yet only makes a
        listing summarize this run from its folder, and run.json's next write catches it up.
        `sync=False`: see append_line."""
        totals = self.trace_totals()
        self._write(TRACE, lambda path: append_line(path, record, sync))
        totals.add(record)
        if record.is_turn and (
            self._indexed_at is None or time.monotonic() - self._indexed_at >= INDEX_EVERY_S
        ):
            self.index(totals)

    def trace_totals(self) -> TraceTotals:
        if self.totals is None:
            try:
                self.totals = TraceTotals.of(read_lines(self.folder / TRACE, TraceRecord, self.run_id))
            except RunUnreadable:
                self.totals = TraceTotals()  # the record's own write says what is wrong
        return self.totals

    def index(self, totals: TraceTotals) -> None:
        """The run's row, as the run now is; best effort: the folder is the record."""
        summary = summarize(self.folder, self.meta, totals)
        RunIndex(self.folder.parent).record(summary, signature(self.folder))
        self._indexed_at = time.monotonic()

    def append_inputs(self, record: InputsRecord) -> None:
        """The turn's whole prompt, written as what it adds to its speaker's previous one."""
        row = self.inputs_encoder.row(record)
        self._write(INPUTS, lambda path: append_line(path, row))
        self.inputs_encoder.wrote(record)

    def save_transcript(self, text: str | Sequence[str]) -> None:
        self._write(TRANSCRIPT, lambda path: write_atomic(path, text))

    def _write(self, name: str, write: Callable[[Path], None]) -> None:
        path = self.folder / name
        try:
            write(path)
        except OSError as exc:
            raise record_error(f"cannot write {path}", exc) from None

    def save_analysis(self, analysis: BaseModel) -> None:
        """analysis.json: what `duologue analyze` found, replaced whole each time it runs."""
        write_atomic(self.folder / ANALYSIS, analysis.model_dump_json(indent=2) + "\n")

    @contextmanager
    def checkpointer(self) -> Iterator[Any]:
        """The run's LangGraph checkpointer: SQLite in the run's folder, committed where a turn
        becomes durable (turn_saver.py)."""
        from graphs.records.turn_saver import turn_saver

        with turn_saver(self.folder / CHECKPOINTS) as saver:
            # The graph holds its state in memory and only writes here, so SQLite's page cache
            # (2 MB by default) would only grow with the file: keep it to what a write needs.
            saver.conn.execute(f"PRAGMA cache_size=-{CHECKPOINT_CACHE_KB}")
            yield saver

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Held while a process drives the run, so two cannot write it at once.

        flock is released by the kernel when the holder dies, so a killed run can be resumed.
        """
        path = self.folder / LOCK
        try:
            handle = open(path, "a+b", buffering=0)  # noqa: SIM115 - closed below, after the run
        except OSError as exc:
            raise record_error(f"cannot lock run {self.run_id} ({path})", exc, ", then try again") from None
        with handle:
            if not take_lock(handle):
                raise RunBusy(
                    f"run {self.run_id} is being driven by {holder(handle)}; "
                    "wait for it to finish or stop it first"
                ) from None
            with suppress(OSError):  # who holds it is for the message above; flock is the lock
                handle.truncate(0)
                handle.write(f"process {os.getpid()}".encode())
            try:
                yield
            finally:
                with suppress(OSError):
                    handle.truncate(0)
                fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class RunRecord:
    """A run as read back from disk."""

    folder: Path
    meta: RunMeta
    trace: list[TraceRecord] = field(default_factory=list)
    unreadable: str | None = None
    """Why the run's record cannot be read; then `meta` is a stand-in with the folder's name and
    time, and `status` is `unreadable`. Only RunStore.list() returns such a record."""

    @classmethod
    def unreadable_at(cls, folder: Path, reason: str) -> RunRecord:
        try:
            when = datetime.fromtimestamp(folder.stat().st_mtime, UTC)
        except OSError:
            when = datetime.fromtimestamp(0, UTC)
        stand_in = RunMeta(
            run_id=folder.name,
            shape="-",
            status="failed",
            participants=[],
            topic="",
            turns=0,
            started_at=iso(when),
            error=reason,
        )
        return cls(folder, stand_in, unreadable=reason)

    @property
    def status(self) -> str:
        """The recorded status, except `stopped` for a run recorded as running that no process
        holds: its process was killed or its machine went down, and `resume` continues it."""
        if self.unreadable:
            return "unreadable"
        return shown_status(self.meta.status, self.folder)

    @property
    def turn_records(self) -> list[TraceRecord]:
        """Every attempt at every turn, in the order they ended: the log."""
        return [r for r in self.trace if r.is_turn]

    @property
    def finished_records(self) -> dict[int, TraceRecord]:
        """Each finished turn's row, by number: what the totals count, each turn once."""
        return finished_records(self.trace)

    @property
    def finished_turns(self) -> set[int]:
        """The numbers of the run's finished turns (a failed or stopped attempt has a record too)."""
        return set(self.finished_records)

    @property
    def turn_rows(self) -> list[TraceRecord]:
        """One row per turn, in turn order: a finished turn's row, else its last attempt's (failed
        or stopped). What `show --trace` lists; earlier attempts stay in turn_records."""
        last = {r.turn: r for r in self.turn_records if r.turn is not None}
        rows = last | self.finished_records
        return [rows[number] for number in sorted(rows)]

    @property
    def flags(self) -> list[str]:
        """Every turn's flags, once each, 'CPU 40%' counted as CPU: what `runs` and the page list.

        One row per turn counts (turn_rows): a stopped or failed attempt that a resume then
        finished is no flag of the run; the status says how the run stands."""
        return TraceTotals.of(self.trace).flags

    def summary(self) -> RunSummary:
        """The run as a listing shows it."""
        if self.unreadable:
            return unreadable_summary(self.folder, self.meta.started_at, self.unreadable)
        return summarize(self.folder, self.meta, TraceTotals.of(self.trace), self.status)

    def shape(self) -> Shape:
        """The shape as the run held it: run.json's spec (overrides applied and options pinned),
        or for a record that predates it, the built-in it names with the recorded models."""
        meta = self.meta
        if meta.spec is not None:
            try:
                return Shape.model_validate(meta.spec)
            except ValidationError:
                raise RunNotFound(f"run {meta.run_id}: run.json's shape is not readable") from None
        if meta.status == "imported":
            raise RunNotFound(
                f"run {meta.run_id} was imported from a transcript and has no shape to continue; "
                "analyze, observe or compare it instead"
            )
        if meta.shape in builtin_shape_names():
            models = {p.name: p.model for p in meta.participants}
            return with_overrides(load_shape(meta.shape), models, [])
        raise RunNotFound(f"run {meta.run_id}: run.json records no shape, and '{meta.shape}' is no built-in")

    def transcript(self) -> str:
        """transcript.md's text, "" before it exists; RunUnreadable if it is not text."""
        return read_transcript(self.folder, self.meta.run_id)

    def inputs(self) -> list[InputsRecord]:
        """Every turn's whole prompt, rebuilt from inputs.jsonl (either format) and checked."""
        return self.read_inputs().records

    def read_inputs(self) -> ReadInputs:
        """The prompts, and the lines of rows that could not be rebuilt (edited or damaged), for
        a reader to say so rather than show fewer turns without a word."""
        data = read_bytes(self.folder / INPUTS, self.meta.run_id)
        return read_inputs((data or b"").split(b"\n"))


class RunStore:
    """A runs folder: creates run folders and reads them back."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else default_runs_dir()

    def create(self, meta: RunMeta, redraw: bool = False) -> RunWriter:
        """A new run's folder, with its run.json; nothing is left behind if that fails.

        `redraw`: the id was drawn by new_run_id, so one that is taken is drawn again.
        """
        self.check_root()
        for draw in range(ID_DRAWS):
            folder = self.root / meta.run_id
            try:
                folder.mkdir(parents=True, exist_ok=False)
                break
            except FileExistsError:
                if not redraw or draw == ID_DRAWS - 1:
                    raise RecordError(
                        f"a run {meta.run_id} exists already in {self.root}; give the new run another id"
                    ) from None
                meta = meta.model_copy(update={"run_id": new_run_id(meta.shape)})
            except OSError as exc:
                raise record_error(f"cannot create run folder {folder}", exc, ANOTHER_FOLDER) from None
        writer = RunWriter(folder, meta)
        try:
            writer.save_meta()
        except RecordError as exc:
            with suppress(OSError):
                folder.rmdir()
            raise record_error(f"cannot create run folder {folder}", exc, ANOTHER_FOLDER) from None
        return writer

    def check_root(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise RecordError(
                f"the runs folder {self.root} is a file, not a folder; give a folder with --runs-dir DIR "
                "(or $DUOLOGUE_RUNS_DIR)"
            )

    def reopen(self, run_id: str) -> RunWriter:
        """A writer for a run that exists, to continue it."""
        run = self.load(run_id)
        return RunWriter(run.folder, run.meta, run.trace)

    def folder(self, run_id: str) -> Path:
        """The run's folder; refuses ids that could step outside the runs folder."""
        if not RUN_ID_PATTERN.match(run_id) or run_id in {".", ".."}:
            raise RunNotFound(f"'{run_id}' is not a run id (see `duologue runs`)")
        folder = self.root / run_id
        if not (folder / META).is_file():
            raise RunNotFound(f"no run '{run_id}' in {self.root} (see `duologue runs`)")
        return folder

    def load(self, run_id: str) -> RunRecord:
        """The run as recorded; RunUnreadable (one line, with the reason) if it cannot be read."""
        folder = self.folder(run_id)
        data = read_bytes(folder / META, run_id) or b""
        try:
            meta = RunMeta.model_validate_json(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise unreadable_meta(folder, f"run.json is not UTF-8 text ({not_utf8(exc)})") from None
        except ValidationError as exc:
            raise unreadable_meta(folder, f"run.json is {invalid(exc)}") from None
        return RunRecord(folder, meta, list(read_lines(folder / TRACE, TraceRecord, run_id)))

    def summaries(self) -> list[RunSummary]:
        """Every run as a listing shows it, newest first, from the index (graphs/records/index.py):
        only runs whose files changed since it last saw them are read. A run that cannot be read is
        listed too, as `unreadable`, so it never hides or breaks the others."""
        if not self.root.exists():
            return []
        self.check_root()
        listed = RunIndex(self.root).refresh(self.signatures(), self.summary_of)
        shown = [
            run.model_copy(update={"status": shown_status(run.status, run.folder)})
            if run.status == "running"
            else run
            for run in listed
        ]
        return sorted(shown, key=lambda r: (r.started_at, r.run_id), reverse=True)

    def signatures(self) -> dict[str, Signature]:
        """Each run folder's run.json and trace.jsonl signatures: what tells the index a run changed."""
        try:
            names = [entry.name for entry in os.scandir(self.root) if RUN_ID_PATTERN.match(entry.name)]
        except OSError as exc:
            raise record_error(f"cannot read the runs folder {self.root}", exc) from None
        found: dict[str, Signature] = {}
        for name in names:
            folder = f"{self.root}/{name}"  # strings: pathlib's joins cost more than the stats here
            try:
                meta = os.stat(f"{folder}/{META}")
            except OSError:
                continue  # not a run folder (or not one that can be read even to list)
            if stat.S_ISREG(meta.st_mode):
                found[name] = (stat_signature(meta), file_signature(f"{folder}/{TRACE}"))
        return found

    def summary_of(self, run_id: str) -> RunSummary | None:
        """A run summarized from its folder, with its recorded status (the listing probes `running`)."""
        try:
            run = self.load(run_id)
        except RunUnreadable as exc:
            return RunRecord.unreadable_at(self.root / run_id, exc.reason).summary()
        except RunNotFound:
            return None
        return summarize(run.folder, run.meta, TraceTotals.of(run.trace))

    def list(self) -> list[RunRecord]:
        """Every run's whole record, newest first: it reads every folder, so a listing calls
        summaries() and loads the runs it needs. A run that cannot be read is listed too, as
        `unreadable` (RunRecord.unreadable says why), so it never hides or breaks the others."""
        if not self.root.exists():
            return []
        self.check_root()
        try:
            folders = [folder for folder in self.root.iterdir() if (folder / META).is_file()]
        except OSError as exc:
            raise record_error(f"cannot read the runs folder {self.root}", exc) from None
        runs = []
        for folder in folders:
            try:
                runs.append(self.load(folder.name))
            except RunUnreadable as exc:
                runs.append(RunRecord.unreadable_at(folder, exc.reason))
            except RunNotFound:
                continue  # a folder whose name is no run id: no command could name it
        return sorted(runs, key=lambda r: (r.meta.started_at, r.meta.run_id), reverse=True)

    def save_sweep(self, sweep_id: str, manifest: BaseModel) -> Path:
        """A sweep's sweep.json (graphs/sweep), under sweeps/ in the runs folder, replaced whole:
        the cells it plans, whose runs say which cell they are in their run.json."""
        folder = self.sweep_folder(sweep_id)
        self.check_root()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(folder / SWEEP, manifest.model_dump_json(indent=2) + "\n")
        except OSError as exc:
            raise record_error(f"cannot write {folder / SWEEP}", exc, ANOTHER_FOLDER) from None
        return folder / SWEEP

    def sweep_manifest(self, sweep_id: str) -> str | None:
        """A sweep's sweep.json as text, None if the runs folder has no such sweep."""
        path = self.sweep_folder(sweep_id) / SWEEP
        data = read_bytes(path, sweep_id)
        return None if data is None else data.decode("utf-8", "replace")

    def sweep_ids(self) -> tuple[str, ...]:
        """The sweeps with a sweep.json in this runs folder, the last written first."""
        folder = self.root / SWEEPS
        try:
            found = [(p.stat().st_mtime, p.parent.name) for p in folder.glob(f"*/{SWEEP}") if p.is_file()]
        except OSError as exc:
            raise record_error(f"cannot read the sweeps folder {folder}", exc) from None
        return tuple(name for _, name in sorted(found, reverse=True) if RUN_ID_PATTERN.match(name))

    def sweep_folder(self, sweep_id: str) -> Path:
        if not RUN_ID_PATTERN.match(sweep_id):
            raise RunNotFound(f"'{sweep_id}' is not a sweep id (`duologue sweep FILE` prints it)")
        return self.root / SWEEPS / sweep_id

    def delete(self, run_id: str) -> None:
        """Remove a run's folder, everything in it; RunBusy while a process drives the run.

        Under the run's lock the folder is renamed out of sight first, so the run is listed whole
        or not at all, and nothing can resume it half-deleted. Checkpoints a run kept in Postgres
        (RunMeta.checkpoint_store) stay in that database.
        """
        folder = self.folder(run_id)
        if folder.is_symlink() or folder.resolve().parent != self.root.resolve():
            raise RunNotFound(f"'{run_id}' is not a run folder in {self.root}, so it is not deleted")
        gone = self.root / f".deleting-{run_id}-{secrets.token_hex(4)}"
        try:
            with open(folder / LOCK, "a+b", buffering=0) as handle:
                if not take_lock(handle):
                    raise RunBusy(
                        f"run {run_id} is being driven by {holder(handle)}; stop it or let it finish, "
                        "then delete it"
                    )
                folder.rename(gone)
        except OSError as exc:
            raise record_error(f"cannot delete run {run_id} ({folder})", exc, ", then try again") from None
        RunIndex(self.root).forget(run_id)
        try:
            shutil.rmtree(gone)
        except OSError as exc:  # the run is gone already; what is left is out of every listing
            raise record_error(f"run {run_id} is deleted, but {gone} is left over", exc) from None


def shown_status(recorded: str, folder: Path) -> str:
    """`stopped` for a run recorded as running that no process holds: its process was killed or
    its machine went down, and `resume` continues it; else the recorded status."""
    if recorded == "running" and not lock_held(folder / LOCK):
        return "stopped"
    return recorded


def signature(folder: Path) -> Signature:
    """run.json's and trace.jsonl's signatures, as the index keeps them."""
    return file_signature(folder / META), file_signature(folder / TRACE)


def read_transcript(folder: Path, run_id: str) -> str:
    """transcript.md's text, "" before it exists; RunUnreadable if it is not text."""
    data = read_bytes(folder / TRANSCRIPT, run_id)
    if data is None:
        return ""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"transcript.md is not UTF-8 text ({not_utf8(exc)})"
        raise RunUnreadable(
            f"run {run_id}: {reason}; its turns are still in {folder / TRACE} "
            f"(`duologue show {run_id} --trace`)",
            reason,
        ) from None


def holder(handle: Any) -> str:
    """Who holds the run's lock, as its holder wrote it in the lock file."""
    handle.seek(0)
    return handle.read().decode("utf-8", "replace").strip() or "another process"


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


def read_lines(path: Path, model: type[Row], run_id: str = "") -> Iterator[Row]:
    """Rows of a .jsonl file; a line that cannot be read (torn by a crash mid-append, or a
    damaged byte) is skipped, and costs only its own record."""
    data = read_bytes(path, run_id or path.parent.name)
    for line in (data or b"").split(b"\n"):
        if not line.strip():
            continue
        try:
            yield model.model_validate_json(line)
        except ValueError:  # ValidationError included, and bytes that are not UTF-8
            continue


def read_bytes(path: Path, run_id: str) -> bytes | None:
    """A record file's bytes, None if it does not exist; RunUnreadable if it can't be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        error = record_error(f"cannot read {path}", exc)
        what = error.fault.what if error.fault else str(exc)
        raise RunUnreadable(f"run {run_id}: {error}", f"{path.name} cannot be read: {what}") from None


def finished_records(trace: list[TraceRecord], up_to_turn: int | None = None) -> dict[int, TraceRecord]:
    """The row of each finished turn, by number: its last attempt without an error. A row is
    written without one only once its turn's checkpoint is saved (graphs/run/runner.py)."""
    latest: dict[int, TraceRecord] = {}
    for record in trace:
        if finishes_turn(record) and (up_to_turn is None or (record.turn or 0) <= up_to_turn):
            latest[record.turn or 0] = record
    return latest


def unreadable_meta(folder: Path, reason: str) -> RunUnreadable:
    return RunUnreadable(
        f"run {folder.name} cannot be read: its {reason}; restore it, or move {folder} out of the "
        "runs folder",
        reason,
    )


def not_utf8(exc: UnicodeDecodeError) -> str:
    return f"byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"


def invalid(exc: ValidationError) -> str:
    """What is wrong with a record file, in a few words."""
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return f"not valid JSON ({first['msg'].removeprefix('Invalid JSON: ')})"
    where = ".".join(str(part) for part in first["loc"]) or "the top level"
    return f"not a run record ({where}: {first['msg']})"
