"""Folders on their own tmpfs, for tests whose writes must fail even for root.

Root ignores file modes, so a test that needs a refused write mounts a filesystem that refuses
it to everyone: a read-only one, or a tiny one that fills up. Without the right to mount (not
root, or in a container without CAP_SYS_ADMIN), the test is skipped and says why.

    with tmpfs(tmp_path / "runs", size="200k") as runs: ...   # fills up after 200 kB
    with tmpfs(tmp_path / "runs", read_only=True) as runs: ... # refuses every write
    remount(runs, "size=10m")                                   # room again
    with read_only(run_folder): ...                             # refuses new writes from now on

A filesystem with files open for writing cannot be remounted read-only ("busy"), so read_only
lays a read-only bind mount over the folder instead: from then on every open for writing in
it fails with EROFS, as on a disk that turned read-only, while files open already stay open.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tmpfs(folder: Path, size: str | None = None, read_only: bool = False) -> Iterator[Path]:
    """`folder` as the mount point of a new tmpfs, unmounted (and so emptied) on the way out."""
    folder.mkdir(parents=True, exist_ok=True)
    options = ",".join([*(["ro"] if read_only else []), *([f"size={size}"] if size else [])])
    command = ["mount", "-t", "tmpfs", *(["-o", options] if options else []), "tmpfs", str(folder)]
    try:
        mounted = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        pytest.skip("no mount command here: this test needs a tmpfs to make writes fail even for root")
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs ({mounted.stderr.strip()}): this test needs root, or CAP_SYS_ADMIN"
        )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


@contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """`folder` seen through a read-only bind mount of itself, removed on the way out."""
    bound = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True, text=True)
    if bound.returncode != 0:
        pytest.skip(f"cannot bind-mount ({bound.stderr.strip()}): this test needs root, or CAP_SYS_ADMIN")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True, check=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def remount(folder: Path, *options: str) -> None:
    """Change a tmpfs's options while it is mounted: "ro", "rw", "size=10m"."""
    subprocess.run(["mount", "-o", ",".join(["remount", *options]), str(folder)], check=True)
