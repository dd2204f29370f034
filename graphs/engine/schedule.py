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
    """The rotation for turns-1 turns, then the closing synthesis.

    The first turn opens; a speaker's first turn after that responds; later ones reply.
    """
    plan: list[PlannedTurn] = []
    spoken: set[str] = set()
    for index in range(turns - 1):
        speaker = shape.order[index % len(shape.order)]
        kind: TurnKind = "opening" if index == 0 else "reply" if speaker in spoken else "response"
        spoken.add(speaker)
        plan.append(PlannedTurn(index + 1, speaker, kind))
    closer = shape.closing.speaker
    if closer == "next":
        closer = shape.order[(turns - 1) % len(shape.order)]
    plan.append(PlannedTurn(turns, closer, "closing"))
    return plan


def turn_due(shape: Shape, state: Any) -> PlannedTurn | None:
    """The turn a dialogue state is at: the one after its finished turns, None once all are done.

    Anything that is not a dialogue state (a resume's Command, None) is at no turn.
    """
    if not isinstance(state, Mapping) or "max_turns" not in state:
        return None
    total = int(state["max_turns"])
    done = len(state.get("turns") or [])
    return plan_turns(shape, total)[done] if done < total else None
