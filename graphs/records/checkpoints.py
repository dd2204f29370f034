"""Where a run's LangGraph checkpoints live: SQLite in its folder, or a Postgres database.

Postgres is for people who keep their runs' state on a database server. Its connection
string is a secret (it may carry a password), so runs record only its redacted form and a
resume asks for the string again, checking that it names the same database.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl, quote, unquote, urlencode, urlsplit

from graphs.errors import DuologueError
from graphs.records.faults import ERRNO_FAULTS, Fault, RecordError, fault_of
from graphs.records.store import CHECKPOINTS, RunWriter

CHECKPOINT_URL_ENV = "DUOLOGUE_CHECKPOINT_URL"
SCHEMES = ("postgresql", "postgres")
CONNECT_TIMEOUT_S = 10
SECRET_PARAMS = frozenset({"password", "sslpassword"})
SAVE_TIMEOUT_S = 120.0


class CheckpointError(DuologueError):
    """The checkpoint database is misnamed, unreachable, or not the one a run was recorded in."""


def url_from_env() -> str | None:
    return os.environ.get(CHECKPOINT_URL_ENV) or None


def parse_url(url: str) -> SplitResult:
    """The URL's parts, or one line saying what a usable one looks like."""
    parts = urlsplit(url.strip())
    if parts.scheme not in SCHEMES or not (parts.hostname or parts.path.strip("/")):
        raise CheckpointError(
            f"checkpoint URL {redact_url(url)!r} is not a Postgres connection string; give one like "
            "postgresql://USER:PASSWORD@HOST:5432/DATABASE (or leave it out for SQLite in the run's folder)"
        )
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise CheckpointError(f"checkpoint URL {redact_url(url)!r} has a port that is not a number") from None
    return parts


def redact_url(url: str) -> str:
    """The URL with its password (in the user part or the query) replaced by ***."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return "<unreadable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        name, colon, _password = user.partition(":")
        netloc = f"{name}{':***' if colon else ''}@{host}"
    query = urlencode(
        [(k, "***" if k in SECRET_PARAMS else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
        safe="*",
    )
    return parts._replace(netloc=netloc, query=query).geturl()


def database_of(url: str) -> tuple[str, str, int, str]:
    """What names a database: user, host, port and database name (not the password)."""
    parts = urlsplit(url.strip())
    return (
        unquote(parts.username or ""),
        (parts.hostname or "").lower(),
        parts.port or 5432,
        unquote(parts.path.lstrip("/")),
    )


def recorded_store(url: str | None) -> str | None:
    """What run.json keeps of the URL: its redacted form, or None for SQLite in the folder."""
    return redact_url(url) if url else None


def url_for_run(recorded: str | None, given: str | None, run_id: str) -> str | None:
    """The URL to reach a recorded run's checkpoints with, checked against what it recorded.

    `given` is what the user passed (flag or argument); $DUOLOGUE_CHECKPOINT_URL fills in
    for a run kept in Postgres, but never moves a run that was kept in SQLite.
    """
    if recorded is None:
        if given:
            raise CheckpointError(
                f"run {run_id} keeps its checkpoints in its own folder (SQLite); "
                "continue it without --checkpoint-url"
            )
        return None
    url = given or url_from_env()
    if not url:
        raise CheckpointError(
            f"run {run_id} keeps its checkpoints in Postgres at {recorded}; give its connection string "
            f"with --checkpoint-url or ${CHECKPOINT_URL_ENV}"
        )
    parse_url(url)
    if database_of(url) != database_of(recorded):
        raise CheckpointError(
            f"run {run_id} keeps its checkpoints in {recorded}, but the connection string given names "
            f"{redact_url(url)}; give the run's own database"
        )
    return url


@contextmanager
def checkpointer(writer: RunWriter, url: str | None) -> Iterator[Any]:
    """The run's checkpointer: Postgres at `url`, else SQLite in the run's folder."""
    if not url:
        with writer.checkpointer() as saver:
            yield saver
        return
    with postgres_saver(url) as saver:
        yield saver


@contextmanager
def postgres_saver(url: str) -> Iterator[Any]:
    """A PostgresSaver on its own connection, its tables created if they are missing."""
    parse_url(url)
    try:
        import psycopg
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row
    except ImportError:
        raise CheckpointError(
            "Postgres checkpoints need the postgres extra: pip install 'duologue[postgres]'"
        ) from None
    quiet = logging.getLogger("psycopg")  # its "error ignored" warnings repeat the failure we report
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.ERROR)
    try:
        connection = psycopg.Connection.connect(
            url,
            autocommit=True,
            prepare_threshold=0,
            row_factory=dict_row,  # type: ignore[arg-type]
            connect_timeout=CONNECT_TIMEOUT_S,
        )
    except psycopg.Error as exc:
        raise CheckpointError(
            f"cannot reach the checkpoint database {redact_url(url)}: {first_line(exc, url)}; "
            "check that it is running and the connection string is right"
        ) from None
    with connection:
        saver = PostgresSaver(connection)
        try:
            saver.setup()
        except psycopg.Error as exc:
            raise CheckpointError(
                f"the checkpoint database {redact_url(url)} refused duologue's tables: {first_line(exc, url)}"
            ) from None
        yield saver


class SavedTurns:
    """Which turns the checkpointer has saved, so a turn is shown as finished only once it is.

    LangGraph streams a node's update as soon as it hands the node's writes to a background
    thread for saving. A kill in between would leave a turn in the transcript that a resume
    generates again; waiting here for the save closes that gap (it is usually done already).
    Turns a resume replays from the last checkpoint's pending writes were saved before.
    """

    def __init__(self, saver: Any, config: Any) -> None:
        latest = saver.get_tuple(config)
        pending = (latest.pending_writes or []) if latest else []
        self._saved: set[int] = set(turn_numbers((channel, value) for _task, channel, value in pending))
        self._failure: BaseException | None = None
        self._changed = threading.Condition()
        inner = saver.put_writes

        def put_writes(config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
            try:
                inner(config, writes, task_id, task_path)
            except BaseException as exc:
                with self._changed:
                    self._failure = exc
                    self._changed.notify_all()
                raise
            numbers = turn_numbers(writes)
            if numbers:
                with self._changed:
                    self._saved.update(numbers)
                    self._changed.notify_all()

        saver.put_writes = put_writes

    def wait_for(self, number: int, timeout_s: float = SAVE_TIMEOUT_S) -> None:
        with self._changed:
            if not self._changed.wait_for(
                lambda: number in self._saved or self._failure is not None, timeout_s
            ):
                raise CheckpointError(f"turn {number}'s checkpoint was not saved within {timeout_s:.0f} s")
            if number not in self._saved and self._failure is not None:
                raise self._failure


def turn_numbers(writes: Any) -> list[int]:
    return [turn["number"] for channel, value in writes if channel == "turns" for turn in value]


def check_reachable(url: str | None) -> None:
    """Fail before a run starts, rather than after its folder exists, if Postgres can't be used."""
    if url:
        with postgres_saver(url):
            pass


