"""A run's participants on OpenAI-compatible servers, as the runner's ModelSource: each server
checked for its models (GET /models), each key read, nothing pinned (the server owns its
context and placement), then connected."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from langchain_core.runnables import Runnable

from graphs.engine.spec import Participant, Shape
from graphs.ollama.api import TIMEOUT_S
from graphs.ollama.residency import ResidencySettings
from graphs.openai import api
from graphs.openai.connector import chat_model, close_chat_model

UNKNOWN_VERSION = "unknown (OpenAI-compatible)"
"""What run.json records of such a server's version: the OpenAI API does not tell it."""


def openai_participants(shape: Shape) -> list[Participant]:
    return [p for p in shape.connected if p.provider == "openai"]


class OpenAISource:
    """OpenAI-compatible servers, for the participants with provider: openai."""

    def versions(self, shape: Shape, hosts: Mapping[str, str]) -> dict[str, str]:
        """Each server's entry, after reading every key and checking each server serves its models."""
        by_server: dict[str, list[Participant]] = {}
        for participant in openai_participants(shape):
            api.api_key(participant)  # an unset variable: refused before anything is asked or written
            by_server.setdefault(str(participant.base_url), []).append(participant)
        for url, participants in by_server.items():
            api.check_models(url, [p.model for p in participants], api.api_key(participants[0]))
        return dict.fromkeys(by_server, UNKNOWN_VERSION)

    def resolve(self, shape: Shape, hosts: Mapping[str, str], topic: str, turns: int) -> Shape:
        return shape

    def connect(
        self,
        shape: Shape,
        hosts: Mapping[str, str],
        settings: ResidencySettings,
        stop: threading.Event | None,
        timeout_s: float = TIMEOUT_S,
    ) -> Callable[[Participant, str], Runnable]:
        def connect(participant: Participant, host: str) -> Runnable:
            return chat_model(participant, timeout_s, stop)

        return connect

    def close(self, model: Runnable) -> None:
        close_chat_model(model)
