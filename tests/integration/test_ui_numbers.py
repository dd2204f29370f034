"""A finished run's numbers on the page (AppTest): CPU fallback cannot be missed, and a turn's whole time.

The run: glm-4.7-flash fits the emulated 24 GB card, qwen3:32b (30 GB) spills 20% of itself to
the CPU and decodes under its min_tok_s, and thinks; a second run fails at turn 3.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from streamlit import dataframe_util
from streamlit.testing.v1 import AppTest
from support import ROOT
from support.duet import A_REPLIES, B_REPLIES
from support.fakeollama import FakeModel, fake_ollama
from support.markup import visible

from graphs import RunRecord, RunRequest, RunStore, load_shape, run_dialogue, with_overrides

APP = str(ROOT / "ui" / "app.py")
GB = 2**30
RED = "#d62728"
CPU_TURNS = [2, 4]
"""qwen3:32b's turns: 80% in VRAM, under its min_tok_s."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunRecord]:
    folder = tmp_path_factory.mktemp("numbers") / "runs"
    models: list[FakeModel | str] = [
        FakeModel("glm-4.7-flash", weights_bytes=10 * GB, gpu_tok_s=90.0, replies=A_REPLIES),
        FakeModel("qwen3:32b", weights_bytes=30 * GB, gpu_tok_s=32.0, thinks=True, replies=B_REPLIES),
    ]
    shape = with_overrides(
        load_shape("duet"),
        {"a": "glm-4.7-flash", "b": "qwen3:32b"},
        [("a", "min_tok_s", "50"), ("b", "min_tok_s", "25")],
    )
    found = {}
    for name, faults in (("spilled", {}), ("failed", {"fail_on_call": 3})):
        with fake_ollama(models, vram_bytes=24 * GB, **faults) as (server, _backend):
            request = RunRequest(
                shape,
                "t",
                4,
                {"a": server.url, "b": server.url},
                runs_dir=folder,
                residency_policy="shared",
                require_gpu=False,
            )
            try:
                run_id = run_dialogue(request).run_id
            except Exception:  # noqa: BLE001 - the failed run is the point; find it on disk
                [run_id] = [r.meta.run_id for r in RunStore(folder).list() if r.meta.status == "failed"]
        found[name] = RunStore(folder).load(run_id)
    spilled = found["spilled"]
    assert [r.turn for r in spilled.turn_records if r.degraded] == CPU_TURNS  # the premise
    assert all(r.flags[:2] == ["CPU 20%", "slow"] for r in spilled.turn_records if r.degraded)
    return found


@pytest.fixture
def page(runs: dict[str, RunRecord], monkeypatch) -> Iterator[Any]:
    def open_run(name: str) -> AppTest:
        run = runs[name]
        monkeypatch.setenv("DUOLOGUE_RUNS_DIR", str(run.folder.parent))
        at = AppTest.from_file(APP, default_timeout=60).run()
        at.switch_page("views/run.py")
        at.query_params["run"] = run.meta.run_id
        at.run()
        assert not at.exception, at.exception
        return at

    yield open_run


def trace_table(at: AppTest) -> Any:
    [table] = at.tabs[1].dataframe  # the Turns tab's
    return table


def shown_cells(table: Any) -> pd.DataFrame:
    """The table's cells as the page shows them (the Styler's display values)."""
    return dataframe_util.convert_arrow_bytes_to_pandas_df(table.proto.arrow_data.styler.display_values)


def cell_styles(table: Any) -> dict[tuple[int, int], str]:
    """(row, column) → the CSS the page gives that cell."""
    styles: dict[tuple[int, int], str] = {}
    for selectors, declarations in re.findall(r"([^{}]+)\{([^}]*)\}", table.proto.arrow_data.styler.styles):
        for row, col in re.findall(r"_row(\d+)_col(\d+)", selectors):
            key = (int(row), int(col))
            styles[key] = styles.get(key, "") + declarations.strip() + ";"
    return styles


def charts(at: AppTest) -> list[tuple[dict[str, Any], dict[str, pd.DataFrame]]]:
    """The Turns tab's charts: each one's Vega-Lite spec and its datasets by name."""
    found = []
    for chart in at.tabs[1].get("vega_lite_chart"):
        data = {
            d.name: dataframe_util.convert_arrow_bytes_to_pandas_df(d.data.data) for d in chart.proto.datasets
        }
        found.append((json.loads(chart.proto.spec), data))
    return found


def layers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("layer", [spec])


