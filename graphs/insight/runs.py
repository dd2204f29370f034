"""Insight over recorded runs: their turns read back, analyzed, saved and set side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from graphs.errors import DuologueError
from graphs.insight.analysis import Analysis, DialogueTurn, analyze
from graphs.records.store import ANALYSIS, RunRecord, RunStore
from graphs.records.tables import model_rates, run_totals
from graphs.records.transcript_reader import NoTurns, infer_kinds, read_transcript


class NothingToAnalyze(DuologueError):
    """A run with no finished turn."""


def dialogue_turns(run: RunRecord) -> list[DialogueTurn]:
    """The run's finished turns as its transcript shows them, labels as in its headings."""
    text = run.transcript()
    if not text.strip():
        raise NothingToAnalyze(f"run {run.meta.run_id} has no finished turn to analyze")
    try:
        transcript = read_transcript(text, str(run.folder / "transcript.md"))
    except NoTurns:
        raise NothingToAnalyze(f"run {run.meta.run_id} has no finished turn to analyze") from None
    infer_kinds(transcript.turns)
    return [DialogueTurn(t.number, t.label, t.kind, t.text) for t in transcript.turns]


def analyze_run(
    run_id: str,
    runs_dir: Path | str | None = None,
    judge: tuple[str, str] | None = None,
    embed: tuple[str, str] | None = None,
) -> Analysis:
    """Analyze a run and keep the result as its analysis.json; `judge` and `embed` are
    (model, host): a model labelling stances, a model embedding each turn."""
    store = RunStore(runs_dir)
    run = store.load(run_id)
    turns = dialogue_turns(run)
    labels = None
    if judge is not None:
        from graphs.insight.judge import judge_turns

        labels = judge_turns(turns, *judge)
    vectors = None
    if embed is not None:
        from graphs.ollama import api

        api.check_models(embed[1], [embed[0]])
        vectors = (embed[0], api.embed(embed[1], embed[0], [t.text for t in turns]))
    analysis = analyze(run.meta.run_id, turns, labels, vectors)
    store.reopen(run_id).save_analysis(analysis)
    return analysis


def saved_analysis(run: RunRecord) -> Analysis | None:
    """The run's analysis.json, if it has a readable one."""
    path = run.folder / ANALYSIS
    if not path.is_file():
        return None
    try:
        return Analysis.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return None


def compare_runs(run_ids: list[str], runs_dir: Path | str | None = None) -> dict[str, Any]:
    """The runs side by side: models, turns, tokens, tok/s per model, flags, and their analysis."""
    if len(run_ids) < 2:
        raise DuologueError("compare needs two runs or more: duologue compare RUN_ID RUN_ID [...]")
    store = RunStore(runs_dir)
    runs = [store.load(run_id) for run_id in run_ids]
    return {"runs": [compared(run, runs_dir) for run in runs]}


def compared(run: RunRecord, runs_dir: Path | str | None) -> dict[str, Any]:
    totals = run_totals(run)
    rates = model_rates(record for record in run.turn_records if not record.error)
    try:
        analysis: Analysis | None = saved_analysis(run) or analyze_run(run.meta.run_id, runs_dir)
    except NothingToAnalyze:
        analysis = None
    return {
        "run_id": run.meta.run_id,
        "shape": run.meta.shape,
        "status": run.status,
        "models": {p.label: p.model for p in run.meta.participants},
        "turns": f"{totals['turns_done']}/{totals['turns']}",
        "tokens": totals["tokens"],
        "tokens_per_s": {model: round(rate, 1) for model, rate in rates.items() if rate is not None},
        "flags": totals["flags"],
        "verdict": analysis.verdict if analysis else None,
        "speakers": {
            label: {
                "questions": s.questions,
                "challenges": s.challenges,
                "agreements": s.agreements,
                "hedges_per_100w": s.hedges_per_100w,
                "echo_share": s.echo_share,
            }
            for label, s in (analysis.speakers.items() if analysis else [])
        },
    }


def as_json(analysis: Analysis) -> str:
    return json.dumps(analysis.model_dump(mode="json"), indent=2)
