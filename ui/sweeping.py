"""What the Sweeps page draws of a sweep's report: the grid of cells, its status line, the charts."""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import quote

import altair as alt
import pandas as pd
import streamlit as st

from graphs import SweepReport
from graphs.ui import finding, render

VERDICT_COLOURS = {"converged": "#31a354", "mixed": "#9e9ac8", "contested": "#de2d26"}
UNFINISHED = ("running", "pending")
"""A cell's run going on, or a cell not begun: the sweep may still be running."""
GRID_COLUMNS = (
    "cell", "run", "status", "models", "topic", "seed", "turns", "tokens", "tok/s", "minutes", "verdict",
    "flags", "host",
)  # fmt: skip
"""The grid's columns, what tells the cells apart first: the host, the same for most, goes last."""


def pair(models: dict[str, str]) -> str:
    """A model assignment as one line: `a=glm-4.7-flash · b=qwen3:32b`."""
    return " · ".join(f"{name}={model}" for name, model in models.items())


def run_link(run_id: str | None) -> str | None:
    """The cell's run on the Run page, relative to this page's URL (the id URL-quoted)."""
    return None if run_id is None else f"run?run={quote(run_id, safe='')}"


def grid_frame(report: SweepReport) -> pd.DataFrame:
    """One row per cell, in cell order, as the grid shows it."""
    rows = [
        {
            "cell": row.cell,
            "status": row.status,
            "models": pair(row.models),
            "topic": finding.topic_line(row.topic),
            "seed": row.seed,
            "host": row.host,
            "turns": None if row.turns_done is None else f"{row.turns_done}/{row.turns}",
            "tokens": row.tokens,
            "tok/s": ", ".join(f"{model} {rate:g}" for model, rate in row.tokens_per_s.items()) or None,
            "minutes": row.minutes,
            "flags": ", ".join(row.flags) or None,
            "verdict": row.verdict,
            "run": run_link(row.run_id),
        }
        for row in report.cells
    ]
    frame = pd.DataFrame(rows, columns=list(GRID_COLUMNS))
    return frame.astype({"cell": "Int64", "seed": "Int64", "tokens": "Int64"})  # a cell not begun has none


def status_line(report: SweepReport) -> str:
    """How many cells stand how: `8 cells: 5 completed, 1 running, 2 pending`."""
    counts = Counter(row.status for row in report.cells)
    parts = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    return f"{len(report.cells)} cells: {parts}" if report.cells else "No cells."


def rates_frame(report: SweepReport) -> pd.DataFrame:
    """Each cell's decode rate per model: what the tok/s chart draws."""
    rows = [
        {"model": model, "tok/s": rate, "cell": row.cell, "pair": pair(row.models)}
        for row in report.cells
        for model, rate in row.tokens_per_s.items()
    ]
    return pd.DataFrame(rows, columns=["model", "tok/s", "cell", "pair"])


def verdicts_frame(report: SweepReport) -> pd.DataFrame:
    """Per model pair, how many of its analyzed cells gave each verdict."""
    counted = Counter((pair(row.models), row.verdict) for row in report.cells if row.verdict)
    rows = [{"pair": name, "verdict": verdict, "cells": n} for (name, verdict), n in sorted(counted.items())]
    return pd.DataFrame(rows, columns=["pair", "verdict", "cells"])


def show_charts(report: SweepReport) -> None:
    rates, verdicts = rates_frame(report), verdicts_frame(report)
    left, right = st.columns(2)
    with left:
        if rates.empty:
            st.caption("Tok/s per model: no cell has finished a turn yet.")
        else:
            points = (
                alt.Chart(rates, title="Tok/s per model, each cell a point", height=240)
                .mark_circle(size=70, opacity=0.7)
                .encode(
                    x=alt.X("model:N", title=None, axis=alt.Axis(labelAngle=0)),
                    y=alt.Y("tok/s:Q", title="tok/s"),
                    color=alt.Color("model:N", legend=None),
                    tooltip=["model:N", alt.Tooltip("tok/s:Q", format=".1f"), "cell:O", "pair:N"],
                )
            )
            means = (
                alt.Chart(rates)
                .mark_tick(thickness=2, size=30, color="black")
                .encode(x="model:N", y="mean(tok/s):Q", tooltip=[alt.Tooltip("mean(tok/s):Q", format=".1f")])
            )
            st.altair_chart(points + means, width="stretch")
    with right:
        if verdicts.empty:
            st.caption("Verdicts per pair: no cell's run is analyzed yet (Analyze, on its Run page).")
        else:
            chart = (
                alt.Chart(verdicts, title="Verdicts per model pair", height=240)
                .mark_bar()
                .encode(
                    y=alt.Y("pair:N", title=None, axis=alt.Axis(labelLimit=320)),
                    x=alt.X("cells:Q", title="cells", axis=alt.Axis(tickMinStep=1)),
                    color=alt.Color(
                        "verdict:N",
                        scale=alt.Scale(domain=list(VERDICT_COLOURS), range=list(VERDICT_COLOURS.values())),
                    ),
                    tooltip=["pair:N", "verdict:N", "cells:Q"],
                )
            )
            st.altair_chart(chart, width="stretch")


def show_report(report: SweepReport) -> None:
    st.markdown(render.plain(status_line(report)))
    for left in report.left_pool:
        st.warning(
            render.plain(
                f"{left.host} left the pool after failing twice in a row ({left.reason}); "
                f"its cells {', '.join(map(str, left.cells_moved)) or 'none'} moved to the other hosts."
            )
        )
    st.dataframe(
        grid_frame(report),
        hide_index=True,
        column_config={
            "cell": st.column_config.NumberColumn(width="small"),
            "models": st.column_config.TextColumn(width="medium"),
            "topic": st.column_config.TextColumn(width="medium", help="The topic's first line"),
            "tok/s": st.column_config.TextColumn(help="Each model's decode rate over its finished turns"),
            "minutes": st.column_config.NumberColumn(format="%.1f", help="Minutes generating"),
            "verdict": st.column_config.TextColumn(help="The saved analysis's verdict, once it is analyzed"),
            "run": st.column_config.LinkColumn(
                "run", display_text=r"run\?run=(.*)", help="Opens the cell's run on the Run page"
            ),
        },
        key="sweep-grid",
    )
    show_charts(report)


def sweep_label(sweep_id: str, runs: dict[str, list[Any]]) -> str:
    """A sweep as the picker lists it (a widget's options read no Markdown): id, runs so far, start."""
    found = runs.get(sweep_id, [])
    started = min((run.started_at for run in found), default=None)
    when = f" · from {started[:16].replace('T', ' ')} UTC" if started else ""
    return f"{sweep_id} · {len(found)} run{'s' if len(found) != 1 else ''}{when}"
