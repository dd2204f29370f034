"""The dialogue's nodes: a facilitator that routes, speakers that talk, and an observer.

The facilitator never calls a model and adds no words of its own; the only text it
contributes is the framing templates the shape names (relay.py). The observer, when a shape
names one, reads the finished dialogue after the closing; what it writes stays in the state's
`observation`, which no speaker is ever sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from langchain_core.messages import AIMessage
from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.types import Command, interrupt

from graphs.engine.context import DialogueContext
from graphs.engine.relay import dialogue_text, labels, messages_for, observer_messages
from graphs.engine.schedule import PlannedTurn, turn_due
from graphs.engine.spec import OBSERVER
from graphs.engine.state import (
    NUMBERS_KEY,
    DialogueState,
    Interjection,
    Observation,
    PersonAsk,
    Turn,
    TurnNumbers,
)

FACILITATOR = "facilitator"
CLOSING = "closing"


def make_facilitator(default: DialogueContext) -> Callable[..., Command]:
    def facilitator(state: DialogueState, runtime: Runtime[DialogueContext]) -> Command:
        """Route to whoever is due; END once the turn cap in the state is reached."""
        context = run_context(runtime, default)
        planned = turn_due(context.shape, state)
        if planned is None:
            return Command(goto=END)
        goto = CLOSING if planned.kind == "closing" else planned.speaker
        if planned.number not in context.shape.interject_before:
            return Command(goto=goto)
        # Pauses the run; `duologue resume RUN_ID --say TEXT`, or a server's Command(resume=TEXT),
        # continues with TEXT as the value.
        said = interrupt({"before_turn": planned.number})
        interjection = Interjection(before_turn=planned.number, text=str(said or "").strip())
        return Command(goto=goto, update={"interjections": [interjection]})

    return facilitator


def run_context(runtime: Runtime[Any], default: DialogueContext) -> DialogueContext:
    """The run's DialogueContext, else `default`: under LangGraph Server the run's context is
    JSON, which the graph's host has read into `default` already (graphs/run/served.py)."""
    context = runtime.context
    return context if isinstance(context, DialogueContext) else default


def make_speaker(default: DialogueContext) -> Callable[..., dict[str, list[Turn]]]:
    """`default` serves when the graph is run without a DialogueContext, as under `langgraph dev`."""

    def speaker(state: DialogueState, runtime: Runtime[DialogueContext]) -> dict[str, list[Turn]]:
        return speak(state, run_context(runtime, default))

    return speaker


def speak(state: DialogueState, context: DialogueContext) -> dict[str, list[Turn]]:
    """One turn: relay the dialogue to the speaker due and keep what it says."""
    planned = turn_due(context.shape, state)
    assert planned is not None, "the facilitator routed past the last turn"
    if context.shape.participant(planned.speaker).is_person:
        return {"turns": [person_turn(planned, labels(context.shape)[planned.speaker])]}
    messages = messages_for(
        context.shape,
        state["topic"],
        state.get("turns", []),
        planned,
        state["max_turns"],
        state.get("interjections", []),
    )
    reply = context.model_for(planned.speaker, state["topic"], state["max_turns"]).invoke(messages)
    text, thinking = split_reply(reply)
    turn = Turn(
        number=planned.number, speaker=planned.speaker, kind=planned.kind, text=text, thinking=thinking
    )
    numbers = reply_numbers(reply)
    if numbers is not None:
        turn["numbers"] = numbers
    return {"turns": [turn]}


def person_turn(planned: PlannedTurn, label: str) -> Turn:
    """A person's turn: the run pauses (a LangGraph interrupt, so a restart asks again) until the
    host resumes it with their words, as text or as PersonAnswer (text, and the seconds they took)."""
    asked = PersonAsk(person=planned.speaker, label=label, turn=planned.number, kind=planned.kind)
    answer = interrupt(asked)
    text, seconds = (
        (answer.get("text"), answer.get("seconds")) if isinstance(answer, dict) else (answer, None)
    )
    turn = Turn(
        number=planned.number,
        speaker=planned.speaker,
        kind=planned.kind,
        text=str(text or "").strip(),
        thinking="",
    )
    turn["person_s"] = float(seconds) if isinstance(seconds, (int, float)) else 0.0
    return turn


def make_observer(default: DialogueContext) -> Callable[..., dict[str, Observation]]:
    def observer(state: DialogueState, runtime: Runtime[DialogueContext]) -> dict[str, Observation]:
        return observe(state, run_context(runtime, default))

    return observer


def observe(state: DialogueState, context: DialogueContext) -> dict[str, Observation]:
    """The observer's notes on the whole dialogue, with the analysis's sentences beside it."""
    shape = context.shape
    assert shape.observer is not None, "the graph has an observer node only for a shape with one"
    names = labels(shape)
    turns = [(t["number"], names[t["speaker"]], t["kind"], t["text"]) for t in state.get("turns", [])]
    summary = context.summarize(turns) if context.summarize else []
    spec = shape.observer.as_participant()
    messages = observer_messages(
        spec.display, spec.persona, [names[p.name] for p in shape.participants], state["topic"],
        dialogue_text(turns), summary,
    )  # fmt: skip
    model = context.model_for(OBSERVER, state["topic"], state["max_turns"])
    text, _thinking = split_reply(model.invoke(messages))
    return {"observation": Observation(label=spec.display, text=text)}


def split_reply(reply: object) -> tuple[str, str]:
    """The answer and, kept apart, any thinking that came with it."""
    if not isinstance(reply, AIMessage):
        return str(reply), ""
    content = reply.content if isinstance(reply.content, str) else reply.text
    thinking = reply.additional_kwargs.get("reasoning_content") or ""
    return content.strip(), str(thinking)


def reply_numbers(reply: object) -> TurnNumbers | None:
    """The turn's numbers, as its connector put them in the reply (see NUMBERS_KEY)."""
    metadata = getattr(reply, "response_metadata", None) or {}
    numbers = metadata.get(NUMBERS_KEY)
    return cast(TurnNumbers, numbers) if isinstance(numbers, dict) else None
