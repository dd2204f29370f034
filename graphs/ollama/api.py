"""The connector: the only code that talks to Ollama.

Each participant gets a ChatOllama whose complete options dict is built here once
and sent on every call. ChatOllama has no main_gpu, num_batch or use_mmap fields and a
call-time options dict replaces its own, so the dict is always passed whole, by
PinnedChatOllama. The same dict goes with the preloads (load_model), so Ollama never
reloads a model between two of its turns.

A connector may carry a TurnGuard (graphs/ollama/residency.py) that runs before each request
(placing the model) and after it (checking the counts); its findings ride on the final
chunk under FINDINGS_KEY, so they land in the AIMessage's response_metadata.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import itertools
import os
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import httpx
import ollama
from langchain_core.callbacks import dispatch_custom_event
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable
from langchain_ollama import ChatOllama
from pydantic import Field

from graphs.engine.spec import ModelOptions, Participant
from graphs.errors import DuologueError, OllamaError, RunInterrupted
from graphs.run.tracing import EVENT_TURN_FACTS

DEFAULT_HOST = "http://127.0.0.1:11434"
REQUEST_TIMEOUT_S = 600.0
"""A turn on a CPU-bound model can take ten minutes (the reference's took 564 s)."""

LOAD_TIMEOUT_S = 600.0
"""Loading 20 GB from a slow disk takes minutes."""

TOP_LEVEL_KEYS = frozenset({"keep_alive", "think"})

STOP_POLL_S = 0.1
"""How often a request awaiting its first chunk checks whether the run was stopped."""

Part = TypeVar("Part")

FINDINGS_KEY = "duologue"
"""Where a guarded connector puts its findings in the final chunk (and response_metadata)."""


# The ollama client (0.6.x) drops response fields it has no name for, and Ollama's newer
# prompt_eval_cached_count is one; without it the trace cannot tell cached prompt tokens
# from evaluated ones (prompt tokens/s would be overstated on every cached turn).
if ollama.ChatResponse.model_config.get("extra") != "allow":
    ollama.ChatResponse.model_config["extra"] = "allow"
    ollama.ChatResponse.model_rebuild(force=True)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every client: httpx loads the CA bundle (~25 ms) per client otherwise."""
    return httpx.create_ssl_context()


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


class TurnGuard(Protocol):
    """Runs around each request of one participant; raising a DuologueError stops the turn.

    An error with a `facts` dict attribute has those facts recorded on the turn's trace.
    """

    def before(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        """Place the model (load, unload others, check residency); returns findings."""
        ...

    def after(
        self, messages: list[dict[str, str]], final: Mapping[str, Any], thinking: str
    ) -> dict[str, Any]:
        """Check the finished request from its final chunk; returns findings."""
        ...


class PinnedChatOllama(ChatOllama):
    """ChatOllama that sends one participant's complete options dict on every request."""

    pinned_options: dict[str, Any] = Field(default_factory=dict)
    guard: Any = Field(default=None, exclude=True)
    """A TurnGuard, or None."""
    stop_event: Any = Field(default=None, exclude=True)
    """A threading.Event, or None: once set, the request in progress ends (see until_stopped)."""

    def _chat_params(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        kwargs["options"] = dict(self.pinned_options)
        return super()._chat_params(messages, stop, **kwargs)

    def _create_chat_stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[Mapping[str, Any] | str]:
        parts = self._guarded_chat_stream(messages, stop, **kwargs)
        if self.stop_event is None:
            yield from parts
        else:
            yield from until_stopped(parts, self.stop_event)

    def _guarded_chat_stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> Generator[Mapping[str, Any] | str, None, None]:
        guard: TurnGuard | None = self.guard
        if guard is None:
            yield from super()._create_chat_stream(messages, stop, **kwargs)
            return
        sent = self._plain_messages(messages)
        facts = guarded(lambda: guard.before(sent), {})
        thinking: list[str] = []
        for part in super()._create_chat_stream(messages, stop, **kwargs):
            final = self._watch(part, thinking)
            if final is None:
                yield part
                continue
            facts |= guarded(lambda: guard.after(sent, final, "".join(thinking)), facts)  # noqa: B023
            yield final | {FINDINGS_KEY: facts}

    async def _acreate_chat_stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[Mapping[str, Any] | str]:
        guard: TurnGuard | None = self.guard
        if guard is None:
            async for part in super()._acreate_chat_stream(messages, stop, **kwargs):
                yield part
            return
        sent = self._plain_messages(messages)
        facts = await asyncio.to_thread(guarded, lambda: guard.before(sent), {})
        thinking: list[str] = []
        async for part in super()._acreate_chat_stream(messages, stop, **kwargs):
            final = self._watch(part, thinking)
            if final is None:
                yield part
                continue
            after = guarded(lambda: guard.after(sent, final, "".join(thinking)), facts)  # noqa: B023
            yield final | {FINDINGS_KEY: facts | after}

    def _plain_messages(self, messages: list[BaseMessage]) -> list[dict[str, str]]:
        return [
            {"role": str(m.get("role", "")), "content": str(m.get("content") or "")}
            for m in self._convert_messages_to_ollama_messages(messages)
        ]

    @staticmethod
    def _watch(part: Mapping[str, Any] | str, thinking: list[str]) -> dict[str, Any] | None:
        """Collects the streamed thinking; returns the final chunk as a dict, else None."""
        if isinstance(part, str):
            return None
        message = part.get("message")
        piece = message.get("thinking") if message is not None else None
        if piece:
            thinking.append(str(piece))
        return dict(part) if part.get("done") is True else None


def until_stopped(parts: Generator[Part, None, None], stop: threading.Event) -> Iterator[Part]:
    """`parts` until `stop` is set: the request then ends at its next chunk, not its last.

    Before its first chunk a model may be loading or reading a long prompt, minutes on a
    CPU, and no chunk arrives to stop at. So the first part is fetched in a helper thread
    (with the caller's context, so the guard's findings still reach the trace), and a stop
    meanwhile abandons the request; it is closed when that part arrives, which tells the
    server to stop generating.
    """
    lock = threading.Lock()
    arrived = threading.Event()
    first: list[tuple[bool, Any]] = []
    abandoned = False

    def fetch_first() -> None:
        try:
            first.append((True, next(parts)))
        except StopIteration:
            first.append((False, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            first.append((False, exc))
        with lock:
            arrived.set()
            late = abandoned
        if late:
            with suppress(Exception):
                parts.close()

    context = contextvars.copy_context()
    fetcher = threading.Thread(target=context.run, args=(fetch_first,), name="duologue-first-chunk")
    fetcher.daemon = True
    fetcher.start()
    while not arrived.wait(STOP_POLL_S):
        if stop.is_set():
            with lock:
                if not arrived.is_set():
                    abandoned = True
                    raise RunInterrupted("stopped while the model had not sent its first token")
    got, value = first[0]
    if not got:
        if value is not None:
            raise value
        return
    try:
        for part in itertools.chain([value], parts):
            if stop.is_set():
                raise RunInterrupted("stopped before the model finished its turn")
            yield part
    finally:
        parts.close()  # a stopped request is closed now, so the server stops generating


def guarded(step: Callable[[], dict[str, Any]], known: dict[str, Any]) -> dict[str, Any]:
    """Run a guard step; when it stops the turn, record what it found before raising."""
    try:
        return step()
    except DuologueError as exc:
        facts = getattr(exc, "facts", None)
        if facts:
            report_facts(known | facts)
        raise


def report_facts(facts: dict[str, Any]) -> None:
    """Hand findings to the run's tracer as a custom event; a no-op outside a traced run."""
    with suppress(RuntimeError):  # no parent run: the model was called outside a graph
        dispatch_custom_event(EVENT_TURN_FACTS, facts)


def chat_model(
    participant: Participant,
    host: str,
    timeout: float = REQUEST_TIMEOUT_S,
    guard: TurnGuard | None = None,
    stop: threading.Event | None = None,
) -> Runnable:
    """A ChatOllama for one participant, pinned to its complete options; setting `stop` ends
    the request in progress (see until_stopped)."""
    options = participant.options
    return PinnedChatOllama(
        model=participant.model,
        base_url=host,
        reasoning=options.think,
        keep_alive=options.keep_alive,
        client_kwargs={"timeout": timeout, "verify": tls_context()},
        pinned_options=request_options(options),
        guard=guard,
        stop_event=stop,
    )


def close_chat_model(model: Runnable) -> None:
    """Close the HTTP client ChatOllama opened, so nothing is left dangling."""
    bound = getattr(model, "bound", model)
    client = getattr(bound, "_client", None)
    inner = getattr(client, "_client", None)
    if isinstance(inner, httpx.Client):
        inner.close()


def list_models(host: str, timeout: float = 10.0) -> list[str]:
    """The models a server has (/api/tags); raises OllamaError when it cannot be reached."""
    tags = get_json(host, "/api/tags", timeout).get("models", [])
    return sorted(str(entry.get("model") or entry.get("name")) for entry in tags)


def server_version(host: str, timeout: float = 10.0) -> str:
    return str(get_json(host, "/api/version", timeout).get("version", "unknown"))


def get_json(host: str, path: str, timeout: float) -> dict[str, Any]:
    return call_json(host, "GET", path, None, timeout)


def call_json(
    host: str, method: str, path: str, body: dict[str, Any] | None, timeout: float
) -> dict[str, Any]:
    """One request to Ollama; faults become an OllamaError with one line to act on."""
    with httpx.Client(base_url=host, timeout=timeout, verify=tls_context()) as client:
        try:
            response = client.request(method, path, json=body)
        except httpx.TimeoutException:
            raise OllamaError(f"Ollama at {host} did not answer {path} within {timeout:.0f}s") from None
        except httpx.TransportError:
            raise OllamaError(unreachable_message(host)) from None
        try:
            data = response.json()
        except ValueError:
            data = None
        if response.status_code >= 400:
            said = data.get("error") if isinstance(data, dict) else None
            if said:
                raise OllamaError(f"Ollama at {host} answered {path}: {said} (HTTP {response.status_code})")
            raise OllamaError(
                f"the server at {host} does not answer like Ollama ({path}: HTTP {response.status_code})"
            )
        if not isinstance(data, dict):
            raise OllamaError(f"the server at {host} does not answer like Ollama ({path}: not a JSON object)")
        return data


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


def same_model(a: str, b: str) -> bool:
    """Ollama treats 'name' and 'name:latest' as one model."""
    return (a if ":" in a else f"{a}:latest") == (b if ":" in b else f"{b}:latest")


def find_resident(residents: Iterable[Resident], model: str) -> Resident | None:
    return next((r for r in residents if same_model(r.name, model)), None)


def load_body(model: str, options: ModelOptions) -> dict[str, Any]:
    """The empty-messages /api/chat that loads a model exactly as the turns will use it."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [],
        "stream": False,
        "options": request_options(options),
        "keep_alive": options.keep_alive,
    }
    if options.think is not None:
        body["think"] = options.think
    return body


def load_model(host: str, model: str, options: ModelOptions, timeout: float = LOAD_TIMEOUT_S) -> float:
    """Load a model with a participant's complete options; returns the seconds it took."""
    started = time.perf_counter()
    call_json(host, "POST", "/api/chat", load_body(model, options), timeout)
    return time.perf_counter() - started


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
        if not has_model(available, model):
            have = ", ".join(available) or "none"
            raise OllamaError(
                f"the server at {host} has no model '{model}' (it has: {have}); "
                f"pull it with `ollama pull {model}`"
            )
    return server_version(host, timeout)


def has_model(available: list[str], model: str) -> bool:
    """Ollama treats 'name' and 'name:latest' as the same model."""
    wanted = model if ":" in model else f"{model}:latest"
    return any(name in (model, wanted) for name in available)


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
    if isinstance(exc, httpx.TimeoutException):
        return f"Ollama at {host} did not answer in time ({exc.__class__.__name__})"
    if isinstance(exc, httpx.HTTPError):
        return f"the connection to Ollama at {host} broke ({exc.__class__.__name__}: {exc})"
    return None
