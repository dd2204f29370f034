"""A scripted Ollama for tests: canned replies, countable tokens and an emulated GPU.

FakeBackend answers /api/chat through the real protocol server (graphs.embedded.protocol), and
its memory bookkeeping imitates Ollama's scheduler, so residency trouble (a model spilling to
the CPU, evictions, reloads on an option change, silent truncation) shows up in tests as it
would on a real card. Nothing sleeps unless token_delay_s asks for it; durations are computed.

    with fake_ollama([FakeModel("qwen3:8b", thinks=True), "gemma3:12b"]) as (server, backend):
        ollama.Client(host=server.url).chat(...)
        backend.events        # [("load", "qwen3:8b"), ("evict", ...), ...]
        backend.chat_requests # every ChatRequest received, in order

Token counting: a token is a whitespace-separated word; each message costs 4 more tokens (its
chat template). eval_count counts the reply's words plus the thinking's when thinking is on.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from graphs.embedded.backend import (
    BackendFailure,
    ChatDelta,
    ChatDone,
    ChatRequest,
    DropConnection,
    Embedded,
    LoadedModel,
    ModelEntry,
    find_model,
    hashed_embedding,
    keep_alive_seconds,
)
from graphs.embedded.protocol import OllamaServer

LAYERS = 48  # every fake model has this many layers; num_gpu offloads a share of them
MESSAGE_OVERHEAD_TOKENS = 4
FAIL_AFTER_TOKENS = 3  # a failing call streams this many tokens first (fewer if that's all)
# Options whose change makes Ollama reload the model, with Ollama's defaults (num_ctx aside).
RELOAD_DEFAULTS: dict[str, Any] = {
    "num_batch": 512,
    "num_gpu": -1,
    "main_gpu": 0,
    "use_mmap": None,
    "num_thread": 0,
}
LOAD_BASE_NS = 50_000_000
LOAD_BYTES_PER_S = 2e9
PREFILL_SPEEDUP = 10  # prompt tokens are evaluated this many times faster than decoded
REQUEST_OVERHEAD_NS = 1_000_000
DEFAULT_KEEP_ALIVE_S = 300.0


@dataclass
class FakeModel:
    """A model the fake serves; its family is the part of the name before ':'."""

    name: str
    weights_bytes: int = 100_000_000  # size without the KV cache
    kv_bytes_per_token: int = 0  # the KV cache grows with num_ctx
    context_length: int = 32768  # trained context (/api/show); num_ctx is capped to it
    thinks: bool = False  # has the "thinking" capability; thinks unless think is False
    gpu_tok_s: float = 90.0
    cpu_tok_s: float = 9.0
    modified_at: str = "2026-01-01T00:00:00Z"  # when it was pulled (/api/tags)
    # Replies in order (cycled), or a function of (request, n); n counts this model's calls
    # from 1. None: a deterministic text naming the model and n.
    replies: list[str] | Callable[[ChatRequest, int], str] | None = None

    def size(self, num_ctx: int) -> int:
        return self.weights_bytes + self.kv_bytes_per_token * num_ctx


@dataclass
class _Resident:
    model: FakeModel
    size: int
    size_vram: int
    settings: dict[str, Any]
    expires_at: str


def message_tokens(message: dict[str, Any]) -> int:
    """What one message costs in the prompt: its words plus the template's overhead."""
    return MESSAGE_OVERHEAD_TOKENS + len(str(message.get("content") or "").split())


