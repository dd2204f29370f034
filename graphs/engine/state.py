"""What the dialogue graph carries from node to node, and so what a checkpoint holds."""

from __future__ import annotations

import operator
from typing import Annotated, TypedDict

from graphs.engine.spec import TurnKind


class Turn(TypedDict):
    """A finished turn: what was said, and the thinking that was kept apart from it."""

    number: int
    speaker: str
    kind: TurnKind
    text: str
    thinking: str


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
