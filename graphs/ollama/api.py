"""Ollama's REST API: hosts, model lists, /api/show, /api/ps, loads and unloads.

Every request duologue makes to Ollama outside a turn's own stream goes through
call_json, and every /api/chat body (turns, preloads, the doctor's timed generation)
is built by chat_body, so a model is always loaded with the options it speaks with.
"""

from __future__ import annotations

import functools
import json
import math
import os
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import ollama
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from graphs.engine.spec import ModelOptions
from graphs.errors import OllamaError
from graphs.ollama import direct
from graphs.ollama.names import same_model
from graphs.ollama.timeouts import CONNECT_TIMEOUT_S, LOAD_TIMEOUT_S
from graphs.ollama.timeouts import REQUEST_TIMEOUT_S as REQUEST_TIMEOUT_S  # where callers look for it
from graphs.ollama.timeouts import TIMEOUT_S as TIMEOUT_S

DEFAULT_HOST = "http://127.0.0.1:11434"
TOP_LEVEL_KEYS = frozenset({"keep_alive", "think"})


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every client: httpx loads the CA bundle (~25 ms) per client otherwise."""
    return httpx.create_ssl_context()


def client_timeout(seconds: float) -> httpx.Timeout:
    """httpx's timeouts for a turn's client: `seconds` for every read (the first token's and each
    chunk's after it) and every write, and no more than CONNECT_TIMEOUT_S to connect."""
    return httpx.Timeout(seconds, connect=min(seconds, CONNECT_TIMEOUT_S))


def default_host() -> str:
    return normalize_host(os.environ.get("OLLAMA_HOST") or DEFAULT_HOST)


def normalize_host(host: str) -> str:
    """Accept what OLLAMA_HOST accepts: '0.0.0.0:11434', 'localhost', a full URL."""
    host = host.strip().rstrip("/")
    if "://" not in host:
        host = f"http://{host}"
    scheme, rest = host.split("://", 1)
    if ":" not in rest.split("/", 1)[0]:
        rest = rest.replace("/", ":11434/", 1) if "/" in rest else f"{rest}:11434"
    return f"{scheme}://{rest}"


def request_options(options: ModelOptions) -> dict[str, Any]:
    """The options object sent to Ollama: every pinned key, none of the top-level ones."""
    dumped = options.model_dump(exclude_none=True)
    return {key: value for key, value in dumped.items() if key not in TOP_LEVEL_KEYS}


def chat_body(model: str, options: ModelOptions, messages: list[Any], stream: bool) -> dict[str, Any]:
    """An /api/chat body with a participant's complete options; empty messages only load."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": stream,
        "options": request_options(options),
        "keep_alive": options.keep_alive,
    }
    if options.think is not None:
        body["think"] = options.think
    return body


class _Tag(BaseModel):
    """One entry of /api/tags, as much of it as duologue reads."""

    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    model: str | None = None
    size: int | None = Field(default=None, ge=0)
    modified_at: datetime | None = None

    @field_validator("size", "modified_at", mode="wrap")
    @classmethod
    def _unknown_if_odd(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """A size or time the page cannot read is unknown, not a reason to offer no models."""
        try:
            return handler(value)
        except ValidationError:
            return None


@dataclass(frozen=True)
class Pulled:
    """A model a server has (/api/tags): its size on disk (bytes; its context adds to it once
    loaded) and when it was last pulled or changed there."""

    name: str
    size: int | None = None
    modified_at: datetime | None = None


def pulled_models(host: str, timeout: float = 10.0) -> list[Pulled]:
    """The models a server has, the most recently pulled or changed first (then by name);
    raises OllamaError when it cannot be reached or does not answer like Ollama."""
    tags = get_json(host, "/api/tags", timeout).get("models") or []
    try:
        entries = [_Tag.model_validate(entry) for entry in tags]
    except (ValidationError, TypeError):
        raise OllamaError(
            f"the server at {host} does not answer like Ollama (/api/tags: not a list of models)"
        ) from None
    pulled = [Pulled(str(e.model or e.name), e.size, e.modified_at) for e in entries if e.model or e.name]
    by_name = sorted(pulled, key=lambda m: m.name)
    return sorted(
        by_name, key=lambda m: m.modified_at.timestamp() if m.modified_at else -math.inf, reverse=True
    )


def list_models(host: str, timeout: float = 10.0) -> list[str]:
    """The models a server has (/api/tags); raises OllamaError when it cannot be reached."""
    return sorted(model.name for model in pulled_models(host, timeout))


def server_version(host: str, timeout: float = 10.0) -> str:
    return str(get_json(host, "/api/version", timeout).get("version", "unknown"))


def get_json(host: str, path: str, timeout: float) -> dict[str, Any]:
    return call_json(host, "GET", path, None, timeout)


POOLED_HOSTS = 16
"""Hosts whose keep-alive clients a process keeps; the oldest is closed past this many."""


class ClientPool:
    """One keep-alive httpx client per host and process: a new client (its proxy lookup, its TCP
    connection) cost more than the /api/ps reading a turn makes with it."""

    def __init__(self) -> None:
        self._clients: dict[tuple[int, str], httpx.Client] = {}
        self._lock = threading.Lock()

    def client(self, host: str) -> httpx.Client:
        key = (os.getpid(), host)  # a forked child opens its own connections
        with self._lock:
            client = self._clients.pop(key, None)
            if client is None:
                client = httpx.Client(base_url=host, verify=tls_context())
            self._clients[key] = client  # the newest last
            while len(self._clients) > POOLED_HOSTS:
                self._clients.pop(next(iter(self._clients))).close()
            return client

    def drop(self, host: str) -> None:
        """Forget a host's client (its connection failed); the next request opens a new one."""
        with self._lock:
            client = self._clients.pop((os.getpid(), host), None)
        if client is not None:
            client.close()


POOL = ClientPool()


def call_json(
    host: str, method: str, path: str, body: dict[str, Any] | None, timeout: float
) -> dict[str, Any]:
    """One request to Ollama; faults become an OllamaError with one line to act on.

    A kept-alive connection the server has closed since (a restart) fails at once; the request
    is then sent once more on a new one: every request here may be repeated. Without a proxy
    in the way it goes through http.client (direct.py), else through httpx.
    """
    send = sent_directly if direct.reachable_directly(host) else sent_through_httpx
    for attempt in range(2):
        try:
            status, content = send(host, method, path, body, timeout)
            break
        except direct.TimedOut:
            raise OllamaError(f"Ollama at {host} did not answer {path} within {timeout:.0f}s") from None
        except direct.Unreachable:
            if attempt:
                raise OllamaError(unreachable_message(host)) from None
    try:
        data = json.loads(content)
    except ValueError:
        data = None
    if status >= 400:
        said = data.get("error") if isinstance(data, dict) else None
        if said:
            raise OllamaError(f"Ollama at {host} answered {path}: {said} (HTTP {status})")
        raise OllamaError(f"the server at {host} does not answer like Ollama ({path}: HTTP {status})")
    if not isinstance(data, dict):
        raise OllamaError(f"the server at {host} does not answer like Ollama ({path}: not a JSON object)")
    return data


def sent_directly(
    host: str, method: str, path: str, body: dict[str, Any] | None, timeout: float
) -> tuple[int, bytes]:
    return direct.request(host, method, path, body, timeout, tls_context())


def sent_through_httpx(
    host: str, method: str, path: str, body: dict[str, Any] | None, timeout: float
) -> tuple[int, bytes]:
    """As direct.request, through the host's pooled httpx client (which honours proxies)."""
    try:
        response = POOL.client(host).request(method, path, json=body, timeout=timeout)
    except httpx.TimeoutException:
        POOL.drop(host)
        raise direct.TimedOut(path) from None
    except httpx.TransportError as exc:
        POOL.drop(host)
        raise direct.Unreachable(str(exc)) from None
    return response.status_code, response.content


@dataclass
class ModelFacts:
    """What /api/show says about a model."""

    name: str
    context_length: int | None
    capabilities: list[str] = field(default_factory=list)

    @property
    def thinks(self) -> bool:
        return "thinking" in self.capabilities


def show_model(host: str, model: str, timeout: float = 30.0) -> ModelFacts:
    """The model's trained context length and capabilities (/api/show)."""
    data = call_json(host, "POST", "/api/show", {"model": model}, timeout)
    info = data.get("model_info") or {}
    lengths = [v for k, v in info.items() if k.endswith(".context_length") and isinstance(v, int)]
    return ModelFacts(
        model, lengths[0] if lengths else None, [str(c) for c in data.get("capabilities") or []]
    )


@dataclass
class Resident:
    """One model in memory, as /api/ps reports it."""

    name: str
    size: int
    size_vram: int
    context_length: int | None
    expires_at: str | None = None

    @property
    def gpu_fraction(self) -> float:
        return self.size_vram / self.size if self.size else 1.0

    @property
    def processor(self) -> str:
        """What `ollama ps` prints: '100% GPU', '100% CPU' or '48%/52% CPU/GPU'."""
        return describe_processor(self.size, self.size_vram)


def describe_processor(size: int, size_vram: int) -> str:
    if size_vram >= size:
        return "100% GPU"
    if size_vram <= 0:
        return "100% CPU"
    gpu = round(size_vram / size * 100)
    return f"{100 - gpu}%/{gpu}% CPU/GPU"


def running_models(host: str, timeout: float = 10.0) -> list[Resident]:
    """The models in memory (/api/ps), as Ollama lists them."""
    entries = get_json(host, "/api/ps", timeout).get("models") or []
    return [
        Resident(
            name=str(e.get("model") or e.get("name")),
            size=int(e.get("size") or 0),
            size_vram=int(e.get("size_vram") or 0),
            context_length=e.get("context_length"),
            expires_at=e.get("expires_at"),
        )
        for e in entries
    ]


def shows_gpu(residents: Iterable[Resident]) -> bool:
    """A model sits (partly) in VRAM: the host has a GPU. Until one does, a host's GPU is unknown
    (an idle Ollama reports none, and a CPU-only one never does)."""
    return any(r.size_vram > 0 for r in residents)


def find_resident(residents: Iterable[Resident], model: str) -> Resident | None:
    return next((r for r in residents if same_model(r.name, model)), None)


def load_model(host: str, model: str, options: ModelOptions, timeout: float = LOAD_TIMEOUT_S) -> float:
    """Load a model with a participant's complete options; returns the seconds it took."""
    started = time.perf_counter()
    call_json(host, "POST", "/api/chat", chat_body(model, options, [], stream=False), timeout)
    return time.perf_counter() - started


def embed(host: str, model: str, texts: list[str], timeout: float = LOAD_TIMEOUT_S) -> list[list[float]]:
    """One embedding per text (/api/embed); raises OllamaError on a fault or a malformed answer."""
    data = call_json(host, "POST", "/api/embed", {"model": model, "input": texts}, timeout)
    vectors = data.get("embeddings")
    if not isinstance(vectors, list) or len(vectors) != len(texts):
        raise OllamaError(f"Ollama at {host} answered /api/embed without one embedding per text")
    return [[float(x) for x in vector] for vector in vectors]


def unload_model(host: str, model: str, timeout: float = 60.0) -> None:
    """Ask Ollama to unload a model now (keep_alive 0); it leaves /api/ps a moment later."""
    call_json(host, "POST", "/api/chat", {"model": model, "messages": [], "keep_alive": 0}, timeout)


def wait_unloaded(host: str, models: Iterable[str], timeout_s: float, poll_s: float = 0.25) -> list[str]:
    """Poll /api/ps until none of `models` is listed; returns those still listed at the deadline."""
    wanted = list(models)
    deadline = time.monotonic() + timeout_s
    while True:
        listed = [m for m in wanted if find_resident(running_models(host), m)]
        if not listed or time.monotonic() >= deadline:
            return listed
        time.sleep(poll_s)


def check_models(host: str, models: Iterable[str], timeout: float = 10.0) -> str:
    """Fail early, and clearly, when the server is unreachable or lacks a model.

    Returns the server's version.
    """
    available = list_models(host, timeout)
    for model in models:
        if not any(same_model(name, model) for name in available):
            have = ", ".join(available) or "none"
            raise OllamaError(
                f"the server at {host} has no model '{model}' (it has: {have}); "
                f"pull it with `ollama pull {model}`"
            )
    return server_version(host, timeout)


def unreachable_message(host: str) -> str:
    return (
        f"cannot reach Ollama at {host}; start it with `ollama serve`, point --host or "
        "OLLAMA_HOST at a running server, or add --embedded to use the built-in model"
    )


def describe_failure(exc: BaseException, host: str) -> str | None:
    """One line for a fault while talking to Ollama mid-run, or None if it is not one."""
    if isinstance(exc, ollama.ResponseError):
        status = f" (HTTP {exc.status_code})" if exc.status_code > 0 else ""
        return f"Ollama at {host} answered: {exc.error}{status}"
    if isinstance(exc, httpx.ConnectError | ConnectionError):
        return f"lost the connection to Ollama at {host}"
    if isinstance(exc, httpx.ConnectTimeout):
        return f"Ollama at {host} did not accept a connection within {waited(exc)}; is it up?"
    if isinstance(exc, httpx.TimeoutException):
        return (
            f"Ollama at {host} stopped answering: nothing for {waited(exc)} (--timeout); if the model "
            "is only slow (loading, or reading a long prompt), resume with a longer --timeout SECONDS"
        )
    if isinstance(exc, httpx.HTTPError):
        return f"the connection to Ollama at {host} broke ({exc.__class__.__name__}: {exc})"
    return None


def waited(exc: httpx.TimeoutException) -> str:
    """'300 s': the timeout that fired, as the request carried it (httpx keeps it there)."""
    kind = {httpx.ConnectTimeout: "connect", httpx.WriteTimeout: "write", httpx.PoolTimeout: "pool"}
    try:
        seconds = exc.request.extensions.get("timeout", {}).get(kind.get(type(exc), "read"))
    except RuntimeError:  # an exception raised without its request
        seconds = None
    return f"{seconds:g} s" if isinstance(seconds, int | float) else "too long"