class FakeBackend:
    """A Backend with scripted replies over an emulated GPU of vram_bytes.

    Scheduling, as Ollama does it: a model that fits in free VRAM loads fully on the GPU; one
    that doesn't spills to the CPU if nothing else is loaded, else the least recently used
    models are evicted until it fits. For unload_lag_loads loads after an unload or eviction
    the freed memory still reads as used, so such a load spills or runs on the CPU entirely.
    unload_lag_s does the same by time, as on a real card: memory freed less than that many
    seconds ago still reads as used. unload_delay_s keeps a model asked to unload (keep_alive 0)
    resident, and listed by /api/ps, for that long, as Ollama's runner takes a moment to exit.
    A change of num_ctx, num_batch, num_gpu, main_gpu, use_mmap or num_thread reloads.

    fail_on_call=k makes the k-th chat call (from 1) fail after a few tokens: fail_mode "error"
    sends Ollama's final {"error": ...} line, "drop" cuts the connection.

    hold_first_token=(k, gate) keeps the k-th chat call from sending anything until the test
    sets gate, as a model that is loading or reading a long prompt would. stall=(k, n, gate) has
    the k-th chat call send n pieces, then nothing until the test sets gate, as a hung server would.

    strict_num_gpu refuses, as Ollama's new engine does, a load whose explicit num_gpu puts more
    of the model on the GPU than its memory holds once every other model is evicted ("memory
    layout cannot be allocated", HTTP 500); by default such a load spills to the CPU instead.

    Records: chat_requests (every ChatRequest), load_requests (model, options, keep_alive) of
    every empty-messages load, and events, pairs of (kind, model) with kind in load, reload,
    evict, unload, cancel (the client left or stopped reading), fail.
    """

    version = "0.15.6"

    def __init__(
        self,
        models: list[FakeModel | str],
        vram_bytes: int = 24 * 2**30,
        default_num_ctx: int = 4096,
        unload_lag_loads: int = 0,
        fail_on_call: int | None = None,
        fail_mode: Literal["error", "drop"] = "error",
        token_delay_s: float = 0.0,
        unload_lag_s: float = 0.0,
        unload_delay_s: float = 0.0,
        hold_first_token: tuple[int, threading.Event] | None = None,
        stall: tuple[int, int, threading.Event] | None = None,
        strict_num_gpu: bool = False,
    ) -> None:
        self._models = [m if isinstance(m, FakeModel) else FakeModel(m) for m in models]
        self.vram_bytes = vram_bytes
        self.default_num_ctx = default_num_ctx
        self.unload_lag_loads = unload_lag_loads
        self.fail_on_call = fail_on_call
        self.fail_mode = fail_mode
        self.token_delay_s = token_delay_s
        self.unload_lag_s = unload_lag_s
        self.unload_delay_s = unload_delay_s
        self.hold_first_token = hold_first_token
        self.stall = stall
        self.strict_num_gpu = strict_num_gpu
        self.chat_requests: list[ChatRequest] = []
        self.embed_requests: list[tuple[str, list[str]]] = []
        self.load_requests: list[tuple[str, dict[str, Any], Any]] = []
        self.events: list[tuple[str, str]] = []
        self._resident: dict[str, _Resident] = {}  # least recently used first
        self._stale_bytes = 0  # freed, but not yet seen as free
        self._lag_left = 0
        self._stale_until: list[tuple[float, int]] = []  # (monotonic deadline, bytes) for unload_lag_s
        self._leaving: dict[str, float] = {}  # model -> when its delayed unload takes effect
        self._calls_per_model: Counter[str] = Counter()
        self._lock = threading.Lock()

    def models(self) -> list[ModelEntry]:
        return [
            ModelEntry(
                name=m.name,
                size=m.weights_bytes,
                digest=hashlib.sha256(m.name.encode()).hexdigest(),
                family=m.name.split(":")[0],
                parameter_size=f"{m.weights_bytes / 0.6e9:.1f}B",
                quantization_level="Q4_K_M",
                context_length=m.context_length,
                capabilities=["completion", "thinking"] if m.thinks else ["completion"],
                modified_at=m.modified_at,
            )
            for m in self._models
        ]

    def loaded(self) -> list[LoadedModel]:
        """Most recently used first."""
        with self._lock:
            self._finish_unloads()
            return [
                LoadedModel(
                    name=name,
                    size=r.size,
                    size_vram=r.size_vram,
                    context_length=r.settings["num_ctx"],
                    expires_at=r.expires_at,
                )
                for name, r in reversed(self._resident.items())
            ]

    def load(self, model: str, options: dict[str, Any], keep_alive: Any) -> int:
        self.load_requests.append((model, dict(options), keep_alive))
        with self._lock:
            return self._ensure_loaded(self._model(model), options, keep_alive)

    def unload(self, model: str) -> None:
        name = self._model(model).name
        with self._lock:
            if name not in self._resident:
                return
            if self.unload_delay_s:
                self._leaving.setdefault(name, time.monotonic() + self.unload_delay_s)
            else:
                self._release(name, "unload")

    def embed(self, model: str, inputs: list[str]) -> Embedded:
        """Bag-of-words vectors: texts that share words are similar, as a real embedding would say."""
        self._model(model)
        self.embed_requests.append((model, list(inputs)))
        return Embedded([hashed_embedding(text) for text in inputs], sum(len(t.split()) for t in inputs))

    def _finish_unloads(self) -> None:
        """Complete the delayed unloads whose time has come."""
        now = time.monotonic()
        for name, when in list(self._leaving.items()):
            if when <= now:
                del self._leaving[name]
                if name in self._resident:
                    self._release(name, "unload")

    def chat(self, request: ChatRequest, cancelled: Callable[[], bool]) -> Iterator[ChatDelta | ChatDone]:
        self.chat_requests.append(request)
        call = len(self.chat_requests)
        model = self._model(request.model)
        self._calls_per_model[model.name] += 1
        with self._lock:
            load_ns = self._ensure_loaded(model, request.options, request.keep_alive)
            resident = self._resident[model.name]
        num_ctx = resident.settings["num_ctx"]
        prompt_tokens = sum(message_tokens(m) for m in _truncate(request.messages, num_ctx))
        thinking = _thinking(request) if model.thinks and request.think is not False else ""
        reply = self._reply(model, request, self._calls_per_model[model.name])
        pieces = [("thinking", w) for w in _words(thinking)] + [("content", w) for w in _words(reply)]
        done_reason = "stop"
        limit = request.options.get("num_predict")
        if isinstance(limit, int) and 0 < limit < len(pieces):
            pieces, done_reason = pieces[:limit], "length"

        script: list[tuple[str, str] | None] = list(pieces)
        if call == self.fail_on_call:
            script = script[:FAIL_AFTER_TOKENS] + [None]  # None: the fault strikes here
        outcome = "cancel"
        try:
            if self.hold_first_token and self.hold_first_token[0] == call:
                self.hold_first_token[1].wait()
            for sent, item in enumerate(script):
                if self.stall and self.stall[:2] == (call, sent):
                    self.stall[2].wait()
                if cancelled():
                    return
                if item is None:
                    outcome = "fail"
                    if self.fail_mode == "drop":
                        raise DropConnection()
                    raise BackendFailure(f"fake failure on chat call {call}")
                kind, piece = item
                yield ChatDelta(**{kind: piece})
                if self.token_delay_s:
                    time.sleep(self.token_delay_s)
            outcome = "done"
        finally:
            if outcome != "done":
                self.events.append((outcome, model.name))
            if keep_alive_seconds(request.keep_alive) == 0:
                self.unload(model.name)

        gpu_share = resident.size_vram / resident.size if resident.size else 1.0
        s_per_token = gpu_share / model.gpu_tok_s + (1 - gpu_share) / model.cpu_tok_s
        prompt_ns = round(prompt_tokens * s_per_token / PREFILL_SPEEDUP * 1e9)
        eval_ns = round(len(pieces) * s_per_token * 1e9)
        yield ChatDone(
            done_reason=done_reason,
            total_duration=load_ns + prompt_ns + eval_ns + REQUEST_OVERHEAD_NS,
            load_duration=load_ns,
            prompt_eval_count=prompt_tokens,
            prompt_eval_duration=prompt_ns,
            eval_count=len(pieces),
            eval_duration=eval_ns,
        )

    def _model(self, name: str) -> FakeModel:
        entry = find_model(self.models(), name)
        return next(m for m in self._models if m.name == entry.name)

    def _reply(self, model: FakeModel, request: ChatRequest, n: int) -> str:
        if callable(model.replies):
            return model.replies(request, n)
        if model.replies:
            return model.replies[(n - 1) % len(model.replies)]
        return (
            f"This is {model.name}, reply {n}. I have read what you wrote and I agree with "
            "some of it, though the argument needs one more step before it holds."
        )

    def _ensure_loaded(self, model: FakeModel, options: dict[str, Any], keep_alive: Any) -> int:
        """Make the model resident as the request's options want it; returns the load time."""
        settings = {key: options.get(key, default) for key, default in RELOAD_DEFAULTS.items()}
        settings["num_ctx"] = min(int(options.get("num_ctx") or self.default_num_ctx), model.context_length)
        expires_at = _expires_at(keep_alive)
        self._finish_unloads()
        if self._leaving.pop(model.name, None) is not None:
            self._release(model.name, "unload")  # a request for a model on its way out reloads it
        resident = self._resident.pop(model.name, None)
        if resident and resident.settings == settings:
            resident.expires_at = expires_at
            self._resident[model.name] = resident  # now the most recently used
            return 0

        size = model.size(settings["num_ctx"])
        num_gpu = settings["num_gpu"]
        gpu_layers = LAYERS if num_gpu is None or num_gpu < 0 else min(num_gpu, LAYERS)
        wanted = size * gpu_layers // LAYERS
        while wanted > self._free_vram() and self._resident:
            self._release(next(iter(self._resident)), "evict")
        if self.strict_num_gpu and num_gpu is not None and num_gpu >= 0 and wanted > self._free_vram():
            self.events.append(("fail", model.name))
            raise BackendFailure(f"memory layout cannot be allocated with num_gpu = {num_gpu}")
        now = time.monotonic()
        self._stale_until = [(until, freed) for until, freed in self._stale_until if until > now]
        seen_free = self._free_vram() - (self._stale_bytes if self._lag_left else 0)
        seen_free -= sum(freed for _, freed in self._stale_until)
        if self._lag_left:
            self._lag_left -= 1
            if not self._lag_left:
                self._stale_bytes = 0
        size_vram = max(0, min(wanted, seen_free))
        self._resident[model.name] = _Resident(model, size, size_vram, settings, expires_at)
        self.events.append(("reload" if resident else "load", model.name))
        return LOAD_BASE_NS + round(size / LOAD_BYTES_PER_S * 1e9)

    def _free_vram(self) -> int:
        return self.vram_bytes - sum(r.size_vram for r in self._resident.values())

    def _release(self, name: str, event: str) -> None:
        freed = self._resident.pop(name)
        self._leaving.pop(name, None)
        self.events.append((event, name))
        if self.unload_lag_loads:
            self._stale_bytes += freed.size_vram
            self._lag_left = self.unload_lag_loads
        if self.unload_lag_s and freed.size_vram:
            self._stale_until.append((time.monotonic() + self.unload_lag_s, freed.size_vram))


