"""`duologue ui` as a user starts it, in a process of its own, for the tests that need the real server.

    with duologue_ui(runs_dir, tmp_path / "ui.log", host=url) as page:
        page.url        # http://127.0.0.1:PORT, answering /_stcore/health
        page.stop()     # SIGTERM to duologue alone, as a supervisor or `kill` sends it

Leaving the block stops it the same way if the test has not; the process group is killed
outright only if duologue is still there after a generous deadline, so nothing outlives a test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from support.net import free_port

STOP_DEADLINE_S = 30.0
"""Time allowed for duologue ui to stop: its server, then its runs (each stops at its next token)."""


def wait_for(url: str, timeout_s: float) -> None:
    """Until url answers 200; fails after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {timeout_s} s")
        time.sleep(0.2)


def serving(port: int) -> bool:
    """Whether anything accepts connections on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Page:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal duologue (not its group) and wait for it to exit; its exit code."""
        self.process.send_signal(sig)
        return self.process.wait(timeout=STOP_DEADLINE_S)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def duologue_ui(runs_dir: Path, log: Path, host: str | None = None) -> Iterator[Page]:
    port = free_port()
    command = [sys.executable, "-m", "graphs", "ui", "--port", str(port), "--runs-dir", str(runs_dir)]
    command += ["--host", host] if host else []
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        page = Page(f"http://127.0.0.1:{port}", port, process, log)
        try:
            wait_for(f"{page.url}/_stcore/health", timeout_s=60)
            yield page
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                with suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=STOP_DEADLINE_S)
            with suppress(ProcessLookupError):  # whatever is left of its group: nothing outlives the test
                os.killpg(process.pid, signal.SIGKILL)
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
