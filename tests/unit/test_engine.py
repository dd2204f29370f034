"""The dialogue engine on scripted models: whole transcripts, traces, inputs and run records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support.fakes import ScriptedChatModel, ScriptedSource

from graphs.engine.spec import Observer, load_shape, with_overrides
from graphs.errors import RunFailed, RunInterrupted
from graphs.records.store import RunStore
from graphs.run.runner import RunRequest, run_dialogue

SHAPE = with_overrides(load_shape("duet"), {"a": "glm-4.7-flash", "b": "qwen3:32b"}, [])
HOSTS = {"a": "http://127.0.0.1:9", "b": "http://127.0.0.1:9"}


def scripted(model: str, *replies: str, **kwargs) -> ScriptedChatModel:
    return ScriptedChatModel(model=model, replies=list(replies), calls=[], **kwargs)


def hold(runs_dir: Path, models, turns: int = 4, shape=SHAPE, observer=None):
    request = RunRequest(
        shape=shape,
        topic="The essay.",
        turns=turns,
        hosts=HOSTS,
        runs_dir=runs_dir,
        source=ScriptedSource(models),
    )
    return run_dialogue(request, observer)


EXPECTED_TRANSCRIPT = """\
# Model-to-Model Dialogue: glm-4.7-flash vs qwen3:32b
## <date> UTC
## Topic: The essay.
## Facilitator: duologue (passed messages, did not participate)
## Run: <run> · shape duet

---

### Turn 1: glm-4.7-flash — Opening
*(3 tokens, 10.0 tok/s, 0s)*

An opening thought.

---

### Turn 2: qwen3:32b — Response
*(4 tokens, 10.0 tok/s, 0s)*

A response with substance.

---

### Turn 3: glm-4.7-flash — Reply
*(2 tokens, 10.0 tok/s, 0s)*

A reply.

---

### Turn 4: qwen3:32b — Closing
*(5 tokens, 10.0 tok/s, 0s)*

We converge and we diverge.

