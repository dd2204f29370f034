"""Sweep files read and checked, a sweep's cells, and the schedule that keeps models together."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from graphs.commands.sweep import ProgressLine, progress_text
from graphs.errors import ShapeError
from graphs.sweep.driver import SweepProgress
from graphs.sweep.plan import Cell, next_cell, plan_cells, schedule
from graphs.sweep.spec import load_sweep

PAIRS = [{"a": "glm-4.7-flash", "b": "qwen3:32b"}, {"a": "llama3.2:3b", "b": "qwen3:32b"}]


def write(tmp_path: Path, **data: Any) -> Path:
    path = tmp_path / "grid.yaml"
    base: dict[str, Any] = {
        "shape": "duet",
        "models": PAIRS,
        "topics": ["A topic."],
        "hosts": ["http://gpu1:11434"],
    }
    path.write_text(json.dumps(base | data), encoding="utf-8")
    return path


def eight_cells() -> list[Cell]:
    return plan_cells(PAIRS, ["essay.md", "Is a diary a memory?"], [1, 2])


def test_cells_are_numbered_assignment_then_topic_then_seed():
    assert [(c.cell, c.assignment, c.topic_index, c.seed, c.repeat) for c in eight_cells()] == [
        (1, 0, 0, 1, 1),
        (2, 0, 0, 2, 2),
        (3, 0, 1, 1, 1),
        (4, 0, 1, 2, 2),
        (5, 1, 0, 1, 1),
        (6, 1, 0, 2, 2),
        (7, 1, 1, 1, 1),
        (8, 1, 1, 2, 2),
    ]
    assert eight_cells()[4].models == PAIRS[1] and eight_cells()[2].topic == "Is a diary a memory?"


def test_the_schedule_gives_each_host_one_run_of_cells_in_assignment_order():
    cells = eight_cells()
    assert schedule(cells, ["h1", "h2"]) == {"h1": [1, 2, 3, 4], "h2": [5, 6, 7, 8]}
    assert schedule(cells, ["h1", "h2", "h3"]) == {"h1": [1, 2, 3], "h2": [4, 5, 6], "h3": [7, 8]}
    assert schedule(cells, ["h1"]) == {"h1": [1, 2, 3, 4, 5, 6, 7, 8]}
    assert schedule(cells[:1], ["h1", "h2"]) == {"h1": [1], "h2": []}
    assert schedule(cells[5:], ["h1", "h2"]) == {"h1": [6, 7], "h2": [8]}, "what is left of a sweep"


def test_a_host_takes_its_own_cells_first_then_the_end_of_the_longest_queue():
    assignment_of = {c.cell: c.assignment for c in eight_cells()}
    queues = {"h1": [3, 5], "h2": [6, 7, 8]}
    assert next_cell(queues, "h1", 1, assignment_of) == 5, "the models it holds, first"
    assert next_cell(queues, "h1", 1, assignment_of) == 3
    assert next_cell(queues, "h1", 0, assignment_of) == 8, "the other's last cell to start"
    assert queues == {"h1": [], "h2": [6, 7]}
    queues = {"h1": [], "h2": [4, 5], "h3": [1, 2, 6]}
    assert next_cell(queues, "h1", 0, assignment_of) == 4, "of the models it holds, if one is left"
    assert next_cell(queues, "h1", None, assignment_of) == 6
    assert next_cell({"h1": [2], "h2": []}, "h1", None, assignment_of, {2: {"h1"}}) is None, "failed here"
    assert next_cell({"h1": [2], "h2": []}, "h2", None, assignment_of, {2: {"h1"}}) == 2


def test_a_sweep_file_resolves_topics_seeds_and_each_cells_shape(tmp_path: Path):
    (tmp_path / "essay.md").write_text("An essay on memory.\n", encoding="utf-8")
    path = write(tmp_path, topics=["essay.md", "Is a diary a memory?"], seeds=[3], set={"b.num_ctx": 8192})
    sweep = load_sweep(path)
    assert sweep.topics == ["An essay on memory.\n", "Is a diary a memory?"]
    assert sweep.turns == 4 and sweep.hosts == ["http://gpu1:11434"]
    shape = sweep.cell_shape(PAIRS[1], 3)
    assert [(p.model, p.options.seed, p.options.num_ctx) for p in shape.participants] == [
        ("llama3.2:3b", 3, None),
        ("qwen3:32b", 3, 8192),
    ]
    assert load_sweep(write(tmp_path, repeats=2)).seeds == [None, None]
    assert load_sweep(write(tmp_path)).seeds == [None], "one cell per topic by default"


def test_the_sweep_id_follows_what_the_cells_hold_not_the_pool(tmp_path: Path):
    first = load_sweep(write(tmp_path, seeds=[1])).sweep_id
    assert first.startswith("grid-")
    assert load_sweep(write(tmp_path, seeds=[1])).sweep_id == first, "the same file, the same sweep"
    moved = write(
        tmp_path, seeds=[1], hosts=["http://gpu2:11434", "http://gpu3:11434"], max_per_host=2, timeout_s=900
    )
    assert load_sweep(moved).sweep_id == first
    assert load_sweep(write(tmp_path, seeds=[2])).sweep_id != first
    assert load_sweep(write(tmp_path, seeds=[1], topics=["Another topic."])).sweep_id != first


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"seeds": [1], "repeats": 2}, "(top level): give seeds or repeats, not both"),
        ({"max_per_host": 0}, "max_per_host: should be at least 1"),
        ({"models": []}, "models: List should have at least 1 item after validation, not 0"),
        (
            {"set": {"c.num_ctx": 1}},
            "set.c.num_ctx: no participant 'c' in shape 'duet'; its participants are a, b",
        ),
        ({"set": {"num_ctx": 1}}, "set: 'num_ctx' is not NAME.KEY, e.g. b.num_ctx"),
        (
            {"set": {"b.num_ctx": "big"}},
            "models.0 with set: --set b.num_ctx=big: num_ctx should be a whole number",
        ),
        ({"shape": "nope"}, "shape: no shape"),
        ({"topics": ["notes/essay"]}, "topics.0: notes/essay: no such file"),
        (
            {"hosts": ["http://gpu1:11434", "gpu1"]},
            "hosts: each host once, got http://gpu1:11434, http://gpu1:11434",
        ),
        ({"hosts": [{"host": "http://gpu1:11434", "ray": "x"}]}, "hosts.0.ray: unknown field"),
    ],
)
def test_a_bad_sweep_file_is_one_line_naming_the_field(tmp_path: Path, data: dict[str, Any], problem: str):
    path = write(tmp_path, **data)
    with pytest.raises(ShapeError) as caught:
        load_sweep(path)
    assert str(caught.value).startswith(f"{path}: {problem}")
    assert "\n" not in str(caught.value)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def progress(done: int, running: int, tokens: int, eta_s: float | None = None) -> SweepProgress:
    return SweepProgress(total=8, done=done, failed=1, running=running, tokens=tokens, eta_s=eta_s)


def test_the_progress_line_is_redrawn_on_a_terminal_and_a_line_per_change_elsewhere():
    assert progress_text(progress(3, 2, 12345, 130.4)) == (
        "cells 3/8 done · 1 failed · 2 running · 12,345 tokens · ETA 2m10s"
    )
    assert progress_text(progress(8, 0, 20, 0.0)) == "cells 8/8 done · 1 failed · 0 running · 20 tokens"
    plain = io.StringIO()
    line = ProgressLine(plain)
    for p in (progress(0, 1, 0), progress(0, 1, 5), progress(1, 1, 9, 42.0)):
        line.show(p)
    line.end()
    assert plain.getvalue() == (
        "duologue: cells 0/8 done · 1 failed · 1 running · 0 tokens\n"
        "duologue: cells 1/8 done · 1 failed · 1 running · 9 tokens · ETA 42s\n"
    ), "a log gets a line when a cell starts or ends, not on every turn"
    terminal = Terminal()
    line = ProgressLine(terminal)
    line.show(progress(0, 1, 0))
    line.show(progress(1, 0, 9))
    line.end()
    assert terminal.getvalue() == (
        "\r\x1b[2Kcells 0/8 done · 1 failed · 1 running · 0 tokens"
        "\r\x1b[2Kcells 1/8 done · 1 failed · 0 running · 9 tokens\n"
    )


def test_one_url_may_stand_for_several_ray_nodes_own_servers_each_named_by_its_node(tmp_path: Path):
    beside = [
        {"host": "http://127.0.0.1:11434", "ray_resource": "gpu-box-1"},
        {"host": "http://127.0.0.1:11434", "ray_resource": "gpu-box-2"},
        "http://gpu3:11434",
    ]
    sweep = load_sweep(write(tmp_path, hosts=beside))
    assert sweep.pool == {
        "http://127.0.0.1:11434#gpu-box-1": "http://127.0.0.1:11434",
        "http://127.0.0.1:11434#gpu-box-2": "http://127.0.0.1:11434",
        "http://gpu3:11434": "http://gpu3:11434",
    }
    assert sweep.ray_resources == {
        "http://127.0.0.1:11434#gpu-box-1": "gpu-box-1",
        "http://127.0.0.1:11434#gpu-box-2": "gpu-box-2",
    }
    twice = [{"host": "http://127.0.0.1:11434", "ray_resource": "gpu-box-1"}, "http://127.0.0.1:11434"]
    with pytest.raises(ShapeError, match="each host once.*needs each entry's ray_resource"):
        load_sweep(write(tmp_path, hosts=twice))


def test_a_sweep_file_that_is_no_yaml_mapping_is_one_line_as_a_shape_files_is(tmp_path: Path):
    path = tmp_path / "grid.yaml"
    for text, problem in (
        ("shape: [unclosed\n", "line 2 is not valid YAML"),
        ("- a\n", "a sweep file must be a mapping of fields, got list"),
    ):
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ShapeError) as caught:
            load_sweep(path)
        assert str(caught.value).startswith(f"{path}:") and problem in str(caught.value)
