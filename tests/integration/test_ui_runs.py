"""The Runs page and the run picker through AppTest: whole ids, filters, search, Compare's 2–4
rule, delete with a confirming click, and the picker's labels; and the Shapes page's files.

Runs are written by hand into a temporary runs folder ($DUOLOGUE_RUNS_DIR), so each has the
shape, models, status, flags, date, topic and transcript a test filters on.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from support import ROOT
from support.duet import duet_models
from support.fakeollama import fake_ollama
from support.markup import armed, page_markdown, visible
from support.records import written_run

from graphs import (
    RunRequest,
    RunStore,
    RunSummary,
    builtin_shape_names,
    builtin_shape_text,
    load_shape,
    with_overrides,
)
from graphs.ui import common

APP = str(ROOT / "ui" / "app.py")
# Newest first, as the page lists them.
DUET = "20261201-101500-duet-0a1b2c3d"
DEBATE = "20261120-093000-debate-1b2c3d4e"
PANEL = "20261110-180000-panel-2c3d4e5f"
OLD_DUET = "20261001-070000-duet-3d4e5f60"
IMPORTED = "20260915-120000-imported-4e5f6071"
EVERY_RUN = [DUET, DEBATE, PANEL, OLD_DUET, IMPORTED]


@pytest.fixture
def page_env(runs_dir: Path, monkeypatch) -> Path:
    monkeypatch.setenv("DUOLOGUE_RUNS_DIR", str(runs_dir))
    return runs_dir


@pytest.fixture
def five_runs(page_env: Path) -> Path:
    written_run(
        page_env, DUET, "duet", ["glm-4.7-flash", "qwen3:32b"], "completed", "2026-12-01T10:15:00.000Z",
        "Inherited memory: who owes what to a predecessor?\nThe essay follows.",
        "# duet\n\n## Turn 1\n\nA keeper of the Lighthouse owes the ships nothing.\n",
        gpu_fraction=0.5,
    )  # fmt: skip
    written_run(
        page_env, DEBATE, "debate", ["llama3.1:8b", "qwen3:32b"], "failed", "2026-11-20T09:30:00.000Z",
        "Is free will compatible with physics?",
        "# debate\n\n## Turn 1\n\nDeterminism is the point.\n",
    )  # fmt: skip
    written_run(
        page_env, PANEL, "panel", ["gemma3:12b"], "interrupted", "2026-11-10T18:00:00.000Z",
        "Cities after cars", "# panel\n\n## Turn 1\n\nStreets are for people.\n",
        truncated=True,
    )  # fmt: skip
    written_run(
        page_env, OLD_DUET, "duet", ["glm-4.7-flash"], "completed", "2026-10-01T07:00:00.000Z",
        "A " + "very " * 30 + "long topic", "# duet\n\n## Turn 1\n\nNothing of note.\n",
        gpu_fraction=0.0, done_reason="length",
    )  # fmt: skip
    written_run(
        page_env, IMPORTED, "imported", ["Opus 4.6"], "imported", "2026-09-15T12:00:00.000Z",
        "Free will, the seed dialogue", "# imported\n\n## Turn 1\n\nWe converge.\n",
    )  # fmt: skip
    return page_env


def assert_page_ok(at: AppTest) -> None:
    assert not at.exception, at.exception
    failed = [visible(e.value) for e in at.error if visible(e.value).startswith("The page failed")]
    assert not failed, failed
    armed_markdown = [markdown for markdown in page_markdown(at) if armed(markdown)]
    assert not armed_markdown, armed_markdown


def runs_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/runs.py").run()
    assert_page_ok(at)
    return at


def shown(at: AppTest) -> list[str]:
    """The run ids in the table, top to bottom; none when no table is shown."""
    return list(at.dataframe[0].value["run"]) if at.dataframe else []


def caption(at: AppTest) -> str:
    [line] = [visible(c.value) for c in at.caption if visible(c.value).startswith("Showing ")]
    return line


def select(at: AppTest, *run_ids: str) -> AppTest:
    """Select these rows in the table, in select mode, as a click on each would."""
    if not at.toggle(key="compare-mode").value:
        at.toggle(key="compare-mode").set_value(True).run()
    rows = [shown(at).index(run_id) for run_id in run_ids]
    at.session_state[at.dataframe[0].key] = {"selection": {"rows": rows, "columns": []}}
    at.run()
    assert_page_ok(at)
    return at


# ---- the table ---------------------------------------------------------------------------------


def test_the_table_shows_whole_run_ids_and_each_topics_first_line(five_runs: Path):
    at = runs_page()
    table = at.dataframe[0].value
    assert list(table.columns) == [
        "run", "started", "shape", "models", "status", "flags", "topic", "turns", "tokens", "generation s",
    ]  # fmt: skip
    assert list(table["run"]) == EVERY_RUN
    assert list(table["topic"]) == [
        "Inherited memory: who owes what to a predecessor?",
        "Is free will compatible with physics?",
        "Cities after cars",
        "A very very very very very very very very very very very ve…",
        "Free will, the seed dialogue",
    ]
    assert list(table["flags"]) == ["CPU", "", "truncated", "CPU, cut by length", ""]
    assert caption(at) == f"Showing 5 of 5 runs in {five_runs}, newest first. Select a row to open that run."


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("runs-shape", ["debate"], [DEBATE]),
        ("runs-shape", ["duet", "panel"], [DUET, PANEL, OLD_DUET]),
        ("runs-model", ["qwen3:32b"], [DUET, DEBATE]),
        ("runs-model", ["gemma3:12b", "Opus 4.6"], [PANEL, IMPORTED]),
        ("runs-status", ["completed"], [DUET, OLD_DUET]),
        ("runs-status", ["failed", "interrupted"], [DEBATE, PANEL]),
        ("runs-flag", ["CPU"], [DUET, OLD_DUET]),
        ("runs-flag", ["truncated", "cut by length"], [PANEL, OLD_DUET]),
        ("runs-dates", (date(2026, 11, 1), date(2026, 11, 30)), [DEBATE, PANEL]),
        ("runs-dates", (date(2026, 11, 20), date(2026, 12, 1)), [DUET, DEBATE]),
        ("runs-dates", (date(2026, 11, 10),), [DUET, DEBATE, PANEL]),
    ],
)
def test_each_filter_narrows_the_rows(five_runs: Path, key: str, value: object, expected: list[str]):
    at = runs_page()
    widget = at.date_input(key=key) if key == "runs-dates" else at.multiselect(key=key)
    widget.set_value(value).run()
    assert_page_ok(at)
    assert shown(at) == expected
    assert caption(at).startswith(f"Showing {len(expected)} of 5 runs in {five_runs}, newest first.")


def test_each_filter_offers_what_the_runs_hold(five_runs: Path):
    at = runs_page()
    assert at.multiselect(key="runs-shape").options == ["debate", "duet", "imported", "panel"]
    assert at.multiselect(key="runs-model").options == [
        "Opus 4.6", "gemma3:12b", "glm-4.7-flash", "llama3.1:8b", "qwen3:32b",
    ]  # fmt: skip
    assert at.multiselect(key="runs-status").options == ["completed", "failed", "imported", "interrupted"]
    assert at.multiselect(key="runs-flag").options == ["CPU", "cut by length", "truncated"]


def test_filters_combine_and_none_left_says_so(five_runs: Path):
    at = runs_page()
    at.multiselect(key="runs-shape").set_value(["duet"]).run()
    at.multiselect(key="runs-flag").set_value(["cut by length"]).run()
    assert shown(at) == [OLD_DUET]
    at.multiselect(key="runs-status").set_value(["failed"]).run()
    assert_page_ok(at)
    assert shown(at) == []
    assert caption(at).startswith(f"Showing 0 of 5 runs in {five_runs}")
    assert [visible(i.value) for i in at.info] == ["No run matches these filters."]


def test_the_filters_are_kept_while_the_reader_visits_a_run(five_runs: Path):
    at = runs_page()
    at.text_input(key="runs-search").set_value("free will").run()
    at.multiselect(key="runs-status").set_value(["failed"]).run()
    assert shown(at) == [DEBATE]
    at.switch_page("views/run.py")
    at.query_params["run"] = DEBATE
    at.run()
    assert_page_ok(at)
    at.query_params.clear()
    at.switch_page("views/runs.py").run()
    assert_page_ok(at)
    assert shown(at) == [DEBATE]
    assert (at.text_input(key="runs-search").value, at.multiselect(key="runs-status").value) == (
        "free will", ["failed"],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ("lighthouse", [DUET]),  # only in DUET's transcript, capitalised there
        ("FREE WILL", [DEBATE, IMPORTED]),  # in two topics
        ("the essay follows", [DUET]),  # a topic's second line, which the table does not show
        ("streets are", [PANEL]),
        ("no run says this", []),
    ],
)
def test_search_finds_text_in_topics_and_transcripts(five_runs: Path, search: str, expected: list[str]):
    at = runs_page()
    at.text_input(key="runs-search").set_value(search).run()
    assert_page_ok(at)
    assert shown(at) == expected
    assert caption(at).startswith(f"Showing {len(expected)} of 5 runs")


def test_transcripts_are_read_only_for_a_search_and_only_of_runs_the_filters_kept(
    five_runs: Path, monkeypatch
):
    read: list[str] = []
    transcript = RunSummary.transcript

    def counted(run: RunSummary) -> str:
        read.append(run.run_id)
        return transcript(run)

    monkeypatch.setattr(RunSummary, "transcript", counted)
    at = runs_page()
    at.multiselect(key="runs-shape").set_value(["duet"]).run()
    assert shown(at) == [DUET, OLD_DUET] and read == []
    at.text_input(key="runs-search").set_value("nothing of note").run()
    assert shown(at) == [OLD_DUET]
    assert set(read) == {DUET, OLD_DUET}


# ---- select: compare ---------------------------------------------------------------------------


def compare_state(at: AppTest) -> tuple[str, bool, list[str]]:
    button = at.button(key="compare-selected")
    hints = [visible(c.value) for c in at.caption if "elect" in visible(c.value) and "Showing" not in c.value]
    return button.label, button.disabled, hints


def test_compare_takes_two_to_four_runs_and_says_so_otherwise(five_runs: Path):
    at = runs_page()
    at.toggle(key="compare-mode").set_value(True).run()
    assert compare_state(at) == ("Compare", True, ["Select 2 to 4 runs to compare them side by side."])
    assert compare_state(select(at, PANEL)) == (
        "Compare", True, ["1 run selected: select at least one more to compare (up to 4)."],
    )  # fmt: skip
    assert compare_state(select(at, *EVERY_RUN)) == (
        "Compare", True, ["5 runs selected: the Compare page takes at most 4; unselect 1 to compare."],
    )  # fmt: skip
    assert compare_state(select(at, DUET, DEBATE, PANEL, OLD_DUET)) == ("Compare 4 runs", False, [])
    assert compare_state(select(at, DUET, PANEL)) == ("Compare 2 runs", False, [])
    at.button(key="compare-selected").click().run()
    assert_page_ok(at)
    assert [t.value for t in at.title] == ["Compare"]
    assert at.multiselect(key="compare-runs").value == [DUET, PANEL]


def test_a_selection_does_not_outlive_the_rows_it_was_made_on(five_runs: Path):
    # Rows are selected by their place in the table; a filter that changes the rows drops it.
    at = select(runs_page(), DUET, DEBATE)
    assert at.button(key="compare-selected").label == "Compare 2 runs"
    at.multiselect(key="runs-status").set_value(["completed", "failed", "interrupted"]).run()
    assert shown(at) == [DUET, DEBATE, PANEL, OLD_DUET]
    assert compare_state(at)[:2] == ("Compare", True)


# ---- select: delete ----------------------------------------------------------------------------


def confirmation(at: AppTest) -> list[str]:
    return [visible(w.value) for w in at.warning]


def test_delete_asks_first_then_removes_the_folder_and_the_row(five_runs: Path):
    at = select(runs_page(), PANEL)
    assert at.button(key="delete-selected").label == "Delete 1 run…"
    at.button(key="delete-selected").click().run()
    assert_page_ok(at)
    assert confirmation(at) == [f"Delete run {PANEL} for good? Its folder goes, with every record in it."]
    assert (five_runs / PANEL).is_dir()  # asking deletes nothing

    at.button(key="delete-cancel").click().run()  # "Keep it"
    assert_page_ok(at)
    assert confirmation(at) == [] and (five_runs / PANEL).is_dir()
    assert shown(at) == EVERY_RUN

    at.button(key="delete-selected").click().run()
    at.button(key="delete-confirm").click().run()
    assert_page_ok(at)
    assert not (five_runs / PANEL).exists()
    assert shown(at) == [DUET, DEBATE, OLD_DUET, IMPORTED]
    assert [visible(s.value) for s in at.success] == [f"Deleted 1 run: {PANEL}"]
    assert caption(at).startswith("Showing 4 of 4 runs")
    assert at.button(key="delete-selected").label == "Delete…"  # nothing is selected in the new table
    assert sorted(path.name for path in five_runs.iterdir() if path.is_dir()) == sorted(
        [DUET, DEBATE, OLD_DUET, IMPORTED]
    )


def test_delete_several_names_them_and_a_postgres_run_says_its_rows_stay(five_runs: Path):
    run_json = five_runs / DEBATE / "run.json"
    meta = RunStore(five_runs).load(DEBATE).meta
    hidden = "postgresql://duo:***@127.0.0.1:5432/duologue"
    run_json.write_text(meta.model_copy(update={"checkpoint_store": hidden}).model_dump_json())
    at = select(runs_page(), DEBATE, IMPORTED)
    at.button(key="delete-selected").click().run()
    assert_page_ok(at)
    assert confirmation(at) == [
        f"Delete these 2 runs for good? Their folders go, with every record in them: {DEBATE}, {IMPORTED}."
    ]
    assert [visible(c.value) for c in at.caption if c.value.startswith("Run ")] == [
        f"Run {DEBATE} keeps its checkpoints in Postgres ({hidden}): its rows stay in that database."
    ]
    at.button(key="delete-confirm").click().run()
    assert shown(at) == [DUET, PANEL, OLD_DUET]
    assert [visible(s.value) for s in at.success] == [f"Deleted 2 runs: {DEBATE}, {IMPORTED}"]


def test_a_confirmation_is_for_the_runs_it_named(five_runs: Path):
    at = select(runs_page(), PANEL)
    at.button(key="delete-selected").click().run()
    select(at, PANEL, OLD_DUET)  # the selection changed under the question
    assert confirmation(at) == []
    assert sorted(path.name for path in five_runs.iterdir() if path.is_dir()) == sorted(EVERY_RUN)


def test_delete_refuses_a_run_another_process_drives_in_one_line(five_runs: Path):
    at = select(runs_page(), DUET, PANEL)
    at.button(key="delete-selected").click().run()
    with RunStore(five_runs).reopen(DUET).lock():  # what the process driving a run holds
        at.button(key="delete-confirm").click().run()
    assert_page_ok(at)
    assert [visible(e.value) for e in at.error] == [
        f"Not deleted: run {DUET} is being driven by process {os.getpid()}; stop it or let it finish, "
        "then delete it"
    ]
    assert [visible(s.value) for s in at.success] == [f"Deleted 1 run: {PANEL}"]
    assert (five_runs / DUET / "run.json").is_file()
    assert shown(at) == [DUET, DEBATE, OLD_DUET, IMPORTED]


def wait_until(predicate: Callable[[], object], timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_delete_refuses_a_run_this_page_is_driving(page_env: Path):
    gate = threading.Event()  # turn 1 sends nothing until the test lets it
    with fake_ollama(duet_models(), hold_first_token=(1, gate)) as (server, _backend):
        shape = with_overrides(load_shape("duet"), {"a": "glm-4.7-flash", "b": "qwen3:32b"}, [])
        request = RunRequest(shape, "t", 2, {"a": server.url, "b": server.url}, runs_dir=page_env)
        live = common.registry().launch(request)
        try:
            wait_until(lambda: (page_env / live.run_id / "run.json").is_file(), what="the run's folder")
            at = select(runs_page(), live.run_id)
            at.button(key="delete-selected").click().run()
            at.button(key="delete-confirm").click().run()
            assert_page_ok(at)
            assert [visible(e.value) for e in at.error] == [
                f"Not deleted: run {live.run_id} is running from this page; stop it on its page, then delete it."
            ]
            assert (page_env / live.run_id / "run.json").is_file()
        finally:
            gate.set()
        wait_until(lambda: live.done, what="the run to end")


# ---- the run picker ----------------------------------------------------------------------------


def test_the_run_picker_names_each_runs_models_topic_and_start(five_runs: Path):
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/run.py").run()
    assert_page_ok(at)
    assert [visible(link.value) for link in at.page_link] == [
        f"{DUET} · :green[:material/check_circle:] completed · glm-4.7-flash, qwen3:32b · "
        "Inherited memory: who owes what to a predecessor? · 2026-12-01 10:15 UTC",
        f"{DEBATE} · :red[:material/error:] failed · llama3.1:8b, qwen3:32b · "
        "Is free will compatible with physics? · 2026-11-20 09:30 UTC",
        f"{PANEL} · :orange[:material/stop_circle:] interrupted · gemma3:12b · Cities after cars · "
        "2026-11-10 18:00 UTC",
        f"{OLD_DUET} · :green[:material/check_circle:] completed · glm-4.7-flash · "
        "A very very very very very very very very very very very ve… · 2026-10-01 07:00 UTC",
        f"{IMPORTED} · imported · Opus 4.6 · Free will, the seed dialogue · 2026-09-15 12:00 UTC",
    ]
    assert [link.proto.query_string for link in at.page_link] == [f"run={run_id}" for run_id in EVERY_RUN]


# ---- the Shapes page ---------------------------------------------------------------------------


def test_the_shapes_page_wraps_each_file_rather_than_cutting_it(tmp_path: Path):
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/shapes.py").run()
    assert_page_ok(at)
    names = builtin_shape_names()
    assert [(c.value, c.language, c.proto.wrap_lines) for c in at.code] == [
        (builtin_shape_text(name).strip(), "yaml", True) for name in names
    ]
    persona = "You argue " + "and then argue again, " * 20 + "until the end."
    own = (
        f"name: mine\nparticipants:\n  - name: a\n    model: m\n    persona: {persona}\n"
        "  - name: b\n    model: n\norder: [a, b]\nturns: 4\nclosing: {speaker: next}\n"
    )
    at.file_uploader(key="own-shape").set_value(("mine.yaml", own.encode(), "text/yaml")).run()
    assert_page_ok(at)
    assert [visible(s.value) for s in at.success] == ["mine.yaml is a valid shape: mine, 2 participants."]
    assert (at.code[-1].value, at.code[-1].proto.wrap_lines) == (own.strip(), True)
    assert len(at.get("graphviz_chart")) == len(names) + 1
