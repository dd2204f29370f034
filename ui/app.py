"""duologue's Streamlit page: `duologue ui` runs `streamlit run` on this file, on 127.0.0.1.

Six pages: Launch a run and watch it, the Runs table, one Run's every turn, runs Compared, Sweeps, the Shapes.
A run is named by ?run=ID on the Run page (/run?run=ID); the root URL with a run, /?run=ID, opens
that run too, not Launch, so any link or reload that names a run shows it.
"""

from __future__ import annotations

import streamlit as st

from graphs.ui import render

st.set_page_config(page_title="duologue", page_icon=":material/forum:", layout="wide")
launch = st.Page("views/launch.py", title="Launch", icon=":material/rocket_launch:", default=True)
run = st.Page("views/run.py", title="Run", icon=":material/article:")
page = st.navigation(
    [
        launch,
        st.Page("views/runs.py", title="Runs", icon=":material/list:"),
        run,
        st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:"),
        st.Page("views/sweeps.py", title="Sweeps", icon=":material/grid_view:"),
        st.Page("views/shapes.py", title="Shapes", icon=":material/account_tree:"),
    ]
)
run_id = st.query_params.get("run")
if page is launch and run_id:
    st.switch_page(run, query_params={"run": run_id})
with render.failure_shown():
    page.run()
