"""A run's numbers on the page: the header's totals, the per-turn trace table, the charts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from graphs import RunRecord, TraceRecord, run_totals


def trace_frame(records: Sequence[TraceRecord], names: dict[str, str]) -> pd.DataFrame:
    """One row per model turn, in the columns `duologue show --trace` prints."""
    rows = [
        {
            "turn": r.turn,
            "speaker": names.get(r.speaker or "", r.speaker),
            "model": r.model,
            "prompt tokens": r.prompt_tokens,
            "tokens": r.completion_tokens,
            "tok/s": r.tokens_per_s,
            "ttft s": r.ttft_s,
            "load s": r.load_s,
            "latency s": r.latency_s,
            "GPU": None if r.gpu_fraction is None else r.gpu_fraction * 100,
            "done": r.done_reason,
            "placed": getattr(r, "residency", None),
            "flags": ", ".join(r.flags),
        }
        for r in records
    ]
    return pd.DataFrame(rows, columns=TRACE_COLUMNS)


TRACE_COLUMNS = [
    "turn",
    "speaker",
    "model",
    "prompt tokens",
    "tokens",
    "tok/s",
    "ttft s",
    "load s",
    "latency s",
    "GPU",
    "done",
    "placed",
    "flags",
]


def show_trace_table(records: Sequence[TraceRecord], names: dict[str, str]) -> None:
    if not records:
        st.caption("No finished turn yet.")
        return
    st.dataframe(
        trace_frame(records, names),
        hide_index=True,
        column_config={
            "turn": st.column_config.NumberColumn(width=50),
            "prompt tokens": st.column_config.NumberColumn(
                "in", help="prompt tokens Ollama evaluated", width=60
            ),
            "tokens": st.column_config.NumberColumn("out", help="tokens generated", width=60),
            "placed": st.column_config.TextColumn(
                help="How the model was placed for the turn: shared, exclusive, or cpu (a CPU-only server)"
            ),
            "done": st.column_config.TextColumn(
                help="Ollama's done_reason: stop, or length (cut by num_predict)"
            ),
            "tok/s": st.column_config.NumberColumn(format="%.1f"),
            "ttft s": st.column_config.NumberColumn(format="%.2f"),
            "load s": st.column_config.NumberColumn(format="%.2f"),
            "latency s": st.column_config.NumberColumn(format="%.1f"),
            "GPU": st.column_config.ProgressColumn(
                "GPU",
                help="share of the model in VRAM (from /api/ps)",
                format="%.0f%%",
                min_value=0,
                max_value=100,
            ),
        },
        key="trace-table",
    )


def chart_frame(records: Sequence[TraceRecord], names: dict[str, str]) -> pd.DataFrame:
    rows = []
    for r in records:
        rows.append(
            {
                "turn": r.turn,
                "speaker": names.get(r.speaker or "", r.speaker or "?"),
                "tok/s": r.tokens_per_s,
                "latency s": r.latency_s,
                "prompt tokens": r.prompt_tokens,
                "tokens": r.completion_tokens,
                "load": (r.load_duration or 0) / 1e9,
                "prompt": (r.prompt_eval_duration or 0) / 1e9,
                "generation": (r.eval_duration or 0) / 1e9,
                "flags": ", ".join(r.flags) or "-",
            }
        )
    return pd.DataFrame(rows)


def show_charts(records: Sequence[TraceRecord], names: dict[str, str]) -> None:
    """Per-turn charts: a model on the CPU, a slow load or a truncated prompt stands out."""
    records = [r for r in records if not r.error]  # a failed attempt has no timings to compare
    if not records:
        return
    data = chart_frame(records, names)
    turn = alt.X("turn:O", title="turn", axis=alt.Axis(labelAngle=0))
    speaker = alt.Color("speaker:N", title="speaker")
    tips = ["turn:O", "speaker:N", "tok/s:Q", "latency s:Q", "tokens:Q", "prompt tokens:Q", "flags:N"]

    def bars(y: str, title: str) -> alt.Chart:
        return (
            alt.Chart(data, title=title, height=220)
            .mark_bar()
            .encode(x=turn, y=alt.Y(f"{y}:Q", title=None), color=speaker, tooltip=tips)
        )

    tokens = (
        alt.Chart(data, title="Tokens in and out", height=220)
        .transform_fold(["prompt tokens", "tokens"], as_=["direction", "count"])
        .transform_calculate(direction="datum.direction === 'tokens' ? 'out (reply)' : 'in (prompt)'")
        .mark_bar()
        .encode(
            x=turn,
            xOffset=alt.XOffset("direction:N", sort=["in (prompt)", "out (reply)"]),
            y=alt.Y("count:Q", title=None),
            color=alt.Color(
                "direction:N",
                title="tokens",
                sort=["in (prompt)", "out (reply)"],
                scale=alt.Scale(range=["#9ecae1", "#3182bd"]),
            ),
            tooltip=["turn:O", "speaker:N", "direction:N", "count:Q"],
        )
    )
    stages: list[Any] = ["load", "prompt", "generation"]
    time_split = (
        alt.Chart(data, title="Where the time went (s): load, prompt, generation", height=220)
        .transform_fold(stages, as_=["stage", "seconds"])
        .transform_calculate(order="indexof(['load', 'prompt', 'generation'], datum.stage)")
        .mark_bar()
        .encode(
            x=turn,
            y=alt.Y("seconds:Q", title=None, stack="zero"),
            color=alt.Color(
                "stage:N",
                sort=stages,
                scale=alt.Scale(domain=stages, range=["#fdae6b", "#9ecae1", "#3182bd"]),
            ),
            order=alt.Order("order:Q"),
            tooltip=["turn:O", "speaker:N", "stage:N", alt.Tooltip("seconds:Q", format=".2f")],
        )
    )
    left, right = st.columns(2)
    with left:
        st.altair_chart(bars("tok/s", "Decode speed (tok/s)"), width="stretch")
        st.altair_chart(tokens, width="stretch")
    with right:
        st.altair_chart(bars("latency s", "Latency (s)"), width="stretch")
        st.altair_chart(time_split, width="stretch")
    st.caption(
        "Latency is the turn's wall time, as in the stats line; the time split is Ollama's own "
        "account of it (load_duration, prompt_eval_duration, eval_duration)."
    )


def show_totals(run: RunRecord) -> None:
    totals = run_totals(run)
    records = run.turn_records
    rates = [r.tokens_per_s for r in records if r.tokens_per_s]
    cols = st.columns(4)
    cols[0].metric("Turns", f"{totals['turns_done']} / {totals['turns']}")
    cols[1].metric("Tokens", f"{totals['tokens']}")
    cols[2].metric("Generation", f"{sum(r.latency_s or 0 for r in records):.0f} s")
    cols[3].metric("Mean tok/s", f"{sum(rates) / len(rates):.1f}" if rates else "-")
    flags = run.flags
    if flags:
        with st.container(horizontal=True):
            st.caption("Flags:")
            for flag in flags:
                st.badge(
                    flag, color="red" if flag in ("CPU", "error") else "orange", help=FLAG_HELP.get(flag)
                )


FLAG_HELP = {
    "CPU": "A model ran (partly) on the CPU: its tok/s is a fraction of what the GPU gives.",
    "slow": "A turn decoded below its participant's min_tok_s.",
    "thinking": "eval_count, and so tokens and tok/s, include the model's thinking tokens.",
    "truncated": "The prompt outgrew num_ctx and Ollama silently dropped the oldest messages.",
    "cut by length": "The reply hit num_predict and was cut off mid-way.",
    "error": "The turn failed.",
}
