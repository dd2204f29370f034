"""`duologue import`, `analyze` and `compare` from the terminal: output, records, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import ROOT
from support.duet import duet_models, only_run, run_args
from support.fakeollama import FakeModel, fake_ollama

from graphs.commands.cli import main
from graphs.records.store import RunStore

REFERENCE = ROOT / "tests" / "support" / "data" / "seed-dialogue.md"


def imported_id(runs_dir: Path, capsys) -> str:
    assert main(["import", str(REFERENCE), "--runs-dir", str(runs_dir), "--json"]) == 0
    return json.loads(capsys.readouterr().out)["run_id"]


def test_import_then_analyze_prints_the_table_and_the_sentences(runs_dir: Path, capsys):
    run_id = imported_id(runs_dir, capsys)
    assert main(["analyze", run_id, "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:6] == [
        "turn  speaker        words  questions  hedges  agree  challenge  concede  echo  new   sim",
        "----  -------------  -----  ---------  ------  -----  ---------  -------  ----  ----  ----",
        "1     GLM-4.7-Flash  201    4          1       0      0          0        0%    100%  -",
        "2     Qwen3:32B      282    2          2       1      0          0        6%    94%   0.40",
        "3     GLM-4.7-Flash  158    1          2       2      1          0        14%   79%   0.47",
        "4     Qwen3:32B      285    0          2       4      0          0        7%    86%   0.47",
    ]
    assert out.rstrip().splitlines()[-6:] == [
        "Converged: 7 agreements, 0 concessions, 1 challenge.",
        "GLM-4.7-Flash asked 5 questions, Qwen3:32B 2.",
        "GLM-4.7-Flash took up 7 of Qwen3:32B's phrases.",
        "Qwen3:32B took up 11 of GLM-4.7-Flash's phrases.",
        "GLM-4.7-Flash hedged most (0.8 hedges per 100 words).",
        "The closing attributes 6 positions; 2 of them cannot be found in the speaker's own turns.",
    ]


def test_analyze_json_is_what_analysis_json_holds(runs_dir: Path, capsys):
    run_id = imported_id(runs_dir, capsys)
    assert main(["analyze", run_id, "--runs-dir", str(runs_dir), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((runs_dir / run_id / "analysis.json").read_text())
    assert set(printed) >= {
        "run_id",
        "verdict",
        "speakers",
        "turns",
        "phrases",
        "loops",
        "closing_attribution",
    }


def test_compare_sets_a_held_run_beside_an_imported_one(runs_dir: Path, capsys):
    imported = imported_id(runs_dir, capsys)
    with fake_ollama(duet_models()) as (server, _backend):
        assert main(run_args(server.url, runs_dir, "--json")) == 0
    held = json.loads(capsys.readouterr().out)["run_id"]
    assert main(["compare", imported, held, "--runs-dir", str(runs_dir), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [(r["run_id"], r["shape"], r["status"], r["turns"], r["tokens"]) for r in runs] == [
        (imported, "imported", "imported", "4/4", 3234),
        (held, "duet", "completed", "4/4", runs[1]["tokens"]),
    ]
    # Qwen's two turns: 774 tokens at 1.4 tok/s and 914 at 1.3, so (774 + 914) / (774/1.4 + 914/1.3) = 1.34.
    assert runs[0]["tokens_per_s"] == {"Qwen3:32B": 1.3, "GLM-4.7-Flash": 9.0}
    assert runs[0]["verdict"] == "converged"
    assert runs[0]["speakers"]["GLM-4.7-Flash"] == {
        "questions": 5,
        "challenges": 1,
        "agreements": 2,
        "hedges_per_100w": 0.84,
        "echo_share": 0.068,
    }
    assert set(runs[1]["tokens_per_s"]) == {"glm-4.7-flash", "qwen3:32b"}
    assert runs[1]["verdict"] in {"converged", "contested", "mixed"}


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (
            b"### Turn 1: Ada \xe2\x80\x94 Opening\n\xff\xfe bad\n",
            "line 2: not UTF-8 text; save it as UTF-8 and import it again",
        ),
        (b"\x00\x01\x02 binary", "a binary file, not a Markdown transcript"),
        (
            b"# Notes\n\nNothing was said.\n",
            "no turns found; expected headings like '### Turn 1: LABEL — Opening'",
        ),
    ],
)
def test_a_file_that_is_no_transcript_is_one_line_and_leaves_nothing(
    tmp_path, runs_dir, capsys, content, says
):
    path = tmp_path / "dialogue.md"
    path.write_bytes(content)
    assert main(["import", str(path), "--runs-dir", str(runs_dir)]) == 2
    assert capsys.readouterr().err == f"duologue: error: {path}: {says}\n"
    assert not runs_dir.exists() or list(runs_dir.iterdir()) == []


def test_analyze_of_a_run_with_no_finished_turn(runs_dir: Path, capsys):
    with fake_ollama(duet_models(), fail_on_call=1) as (server, _backend):
        assert main(run_args(server.url, runs_dir)) == 1
    run = only_run(runs_dir)
    capsys.readouterr()
    assert main(["analyze", run.meta.run_id, "--runs-dir", str(runs_dir)]) == 2
    assert (
        capsys.readouterr().err == f"duologue: error: run {run.meta.run_id} has no finished turn to analyze\n"
    )
    assert not (run.folder / "analysis.json").exists()
    assert RunStore(runs_dir).load(run.meta.run_id).meta.status == "failed"


NOTES = "**What worked:**\n- They agreed.\n\n**Bottom line:**\n- A calm exchange."


def test_observe_adds_the_notes_to_the_transcript_and_a_trace_row(runs_dir: Path, capsys):
    run_id = imported_id(runs_dir, capsys)
    before = (runs_dir / run_id / "transcript.md").read_text()
    observer = FakeModel("nox:latest", replies=[NOTES])
    with fake_ollama([observer]) as (server, backend):
        args = ["observe", run_id, "--model", "nox", "--label", "Nox", "--host", server.url]
        assert main([*args, "--runs-dir", str(runs_dir)]) == 0
    assert capsys.readouterr().out == NOTES + "\n"
    [request] = backend.chat_requests
    assert [m["role"] for m in request.messages] == ["system", "user"]
    assert "Turn 4: Qwen3:32B (closing)" in request.messages[1]["content"]
    assert "Converged: 7 agreements, 0 concessions, 1 challenge." in request.messages[1]["content"]
    after = (runs_dir / run_id / "transcript.md").read_text()
    total = "Total: 3234 tokens across 3 turns (~24 minutes of generation)"
    assert after == before.replace(total, f"---\n\n## Observer's Notes (Nox)\n\n{NOTES}\n\n{total}")
    row = RunStore(runs_dir).load(run_id).trace[-1]
    assert (row.node, row.kind, row.speaker, row.turn, row.model) == (
        "observer",
        "observer",
        "observer",
        None,
        "nox",
    )
    assert row.completion_tokens and row.tokens_per_s and row.latency_s is not None
    assert len(RunStore(runs_dir).load(run_id).turn_records) == 4  # the observer is no turn of the dialogue


def test_observe_with_a_model_the_server_lacks(runs_dir: Path, capsys):
    run_id = imported_id(runs_dir, capsys)
    before = sorted(p.name for p in (runs_dir / run_id).iterdir())
    with fake_ollama(duet_models()) as (server, _backend):
        assert (
            main(["observe", run_id, "--model", "nox", "--host", server.url, "--runs-dir", str(runs_dir)])
            == 2
        )
    assert capsys.readouterr().err == (
        f"duologue: error: the server at {server.url} has no model 'nox' "
        "(it has: glm-4.7-flash, qwen3:32b); pull it with `ollama pull nox`\n"
    )
    assert sorted(p.name for p in (runs_dir / run_id).iterdir()) == before


JUDGED = [
    'STANCE: extends\nQUOTE: "The tension between inheritance and agency"',
    'STANCE: agrees\nQUOTE: "You accurately separate capability from preference."',
    'STANCE: agrees\nQUOTE: "words the closing never said"',
]


def test_a_judge_labels_each_turn_and_a_label_without_its_quote_is_dropped(runs_dir: Path, capsys):
    run_id = imported_id(runs_dir, capsys)
    with fake_ollama([FakeModel("judge:latest", replies=JUDGED)]) as (server, backend):
        args = ["analyze", run_id, "--judge", "judge", "--host", server.url, "--json"]
        assert main([*args, "--runs-dir", str(runs_dir)]) == 0
    analysis = json.loads(capsys.readouterr().out)
    assert analysis["judge"] == {
        "model": "judge",
        "labels": [
            {"turn": 2, "stance": "extends", "quote": "The tension between inheritance and agency"},
            {"turn": 3, "stance": "agrees", "quote": "You accurately separate capability from preference."},
        ],
        "dropped": [4],
    }
    assert analysis["summary"][-2] == (
        "The judge (judge) labelled 2 turns: 1 extends, 1 agrees; 1 label dropped, its quote not in the turn."
    )
    assert [r.options["temperature"] for r in backend.chat_requests] == [0, 0, 0]
    assert json.loads((runs_dir / run_id / "analysis.json").read_text())["judge"] == analysis["judge"]


def test_a_judge_that_answers_out_of_form_is_asked_once_more_then_reported(runs_dir: Path, capsys):
    run_id = imported_id(runs_dir, capsys)
    with fake_ollama([FakeModel("judge:latest", replies=["They seem to agree, broadly."])]) as (
        server,
        backend,
    ):
        args = ["analyze", run_id, "--judge", "judge", "--host", server.url, "--runs-dir", str(runs_dir)]
        assert main(args) == 1
    assert capsys.readouterr().err == (
        "duologue: error: the judge (judge) did not answer turn 2 with STANCE and QUOTE lines, twice "
        "(it said: 'They seem to agree, broadly.'); try a larger model\n"
    )
    assert len(backend.chat_requests) == 2
    assert not (runs_dir / run_id / "analysis.json").exists()


def test_embeddings_add_a_similarity_of_each_turn_to_the_one_before(runs_dir: Path, capsys):
    run_id = imported_id(runs_dir, capsys)
    with fake_ollama([FakeModel("embedder:latest")]) as (server, backend):
        args = ["analyze", run_id, "--embed-model", "embedder", "--host", server.url, "--json"]
        assert main([*args, "--runs-dir", str(runs_dir)]) == 0
    analysis = json.loads(capsys.readouterr().out)
    [(model, texts)] = backend.embed_requests
    assert model == "embedder:latest" and len(texts) == 4 and texts[0].startswith("The essay presents")
    similarity = [t["embedding_similarity_to_previous"] for t in analysis["turns"]]
    assert similarity[0] is None and all(0 < s <= 1 for s in similarity[1:])
    assert analysis["embed_model"] == "embedder" and analysis["judge"] is None


OBSERVED_SHAPE = """\
name: observed
participants:
  - {name: a, model: glm-4.7-flash}
  - {name: b, model: qwen3:32b}
