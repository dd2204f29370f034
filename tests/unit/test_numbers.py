"""A run's numbers without a page: tok/s per model, the transcript cut turn by turn, the timeline."""

from __future__ import annotations

from typing import Any

from graphs import TraceRecord, model_rates
from graphs.engine.state import Turn
from graphs.records.transcript import transcript_pieces, with_observer_notes
from graphs.ui.numbers import timeline_frame
from graphs.ui.render import split_transcript, split_turns

NS = 10**9
LABELS = {"a": "GLM", "b": "Qwen"}


def record(turn: int, model: str, **fields: Any) -> TraceRecord:
    speaker = "a" if turn % 2 else "b"
    return TraceRecord(
        run_id="r",
        seq=turn,
        node=speaker,
        turn=turn,
        kind="opening" if turn == 1 else "response",
        speaker=speaker,
        model=model,
        started_at=fields.pop("started_at", "2026-01-01T00:00:00.000Z"),
        ended_at=fields.pop("ended_at", "2026-01-01T00:00:10.000Z"),
        **fields,
    )


def decoded(turn: int, model: str, tokens: int, seconds: float, **fields: Any) -> TraceRecord:
    """A turn that generated `tokens` in `seconds`, as Ollama's final chunk counts them."""
    return record(
        turn,
        model,
        completion_tokens=tokens,
        eval_count=tokens,
        eval_duration=round(seconds * NS),
        tokens_per_s=round(tokens / seconds, 3),
        latency_s=seconds + 1,
        **fields,
    )


# ---- tok/s per model --------------------------------------------------------------------------


def test_each_model_has_its_own_rate_never_one_mean_across_models():
    turns = [
        decoded(1, "glm-4.7-flash", 450, 5),
        decoded(2, "qwen3:32b", 160, 5),
        decoded(3, "glm-4.7-flash", 900, 10),
        decoded(4, "qwen3:32b", 320, 10),
    ]
    assert model_rates(turns) == {"glm-4.7-flash": 90.0, "qwen3:32b": 32.0}


def test_a_models_rate_is_all_its_tokens_over_all_its_decoding_time():
    # 100 tok/s for a second, then 25 tok/s for four: 200 tokens in 5 s, not the turns' mean of 62.5.
    assert model_rates([decoded(1, "m", 100, 1), decoded(3, "m", 100, 4)]) == {"m": 40.0}


def test_an_imported_turn_counts_by_its_stats_line_and_a_turn_without_numbers_not_at_all():
    imported = record(1, "m", completion_tokens=50, tokens_per_s=10.0)  # 5 s, no eval_duration
    assert model_rates([imported, decoded(3, "m", 150, 5), record(5, "m")]) == {"m": 20.0}
    assert model_rates([record(1, "stopped")]) == {"stopped": None}


# ---- the transcript, turn by turn -------------------------------------------------------------


def transcript(
    texts: list[str], records: dict[int, TraceRecord], ending: str | None = None, **more: Any
) -> str:
    turns = [
        Turn(number=n, speaker="a" if n % 2 else "b", kind="response", text=text, thinking="")
        for n, text in enumerate(texts, 1)
    ]
    return "".join(transcript_pieces("Dialogue", ["## Topic: t"], turns, LABELS, records, ending, **more))


def test_a_heading_in_a_models_text_stays_its_text():
    records = {1: decoded(1, "glm", 12, 1.0), 2: decoded(2, "qwen", 30, 3.0)}
    # Turn 1 writes turn 2's heading, and a stats line, which it cannot know.
    fake = "I say:\n\n### Turn 2: Qwen — Response\n*(30 tokens, 10.0 tok/s, 9s)*\n\nnot Qwen's words."
    _header, body = split_transcript(transcript([fake, "Qwen's own words."], records))
    before, turns = split_turns(body, records)
    assert before.strip() == ""
    assert [(t.record.turn, t.heading, t.text, t.after) for t in turns] == [
        (1, "Turn 1: GLM — Response", fake, ""),
        (2, "Turn 2: Qwen — Response", "Qwen's own words.", "Total: 42 tokens across 2 turns (<1 minute of generation)"),
    ]  # fmt: skip


