"""The chat connector: one participant's ChatOllama, pinned to its complete options.

ChatOllama has no main_gpu, num_batch or use_mmap fields and a call-time options dict
replaces its own, so PinnedChatOllama sends the request body that api.chat_body builds,
the same one the preloads send: Ollama never reloads a model between two of its turns.

A connector may carry a TurnGuard (residency.py) that runs before each request (placing
the model) and after it (checking the counts); its findings ride on the final chunk under
FINDINGS_KEY, so they land in the AIMessage's response_metadata.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping, Sequence
from contextlib import suppress
from typing import Any, Protocol, TypeVar

import httpx
import ollama
from langchain_core.callbacks import dispatch_custom_event
from langchain_core.messages import BaseMessage
from langchain_core.runnables import Runnable
from langchain_ollama import ChatOllama
from pydantic import Field

from graphs.engine.spec import ModelOptions, Participant
from graphs.engine.state import NUMBERS_KEY, TurnNumbers
from graphs.errors import DuologueError, RunInterrupted
from graphs.ollama.api import TIMEOUT_S, chat_body, client_timeout, tls_context
from graphs.ollama.timings import turn_numbers
from graphs.records.schema import TraceRecord

STOP_POLL_S = 0.1
"""How often a request awaiting its first chunk checks whether the run was stopped."""

Part = TypeVar("Part")

FINDINGS_KEY = "duologue"
"""Where a guarded connector puts its findings in the final chunk (and response_metadata)."""

EVENT_TURN_FACTS = "duologue.turn_facts"
"""Custom event payload: TraceRecord fields a guard measured before it stopped the turn."""

EVENT_PLACED = "duologue.placed"
"""Custom event payload: what the guard found placing the model, before the request is sent."""


# The ollama client (0.6.x) drops response fields it has no name for, and Ollama's newer
# prompt_eval_cached_count is one; without it the trace cannot tell cached prompt tokens
# from evaluated ones (prompt tokens/s would be overstated on every cached turn).
if ollama.ChatResponse.model_config.get("extra") != "allow":
    ollama.ChatResponse.model_config["extra"] = "allow"
    ollama.ChatResponse.model_rebuild(force=True)


class TurnGuard(Protocol):
    """Runs around each request of one participant; raising a DuologueError stops the turn.

    An error with a `facts` dict attribute has those facts recorded on the turn's trace.
    """

    def before(self, messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Place the model (load, unload others, check residency); returns findings."""
        ...

    def after(
        self, messages: Sequence[Mapping[str, Any]], final: Mapping[str, Any], thinking: str
    ) -> dict[str, Any]:
        """Check the finished request from its final chunk; returns findings."""
        ...


