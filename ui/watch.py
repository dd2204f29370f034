"""A run on the page while it goes on: redrawn from the worker's buffer (graphs.ui.live).

One fragment, at the top, is redrawn every POLL_S: the status line with its Stop button, the
turn in progress with its numbers, and any turn finished since the page was last drawn whole.
Below it, the finished turns, newest first, each folded to its heading and stats line, are
drawn once, by a page run the fragment asks for once the next turn is streaming (or the run has
ended), rather than at the moment a turn ends, when the worker saves it and places the next model.

What was measured, with a browser watching an 8-turn run of 1500-word turns: each script run
ended in Streamlit's gc.collect() (150-200 ms here, every thread held up), which is why the run
stalled and the page jumped (`duologue ui` turns it off); redrawing every turn every POLL_S, as
this view once did, grew with the run, and the browser re-rendered all of it each time; and two
fragments, one for the status line and one for the turn, cost two script runs per POLL_S.
"""

from __future__ import annotations

import streamlit as st

from . import render
from .live import POLL_S, LiveRun, LiveTurn, PersonDue, Snapshot


def live_view(live: LiveRun) -> None:
    """The run while it streams; the whole page is drawn again once per turn and when the run ends."""
    snap = live.snapshot()
    if snap.done:
        st.rerun()
    due = snap.person_due
    live_part(live, len(snap.turns), due.number if due else None)
    if due is not None:
        show_person_box(live, due)
    for turn in reversed(snap.turns):
        show_finished_turn(turn)
    if snap.resumed_after is not None:
        show_earlier(snap.resumed_after, snap.earlier)


@st.fragment(run_every=POLL_S)
def live_part(live: LiveRun, shown: int, asked: int | None = None) -> None:
    """What moves: `shown` finished turns are drawn below, outside this fragment, already, and
    the box for the person's turn `asked`, if one waits."""
    with render.failure_shown():  # a fragment's rerun runs this alone, outside the page's guard
        snap = live.snapshot()
        due = snap.person_due.number if snap.person_due else None
        if snap.done or (len(snap.turns) > shown and snap.current is not None and snap.current.tokens):
            st.rerun()  # the next turn streams: the page draws the finished ones folded, once
        if due != asked and (due is not None or len(snap.turns) > shown):
            st.rerun()  # a person's turn is due (its box), or was written: the page draws it whole
        show_status(live, snap)
        if snap.person_due is not None:
            if snap.current is not None:
                st.markdown(f"#### {turn_heading(snap.current)}")
            st.caption("Waiting for your words: write the turn below and press Send.")
        elif snap.current is not None:
            show_current_turn(snap.current)
        elif snap.status == "starting":
            st.caption("Checking the servers and their models…")
        for turn in reversed(snap.turns[shown:]):
            show_finished_turn(turn)
        # A stop ends the run at its next token: show the record the moment it is written, not a poll later.
        if snap.stopping and live.wait_ended(POLL_S):
            st.rerun()


def show_status(live: LiveRun, snap: Snapshot) -> None:
    """State, turn, elapsed time, progress, and Stop: its click is handled before this is drawn
    (on_click), so the line says "stopping…" in the same redraw."""
    earlier = snap.resumed_after or 0
    head, stop = st.columns([5, 1], vertical_alignment="center")
    with head:
        state = "stopping…" if snap.stopping else render.status_label(snap.status)
        st.markdown(
            f"**{state}** · turn {earlier + len(snap.turns) + (1 if snap.current else 0)} of "
            f"{snap.planned_turns} · {snap.elapsed_s:.0f} s"
        )
        st.progress(min(1.0, (earlier + len(snap.turns)) / max(1, snap.planned_turns)))
    with stop:
        if st.button(
            "Stop", type="secondary", key=f"stop:{snap.run_id}", disabled=snap.stopping, on_click=live.stop
        ):
            st.toast("Stopping after the current token; finished turns are kept.")


