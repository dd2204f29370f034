from pathlib import Path

import pytest

from graphs.engine.schedule import PlannedTurn, plan_turns
from graphs.engine.spec import builtin_shape_names, load_shape, with_overrides
from graphs.errors import ShapeError


def test_builtin_shapes_load():
    assert builtin_shape_names() == ["debate", "duet", "interview", "panel"]
    duet = load_shape("duet")
    assert [p.name for p in duet.participants] == ["a", "b"]
    assert duet.turns == 4


def test_duet_plan_is_the_reference_runs_shape():
    assert plan_turns(load_shape("duet"), 4) == [
        PlannedTurn(1, "a", "opening"),
        PlannedTurn(2, "b", "response"),
        PlannedTurn(3, "a", "reply"),
        PlannedTurn(4, "b", "closing"),
    ]


def test_panel_rotates_then_named_participant_closes():
    plan = plan_turns(load_shape("panel"), 5)
    assert [(t.speaker, t.kind) for t in plan] == [
        ("a", "opening"),
        ("b", "response"),
        ("c", "response"),
        ("a", "reply"),
        ("a", "closing"),
    ]


def test_debate_judge_speaks_only_to_close():
    plan = plan_turns(load_shape("debate"), 5)
    assert [(t.speaker, t.kind) for t in plan] == [
        ("pro", "opening"),
        ("con", "response"),
        ("pro", "reply"),
        ("con", "reply"),
        ("judge", "closing"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: x\nparticipants: [{name: a, model: m}, {name: b, model: m}]\norder: [a, b]\ncolour: red\n",
            "shape.yaml: colour: unknown field",
        ),
        (
            "name: x\nparticipants: [{name: a, model: m, optoins: {}}, {name: b, model: m}]\norder: [a, b]\n",
            "shape.yaml: participants.0.optoins: unknown field",
        ),
        (
            "name: x\nparticipants: [{name: a, model: m, options: {num_ctxx: 1}}, {name: b, model: m}]\norder: [a]\n",
            "shape.yaml: participants.0.options.num_ctxx: unknown field",
        ),
        (
            "name: x\nparticipants: [{name: a, model: m}, {name: b, model: m}]\norder: [a, c]\n",
            "shape.yaml: (top level): order names 'c', who is not a participant (['a', 'b'])",
        ),
        ("name: [unclosed\n", "shape.yaml: line 2 is not valid YAML"),
        ("- just\n- a list\n", "shape.yaml: a shape file must be a mapping of fields, got list"),
    ],
)
def test_invalid_shape_file_names_file_and_field(tmp_path: Path, text: str, message: str):
    path = tmp_path / "shape.yaml"
    path.write_text(text)
    with pytest.raises(ShapeError) as caught:
        load_shape(str(path))
    assert str(caught.value).replace(str(tmp_path) + "/", "").startswith(message)
    assert "\n" not in str(caught.value)


def test_overrides_apply_and_unknown_keys_are_refused():
    shape = with_overrides(load_shape("duet"), {"a": "glm-4.7-flash"}, [("b", "num_ctx", 16384)])
    assert shape.participant("a").model == "glm-4.7-flash"
    assert shape.participant("b").options.num_ctx == 16384
    with pytest.raises(ShapeError, match="--set a.num_ctxx: unknown key 'num_ctxx'"):
        with_overrides(load_shape("duet"), {}, [("a", "num_ctxx", 1)])
    with pytest.raises(ShapeError, match="--model names 'c', who is not in shape 'duet'"):
        with_overrides(load_shape("duet"), {"c": "m"}, [])
