"""Ollama's HTTP API in front of any Backend, so the real model and the test fake answer alike.

Field names, nanosecond units, NDJSON streaming and error bodies follow Ollama's server, so
the `ollama` client and ChatOllama cannot tell the difference. Stdlib only: the embedded
server must run wherever duologue runs.
"""

from __future__ import annotations

import errno
import json
import selectors
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import suppress
from dataclasses import asdict
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from graphs.embedded.backend import (
    Backend,
    BackendFailure,
    BadRequest,
    ChatDelta,
    ChatDone,
    ChatRequest,
    DropConnection,
    ModelEntry,
    ModelNotFound,
    find_model,
    keep_alive_seconds,
)
from graphs.errors import DuologueError


class PortInUse(DuologueError, OSError):
    """The port is taken (often by a real Ollama); the message tells how to pick another."""


class OllamaServer:
    """Serves a Backend on host:port; one generation at a time, like a single GPU."""

    def __init__(
        self, backend: Backend, host: str = "127.0.0.1", port: int = 0, verbose: bool = False
    ) -> None:
        self.backend = backend
        self.verbose = verbose
        self.generation_lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        """Every request's method and path, in order: what a client asked of this server."""
        try:
            self._httpd = _HTTPServer((host, port), _Handler, self)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(f"port {port} on {host} is already in use; pick another with --port") from exc
            raise
        self.host = host
        self.port = self._httpd.server_port  # the one picked when port was 0
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> OllamaServer:
        """Serve in a daemon thread; returns self, so `OllamaServer(b).start()` reads well."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"ollama-server {self.url}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (Ctrl-C), then close everything."""
        try:
            self._httpd.serve_forever()
        finally:
            self._close()

    def stop(self) -> None:
        """Stop accepting, cut open connections (ending their generations) and join all threads."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._close()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._httpd.close_connections()
            self._httpd.server_close()

    def __enter__(self) -> OllamaServer:
        return self if self._thread else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _HTTPServer(ThreadingHTTPServer):
    """Tracks open connections so stop() can cut idle keep-alive ones and join their threads.

    Handler threads are daemons (a forgotten server can't hang the interpreter's exit), and
    block_on_close still makes server_close() join them.
    """

    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: type, owner: OllamaServer) -> None:
        self.owner = owner
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away is routine; anything else keeps its traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "duologue-ollama"
    server: _HTTPServer
    # TCP_NODELAY, as Go (Ollama) sets it: each NDJSON line is its own small write, and with
    # Nagle on, the client's delayed ACK held the last one back about 40 ms per request.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.owner.verbose:
            super().log_message(format, *args)

    @property
    def backend(self) -> Backend:
        return self.server.owner.backend

    def do_GET(self) -> None:
        self._dispatch(
            {
                "/": self._root,
                "/api/tags": self._tags,
                "/api/ps": self._ps,
                "/api/version": self._version,
            }
        )

    def do_HEAD(self) -> None:
        self._dispatch({"/": self._root})

    def do_POST(self) -> None:
        self._dispatch({"/api/chat": self._chat, "/api/show": self._show, "/api/embed": self._embed})

    def _dispatch(self, routes: dict[str, Callable[[], None]]) -> None:
        """Run a route; errors raised before any byte was sent become Ollama's error bodies."""
        self.server.owner.requests.append((self.command, self.path))
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            self._send_json(400, {"error": "invalid Content-Length"})
            return
        self._body = self.rfile.read(length) if length > 0 else b""  # read even if unused
        route = routes.get(urlsplit(self.path).path)
        if route is None:
            self._send(404, b"404 page not found", "text/plain")
            return
        try:
            route()
        except ModelNotFound as exc:
            self._send_json(404, {"error": str(exc)})
        except BadRequest as exc:
            self._send_json(400, {"error": str(exc)})
        except BackendFailure as exc:
            self._send_json(500, {"error": str(exc)})
        except DropConnection:
            self._drop()
        except ConnectionError:
            self.close_connection = True
        except Exception as exc:
            traceback.print_exc()
            self._send_json(500, {"error": f"{type(exc).__name__}: {exc}"})

    def _root(self) -> None:
        self._send(200, b"Ollama is running", "text/plain")

    def _version(self) -> None:
        self._send_json(200, {"version": self.backend.version})

    def _tags(self) -> None:
        models = [
            {
                "name": entry.name,
                "model": entry.name,
                "modified_at": entry.modified_at,
                "size": entry.size,
                "digest": entry.digest,
                "details": _details(entry),
            }
            for entry in self.backend.models()
        ]
        self._send_json(200, {"models": models})

    def _ps(self) -> None:
        entries = {entry.name: entry for entry in self.backend.models()}
        models = []
        for loaded in self.backend.loaded():
            entry = entries.get(loaded.name)
            models.append(
                {
                    "name": loaded.name,
                    "model": loaded.name,
                    "size": loaded.size,
                    "digest": loaded.digest or (entry.digest if entry else ""),
                    "details": _details(entry) if entry else {},
                    "expires_at": loaded.expires_at,
                    "size_vram": loaded.size_vram,
                    "context_length": loaded.context_length,
                }
            )
        self._send_json(200, {"models": models})

    def _show(self) -> None:
        body = self._read_json()
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest("model is required")
        entry = find_model(self.backend.models(), name)
        self._send_json(
            200,
            {
                "modelfile": f"# Modelfile generated by duologue\nFROM {entry.name}\n",
                "parameters": "",
                "template": "{{ .Prompt }}",
                "details": _details(entry),
                "model_info": {
                    "general.architecture": entry.family,
                    f"{entry.family}.context_length": entry.context_length,
                },
                "capabilities": entry.capabilities,
                "modified_at": entry.modified_at,
            },
        )

    def _chat(self) -> None:
        request = _chat_request(self._read_json())
        if not request.messages:
            self._load_or_unload(request)
            return
        entry = find_model(self.backend.models(), request.model)
        if request.think and "thinking" not in entry.capabilities:
            raise BadRequest(f'"{request.model}" does not support thinking')
        with self.server.owner.generation_lock:
            items = self.backend.chat(request, lambda: _peer_closed(self.connection))
            try:
                first = next(items, None)  # errors this early still get a status code
                if first is None:
                    raise BackendFailure("the backend ended without a result")
                if request.stream:
                    self._stream(_ndjson_lines(request, _prepend(first, items)))
                else:
                    self._send_json(200, _whole_answer(request, _prepend(first, items)))
            finally:
                if isinstance(items, Generator):
                    items.close()  # runs the backend's cleanup, e.g. when the client left

    def _embed(self) -> None:
        body = self._read_json()
        name, given = body.get("model"), body.get("input")
        if not isinstance(name, str) or not name:
            raise BadRequest("model is required")
        inputs = [given] if isinstance(given, str) else given
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
            raise BadRequest("input must be a string or a list of strings")
        entry = find_model(self.backend.models(), name)
        started = time.monotonic_ns()
        with self.server.owner.generation_lock:
            result = self.backend.embed(entry.name, inputs)
        self._send_json(
            200,
            {
                "model": name,
                "embeddings": result.embeddings,
                "total_duration": time.monotonic_ns() - started,
                "load_duration": result.load_ns,
                "prompt_eval_count": result.prompt_tokens,
            },
        )

    def _load_or_unload(self, request: ChatRequest) -> None:
        """An empty messages list loads the model, or with keep_alive 0 unloads it."""
        with self.server.owner.generation_lock:
            if keep_alive_seconds(request.keep_alive) == 0:
                self.backend.unload(request.model)
                reason = "unload"
            else:
                self.backend.load(request.model, request.options, request.keep_alive)
                reason = "load"
        self._send_json(
            200,
            {
                "model": request.model,
                "created_at": _now(),
                "message": {"role": "assistant", "content": ""},
                "done_reason": reason,
                "done": True,
            },
        )

    def _stream(self, lines: Iterable[dict[str, Any]]) -> None:
        """NDJSON in HTTP chunks, one line per chunk, sent as soon as it exists."""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for line in lines:
            data = json.dumps(line).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.write(b"0\r\n\r\n")

    def _read_json(self) -> dict[str, Any]:
        if not self._body.strip():
            raise BadRequest("missing request body")
        try:
            body = json.loads(self._body)
        except ValueError as exc:
            raise BadRequest(f"invalid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        return body

    def _send_json(self, status: int, obj: dict[str, Any]) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _drop(self) -> None:
        """Cut the connection mid-answer: the client sees an incomplete response, no error line."""
        self.close_connection = True
        with suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _chat_request(body: dict[str, Any]) -> ChatRequest:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("model is required")
    messages = body.get("messages") or []
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("messages must be a list of objects")
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise BadRequest("options must be an object")
    keep_alive_seconds(body.get("keep_alive"))  # a bad duration is a 400, as in Ollama
    return ChatRequest(
        model=model,
        messages=messages,
        options=options,
        think=body.get("think"),
        keep_alive=body.get("keep_alive"),
        stream=body.get("stream") is not False,
        format=body.get("format"),
    )


def _ndjson_lines(request: ChatRequest, items: Iterator[ChatDelta | ChatDone]) -> Iterator[dict[str, Any]]:
    """The streamed lines; a failure after the first line becomes a final error line."""
    try:
        for item in items:
            if isinstance(item, ChatDone):
                yield _final(request, item, content="", thinking="")
                return
            yield {
                "model": request.model,
                "created_at": _now(),
                "message": _message(item.content, item.thinking),
                "done": False,
            }
    except DropConnection:
        raise
    except Exception as exc:
        if not isinstance(exc, BackendFailure):
            traceback.print_exc()
        yield {"error": str(exc)}
        return
    yield {"error": "the backend ended without a final result"}


def _whole_answer(request: ChatRequest, items: Iterator[ChatDelta | ChatDone]) -> dict[str, Any]:
    content: list[str] = []
    thinking: list[str] = []
    for item in items:
        if isinstance(item, ChatDone):
            return _final(request, item, "".join(content), "".join(thinking))
        content.append(item.content)
        thinking.append(item.thinking)
    raise BackendFailure("the backend ended without a final result")


def _final(request: ChatRequest, done: ChatDone, content: str, thinking: str) -> dict[str, Any]:
    metrics = asdict(done)
    if not metrics["prompt_eval_cached_count"]:
        del metrics["prompt_eval_cached_count"]  # Ollama omits it when empty
    return {
        "model": request.model,
        "created_at": _now(),
        "message": _message(content, thinking),
        "done": True,
        **metrics,
    }


def _message(content: str, thinking: str) -> dict[str, str]:
    message = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    return message


def _details(entry: ModelEntry) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": entry.format,
        "family": entry.family,
        "families": [entry.family],
        "parameter_size": entry.parameter_size,
        "quantization_level": entry.quantization_level,
    }


def _prepend(
    first: ChatDelta | ChatDone, rest: Iterator[ChatDelta | ChatDone]
) -> Iterator[ChatDelta | ChatDone]:
    yield first
    yield from rest


def _peer_closed(connection: socket.socket) -> bool:
    """True once the client hung up: its socket reads as end-of-file (or reset)."""
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(connection, selectors.EVENT_READ)
            if not selector.select(timeout=0):
                return False
        return connection.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
