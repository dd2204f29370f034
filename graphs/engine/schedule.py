"""Who speaks at each turn, and what kind of turn it is: the facilitator's only decision."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphs.engine.spec import Shape, TurnKind


@dataclass(frozen=True)
class PlannedTurn:
    number: int
    speaker: str
    kind: TurnKind


def plan_turns(shape: Shape, turns: int) -> list[PlannedTurn]:
    """The rotation for turns-1 turns, then the closing synthesis (see planned_turn)."""
    return [planned_turn(shape, turns, number) for number in range(1, turns + 1)]


def planned_turn(shape: Shape, turns: int, number: int) -> PlannedTurn:
    """Turn `number` (from 1) of a `turns`-turn dialogue, worked out alone: each turn asks for
    its own, so a long dialogue does not rebuild its whole plan at every turn.

    The first turn opens; a speaker's first turn after that responds; later ones reply.
    The last turn is the closing synthesis.
    """
    order = shape.order
    if number == turns:
        closer = shape.closing.speaker
        return PlannedTurn(turns, order[(turns - 1) % len(order)] if closer == "next" else closer, "closing")
    index = number - 1
    speaker = order[index % len(order)]
    # A rotation's first turn of a speaker is at its first place in the order.
    kind: TurnKind = "opening" if index == 0 else "reply" if order.index(speaker) < index else "response"
    return PlannedTurn(number, speaker, kind)


def turn_due(shape: Shape, state: Any) -> PlannedTurn | None:
    """The turn a dialogue state is at: the one after its finished turns, None once all are done.

    Anything that is not a dialogue state (a resume's Command, None) is at no turn.
    """
    if not isinstance(state, Mapping) or "max_turns" not in state:
        return None
    total = int(state["max_turns"])
    done = len(state.get("turns") or [])
    return planned_turn(shape, total, done + 1) if done < total else None
