"""`duologue bench`: the report's shape and the fairness of its two sides, not its timings."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from graphs.commands import bench
from graphs.commands.cli import main
from graphs.embedded.instant import start_instant
from graphs.embedded.llama_backend import EmbeddedUnavailable
from graphs.records.store import RunStore

SMALL = ["bench", "--json", "--repeat", "1", "--turns", "6"]


def test_bench_json_without_the_embedded_model_reports_every_key(capsys):
    assert main([*SMALL, "--skip-embedded"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)  # one JSON object, nothing else on stdout
    assert set(bench.KEYS) | {"rss_growth_kb_per_turn", "machine"} <= set(result)
    assert result["decode_ratio"] is None
    assert result["prompt_reeval_ratio"] is None
    assert result["overhead_ratio"] > 0
    assert result["peak_rss_mb"] > 0
    assert result["engine_ms_per_turn_p50"] > 0
    assert result["client_ms_per_turn_p50"] > 0
    assert result["added_ms_per_turn_p95"] >= result["added_ms_per_turn_p50"]
    assert isinstance(result["ui_added_ms_per_turn_p50"], float | int)  # the page worker's, beside the CLI's
    assert isinstance(result["ui_minus_cli_ms_per_turn_p50"], float | int)
    assert isinstance(result["rss_growth_kb_per_turn"], float | int)
    assert (result["turns"], result["repeat"]) == (6, 1)
    assert result["machine"]["cores"] >= 1
    # This venv has no bench extra (it cannot have it beside the dev extra): one line says so.
    assert err.splitlines() == [
        f"duologue bench: {result['embedded_skipped']}",
        f"duologue bench: {result['peer_skipped']}",
    ]
    assert "--skip-embedded" in result["embedded_skipped"]
    assert result["peer_skipped"].startswith(
        f"AutoGen AgentChat not measured: {sys.executable} lacks the bench extra"
    )
    assert result["autogen_added_ms_per_turn_p50"] is None and result["added_vs_autogen_ratio"] is None
    # The records' bytes per turn, at 100 and 400 turns whatever --turns says.
    sizes = [
        result[f"{record}_bytes_per_turn_{n}"] for record in ("inputs", "checkpoint") for n in (100, 400)
    ]
    assert all(size > 0 for size in sizes)


def test_a_missing_embedded_extra_is_one_line_and_the_rest_is_reported(monkeypatch, capsys):
    def unavailable() -> Path:
        raise EmbeddedUnavailable("llama-cpp-python is not installed; install it with: pip install ...")

    monkeypatch.setattr("graphs.embedded.llama_backend.require_embedded", unavailable)
    assert main(["bench", "--repeat", "1", "--turns", "4"]) == 0
    out, err = capsys.readouterr()
    assert err.count("\n") == 2  # the embedded model's line, and AutoGen's (no bench extra here)
    assert "not measured" in err and "llama-cpp-python is not installed" in err
    assert "overhead_ratio" in out and "not measured" in out  # the table, with what could be measured


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["bench", "--bogus"], "unrecognized arguments: --bogus"),
        (["bench", "--repeat", "many"], "invalid int value: 'many'"),
    ],
)
def test_bad_flags_get_one_line(argv, said, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err


@pytest.mark.parametrize(("flag", "value"), [("--repeat", "0"), ("--turns", "1")])
def test_bad_settings_get_one_line(flag, value, capsys):
    assert main(["bench", flag, value, "--skip-embedded"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{flag} {value}" in err


def test_the_raw_loop_sends_exactly_what_the_engine_sends(tmp_path: Path):
    """Both sides of the overhead figure hold the same dialogue, byte for byte."""
    with start_instant() as server:
        engine = bench.engine_run(server.url, 5, tmp_path)
        raw = bench.client_run(bench.duet_script(server.url, 5), keep_sent=True)
    (run,) = RunStore(tmp_path).list()
    assert [row.messages for row in run.inputs()] == raw.sent
    assert len(engine.turn_s) == len(raw.turn_s) == 5
    assert all(s > 0 for s in engine.turn_s + raw.turn_s)


def test_the_page_worker_holds_the_same_duet_as_the_engine(tmp_path: Path):
    """The page's side of the overhead figure: a Registry's worker, read by a poller, recorded like any run."""
    with start_instant() as server:
        engine = bench.engine_run(server.url, 5, tmp_path / "engine")
        page = bench.page_run(server.url, 5, tmp_path / "page")
    (engine_run,) = RunStore(tmp_path / "engine").list()
    (page_run,) = RunStore(tmp_path / "page").list()
    assert page_run.meta.status == "completed"
    assert [row.messages for row in page_run.inputs()] == [row.messages for row in engine_run.inputs()]
    assert len(page.turn_s) == len(engine.turn_s) == 5 and all(s > 0 for s in page.turn_s)
