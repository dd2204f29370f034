"""A run's models on Ollama servers: checked, their options pinned, then connected.

The runner reaches every kind of model through these four steps (run/runner.py's
ModelSource), so a run, a resume and a fork each check the servers, ask /api/show once
per participant, connect with the residency guard, and close what they opened.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from langchain_core.runnables import Runnable

from graphs.engine.spec import OBSERVER, Participant, Shape
from graphs.ollama import api
from graphs.ollama.connector import chat_model, close_chat_model
from graphs.ollama.residency import ResidencySettings, RunResidency, resolve_shape


class OllamaSource:
    """Ollama, as the runner's ModelSource."""

    def versions(self, shape: Shape, hosts: Mapping[str, str]) -> dict[str, str]:
        """Each host's version, after checking it is up and has its participants' models."""
        by_host: dict[str, list[str]] = {}
        for participant in shape.connected:
            if participant.provider != "ollama":
                continue
            by_host.setdefault(hosts[participant.name], []).append(participant.model)
        return {host: api.check_models(host, models) for host, models in by_host.items()}

    def resolve(self, shape: Shape, hosts: Mapping[str, str], topic: str, turns: int) -> Shape:
        """num_ctx and think pinned where the shape leaves them open (one /api/show a participant)."""
        return resolve_shape(shape, hosts, topic, turns)

    def connect(
        self,
        shape: Shape,
        hosts: Mapping[str, str],
        settings: ResidencySettings,
        stop: threading.Event | None,
        timeout_s: float = api.TIMEOUT_S,
    ) -> Callable[[Participant, str], Runnable]:
        """A factory of guarded chat models for a resolved shape, sharing one RunResidency; each
        gives up on a turn after `timeout_s` seconds without a chunk (the run's --timeout)."""
        residency = RunResidency(shape, hosts, settings)

        def connect(participant: Participant, host: str) -> Runnable:
            if participant.name == OBSERVER:  # after the closing: no turn of the dialogue to place
                return chat_model(participant, host, timeout_s, stop=stop)
            guard = residency.guard(participant.name)
            return chat_model(participant, host, timeout_s, guard=guard, stop=stop)

        return connect

    def close(self, model: Runnable) -> None:
        close_chat_model(model)
