"""What a compiled dialogue graph is given at run time, apart from its state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from langchain_core.runnables import Runnable

from graphs.engine.spec import Shape


@dataclass
class DialogueContext:
    """The shape and one chat model per participant, by participant name.

    Without models (as under `langgraph dev`), each participant's ChatOllama is built
    from the shape on first use.
    """

    shape: Shape
    models: Mapping[str, Runnable] = field(default_factory=dict)
