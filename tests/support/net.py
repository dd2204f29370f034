"""Ports for the servers tests start."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(
    server: ThreadingHTTPServer, stop: Callable[[], None] | None = None
) -> Iterator[ThreadingHTTPServer]:
    """`server` answering in a thread of its own until the block ends; then `stop()` (else its
    shutdown and close)."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        if stop is not None:
            stop()
        else:
            server.shutdown()
            server.server_close()
        thread.join()