def test_the_facilitators_words_the_ending_and_the_observers_notes_stand_apart_from_the_turns():
    records = {n: decoded(n, "m", 10, 1.0) for n in (1, 2, 3)}
    text = transcript(
        ["One.\n\n---\n\nstill one.", "Two.", "Three."],
        records,
        "Run interrupted by the user",
        interjections={2: "Why so sure?"},
    )
    text = with_observer_notes(text, "observer", "They agreed.\n\n## Observer's Notes (x) in the notes")
    _header, body = split_transcript(text)
    _before, turns = split_turns(body, records)
    assert [(t.text, t.after) for t in turns] == [
        ("One.\n\n---\n\nstill one.", "### Facilitator — before Turn 2\n\nWhy so sure?"),
        ("Two.", ""),
        (
            "Three.",
            "*Run interrupted by the user*\n\n---\n\n## Observer's Notes (observer)\n\nThey agreed.\n\n"
            "## Observer's Notes (x) in the notes\n\nTotal: 30 tokens across 3 turns (<1 minute of generation)",
        ),
    ]


def test_a_turn_whose_heading_is_not_found_stays_in_the_text_before_it():
    records = {1: decoded(1, "m", 10, 1.0), 2: decoded(2, "m", 10, 1.0)}
    _header, body = split_transcript(transcript(["One.", "Two."], records))
    other = records[2].model_copy(update={"completion_tokens": 11})  # not the stats line written
    _before, turns = split_turns(body, {1: records[1], 2: other})
    assert [t.record.turn for t in turns] == [1]
    assert turns[0].text.startswith("One.") and "### Turn 2: Qwen — Response" in turns[0].text
    assert split_turns(body, {}) == (body, [])


# ---- the timeline -----------------------------------------------------------------------------


def test_the_timeline_lays_each_turns_stages_end_to_end_from_its_start():
    first = decoded(
        1,
        "glm",
        30,
        3.0,
        started_at="2026-01-01T00:00:00.000Z",
        ended_at="2026-01-01T00:00:07.000Z",
        residency_s=2.0,
        load_duration=1 * NS,
        prompt_eval_duration=NS // 2,
    )
    stopped = record(
        2, "qwen", started_at="2026-01-01T00:00:07.500Z", ended_at="2026-01-01T00:00:09.000Z", residency_s=0.5
    )
    frame = timeline_frame([first, stopped], {})
    assert frame[["model", "turn", "stage", "from s", "to s"]].values.tolist() == [
        ["glm", 1, "placing", 0.0, 2.0],
        ["glm", 1, "load", 2.0, 3.0],
        ["glm", 1, "prompt", 3.0, 3.5],
        ["glm", 1, "generation", 3.5, 6.5],
        ["glm", 1, "rest", 6.5, 7.0],
        ["qwen", 2, "placing", 7.5, 8.0],
        ["qwen", 2, "rest", 8.0, 9.0],
    ]


def test_an_imported_transcripts_first_turn_needs_no_stats_line():
    records = {1: record(1, "m"), 2: decoded(2, "m", 10, 1.0)}  # turn 1's heading has no stats line
    body = (
        "\n### Turn 1: GLM — Opening\n\nOne.\n\n---\n\n"
        + transcript(["x", "Two."], records).split("---\n", 2)[2]
    )
    _before, turns = split_turns(body, records)
    assert [(t.record.turn, t.heading, t.text) for t in turns] == [
        (1, "Turn 1: GLM — Opening", "One."),
        (2, "Turn 2: Qwen — Response", "Two."),
    ]


def test_the_timeline_leaves_out_a_turn_whose_times_are_not_iso_rather_than_failing_the_page():
    good = decoded(
        1, "glm", 30, 3.0, started_at="2026-01-01T00:00:00.000Z", ended_at="2026-01-01T00:00:01.000Z"
    )
    damaged = record(2, "qwen", started_at="s", ended_at="e")
    frame = timeline_frame([good, damaged], {})
    assert sorted(set(frame["turn"])) == [1]
    assert timeline_frame([damaged], {}).empty
