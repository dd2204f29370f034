"""Run records built by hand, for tests of the store and its tables that hold no run."""

from __future__ import annotations

from graphs.records.schema import RunMeta, TraceRecord


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