def show_person_box(live: LiveRun, due: PersonDue) -> None:
    """The person's turn: a text box and Send, which hands the words to the waiting run."""
    with st.form(key=f"person:{live.run_id}:{due.number}", clear_on_submit=True, border=True):
        text = st.text_area(
            render.plain(f"{due.label}, your turn {due.number} ({due.kind})"),
            height=180,
            placeholder="Your words, relayed to the others as any participant's turn.",
            key=f"person-text:{live.run_id}:{due.number}",
        )
        sent = st.form_submit_button("Send", type="primary")
    if not sent:
        return
    if not text.strip():
        st.warning("An empty turn is not sent: write your words, then Send.")
    elif live.send(text):
        st.rerun()
    else:
        st.warning("The run no longer waits for this turn (it was stopped, or the turn was sent).")


def show_earlier(finished: int, transcript: str) -> None:
    """A resumed run's turns from before it resumed, which its live buffer never saw."""
    if not finished:
        st.caption("Resumed: no turn had finished, so it starts again from turn 1.")
        return
    kept = "turn 1 is kept as it was" if finished == 1 else f"turns 1–{finished} are kept as they were"
    st.caption(f"Resumed: continuing from turn {finished + 1}; {kept}.")
    with st.expander("Turn 1 as recorded" if finished == 1 else f"Turns 1–{finished} as recorded"):
        render.show_transcript(transcript)


def turn_heading(turn: LiveTurn) -> str:
    return f"Turn {turn.number}: {render.plain(turn.label)} — {render.plain(turn.kind.capitalize())}"


def show_finished_turn(turn: LiveTurn) -> None:
    """Folded to its heading and stats line, in red when it ran (partly) on the CPU or slow
    (TraceRecord.degraded); opened, its words, and its thinking in a tab of its own."""
    stats = render.plain(turn.stats.strip("*")) if turn.stats else "(no stats)"
    degraded = turn.record is not None and turn.record.degraded
    label = f"{turn_heading(turn)} · *{stats}*"
    with st.expander(
        f":red[{label}]" if degraded else label, icon=":material/warning:" if degraded else None
    ):
        if not turn.thinking:
            render.show_model_text(turn.text)
            return
        words, thinking = st.tabs(["Reply", f"Thinking ({len(turn.thinking)} characters, never relayed)"])
        with words:
            render.show_model_text(turn.text)
        with thinking:
            render.show_model_text(turn.thinking)


def show_current_turn(turn: LiveTurn) -> None:
    """Heading, the live numbers (tokens so far, tok/s, TTFT, where the model sits), the text so far."""
    st.markdown(f"#### {turn_heading(turn)}")
    st.markdown(" · ".join(live_numbers(turn)))
    if turn.thinking:
        st.caption("thinking: " + render.plain(turn.thinking[-600:]))
    render.show_model_text(turn.text or "…")


def live_numbers(turn: LiveTurn) -> list[str]:
    """The turn in progress's numbers as Markdown; a number not known yet is left out, never 'None'."""
    parts = [render.plain(turn.model)]
    placed = placement_badge(turn)
    if placed:
        parts.append(placed)
    if turn.ttft_s is None:
        parts.append("waiting for the first token")
    else:
        parts.append(f"{turn.tokens} tokens")
        if turn.tokens_per_s is not None:
            parts.append(f"{turn.tokens_per_s:.1f} tok/s")
        parts.append(f"TTFT {turn.ttft_s:.1f} s")
    if turn.elapsed_s is not None:
        parts.append(f"{turn.elapsed_s:.0f} s")
    parts.append("writing…")
    return parts


def placement_badge(turn: LiveTurn) -> str | None:
    """Where the model was placed before the request: '100% GPU', or its CPU share in red."""
    placement = turn.placement
    if placement is None:
        return None
    if placement.degraded:
        cpu = next(flag for flag in placement.flags if flag.startswith("CPU"))
        return f":red-badge[:material/memory: {render.plain(cpu)}]"
    if placement.gpu_fraction is not None:
        return ":green-badge[100% GPU]"
    if placement.residency == "cpu":
        return ":gray-badge[CPU-only server]"
    return None
