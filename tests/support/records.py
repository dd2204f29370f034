"""Run records built by hand, for tests of the store and its tables that hold no run."""

from __future__ import annotations

from pathlib import Path

from graphs.records.schema import ParticipantRecord, RunMeta, TraceRecord
from graphs.records.store import RunStore


def run_meta(run_id: str, started_at: str = "2026-11-25T20:00:00.000Z") -> RunMeta:
    """A duet of 4 turns, still running, with no participants."""
    return RunMeta(
        run_id=run_id,
        shape="duet",
        status="running",
        participants=[],
        topic="t",
        turns=4,
        started_at=started_at,
    )


def trace_record(run_id: str, seq: int, turn: int) -> TraceRecord:
    """Speaker a's turn, a second long, with no metrics."""
    return TraceRecord(
        run_id=run_id, seq=seq, node="a", turn=turn, speaker="a", started_at="s", ended_at="e", latency_s=1.0
    )


def written_run(
    runs_dir: Path,
    run_id: str,
    shape: str,
    models: list[str],
    status: str,
    started_at: str,
    topic: str,
    transcript: str,
    **trace: object,
) -> None:
    """A run of one finished turn on its first model, in runs_dir; `trace` sets that turn's
    numbers (gpu_fraction=0.5 flags it CPU). For pages that list, filter and search runs."""
    participants = [
        ParticipantRecord(name=f"p{i}", label=model, model=model, host="http://127.0.0.1:9", options={})
        for i, model in enumerate(models)
    ]
    meta = run_meta(run_id, started_at).model_copy(
        update={"shape": shape, "participants": participants, "topic": topic, "status": status}
    )
    writer = RunStore(runs_dir).create(meta)
    times = {"started_at": started_at, "ended_at": started_at}
    writer.append_trace(trace_record(run_id, 1, 1).model_copy(update={"model": models[0], **times, **trace}))
    writer.save_transcript(transcript)
