"""Sweeps page: a sweep's cells as their runs stand (live while it runs), tok/s per model, the
verdicts per model pair, and a link into each cell's run.

The sweep is named by ?sweep=ID, so a link or a reload opens it again. The sweeps offered are
those with a sweep.json in the runs folder (graphs.sweep_ids), labelled from the runs folder's
index; the report is graphs.sweep_report, the one `duologue sweep-report` prints, read again
every POLL_S while a cell runs or waits.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from graphs import DuologueError, SweepReport, sweep_ids, sweep_report
from graphs.ui import common, render
from graphs.ui.sweeping import UNFINISHED, show_report, sweep_label

POLL_S = 2.0  # how often the grid is read again while the sweep is not done (no docstring: it would show)

st.title("Sweeps")
store = common.store()
try:
    sweeps = sweep_ids(store.root)
except DuologueError as exc:
    st.error(render.plain(exc))
    st.stop()
if not sweeps:
    st.info(render.plain(f"No sweeps in {store.root} yet."))
    st.caption("A sweep runs one dialogue over model pairs, topics and seeds: `duologue sweep SWEEP.yaml`.")
    st.stop()
by_sweep: dict[str, list[Any]] = {}
for run in store.summaries():
    if run.sweep_id:
        by_sweep.setdefault(run.sweep_id, []).append(run)
asked = st.query_params.get("sweep")
if asked and asked not in sweeps:
    st.error(render.plain(f"No sweep {asked} in {store.root}."))
picked = st.selectbox(
    "Sweep",
    sweeps,
    index=sweeps.index(asked) if asked in sweeps else 0,
    format_func=lambda sweep_id: sweep_label(sweep_id, by_sweep),
    key="sweep-picked",
)
if picked != asked:
    st.query_params["sweep"] = picked


def report_now(sweep_id: str) -> SweepReport | None:
    try:
        return sweep_report(sweep_id, store.root)
    except DuologueError as exc:
        st.error(render.plain(exc))
        return None


first = report_now(picked)
live = first is not None and any(row.status in UNFINISHED for row in first.cells)


@st.fragment(run_every=POLL_S if live else None)
def grid(sweep_id: str, was_live: bool) -> None:
    """The sweep as it stands; read again every POLL_S while a cell runs or waits."""
    with render.failure_shown():  # a fragment's rerun runs this alone, outside the page's guard
        report = report_now(sweep_id)
        if report is None:
            return
        if was_live and not any(row.status in UNFINISHED for row in report.cells):
            st.rerun()  # done: the page is drawn once more, without the timer
        show_report(report)


if first is not None:
    grid(picked, live)
