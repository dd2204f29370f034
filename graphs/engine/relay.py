"""What each speaker is sent: the dialogue seen from its own side.

Its own turns are assistant messages, everyone else's are user messages, and the
framing instruction for each of its turns stays where it was first sent. So between
two turns of one speaker the prompt only grows at the end, and Ollama can reuse its
cached prompt prefix.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from graphs.engine.prompting import render
from graphs.engine.schedule import PlannedTurn, planned_turn
from graphs.engine.spec import Shape
from graphs.engine.state import Interjection, Turn

FACILITATOR_LABEL = "Facilitator"


def labels(shape: Shape) -> dict[str, str]:
    """Each participant's display label, made unique when two share a model."""
    names = {p.name: p.display for p in shape.participants}
    counts = {label: list(names.values()).count(label) for label in names.values()}
    return {name: label if counts[label] == 1 else f"{label} ({name})" for name, label in names.items()}


def messages_for(
    shape: Shape,
    topic: str,
    turns: Sequence[Turn],
    planned: PlannedTurn,
    total_turns: int,
    interjections: Sequence[Interjection] = (),
) -> list[BaseMessage]:
    speaker = shape.participant(planned.speaker)
    names = labels(shape)
    others = [names[p.name] for p in shape.participants if p.name != speaker.name]
    values: dict[str, str | int] = {
        "speaker": names[speaker.name],
        "others": " and ".join(others),
        "persona": speaker.persona,
        "topic": topic.strip(),
        "shape": shape.name,
        "turns": total_turns,
    }
    system = render(speaker.system or shape.framing.system, **values)
    messages: list[BaseMessage] = [SystemMessage(system)]
    prefix_labels = len(shape.participants) > 2
    said_before = {i["before_turn"]: i["text"] for i in interjections if i["text"].strip()}
    for turn in [*turns, None]:
        due = planned if turn is None else planned_turn(shape, total_turns, turn["number"])
        if due.number in said_before:
            messages.append(HumanMessage(f"{FACILITATOR_LABEL}: {said_before[due.number]}"))
        # A speaker's framing goes right before each of its turns, this one included.
        if due.speaker == speaker.name:
            framing = framing_for(shape, due, values)
            if framing:
                messages.append(HumanMessage(framing))
        if turn is None:
            break
        if turn["speaker"] == speaker.name:
            messages.append(AIMessage(turn["text"]))
        else:
            said = turn["text"]
            messages.append(HumanMessage(f"{names[turn['speaker']]}: {said}" if prefix_labels else said))
    return messages


def framing_for(shape: Shape, planned: PlannedTurn, values: dict[str, str | int]) -> str | None:
    template = getattr(shape.framing, planned.kind)
    if template is None:
        return None
    return render(template, **values, turn=planned.number, kind=planned.kind)


OBSERVER_SYSTEM = "observer_system"
OBSERVER_REQUEST = "observer"


def observer_messages(
    label: str, persona: str, speakers: Sequence[str], topic: str, dialogue: str, summary: Sequence[str]
) -> list[BaseMessage]:
    """What an observer is sent: the whole dialogue and the analysis's sentences, once, after
    the closing. Nothing it writes is ever relayed to a speaker."""
    values: dict[str, str | int] = {
        "speaker": label,
        "others": " and ".join(speakers),
        "persona": persona,
        "topic": topic.strip(),
        "dialogue": dialogue.strip(),
        "summary": "\n".join(summary),
    }
    system = render(OBSERVER_SYSTEM, **{k: values[k] for k in ("speaker", "others", "persona", "topic")})
    request = render(OBSERVER_REQUEST, dialogue=values["dialogue"], summary=values["summary"])
    return [SystemMessage(system), HumanMessage(request)]


def dialogue_text(turns: Sequence[tuple[int, str, str, str]]) -> str:
    """(number, label, kind, text) turns as an observer reads them."""
    return "\n\n".join(f"Turn {n}: {label} ({kind})\n{text.strip()}" for n, label, kind, text in turns)
