"""The run page's Analysis section: what happened between the speakers, as `duologue analyze` finds it.

The analysis is the run's analysis.json when it is newer than the transcript it was made from;
otherwise it is computed again (and saved) here. Its tables are dataframes, whose cells read no
Markdown; every other string from the run goes through render.plain or render.show_model_text.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from graphs import (
    Analysis,
    DuologueError,
    NothingToAnalyze,
    RunRecord,
    analyze_run,
    read_transcript,
    saved_analysis,
)
from graphs.ui import render

ANALYSIS = "analysis.json"
TRANSCRIPT = "transcript.md"


def current_analysis(run: RunRecord) -> Analysis:
    """The saved analysis if the transcript has not changed since it was made, else a new one."""
    saved = saved_analysis(run)
    if saved is not None and not changed_since(run):
        return saved
    return analyze_run(run.meta.run_id, run.folder.parent)


def changed_since(run: RunRecord) -> bool:
    made, source = run.folder / ANALYSIS, run.folder / TRANSCRIPT
    try:
        return source.stat().st_mtime_ns > made.stat().st_mtime_ns
    except OSError:
        return True


def show_analysis(run: RunRecord) -> None:
    """The section: verdict and sentences, per-turn chart, per-speaker table, lineage, attribution, notes."""
    if not run.finished_turns and not run.transcript().strip():
        st.caption("No finished turn yet, so nothing to analyze.")
        return
    try:
        analysis = current_analysis(run)
    except NothingToAnalyze:
        st.caption("No finished turn yet, so nothing to analyze.")
        return
    except (DuologueError, OSError) as exc:
        st.error(render.plain(f"The analysis failed: {exc}"))
        return
    verdict, reason = render.plain(analysis.verdict.capitalize()), render.plain(analysis.verdict_reason)
    st.markdown(f"**{verdict}** · {reason}")
    st.markdown("\n".join(f"- {render.plain(sentence)}" for sentence in analysis.summary))
    show_turn_chart(analysis)
    st.markdown("##### Per speaker")
    st.dataframe(speaker_frame(analysis), hide_index=True, key="analysis-speakers")
    st.markdown("##### Phrases taken up")
    if analysis.phrases:
        st.dataframe(lineage_frame(analysis), hide_index=True, key="analysis-phrases")
    else:
        st.caption("No speaker took up a phrase another said first.")
    st.markdown("##### The closing's account of each position")
    if analysis.closing_attribution:
        st.dataframe(
            attribution_frame(analysis),
            hide_index=True,
            column_config={"quote": st.column_config.TextColumn(width="large")},
            key="analysis-attribution",
        )
    else:
        st.caption("The closing attributes no position to a speaker, or the run has no closing.")
    show_observer_notes(run)


def turn_frame(analysis: Analysis) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "turn": t.turn,
                "speaker": t.speaker,
                "agreements": t.agreements,
                "challenges": t.challenges,
                "similarity to previous": t.similarity_to_previous,
            }
            for t in analysis.turns
        ]
    )


def show_turn_chart(analysis: Analysis) -> None:
    data = turn_frame(analysis)
    if data.empty:
        return
    turn = alt.X("turn:O", title="turn", axis=alt.Axis(labelAngle=0))
    markers = (
        alt.Chart(data, title="Agreements and challenges per turn", height=220)
        .transform_fold(["agreements", "challenges"], as_=["marker", "count"])
        .mark_bar()
        .encode(
            x=turn,
            xOffset=alt.XOffset("marker:N", sort=["agreements", "challenges"]),
            y=alt.Y("count:Q", title=None),
            color=alt.Color(
                "marker:N",
                sort=["agreements", "challenges"],
                scale=alt.Scale(domain=["agreements", "challenges"], range=["#31a354", "#de2d26"]),
            ),
            tooltip=["turn:O", "speaker:N", "marker:N", "count:Q"],
        )
    )
    similarity = (
        alt.Chart(data, title="Similarity to the previous turn (content words)", height=220)
        .mark_line(point=True)
        .encode(
            x=turn,
            y=alt.Y("similarity to previous:Q", title=None, scale=alt.Scale(domain=[0, 1])),
            tooltip=["turn:O", "speaker:N", alt.Tooltip("similarity to previous:Q", format=".2f")],
        )
    )
    left, right = st.columns(2)
    with left:
        st.altair_chart(markers, width="stretch")
    with right:
        st.altair_chart(similarity, width="stretch")


def speaker_frame(analysis: Analysis) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "speaker": label,
                "turns": s.turns,
                "words": s.words,
                "questions": s.questions,
                "hedges": s.hedges,
                "hedges/100w": s.hedges_per_100w,
                "agreements": s.agreements,
                "challenges": s.challenges,
                "echo": f"{s.echo_share:.0%}",
            }
            for label, s in analysis.speakers.items()
        ]
    )


def lineage_frame(analysis: Analysis) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "phrase": p.phrase,
                "first by": p.first_by,
                "in turn": p.first_turn,
                "taken up by": ", ".join(p.adopted_by),
                "turns": ", ".join(map(str, p.turns)),
            }
            for p in analysis.phrases
        ]
    )


def attribution_frame(analysis: Analysis) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "claim": a.claim,
                "attributed to": a.attributed_to,
                "in their turns": "found" if a.supported else "not found",
                "quote": a.evidence or "",
            }
            for a in analysis.closing_attribution
        ]
    )


def show_observer_notes(run: RunRecord) -> None:
    """An observer's notes at the transcript's end, shown as model text is."""
    try:
        transcript = read_transcript(run.transcript(), str(run.folder / TRANSCRIPT))
    except DuologueError:
        return
    if not transcript.observer_notes:
        return
    who = f" ({render.plain(transcript.observer_label)})" if transcript.observer_label else ""
    st.markdown(f"##### Observer's notes{who}")
    render.show_model_text(transcript.observer_notes)
