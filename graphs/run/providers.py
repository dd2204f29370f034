"""The runner's default ModelSource: each participant's model from its provider's source.

Each source takes the participants of its own provider (Participant.provider) and leaves
the others alone, so the runner takes its four steps once, whoever serves whom.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from langchain_core.runnables import Runnable

from graphs.engine.spec import Participant, Shape
from graphs.ollama.api import TIMEOUT_S, default_host, normalize_host
from graphs.ollama.residency import ResidencySettings
from graphs.ollama.source import OllamaSource
from graphs.openai.connector import PinnedChatOpenAI
from graphs.openai.source import OpenAISource


def participant_hosts(shape: Shape, default: str | None, named: Mapping[str, str]) -> dict[str, str]:
    """Each connected participant's server: an OpenAI-compatible one's base_url, else its host
    named for this run, else the shape's, else `default`, else $OLLAMA_HOST. The CLI's --host
    and the served context's hosts both come here."""
    fallback = default or default_host()
    return {
        p.name: p.base_url or named.get(p.name) or (normalize_host(p.host) if p.host else fallback)
        for p in shape.connected
    }


class ByProvider:
    """Ollama's and OpenAI-compatible servers' sources, one run."""

    def __init__(self) -> None:
        self.ollama = OllamaSource()
        self.openai = OpenAISource()

    def versions(self, shape: Shape, hosts: Mapping[str, str]) -> dict[str, str]:
        return self.openai.versions(shape, hosts) | self.ollama.versions(shape, hosts)

    def resolve(self, shape: Shape, hosts: Mapping[str, str], topic: str, turns: int) -> Shape:
        return self.ollama.resolve(self.openai.resolve(shape, hosts, topic, turns), hosts, topic, turns)

    def connect(
        self,
        shape: Shape,
        hosts: Mapping[str, str],
        settings: ResidencySettings,
        stop: threading.Event | None,
        timeout_s: float = TIMEOUT_S,
    ) -> Callable[[Participant, str], Runnable]:
        on_ollama = self.ollama.connect(shape, hosts, settings, stop, timeout_s)
        on_openai = self.openai.connect(shape, hosts, settings, stop, timeout_s)

        def connect(participant: Participant, host: str) -> Runnable:
            return (on_openai if participant.provider == "openai" else on_ollama)(participant, host)

        return connect

    def close(self, model: Runnable) -> None:
        bound = getattr(model, "bound", model)
        (self.openai if isinstance(bound, PinnedChatOpenAI) else self.ollama).close(model)