def title(spec: dict[str, Any]) -> str:
    return str(spec.get("title", ""))


# ---- CPU fallback cannot be missed ------------------------------------------------------------------


def test_a_turn_on_the_cpu_has_its_transcript_heading_in_red(page):
    at = page("spilled")
    headings = [m.value for m in at.tabs[0].markdown if m.value.startswith("### ")]
    red = {int(re.search(r"Turn (\d+)", visible(h)).group(1)) for h in headings if h.startswith("### :red[")}  # type: ignore[union-attr]
    assert red == set(CPU_TURNS)
    [second] = [visible(h) for h in headings if "Turn 2" in visible(h)]
    assert second.startswith("### :red[:material/warning: Turn 2: qwen3:32b — Response]")
    assert ":red-badge[CPU 20%]" in second and ":red-badge[slow]" in second
    assert [visible(h) for h in headings if "Turn 1" in visible(h)] == ["### Turn 1: glm-4.7-flash — Opening"]


def test_a_turn_on_the_cpu_has_its_trace_row_in_red_and_the_gpu_column_reads_good_at_100(page, runs):
    table = trace_table(page("spilled"))
    frame, shown, styles = table.value, shown_cells(table), cell_styles(table)
    columns = list(frame.columns)
    red_rows = {row for (row, _col), css in styles.items() if "background-color: rgba(214, 39, 40" in css}
    assert sorted(frame["turn"][row] for row in red_rows) == CPU_TURNS
    # Every cell of a red row is red, and its turn number and flags are in red letters.
    for row in red_rows:
        assert all("background-color" in styles.get((row, col), "") for col in range(len(columns)))
        for name in ("turn", "flags"):
            assert f"color: {RED}" in styles[(row, columns.index(name))]
    gpu = columns.index("GPU")
    assert shown["GPU"].tolist() == ["100%", "80%", "100%", "80%"]
    for row, turn in enumerate(frame["turn"]):
        css = styles[(row, gpu)]
        if turn in CPU_TURNS:  # the alarm: a red cell, whatever the row's own colour
            assert css.rstrip(";").endswith(f"background-color: {RED}; color: white; font-weight: bold")
        else:
            assert css == "color: #2e7d32; font-weight: bold;" and "background" not in css
    # The flags are never cut off: the column is as wide as its longest text needs.
    flags = json.loads(table.proto.columns)["flags"]
    assert shown["flags"].tolist()[1] == "CPU 20%, slow, thinking"
    assert flags["width"] >= 8 * len("CPU 20%, slow, thinking")


def test_every_chart_outlines_a_degraded_turns_bars_in_red(page):
    drawn = charts(page("spilled"))
    assert [title(spec) for spec, _ in drawn] == [
        "Decode speed (tok/s); dashed: each speaker's min_tok_s",
        "Tokens in and out",
        "Latency (s)",
        "Where the time went (s): placing, load, prompt, generation",
        "Timeline: each turn's placing, load, prompt and generation",
    ]
    outline = {"condition": {"test": "datum.degraded", "value": RED}, "value": "transparent"}
    for spec, data in drawn:
        bars = [layer for layer in layers(spec) if layer["mark"] in ("bar", {"type": "bar"}) or
                layer["mark"].get("type") == "bar"]  # fmt: skip
        assert bars and all(layer["encoding"]["stroke"] == outline for layer in bars), title(spec)
        [marked] = [frame for frame in data.values() if "degraded" in frame]
        assert sorted(set(marked[marked["degraded"]]["turn"])) == CPU_TURNS, title(spec)
    for spec, data in drawn[:4]:  # and a red "CPU 20%" above them, but on the timeline
        [text] = [layer for layer in layers(spec) if layer["encoding"].get("text", {}).get("field") == "mark"]
        assert text["mark"]["color"] == RED and text["transform"] == [{"filter": "datum.degraded"}]
        frame = data[(text.get("data") or spec["data"])["name"]]
        assert frame[frame["degraded"]]["mark"].tolist() == ["CPU 20%", "CPU 20%"]


def test_the_decode_speed_chart_draws_each_participants_min_tok_s(page):
    spec, data = charts(page("spilled"))[0]
    [rule] = [layer for layer in layers(spec) if layer["mark"]["type"] == "rule"]
    assert rule["encoding"]["y"]["field"] == "min tok/s" and rule["mark"]["strokeDash"]
    assert data[rule["data"]["name"]].to_dict("records") == [
        {"speaker": "glm-4.7-flash", "min tok/s": 50.0},
        {"speaker": "qwen3:32b", "min tok/s": 25.0},
    ]


