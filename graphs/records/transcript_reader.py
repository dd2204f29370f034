"""transcript.md read back: turns, stats lines, header and observer's notes.

The reader of the format transcript.py writes, and of the ones people write by hand in
the same spirit: `—`, `–` or `-` in headings, turns without a stats line, notes before the
first turn, an Observer's Notes section, no Total line, the whole wrapped in a code fence.
`duologue import` and the analysis of any run read transcripts through it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from graphs.errors import DuologueError

HEADING = re.compile(r"^#{2,4}\s*Turn\s+(\d+)\s*[:.]\s*(.*?)\s*$", re.IGNORECASE)
KIND_AT_END = re.compile(r"^(.*?)\s+[—–-]+\s+([A-Za-z]+)$")
STATS = re.compile(
    r"^\*\(\s*(?P<tokens>\d+)\s+tokens?\s*,\s*(?P<rate>[\d.]+|\?)\s*tok/s\s*,\s*"
    r"(?P<seconds>\d+(?:\.\d+)?)\s*s\s*(?:,\s*(?P<flags>[^)]*))?\)\*$"
)
PERSON_STATS = re.compile(
    r"^\*\(\s*person\s*,\s*(?P<words>\d+)\s+words?\s*,\s*(?P<seconds>\d+(?:\.\d+)?)\s*s\s*"
    r"(?:,\s*(?P<flags>[^)]*))?\)\*$"
)
"""A person's turn: '*(person, 212 words, 95s)*'."""
NO_STATS = re.compile(r"^\*\(\s*no stats\s*\)\*$")
INTERJECTION = re.compile(r"^###\s*Facilitator\b.*?before\s+Turn\s+(\d+)", re.IGNORECASE)
OBSERVER = re.compile(r"^##\s*Observer'?s?\s+Notes\s*(?:\((?P<label>[^)]*)\))?\s*:?\s*$", re.IGNORECASE)
TOTAL = re.compile(r"^Total:\s*(\d+)\s+tokens?\b", re.IGNORECASE)
ENDING = re.compile(r"^\*(Run failed|Run interrupted|Waiting for the facilitator)\b.*\*$")
"""How transcript.py says that a run stopped early: not part of the last turn's text."""
FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
RULE = re.compile(r"^\s*(-{3,}|\*{3,}|_{3,})\s*$")
KINDS = ("opening", "response", "reply", "closing")


class TranscriptError(DuologueError):
    """A transcript that cannot be read as one; the message names the line."""


class NoTurns(TranscriptError):
    """A transcript without a single turn heading."""


@dataclass
class TurnStats:
    tokens: int | None
    """None for a person's turn, which counts `words` instead."""
    tokens_per_s: float | None
    seconds: float
    flags: list[str] = field(default_factory=list)
    words: int | None = None


@dataclass
class ReadTurn:
    number: int
    label: str
    kind: str
    text: str
    stats: TurnStats | None = None
    line: int = 0
    """Where its heading stands in the file (1-based)."""


@dataclass
class ReadTranscript:
    title: str | None
    header: list[str]
    """The `## ...` lines before the first turn, without their hashes."""
    notes: str
    """Free text before the first turn."""
    turns: list[ReadTurn]
    interjections: dict[int, str] = field(default_factory=dict)
    observer_label: str | None = None
    observer_notes: str | None = None
    total_tokens: int | None = None

    def header_value(self, name: str) -> str | None:
        """The value of a `## Name: value` header line, if there is one."""
        for line in self.header:
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == name.lower():
                return value.strip()
        return None

    @property
    def labels(self) -> list[str]:
        """The speakers' labels, in the order they first speak."""
        return list(dict.fromkeys(turn.label for turn in self.turns))


