"""No test reaches a real Ollama: a connection to this machine's port 11434 fails the test that made it.

Tests talk to the Ollama-protocol test server or the embedded one, each on a free port. A test
that reached Ollama's default address instead would pass or fail by whatever happens to listen
there on the machine it runs on, and could load a real model. The guard refuses such a
connection before it is made; since the code under test may swallow the refusal (it reports an
unreachable server), the guard also fails the test phase that dialled, naming the test.

tests/conftest.py registers OllamaGuard for every tier and points OLLAMA_HOST at NOWHERE, so the
processes tests start cannot fall back to the default address either.
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable, Generator
from typing import Any

import pytest

OLLAMA_PORT = 11434
NOWHERE = "http://127.0.0.1:9"
"""The tests' OLLAMA_HOST: the discard port, where nothing listens and no test server is put
(free ports are above 1024), so a default host fails at once instead of finding an Ollama."""

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
ANY_ADDRESS = frozenset({"0.0.0.0", "::"})  # connecting to these reaches this machine too


def is_real_ollama(address: Any) -> bool:
    """Whether a socket address (as connect takes it) is Ollama's default port on this machine."""
    if not isinstance(address, tuple) or len(address) < 2 or address[1] != OLLAMA_PORT:
        return False
    host = str(address[0]).lower().strip("[]").removeprefix("::ffff:")
    return host in LOOPBACK_NAMES or host in ANY_ADDRESS or host == "::1" or host.startswith("127.")


class RealOllamaDialled(ConnectionRefusedError):
    """What the code under test sees: a refused connection, as if no Ollama were running."""


class OllamaGuard:
    """A pytest plugin: refuses connections to a real Ollama and fails the test that made one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._test: str | None = None
        self._dials: list[tuple[str | None, str]] = []  # (test id or None, host:port), not yet reported
        self._restore: list[Callable[[], None]] = []

    def check(self, address: Any) -> None:
        """Raise RealOllamaDialled, and remember who dialled, if address is a real Ollama's."""
        if not is_real_ollama(address):
            return
        where = f"{address[0]}:{address[1]}"
        with self._lock:
            test = self._test
            self._dials.append((test, where))
        raise RealOllamaDialled(
            errno.ECONNREFUSED, f"{test or 'the test session'} dialled a real Ollama at {where}"
        )

    def _take(self, test: str | None) -> list[str]:
        with self._lock:
            taken = [where for who, where in self._dials if who == test]
            self._dials = [(who, where) for who, where in self._dials if who != test]
        return taken

    # -- the socket patch, for the whole session ---------------------------------------------------

    def pytest_sessionstart(self) -> None:
        for name in ("connect", "connect_ex"):
            self._wrap(name)

    def _wrap(self, name: str) -> None:
        own = name in socket.socket.__dict__  # else inherited from _socket.socket
        original = getattr(socket.socket, name)
        check = self.check

        def guarded(sock: socket.socket, address: Any) -> Any:
            try:
                check(address)
            except RealOllamaDialled:
                if name == "connect_ex":
                    return errno.ECONNREFUSED
                raise
            return original(sock, address)

        setattr(socket.socket, name, guarded)
        self._restore.append(
            (lambda: setattr(socket.socket, name, original))
            if own
            else (lambda: delattr(socket.socket, name))
        )

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        while self._restore:
            self._restore.pop()()
        stray = self._take(None)  # dialled while no test ran: at collection, or a thread left behind
        if stray:
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"the test session dialled a real Ollama at {', '.join(stray)}", red=True)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    # -- reports ----------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        with self._lock:
            self._test = item.nodeid
        try:
            return (yield)
        finally:
            with self._lock:
                self._test = None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        dialled = self._take(item.nodeid)
        if dialled:
            report.outcome = "failed"
            report.longrepr = (
                f"{item.nodeid} dialled a real Ollama at {', '.join(dialled)} (in {call.when}); tests use "
                f"the Ollama-protocol test server (support.fakeollama) or the embedded one, on a free port"
            )
            if hasattr(report, "wasxfail"):
                del report.wasxfail
        return report
