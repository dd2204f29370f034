"""inputs.jsonl at format 2: each turn's prompt as what it adds to its speaker's previous one.

Whatever rows a writer writes, reading the file gives back every turn's whole prompt, exactly
as the model was sent it; a row that cannot be rebuilt (edited, or its base gone) is left out
and its line named, never returned wrong. Files an older duologue began (format 1, whole
prompts) read whole, and so do the rows a newer one appended to them.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest
from support.records import run_meta

from graphs.records import store as store_module
from graphs.records.faults import RecordError
from graphs.records.inputs import InputsEncoder, ReadInputs, prompt_digest, read_inputs
from graphs.records.schema import InputsRecord, InputsRow
from graphs.records.store import RunStore, append_line

Message = dict[str, str]
SYSTEM_A = {"role": "system", "content": "You are A. Discuss the essay."}
SYSTEM_B = {"role": "system", "content": "You are B. Discuss the essay."}
TOPIC = {"role": "user", "content": "An essay."}


def user(text: str) -> Message:
    return {"role": "user", "content": text}


def assistant(text: str) -> Message:
    return {"role": "assistant", "content": text}


def record(turn: int, speaker: str, messages: list[Message], run_id: str = "r1") -> InputsRecord:
    return InputsRecord(
        run_id=run_id, turn=turn, speaker=speaker, model=f"model-{speaker}", messages=messages
    )


def row(record: InputsRecord, base_turn: int | None, kept: int) -> InputsRow:
    """The format-2 row a writer should write for the record."""
    return InputsRow(
        format=2,
        run_id=record.run_id,
        turn=record.turn,
        speaker=record.speaker,
        model=record.model,
        base_turn=base_turn,
        kept=kept,
        added=record.messages[kept:],
        sha256=prompt_digest(record.messages),
    )


def encoded(records: list[InputsRecord], encoder: InputsEncoder | None = None) -> list[InputsRow]:
    """The rows one writer writes for the records, each written."""
    encoder = encoder or InputsEncoder()
    rows = []
    for each in records:
        rows.append(encoder.row(each))
        encoder.wrote(each)
    return rows


def lines(rows: list[InputsRow] | list[InputsRecord]) -> list[bytes]:
    """The file's lines, as append_line writes them."""
    return [r.model_dump_json().encode("utf-8") for r in rows]


def duet(turns: int) -> list[InputsRecord]:
    """A duet's prompts as the relay builds them: each speaker's grows at its end by the other's reply."""
    history: list[str] = []
    records = []
    for turn in range(1, turns + 1):
        speaker = "a" if turn % 2 else "b"
        system = SYSTEM_A if speaker == "a" else SYSTEM_B
        said = [
            assistant(text) if (n % 2 == 0) == (speaker == "a") else user(text)
            for n, text in enumerate(history)
        ]
        records.append(record(turn, speaker, [system, TOPIC, *said, user(f"Go on, turn {turn}.")]))
        history.append(f"Reply {turn} of {speaker}, in a few words.")
    return records


# -- round trips ------------------------------------------------------------------------------


def test_a_duets_prompts_come_back_whole_from_rows_that_hold_what_each_added():
    records = duet(6)
    rows = encoded(records)
    assert [(r.turn, r.speaker, r.base_turn, r.kept, len(r.added)) for r in rows] == [
        (1, "a", None, 0, 3),  # a speaker's first row is whole
        (2, "b", None, 0, 4),
        (3, "a", 1, 2, 3),  # its closing question is not in turn 3's prompt: 2 kept of 3
        (4, "b", 2, 3, 3),
        (5, "a", 3, 4, 3),
        (6, "b", 4, 5, 3),
    ]
    assert rows == [
        row(records[0], None, 0),
        row(records[1], None, 0),
        row(records[2], 1, 2),
        row(records[3], 2, 3),
        row(records[4], 3, 4),
        row(records[5], 4, 5),
    ]
    assert read_inputs(lines(rows)) == ReadInputs(records, [])