class PinnedChatOllama(ChatOllama):
    """ChatOllama that sends one participant's complete options dict on every request."""

    pinned: ModelOptions = Field(default_factory=ModelOptions)
    """The participant's complete options, sent whole on every request."""
    guard: Any = Field(default=None, exclude=True)
    """A TurnGuard, or None."""
    stop_event: Any = Field(default=None, exclude=True)
    """A threading.Event, or None: once set, the request in progress ends (see until_stopped)."""

    def _chat_params(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        params = super()._chat_params(messages, stop, **kwargs)
        return params | chat_body(self.model, self.pinned, params["messages"], params["stream"])

    def _create_chat_stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[Mapping[str, Any] | str]:
        started = time.perf_counter()
        parts = self._guarded_chat_stream(messages, stop, **kwargs)
        if self.stop_event is None:
            yield from with_numbers(parts, started)
        else:
            yield from with_numbers(until_stopped(parts, self.stop_event), started)

    def _guarded_chat_stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> Generator[Mapping[str, Any] | str, None, None]:
        """The request's parts, its guard run before it is sent. Its body is built here, in the
        turn's thread; the guard and the request are left to the generator, whose first part
        until_stopped fetches in a helper thread. The prompt's copies then come and go in one
        thread, and memory grows less a turn (the bench's `rss_growth_kb_per_turn`)."""
        guard: TurnGuard | None = self.guard
        if guard is None or self._client is None:
            return self._unguarded_chat_stream(messages, stop, **kwargs)
        params = self._chat_params(messages, stop, **kwargs)  # the dialogue converted once, not twice
        # A streamed chat builds its body now and sends it when first read, after the guard.
        replies = self._client.chat(**params) if params["stream"] else None
        return self._after_guard(guard, params, replies)

    def _unguarded_chat_stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> Generator[Mapping[str, Any] | str, None, None]:
        yield from super()._create_chat_stream(messages, stop, **kwargs)

    def _after_guard(
        self, guard: TurnGuard, params: dict[str, Any], replies: Iterator[Any] | None
    ) -> Generator[Mapping[str, Any] | str, None, None]:
        sent = params["messages"]  # read, not copied: late in a long dialogue a copy is a whole prompt
        facts = guarded(lambda: guard.before(sent), {})
        report_facts(facts, EVENT_PLACED)
        thinking: list[str] = []
        assert self._client is not None
        for part in replies if replies is not None else [self._client.chat(**params)]:
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
        sent = self._chat_params(messages, stop, **kwargs)["messages"]
        facts = await asyncio.to_thread(guarded, lambda: guard.before(sent), {})
        thinking: list[str] = []
        async for part in super()._acreate_chat_stream(messages, stop, **kwargs):
            final = self._watch(part, thinking)
            if final is None:
                yield part
                continue
            after = guarded(lambda: guard.after(sent, final, "".join(thinking)), facts)  # noqa: B023
            yield final | {FINDINGS_KEY: facts | after}

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


def with_numbers(parts: Iterator[Part], started: float) -> Iterator[Part | dict[str, Any]]:
    """`parts`, the final one carrying the turn's TurnNumbers under NUMBERS_KEY, so the turn
    takes them into the graph's state whoever hosts the graph."""
    first: float | None = None
    for part in parts:
        if isinstance(part, str):
            yield part
            continue
        message = part.get("message")  # type: ignore[attr-defined]
        if first is None and message is not None and (message.get("content") or message.get("thinking")):
            first = time.perf_counter()
        if part.get("done") is not True:  # type: ignore[attr-defined]
            yield part
            continue
        final = dict(part)  # type: ignore[call-overload]
        yield final | {NUMBERS_KEY: numbers_of(final, round(first - started, 6) if first else None)}


def numbers_of(final: Mapping[str, Any], ttft_s: float | None) -> TurnNumbers:
    """A turn's numbers from its final chunk and its guard's findings, by the trace's rules
    (timings.turn_numbers for the rates, TraceRecord.flags for the flags)."""
    found = final.get(FINDINGS_KEY) or {}
    row = TraceRecord.model_construct(
        **(turn_numbers(final) | {"done_reason": final.get("done_reason")} | found)
    )
    return TurnNumbers(
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        tokens_per_s=row.tokens_per_s,
        prompt_tokens_per_s=row.prompt_tokens_per_s,
        ttft_s=ttft_s,
        load_s=row.load_s,
        gpu_fraction=row.gpu_fraction,
        flags=row.flags,
    )


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
    HELPERS.run(lambda: context.run(fetch_first))
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


class Helpers:
    """Daemon threads for until_stopped's first parts, kept between requests: starting a thread
    for every turn cost more than the rest of the wait. A helper still waiting on an abandoned
    request is busy, so the next request gets another; a forked child starts its own."""

    def __init__(self) -> None:
        self._idle: list[queue.SimpleQueue[Callable[[], None]]] = []
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def run(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._pid != os.getpid():  # the parent's threads are not in this process
                self._idle, self._pid = [], os.getpid()
            jobs = self._idle.pop() if self._idle else None
        if jobs is None:
            jobs = queue.SimpleQueue()
            name = "duologue-first-chunk"
            threading.Thread(target=self._serve, args=(jobs,), name=name, daemon=True).start()
        jobs.put(job)

    def _serve(self, jobs: queue.SimpleQueue[Callable[[], None]]) -> None:
        while True:
            jobs.get()()
            with self._lock:
                self._idle.append(jobs)


HELPERS = Helpers()


def guarded(step: Callable[[], dict[str, Any]], known: dict[str, Any]) -> dict[str, Any]:
    """Run a guard step; when it stops the turn, record what it found before raising."""
    try:
        return step()
    except DuologueError as exc:
        facts = getattr(exc, "facts", None)
        if facts:
            report_facts(known | facts)
        raise


def report_facts(facts: dict[str, Any], event: str = EVENT_TURN_FACTS) -> None:
    """Hand findings to the run's tracer as a custom event; a no-op outside a traced run."""
    with suppress(RuntimeError):  # no parent run: the model was called outside a graph
        dispatch_custom_event(event, facts)


def chat_model(
    participant: Participant,
    host: str,
    timeout: float = TIMEOUT_S,
    guard: TurnGuard | None = None,
    stop: threading.Event | None = None,
) -> Runnable:
    """A ChatOllama for one participant, pinned to its complete options; setting `stop` ends
    the request in progress (see until_stopped). A request gives up once the server has sent
    nothing for `timeout` seconds, before its first token or between two chunks."""
    options = participant.options
    return PinnedChatOllama(
        model=participant.model,
        base_url=host,
        reasoning=options.think,
        keep_alive=options.keep_alive,
        client_kwargs={"timeout": client_timeout(timeout), "verify": tls_context()},
        pinned=options,
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
