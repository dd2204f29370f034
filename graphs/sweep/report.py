"""A sweep's results: one row per cell from its run's record, then each model assignment's
aggregates. `duologue sweep --json`, `sweep-report` and the page's Sweeps page all read this."""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter
from pathlib import Path

from pydantic import BaseModel

from graphs.errors import DuologueError
from graphs.records.store import RunRecord, RunStore
from graphs.records.tables import model_rates, run_totals
from graphs.sweep.plan import Cell
from graphs.sweep.spec import LeftPool, SweepManifest, load_manifest

PENDING = "pending"
"""A cell whose run has not begun."""


class CellRow(BaseModel):
    """One cell and how its run stands. The first eight fields are the sweep's JSON contract."""

    cell: int
    run_id: str | None
    status: str
    """The run's status as `duologue runs` says it (completed, failed, interrupted, running,
    stopped), or pending before its run begins."""
    host: str | None
    """The host that served its last turn (or, before one, the one it was started on)."""
    models: dict[str, str]
    topic: str
    seed: int | None
    tokens: int | None
    """Tokens generated over its finished turns, each counted once."""
    repeat: int
    assignment: int
    turns_done: int | None = None
    turns: int | None = None
    tokens_per_s: dict[str, float] = {}
    """Each model's decode rate over its finished turns (graphs.records.tables.model_rates)."""
    minutes: float | None = None
    """Generation minutes over its finished turns."""
    flags: list[str] = []
    verdict: str | None = None
    """The saved analysis's verdict (`duologue analyze`), if the run has one."""
    challenges: int | None = None
    questions: int | None = None


class Spread(BaseModel):
    """A figure over an assignment's completed cells: the mean, and the standard deviation."""

    mean: float | None
    spread: float | None
    n: int


class AssignmentSummary(BaseModel):
    assignment: int
    models: dict[str, str]
    cells: int
    completed: int
    tokens: Spread
    minutes: Spread
    tokens_per_s: dict[str, Spread]
    verdicts: dict[str, int]
    """How many of its cells' analyses gave each verdict."""


class SweepReport(BaseModel):
    sweep_id: str
    cells: list[CellRow]
    assignments: list[AssignmentSummary] = []
    left_pool: list[LeftPool] = []
    """Hosts taken out of the pool for failing twice in a row, and the cells that moved."""

    def contract(self) -> dict[str, object]:
        """The sweep's JSON as scripts rely on it: sweep_id and each cell's eight fields."""
        keys = ("cell", "run_id", "status", "host", "models", "topic", "seed", "tokens")
        return {
            "sweep_id": self.sweep_id,
            "cells": [{key: getattr(row, key) for key in keys} for row in self.cells],
        }


def sweep_report(sweep_id: str, runs_dir: Path | str | None = None) -> SweepReport:
    """The sweep's cells as their runs stand now, and the aggregates per model assignment."""
    manifest = load_manifest(sweep_id, runs_dir)
    runs = cell_runs(sweep_id, RunStore(runs_dir))
    rows = [cell_row(cell, runs.get(cell.cell)) for cell in manifest.cells]
    return SweepReport(
        sweep_id=sweep_id,
        cells=rows,
        assignments=summaries(manifest, rows),
        left_pool=manifest.left_pool,
    )


def sweep_ids(runs_dir: Path | str | None = None) -> list[str]:
    """The runs folder's sweeps, the last one written first (what the Sweeps page offers)."""
    return list(RunStore(runs_dir).sweep_ids())


def cell_runs(sweep_id: str, store: RunStore) -> dict[int, RunRecord]:
    """Each cell's run: the latest one recording this sweep and cell in its run.json, found
    through the runs folder's index, so only the sweep's own runs are read whole."""
    found: dict[int, RunRecord] = {}
    for summary in sorted(store.summaries(), key=lambda s: (s.started_at, s.run_id)):
        if summary.unreadable or summary.sweep_id != sweep_id or summary.cell is None:
            continue
        try:
            found[summary.cell] = store.load(summary.run_id)
        except DuologueError:
            continue  # gone or unreadable since the index saw it; the cell shows as not begun
    return found


def cell_row(cell: Cell, run: RunRecord | None) -> CellRow:
    base = CellRow(
        cell=cell.cell,
        run_id=None,
        status=PENDING,
        host=None,
        models=cell.models,
        topic=cell.topic,
        seed=cell.seed,
        tokens=None,
        repeat=cell.repeat,
        assignment=cell.assignment,
    )
    if run is None:
        return base
    from graphs.insight.runs import saved_analysis

    totals = run_totals(run)
    rows = run.turn_rows
    host = rows[-1].host if rows and rows[-1].host else (run.meta.participants[0].host or None)
    rates = model_rates(run.finished_records.values())
    analysis = saved_analysis(run)
    speakers = analysis.speakers.values() if analysis else []
    return base.model_copy(
        update={
            "run_id": run.meta.run_id,
            "status": run.status,
            "host": host,
            "tokens": totals["tokens"],
            "turns_done": totals["turns_done"],
            "turns": run.meta.turns,
            "tokens_per_s": {model: round(rate, 1) for model, rate in rates.items() if rate is not None},
            "minutes": totals["generation_minutes"],
            "flags": run.flags,
            "verdict": analysis.verdict if analysis else None,
            "challenges": sum(s.challenges for s in speakers) if analysis else None,
            "questions": sum(s.questions for s in speakers) if analysis else None,
        }
    )


def spread(values: list[float]) -> Spread:
    if not values:
        return Spread(mean=None, spread=None, n=0)
    return Spread(
        mean=round(statistics.fmean(values), 2), spread=round(statistics.pstdev(values), 2), n=len(values)
    )


def summaries(manifest: SweepManifest, rows: list[CellRow]) -> list[AssignmentSummary]:
    """Per model assignment, over its completed cells (a partial run's tokens would pull the mean)."""
    result = []
    for index, models in enumerate(manifest.file.models):
        mine = [r for r in rows if r.assignment == index]
        done = [r for r in mine if r.status == "completed"]
        model_names = list(dict.fromkeys(m for r in done for m in r.tokens_per_s))
        result.append(
            AssignmentSummary(
                assignment=index,
                models=dict(models),
                cells=len(mine),
                completed=len(done),
                tokens=spread([float(r.tokens or 0) for r in done]),
                minutes=spread([r.minutes or 0.0 for r in done]),
                tokens_per_s={
                    m: spread([r.tokens_per_s[m] for r in done if m in r.tokens_per_s]) for m in model_names
                },
                verdicts=dict(sorted(Counter(r.verdict for r in mine if r.verdict).items())),
            )
        )
    return result


CSV_HEADERS = (
    "cell", "status", "host", "models", "topic", "seed", "run_id", "tokens", "minutes", "flags",
    "verdict", "challenges", "questions",
)  # fmt: skip


def report_csv(report: SweepReport) -> str:
    """One row per cell; a tok/s column per model of the sweep, in the order they appear."""
    models = list(dict.fromkeys(m for row in report.cells for m in row.models.values()))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*CSV_HEADERS, *(f"tok/s {m}" for m in models)])
    for row in report.cells:
        fields = {
            **row.model_dump(),
            "models": "; ".join(f"{name}={model}" for name, model in row.models.items()),
            "flags": "; ".join(row.flags),
        }
        writer.writerow(
            [blank(fields[key]) for key in CSV_HEADERS] + [blank(row.tokens_per_s.get(m)) for m in models]
        )
    return out.getvalue()


def blank(value: object) -> str:
    return "" if value is None else str(value)
