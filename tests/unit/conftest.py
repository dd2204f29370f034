"""The unit tier opens no network connection: a test that needs one belongs in tests/integration."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from typing import Any

import pytest

NETWORK = (socket.AF_INET, socket.AF_INET6)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Refuse every IP connect and bind, and fail the test that tried, even if it swallowed the refusal."""
    attempts: list[str] = []

    def refusing(name: str) -> Any:
        original = getattr(socket.socket, name)

        def guarded(sock: socket.socket, address: Any) -> Any:
            if sock.family in NETWORK:
                attempts.append(f"{name} {address}")
                raise ConnectionRefusedError(
                    errno.ECONNREFUSED, f"unit tests open no network socket ({address})"
                )
            return original(sock, address)

        return guarded

    for name in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, name, refusing(name))
    yield
    assert not attempts, f"a unit test used the network ({', '.join(attempts)}); move it to tests/integration"