Total: 14 tokens across 4 turns (<1 minute of generation)
"""


def normalized_transcript(folder: Path) -> str:
    text = (folder / "transcript.md").read_text()
    text = re.sub(r"## \d{4}-\d\d-\d\d \d\d:\d\d UTC", "## <date> UTC", text)
    return text.replace(folder.name, "<run>")


def test_duet_writes_the_reference_transcript_and_records(runs_dir: Path):
    a = scripted("glm-4.7-flash", "An opening thought.", "A reply.")
    b = scripted("qwen3:32b", "A response with substance.", "We converge and we diverge.")
    outcome = hold(runs_dir, {"a": a, "b": b})

    assert outcome.status == "completed"
    assert sorted(p.name for p in outcome.folder.iterdir()) == [
        ".lock",
        "checkpoints.sqlite",
        "inputs.jsonl",
        "run.json",
        "trace.jsonl",
        "transcript.md",
    ]
    assert normalized_transcript(outcome.folder) == EXPECTED_TRANSCRIPT

    meta = json.loads((outcome.folder / "run.json").read_text())
    assert meta["status"] == "completed" and meta["error"] is None and meta["ended_at"]
    assert [(p["name"], p["label"], p["model"], p["host"]) for p in meta["participants"]] == [
        ("a", "glm-4.7-flash", "glm-4.7-flash", HOSTS["a"]),
        ("b", "qwen3:32b", "qwen3:32b", HOSTS["b"]),
    ]
    assert meta["participants"][0]["options"] == {
        "num_ctx": 6144,  # sized to the dialogue, as on Ollama: the topic and 4 turns of 1024 tokens
        "num_gpu": 999,
        "keep_alive": "30m",
        "temperature": 0.7,
        "seed": -1,
        "num_predict": 1024,
    }

    trace = [json.loads(line) for line in (outcome.folder / "trace.jsonl").read_text().splitlines()]
    assert [(r["seq"], r["node"], r["turn"], r["speaker"]) for r in trace] == [
        (1, "facilitator", None, None),
        (2, "a", 1, "a"),
        (3, "facilitator", None, None),
        (4, "b", 2, "b"),
        (5, "facilitator", None, None),
        (6, "a", 3, "a"),
        (7, "facilitator", None, None),
        (8, "closing", 4, "b"),
    ], "END is reached from the closing node, without another facilitator step"
    turn2 = trace[3]
    assert turn2["model"] == "qwen3:32b" and turn2["kind"] == "response"
    assert turn2["completion_tokens"] == turn2["eval_count"] == 4
    assert turn2["eval_duration"] == 400_000_000 and turn2["tokens_per_s"] == 10.0
    assert turn2["load_duration"] == 500_000_000 and turn2["load_s"] == 0.5
    assert turn2["done_reason"] == "stop" and turn2["error"] is None
    assert 0 < turn2["ttft_s"] <= turn2["latency_s"]

    rows = [json.loads(line) for line in (outcome.folder / "inputs.jsonl").read_text().splitlines()]
    # Format 2: each row adds to its speaker's previous prompt; a speaker's first row is whole.
    assert [(r["format"], r["turn"], r["speaker"], r["base_turn"], r["kept"]) for r in rows] == [
        (2, 1, "a", None, 0), (2, 2, "b", None, 0), (2, 3, "a", 1, 2), (2, 4, "b", 2, 3),
    ]  # fmt: skip
    assert [m["role"] for m in rows[2]["added"]] == ["assistant", "user", "user"]
    inputs = RunStore(runs_dir).load(outcome.run_id).inputs()
    assert [(i.turn, i.speaker) for i in inputs] == [(1, "a"), (2, "b"), (3, "a"), (4, "b")]
    assert [m["role"] for m in inputs[2].messages] == ["system", "user", "assistant", "user", "user"]
    # What the record says was sent is what the model received.
    assert [m.content for m in b.calls[1]] == [m["content"] for m in inputs[3].messages]


def test_failure_mid_turn_marks_run_failed_and_keeps_finished_turns(runs_dir: Path):
    a = scripted("glm-4.7-flash", "An opening thought.", "A reply.")
    b = scripted("qwen3:32b", "A response.", fail_on=2)
    with pytest.raises(
        RunFailed,
        match=r"^turn 4 \(qwen3:32b\) failed: lost the connection to Ollama at http://127.0.0.1:9 \(run .*: 3 finished turn\(s\) kept\)$",
    ):
        hold(runs_dir, {"a": a, "b": b})
    [run] = RunStore(runs_dir).list()
    assert run.meta.status == "failed"
    assert run.meta.error == "turn 4 (qwen3:32b) failed: lost the connection to Ollama at http://127.0.0.1:9"
    assert [r.turn for r in run.turn_records] == [1, 2, 3, 4]
    assert run.turn_records[-1].error == "ConnectionError: scripted failure on call 2"
    transcript = run.transcript()
    assert transcript.count("### Turn") == 3 and "A reply." in transcript
    assert transcript.endswith(
        "A reply.\n\n"
        "*Run failed: turn 4 (qwen3:32b) failed: lost the connection to Ollama at http://127.0.0.1:9*\n\n"
        "Total: 7 tokens across 3 turns (<1 minute of generation)\n"
    )


def test_ctrl_c_marks_run_interrupted_and_keeps_finished_turns(runs_dir: Path):
    class Interrupting:
        def run_started(self, run_id, folder):
            pass

        def turn_started(self, planned, label, model):
            if planned.number == 3:
                raise KeyboardInterrupt

        def token(self, text, thinking):
            pass

        def turn_finished(self, turn, record):
            pass

    a = scripted("glm-4.7-flash", "An opening thought.")
    b = scripted("qwen3:32b", "A response.")
    with pytest.raises(KeyboardInterrupt):
        hold(runs_dir, {"a": a, "b": b}, observer=Interrupting())
    [run] = RunStore(runs_dir).list()
    assert run.meta.status == "interrupted"
    assert run.transcript().count("### Turn") == 2


def test_turn_cap_in_state_stops_the_graph(runs_dir: Path):
    a = scripted("glm-4.7-flash", "x")
    b = scripted("qwen3:32b", "y")
    outcome = hold(runs_dir, {"a": a, "b": b}, turns=7)
    assert [t["kind"] for t in outcome.turns] == [
        "opening",
        "response",
        "reply",
        "reply",
        "reply",
        "reply",
        "closing",
    ]
    assert len(a.calls) == 4 and len(b.calls) == 3


def test_thinking_is_kept_apart_from_the_answer(runs_dir: Path):
    a = scripted("glm-4.7-flash", "The answer.", thinking="Let me think first.")
    b = scripted("qwen3:32b", "Fine.")
    outcome = hold(runs_dir, {"a": a, "b": b}, turns=2)
    assert outcome.turns[0]["text"] == "The answer."
    assert outcome.turns[0]["thinking"] == "Let me think first."
    assert "Let me think" not in (outcome.folder / "transcript.md").read_text()
    assert all("Let me think" not in m.content for m in b.calls[0])


def test_stop_event_interrupts_the_run(runs_dir: Path):
    request = RunRequest(shape=SHAPE, topic="The essay.", turns=4, hosts=HOSTS, runs_dir=runs_dir)

    class StopAtTurnTwo:
        def run_started(self, run_id, folder):
            pass

        def turn_started(self, planned, label, model):
            if planned.number == 2:
                request.stop.set()

        def token(self, text, thinking):
            pass

        def turn_finished(self, turn, record):
            pass

    a = scripted("glm-4.7-flash", "An opening thought.")
    b = scripted("qwen3:32b", "A response with several words in it.")
    with pytest.raises(RunInterrupted):
        request.source = ScriptedSource({"a": a, "b": b})
        run_dialogue(request, StopAtTurnTwo())
    [run] = RunStore(runs_dir).list()
    assert run.meta.status == "interrupted"
    assert run.transcript().count("### Turn") == 1
    assert len(a.calls) == 1 and len(b.calls) <= 1


def test_scripted_models_take_the_whole_path_of_a_run(runs_dir: Path):
    """The test seam skips nothing: servers checked, options pinned once each, models closed."""
    source = ScriptedSource({"a": scripted("glm-4.7-flash", "One."), "b": scripted("qwen3:32b", "Two.")})
    request = RunRequest(SHAPE, "The essay.", 2, HOSTS, runs_dir=runs_dir, source=source)
    outcome = run_dialogue(request)
    assert outcome.status == "completed"
    assert source.resolved == ["glm-4.7-flash", "qwen3:32b"]
    assert sorted(source.closed) == ["glm-4.7-flash", "qwen3:32b"]
    meta = json.loads((outcome.folder / "run.json").read_text())
    assert meta["versions"]["ollama@http://127.0.0.1:9"] == "scripted"


def test_an_observer_writes_notes_after_the_closing_that_no_speaker_is_sent(runs_dir: Path):
    observed = SHAPE.model_copy(update={"observer": Observer(model="nox:latest", label="Nox")})
    a = scripted("glm-4.7-flash", "I agree the essay is a paradox.", "We both see it.")
    b = scripted("qwen3:32b", "A response: you're right.", "We converge.")
    nox = scripted("nox:latest", "**Bottom line:** they converged at once.")
    hosts = {**HOSTS, "observer": "http://127.0.0.1:9"}
    source = ScriptedSource({"a": a, "b": b, "observer": nox})
    outcome = run_dialogue(RunRequest(observed, "The essay.", 4, hosts, runs_dir=runs_dir, source=source))

    assert outcome.status == "completed"
    [sent] = nox.calls
    assert [m.type for m in sent] == ["system", "human"]
    assert sent[0].content.startswith(
        "You are Nox, an observer of a conversation between glm-4.7-flash and qwen3:32b."
    )
    assert "Turn 4: qwen3:32b (closing)\nWe converge." in sent[1].content
    assert (
        "Converged: 4 agreements, 0 concessions, 0 challenges.\nNo one asked a question." in sent[1].content
    )
    transcript = normalized_transcript(outcome.folder)
    assert transcript.endswith(
        "We converge.\n\n---\n\n## Observer's Notes (Nox)\n\n**Bottom line:** they converged at once.\n\n"
        "Total: 17 tokens across 4 turns (<1 minute of generation)\n"
    ), transcript[-400:]
    inputs = (outcome.folder / "inputs.jsonl").read_text()
    assert "converged at once" not in inputs and all(
        "converged at once" not in str(c) for c in a.calls + b.calls
    )
    rows = [json.loads(line) for line in (outcome.folder / "trace.jsonl").read_text().splitlines()]
    [row] = [r for r in rows if r["node"] == "observer"]
    assert (row["kind"], row["speaker"], row["turn"], row["model"]) == (
        "observer",
        "observer",
        None,
        "nox:latest",
    )
    meta = json.loads((outcome.folder / "run.json").read_text())
    assert meta["observer"]["label"] == "Nox" and meta["observer"]["host"] == "http://127.0.0.1:9"
    assert meta["observer"]["options"]["num_ctx"] == 6144  # sized to read the whole dialogue
