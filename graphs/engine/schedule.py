"""Who speaks at each turn, and what kind of turn it is: the facilitator's only decision."""

from __future__ import annotations

from dataclasses import dataclass

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
