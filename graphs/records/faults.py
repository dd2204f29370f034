"""What a disk or database fault means for a run's record, in words a user can act on.

Every OSError and sqlite3 error the run store meets is explained here, so the CLI, the page
and a failed run's run.json say the same thing for the same fault: what happened, and what
to do about it. The caller says where.
"""

from __future__ import annotations

import errno
import sqlite3
from dataclasses import dataclass

from graphs.errors import DuologueError, RunNotFound


@dataclass(frozen=True)
class Fault:
    what: str
    """What happened, e.g. 'the disk is full'."""
    remedy: str
    """What to do, e.g. 'free some space'; empty for a damaged file, where trying again won't help."""


class RecordError(DuologueError):
    """A run's record could not be written or opened: a full disk, a read-only folder, a damaged
    database. Raised before a run starts, it exits 2; in the middle of a run it becomes RunFailed."""

    def __init__(self, message: str, fault: Fault | None = None) -> None:
        super().__init__(message)
        self.fault = fault
        self.turn: int | None = None
        """The turn whose record could not be written, when the run knows it."""


class RunUnreadable(RunNotFound):
    """A run folder whose record cannot be read; `duologue runs` lists it as `unreadable`."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
        """What cannot be read, in a few words: what `duologue runs` shows in the run's row."""


WRITABLE = "make it writable"
FREE = "free some space"
ERRNO_FAULTS = {
    errno.ENOSPC: Fault("the disk is full", FREE),
    errno.EDQUOT: Fault("the disk quota is used up", FREE),
    errno.EFBIG: Fault("the file grew larger than the file system allows", FREE),
    errno.EROFS: Fault("the file system is read-only", WRITABLE),
    errno.EACCES: Fault("permission denied", "check its permissions"),
    errno.EPERM: Fault("the operation is not permitted", "check its permissions"),
    errno.ENOTDIR: Fault("a file stands where a folder should be", "move that file away"),
    errno.EISDIR: Fault("a folder stands where a file should be", "move that folder away"),
    errno.EEXIST: Fault("something of that name is in the way", "move it away"),
    errno.ENOENT: Fault("it is gone (deleted or moved)", "check that the runs folder is still there"),
    errno.EIO: Fault("the disk reported an I/O error", "check the disk"),
}
SQLITE_FAULTS = (
    ("readonly", Fault("the database is read-only", WRITABLE)),
    ("disk is full", Fault("the disk is full", FREE)),
    ("disk i/o error", Fault("the disk reported an I/O error", "check the disk")),
    ("not a database", Fault("checkpoints.sqlite is damaged (file is not a database)", "")),
    ("malformed", Fault("checkpoints.sqlite is damaged (database disk image is malformed)", "")),
    ("unable to open", Fault("the database cannot be opened", "check that its folder is there and writable")),
    ("locked", Fault("the database is locked by another process", "wait for it to finish")),
)


def fault_of(exc: BaseException) -> Fault | None:
    """The fault an OSError or a sqlite3 error stands for; None for any other exception."""
    if isinstance(exc, RecordError):
        return exc.fault
    if isinstance(exc, OSError):
        known = ERRNO_FAULTS.get(exc.errno or 0)
        if known:
            return known
        return Fault((exc.strerror or exc.__class__.__name__).lower(), "check the disk and its permissions")
    if isinstance(exc, sqlite3.Error):
        text = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        for needle, fault in SQLITE_FAULTS:
            if needle in text.lower():
                return fault
        return Fault(f"the database failed ({text})", "check the disk and its permissions")
    return None


def record_error(doing: str, exc: BaseException, then: str = "") -> RecordError:
    """'{doing}: {what}; {remedy}{then}': one line for a fault met while doing something to a
    record. `then` goes on from the remedy (", then resume it")."""
    fault = fault_of(exc) or Fault(f"{exc.__class__.__name__}: {exc}", "check the disk and its permissions")
    advice = f"; {fault.remedy}{then}" if fault.remedy else ""
    return RecordError(f"{doing}: {fault.what}{advice}", fault)