def test_a_prompt_that_does_not_extend_its_speakers_previous_one_is_rebuilt_exactly():
    first = record(1, "a", [SYSTEM_A, TOPIC, user("Open.")])
    # The topic was summarised and the closing question replaced: only the system prompt is shared.
    rewritten = record(3, "a", [SYSTEM_A, user("A summary."), assistant("I opened."), user("Close.")])
    # Nothing shared at all: the system prompt itself changed.
    renewed = record(5, "a", [{"role": "system", "content": "You are A, briefly."}, user("Again.")])
    shorter = record(7, "a", [{"role": "system", "content": "You are A, briefly."}])
    records = [first, rewritten, renewed, shorter]
    rows = encoded(records)
    assert rows == [row(first, None, 0), row(rewritten, 1, 1), row(renewed, None, 0), row(shorter, 5, 1)]
    assert rows[3].added == []
    assert read_inputs(lines(rows)) == ReadInputs(records, [])


def test_several_speakers_interleaved_each_base_on_their_own_previous_prompt():
    def said(speaker: str, turn: int, before: list[Message]) -> InputsRecord:
        return record(turn, speaker, [*before, user(f"{speaker} at {turn}")])

    a1 = said("a", 1, [SYSTEM_A])
    b2 = said("b", 2, [SYSTEM_B])
    c3 = said("c", 3, [{"role": "system", "content": "You are C."}])
    b4 = said("b", 4, [*b2.messages, assistant("b said")])
    a5 = said("a", 5, [*a1.messages, assistant("a said")])
    a6 = said("a", 6, [*a5.messages, assistant("a again")])  # the same speaker twice in a row
    c7 = said("c", 7, [*c3.messages, assistant("c said")])
    b8 = said("b", 8, [*b4.messages, assistant("b again")])
    records = [a1, b2, c3, b4, a5, a6, c7, b8]
    rows = encoded(records)
    assert rows == [
        row(a1, None, 0),
        row(b2, None, 0),
        row(c3, None, 0),
        row(b4, 2, 2),
        row(a5, 1, 2),
        row(a6, 5, 4),
        row(c7, 3, 2),
        row(b8, 4, 4),
    ]
    assert read_inputs(lines(rows)) == ReadInputs(records, [])


def test_a_retried_turn_has_two_rows_and_a_later_row_bases_on_the_retry():
    a1, b2 = duet(2)
    attempt = record(3, "a", [*a1.messages[:2], assistant("Opened."), user("Reply.")])
    # The retry's prompt is not the first attempt's (the facilitator spoke in between).
    retry = record(3, "a", [*attempt.messages[:3], user("Facilitator: be brief."), user("Reply.")])
    later = record(5, "a", [*retry.messages, assistant("Replied briefly."), user("Close.")])
    records = [a1, b2, attempt, retry, later]
    rows = encoded(records)
    assert rows == [
        row(a1, None, 0),
        row(b2, None, 0),
        row(attempt, 1, 2),
        row(retry, 3, 3),
        row(later, 3, 5),  # 5 kept: more than the first attempt holds, so it is the retry's
    ]
    assert read_inputs(lines(rows)) == ReadInputs(records, [])


def test_a_retry_with_the_same_prompt_adds_nothing_and_reads_as_both_attempts():
    a1, b2, a3 = duet(3)
    a5 = record(5, "a", [*a3.messages, assistant("Fine."), user("Close.")])
    records = [a1, b2, a3, a3, a5]
    rows = encoded(records)
    assert rows == [row(a1, None, 0), row(b2, None, 0), row(a3, 1, 2), row(a3, 3, 5), row(a5, 3, 5)]
    assert rows[3].added == []
    assert read_inputs(lines(rows)) == ReadInputs(records, [])


# -- files the older duologue began -----------------------------------------------------------


