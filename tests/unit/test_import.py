"""`duologue import` of the reference run and of hand-written variants, compared whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import ROOT

from graphs.insight.importer import import_transcript
from graphs.insight.runs import analyze_run
from graphs.records.store import RunStore
from graphs.records.transcript_reader import TranscriptError, read_transcript

REFERENCE = ROOT / "tests" / "support" / "data" / "seed-dialogue.md"


def test_the_reference_becomes_a_run_record(runs_dir: Path):
    writer = import_transcript(REFERENCE, runs_dir)
    run = RunStore(runs_dir).load(writer.run_id)
    meta = json.loads((run.folder / "run.json").read_text())
    assert meta.pop("run_id").endswith(tuple("0123456789abcdef")) and meta.pop("ended_at")
    assert meta.pop("versions").keys() == {"duologue"}
    assert meta == {
        "format_version": 1,
        "shape": "imported",
        "status": "imported",
        "participants": [
            {
                "name": "glm-4-7-flash",
                "label": "GLM-4.7-Flash",
                "model": "GLM-4.7-Flash",
                "host": "",
                "options": {},
            },
            {"name": "qwen3-32b", "label": "Qwen3:32B", "model": "Qwen3:32B", "host": "", "options": {}},
        ],
        "topic": '"Inherited Memory" essay by Nox (Opus 4.6)',
        "turns": 4,
        "started_at": "2026-02-05T00:00:00.000Z",
        "error": None,
        "spec": None,
        "embedded": False,
        "settings": {},
        "forked_from": None,
        "paused_before_turn": None,
        "checkpoint_store": None,
        "held_by": None,
        "sweep_id": None,
        "cell": None,
        "observer": None,
        "imported_from": "seed-dialogue.md",
        "title": "Model-to-Model Dialogue: GLM-4.7-Flash vs Qwen3:32B",
    }
    assert (run.folder / "transcript.md").read_bytes() == REFERENCE.read_bytes()
    stats = [
        (r.turn, r.kind, r.speaker, r.model, r.completion_tokens, r.tokens_per_s, r.latency_s)
        for r in run.trace
    ]
    assert stats == [
        (1, "opening", "glm-4-7-flash", "GLM-4.7-Flash", None, None, None),
        (2, "response", "qwen3-32b", "Qwen3:32B", 774, 1.4, 564.0),
        (3, "reply", "glm-4-7-flash", "GLM-4.7-Flash", 1546, 9.0, 171.0),
        (4, "closing", "qwen3-32b", "Qwen3:32B", 914, 1.3, 677.0),
    ]
    assert sorted(p.name for p in run.folder.iterdir()) == ["run.json", "trace.jsonl", "transcript.md"]


def test_the_reference_analysis_reads_as_its_observer_did(runs_dir: Path):
    run_id = import_transcript(REFERENCE, runs_dir).run_id
    analysis = analyze_run(run_id, runs_dir).model_dump(mode="json")
    assert analysis["verdict"] == "converged"
    agreements = sum(t["agreements"] for t in analysis["turns"])
    challenges = sum(t["challenges"] for t in analysis["turns"])
    assert agreements > challenges and challenges <= 2
    speakers = analysis["speakers"]
    assert speakers["GLM-4.7-Flash"]["questions"] > speakers["Qwen3:32B"]["questions"]
    lineage = {p["phrase"]: (p["first_by"], p["adopted_by"]) for p in analysis["phrases"]}
    assert lineage["fiction of coherence"] == ("Qwen3:32B", ["GLM-4.7-Flash"])
    assert lineage["negative space"] == ("GLM-4.7-Flash", ["Qwen3:32B"])
    saved = json.loads((runs_dir / run_id / "analysis.json").read_text())
    assert saved == analysis


HAND_WRITTEN = """\
Notes I took before the first turn: the models were warm.

### Turn 1: Ada – Opening

Is memory a river?

---

### Turn 2: Brin - Response
*(12 tokens, 3.0 tok/s, 4s)*

I agree, a river.

### Turn 3: Ada — Closing
*(8 tokens, 2.5 tok/s, 3s, CPU)*

We converge on the river.

## Observer's Notes
- They agreed at once.
"""


def test_hand_written_variants_read_whole():
    read = read_transcript(HAND_WRITTEN, "notes.md")
    assert [(t.number, t.label, t.kind, t.text) for t in read.turns] == [
        (1, "Ada", "opening", "Is memory a river?"),
        (2, "Brin", "response", "I agree, a river."),
        (3, "Ada", "closing", "We converge on the river."),
    ]
    assert [
        t.stats and (t.stats.tokens, t.stats.tokens_per_s, t.stats.seconds, t.stats.flags) for t in read.turns
    ] == [
        None,
        (12, 3.0, 4.0, []),
        (8, 2.5, 3.0, ["CPU"]),
    ]
    assert read.title is None and read.header == []
    assert read.notes == "Notes I took before the first turn: the models were warm."
    assert read.observer_notes == "- They agreed at once." and read.observer_label is None
    assert read.total_tokens is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "# A title\n\nNo turns at all.\n",
            "notes.md: no turns found; expected headings like '### Turn 1: LABEL — Opening'",
        ),
        (
            "### Turn 1: Ada — Opening\nHi.\n### Turn 3: Brin — Reply\nHo.\n",
            "notes.md: line 3: expected Turn 2 after Turn 1, found Turn 3",
        ),
        (
            "### Turn 1: Ada — Opening\n*(12 tokens, fast, 4s)*\nHi.\n",
            "notes.md: line 2: expected a stats line like '*(774 tokens, 1.4 tok/s, 564s)*', found '*(12 tokens, fast, 4s)*'",
        ),
    ],
)
def test_a_transcript_that_cannot_be_read_names_the_line(text: str, message: str):
    with pytest.raises(TranscriptError) as caught:
        read_transcript(text, "notes.md")
    assert str(caught.value) == message
