"""An Ollama whose models answer at once with short fixed replies: the benchmark's stand-in.

`duologue bench` (graphs/commands/bench.py) drives the same dialogue through the engine and through
a bare `ollama` client loop against this server, so that what is left between the two is
the framework's own cost. The replies are short fixed texts streamed word by word; the
final chunk carries every metric Ollama sends, with counts computed from the prompt and
durations at nominal rates (nothing sleeps). The models report themselves fully in VRAM,
as on a GPU box, so the engine's residency checks run as they would against Ollama.

A reply depends only on the request (not on how many came before), so two clients that
send the same histories get the same answers. A per-model prompt cache is emulated at
message granularity, so prompt_eval_cached_count behaves like Ollama's.

    python -m graphs.embedded.instant [--port N]   # prints the URL, serves until stdin closes
"""

from __future__ import annotations

import argparse
import hashlib
import math
import re
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from graphs.embedded.backend import (
    ChatDelta,
    ChatDone,
    ChatRequest,
    Embedded,
    LoadedModel,
    ModelEntry,
    find_model,
    hashed_embedding,
    keep_alive_seconds,
)
from graphs.embedded.protocol import OllamaServer

INSTANT_MODELS = ("instant-a:1b", "instant-b:1b")
REPLIES = (
    "I see it differently: the premise holds, but only in the short run.",
    "Fair point, though the evidence you cite cuts both ways, I think.",
    "Agreed on the first half; the second half needs one more step.",
    "That is the crux. What would change your mind about it?",
    "Perhaps, yet the cost of being wrong is not the same on both sides.",
)
MODEL_BYTES = 1_000_000_000
TRAINED_CONTEXT = 32768
MESSAGE_OVERHEAD_TOKENS = 4
"""A message's chat-template tokens, on top of its text's."""
NOMINAL_LOAD_NS = 50_000_000
NOMINAL_PREFILL_TOK_S = 2000.0
NOMINAL_DECODE_TOK_S = 100.0
DEFAULT_KEEP_ALIVE_S = 300.0
_WORD = re.compile(r"\S+\s*")


def text_tokens(text: str) -> int:
    """A token count no smaller than the word count, about four characters a token."""
    return max(len(text.split()), math.ceil(len(text) / 4))


def message_tokens(message: dict[str, Any]) -> int:
    return MESSAGE_OVERHEAD_TOKENS + text_tokens(str(message.get("content") or ""))


def reply_for(messages: list[dict[str, Any]]) -> str:
    """The fixed reply to a prompt: a function of the prompt alone."""
    return REPLIES[len(messages) % len(REPLIES)]


@dataclass
class _Resident:
    num_ctx: int
    expires_at: str
    cached: list[tuple[str, str]] = field(default_factory=list)
    """The messages in this model's emulated KV cache: its last prompt and its reply."""


