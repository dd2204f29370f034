"""Plain-text tables of runs and traces for the terminal."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from graphs.ollama.timings import NS, rate
from graphs.records.index import RunSummary
from graphs.records.schema import TraceRecord
from graphs.records.store import RunRecord


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def number(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


TRACE_HEADERS = (
    "turn",
    "speaker",
    "model",
    "in",
    "out",
    "tok/s",
    "ttft s",
    "load s",
    "latency s",
    "GPU",
    "flags",
)


def trace_rows(records: Sequence[TraceRecord]) -> list[list[str]]:
    return [
        [
            str(r.turn),
            r.speaker or "-",
            r.model or "-",
            number(r.prompt_tokens),
            number(r.completion_tokens),
            number(r.tokens_per_s),
            number(r.ttft_s, 2),
            number(r.load_s, 2),
            number(r.latency_s, 1),
            "-" if r.gpu_fraction is None else f"{r.gpu_fraction:.0%}",
            ", ".join(r.flags) or "-",
        ]
        for r in records
    ]


TRACE_FIELDS = (
    "turn",
    "speaker",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "tokens_per_s",
    "ttft_s",
    "load_s",
    "latency_s",
    "gpu_fraction",
    "flags",
    "error",
)
"""The trace table's columns for machines (`show --trace --json`), with the error's text."""


def trace_dicts(records: Sequence[TraceRecord]) -> list[dict[str, object]]:
    return [
        {name: r.flags if name == "flags" else getattr(r, name) for name in TRACE_FIELDS} for r in records
    ]


def run_totals(run: RunRecord | RunSummary) -> dict[str, object]:
    """A run's line in `duologue runs`: each finished turn counted once, whatever attempts the
    log holds; `unreadable` says why a run's record could not be read (else null)."""
    summary = run if isinstance(run, RunSummary) else run.summary()
    return {
        "run_id": summary.run_id,
        "started_at": summary.started_at,
        "shape": summary.shape,
        "models": summary.models,
        "status": summary.status,
        "turns_done": summary.turns_done,
        "turns": summary.turns,
        "tokens": summary.tokens,
        "generation_minutes": round(summary.generation_s / 60, 1),
        "flags": summary.flags,
        "unreadable": summary.unreadable,
    }


def model_rates(records: Iterable[TraceRecord]) -> dict[str, float | None]:
    """Each model's decode rate over its turns: all its tokens over all its decoding time, so a
    long turn weighs more than a short one and two models are never averaged into one number.

    A turn's decoding time is Ollama's eval_duration, or for an imported turn, which has only
    its stats line, its tokens over its tok/s. Models in the order they first spoke."""
    tokens: dict[str, int] = {}
    decoding_ns: dict[str, float] = {}
    for r in records:
        if r.speaker_kind == "person":
            continue  # a person's turn has words, not a decode rate
        model = r.model or "?"
        tokens.setdefault(model, 0)
        decoding_ns.setdefault(model, 0.0)
        if not r.completion_tokens or not r.tokens_per_s:
            continue
        tokens[model] += r.completion_tokens
        decoding_ns[model] += r.eval_duration or r.completion_tokens / r.tokens_per_s * NS
    return {model: rate(count, round(decoding_ns[model])) for model, count in tokens.items()}


RUNS_HEADERS = ("run", "started", "shape", "models", "status", "turns", "tokens", "minutes", "flags")


def runs_rows(runs: Sequence[RunSummary]) -> list[list[str]]:
    rows = []
    for run in runs:
        t = run_totals(run)
        if run.unreadable:  # no totals to show: the reason goes where the flags would
            started = str(t["started_at"])[:16].replace("T", " ")
            rows.append([run.run_id, started, "-", "-", run.status, "-", "-", "-", run.unreadable])
            continue
        rows.append(
            [
                str(t["run_id"]),
                str(t["started_at"])[:16].replace("T", " "),
                str(t["shape"]),
                ", ".join(t["models"]),  # type: ignore[arg-type]
                str(t["status"]),
                f"{t['turns_done']}/{t['turns']}",
                str(t["tokens"]),
                str(t["generation_minutes"]),
                ", ".join(t["flags"]) or "-",  # type: ignore[arg-type]
            ]
        )
    return rows
