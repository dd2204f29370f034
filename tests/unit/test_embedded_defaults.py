"""What `--embedded` sets for SmolLM2-135M, and what it leaves to the shape and the user.

The demo's turn 1 used to recite the framing word for word, and its closing looped for 1,008
tokens until the words ran together: the embedded models get short turns that end with their
paragraph, a repeat penalty, and framing they answer rather than recite.
"""

from __future__ import annotations

import os

import pytest

from graphs.embedded import llama_backend
from graphs.embedded.defaults import FRAMING, suited_to_embedded
from graphs.engine.relay import messages_for
from graphs.engine.schedule import plan_turns
from graphs.engine.spec import Framing, load_shape, with_overrides

COOL = {"temperature": 0.6, "top_p": 0.9, "repeat_penalty": 1.15, "num_predict": 160, "stop": ["\n\n"]}
WARM = {"temperature": 0.8, "top_p": 0.95, "repeat_penalty": 1.15, "num_predict": 160, "stop": ["\n\n"]}
BASE = {"num_gpu": 999, "keep_alive": "30m", "seed": -1}


def test_the_demo_duet_gets_short_turns_a_repeat_penalty_and_framing_it_answers() -> None:
    duet = suited_to_embedded(load_shape("duet"))
    assert [p.options.model_dump(exclude_none=True) for p in duet.participants] == [BASE | COOL, BASE | WARM]
    assert duet.framing == FRAMING
    plan = plan_turns(duet, 4)
    essay = "An essay on relays."
    opening = messages_for(duet, essay, [], plan[0], 4)
    assert [(m.type, m.content) for m in opening] == [
        (
            "system",
            "You are smollm2:135m, in a conversation with smollm2:135m-warm about the text below. Say what "
            "you think in a few plain sentences, as people do when they talk.\n\nAn essay on relays.",
        ),
        ("human", "What do you make of its argument?"),
    ]
    said = [{"number": 1, "speaker": "a", "kind": "opening", "text": "It is about trust."}]
    response = messages_for(duet, essay, said, plan[1], 4)
    assert [(m.type, m.content) for m in response][1:] == [("human", "It is about trust.")], (
        "between the opening and the closing, the other's words are the whole prompt"
    )


def test_what_the_shape_or_the_user_set_stays() -> None:
    shape = with_overrides(load_shape("duet"), {}, [("a", "num_predict", 400), ("b", "temperature", 0.2)])
    suited = suited_to_embedded(shape)
    assert [p.options.model_dump(exclude_none=True) for p in suited.participants] == [
        BASE | COOL | {"num_predict": 400},
        BASE | WARM | {"temperature": 0.2},
    ]


def test_a_shape_with_other_models_or_its_own_framing_keeps_its_framing() -> None:
    mixed = suited_to_embedded(with_overrides(load_shape("duet"), {"b": "qwen3:32b"}, []))
    assert mixed.framing == Framing()
    assert [(p.system, p.options.model_dump(exclude_none=True)) for p in mixed.participants] == [
        ("embedded_system", BASE | COOL),
        (None, BASE | {"temperature": 0.7}),
    ]
    debate = load_shape("debate")
    suited = suited_to_embedded(debate)
    assert suited.framing == debate.framing
    assert [(p.name, p.system) for p in suited.participants] == [
        ("pro", "embedded_system"),
        ("con", "embedded_system"),
        ("judge", "judge_system"),
    ], "a participant that names its own system prompt keeps it"


@pytest.mark.parametrize(("cpus", "threads"), [(1, 1), (2, 1), (3, 2), (16, 2)])
def test_llama_cpp_leaves_a_cpu_to_the_rest_of_the_dialogue(
    monkeypatch: pytest.MonkeyPatch, cpus: int, threads: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert llama_backend.default_threads() == threads
