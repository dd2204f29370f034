"""The runs folder's index: one summary per run in SQLite (`.index.sqlite`), so a listing of
thousands of runs reads one file instead of every run's record.

The folders stay the truth. Each row carries the signature (inode, size, mtime) its run.json and
trace.jsonl had when it was summarized; a listing stats every folder and summarizes again only the
runs whose files changed (by hand, by another machine, by an older duologue), drops the rows of
folders gone, and adds the folders new. Once the first listing has made the index, RunWriter
updates its run's row as it writes (run.json, trace rows, a deletion), so a listing rarely has to.
An index that is missing, corrupt or from another version is rebuilt; one that cannot be opened or
written (a read-only folder) is listed without: the index never fails a listing, nor a run's own
record. Rows are written in WAL mode without fsync: a row lost to a crash is only a stale one.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from graphs.records.schema import RunMeta, TraceRecord

INDEX = ".index.sqlite"
"""Hidden, so no listing takes it for a run; its -wal and -shm files sit beside it."""
INDEX_VERSION = 2
"""Goes up when a summary's fields or rules change, so an index written by another version is rebuilt."""
LISTING_WAIT_S = 2.0
"""How long a listing waits for another process's index write before it lists without saving."""
WRITER_WAIT_S = 0.05
"""How long a run waits to update its row: a run's turn never stalls on the index."""
CACHED_CONNECTIONS = 4

Signature = tuple[str | None, str | None]
"""run.json's and trace.jsonl's `inode:size:mtime_ns` (None for a file that is not there)."""


class RunSummary(BaseModel):
    """A run as a listing shows it (`duologue runs`, the page's Runs and Sweeps pages): what the
    filters ask about and the totals, without its turns. RunStore.load(run_id) gives the whole run."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True)

    run_id: str
    started_at: str
    """run.json's; for an unreadable run, its folder's time."""
    ended_at: str | None = None
    shape: str
    models: list[str]
    """The participants' models, sorted, each once."""
    status: str
    """As RunRecord.status: the recorded status, `stopped` for a run recorded running that no
    process holds, `unreadable` for a record that cannot be read."""
    turns_done: int
    """Finished turns, each once whatever attempts it took."""
    turns: int
    tokens: int
    """Tokens generated over the finished turns."""
    generation_s: float
    """The finished turns' seconds."""
    attempts_s: float
    """Every attempt's seconds, failed and stopped ones included."""
    flags: list[str]
    """As RunRecord.flags."""
    topic: str
    unreadable: str | None = None
    """Why the run's record cannot be read (then the totals are empty), else null."""
    checkpoint_store: str | None = None
    sweep_id: str | None = None
    """The sweep the run is a cell of (run.json's sweep_id), else null."""
    cell: int | None = None
    _root: Path | None = PrivateAttr(default=None)
    _name: str | None = PrivateAttr(default=None)

    def of_folder(self, root: Path, name: str) -> RunSummary:
        """This summary, as the run in `root`/`name` (rows don't hold their folder; a folder copied
        by hand may keep another run's id in its run.json)."""
        self._root, self._name = root, name
        return self

    @property
    def folder(self) -> Path:
        return (self._root or Path()) / (self._name or self.run_id)

    def transcript(self) -> str:
        """transcript.md's text, read only when asked (a search): the index holds none."""
        from graphs.records.store import read_transcript  # the store imports this module

        return read_transcript(self.folder, self.run_id)


def finishes_turn(record: TraceRecord) -> bool:
    """A turn's row without an error: the turn is finished (its checkpoint was saved first)."""
    return record.is_turn and record.turn is not None and not record.error


def run_flag(flag: str) -> str:
    """A turn's flag as a run lists it: 'CPU 40%' counts as CPU."""
    return "CPU" if flag.startswith("CPU") else flag


@dataclass
class TraceTotals:
    """A run's totals, added up one trace row at a time, as a writer appends them."""

    finished: dict[int, tuple[int, float, tuple[str, ...]]] = field(default_factory=dict)
    """Per finished turn: its last finished row's tokens, seconds and flags."""
    last_flags: dict[int, tuple[str, ...]] = field(default_factory=dict)
    """Per turn: its last attempt's flags (a tuple: most have none, and the empty one is shared)."""
    attempts_s: float = 0.0

    @classmethod
    def of(cls, trace: Iterable[TraceRecord]) -> TraceTotals:
        totals = cls()
        for record in trace:
            totals.add(record)
        return totals

    def add(self, record: TraceRecord) -> None:
        if not record.is_turn or record.turn is None:
            return
        self.attempts_s += record.latency_s or 0
        flags = self.last_flags[record.turn] = tuple(record.flags)
        if finishes_turn(record):
            generating = (
                0 if record.speaker_kind == "person" else record.latency_s or 0
            )  # a person's is typing
            self.finished[record.turn] = (record.completion_tokens or 0, generating, flags)

    @property
    def flags(self) -> list[str]:
        """Each turn's row counts once: its finished row, else its last attempt's."""
        rows = self.last_flags | {turn: flags for turn, (_, _, flags) in self.finished.items()}
        return sorted({run_flag(flag) for flags in rows.values() for flag in flags})


