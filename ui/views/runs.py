"""Runs page: every run in the runs folder; selecting a row opens it."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from graphs import run_totals
from graphs.ui import common, importing, render

st.title("Runs")
store = common.store()
importing.upload_form(store)
runs = store.list()
if not runs:
    st.info(render.plain(f"No runs in {store.root} yet."))
    st.page_link("views/launch.py", label="Launch one", icon=":material/rocket_launch:")
    st.stop()

rows = []
for run in runs:
    totals = run_totals(run)
    records = run.turn_records
    rows.append(
        {
            "started": pd.Timestamp(run.meta.started_at).tz_convert(None),
            "shape": run.meta.shape,
            "models": ", ".join(sorted({p.model for p in run.meta.participants})),
            "turns": f"{totals['turns_done']}/{totals['turns']}",
            "tokens": totals["tokens"],
            "generation s": round(sum(r.latency_s or 0 for r in records), 1),
            "status": run.status,
            "flags": run.unreadable or ", ".join(run.flags),  # an unreadable run: why, in its place
            "run": run.meta.run_id,
        }
    )
table = pd.DataFrame(rows)
st.caption(render.plain(f"{len(runs)} run(s) in {store.root}, newest first. Select a row to open that run."))
comparing = st.toggle("Select runs to compare", key="compare-mode")
event = st.dataframe(
    table,
    hide_index=True,
    on_select="rerun",
    selection_mode="multi-row" if comparing else "single-row",
    column_config={
        "started": st.column_config.DatetimeColumn("started (UTC)", format="YYYY-MM-DD HH:mm"),
        "generation s": st.column_config.NumberColumn(format="%.1f"),
        "flags": st.column_config.TextColumn(
            help="CPU: a model ran (partly) on the CPU; truncated; cut by length; for an unreadable run, why"
        ),
    },
    key="runs-compare" if comparing else "runs-table",
)
selected = event.selection.rows if event is not None else []
if comparing:
    importing.compare_button([table.iloc[row]["run"] for row in selected])
elif selected:
    st.switch_page("views/run.py", query_params={"run": table.iloc[selected[0]]["run"]})
