"""The page's insight: a run's Analysis section, the Compare page, and import by upload (AppTest).

The reference transcript (tests/support/data/seed-dialogue.md) is imported into a temporary
runs folder, as `duologue import` would, and the page is read as a reader would read it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from support import ROOT
from support.markup import armed, visible

from graphs import RunStore, import_transcript

APP = str(ROOT / "ui" / "app.py")
SEED = ROOT / "tests" / "support" / "data" / "seed-dialogue.md"


@pytest.fixture
def page_env(runs_dir: Path, monkeypatch) -> Path:
    monkeypatch.setenv("DUOLOGUE_RUNS_DIR", str(runs_dir))
    return runs_dir


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info]
    return "\n".join(visible(part) for part in parts)


def assert_page_ok(at: AppTest) -> None:
    assert not at.exception, at.exception
    failed = [visible(e.value) for e in at.error if visible(e.value).startswith("The page failed")]
    assert not failed, failed


def imported(runs_dir: Path, path: Path = SEED) -> str:
    return import_transcript(path, runs_dir).run_id


def open_run(run_id: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/run.py")
    at.query_params["run"] = run_id
    at.run()
    assert_page_ok(at)
    return at


def frame(at: AppTest, first_column: str) -> list[dict]:
    """The rows of the one table whose first column is `first_column`."""
    [table] = [d.value for d in at.dataframe if list(d.value.columns)[:1] == [first_column]]
    return table.to_dict("records")


def test_an_imported_runs_analysis_shows_verdict_lineage_and_attribution(page_env: Path):
    run_id = imported(page_env)
    at = open_run(run_id)
    shown = texts(at)
    assert "**Converged** · 7 agreement(s) and concession(s), 1 challenge(s)" in shown
    assert "GLM-4.7-Flash asked 5 questions, Qwen3:32B 2." in shown
    phrases = frame(at, "phrase")
    [coherence] = [row for row in phrases if row["phrase"] == "fiction of coherence"]
    assert coherence == {
        "phrase": "fiction of coherence",
        "first by": "Qwen3:32B",
        "in turn": 2,
        "taken up by": "GLM-4.7-Flash",
        "turns": "2, 3",
    }
    speakers = frame(at, "speaker")
    assert [row["speaker"] for row in speakers] == ["GLM-4.7-Flash", "Qwen3:32B"]
    attribution = frame(at, "claim")
    assert attribution[0]["attributed to"] == "GLM-4.7-Flash"
    assert attribution[0]["in their turns"] == "found"
    assert "reweaving the same tapestry" in attribution[0]["quote"]
    assert {row["in their turns"] for row in attribution} == {"found", "not found"}
    # The page saved what it showed, as `duologue analyze` would.
    saved = json.loads((page_env / run_id / "analysis.json").read_text())
    assert saved["verdict"] == "converged"


def test_the_analysis_is_made_again_when_the_transcript_changed(page_env: Path):
    run_id = imported(page_env)
    open_run(run_id)
    analysis = page_env / run_id / "analysis.json"
    stale = json.loads(analysis.read_text())
    stale["verdict"], stale["verdict_reason"] = "contested", "planted"
    analysis.write_text(json.dumps(stale))
    assert "**Contested** · planted" in texts(open_run(run_id))  # the saved one, the transcript unchanged
    transcript = page_env / run_id / "transcript.md"
    later = analysis.stat().st_mtime + 5
    os.utime(transcript, (later, later))
    assert "**Converged** ·" in texts(open_run(run_id))
    assert json.loads(analysis.read_text())["verdict"] == "converged"


def test_observer_notes_are_shown_escaped(page_env: Path, tmp_path: Path):
    notes = "They agreed fast. <img src=x onerror=alert(1)> ![t](http://x.invalid/t.png) for $5 or $10."
    seeded = tmp_path / "observed.md"
    heading = "## Observer's Notes (Nox, Opus 4.6)\n"
    seeded.write_text(SEED.read_text().replace(heading, f"## Observer's Notes (The *Critic*)\n\n{notes}\n"))
    at = open_run(imported(page_env, seeded))
    raw = [m.value for m in at.markdown]
    assert any("Observer's notes (The \\*Critic\\*)" in m for m in raw)
    assert any("They agreed fast." in visible(m) for m in raw)
    assert not [m for m in raw if armed(m)], [m for m in raw if armed(m)]


def test_a_run_with_no_finished_turn_says_so(page_env: Path):
    run_id = imported(page_env)
    (page_env / run_id / "transcript.md").write_text("")
    (page_env / run_id / "trace.jsonl").write_text("")
    at = open_run(run_id)
    assert "No finished turn yet, so nothing to analyze." in texts(at)


def test_compare_two_runs_from_the_url_and_from_the_runs_page(page_env: Path):
    first, second = imported(page_env), imported(page_env)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/compare.py")
    at.query_params["runs"] = f"{first},{second}"
    at.run()
    assert_page_ok(at)
    rows = {row[""]: row for row in frame(at, "")}
    assert rows["verdict"] == {"": "verdict", first: "converged", second: "converged"}
    assert rows["models"][first] == "GLM-4.7-Flash, Qwen3:32B"
    assert rows["questions"][second] == "GLM-4.7-Flash 5, Qwen3:32B 2"
    assert list(rows) == [
        "shape", "status", "models", "turns", "tokens", "tok/s", "flags", "verdict",
        "questions", "challenges", "hedges/100w", "echo",
    ]  # fmt: skip

    # The Runs page: compare mode, two rows selected, Compare.
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/runs.py").run()
    at.toggle(key="compare-mode").set_value(True).run()
    assert at.button(key="compare-selected").disabled
    at.session_state[at.dataframe[0].key] = {"selection": {"rows": [0, 1], "columns": []}}
    at.run()
    assert_page_ok(at)
    assert at.button(key="compare-selected").label == "Compare 2 runs"


def test_compare_a_run_that_is_not_one_is_one_line(page_env: Path):
    first = imported(page_env)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/compare.py")
    at.query_params["runs"] = f"{first},../outside"
    at.run()
    assert_page_ok(at)
    assert [visible(e.value) for e in at.error] == [f"No such run in {page_env}: ../outside"]


def test_upload_a_transcript_opens_the_new_run_and_a_bad_one_is_one_line(page_env: Path):
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/runs.py").run()
    assert_page_ok(at)
    for name, data, said in [
        ("latin.md", "# T\n\né".encode("latin-1"), "latin.md: line 3: not UTF-8 text; save it as UTF-8"),
        ("binary.md", b"\x00\x01", "binary.md: a binary file, not a Markdown transcript"),
        ("empty.md", b"# Just a title\n\nno turns here\n", "empty.md: no turns found; expected headings"),
    ]:
        at.file_uploader(key="import-file").set_value((name, data, "text/markdown")).run()
        assert_page_ok(at)
        [error] = at.error
        assert visible(error.value).startswith(said), visible(error.value)
        assert "duologue-import-" not in visible(error.value)
    assert RunStore(page_env).list() == []
    at.file_uploader(key="import-file").set_value(("seed.md", SEED.read_bytes(), "text/markdown")).run()
    assert_page_ok(at)
    [run] = RunStore(page_env).list()
    assert at.query_params["run"] == [run.meta.run_id] or at.query_params.get("run") == run.meta.run_id
    assert "**Converged** ·" in texts(at)
