"""duologue's Streamlit page: `duologue ui` runs `streamlit run` on this file, on 127.0.0.1.

Five pages: Launch a run and watch it, the Runs table, one Run's every turn, runs Compared, the Shapes.
"""

from __future__ import annotations

import streamlit as st

from graphs.ui import render

st.set_page_config(page_title="duologue", page_icon=":material/forum:", layout="wide")
page = st.navigation(
    [
        st.Page("views/launch.py", title="Launch", icon=":material/rocket_launch:", default=True),
        st.Page("views/runs.py", title="Runs", icon=":material/list:"),
        st.Page("views/run.py", title="Run", icon=":material/article:"),
        st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:"),
        st.Page("views/shapes.py", title="Shapes", icon=":material/account_tree:"),
    ]
)
with render.failure_shown():
    page.run()