def read_transcript(text: str, source: str = "transcript") -> ReadTranscript:
    """Parse a transcript; TranscriptError names the line and what was expected there."""
    lines = text.splitlines()
    title: str | None = None
    header: list[str] = []
    notes: list[str] = []
    turns: list[ReadTurn] = []
    interjections: dict[int, str] = {}
    observer_label: str | None = None
    observer: list[str] | None = None
    total: int | None = None
    body: list[str] | None = None  # the block being read: a turn's text or an interjection
    said_before: int | None = None
    seen_turn = False

    def close_block() -> None:
        nonlocal body, said_before
        if body is None:
            return
        text = "\n".join(body).strip()
        if said_before is not None:
            interjections[said_before] = text
        elif turns:
            turns[-1].text = text
        body, said_before = None, None

    for index, raw in enumerate(lines, start=1):
        line = raw.rstrip()
        stripped = line.strip()
        if observer is not None:
            if TOTAL.match(stripped):
                total = int(TOTAL.match(stripped).group(1))  # type: ignore[union-attr]
                break
            observer.append(line)
            continue
        heading = HEADING.match(stripped)
        if heading:
            close_block()
            turns.append(parse_heading(heading, index, source, turns))
            seen_turn = True
            body = []
            continue
        said = INTERJECTION.match(stripped)
        if said:
            close_block()
            said_before = int(said.group(1))
            body = []
            continue
        observing = OBSERVER.match(stripped)
        if observing:
            close_block()
            observer_label = (observing.group("label") or "").strip() or None
            observer = []
            continue
        if TOTAL.match(stripped):
            close_block()
            total = int(TOTAL.match(stripped).group(1))  # type: ignore[union-attr]
            break
        if not seen_turn:
            if FENCE.match(stripped) or RULE.match(stripped):
                continue
            if stripped.startswith("# ") and title is None:
                title = stripped[2:].strip()
            elif stripped.startswith("# "):
                title = stripped[2:].strip()  # a later title (inside a wrapper) is the transcript's
                header, notes = [], []
            elif stripped.startswith("## "):
                header.append(stripped[3:].strip())
            else:
                notes.append(line)
            continue
        assert body is not None
        if said_before is None and not body_has_text(body) and turns[-1].stats is None:
            stats = parse_stats(stripped, index, source)
            if stats is not None:
                turns[-1].stats = stats
                continue
        if ENDING.match(stripped):
            continue
        if RULE.match(stripped):
            continue  # the separator between turns; a turn's own rules are rare and cosmetic
        body.append(line)
    close_block()
    if not turns:
        raise NoTurns(f"{source}: no turns found; expected headings like '### Turn 1: LABEL — Opening'")
    return ReadTranscript(
        title=title,
        header=header,
        notes="\n".join(notes).strip(),
        turns=turns,
        interjections=interjections,
        observer_label=observer_label,
        observer_notes="\n".join(observer).strip() if observer is not None else None,
        total_tokens=total,
    )


def parse_heading(match: re.Match[str], line: int, source: str, turns: list[ReadTurn]) -> ReadTurn:
    number = int(match.group(1))
    expected = turns[-1].number + 1 if turns else None
    if expected is not None and number != expected:
        raise TranscriptError(
            f"{source}: line {line}: expected Turn {expected} after Turn {turns[-1].number}, "
            f"found Turn {number}"
        )
    rest = match.group(2).strip()
    kind_match = KIND_AT_END.match(rest)
    if kind_match and kind_match.group(2).lower() in KINDS:
        label, kind = kind_match.group(1).strip(), kind_match.group(2).lower()
    else:
        label, kind = rest, ""
    label = label.strip(" *_")
    if not label:
        raise TranscriptError(
            f"{source}: line {line}: expected a speaker after 'Turn {number}:', "
            "as in '### Turn 1: LABEL — Opening'"
        )
    return ReadTurn(number=number, label=label, kind=kind, text="", line=line)


def parse_stats(line: str, index: int, source: str) -> TurnStats | None:
    """The turn's stats line, None if `line` is not one; a malformed one is an error."""
    if NO_STATS.match(line):
        return None
    person = PERSON_STATS.match(line)
    if person:
        flags = [f.strip() for f in (person.group("flags") or "").split(",") if f.strip()]
        words, seconds = int(person.group("words")), float(person.group("seconds"))
        return TurnStats(tokens=None, tokens_per_s=None, seconds=seconds, flags=flags, words=words)
    match = STATS.match(line)
    if match:
        rate = match.group("rate")
        flags = [f.strip() for f in (match.group("flags") or "").split(",") if f.strip()]
        return TurnStats(
            tokens=int(match.group("tokens")),
            tokens_per_s=None if rate == "?" else float(rate),
            seconds=float(match.group("seconds")),
            flags=flags,
        )
    if line.startswith("*(") and "tok" in line:
        raise TranscriptError(
            f"{source}: line {index}: expected a stats line like '*(774 tokens, 1.4 tok/s, 564s)*', "
            f"found {line[:60]!r}"
        )
    return None


def body_has_text(body: list[str]) -> bool:
    return any(line.strip() for line in body)


def infer_kinds(turns: list[ReadTurn]) -> None:
    """Fill in the kinds a hand-written transcript left out, as the schedule would name them."""
    spoken: set[str] = set()
    for index, turn in enumerate(turns):
        if not turn.kind:
            if index == 0:
                turn.kind = "opening"
            elif index == len(turns) - 1 and len(turns) > 1:
                turn.kind = "closing"
            else:
                turn.kind = "reply" if turn.label in spoken else "response"
        spoken.add(turn.label)
