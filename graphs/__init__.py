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
    "Shape": "graphs.spec",
    "Participant": "graphs.spec",
    "ModelOptions": "graphs.spec",
    "load_shape": "graphs.spec",
    "parse_shape": "graphs.spec",
    "builtin_shape_names": "graphs.spec",
    "with_overrides": "graphs.spec",
    "builtin_shape_text": "graphs.spec",
    "PlannedTurn": "graphs.schedule",
    "plan_turns": "graphs.schedule",
    "labels": "graphs.relay",
    "mermaid": "graphs.build",
    "graph_dot": "graphs.build",
    "Turn": "graphs.state",
    "RunRequest": "graphs.runner",
    "RunOutcome": "graphs.runner",
    "RunObserver": "graphs.runner",
    "run_dialogue": "graphs.runner",
    "resume_dialogue": "graphs.durable",
    "fork_dialogue": "graphs.durable",
    "NothingToResume": "graphs.durable",
    "RunStore": "graphs.runstore",
    "RunRecord": "graphs.runstore",
    "new_run_id": "graphs.runstore",
    "RunMeta": "graphs.records",
    "TraceRecord": "graphs.records",
    "InputsRecord": "graphs.records",
    "run_totals": "graphs.report",
    "stats_line": "graphs.transcript",
    "default_host": "graphs.ollama",
    "normalize_host": "graphs.ollama",
    "list_models": "graphs.ollama",
    "start_embedded": "graphs.embedded.serve",
    "embedded_models": "graphs.embedded.serve",
    "EmbeddedUnavailable": "graphs.embedded.llama_backend",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from graphs.build import graph_dot, mermaid
    from graphs.durable import NothingToResume, fork_dialogue, resume_dialogue
    from graphs.embedded.llama_backend import EmbeddedUnavailable
    from graphs.embedded.serve import embedded_models, start_embedded
    from graphs.errors import DuologueError, RunFailed, RunInterrupted
    from graphs.ollama import default_host, list_models, normalize_host
    from graphs.records import InputsRecord, RunMeta, TraceRecord
    from graphs.relay import labels
    from graphs.report import run_totals
    from graphs.runner import RunObserver, RunOutcome, RunRequest, run_dialogue
    from graphs.runstore import RunRecord, RunStore, new_run_id
    from graphs.schedule import PlannedTurn, plan_turns
    from graphs.spec import (
        ModelOptions,
        Participant,
        Shape,
        builtin_shape_names,
        builtin_shape_text,
        load_shape,
        parse_shape,
        with_overrides,
    )
    from graphs.state import Turn
    from graphs.transcript import stats_line


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'graphs' has no attribute '{name}'")
    return getattr(import_module(_EXPORTS[name]), name)