def describe_failure(exc: BaseException, url: str | None) -> str | None:
    """One line for a database failure in the middle of a run, or None if `exc` is not one."""
    if not url:
        return None
    try:
        import psycopg
    except ImportError:
        return None
    if isinstance(exc, psycopg.Error):
        return f"the checkpoint database {redact_url(url)} failed: {first_line(exc, url)}"
    return None


def sqlite_fault(exc: BaseException, folder: Path) -> Fault | None:
    """What went wrong with a run's checkpoints.sqlite, or None if `exc` is no SQLite error.

    SQLite says "unable to open database file" where it cannot create its journal next to the
    database, as in a read-only folder: then the folder's file system is asked.
    """
    if not isinstance(exc, sqlite3.Error):
        return None
    fault = fault_of(exc)
    if "unable to open" in str(exc) and read_only(folder):
        return ERRNO_FAULTS[errno.EROFS]
    return fault


def unusable(run_id: str, folder: Path, exc: BaseException) -> RecordError | None:
    """One line for a run whose checkpoints.sqlite cannot be opened to resume or fork it, or
    None if `exc` is no SQLite error."""
    fault = sqlite_fault(exc, folder)
    if fault is None:
        return None
    path = folder / CHECKPOINTS
    if not fault.remedy:  # damaged: trying again won't help
        return RecordError(
            f"run {run_id} cannot be continued: {fault.what}, so no turn can be resumed or forked "
            f"from it; its finished turns are in {folder / 'transcript.md'}",
            fault,
        )
    return RecordError(
        f"cannot open run {run_id}'s checkpoints {path}: {fault.what}; {fault.remedy}, then try again", fault
    )


def read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def first_line(exc: BaseException, url: str) -> str:
    """The error's first line, without the password if the driver echoed it."""
    text = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0].removeprefix("connection failed: ")
    password = urlsplit(url.strip()).password
    for secret in {password, quote(password or "", safe="")} - {None, ""}:
        text = text.replace(str(secret), "***")
    return re.sub(r"(password=)\S+", r"\1***", text)
