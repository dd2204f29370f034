"""A run on the page while it goes on: redrawn from the worker's buffer (graphs.ui.live)."""

from __future__ import annotations

import streamlit as st

from . import render
from .live import LiveRun, LiveTurn

POLL_S = 0.5


@st.fragment(run_every=POLL_S)
def live_view(live: LiveRun) -> None:
    """Redrawn every POLL_S seconds from the worker's buffer; the whole page reloads when the run ends."""
    with render.failure_shown():  # a fragment's rerun runs this alone, outside the page's guard
        show_live(live)


def show_live(live: LiveRun) -> None:
    snap = live.snapshot()
    if snap.done:
        st.rerun()
    earlier = snap.resumed_after or 0
    head, stop = st.columns([5, 1])
    with head:
        state = "stopping…" if snap.stopping else render.status_label(snap.status)
        st.markdown(
            f"**{state}** · turn {earlier + len(snap.turns) + (1 if snap.current else 0)} of "
            f"{snap.planned_turns} · {snap.elapsed_s:.0f} s"
        )
        st.progress(min(1.0, (earlier + len(snap.turns)) / max(1, snap.planned_turns)))
    with stop:
        if st.button("Stop", type="secondary", key=f"stop:{snap.run_id}", disabled=snap.stopping):
            live.stop()
            st.toast("Stopping after the current token; finished turns are kept.")
    if snap.resumed_after is not None:
        show_earlier(snap.resumed_after, snap.earlier)
    for turn in snap.turns:
        show_live_turn(turn)
        st.divider()
    if snap.current is not None:
        show_live_turn(snap.current, streaming=True)
    elif snap.status == "starting":
        st.caption("Checking the servers and their models…")


def show_earlier(finished: int, transcript: str) -> None:
    """A resumed run's turns from before it resumed, which its live buffer never saw."""
    if not finished:
        st.caption("Resumed: no turn had finished, so it starts again from turn 1.")
        return
    st.caption(f"Resumed: continuing from turn {finished + 1}; turns 1–{finished} are kept as they were.")
    with st.expander("Turn 1 as recorded" if finished == 1 else f"Turns 1–{finished} as recorded"):
        render.show_transcript(transcript)


def show_live_turn(turn: LiveTurn, streaming: bool = False) -> None:
    """A turn in the reference's layout: heading, stats line (once finished), text."""
    heading = f"{render.plain(turn.label)} — {render.plain(turn.kind.capitalize())}"
    st.markdown(f"#### Turn {turn.number}: {heading}")
    if streaming:
        st.caption(f"{render.plain(turn.model)} · writing…")
        if turn.thinking:
            st.caption("thinking: " + render.plain(turn.thinking[-600:]))
    else:
        st.markdown(turn.stats)
    render.show_model_text(turn.text or ("…" if streaming else ""))
