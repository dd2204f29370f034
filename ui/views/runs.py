"""Runs page: every run in the runs folder, filtered and searched; a row opens its run.

In select mode, rows go to Compare (two to four) or are deleted (after a confirming click).
"""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st

from graphs.ui import common, finding, importing, render

ID_COLUMN_PX = (7, 16, 400)  # the run column's width: pixels per character of the longest id, padding, a cap

st.title("Runs")
store = common.store()
importing.upload_form(store)
importing.deletion_report()
runs = store.summaries()
if not runs:
    st.info(render.plain(f"No runs in {store.root} yet."))
    st.page_link("views/launch.py", label="Launch one", icon=":material/rocket_launch:")
    st.stop()

shown = finding.filter_widgets(runs).shown(runs)
st.caption(
    render.plain(f"Showing {len(shown)} of {len(runs)} runs in {store.root}, newest first.")
    + " Select a row to open that run."
)
if not shown:
    st.info("No run matches these filters.")
    st.stop()

rows = [
    {
        "run": run.run_id,
        "started": run.started_at,
        "shape": run.shape,
        "models": ", ".join(run.models),
        "status": run.status,
        "flags": run.unreadable or ", ".join(run.flags),  # an unreadable run: why, in its place
        "topic": finding.topic_line(run.topic),
        "turns": f"{run.turns_done}/{run.turns}",
        "tokens": run.tokens,
        "generation s": round(run.attempts_s, 1),
    }
    for run in shown
]
table = pd.DataFrame(rows)
table["started"] = pd.to_datetime(table["started"], utc=True, format="ISO8601").dt.tz_convert(None)
per_char, padding, cap = ID_COLUMN_PX
id_width = min(cap, padding + per_char * max(len(run_id) for run_id in table["run"]))
selecting = st.toggle("Select runs, to compare or delete them", key="compare-mode")
# Selections are row numbers: a table whose rows changed (a filter, a deletion) starts unselected.
shown_ids = hashlib.sha1("\n".join(table["run"]).encode()).hexdigest()[:12]
event = st.dataframe(
    table,
    hide_index=True,
    on_select="rerun",
    selection_mode="multi-row" if selecting else "single-row",
    column_config={
        "run": st.column_config.TextColumn(width=id_width),
        "started": st.column_config.DatetimeColumn("started (UTC)", format="YYYY-MM-DD HH:mm"),
        "topic": st.column_config.TextColumn(help="The topic's first line"),
        "generation s": st.column_config.NumberColumn(format="%.1f"),
        "flags": st.column_config.TextColumn(
            help="CPU: a model ran (partly) on the CPU; slow: under its min_tok_s; truncated; cut by "
            "length; for an unreadable run, why"
        ),
    },
    key=f"runs-select:{shown_ids}" if selecting else "runs-table",
)
selected = [shown[row] for row in (event.selection.rows if event is not None else [])]
if selecting:
    with st.container(horizontal=True, vertical_alignment="center"):
        importing.compare_button([run.run_id for run in selected])
        importing.delete_button([run.run_id for run in selected])
    importing.delete_confirmation(selected, store)
elif selected:
    st.switch_page("views/run.py", query_params={"run": selected[0].run_id})
