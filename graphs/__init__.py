"""duologue: dialogues between local language models.

The public API, for the Streamlit page and for scripts. Names load on first use, so
`duologue --help` does not pay for importing LangGraph.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DuologueError": "graphs.errors",
    "RunFailed": "graphs.errors",
    "RunInterrupted": "graphs.errors",
    "Shape": "graphs.engine.spec",
    "Participant": "graphs.engine.spec",
    "ModelOptions": "graphs.engine.spec",
    "load_shape": "graphs.engine.spec",
    "MIN_TURNS": "graphs.engine.spec",
    "MAX_TURNS": "graphs.engine.spec",
    "parse_shape": "graphs.engine.spec",
    "builtin_shape_names": "graphs.engine.spec",
    "with_overrides": "graphs.engine.spec",
    "OPENAI_PREFIX": "graphs.engine.spec",
    "server_models": "graphs.openai.api",
    "builtin_shape_text": "graphs.engine.spec",
    "PlannedTurn": "graphs.engine.schedule",
    "plan_turns": "graphs.engine.schedule",
    "labels": "graphs.engine.relay",
    "mermaid": "graphs.engine.build",
    "graph_dot": "graphs.engine.build",
    "Turn": "graphs.engine.state",
    "RunRequest": "graphs.run.runner",
    "RunOutcome": "graphs.run.runner",
    "RunObserver": "graphs.run.runner",
    "run_dialogue": "graphs.run.runner",
    "ModelSource": "graphs.run.runner",
    "RESIDENCY_POLICIES": "graphs.ollama.residency",
    "ContinueOptions": "graphs.run.durable",
    "recorded_request": "graphs.run.durable",
    "resume_dialogue": "graphs.run.durable",
    "fork_dialogue": "graphs.run.durable",
    "NothingToResume": "graphs.run.durable",
    "RunStore": "graphs.records.store",
    "RunRecord": "graphs.records.store",
    "RunSummary": "graphs.records.index",
    "new_run_id": "graphs.records.store",
    "RunMeta": "graphs.records.schema",
    "TraceRecord": "graphs.records.schema",
    "InputsRecord": "graphs.records.schema",
    "run_totals": "graphs.records.tables",
    "model_rates": "graphs.records.tables",
    "stats_line": "graphs.records.transcript",
    "default_host": "graphs.ollama.api",
    "normalize_host": "graphs.ollama.api",
    "list_models": "graphs.ollama.api",
    "Pulled": "graphs.ollama.api",
    "pulled_models": "graphs.ollama.api",
    "Resident": "graphs.ollama.api",
    "running_models": "graphs.ollama.api",
    "same_model": "graphs.ollama.names",
    "TIMEOUT_S": "graphs.ollama.timeouts",
    "rate": "graphs.ollama.timings",
    "GpuEstimate": "graphs.ollama.residency",
    "estimate_gpu": "graphs.ollama.residency",
    "gb": "graphs.ollama.residency",
    "DoctorReport": "graphs.commands.doctor",
    "examine": "graphs.commands.doctor",
    "start_embedded": "graphs.embedded.serve",
    "embedded_models": "graphs.embedded.serve",
    "suited_to_embedded": "graphs.embedded.defaults",
    "suited_participant": "graphs.embedded.defaults",
    "EmbeddedUnavailable": "graphs.embedded.llama_backend",
    "Analysis": "graphs.insight.analysis",
    "NothingToAnalyze": "graphs.insight.runs",
    "analyze_run": "graphs.insight.runs",
    "saved_analysis": "graphs.insight.runs",
    "compare_runs": "graphs.insight.runs",
    "import_transcript": "graphs.insight.importer",
    "read_transcript": "graphs.records.transcript_reader",
    "load_sweep": "graphs.sweep.spec",
    "load_manifest": "graphs.sweep.spec",
    "sweep_report": "graphs.sweep.report",
    "SweepReport": "graphs.sweep.report",
    "report_csv": "graphs.sweep.report",
    "sweep_ids": "graphs.sweep.report",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from graphs.commands.doctor import DoctorReport, examine
    from graphs.embedded.defaults import suited_participant, suited_to_embedded
    from graphs.embedded.llama_backend import EmbeddedUnavailable
    from graphs.embedded.serve import embedded_models, start_embedded
    from graphs.engine.build import graph_dot, mermaid
    from graphs.engine.relay import labels
    from graphs.engine.schedule import PlannedTurn, plan_turns
    from graphs.engine.spec import (
        MAX_TURNS,
        MIN_TURNS,
        OPENAI_PREFIX,
        ModelOptions,
        Participant,
        Shape,
        builtin_shape_names,
        builtin_shape_text,
        load_shape,
        parse_shape,
        with_overrides,
    )
    from graphs.engine.state import Turn
    from graphs.errors import DuologueError, RunFailed, RunInterrupted
    from graphs.insight.analysis import Analysis
    from graphs.insight.importer import import_transcript
    from graphs.insight.runs import NothingToAnalyze, analyze_run, compare_runs, saved_analysis
    from graphs.ollama.api import (
        Pulled,
        Resident,
        default_host,
        list_models,
        normalize_host,
        pulled_models,
        running_models,
    )
    from graphs.ollama.names import same_model
    from graphs.ollama.residency import RESIDENCY_POLICIES, GpuEstimate, estimate_gpu, gb
    from graphs.ollama.timeouts import TIMEOUT_S
    from graphs.ollama.timings import rate
    from graphs.openai.api import server_models
    from graphs.records.index import RunSummary
    from graphs.records.schema import InputsRecord, RunMeta, TraceRecord
    from graphs.records.store import RunRecord, RunStore, new_run_id
    from graphs.records.tables import model_rates, run_totals
    from graphs.records.transcript import stats_line
    from graphs.records.transcript_reader import read_transcript
    from graphs.run.durable import (
        ContinueOptions,
        NothingToResume,
        fork_dialogue,
        recorded_request,
        resume_dialogue,
    )
    from graphs.run.runner import ModelSource, RunObserver, RunOutcome, RunRequest, run_dialogue
    from graphs.sweep.report import SweepReport, report_csv, sweep_ids, sweep_report
    from graphs.sweep.spec import load_manifest, load_sweep


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'graphs' has no attribute '{name}'")
    return getattr(import_module(_EXPORTS[name]), name)
