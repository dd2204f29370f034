"""A throwaway PostgreSQL server on 127.0.0.1, from Debian's postgresql package (make postgres).

It listens on a free port with password authentication, so tests use a connection string
like a user's, password included. PostgreSQL refuses to run as root, so under root the
server runs as the `postgres` system user the package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.net import free_port

USER, PASSWORD, DATABASE = "duologue", "s3cret-pw", "postgres"


def bin_dir() -> Path | None:
    """Debian's newest PostgreSQL binaries, or None if the package is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server in a fresh data folder; yields its connection string; removes it all after."""
    binaries = bin_dir()
    assert binaries is not None, "PostgreSQL is not installed: run `make postgres`"
    as_user: list[str] = []
    home = Path(tempfile.mkdtemp(prefix="duologue-pg-"))
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(home, "postgres", "postgres")
    data, pwfile = home / "data", home / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if as_user:
        shutil.chown(pwfile, "postgres", "postgres")
    port = free_port()
    server = None
    try:
        subprocess.run(
            [*as_user, str(binaries / "initdb"), "-D", str(data), "-U", USER, "--pwfile", str(pwfile),
             "--auth", "scram-sha-256", "--no-sync", "--no-instructions"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        server = subprocess.Popen(
            [*as_user, str(binaries / "postgres"), "-D", str(data), "-p", str(port), "-k", str(home),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        url = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"
        wait_for(url, server)
        yield url
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def wait_for(url: str, server: subprocess.Popen[str], timeout_s: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"postgres exited: {server.stderr.read() if server.stderr else ''}")
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
