"""What a compiled dialogue graph is given at run time, apart from its state."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from langchain_core.runnables import Runnable

from graphs.engine.spec import OBSERVER, Participant, Shape


@dataclass
class DialogueContext:
    """The shape and one chat model per participant, by participant name.

    A participant without a model (as under LangGraph Server, whose run context is JSON)
    gets one from `connect`, which the graph's host supplies: the engine itself never talks
    to a model server.
    """

    shape: Shape
    models: Mapping[str, Runnable] = field(default_factory=dict)
    connect: Callable[[Participant, str, int], Runnable] | None = None
    """(participant, topic, turns) → its chat model: the host sizes its options to the dialogue."""
    summarize: Callable[[Sequence[tuple[int, str, str, str]]], list[str]] | None = None
    """The analysis's sentences on (number, label, kind, text) turns, for the observer; the host
    brings it (the engine measures nothing itself)."""

    def model_for(self, name: str, topic: str = "", turns: int = 0) -> Runnable:
        model = self.models.get(name)
        if model is not None:
            return model
        if self.connect is None:
            raise LookupError(f"no chat model for participant '{name}' in the dialogue's context")
        if name == OBSERVER and self.shape.observer is not None:
            return self.connect(self.shape.observer.as_participant(), topic, turns)
        return self.connect(self.shape.participant(name), topic, turns)