@contextmanager
def fake_ollama(
    models: list[FakeModel | str], **backend_kwargs: Any
) -> Iterator[tuple[OllamaServer, FakeBackend]]:
    """A FakeBackend served on 127.0.0.1 at a free port, stopped on exit."""
    backend = FakeBackend(models, **backend_kwargs)
    with OllamaServer(backend) as server:
        yield server, backend


def _truncate(messages: list[dict[str, Any]], num_ctx: int) -> list[dict[str, Any]]:
    """Ollama's truncation: drop the oldest non-system messages, never the last, until it fits."""
    kept = list(messages)
    while sum(message_tokens(m) for m in kept) > num_ctx:
        oldest = next((i for i, m in enumerate(kept[:-1]) if m.get("role") != "system"), None)
        if oldest is None:
            break
        del kept[oldest]
    return kept


def _thinking(request: ChatRequest) -> str:
    last = str(request.messages[-1].get("content") or "")
    return f"Let me think about {' '.join(last.split()[:8]) or 'this'}."


def _words(text: str) -> list[str]:
    """One token per word, each keeping its trailing space so the pieces join back exactly."""
    return re.findall(r"\S+\s*", text)


def _expires_at(keep_alive: Any) -> str:
    seconds = keep_alive_seconds(keep_alive)
    if seconds is None:
        seconds = DEFAULT_KEEP_ALIVE_S
    delta = timedelta(days=292 * 365) if math.isinf(seconds) else timedelta(seconds=seconds)
    return (datetime.now(UTC) + delta).isoformat()


def record_final_chunks(backend: Any) -> tuple[list[ChatDone], Callable[..., Iterator[ChatDelta | ChatDone]]]:
    """A chat() for `backend` that keeps every ChatDone it yields, and that list.

    Install it with monkeypatch.setattr(backend, "chat", chat): tests compare what the
    server reported (including answers no client received) with what duologue recorded.
    """
    reported: list[ChatDone] = []
    chat = backend.chat

    def recording_chat(request: ChatRequest, cancelled: Callable[[], bool]) -> Iterator[ChatDelta | ChatDone]:
        for item in chat(request, cancelled):
            if isinstance(item, ChatDone):
                reported.append(item)
            yield item

    return reported, recording_chat
