"""A run's SQLite checkpoints, committed where something of the run becomes durable.

LangGraph saves each step twice (the task's writes, then the checkpoint), and SqliteSaver
commits each save, an fsync of the WAL every time: four a turn, two steps (facilitator and
speaker) times two. Only one of them makes anything durable that a resume would otherwise
lose: the writes that carry a turn (checkpoints.SavedTurns counts a turn finished once they
are saved). The facilitator's routing and the checkpoints between are recomputed by a resume
from the last committed state, so they ride along with the next commit, or with the one on
closing. Writes of anything else a person or a model gave (an interjection, the observer's
notes) and LangGraph's own channels (interrupts, errors, resume values) are committed at once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver

DURABLE_CHANNELS = frozenset({"turns", "interjections", "observation"})


def makes_durable(writes: Sequence[tuple[str, Any]]) -> bool:
    """Whether a task's writes hold something a resume could not recompute."""
    return any(channel in DURABLE_CHANNELS or channel.startswith("__") for channel, _value in writes)


_deferring = threading.local()


class DeferringConnection(sqlite3.Connection):
    """A connection whose commit waits, in a thread that asks it to, for the next one."""

    def commit(self) -> None:
        if not getattr(_deferring, "on", False):
            super().commit()


@contextmanager
def deferred() -> Iterator[None]:
    _deferring.on = True
    try:
        yield
    finally:
        _deferring.on = False


class TurnSaver(SqliteSaver):
    """SqliteSaver that commits only writes that make something durable (see the module)."""

    def put(self, *args: Any, **kwargs: Any) -> Any:
        with deferred():
            return super().put(*args, **kwargs)

    def put_writes(
        self, config: Any, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        if makes_durable(writes):
            super().put_writes(config, writes, task_id, task_path)
            return
        with deferred():
            super().put_writes(config, writes, task_id, task_path)


@contextmanager
def turn_saver(path: Path) -> Iterator[TurnSaver]:
    """A TurnSaver on the database at `path`; what is left uncommitted is committed on closing,
    however the run ended. A commit that fails then loses only what a resume recomputes."""
    connection = sqlite3.connect(str(path), check_same_thread=False, factory=DeferringConnection)
    saver = TurnSaver(connection)
    try:
        yield saver
    finally:
        with saver.lock, suppress(sqlite3.Error):
            connection.commit()
        connection.close()
