"""A person as a participant: the shape's rules, the interview's plan, the person's turn in the
graph (an interrupt), and how it is recorded (the stats line, read back)."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from support.fakes import ScriptedChatModel

from graphs.engine.build import build_graph
from graphs.engine.context import DialogueContext
from graphs.engine.schedule import PlannedTurn, plan_turns
from graphs.engine.spec import Shape, load_shape, parse_shape, with_overrides
from graphs.errors import ShapeError
from graphs.records.schema import TraceRecord
from graphs.records.transcript import stats_line, total_line
from graphs.records.transcript_reader import TurnStats, read_transcript

PERSON_SHAPE = """
name: asked
participants:
  - name: me
    kind: person
    label: Me
  - name: m
    model: qwen3:32b
order: [m, me]
turns: 3
closing:
  speaker: me
"""


def test_the_interview_has_the_person_open_and_the_model_respond_and_close():
    shape = load_shape("interview")
    assert [(p.name, p.kind, p.display) for p in shape.participants] == [
        ("you", "person", "Interviewer"),
        ("guest", "model", "smollm2:135m"),
    ]
    assert plan_turns(shape, 6) == [
        PlannedTurn(1, "you", "opening"),
        PlannedTurn(2, "guest", "response"),
        PlannedTurn(3, "you", "reply"),
        PlannedTurn(4, "guest", "reply"),
        PlannedTurn(5, "you", "reply"),
        PlannedTurn(6, "guest", "closing"),
    ]
    assert [p.name for p in shape.connected] == ["guest"], "no model is connected for a person"


def test_a_person_can_stand_anywhere_the_closing_included():
    shape = parse_shape(PERSON_SHAPE, "asked.yaml")
    assert [(t.speaker, t.kind) for t in plan_turns(shape, 3)] == [
        ("m", "opening"),
        ("me", "response"),
        ("me", "closing"),
    ]


def test_a_persons_shape_survives_run_jsons_round_trip():
    shape = load_shape("interview")
    assert Shape.model_validate(shape.model_dump(mode="json")) == shape


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ("model: qwen3:32b", "a person has no model; drop model from their entry"),
        ("host: http://127.0.0.1:11434", "a person has no host; drop host from their entry"),
        ("options: {temperature: 0.2}", "a person has no model options; drop options from their entry"),
        (
            "persona: Be brief.",
            "a person has no persona (a model's instruction); drop persona from their entry",
        ),
        ("provider: openai", "a person has no provider; drop provider from their entry"),
        ("min_tok_s: 5", "a person has no decode rate; drop min_tok_s from their entry"),
    ],
)
def test_what_only_a_model_has_is_refused_for_a_person_in_one_line(extra: str, problem: str):
    text = PERSON_SHAPE.replace("    label: Me\n", f"    label: Me\n    {extra}\n")
    with pytest.raises(ShapeError) as caught:
        parse_shape(text, "asked.yaml")
    assert str(caught.value) == f"asked.yaml: participants.0: {problem}"


def test_an_unknown_kind_is_refused():
    with pytest.raises(ShapeError) as caught:
        parse_shape(PERSON_SHAPE.replace("kind: person", "kind: robot"), "asked.yaml")
    assert str(caught.value) == (
        "asked.yaml: participants.0.kind: Input should be 'model' or 'person' (and 1 more problem)"
    ), "the other: a model participant names its model"


def test_flags_cannot_give_a_person_a_model_or_options():
    shape = load_shape("interview")
    with pytest.raises(ShapeError) as caught:
        with_overrides(shape, {"you": "qwen3:32b"}, [])
    assert str(caught.value) == "--model you=qwen3:32b: you is a person, who has no model"
    with pytest.raises(ShapeError) as caught:
        with_overrides(shape, {}, [("you", "temperature", 0.1)])
    assert (
        str(caught.value)
        == "--set you.temperature: you is a person, who has no temperature; only you.label can be set"
    )
    relabelled = with_overrides(shape, {}, [("you", "label", "Ann")])
    assert relabelled.participant("you").display == "Ann"


def test_a_persons_turn_is_an_interrupt_resumed_with_their_words():
    shape = load_shape("interview")
    guest = ScriptedChatModel(model="guest", replies=["Because.", "In short."], calls=[])
    graph = build_graph(shape, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t"}}
    context = DialogueContext(shape, {"guest": guest})
    first = graph.invoke({"topic": "Why?", "max_turns": 4, "turns": []}, config, context=context)
    [pending] = first["__interrupt__"]
    assert pending.value == {"person": "you", "label": "Interviewer", "turn": 1, "kind": "opening"}
    assert guest.calls == [], "the model waits for the person"
    second = graph.invoke(Command(resume={"text": " Why so?\n", "seconds": 12.5}), config, context=context)
    [pending] = second["__interrupt__"]
    assert pending.value == {"person": "you", "label": "Interviewer", "turn": 3, "kind": "reply"}
    assert second["turns"][0] == {
        "number": 1, "speaker": "you", "kind": "opening", "text": "Why so?", "thinking": "", "person_s": 12.5,
    }  # fmt: skip
    assert guest.calls[0][1].content == "Why so?", "relayed as any participant's turn"
    done = graph.invoke(Command(resume="And then?"), config, context=context)  # plain text, as Studio sends
    assert [t["text"] for t in done["turns"]] == ["Why so?", "Because.", "And then?", "In short."]
    assert done["turns"][2]["person_s"] == 0.0


def person_row(**fields: object) -> TraceRecord:
    row = {
        "run_id": "r", "seq": 2, "node": "you", "turn": 1, "kind": "opening", "speaker": "you",
        "speaker_kind": "person", "words": 212, "started_at": "t", "ended_at": "t", "latency_s": 95.4,
    }  # fmt: skip
    return TraceRecord.model_validate(row | fields)


def test_a_persons_stats_line_counts_words_and_seconds():
    assert stats_line(person_row()) == "*(person, 212 words, 95s)*"
    assert stats_line(person_row(words=1, latency_s=3.0)) == "*(person, 1 word, 3s)*"


def test_the_total_counts_a_persons_turn_but_not_their_typing_as_generation():
    model = TraceRecord(
        run_id="r", seq=4, node="guest", turn=2, kind="response", speaker="guest", started_at="t",
        ended_at="t", latency_s=30.0, completion_tokens=40,
    )  # fmt: skip
    turns = [
        {"number": 1, "speaker": "you", "kind": "opening", "text": "x", "thinking": ""},
        {"number": 2, "speaker": "guest", "kind": "response", "text": "y", "thinking": ""},
    ]
    assert total_line(turns, {1: person_row(latency_s=600.0), 2: model}) == (  # type: ignore[arg-type]
        "Total: 40 tokens across 2 turns (<1 minute of generation)"
    )


def test_a_persons_stats_line_reads_back_as_theirs():
    text = (
        "# Dialogue: Interviewer vs qwen3\n\n---\n\n### Turn 1: Interviewer — Opening\n"
        "*(person, 212 words, 95s)*\n\nWhy?\n\n---\n\n### Turn 2: qwen3 — Closing\n"
        "*(4 tokens, 2.0 tok/s, 2s)*\n\nBecause.\n"
    )
    first, second = read_transcript(text, "t.md").turns
    assert (first.text, first.stats) == ("Why?", TurnStats(None, None, 95.0, [], words=212))
    assert (second.text, second.stats) == ("Because.", TurnStats(4, 2.0, 2.0, []))


def test_a_persons_turn_has_no_decode_rate_among_the_models():
    from graphs.records.tables import model_rates

    model = TraceRecord(
        run_id="r", seq=4, node="guest", turn=2, kind="response", speaker="guest", model="qwen3", started_at="t",
        ended_at="t", latency_s=30.0, completion_tokens=40, tokens_per_s=4.0, eval_duration=10_000_000_000,
    )  # fmt: skip
    assert model_rates([person_row(), model]) == {"qwen3": 4.0}


def test_the_runs_listing_counts_a_persons_typing_as_no_generation_either():
    from graphs.records.index import TraceTotals

    model = TraceRecord(
        run_id="r", seq=4, node="guest", turn=2, kind="response", speaker="guest", model="qwen3", started_at="t",
        ended_at="t", latency_s=30.0, completion_tokens=40, done_reason="stop",
    )  # fmt: skip
    totals = TraceTotals.of([person_row(latency_s=600.0), model])
    assert sorted(totals.finished) == [1, 2]
    assert sum(seconds for _, seconds, _ in totals.finished.values()) == 30.0
