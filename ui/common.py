"""What every page shares: the process-wide registry of runs, the embedded server, hosts."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from graphs import (
    DuologueError,
    Pulled,
    Resident,
    RunStore,
    normalize_host,
    pulled_models,
    running_models,
    server_models,
    start_embedded,
)

from .live import Registry

LIST_TIMEOUT_S = 3.0
"""How long the launch page waits for a host's model list; it asks again after the cache ttl."""


@st.cache_resource(show_spinner=False)
def registry() -> Registry:
    """One per server process: runs outlive the script runs, sessions and reloads that watch them."""
    return Registry()


@st.cache_resource(show_spinner="Starting the embedded model server…", on_release=lambda s: s.stop())
def embedded_server():  # an OllamaServer: .url, .stop()
    """One embedded server per process, started the first time a run asks for it."""
    return start_embedded()


def store() -> RunStore:
    """The runs folder: $DUOLOGUE_RUNS_DIR (set by `duologue ui --runs-dir`) or ./runs."""
    return RunStore()


@dataclass(frozen=True)
class HostModels:
    host: str
    models: tuple[Pulled, ...] = ()
    """The most recently pulled first (pulled_models)."""
    error: str | None = None

    @property
    def names(self) -> list[str]:
        return [model.name for model in self.models]


@st.cache_data(ttl=15, show_spinner=False)
def host_models(host: str) -> HostModels:
    """A host's models (/api/tags), or the one-line reason it can't say; both are cached
    briefly, so a host that doesn't answer doesn't stall every rerun."""
    try:
        host = normalize_host(host)
        return HostModels(host, tuple(pulled_models(host, timeout=LIST_TIMEOUT_S)))
    except DuologueError as exc:
        return HostModels(host, error=str(exc))
    except ValueError as exc:
        return HostModels(host, error=f"{host!r} is not a host address ({exc})")


@dataclass(frozen=True)
class ServerModels:
    """What an OpenAI-compatible server serves (GET /models), or why it can't say."""

    url: str
    names: tuple[str, ...] = ()
    error: str | None = None


@st.cache_data(ttl=15, show_spinner=False)
def openai_models(base_url: str, api_key_env: str | None = None) -> ServerModels:
    """An OpenAI-compatible server's models, asked with the key in $api_key_env (the variable's
    name is the cache's key, never the key); cached briefly, as host_models."""
    base_url = base_url.strip().rstrip("/")
    try:
        return ServerModels(base_url, tuple(server_models(base_url, api_key_env, timeout=LIST_TIMEOUT_S)))
    except DuologueError as exc:
        return ServerModels(base_url, error=str(exc))


@st.cache_data(ttl=5, show_spinner=False)
def host_residents(host: str) -> tuple[Resident, ...] | None:
    """The models loaded on a host now (/api/ps), or None when it can't say (host_models says why)."""
    try:
        return tuple(running_models(normalize_host(host), timeout=LIST_TIMEOUT_S))
    except (DuologueError, ValueError):
        return None
