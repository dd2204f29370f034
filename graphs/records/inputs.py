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
    return RunningDigest().extended(messages).hexdigest()


class RunningDigest:
    """prompt_digest of a prompt that grows at its end, kept open: a speaker's next prompt,
    its last one and then a few messages more, hashes only the new messages, where hashing the
    whole prompt at every turn took time in proportion to the dialogue so far."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256(b"[")
        self._count = 0

    def extended(self, messages: Sequence[Message]) -> RunningDigest:
        """The digest of this prompt with `messages` after it; this one is left as it was."""
        longer = RunningDigest()
        longer._sha, longer._count = self._sha.copy(), self._count + len(messages)
        for index, message in enumerate(messages, start=self._count):
            text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
            longer._sha.update(("," + text if index else text).encode("utf-8"))
        return longer

    def hexdigest(self) -> str:
        closed = self._sha.copy()
        closed.update(b"]")
        return closed.hexdigest()


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

    last: dict[str, tuple[int, list[int], RunningDigest]] = field(default_factory=dict)
    """Each speaker's last turn, its prompt's message_hashes and its RunningDigest."""
    _hashed: tuple[str, int, list[int], RunningDigest] | None = field(default=None, init=False, repr=False)
    """The speaker, turn, hashes and digest `row` took last, for `wrote` to keep."""

    def row(self, record: InputsRecord) -> InputsRow:
        """The record's row; `wrote(record)` once the file has it, so a row that failed to be
        written is never a later row's base."""
        previous = self.last.get(record.speaker)
        base_turn, kept = None, 0
        hashes = message_hashes(record.messages)
        if previous is not None:
            kept = shared_prefix(previous[1], hashes)
            base_turn = previous[0] if kept else None
        if previous is not None and kept == len(previous[1]):  # the last prompt, and more after it
            digest = previous[2].extended(record.messages[kept:])
        else:
            digest = RunningDigest().extended(record.messages)
        self._hashed = (record.speaker, record.turn, hashes, digest)
        return InputsRow(
            format=INPUTS_FORMAT,
            run_id=record.run_id,
            turn=record.turn,
            speaker=record.speaker,
            model=record.model,
            base_turn=base_turn,
            kept=kept,
            added=record.messages[kept:],
            sha256=digest.hexdigest(),
        )

    def wrote(self, record: InputsRecord) -> None:
        if self._hashed is None or self._hashed[:2] != (record.speaker, record.turn):
            hashes, digest = message_hashes(record.messages), RunningDigest().extended(record.messages)
        else:
            hashes, digest = self._hashed[2], self._hashed[3]
        self.last[record.speaker] = (record.turn, hashes, digest)


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