def summarize(folder: Path, meta: RunMeta, totals: TraceTotals, status: str | None = None) -> RunSummary:
    return RunSummary(
        run_id=meta.run_id,
        started_at=meta.started_at,
        ended_at=meta.ended_at,
        shape=meta.shape,
        models=sorted({p.model for p in meta.participants}),
        status=status or meta.status,
        turns_done=len(totals.finished),
        turns=meta.turns,
        tokens=sum(tokens for tokens, _, _ in totals.finished.values()),
        generation_s=sum(seconds for _, seconds, _ in totals.finished.values()),
        attempts_s=totals.attempts_s,
        flags=totals.flags,
        topic=meta.topic,
        checkpoint_store=meta.checkpoint_store,
        sweep_id=getattr(meta, "sweep_id", None),  # declared fields, or extra ones in an older RunMeta
        cell=getattr(meta, "cell", None),
    ).of_folder(folder.parent, folder.name)


def unreadable_summary(folder: Path, started_at: str, reason: str) -> RunSummary:
    return RunSummary(
        run_id=folder.name,
        started_at=started_at,
        shape="-",
        models=[],
        status="unreadable",
        turns_done=0,
        turns=0,
        tokens=0,
        generation_s=0.0,
        attempts_s=0.0,
        flags=[],
        topic="",
        unreadable=reason,
    ).of_folder(folder.parent, folder.name)


def file_signature(path: Path | str) -> str | None:
    try:
        return stat_signature(os.stat(path))
    except OSError:
        return None


def stat_signature(found: os.stat_result) -> str:
    return f"{found.st_ino}:{found.st_size}:{found.st_mtime_ns}"


SCHEMA = (
    "CREATE TABLE runs (run_id TEXT PRIMARY KEY, stamp INTEGER NOT NULL, meta_sig TEXT, trace_sig TEXT,"
    " sweep_id TEXT, summary TEXT NOT NULL)",
    "CREATE INDEX runs_by_sweep ON runs (sweep_id) WHERE sweep_id IS NOT NULL",
)
"""A row per run: `stamp` changes with every write, so a listing never overwrites a newer row."""


def connect(path: Path, wait_s: float) -> sqlite3.Connection:
    """The index, opened (and made, at this version) for reading and writing; sqlite3.Error or
    OSError if it cannot be, e.g. in a read-only folder or over a file that is no database."""
    connection = sqlite3.connect(path, timeout=wait_s, isolation_level=None, check_same_thread=False)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=OFF")  # a cache: a lost write is a stale row, summarized again
        connection.execute("PRAGMA wal_autocheckpoint=64")  # keeps the WAL small on a small disk
        if version(connection) != INDEX_VERSION:
            with connection:
                connection.execute("BEGIN IMMEDIATE")
                if version(connection) != INDEX_VERSION:  # another process may have just made it
                    connection.execute("DROP TABLE IF EXISTS runs")
                    for statement in SCHEMA:
                        connection.execute(statement)
                    connection.execute(f"PRAGMA user_version={INDEX_VERSION}")
        return connection
    except BaseException:
        connection.close()
        raise


def version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def stored(summary: RunSummary) -> str:
    return summary.model_dump_json()


@dataclass
class Row:
    stamp: int
    signature: Signature
    summary: str


