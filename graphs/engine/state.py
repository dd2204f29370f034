"""What the dialogue graph carries from node to node, and so what a checkpoint holds."""

from __future__ import annotations

import operator
from typing import Annotated, NotRequired

from typing_extensions import TypedDict  # not typing's: pydantic draws the server's schemas with it

from graphs.engine.spec import TurnKind

NUMBERS_KEY = "duologue_numbers"
"""Where a connector puts a turn's TurnNumbers in its reply's response_metadata."""


class TurnNumbers(TypedDict):
    """What the model server measured for a turn, as its connector reports them; so any host of
    the graph (LangGraph Server, Studio, the SDK) sees what `duologue run` shows."""

    prompt_tokens: int | None
    completion_tokens: int | None
    tokens_per_s: float | None
    prompt_tokens_per_s: float | None
    ttft_s: float | None
    """Seconds from the request (placing the model included) to its first streamed piece."""
    load_s: float | None
    gpu_fraction: float | None
    flags: list[str]
    """What a reader should notice (CPU, slow, truncated, ...), by the trace's own rule."""


class Turn(TypedDict):
    """A finished turn: what was said, and the thinking that was kept apart from it."""

    number: int
    speaker: str
    kind: TurnKind
    text: str
    thinking: str
    numbers: NotRequired[TurnNumbers]
    """Present when the turn's connector measured it (every Ollama turn)."""
    person_s: NotRequired[float]
    """Present for a person's turn: the seconds they took to write it, as the host timed them."""


class PersonAsk(TypedDict):
    """The interrupt's value when a person's turn is due: whose turn, its number and kind."""

    person: str
    label: str
    turn: int
    kind: TurnKind


class PersonAnswer(TypedDict):
    """What resumes a person's turn (Command(resume=...)); plain text serves too."""

    text: str
    seconds: float


class Interjection(TypedDict):
    """Words of the facilitator's own, said before a turn when a shape or user asks for it."""

    before_turn: int
    text: str


class Observation(TypedDict):
    """The observer's notes on the finished dialogue; never relayed to a speaker."""

    label: str
    text: str


class DialogueState(TypedDict, total=False):
    topic: str
    max_turns: int
    turns: Annotated[list[Turn], operator.add]
    interjections: Annotated[list[Interjection], operator.add]
    observation: Observation
