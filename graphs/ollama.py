"""The connector: the only code that talks to Ollama.

Each participant gets a ChatOllama whose complete options dict is built here once
and sent on every call. ChatOllama has no main_gpu, num_batch or use_mmap fields and a
call-time options dict replaces its own, so the dict is always passed whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import httpx
import ollama
from langchain_core.runnables import Runnable
from langchain_ollama import ChatOllama

from graphs.errors import OllamaError
from graphs.spec import ModelOptions, Participant

DEFAULT_HOST = "http://127.0.0.1:11434"
REQUEST_TIMEOUT_S = 600.0
"""A turn on a CPU-bound model can take ten minutes (the reference's took 564 s)."""

TOP_LEVEL_KEYS = frozenset({"keep_alive", "think"})


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


def chat_model(participant: Participant, host: str, timeout: float = REQUEST_TIMEOUT_S) -> Runnable:
    """A ChatOllama for one participant, bound to its complete options."""
    options = participant.options
    model = ChatOllama(
        model=participant.model,
        base_url=host,
        reasoning=options.think,
        keep_alive=options.keep_alive,
        client_kwargs={"timeout": timeout},
    )
    return model.bind(options=request_options(options))


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
    with httpx.Client(base_url=host, timeout=timeout) as client:
        try:
            response = client.get(path)
            response.raise_for_status()
            return dict(response.json())
        except httpx.TransportError:
            raise OllamaError(unreachable_message(host)) from None
        except (httpx.HTTPError, ValueError) as exc:
            raise OllamaError(f"the server at {host} does not answer like Ollama ({path}: {exc})") from None


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
        return f"Ollama at {host} answered: {exc.error} (HTTP {exc.status_code})"
    if isinstance(exc, httpx.ConnectError | ConnectionError):
        return f"lost the connection to Ollama at {host}"
    if isinstance(exc, httpx.TimeoutException):
        return f"Ollama at {host} did not answer in time ({exc.__class__.__name__})"
    if isinstance(exc, httpx.HTTPError):
        return f"the connection to Ollama at {host} broke ({exc.__class__.__name__}: {exc})"
    return None
