"""The Sweeps page through AppTest: the picker, the grid of cells whole (status, models, topic,
seed, host, numbers, verdict, the link into each run), a cell no process holds, the charts' data,
and a topic with markup shown as text. The sweep is written by hand (support.sweeps)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from support import ROOT
from support.markup import armed, page_markdown, visible
from support.sweeps import DIARY, GLM, LLAMA, MARKUP, QWEN, RUNS, written_sweep

from graphs.records.store import RunWriter

APP = str(ROOT / "ui" / "app.py")


@pytest.fixture
def sweep(runs_dir: Path, tmp_path: Path, monkeypatch) -> tuple[str, RunWriter]:
    """The sweep of support.sweeps, and the writer of its running cell (held only inside a `with`)."""
    monkeypatch.setenv("DUOLOGUE_RUNS_DIR", str(runs_dir))
    sweep_id, writers = written_sweep(runs_dir, tmp_path)
    return sweep_id, writers[3]


def sweeps_page(sweep_id: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    if sweep_id:
        at.query_params["sweep"] = sweep_id
    at.switch_page("views/sweeps.py").run()
    assert not at.exception, at.exception
    assert not [m for m in page_markdown(at) if armed(m)]
    return at


def grid(at: AppTest) -> list[dict[str, object]]:
    [frame] = at.dataframe
    return [
        {k: (None if pd.isna(v) else v) for k, v in row.items()} for row in frame.value.to_dict("records")
    ]


def row(
    cell: int, status: str, a: str, topic: str, turns: str | None = "1/4", **more: object
) -> dict[str, object]:
    run_id = RUNS[cell][0] if cell in RUNS else None
    return {
        "cell": cell, "status": status, "models": f"a={a} · b={QWEN}", "topic": topic, "seed": 7,
        "host": "http://127.0.0.1:9" if run_id else None, "turns": turns, "tokens": 40 if run_id else None,
        "tok/s": f"{a} {RUNS[cell][2]:g}" if run_id else None, "minutes": 0.0 if run_id else None,
        "flags": None, "verdict": None, "run": f"run?run={run_id}" if run_id else None,
    } | more  # fmt: skip


def test_the_grid_has_every_cell_with_its_status_numbers_verdict_and_link(sweep: tuple[str, RunWriter]):
    sweep_id, running = sweep
    with running.lock():
        at = sweeps_page()
    assert at.selectbox(key="sweep-picked").value == sweep_id
    assert list(at.dataframe[0].value.columns) == [
        "cell", "run", "status", "models", "topic", "seed", "turns", "tokens", "tok/s", "minutes", "verdict",
        "flags", "host",
    ]  # fmt: skip
    assert at.selectbox(key="sweep-picked").options == [f"{sweep_id} · 3 runs · from 2026-12-01 10:00 UTC"]
    topic_line = MARKUP  # the topic's first line, as text: the grid reads no Markdown
    assert grid(at) == [
        row(1, "completed", GLM, DIARY, verdict="converged"),
        row(2, "completed", GLM, topic_line, verdict="contested"),
        row(3, "running", LLAMA, DIARY),
        row(4, "pending", LLAMA, topic_line, turns=None),
    ]
    assert [visible(m.value) for m in at.markdown if "cells:" in visible(m.value)] == [
        "4 cells: 2 completed, 1 pending, 1 running"
    ]
    assert at.query_params["sweep"] == sweep_id


def test_once_the_cell_is_no_longer_held_it_shows_stopped(sweep: tuple[str, RunWriter]):
    sweep_id, _ = sweep
    at = sweeps_page(sweep_id)
    assert [r["status"] for r in grid(at)] == ["completed", "completed", "stopped", "pending"]


def test_the_charts_draw_each_cells_rate_and_the_verdicts_per_pair(sweep: tuple[str, RunWriter]):
    from graphs import sweep_report
    from graphs.ui.sweeping import rates_frame, verdicts_frame

    sweep_id, _ = sweep
    report = sweep_report(sweep_id)
    assert rates_frame(report).to_dict("records") == [
        {"model": GLM, "tok/s": 30.0, "cell": 1, "pair": f"a={GLM} · b={QWEN}"},
        {"model": GLM, "tok/s": 25.0, "cell": 2, "pair": f"a={GLM} · b={QWEN}"},
        {"model": LLAMA, "tok/s": 50.0, "cell": 3, "pair": f"a={LLAMA} · b={QWEN}"},
    ]
    assert verdicts_frame(report).to_dict("records") == [
        {"pair": f"a={GLM} · b={QWEN}", "verdict": "contested", "cells": 1},
        {"pair": f"a={GLM} · b={QWEN}", "verdict": "converged", "cells": 1},
    ]
    at = sweeps_page(sweep_id)
    charts = [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]
    titles = [chart.get("title") or chart["layer"][0]["title"] for chart in charts]
    assert titles == ["Tok/s per model, each cell a point", "Verdicts per model pair"]


def test_no_sweep_says_how_to_start_one(runs_dir: Path, monkeypatch):
    monkeypatch.setenv("DUOLOGUE_RUNS_DIR", str(runs_dir))
    at = sweeps_page()
    assert [visible(i.value) for i in at.info] == [f"No sweeps in {runs_dir} yet."]


def test_a_sweep_named_in_the_url_that_is_not_there_is_one_line(sweep: tuple[str, RunWriter], runs_dir: Path):
    sweep_id, _ = sweep
    at = sweeps_page("no-such-sweep")
    assert [visible(e.value) for e in at.error] == [f"No sweep no-such-sweep in {runs_dir}."]
    assert at.selectbox(key="sweep-picked").value == sweep_id