order: [a, b]
turns: 4
observer: {model: nox, label: Nox, persona: "You have read many dialogues."}
"""


def test_a_shape_with_an_observer_holds_the_dialogue_then_adds_its_notes(tmp_path, runs_dir: Path, capsys):
    shape = tmp_path / "observed.yaml"
    shape.write_text(OBSERVED_SHAPE)
    models = [*duet_models(), FakeModel("nox:latest", replies=[NOTES])]
    with fake_ollama(models) as (server, backend):
        args = ["run", str(shape), "--topic", "An essay.", "--host", server.url, "--runs-dir", str(runs_dir)]
        assert main(args) == 0
    run = only_run(runs_dir)
    assert [r.model for r in backend.chat_requests] == [
        "glm-4.7-flash",
        "qwen3:32b",
        "glm-4.7-flash",
        "qwen3:32b",
        "nox",
    ]
    observer_request = backend.chat_requests[-1]
    assert "You have read many dialogues." in observer_request.messages[0]["content"]
    assert observer_request.options["num_ctx"] == 6144
    assert f"## Observer's Notes (Nox)\n\n{NOTES}\n\nTotal: " in run.transcript()
    assert all(NOTES not in str(i.messages) for i in run.inputs())
    assert [i.turn for i in run.inputs()] == [1, 2, 3, 4]
    assert [(r.node, r.kind) for r in run.trace if r.node in ("closing", "observer")] == [
        ("closing", "closing"),
        ("observer", "observer"),
    ]
    assert run.meta.observer is not None and run.meta.observer.model == "nox"


def test_an_observer_the_server_lacks_stops_the_run_before_it_starts(tmp_path, runs_dir: Path, capsys):
    shape = tmp_path / "observed.yaml"
    shape.write_text(OBSERVED_SHAPE)
    with fake_ollama(duet_models()) as (server, backend):
        args = ["run", str(shape), "--topic", "An essay.", "--host", server.url, "--runs-dir", str(runs_dir)]
        assert main(args) == 2
    assert capsys.readouterr().err == (
        f"duologue: error: the server at {server.url} has no model 'nox' "
        "(it has: glm-4.7-flash, qwen3:32b); pull it with `ollama pull nox`\n"
    )
    assert backend.chat_requests == [] and (not runs_dir.exists() or list(runs_dir.iterdir()) == [])


def test_an_imported_run_cannot_be_resumed_and_says_what_it_can_do(runs_dir: Path, capsys):
    run_id = imported_id(runs_dir, capsys)
    assert main(["resume", run_id, "--runs-dir", str(runs_dir)]) == 2
    assert capsys.readouterr().err == (
        f"duologue: error: run {run_id} was imported from a transcript and has no shape to continue; "
        "analyze, observe or compare it instead\n"
    )