class InstantBackend:
    """The Backend protocol (graphs/embedded/backend.py) with instant, fixed replies."""

    version = "0.15.6-instant"

    def __init__(self, models: tuple[str, ...] = INSTANT_MODELS) -> None:
        self._names = models
        self._resident: dict[str, _Resident] = {}
        self._lock = threading.Lock()

    def models(self) -> list[ModelEntry]:
        return [
            ModelEntry(
                name=name,
                size=MODEL_BYTES,
                digest=hashlib.sha256(name.encode()).hexdigest(),
                family=name.split(":")[0],
                parameter_size="1B",
                quantization_level="Q4_K_M",
                context_length=TRAINED_CONTEXT,
                capabilities=["completion"],
                modified_at="2026-01-01T00:00:00Z",
            )
            for name in self._names
        ]

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return [
                LoadedModel(
                    name=name,
                    size=MODEL_BYTES,
                    size_vram=MODEL_BYTES,
                    context_length=resident.num_ctx,
                    expires_at=resident.expires_at,
                )
                for name, resident in self._resident.items()
            ]

    def load(self, model: str, options: dict[str, Any], keep_alive: Any) -> int:
        with self._lock:
            return self._ensure_loaded(model, options, keep_alive)[1]

    def unload(self, model: str) -> None:
        name = find_model(self.models(), model).name
        with self._lock:
            self._resident.pop(name, None)

    def embed(self, model: str, inputs: list[str]) -> Embedded:
        find_model(self.models(), model)
        return Embedded([hashed_embedding(text) for text in inputs], sum(len(t.split()) for t in inputs))

    def chat(self, request: ChatRequest, cancelled: Callable[[], bool]) -> Iterator[ChatDelta | ChatDone]:
        with self._lock:
            resident, load_ns = self._ensure_loaded(request.model, request.options, request.keep_alive)
            sent = [(str(m.get("role")), str(m.get("content") or "")) for m in request.messages]
            cached_messages = 0
            for old, new in zip(resident.cached, sent, strict=False):
                if old != new:
                    break
                cached_messages += 1
            reply = reply_for(request.messages)
            resident.cached = [*sent, ("assistant", reply)]
        return self._answer(request, reply, cached_messages, load_ns, cancelled)

    def _answer(
        self,
        request: ChatRequest,
        reply: str,
        cached_messages: int,
        load_ns: int,
        cancelled: Callable[[], bool],
    ) -> Iterator[ChatDelta | ChatDone]:
        pieces = _WORD.findall(reply)
        done_reason = "stop"
        limit = request.options.get("num_predict")
        if isinstance(limit, int) and 0 < limit < len(pieces):
            pieces, done_reason = pieces[:limit], "length"
        for piece in pieces:
            if cancelled():
                return
            yield ChatDelta(content=piece)
        prompt_tokens = sum(message_tokens(m) for m in request.messages)
        cached = sum(message_tokens(m) for m in request.messages[:cached_messages])
        cached = min(cached, prompt_tokens - 1)  # the last token is always evaluated
        eval_count = len(pieces) + (done_reason == "stop")  # Ollama counts the end-of-turn token
        prompt_ns = round((prompt_tokens - cached) / NOMINAL_PREFILL_TOK_S * 1e9)
        eval_ns = round(eval_count / NOMINAL_DECODE_TOK_S * 1e9)
        yield ChatDone(
            done_reason=done_reason,
            total_duration=load_ns + prompt_ns + eval_ns,
            load_duration=load_ns,
            prompt_eval_count=prompt_tokens,
            prompt_eval_cached_count=cached,
            prompt_eval_duration=prompt_ns,
            eval_count=eval_count,
            eval_duration=eval_ns,
        )

    def _ensure_loaded(self, model: str, options: dict[str, Any], keep_alive: Any) -> tuple[_Resident, int]:
        """The model's residency entry (loaded now if absent or num_ctx changed), and the load ns."""
        name = find_model(self.models(), model).name
        num_ctx = min(int(options.get("num_ctx") or 4096), TRAINED_CONTEXT)
        seconds = keep_alive_seconds(keep_alive)
        seconds = DEFAULT_KEEP_ALIVE_S if seconds is None else seconds
        expires = datetime.now(UTC) + timedelta(seconds=min(seconds, 10 * 365 * 86400))
        expires_at = expires.isoformat().replace("+00:00", "Z")
        resident = self._resident.get(name)
        if resident is not None and resident.num_ctx == num_ctx:
            resident.expires_at = expires_at
            return resident, 0
        resident = self._resident[name] = _Resident(num_ctx, expires_at)
        return resident, NOMINAL_LOAD_NS


def start_instant(port: int = 0) -> OllamaServer:
    """The instant server in a background thread of this process, on 127.0.0.1."""
    return OllamaServer(InstantBackend(), port=port).start()


def main(argv: list[str] | None = None) -> int:
    """Serve in this process until stdin closes; the first line on stdout is the URL."""
    parser = argparse.ArgumentParser(prog="python -m graphs.embedded.instant")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = start_instant(args.port)
    print(server.url, flush=True)
    try:
        sys.stdin.read()  # EOF: the parent closed our stdin, or went away
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