def test_a_run_recorded_at_format_1_and_continued_at_format_2_reads_every_prompt(runs_dir: Path):
    records = duet(6)
    writer = RunStore(runs_dir).create(run_meta("r1"))
    for old in records[:2]:
        append_line(writer.folder / "inputs.jsonl", old)  # what the older duologue's writer did
    # The newer duologue resumes the run: a new writer, which remembers no speaker's prompt.
    resumed = RunStore(runs_dir).reopen("r1")
    for new in records[2:]:
        resumed.append_inputs(new)
    written = [json.loads(line) for line in (writer.folder / "inputs.jsonl").read_text().splitlines()]
    new_rows = [
        row(records[2], None, 0),
        row(records[3], None, 0),
        row(records[4], 3, 4),
        row(records[5], 4, 5),
    ]
    assert written == [json.loads(r.model_dump_json()) for r in [*records[:2], *new_rows]]
    assert [w.get("format") for w in written] == [None, None, 2, 2, 2, 2]
    assert RunStore(runs_dir).load("r1").inputs() == records


def test_text_beyond_ascii_round_trips_and_its_digest_is_of_the_utf8_text():
    a1 = record(1, "a", [SYSTEM_A, user("Café, naïve — 日本語 😀")])
    a3 = record(3, "a", [*a1.messages, assistant("Ça va ?"), user("Oui.")])
    rows = encoded([a1, a3])
    assert rows == [row(a1, None, 0), row(a3, 1, 2)]
    compact = json.dumps(a3.messages, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    assert rows[1].sha256 == hashlib.sha256(compact.encode("utf-8")).hexdigest()
    assert read_inputs(lines(rows)) == ReadInputs([a1, a3], [])


def test_every_rows_digest_is_of_its_whole_prompt_as_the_readme_defines_it():
    """The writer carries each speaker's digest on from turn to turn; whatever the prompts did,
    each row's is the SHA-256 of its whole prompt as compact JSON with sorted keys."""
    a1 = record(1, "a", [SYSTEM_A, {"role": "user", "content": "Zebra"}])
    a3 = record(3, "a", [*a1.messages, assistant("Yes."), {"content": "no", "role": "user"}])
    a5 = record(5, "a", [SYSTEM_A, user("Rewritten."), *a3.messages[2:]])  # not a3 and more
    a7 = record(7, "a", [*a5.messages, assistant("Again.")])
    a9 = record(9, "a", a7.messages[:2])  # shorter than a7
    rows = encoded([a1, a3, a5, a7, a9])

    def documented(messages: list[Message]) -> str:
        compact = json.dumps(messages, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        return hashlib.sha256(compact.encode("utf-8")).hexdigest()

    assert [r.sha256 for r in rows] == [documented(r.messages) for r in (a1, a3, a5, a7, a9)]
    assert read_inputs(lines(rows)) == ReadInputs([a1, a3, a5, a7, a9], [])


def test_a_format_2_row_may_base_on_a_format_1_row():
    a1, b2, a3 = duet(3)
    file = lines([a1, b2]) + lines([row(a3, 1, 2)])
    assert read_inputs(file) == ReadInputs([a1, b2, a3], [])


def test_a_torn_last_line_costs_only_its_own_row():
    records = duet(4)
    whole = lines(encoded(records))
    torn = whole[:3] + [whole[3][: len(whole[3]) // 2]]  # a crash in the middle of the append
    assert read_inputs(torn) == ReadInputs(records[:3], [])


def test_a_torn_line_then_a_resumed_writers_rows_read_whole(runs_dir: Path):
    records = duet(5)
    writer = RunStore(runs_dir).create(run_meta("r1"))
    for each in records[:3]:
        writer.append_inputs(each)
    path = writer.folder / "inputs.jsonl"
    with open(path, "ab") as handle:
        handle.write(b'{"format":2,"run_id":"r1","turn":4,"spea')  # the process died mid-append
    resumed = RunStore(runs_dir).reopen("r1")
    for each in records[3:]:
        resumed.append_inputs(each)
    assert read_inputs(path.read_bytes().split(b"\n")) == ReadInputs(records, [])


# -- rows that cannot be rebuilt ---------------------------------------------------------------


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: r.model_copy(update={"added": [*r.added[:-1], user("Go on, edited.")]}),
        lambda r: r.model_copy(update={"sha256": prompt_digest([user("something else")])}),
        lambda r: r.model_copy(update={"added": r.added[1:]}),
    ],
    ids=["content", "digest", "a message removed"],
)
def test_an_edited_row_and_the_rows_based_on_it_are_left_out_and_their_lines_named(edit):
    records = duet(7)
    rows = encoded(records)
    rows[2] = edit(rows[2])  # a's turn 3, on which 5 and 7 base
    assert [r.base_turn for r in rows] == [None, None, 1, 2, 3, 4, 5]
    assert read_inputs(lines(rows)) == ReadInputs([records[i] for i in (0, 1, 3, 5)], [3, 5, 7])


def test_an_edited_first_row_of_a_speaker_leaves_out_every_later_row_of_theirs():
    records = duet(6)
    rows = encoded(records)
    rows[0] = rows[0].model_copy(update={"added": [SYSTEM_B, *rows[0].added[1:]]})
    assert read_inputs(lines(rows)) == ReadInputs([records[1], records[3], records[5]], [1, 3, 5])


def test_line_numbers_count_every_line_of_the_file():
    records = duet(3)
    rows = encoded(records)
    rows[2] = rows[2].model_copy(update={"kept": 1})
    file = [b"", lines(rows)[0], b"not json", lines(rows)[1], b"  ", lines(rows)[2], b""]
    assert read_inputs(file) == ReadInputs(records[:2], [6])


def test_a_row_whose_base_is_missing_is_left_out_and_its_line_named():
    records = duet(5)
    rows = encoded(records)
    del rows[2]  # a's turn 3 is gone; 5 bases on it
    assert read_inputs(lines(rows)) == ReadInputs([records[i] for i in (0, 1, 3)], [4])


def test_a_row_that_keeps_more_than_its_base_holds_is_left_out():
    a1, b2, a3 = duet(3)
    too_many = row(a3, 1, 2).model_copy(update={"kept": len(a1.messages) + 1, "added": a3.messages[4:]})
    assert read_inputs(lines([a1, b2]) + lines([too_many])) == ReadInputs([a1, b2], [3])


# -- a failed write is no base -----------------------------------------------------------------


def test_a_row_that_was_never_written_is_not_a_later_rows_base():
    a1, b2, a3, b4, a5 = duet(5)
    encoder = InputsEncoder()
    written = encoded([a1, b2], encoder)
    encoder.row(a3)  # its write failed: wrote() was never called
    later = encoded([b4, a5], encoder)
    assert later == [row(b4, 2, 3), row(a5, 1, 2)]  # a5 bases on a1, the last row a's file holds
    assert read_inputs(lines(written + later)) == ReadInputs([a1, b2, b4, a5], [])


def test_a_write_that_fails_leaves_no_row_and_the_next_prompt_reads_whole(
    runs_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    a1, b2, a3, b4, a5 = duet(5)
    writer = RunStore(runs_dir).create(run_meta("r1"))
    writer.append_inputs(a1)
    writer.append_inputs(b2)
    fsync = os.fsync

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store_module.os, "fsync", full_disk)
    with pytest.raises(RecordError):
        writer.append_inputs(a3)
    monkeypatch.setattr(store_module.os, "fsync", fsync)
    writer.append_inputs(b4)
    writer.append_inputs(a5)
    run = RunStore(runs_dir).load("r1")
    assert run.inputs() == [a1, b2, b4, a5]
    rows = [
        InputsRow.model_validate_json(line) for line in (run.folder / "inputs.jsonl").read_text().splitlines()
    ]
    assert rows == [row(a1, None, 0), row(b2, None, 0), row(b4, 2, 3), row(a5, 1, 2)]
