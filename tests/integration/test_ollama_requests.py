"""Ollama's small JSON requests (/api/ps and the like): straight to the host on a kept-alive
connection, or through the proxy the environment names, as httpx would send them."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support.net import free_port, serving

from graphs.errors import OllamaError
from graphs.ollama import api

PS = {"models": [{"model": "m:1b", "size": 10, "size_vram": 10, "context_length": 4096}]}
RESIDENT = [api.Resident("m:1b", 10, 10, 4096, None)]


class Answering(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, body: dict) -> None:
        self.body = body
        self.seen: list[tuple[str, str, int]] = []
        """(method, request target, the client's port) of every request."""
        self.connections: list[socket.socket] = []
        super().__init__(("127.0.0.1", port), Handler)

    def stop(self) -> None:
        """Stop as a server process would: its open connections die with it."""
        self.shutdown()
        self.server_close()
        for connection in self.connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps the connection open between requests, as Ollama does
    server: Answering

    def setup(self) -> None:
        super().setup()
        self.server.connections.append(self.connection)

    def do_GET(self) -> None:
        self.server.seen.append(("GET", self.path, self.client_address[1]))
        data = json.dumps(self.server.body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def answering(port: int, body: dict) -> Iterator[Answering]:
    server = Answering(port, body)
    with serving(server, server.stop):
        yield server


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_readings_go_straight_to_the_host_on_one_kept_connection():
    with answering(free_port(), PS) as ollama:
        host = f"http://127.0.0.1:{ollama.server_port}"
        readings = [api.running_models(host) for _ in range(3)]
    assert readings == [RESIDENT] * 3
    assert [(method, path) for method, path, _ in ollama.seen] == [("GET", "/api/ps")] * 3
    assert len({port for _, _, port in ollama.seen}) == 1


def test_a_proxy_the_environment_names_is_used_and_no_proxy_still_bypasses_it(
    monkeypatch: pytest.MonkeyPatch,
):
    with answering(free_port(), PS) as ollama, answering(free_port(), {"models": []}) as proxy:
        host = f"http://127.0.0.1:{ollama.server_port}"
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_port}")
        api.POOL.drop(host)  # a client made before the setting would keep its own
        assert api.running_models(host) == []
        assert [path for _, path, _ in proxy.seen] == [f"{host}/api/ps"]  # a proxy's absolute target
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        api.POOL.drop(host)
        assert api.running_models(host) == RESIDENT
    assert [path for _, path, _ in ollama.seen] == ["/api/ps"]


def test_a_restarted_server_is_reached_again_on_a_new_connection():
    port = free_port()
    host = f"http://127.0.0.1:{port}"
    with answering(port, PS):
        assert api.running_models(host) == RESIDENT
    with answering(port, {"models": []}) as restarted:
        assert api.running_models(host) == []  # the kept connection is dead; the request is sent again
    assert len(restarted.seen) == 1


def test_a_server_that_is_gone_is_one_line_naming_it():
    host = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(OllamaError) as caught:
        api.running_models(host)
    assert str(caught.value) == api.unreachable_message(host)
