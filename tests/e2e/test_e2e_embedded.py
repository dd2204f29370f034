"""Whole dialogues on the embedded real model (SmolLM2-135M), through the real CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

from support import ROOT  # noqa: E402
from support.fakeollama import record_final_chunks  # noqa: E402

from graphs.commands.cli import main  # noqa: E402
from graphs.embedded.serve import start_embedded  # noqa: E402
from graphs.records.store import RunStore  # noqa: E402

pytestmark = pytest.mark.embedded

ESSAY = ROOT / "graphs" / "samples" / "essay.md"
SHORT = ["--set", "a.num_predict=40", "--set", "b.num_predict=40"]
STATS = re.compile(r"\*\((\d+) tokens, (\d+\.\d) tok/s, (\d+)s(?:, [^)]+)?\)\*")


@pytest.fixture
def recording_server(monkeypatch):
    """The embedded server, with every final chunk it sends kept for comparison."""
    server = start_embedded()
    reported, recording_chat = record_final_chunks(server.backend)
    monkeypatch.setattr(server.backend, "chat", recording_chat)
    try:
        yield server, reported
    finally:
        server.stop()


def test_duet_on_the_real_model_records_what_the_server_reported(recording_server, runs_dir: Path, capsys):
    server, reported = recording_server
    argv = [
        "run",
        "duet",
        "--topic-file",
        str(ESSAY),
        "--host",
        server.url,
        "--runs-dir",
        str(runs_dir),
        *SHORT,
    ]
    assert main(argv) == 0
    [run] = RunStore(runs_dir).list()
    records = run.turn_records
    assert run.meta.status == "completed"
    assert [(r.turn, r.speaker, r.model) for r in records] == [
        (1, "a", "smollm2:135m"),
        (2, "b", "smollm2:135m-warm"),
        (3, "a", "smollm2:135m"),
        (4, "b", "smollm2:135m-warm"),
    ]
    assert len(reported) == 4
    for record, done in zip(records, reported, strict=True):
        assert record.completion_tokens == record.eval_count == done.eval_count > 0
        assert record.prompt_tokens == done.prompt_eval_count > 0
        assert (record.prompt_eval_cached_count or 0) == done.prompt_eval_cached_count
        assert record.eval_duration == done.eval_duration > 0
        assert record.load_duration == done.load_duration
        assert record.tokens_per_s == pytest.approx(done.eval_count / (done.eval_duration / 1e9), rel=1e-3)
    # A speaker's second turn extends its first, so the server serves most of it from its cache.
    assert reported[2].prompt_eval_cached_count > reported[0].prompt_eval_count / 2

    transcript = run.transcript()
    lines = transcript.splitlines()
    headings = [line for line in lines if line.startswith("### Turn")]
    assert headings == [
        "### Turn 1: smollm2:135m — Opening",
        "### Turn 2: smollm2:135m-warm — Response",
        "### Turn 3: smollm2:135m — Reply",
        "### Turn 4: smollm2:135m-warm — Closing",
    ]
    for heading, record in zip(headings, records, strict=True):
        stats = STATS.fullmatch(lines[lines.index(heading) + 1])
        assert stats, lines[lines.index(heading) + 1]
        assert int(stats[1]) == record.eval_count
        assert stats[2] == f"{record.tokens_per_s:.1f}"
    total = sum(r.eval_count or 0 for r in records)
    assert lines[-1].startswith(f"Total: {total} tokens across 4 turns")

    inputs = [i.model_dump() for i in run.inputs()]  # each turn's whole prompt, rebuilt from format 2
    assert [(i["turn"], len(i["messages"])) for i in inputs] == [(1, 2), (2, 3), (3, 5), (4, 6)]
    meta = json.loads((run.folder / "run.json").read_text())
    assert meta["versions"][f"ollama@{server.url}"] == server.backend.version
    assert meta["ended_at"] and meta["error"] is None


def test_panel_on_the_real_model(recording_server, runs_dir: Path, capsys):
    server, reported = recording_server
    argv = [
        "run", "panel", "--topic", "Should cities ban cars from their centres?", "--turns", "4",
        "--host", server.url, "--runs-dir", str(runs_dir),
        "--set", "a.num_predict=32", "--set", "b.num_predict=32", "--set", "c.num_predict=32",
    ]  # fmt: skip
    assert main(argv) == 0
    [run] = RunStore(runs_dir).list()
    assert [(r.speaker, r.kind) for r in run.turn_records] == [
        ("a", "opening"),
        ("b", "response"),
        ("c", "response"),
        ("a", "closing"),
    ]
    assert [r.eval_count for r in run.turn_records] == [d.eval_count for d in reported]
    assert all(d.eval_count > 0 for d in reported)
    inputs = [i.model_dump() for i in run.inputs()]  # each turn's whole prompt, rebuilt from format 2
    # With three voices, each relayed turn names its speaker.
    assert inputs[2]["messages"][1]["content"].startswith("smollm2:135m (a): ")


def test_the_demo_command_holds_a_duet_with_embedded(tmp_path: Path):
    """`duologue run duet --embedded`, as the README's demo runs it, in a process of its own."""
    runs_dir = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, "-m", "graphs", "run", "duet", "--embedded", "--topic-file", str(ESSAY),
         "--runs-dir", str(runs_dir), *SHORT],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    [run] = RunStore(runs_dir).list()
    assert run.meta.embedded is True
    assert result.stdout.count("### Turn") == 4
    assert len(STATS.findall(result.stdout)) == 4
    assert result.stdout.rstrip().endswith(f"Run {run.meta.run_id} completed: {run.folder}")


OBSERVED = """\
name: observed
participants:
  - {name: a, model: "smollm2:135m", options: {num_predict: 40}}
  - {name: b, model: "smollm2:135m-warm", options: {num_predict: 40}}
order: [a, b]
turns: 2
observer: {model: "smollm2:135m", label: Small Observer, options: {num_predict: 60}}
"""


def test_an_observer_on_the_real_model_adds_notes_no_speaker_was_sent(
    recording_server, runs_dir, tmp_path, capsys
):
    server, reported = recording_server
    shape = tmp_path / "observed.yaml"
    shape.write_text(OBSERVED)
    args = [
        "run",
        str(shape),
        "--topic",
        "Is a diary a memory?",
        "--host",
        server.url,
        "--runs-dir",
        str(runs_dir),
    ]
    assert main(args) == 0
    [run] = RunStore(runs_dir).list()
    transcript = run.transcript()
    notes = transcript.split("## Observer's Notes (Small Observer)\n\n", 1)[1].split("\n\nTotal: ", 1)[0]
    assert notes.strip() and len(reported) == 3  # two turns, then the observer
    assert all(notes.strip() not in str(i.messages) for i in run.inputs())
    [row] = [r for r in run.trace if r.node == "observer"]
    assert row.kind == "observer" and row.completion_tokens == reported[-1].eval_count
