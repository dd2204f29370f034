"""inputs.jsonl's rows at format 2: each turn's prompt as what it adds to its speaker's previous one.

A speaker's prompt only grows at its end between two of its turns (graphs/engine/relay.py), so
a row holds the messages after the part it shares with that speaker's previous row, and the
SHA-256 of the whole prompt. Reading a file rebuilds every turn's exact prompt and checks it
against that digest. Rows of format 1 (the whole prompt, InputsRecord) are read as they are, so a
file an older duologue began and a newer one continued reads whole.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from graphs.records.schema import INPUTS_FORMAT, InputsRecord, InputsRow

Message = dict[str, str]


def prompt_digest(messages: Sequence[Message]) -> str:
    """The SHA-256 of a prompt as compact JSON, keys sorted: InputsRow.sha256."""
    text = json.dumps(list(messages), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def message_hashes(messages: Sequence[Message]) -> list[int]:
    """What InputsEncoder remembers of a prompt: a hash per message, not the message (a tuple of
    it took four times the memory, for every turn of a run). Two messages that differ hash alike
    once in 2**64; their row would then fail its digest when read, and be listed as unrebuilt."""
    return [hash(tuple(message.items())) for message in messages]


def shared_prefix(before: Sequence[object], now: Sequence[object]) -> int:
    """How many first messages the two prompts have in common."""
    count = 0
    for old, new in zip(before, now, strict=False):
        if old != new:
            break
        count += 1
    return count


@dataclass
class InputsEncoder:
    """Turns whole prompts into format-2 rows; one per run writer, which remembers each speaker's
    last prompt (a writer that reopens a run starts with none: its first row is whole)."""

    last: dict[str, tuple[int, list[int]]] = field(default_factory=dict)
    """Each speaker's last turn, and its prompt's message_hashes."""
    _hashed: tuple[str, int, list[int]] = field(default=("", 0, []), init=False, repr=False)
    """The speaker, turn and hashes `row` took last, for `wrote` to keep."""

    def row(self, record: InputsRecord) -> InputsRow:
        """The record's row; `wrote(record)` once the file has it, so a row that failed to be
        written is never a later row's base."""
        previous = self.last.get(record.speaker)
        base_turn, kept = None, 0
        self._hashed = (record.speaker, record.turn, message_hashes(record.messages))
        if previous is not None:
            kept = shared_prefix(previous[1], self._hashed[2])
            base_turn = previous[0] if kept else None
        return InputsRow(
            format=INPUTS_FORMAT,
            run_id=record.run_id,
            turn=record.turn,
            speaker=record.speaker,
            model=record.model,
            base_turn=base_turn,
            kept=kept,
            added=record.messages[kept:],
            sha256=prompt_digest(record.messages),
        )

    def wrote(self, record: InputsRecord) -> None:
        speaker, turn, hashes = self._hashed
        if (speaker, turn) != (record.speaker, record.turn):
            hashes = message_hashes(record.messages)
        self.last[record.speaker] = (record.turn, hashes)


@dataclass
class ReadInputs:
    """A file's prompts, and the rows that could not be rebuilt (their line numbers, from 1)."""

    records: list[InputsRecord]
    unrebuilt: list[int]


def read_inputs(lines: Iterable[bytes]) -> ReadInputs:
    """Every turn's whole prompt from inputs.jsonl's lines, either format.

    A line that cannot be read (torn by a crash mid-append) costs only its own record; a format-2
    row whose base is missing or whose rebuilt prompt does not match its digest is not returned,
    and its line is listed.
    """
    records: list[InputsRecord] = []
    unrebuilt: list[int] = []
    prompts: dict[tuple[str, int], list[Message]] = {}  # (speaker, turn): its latest prompt
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        record = parsed(line)
        if record is None:
            continue
        if isinstance(record, InputsRow):
            record = rebuilt(record, prompts)
            if record is None:
                unrebuilt.append(number)
                continue
        prompts[(record.speaker, record.turn)] = record.messages
        records.append(record)
    return ReadInputs(records, unrebuilt)


def parsed(line: bytes) -> InputsRecord | InputsRow | None:
    try:
        data = json.loads(line)
    except ValueError:  # a torn line, or bytes that are not UTF-8
        return None
    model = InputsRow if isinstance(data, dict) and data.get("format") == INPUTS_FORMAT else InputsRecord
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def rebuilt(row: InputsRow, prompts: dict[tuple[str, int], list[Message]]) -> InputsRecord | None:
    base: list[Message] = []
    if row.base_turn is not None:
        found = prompts.get((row.speaker, row.base_turn))
        if found is None or len(found) < row.kept:
            return None
        base = found[: row.kept]
    messages = [*base, *row.added]
    if prompt_digest(messages) != row.sha256:
        return None
    return InputsRecord.model_construct(  # its parts are validated already
        run_id=row.run_id, turn=row.turn, speaker=row.speaker, model=row.model, messages=messages
    )
