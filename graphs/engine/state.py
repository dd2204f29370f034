"""What the dialogue graph carries from node to node, and so what a checkpoint holds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, NotRequired

from langgraph.channels.delta import DeltaChannel
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


SNAPSHOT_EVERY = 1000
"""A checkpoint holds the whole list of turns once every this many updates of it; the others
hold only what their step added, so the checkpoints grow with the turns, not their square."""


def appended(kept: list[Any], batches: Sequence[list[Any]]) -> list[Any]:
    """The list with each step's additions after it: DeltaChannel's reducer, which replays a
    run's steps in one batch or in many alike."""
    return [*kept, *(item for batch in batches for item in batch)]


def added_per_step() -> DeltaChannel[Any]:
    """A list channel checkpointed as what each step added (LangGraph's DeltaChannel). Older
    runs' checkpoints, which hold the whole list at every step, are read as they were."""
    return DeltaChannel(appended, list, snapshot_frequency=SNAPSHOT_EVERY)


class DialogueState(TypedDict, total=False):
    topic: str
    max_turns: int
    turns: Annotated[list[Turn], added_per_step()]
    interjections: Annotated[list[Interjection], added_per_step()]
    observation: Observation
