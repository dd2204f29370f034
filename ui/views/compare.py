"""Compare page: 2–4 runs side by side, as `duologue compare` sets them: models, speed, flags, analysis.

The runs are named by ?runs=ID,ID so a link opens the same comparison; the ids go to
compare_runs, whose RunStore.load refuses any id that could leave the runs folder.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from graphs import DuologueError, compare_runs
from graphs.ui import common, render

MAX_RUNS = 4

st.title("Compare")
store = common.store()
runs = [run for run in store.summaries() if not run.unreadable]
choices = {run.run_id: run for run in runs}


def describe(run_id: str) -> str:
    """A run as the multiselect lists it: id, models, date (a widget's options read no Markdown)."""
    run = choices.get(run_id)
    if run is None:
        return run_id
    return f"{run_id} · {', '.join(run.models)} · {run.started_at[:16].replace('T', ' ')}"


asked = [part.strip() for part in (st.query_params.get("runs") or "").split(",") if part.strip()]
unknown = [run_id for run_id in asked if run_id not in choices]
if unknown:
    st.error(render.plain(f"No such run in {store.root}: {', '.join(unknown)}"))
picked = st.multiselect(
    "Runs to compare",
    list(choices),
    default=[run_id for run_id in asked if run_id in choices][:MAX_RUNS],
    format_func=describe,
    max_selections=MAX_RUNS,
    placeholder="Pick two to four runs",
    key="compare-runs",
)
if picked != asked and (picked or not unknown):
    st.query_params["runs"] = ",".join(picked)


def comparison_frame(comparison: dict[str, Any]) -> pd.DataFrame:
    """One column per run, one row per measure, as `duologue compare` prints them."""
    compared = comparison["runs"]

    def per_speaker(run: dict[str, Any], key: str, form: str = "{}") -> str:
        return ", ".join(f"{label} {form.format(s[key])}" for label, s in run["speakers"].items()) or "-"

    rows: dict[str, list[str]] = {
        "shape": [r["shape"] for r in compared],
        "status": [r["status"] for r in compared],
        "models": [", ".join(r["models"].values()) for r in compared],
        "turns": [r["turns"] for r in compared],
        "tokens": [str(r["tokens"]) for r in compared],
        "tok/s": [", ".join(f"{m} {v}" for m, v in r["tokens_per_s"].items()) or "-" for r in compared],
        "flags": [", ".join(r["flags"]) or "-" for r in compared],
        "verdict": [r["verdict"] or "-" for r in compared],
        "questions": [per_speaker(r, "questions") for r in compared],
        "challenges": [per_speaker(r, "challenges") for r in compared],
        "hedges/100w": [per_speaker(r, "hedges_per_100w") for r in compared],
        "echo": [per_speaker(r, "echo_share", "{:.0%}") for r in compared],
    }
    columns = [r["run_id"] for r in compared]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns).rename_axis("").reset_index()


if len(picked) < 2:
    st.caption("Pick two to four runs (or open this page as ?runs=ID,ID).")
    st.stop()
try:
    with st.spinner("Analyzing the runs that have no analysis yet…"):
        frame = comparison_frame(compare_runs(picked, store.root))
except DuologueError as exc:
    st.error(render.plain(exc))
    st.stop()
st.dataframe(frame, hide_index=True, height=35 * (len(frame) + 1) + 3, key="compare-table")
st.caption("Per speaker: questions asked, challenge markers, hedges per 100 words, share of phrases echoed.")
