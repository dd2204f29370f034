"""transcript.md's header and Total line say what a reader needs (issue 13, point 14): which model
each label stands for, that a fork is one, and times and counts that are true for short runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.fakes import ScriptedChatModel, ScriptedSource

from graphs.engine.spec import load_shape, with_overrides
from graphs.errors import RunFailed
from graphs.records.store import RunStore
from graphs.run.durable import ContinueOptions, fork_dialogue
from graphs.run.runner import RunRequest, run_dialogue

HOSTS = {"a": "http://127.0.0.1:9", "b": "http://127.0.0.1:9"}
LABELLED = with_overrides(
    load_shape("duet"),
    {"a": "glm-4.7-flash", "b": "qwen3:32b"},
    [("a", "label", "GLM"), ("b", "label", "Qwen")],
)


def scripted(model: str, *replies: str, **kwargs) -> ScriptedChatModel:
    return ScriptedChatModel(model=model, replies=list(replies), calls=[], **kwargs)


def models() -> dict[str, ScriptedChatModel]:
    return {"a": scripted("glm-4.7-flash", "One.", "Three."), "b": scripted("qwen3:32b", "Two.", "Four.")}


def hold(runs_dir: Path, shape, topic: str = "The essay.", scripted_models=None):
    request = RunRequest(
        shape=shape,
        topic=topic,
        turns=4,
        hosts=HOSTS,
        runs_dir=runs_dir,
        source=ScriptedSource(scripted_models or models()),
    )
    return run_dialogue(request)


def normalized(text: str, *run_ids: str) -> str:
    text = re.sub(r"## \d{4}-\d\d-\d\d \d\d:\d\d UTC", "## <date> UTC", text)
    for number, run_id in enumerate(run_ids):
        text = text.replace(run_id, f"<run{number}>")
    return text


def turn(number: int, label: str, kind: str, tokens: int, text: str) -> str:
    return f"### Turn {number}: {label} — {kind}\n*({tokens} tokens, 10.0 tok/s, 0s)*\n\n{text}\n"


LABELLED_TURNS = "\n---\n\n".join(
    [
        turn(1, "GLM", "Opening", 1, "One."),
        turn(2, "Qwen", "Response", 1, "Two."),
        turn(3, "GLM", "Reply", 1, "Three."),
        turn(4, "Qwen", "Closing", 1, "Four."),
    ]
)


def test_labels_come_with_their_models_and_a_markdown_topic_is_one_plain_line(runs_dir: Path):
    topic = (
        "# Inherited *memory*\n\nSee ![x](http://127.0.0.1:1/x.png) and [a link](http://e.x) <b>`now`</b> #"
    )
    outcome = hold(runs_dir, LABELLED, topic)
    assert normalized((outcome.folder / "transcript.md").read_text(), outcome.run_id) == (
        "# Model-to-Model Dialogue: GLM vs Qwen\n"
        "## <date> UTC\n"
        "## Topic: \\# Inherited \\*memory\\* See \\!\\[x\\](http://127.0.0.1:1/x.png) and "
        "\\[a link\\](http://e.x) \\<b\\>\\`now\\`\\</b\\> \\#\n"
        "## Facilitator: duologue (passed messages, did not participate)\n"
        "## Run: <run0> · shape duet\n"
        "## Models: GLM = glm-4.7-flash, Qwen = qwen3:32b\n"
        "\n---\n\n" + LABELLED_TURNS + "\nTotal: 4 tokens across 4 turns (<1 minute of generation)\n"
    )
    assert RunStore(runs_dir).load(outcome.run_id).meta.topic == topic, "run.json keeps the topic whole"


def test_a_run_that_ends_after_one_turn_says_one_turn(runs_dir: Path):
    failing = {"a": scripted("glm-4.7-flash", "One."), "b": scripted("qwen3:32b", fail_on=1)}
    with pytest.raises(RunFailed):
        hold(runs_dir, LABELLED, scripted_models=failing)
    [run] = RunStore(runs_dir).list()
    assert run.transcript().splitlines()[-1] == "Total: 1 token across 1 turn (<1 minute of generation)"


def test_a_forks_transcript_says_whose_fork_it_is_and_what_its_total_counts(runs_dir: Path):
    original = hold(runs_dir, LABELLED)
    forked = fork_dialogue(
        original.run_id,
        2,
        ContinueOptions(runs_dir=runs_dir, source=ScriptedSource(models())),
        {},
        [("b", "temperature", 0.2)],
    )
    assert normalized((forked.folder / "transcript.md").read_text(), forked.run_id, original.run_id) == (
        "# Model-to-Model Dialogue: GLM vs Qwen\n"
        "## <date> UTC\n"
        "## Topic: The essay.\n"
        "## Facilitator: duologue (passed messages, did not participate)\n"
        "## Run: <run0> · shape duet\n"
        "## Models: GLM = glm-4.7-flash, Qwen = qwen3:32b\n"
        "## Forked from: run <run1> after turn 2 (turns 1-2 copied from it)\n"
        "\n---\n\n"
        + "\n---\n\n".join(
            [
                turn(1, "GLM", "Opening", 1, "One."),
                turn(2, "Qwen", "Response", 1, "Two."),
                turn(3, "GLM", "Reply", 1, "One."),
                turn(4, "Qwen", "Closing", 1, "Two."),
            ]
        )
        + "\nTotal: 4 tokens across 4 turns "
        "(<1 minute of generation, the 2 turns copied from run <run1> included)\n"
    )


def test_a_transcript_from_the_stats_a_run_keeps_is_the_one_its_trace_rows_give():
    """A run holds only each turn's TurnStats; the transcript must read as the rows would make it."""
    from graphs.engine.state import Turn
    from graphs.records.schema import TraceRecord
    from graphs.records.transcript import stats_of, transcript_pieces

    common = {
        "run_id": "r",
        "node": "a",
        "started_at": "2026-12-01T00:00:00Z",
        "ended_at": "2026-12-01T00:00:01Z",
    }
    rows = {
        1: TraceRecord(seq=1, turn=1, speaker="a", completion_tokens=774, eval_count=774, eval_duration=10**9,
                       latency_s=564.2, gpu_fraction=0.5, **common),
        2: TraceRecord(seq=2, turn=2, speaker="p", speaker_kind="person", words=212, latency_s=95.0, **common),
        3: TraceRecord(seq=4, turn=3, speaker="a", completion_tokens=9, tokens_per_s=0.4, slow=True,
                       latency_s=61.0, **common),
        4: TraceRecord(seq=5, turn=4, speaker="p", latency_s=3.0, **common),
    }  # fmt: skip
    turns = [
        Turn(
            number=n,
            speaker=row.speaker or "",
            kind="opening" if n == 1 else "response",
            text=f"T{n}.",
            thinking="",
        )
        for n, row in rows.items()
    ]
    labels = {"a": "Model A", "p": "Ann"}
    from_rows = "".join(
        transcript_pieces("T", ["## h"], turns, labels, rows, "Ended", {3: "Go on."}, ("r0", 1))
    )
    kept = stats_of(rows)
    assert (
        "".join(transcript_pieces("T", ["## h"], turns, labels, kept, "Ended", {3: "Go on."}, ("r0", 1)))
        == from_rows
    )
    assert "CPU 50%" in from_rows and "slow" in from_rows and "person, 212 words" in from_rows
