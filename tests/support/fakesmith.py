"""A LangSmith-compatible endpoint on 127.0.0.1 that records the runs it is sent.

It answers what the langsmith client calls while tracing: `GET /info`, `POST /runs/multipart`
(the batch tracer's default), `POST /runs/batch`, `POST /runs` and `PATCH /runs/{id}`.

    with fake_langsmith() as smith:
        ... LANGSMITH_ENDPOINT=smith.url ...
        smith.runs          # run id -> the run, its post and patches merged
        smith.requests      # (method, path, headers) of every request, in order
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

INFO = {
    "version": "0.0.0-fake",
    "instance_flags": {},
    "batch_ingest_config": {
        "use_multipart_endpoint": True,
        "size_limit": 100,
        "size_limit_bytes": 20_971_520,
        "scale_up_nthreads_limit": 16,
        "scale_up_qsize_trigger": 1000,
        "scale_down_nempty_trigger": 4,
    },
}


class FakeLangSmith:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.operations: list[tuple[str, dict[str, Any]]] = []  # ("post" | "patch", run fields)
        self.url = ""

    @property
    def runs(self) -> dict[str, dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        with self.lock:
            operations = list(self.operations)
        for _op, fields in operations:
            run = merged.setdefault(str(fields["id"]), {})
            for key, value in fields.items():
                if value is not None or key not in run:
                    run[key] = value
        return merged

    @property
    def run_posts(self) -> int:
        with self.lock:
            return sum(1 for method, path, _ in self.requests if path.startswith("/runs"))

    def record(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        with self.lock:
            self.requests.append((method, path, headers))
        content_type = headers.get("content-type", "")
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if path == "/runs/multipart":
            ops = parse_multipart(body, content_type)
        elif path == "/runs/batch":
            payload = json.loads(body)
            ops = [("post", r) for r in payload.get("post", [])] + [
                ("patch", r) for r in payload.get("patch", [])
            ]
        elif path == "/runs" and method == "POST":
            ops = [("post", json.loads(body))]
        elif path.startswith("/runs/") and method == "PATCH":
            ops = [("patch", {"id": path.rsplit("/", 1)[1], **json.loads(body)})]
        else:
            ops = []
        with self.lock:
            self.operations.extend(ops)


def parse_multipart(body: bytes, content_type: str) -> list[tuple[str, dict[str, Any]]]:
    """Parts are named `post.<id>` / `patch.<id>` (the run) and `post.<id>.<field>` (its inputs, ...)."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    ops: dict[tuple[str, str], dict[str, Any]] = {}
    order: list[tuple[str, str]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        op, _, rest = name.partition(".")
        run_id, _, field = rest.partition(".")
        if op not in ("post", "patch"):
            continue
        payload = part.get_payload(decode=True)
        value = json.loads(payload) if payload else None
        key = (op, run_id)
        if key not in ops:
            ops[key] = {"id": run_id}
            order.append(key)
        if field:
            ops[key][field] = value
        elif isinstance(value, dict):
            ops[key].update(value)
    return [(op, ops[(op, run_id)]) for op, run_id in order]


class Handler(BaseHTTPRequestHandler):
    smith: FakeLangSmith

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        body = self._body()
        path = self.path.split("?", 1)[0]
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.smith.record(method, path, headers, body)
        if method == "GET" and path == "/info":
            self._answer(200, INFO)
        elif path.startswith("/runs"):
            self._answer(202 if path == "/runs/multipart" else 200, {})
        else:
            self._answer(404, {"detail": "Not Found"})

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")


@contextmanager
def fake_langsmith() -> Iterator[FakeLangSmith]:
    smith = FakeLangSmith()
    handler = type("BoundHandler", (Handler,), {"smith": smith})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    smith.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield smith
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