def test_the_header_shows_each_models_tok_s_and_a_cpu_badge_beside_the_one_that_fell_back(page, runs):
    at = page("spilled")
    run = runs["spilled"]
    expected = {}
    for model in ("glm-4.7-flash", "qwen3:32b"):
        mine = [r for r in run.finished_records.values() if r.model == model]
        rate = sum(r.eval_count or 0 for r in mine) / (sum(r.eval_duration or 0 for r in mine) / 1e9)
        expected[f"{model} tok/s"] = f"{rate:.1f}"
    rates = {visible(m.label): m.value for m in at.metric if m.label.endswith("tok/s")}
    assert rates == expected and rates["glm-4.7-flash tok/s"] == "90.0"
    assert not [m for m in at.metric if "mean" in m.label.lower()]
    # The badge stands in the model's own column, and only in the one that fell back.
    badges = {}
    for column in at.columns:
        [metric] = column.get("metric") or [None]
        if metric is not None and visible(metric.label) in expected:
            badges[visible(metric.label)] = [visible(m.value) for m in column.get("markdown")]
    assert badges == {
        "glm-4.7-flash tok/s": [],
        "qwen3:32b tok/s": [":red-badge[:material/memory: CPU 20%]", ":red-badge[:material/speed: slow]"],
    }


# ---- the whole time of a turn -------------------------------------------------------------------------


def test_placing_preload_and_load_are_in_the_table_the_time_split_and_the_timeline(page, runs):
    at = page("spilled")
    records = runs["spilled"].turn_records
    frame = trace_table(at).value
    assert frame["placing s"].tolist() == [r.residency_s for r in records]
    assert frame["preload s"].tolist() == [r.preload_s for r in records]
    assert frame["load s"].tolist() == [r.load_s for r in records]
    assert all(r.residency_s and r.residency_s > 0 for r in records)  # placed before every turn
    drawn = charts(at)
    split = drawn[3][0]
    [bars] = [layer for layer in layers(split) if "transform" in layer and "fold" in layer["transform"][0]]
    assert bars["transform"][0]["fold"] == ["placing", "load", "prompt", "generation"]
    captions = " ".join(visible(c.value) for c in at.tabs[1].caption)
    assert "placing is duologue's own measure" in captions and "Ollama's own account" in captions
    timeline, data = drawn[4]
    [lanes] = data.values()
    assert timeline["encoding"]["y"]["field"] == "model" and timeline["encoding"]["x2"]["field"] == "to s"
    assert sorted(set(lanes["model"])) == ["glm-4.7-flash", "qwen3:32b"]  # one lane per model
    for turn, stages in lanes.groupby("turn", sort=True):
        assert stages["stage"].tolist()[:1] == ["placing"], turn
        assert stages["from s"].tolist()[1:] == stages["to s"].tolist()[:-1]  # end to end
    assert lanes["from s"].min() == 0.0


def test_a_failed_turns_missing_numbers_show_as_a_dash_never_none(page):
    table = trace_table(page("failed"))
    frame, shown = table.value, shown_cells(table)
    assert frame["turn"].tolist() == [1, 2, 3] and frame["flags"].tolist()[2].endswith("error")
    failed = shown.iloc[2].to_dict()
    for name in ("prompt tokens", "tokens", "tok/s", "load s", "done"):
        assert failed[name] == "—", name
    every = [str(value) for value in shown.to_numpy().ravel()]
    assert not [cell for cell in every if cell in ("None", "nan", "NaN", "<NA>")]


def test_a_finished_turns_thinking_opens_below_it(page, runs):
    at = page("spilled")
    records = runs["spilled"].finished_records
    transcript = at.tabs[0]
    thinking = [e for e in transcript.expander if e.label.startswith("Thinking")]
    assert [visible(e.label) for e in thinking] == [
        f"Thinking ({len(records[n].thinking or '')} characters, never relayed to the others)"
        for n in CPU_TURNS
    ]
    assert [visible(e.markdown[0].value) for e in thinking] == [records[n].thinking for n in CPU_TURNS]
    # Below its turn: after turn 2's words, before turn 3's heading.
    order = [
        ("thinking" if child.type == "expander" else visible(getattr(child, "value", "")))
        for child in transcript.children.values()
    ]
    words = order.index(B_REPLIES[0])
    assert order[words + 1] == "thinking" and order[words + 3].startswith("### Turn 3")
