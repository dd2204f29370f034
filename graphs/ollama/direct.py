"""Ollama's small JSON requests over http.client, where no proxy stands between.

Every turn reads /api/ps before it runs; through httpx that reading cost about four times the
CPU of http.client on the same kept-alive socket, more than the rest of a turn's residency
check. A proxy named in the environment is for httpx to honour (with its NO_PROXY rules), so
a host that one may apply to is not reached here: `reachable_directly` says which.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import urllib.request
from typing import Any
from urllib.parse import urlsplit

KEPT_PER_HOST = 4
"""Idle connections a process keeps for one host; more are closed once their request is done."""


class Unreachable(Exception):
    """The request could not be sent or its answer not read: the connection failed."""


class TimedOut(Exception):
    """The server sent nothing for the request's timeout."""


def reachable_directly(host: str) -> bool:
    """`host` is plain http(s) and the environment names no proxy for its scheme."""
    scheme = urlsplit(host).scheme
    if scheme not in ("http", "https"):
        return False
    proxies = urllib.request.getproxies()
    return not (proxies.get(scheme) or proxies.get("all"))


class Connections:
    """Idle keep-alive connections by host, taken by one request at a time (http.client's are not
    shared between threads); a forked child opens its own."""

    def __init__(self) -> None:
        self._idle: dict[tuple[int, str], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def take(self, host: str, context: Any) -> http.client.HTTPConnection:
        with self._lock:
            idle = self._idle.get((os.getpid(), host))
            if idle:
                return idle.pop()
        parts = urlsplit(host)
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.hostname or "", parts.port, context=context)
        return http.client.HTTPConnection(parts.hostname or "", parts.port)

    def give_back(self, host: str, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault((os.getpid(), host), [])
            if len(idle) < KEPT_PER_HOST:
                idle.append(connection)
                return
        connection.close()

    def drop(self, host: str) -> None:
        """Close a host's idle connections (one failed); the next request opens a new one."""
        with self._lock:
            idle = self._idle.pop((os.getpid(), host), [])
        for connection in idle:
            connection.close()


CONNECTIONS = Connections()


def request(
    host: str, method: str, path: str, body: dict[str, Any] | None, timeout: float, context: Any
) -> tuple[int, bytes]:
    """One request on a kept-alive connection: the status and the whole body. Raises TimedOut,
    or Unreachable for a connection that failed (the caller may send it once more)."""
    connection = CONNECTIONS.take(host, context)
    connection.timeout = timeout
    if connection.sock is not None:
        connection.sock.settimeout(timeout)
    payload = None if body is None else json.dumps(body, separators=(",", ":")).encode("utf-8")
    headers = {"Accept": "application/json"}
    if payload is not None:
        headers["Content-Type"] = "application/json"
    target = urlsplit(host).path.rstrip("/") + path
    try:
        connection.request(method, target, body=payload, headers=headers)
        response = connection.getresponse()
        data = response.read()
    except TimeoutError:
        connection.close()
        CONNECTIONS.drop(host)
        raise TimedOut(path) from None
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        CONNECTIONS.drop(host)
        raise Unreachable(str(exc)) from None
    if response.will_close:
        connection.close()
    else:
        CONNECTIONS.give_back(host, connection)
    return response.status, data
