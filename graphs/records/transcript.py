"""transcript.md in the reference run's format: a heading and a stats line per turn."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from graphs.engine.state import Turn
from graphs.records.schema import TraceRecord


class TurnFigures(Protocol):
    """What the transcript reads of a turn's trace row: a TraceRecord, or the TurnStats kept of it."""

    @property
    def seq(self) -> int: ...
    @property
    def speaker_kind(self) -> str: ...
    @property
    def completion_tokens(self) -> int | None: ...
    @property
    def tokens_per_s(self) -> float | None: ...
    @property
    def latency_s(self) -> float | None: ...
    @property
    def words(self) -> int | None: ...
    @property
    def flags(self) -> Sequence[str]: ...


@dataclass(frozen=True, slots=True)
class TurnStats:
    """The TurnFigures of a trace row, all a run keeps of each finished turn's row while it lasts
    (the row itself, some forty fields, is on disk): a tenth of its memory."""

    seq: int
    speaker_kind: str
    completion_tokens: int | None
    tokens_per_s: float | None
    latency_s: float | None
    words: int | None
    flags: tuple[str, ...]

    @classmethod
    def of(cls, record: TraceRecord) -> TurnStats:
        return cls(
            record.seq,
            record.speaker_kind,
            record.completion_tokens,
            record.tokens_per_s,
            record.latency_s,
            record.words,
            tuple(record.flags),
        )


def stats_of(records: Mapping[int, TraceRecord]) -> dict[int, TurnStats]:
    """The TurnStats a run holds of rows read back from its trace (a resume, a fork, a served run)."""
    return {number: TurnStats.of(record) for number, record in records.items()}


def stats_line(record: TurnFigures | None) -> str:
    """'*(774 tokens, 1.4 tok/s, 564s)*', plus any flags a reader must not miss; a person's turn
    '*(person, 212 words, 95s)*'."""
    if record is not None and record.speaker_kind == "person":
        flags = "".join(f", {flag}" for flag in record.flags)
        return f"*(person, {plural(record.words or 0, 'word')}, {record.latency_s or 0:.0f}s{flags})*"
    if record is None or record.completion_tokens is None:
        return "*(no stats)*"
    rate = f"{record.tokens_per_s:.1f}" if record.tokens_per_s is not None else "?"
    flags = "".join(f", {flag}" for flag in record.flags)
    return f"*({record.completion_tokens} tokens, {rate} tok/s, {record.latency_s or 0:.0f}s{flags})*"


def transcript_pieces(
    title: str,
    header_lines: Sequence[str],
    turns: Sequence[Turn],
    labels: Mapping[str, str],
    records: Mapping[int, TurnFigures],
    ending: str | None = None,
    interjections: Mapping[int, str] | None = None,
    copied: tuple[str, int] | None = None,
    heads: dict[tuple[Any, ...], str] | None = None,
) -> list[str]:
    """transcript.md's text, in pieces that join to it, each turn's words the turn's own string:
    a run rewriting its growing transcript at every turn writes them one by one, and never holds
    a copy of the whole. `interjections`: the facilitator's own words, by the turn they came
    before; `copied`: for a fork, the original run and the last turn copied from it; `heads`:
    each turn's text before its words, as rendered at an earlier turn, kept by such a caller."""
    pieces = ["\n".join([f"# {title}", *header_lines, "", "---", ""]) + "\n"]
    for index, turn in enumerate(turns):
        said = (interjections or {}).get(turn["number"])
        label = labels.get(turn["speaker"], turn["speaker"])
        record = records.get(turn["number"])
        seq = record.seq if record is not None else None
        key = (index > 0, turn["number"], turn["kind"], label, said, seq)
        head = heads.get(key) if heads is not None else None
        if head is None:
            head = ("---\n\n" if index else "") + turn_head(turn, label, record, said)
            if heads is not None:
                heads[key] = head
        pieces += [head, turn_words(turn), "\n\n"]
    if ending:
        pieces.append(f"*{ending}*\n\n")
    pieces.append(total_line(turns, records, copied) + "\n")
    return pieces


def turn_head(turn: Turn, label: str, record: TurnFigures | None, said: str | None) -> str:
    """A turn's part of the transcript up to its words: the facilitator's words before it, if
    any, its heading and its stats line."""
    parts = []
    if said:
        parts += [f"### Facilitator — before Turn {turn['number']}", "", said.strip(), "", "---", ""]
    parts.append(f"### Turn {turn['number']}: {label} — {turn['kind'].capitalize()}")
    parts.append(stats_line(record))
    parts.append("")
    return "\n".join(parts) + "\n"


def turn_words(turn: Turn) -> str:
    return turn["text"].strip() or "*(empty reply)*"


def total_line(
    turns: Sequence[Turn], records: Mapping[int, TurnFigures], copied: tuple[str, int] | None = None
) -> str:
    """'Total: 2790 tokens across 4 turns (~23 minutes of generation)'; a fork's says that the
    copied turns' tokens and time are counted."""
    counted = [records[t["number"]] for t in turns if t["number"] in records]
    tokens = sum(r.completion_tokens or 0 for r in counted)
    seconds = sum(r.latency_s or 0 for r in counted if r.speaker_kind != "person")  # a person's is typing
    took = f"{duration(seconds)} of generation"
    if copied:
        run_id, at = copied
        took += f", the {plural(at, 'turn')} copied from run {run_id} included"
    return f"Total: {plural(tokens, 'token')} across {plural(len(turns), 'turn')} ({took})"


def duration(seconds: float) -> str:
    """Minutes, as the reference's total put them; under a minute, just that."""
    if seconds < 60:
        return "<1 minute"
    return f"~{plural(round(seconds / 60), 'minute')}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


MARKDOWN_INLINE = re.compile(r"([\\`*_\[\]<>!|~&#$])")
"""What can make Markdown of a header line's text: emphasis, code, links, images, HTML, entities,
tables, strikethrough, a heading's closing #s, math (its own `## ` leaves no room for block ones)."""


def header_text(text: str, limit: int = 120) -> str:
    """Text from a user (a topic) made one header line: whitespace collapsed, cut at `limit`
    characters, and its Markdown escaped, so it reads as written and renders as nothing else."""
    line = " ".join(text.split())
    if len(line) > limit:
        line = line[: limit - 3] + "..."
    return MARKDOWN_INLINE.sub(r"\\\1", line)


def with_observer_notes(transcript: str, label: str, notes: str) -> str:
    """The transcript with `## Observer's Notes (<label>)` before its Total line (at its end if it
    has none), in place of an earlier section by the same observer."""
    heading = f"## Observer's Notes ({label})"
    lines = transcript.rstrip("\n").split("\n")
    if heading in lines:  # observed again: the new notes replace the old
        start = lines.index(heading)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith(("## ", "Total: "))), len(lines)
        )
        while start > 0 and lines[start - 1] in ("", "---"):
            start -= 1
        lines = lines[:start] + lines[end:]
    total = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith("Total: ")), len(lines))
    while total > 0 and lines[total - 1] == "":
        total -= 1
    rest = [line for line in lines[total:] if line] if total < len(lines) else []
    section = ["", "---", "", heading, "", notes.strip(), ""]
    return "\n".join(lines[:total] + section + rest).rstrip("\n") + "\n"
