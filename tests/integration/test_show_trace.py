"""`duologue show RUN_ID --trace [--json]` and `duologue runs` on completed and failed runs."""

from __future__ import annotations

import json
from pathlib import Path

from support.duet import duet_models
from support.fakeollama import fake_ollama

from graphs.commands.cli import main
from graphs.records.store import RunStore
from graphs.records.tables import TRACE_FIELDS, trace_rows

HEADERS = [
    "turn",
    "speaker",
    "model",
    "in",
    "out",
    "tok/s",
    "ttft",
    "s",
    "load",
    "s",
    "latency",
    "s",
    "GPU",
    "flags",
]


def run_duet(runs_dir: Path, **backend: object) -> str:
    with fake_ollama(duet_models(), **backend) as (server, _):  # type: ignore[arg-type]
        main(
            [
                "run", "duet", "--model", "a=glm-4.7-flash", "--model", "b=qwen3:32b", "--topic", "t",
                "--turns", "4", "--host", server.url, "--runs-dir", str(runs_dir), "--json",
            ]
        )  # fmt: skip
    [run] = RunStore(runs_dir).list()
    return run.meta.run_id


def show(runs_dir: Path, run_id: str, capsys, *extra: str) -> str:
    capsys.readouterr()
    assert main(["show", run_id, "--trace", "--runs-dir", str(runs_dir), *extra]) == 0
    return capsys.readouterr().out


def test_trace_table_and_its_json(runs_dir: Path, capsys):
    run_id = run_duet(runs_dir)
    records = RunStore(runs_dir).load(run_id).turn_records

    table = show(runs_dir, run_id, capsys).splitlines()
    assert table[0].split() == HEADERS
    assert [line.split()[:5] for line in table[2:]] == [
        [str(r.turn), r.speaker, r.model, str(r.prompt_tokens), str(r.completion_tokens)] for r in records
    ]
    assert [r.speaker for r in records] == ["a", "b", "a", "b"]
    assert all(r.prompt_tokens and r.completion_tokens for r in records)
    assert [line.split()[5] for line in table[2:]] == ["9.0", "1.4", "9.0", "1.4"]
    assert all(line.split()[-2:] == ["100%", "-"] for line in table[2:])

    rows = json.loads(show(runs_dir, run_id, capsys, "--json"))
    assert [list(row) for row in rows] == [list(TRACE_FIELDS)] * 4
    assert [row["turn"] for row in rows] == [1, 2, 3, 4]
    assert [row["tokens_per_s"] for row in rows] == [9.0, 1.4, 9.0, 1.4]
    assert [row["completion_tokens"] for row in rows] == [r.completion_tokens for r in records]
    assert all(row["flags"] == [] and row["error"] is None and row["gpu_fraction"] == 1.0 for row in rows)
    # The same numbers as the table, unformatted.
    assert [r[:3] for r in trace_rows(records)] == [[str(r["turn"]), r["speaker"], r["model"]] for r in rows]


def test_trace_of_a_failed_run_has_an_error_row(runs_dir: Path, capsys):
    run_id = run_duet(runs_dir, fail_on_call=3)
    table = show(runs_dir, run_id, capsys).splitlines()
    assert len(table) == 2 + 3
    failed = table[-1].split()
    assert failed[:3] == ["3", "a", "glm-4.7-flash"] and failed[-1] == "error"
    assert failed[3:5] == ["-", "-"]  # no final chunk: no counts

    rows = json.loads(show(runs_dir, run_id, capsys, "--json"))
    assert [row["turn"] for row in rows] == [1, 2, 3]
    assert rows[2]["flags"] == ["error"] and rows[2]["error"]
    assert rows[0]["error"] is None

    capsys.readouterr()
    assert main(["runs", "--runs-dir", str(runs_dir), "--json"]) == 0
    [totals] = json.loads(capsys.readouterr().out)
    # 10 + 4 tokens, the replies of turns 1 and 2; the failed turn 3's streamed tokens are no turn's.
    assert {key: totals[key] for key in ("status", "turns_done", "turns", "tokens", "flags")} == {
        "status": "failed",
        "turns_done": 2,
        "turns": 4,
        "tokens": 14,
        "flags": ["error"],
    }


def test_trace_of_a_run_without_a_turn(runs_dir: Path, capsys):
    run_id = run_duet(runs_dir, fail_on_call=1, fail_mode="error")
    table = show(runs_dir, run_id, capsys).splitlines()
    assert table[0].split() == HEADERS and len(table) == 3  # header, rule, the failed first turn
    assert json.loads(show(runs_dir, run_id, capsys, "--json"))[0]["flags"] == ["error"]
