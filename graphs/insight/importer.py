"""`duologue import`: a hand-held dialogue's transcript becomes a run record.

The transcript is kept as given; run.json takes the participants from the turn headings'
labels and the topic and date from the header lines; trace.jsonl takes each turn's
tokens, tok/s and seconds from its stats line (null where a turn has none). The file is
read whole and checked before anything is written, so a bad file leaves nothing behind.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from graphs.errors import DuologueError
from graphs.records.schema import ParticipantRecord, RunMeta, TraceRecord, package_version
from graphs.records.store import RunStore, RunWriter, new_run_id, now_iso
from graphs.records.transcript_reader import ReadTranscript, TurnStats, infer_kinds, read_transcript

IMPORTED = "imported"
MAX_BYTES = 5_000_000
DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:[ T](\d{1,2}:\d{2}))?")


class NotATranscript(DuologueError):
    """A file that cannot be imported as a transcript."""


def read_file(path: Path) -> str:
    """The file's text, or one line saying why it is not a transcript one can read."""
    if path.is_dir():
        raise NotATranscript(f"{path}: is a directory; give a transcript file (.md)")
    if not path.is_file():
        raise NotATranscript(f"{path}: no such file")
    if path.stat().st_size > MAX_BYTES:
        raise NotATranscript(f"{path}: larger than {MAX_BYTES // 1_000_000} MB; is it a transcript?")
    data = path.read_bytes()
    if b"\x00" in data:
        raise NotATranscript(f"{path}: a binary file, not a Markdown transcript")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise NotATranscript(
            f"{path}: line {line}: not UTF-8 text; save it as UTF-8 and import it again"
        ) from None


def import_transcript(path: Path, runs_dir: Path | None = None) -> RunWriter:
    """Read, check, then record: the new run's writer."""
    text = read_file(path)
    transcript = read_transcript(text, str(path))
    infer_kinds(transcript.turns)
    meta = imported_meta(transcript, path)
    records = trace_rows(meta, transcript)
    writer = RunStore(runs_dir).create(meta)
    writer.save_transcript(text)
    for record in records:
        writer.append_trace(record)
    return writer


def slug(label: str, taken: set[str]) -> str:
    """A participant name for a label: lowercase letters, digits and dashes, unique."""
    base = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")[:28] or "speaker"
    if not base[0].isalpha():
        base = f"p-{base}"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def imported_meta(transcript: ReadTranscript, path: Path) -> RunMeta:
    taken: set[str] = set()
    names = {label: slug(label, taken) for label in transcript.labels}
    return RunMeta.model_validate(
        {
            "run_id": new_run_id(IMPORTED),
            "shape": IMPORTED,
            "status": IMPORTED,
            "participants": [
                ParticipantRecord(name=names[label], label=label, model=label, host="", options={})
                for label in transcript.labels
            ],
            "topic": (transcript.header_value("Topic") or "").strip(),
            "turns": len(transcript.turns),
            "started_at": started_at(transcript),
            "ended_at": now_iso(),
            "versions": {"duologue": package_version("duologue")},
            "imported_from": path.name,
            "title": transcript.title,
        }
    )


def started_at(transcript: ReadTranscript) -> str:
    """The date from the header (`## 2026-02-05 (Evening)`), else the time of the import."""
    for line in transcript.header:
        match = DATE.match(line)
        if match:
            try:
                when = datetime.fromisoformat(f"{match.group(1)}T{match.group(2) or '00:00'}")
            except ValueError:
                continue
            return when.replace(tzinfo=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return now_iso()


def person_fields(stats: TurnStats | None) -> dict[str, Any]:
    """A person's turn, as its stats line says: their words, no model."""
    if stats is None or stats.words is None:
        return {}
    return {"speaker_kind": "person", "words": stats.words}


def trace_rows(meta: RunMeta, transcript: ReadTranscript) -> list[TraceRecord]:
    names = {p.label: p.name for p in meta.participants}
    rows = []
    for seq, turn in enumerate(transcript.turns, start=1):
        stats = turn.stats
        rows.append(
            TraceRecord(
                run_id=meta.run_id,
                seq=seq,
                node="closing" if turn.kind == "closing" else names[turn.label],
                turn=turn.number,
                kind=turn.kind,
                speaker=names[turn.label],
                model=turn.label,
                started_at=meta.started_at,
                ended_at=meta.started_at,
                latency_s=stats.seconds if stats else None,
                completion_tokens=stats.tokens if stats else None,
                tokens_per_s=stats.tokens_per_s if stats else None,
                **person_fields(stats),
            )
        )
    return rows
