"""An OTLP/HTTP trace receiver on 127.0.0.1 that keeps the spans it is sent.

It answers `POST /v1/traces` (protobuf ExportTraceServiceRequest, as OTLPSpanExporter sends it)
with an empty ExportTraceServiceResponse; `hang=True` makes it accept each request and never answer.

    with otlp_receiver() as collector:
        ... OTEL_EXPORTER_OTLP_ENDPOINT=collector.url ...
        collector.spans        # every span received, as a Span (attributes decoded)
        collector.requests     # (path, headers) of every request, in order
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from support.net import free_port


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_code: int
    status_message: str
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value_of(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value_of(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def attributes_of(pairs: Any) -> dict[str, Any]:
    return {kv.key: value_of(kv.value) for kv in pairs}


def spans_of(request: ExportTraceServiceRequest) -> list[Span]:
    found = []
    for resource_spans in request.resource_spans:
        resource = attributes_of(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                found.append(
                    Span(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        kind=span.kind,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=attributes_of(span.attributes),
                        status_code=span.status.code,
                        status_message=span.status.message,
                        resource=resource,
                        scope=scope_spans.scope.name,
                    )
                )
    return found


class Receiver:
    def __init__(self, hang: bool) -> None:
        self.hang = hang
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.bodies: list[bytes] = []
        self._spans: list[Span] = []
        self.url = ""

    @property
    def spans(self) -> list[Span]:
        with self.lock:
            return list(self._spans)

    def take(self, path: str, headers: dict[str, str], body: bytes) -> None:
        encoding = headers.get("content-encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self.lock:
            self.requests.append((path, headers))
            self.bodies.append(body)
            self._spans.extend(spans_of(request))


def handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if receiver.hang:
                receiver.released.wait()
                return
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            receiver.take(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    return Handler


@contextmanager
def otlp_receiver(hang: bool = False, userinfo: str = "") -> Iterator[Receiver]:
    """A receiver on a free port; its url is the base URL (OTEL_EXPORTER_OTLP_ENDPOINT's form),
    with `userinfo` (`user:password@`) in it if given."""
    receiver = Receiver(hang)
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), handler_for(receiver))
    server.daemon_threads = True
    receiver.url = f"http://{userinfo}127.0.0.1:{port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="otlp-receiver")
    thread.start()
    try:
        yield receiver
    finally:
        receiver.released.set()
        server.shutdown()
        server.server_close()
