"""The contract between Ollama's HTTP API (protocol.py) and whatever answers it.

Two backends exist: the real llama.cpp one (llama_backend.py) and the scripted one
with an emulated GPU in tests/. Keeping the HTTP side in one place means both speak
exactly the same protocol: field names, nanosecond units, NDJSON and error bodies.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from graphs.ollama.names import same_model


class ModelNotFound(Exception):
    """Answered as Ollama does: 404 with {"error": "model 'NAME' not found"}."""

    def __init__(self, name: str) -> None:
        super().__init__(f"model '{name}' not found")
        self.name = name


class BadRequest(Exception):
    """Answered with 400 and {"error": message}."""


class BackendFailure(Exception):
    """A fault while generating; mid-stream it is sent as a final {"error": ...} line."""


class DropConnection(Exception):
    """Cut the connection without a final line, as a crashed server would (used by test fakes)."""


@dataclass
class ChatRequest:
    """One /api/chat request, as Ollama receives it."""

    model: str
    messages: list[dict[str, Any]]
    options: dict[str, Any] = field(default_factory=dict)
    think: bool | str | None = None
    keep_alive: str | int | float | None = None
    stream: bool = True
    format: Any = None


@dataclass
class ChatDelta:
    """A piece of the answer as it streams: answer text and/or thinking text."""

    content: str = ""
    thinking: str = ""


@dataclass
class ChatDone:
    """The final chunk's metrics, durations in nanoseconds like Ollama's."""

    done_reason: str
    total_duration: int
    load_duration: int
    prompt_eval_count: int
    prompt_eval_duration: int
    eval_count: int
    eval_duration: int
    prompt_eval_cached_count: int = 0
    """Prompt tokens served from the KV cache. As in Ollama, prompt_eval_count counts the
    whole prompt (cached tokens included) and prompt_eval_duration only the evaluated part."""


@dataclass
class ModelEntry:
    """A model the backend serves (/api/tags, /api/show)."""

    name: str
    size: int
    digest: str
    family: str
    parameter_size: str
    quantization_level: str
    context_length: int
    capabilities: list[str]
    modified_at: str
    format: str = "gguf"


@dataclass
class LoadedModel:
    """A model in memory (/api/ps); size_vram == size means 100% GPU, 0 means 100% CPU."""

    name: str
    size: int
    size_vram: int
    context_length: int
    expires_at: str
    digest: str = ""


@dataclass
class Embedded:
    """What /api/embed answers: one vector per input, and the work it took."""

    embeddings: list[list[float]]
    prompt_tokens: int
    load_ns: int = 0


class Backend(Protocol):
    version: str

    def models(self) -> list[ModelEntry]: ...

    def loaded(self) -> list[LoadedModel]: ...

    def load(self, model: str, options: dict[str, Any], keep_alive: Any) -> int:
        """Load (or keep) a model; returns the load time in ns (0 if it was loaded already)."""
        ...

    def unload(self, model: str) -> None: ...

    def chat(self, request: ChatRequest, cancelled: Callable[[], bool]) -> Iterator[ChatDelta | ChatDone]:
        """Yield deltas, then exactly one ChatDone. Stop early when cancelled() turns true."""
        ...

    def embed(self, model: str, inputs: list[str]) -> Embedded:
        """One embedding vector per input text (/api/embed)."""
        ...


def hashed_embedding(text: str, dims: int = 64) -> list[float]:
    """A bag-of-words vector (each word hashed into one of `dims` slots), unit length: what the
    instant and test servers embed with, so texts sharing words come out similar."""
    vector = [0.0] * dims
    for word in re.findall(r"[a-z0-9']+", text.lower()):
        vector[zlib.crc32(word.encode()) % dims] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [round(v / norm, 6) for v in vector]


def find_model(models: list[ModelEntry], name: str) -> ModelEntry:
    """Resolve a requested name as Ollama does: exact, or with the implied ":latest" tag."""
    exact = [entry for entry in models if entry.name == name]
    for entry in exact or [entry for entry in models if same_model(entry.name, name)]:
        return entry
    raise ModelNotFound(name)


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_DURATION_PART = re.compile(rf"({_NUMBER.pattern})(ns|us|µs|ms|s|m|h)")


def keep_alive_seconds(value: Any) -> float | None:
    """Ollama's keep_alive in seconds: None if unset, math.inf if negative (forever).

    Numbers are seconds; strings are Go durations ("5m", "1h30m", "0"); a bare numeric
    string is taken as seconds too. Anything else is a BadRequest.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadRequest(f"invalid keep_alive: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        text = text.lstrip("+-")
        parts = _DURATION_PART.findall(text)
        if _NUMBER.fullmatch(text):
            seconds = sign * float(text)
        elif parts and "".join(n + u for n, u in parts) == text:
            seconds = sign * sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
        else:
            raise BadRequest(f"invalid keep_alive duration: {value!r}")
    else:
        raise BadRequest(f"invalid keep_alive: {value!r}")
    return math.inf if seconds < 0 else seconds
