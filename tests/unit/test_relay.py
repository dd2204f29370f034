from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from graphs.engine.relay import messages_for
from graphs.engine.schedule import plan_turns
from graphs.engine.spec import load_shape, with_overrides
from graphs.engine.state import Turn

DUET = with_overrides(load_shape("duet"), {"a": "glm-4.7-flash", "b": "qwen3:32b"}, [])
SYSTEM_A = (
    "You are glm-4.7-flash, in a conversation with qwen3:32b.\n\n"
    "The subject of the conversation:\n\nThe essay.\n\n"
    "Speak in your own voice, in plain prose, as one participant talking to the other. "
    "Engage with what was said, agree or disagree as you honestly see it, and keep each turn to a few paragraphs."
)
OPENING = "Open the conversation: give your reading of the subject and end with a question for qwen3:32b."


def turns(*texts: str, shape=DUET) -> list[Turn]:
    plan = plan_turns(shape, shape.turns)
    return [
        Turn(number=p.number, speaker=p.speaker, kind=p.kind, text=text, thinking="")
        for p, text in zip(plan, texts, strict=False)
    ]


def sent(shape, done: list[Turn], total: int | None = None):
    total = total or shape.turns
    return messages_for(shape, "The essay.", done, plan_turns(shape, total)[len(done)], total)


def test_opening_is_system_then_framing():
    assert sent(DUET, []) == [SystemMessage(SYSTEM_A), HumanMessage(OPENING)]


def test_each_side_sees_itself_as_assistant_and_the_other_as_user():
    history = turns("A1", "B2")
    assert sent(DUET, history) == [
        SystemMessage(SYSTEM_A),
        HumanMessage(OPENING),
        AIMessage("A1"),
        HumanMessage("B2"),
        HumanMessage("Reply to what was said."),
    ]
    closing_for_b = sent(DUET, turns("A1", "B2", "A3"))
    assert closing_for_b[1:] == [
        HumanMessage("A1"),
        HumanMessage("Respond to what was said."),
        AIMessage("B2"),
        HumanMessage("A3"),
        HumanMessage(
            "Close the conversation with a synthesis: where you converge, where you diverge, and what surprised you."
        ),
    ]
    assert closing_for_b[0].content.startswith("You are qwen3:32b, in a conversation with glm-4.7-flash.")


def test_history_only_grows_at_the_end_between_a_speakers_turns():
    texts = [f"turn {n} text" for n in range(1, 10)]
    shape = DUET.model_copy(update={"turns": 10})
    for speaker in ("a", "b"):
        previous = None
        for done in range(0, 9):
            plan = plan_turns(shape, 10)[done]
            if plan.speaker != speaker:
                continue
            current = sent(shape, turns(*texts[:done], shape=shape), 10)
            if previous is not None:
                assert current[: len(previous)] == previous
                assert len(current) > len(previous)
            previous = current


def test_facilitator_adds_nothing_but_the_framing_templates():
    history = turns("A1 words", "B2 words", "A3 words")
    messages = sent(DUET, history)
    relayed = {"A1 words", "B2 words", "A3 words"}
    framings = {
        "Respond to what was said.",
        "Close the conversation with a synthesis: where you converge, where you diverge, and what surprised you.",
    }
    for message in messages[1:]:
        assert message.content in relayed | framings


def test_panel_prefixes_other_speakers_with_their_labels():
    panel = with_overrides(
        load_shape("panel"), {}, [("a", "label", "Ann"), ("b", "label", "Bo"), ("c", "label", "Cy")]
    )
    messages = sent(panel, turns("A1", "B2", shape=panel))
    assert messages[1:] == [
        HumanMessage("Ann: A1"),
        HumanMessage("Bo: B2"),
        HumanMessage("Respond to what was said."),
    ]
    assert messages[0].content.startswith("You are Cy, in a conversation with Ann and Bo.")


def test_same_model_twice_gets_distinct_labels():
    shape = with_overrides(load_shape("duet"), {"a": "llama3", "b": "llama3"}, [])
    assert sent(shape, [])[0].content.startswith("You are llama3 (a), in a conversation with llama3 (b).")


def test_debate_judge_has_its_own_system_prompt_and_closing():
    debate = load_shape("debate")
    messages = sent(debate, turns("P1", "C2", "P3", "C4", shape=debate))
    assert messages[0].content.startswith(
        "You are Judge, the judge of a debate between Proposition and Opposition."
    )
    assert messages[1:5] == [
        HumanMessage("Proposition: P1"),
        HumanMessage("Opposition: C2"),
        HumanMessage("Proposition: P3"),
        HumanMessage("Opposition: C4"),
    ]
    assert messages[5].content.startswith("The debate is over. Give your judgement")