class RunIndex:
    """The index of one runs folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / INDEX

    # -- listing ------------------------------------------------------------------------------

    def refresh(
        self, seen: Mapping[str, Signature], summarize_run: Callable[[str], RunSummary | None]
    ) -> list[RunSummary]:
        """The summary of every run in `seen` (its folders, as just stat'ed): from the index where
        its row's signature is the folder's, else `summarize_run(run_id)`, saved for next time."""
        connection = self.open_for_listing()
        known = self.rows(connection) if connection is not None else {}
        listed: list[RunSummary] = []
        changed: list[tuple[str, Row | None, Signature, RunSummary]] = []
        for run_id, signature in seen.items():
            row = known.get(run_id)
            summary = self.parsed(run_id, row) if row is not None and row.signature == signature else None
            if summary is None:
                summary = summarize_run(run_id)
                if summary is None:
                    continue
                changed.append((run_id, row, signature, summary))
            listed.append(summary)
        gone = {run_id: row for run_id, row in known.items() if run_id not in seen}
        if connection is not None:
            with closing(connection):
                self.save(connection, changed, gone)
        return listed

    def open_for_listing(self) -> sqlite3.Connection | None:
        """The index to list from; a corrupt one is replaced by a new one; None when neither can be
        had (a read-only folder, say): the listing then reads every folder."""
        for attempt in range(2):
            try:
                connection = connect(self.path, LISTING_WAIT_S)
                try:
                    connection.execute("SELECT count(*) FROM runs").fetchone()
                except BaseException:
                    connection.close()
                    raise
                return connection
            except sqlite3.DatabaseError as exc:
                if attempt or not corrupt(exc):
                    return None
                self.remove_files()
            except (sqlite3.Error, OSError):
                return None
        return None

    def remove_files(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            with suppress(OSError):
                os.unlink(f"{self.path}{suffix}")

    @staticmethod
    def rows(connection: sqlite3.Connection) -> dict[str, Row]:
        try:
            found = connection.execute("SELECT run_id, stamp, meta_sig, trace_sig, summary FROM runs")
            return {run_id: Row(stamp, (meta, trace), text) for run_id, stamp, meta, trace, text in found}
        except sqlite3.Error:
            return {}

    def parsed(self, run_id: str, row: Row) -> RunSummary | None:
        """A row's summary; None if it cannot be read, so the run is summarized again."""
        try:
            summary = RunSummary.model_validate_json(row.summary)
        except ValidationError:
            return None
        return summary.of_folder(self.root, run_id)

    @staticmethod
    def save(
        connection: sqlite3.Connection,
        changed: list[tuple[str, Row | None, Signature, RunSummary]],
        gone: Mapping[str, Row],
    ) -> None:
        """Best effort: a row changed by a run's writer since it was read is left as the writer
        wrote it (its stamp is new), and a failed write leaves the index stale, not the listing wrong."""
        if not changed and not gone:
            return
        try:
            with connection:
                connection.execute("BEGIN IMMEDIATE")
                for name, row, (meta_sig, trace_sig), summary in changed:  # by folder, not by recorded id
                    values = (secrets.randbits(62), meta_sig, trace_sig, summary.sweep_id, stored(summary))
                    if row is None:
                        connection.execute(
                            "INSERT OR IGNORE INTO runs (stamp, meta_sig, trace_sig, sweep_id, summary,"
                            " run_id) VALUES (?, ?, ?, ?, ?, ?)",
                            (*values, name),
                        )
                    else:
                        connection.execute(
                            "UPDATE runs SET stamp = ?, meta_sig = ?, trace_sig = ?, sweep_id = ?,"
                            " summary = ? WHERE run_id = ? AND stamp = ?",
                            (*values, name, row.stamp),
                        )
                connection.executemany(
                    "DELETE FROM runs WHERE run_id = ? AND stamp = ?",
                    [(run_id, row.stamp) for run_id, row in gone.items()],
                )
        except sqlite3.Error:
            return

    # -- a run's writer -------------------------------------------------------------------------

    def record(self, summary: RunSummary, signature: Signature) -> None:
        """A run's row, as its writer has just written the run; best effort, never waiting long."""
        self.write(
            "INSERT INTO runs (run_id, stamp, meta_sig, trace_sig, sweep_id, summary)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET stamp = excluded.stamp,"
            " meta_sig = excluded.meta_sig, trace_sig = excluded.trace_sig, sweep_id = excluded.sweep_id,"
            " summary = excluded.summary",
            (summary.folder.name, secrets.randbits(62), *signature, summary.sweep_id, stored(summary)),
        )

    def forget(self, run_id: str) -> None:
        """A deleted run's row."""
        self.write("DELETE FROM runs WHERE run_id = ?", (run_id,))

    def write(self, statement: str, values: tuple[Any, ...]) -> None:
        if not self.path.exists():
            return  # no index yet: the first listing builds it from the folders
        with suppress(sqlite3.Error, OSError), shared_connection(self.path) as connection:
            connection.execute(statement, values)


def corrupt(exc: sqlite3.DatabaseError) -> bool:
    """A file that is no database, or a damaged one (not a locked or read-only one)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT) or "not a database" in str(exc)


class shared_connection:  # noqa: N801 - used as a context manager, like contextlib's
    """One cached connection per index per process, for writers: opening one costs more than a
    turn's writes. Keyed by the file's inode, so an index rebuilt by another process is reopened."""

    cache: dict[tuple[int, str], tuple[int, sqlite3.Connection]] = {}
    guard = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        self.guard.acquire()
        try:
            inode = os.stat(self.path).st_ino
            key = (os.getpid(), str(self.path))
            cached = self.cache.pop(key, None)
            if cached is not None and cached[0] != inode:
                cached[1].close()
                cached = None
            connection = cached[1] if cached is not None else connect(self.path, WRITER_WAIT_S)
            self.cache[key] = (inode, connection)  # the newest last
            while len(self.cache) > CACHED_CONNECTIONS:
                self.cache.pop(next(iter(self.cache)))[1].close()
            return connection
        except BaseException:
            self.guard.release()
            raise

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        try:
            if kind is not None:  # a connection that failed (read-only, say) is not kept for the next write
                dropped = self.cache.pop((os.getpid(), str(self.path)), None)
                if dropped is not None:
                    dropped[1].close()
        finally:
            self.guard.release()

    @classmethod
    def close_all(cls) -> None:
        with cls.guard:
            for _, connection in cls.cache.values():
                connection.close()
            cls.cache.clear()
