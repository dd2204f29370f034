"""A run's numbers on the page: the header's totals, the per-turn trace table, the charts.

A turn that ran (partly) on the CPU or under its min_tok_s (TraceRecord.degraded) is what
this tool exists to catch, so everywhere it shows it is marked in red: its trace row, its
bars in every chart, its model in the header (and its transcript heading, ui/render.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st
from pandas.io.formats.style import Styler

from graphs import DuologueError, RunRecord, TraceRecord, model_rates, run_totals

from .render import plain

RED = "#d62728"
RED_ROW = "rgba(214, 39, 40, 0.16)"
GOOD = "#2e7d32"
MISSING = "—"
"""What a cell shows for a number the turn does not have (a stopped or failed turn's)."""
NS = 1e9

RATE_HELP = (
    "The model's decode rate over its finished turns: all its tokens over all its decoding time "
    "(eval_count / eval_duration, summed), so a long turn weighs more than a short one. Each "
    "model has its own: rates of different models are never averaged."
)


# ---- the header -------------------------------------------------------------------------------


def show_totals(run: RunRecord) -> None:
    """Turns, tokens, time, and each model's tok/s, a red badge beside a model that fell back."""
    totals = run_totals(run)
    records = run.turn_records
    rates = model_rates(run.finished_records.values())
    cols = st.columns(3 + max(1, len(rates)))
    cols[0].metric("Turns", f"{totals['turns_done']} / {totals['turns']}")
    cols[1].metric("Tokens", f"{totals['tokens']}")
    cols[2].metric("Generation", f"{sum(r.latency_s or 0 for r in records):.0f} s")
    if not rates:
        cols[3].metric("tok/s", MISSING, help=RATE_HELP)
    for column, (model, rate) in zip(cols[3:], rates.items(), strict=False):
        with column:
            st.metric(f"{plain(model)} tok/s", MISSING if rate is None else f"{rate:.1f}", help=RATE_HELP)
            show_fallback_badges(model, run.turn_rows)
    flags = run.flags
    if flags:
        with st.container(horizontal=True):
            st.caption("Flags:", width="content")
            for flag in flags:
                st.badge(
                    flag,
                    color="red" if flag in ("CPU", "slow", "error") else "orange",
                    help=FLAG_HELP.get(flag),
                )


def show_fallback_badges(model: str, rows: Sequence[TraceRecord]) -> None:
    """'CPU 48%' (its worst turn's share on the CPU) and 'slow' beside a model, in red."""
    degraded = [r for r in rows if r.model == model and r.degraded]
    if not degraded:
        return
    turns = ", ".join(str(r.turn) for r in degraded)
    with st.container(horizontal=True, gap="small"):
        on_cpu = [r for r in degraded if r.gpu_fraction is not None and r.gpu_fraction < 1]
        if on_cpu:
            worst = min(on_cpu, key=lambda r: r.gpu_fraction or 0)
            st.badge(
                worst.flags[0],
                color="red",
                icon=":material/memory:",
                help=f"Ran (partly) on the CPU in turn(s) {turns}: its tok/s is a fraction of the GPU's.",
            )
        if any(r.slow for r in degraded):
            st.badge("slow", color="red", icon=":material/speed:", help=FLAG_HELP["slow"])


FLAG_HELP = {
    "CPU": "A model ran (partly) on the CPU: its tok/s is a fraction of what the GPU gives.",
    "slow": "A turn decoded below its participant's min_tok_s.",
    "thinking": "eval_count, and so tokens and tok/s, include the model's thinking tokens.",
    "truncated": "The prompt outgrew num_ctx and Ollama silently dropped the oldest messages.",
    "cut by length": "The reply hit num_predict and was cut off mid-way.",
    "stopped": "The run was stopped during the turn.",
    "error": "The turn failed.",
}


# ---- the trace table ----------------------------------------------------------------------------


def trace_frame(records: Sequence[TraceRecord], names: dict[str, str]) -> pd.DataFrame:
    """One row per model turn, in the columns `duologue show --trace` prints, and the time placing took."""
    rows = [
        {
            "turn": r.turn,
            "speaker": names.get(r.speaker or "", r.speaker),
            "model": r.model,
            "flags": ", ".join(r.flags),
            "prompt tokens": r.prompt_tokens,
            "tokens": r.completion_tokens,
            "tok/s": r.tokens_per_s,
            "ttft s": r.ttft_s,
            "placing s": r.residency_s,
            "preload s": r.preload_s,
            "load s": r.load_s,
            "latency s": r.latency_s,
            "GPU": None if r.gpu_fraction is None else r.gpu_fraction * 100,
            "done": r.done_reason,
            "placed": r.residency,
        }
        for r in records
    ]
    return pd.DataFrame(rows, columns=TRACE_COLUMNS)


TRACE_COLUMNS = [
    "turn",
    "speaker",
    "model",
    "GPU",
    "flags",
    "tok/s",
    "prompt tokens",
    "tokens",
    "ttft s",
    "placing s",
    "preload s",
    "load s",
    "latency s",
    "done",
    "placed",
]
"""Where the model sat and what to notice first, where the table opens; the times after."""
NUMBER_FORMATS = {
    "prompt tokens": "{:.0f}",
    "tokens": "{:.0f}",
    "tok/s": "{:.1f}",
    "ttft s": "{:.2f}",
    "placing s": "{:.2f}",
    "preload s": "{:.2f}",
    "load s": "{:.2f}",
    "latency s": "{:.1f}",
    "GPU": "{:.0f}%",
}


def styled_trace(frame: pd.DataFrame, records: Sequence[TraceRecord]) -> Styler:
    """The table as shown: a degraded turn's row in red, GPU good at 100% and an alarm below,
    and "—" for every number a turn does not have."""
    degraded = [r.degraded for r in records]
    marked = {"turn", "flags"}

    def row(values: pd.Series) -> list[str]:
        if not degraded[int(values.name)]:  # type: ignore[arg-type]
            return [""] * len(values)
        return [
            f"background-color: {RED_ROW}" + (f"; color: {RED}; font-weight: bold" if c in marked else "")
            for c in values.index
        ]

    def gpu(value: object) -> str:
        if value is None or pd.isna(value):  # type: ignore[call-overload]
            return ""
        if float(value) >= 100:  # type: ignore[arg-type]
            return f"color: {GOOD}; font-weight: bold"
        return f"background-color: {RED}; color: white; font-weight: bold"

    return (
        frame.style.apply(row, axis=1)
        .map(gpu, subset=["GPU"])
        .format(na_rep=MISSING)
        .format(NUMBER_FORMATS, na_rep=MISSING)
    )


def show_trace_table(records: Sequence[TraceRecord], names: dict[str, str]) -> None:
    if not records:
        st.caption("No finished turn yet.")
        return
    frame = trace_frame(records, names)
    longest = max((len(flags) for flags in frame["flags"]), default=0)
    st.dataframe(
        styled_trace(frame, records),
        hide_index=True,
        column_config={
            "turn": st.column_config.NumberColumn(width=50),
            "flags": st.column_config.TextColumn(
                help="What to notice; a row in red ran (partly) on the CPU or under its min_tok_s",
                width=max(90, 8 * longest + 24),  # the whole text, however many flags
            ),
            "prompt tokens": st.column_config.NumberColumn(
                "in", help="prompt tokens Ollama evaluated", width=60
            ),
            "tokens": st.column_config.NumberColumn("out", help="tokens generated", width=60),
            "placing s": st.column_config.NumberColumn(
                help="duologue's measure: seconds spent placing the model before the request "
                "(residency_s: unloading others, waiting for VRAM, the preload)"
            ),
            "preload s": st.column_config.NumberColumn(
                help="of the placing, seconds loading the model with the turn's options (preload_s)"
            ),
            "load s": st.column_config.NumberColumn(
                help="Ollama's load_duration for the request itself: about 0 once the model is placed"
            ),
            "latency s": st.column_config.NumberColumn(help="the turn's wall time, placing included"),
            "GPU": st.column_config.NumberColumn(
                help="share of the model in VRAM (from /api/ps): green at 100%, red below it "
                "(the rest ran on the CPU)",
                width=60,
            ),
            "placed": st.column_config.TextColumn(
                help="How the model was placed for the turn: shared, exclusive, or cpu (a CPU-only server)"
            ),
            "done": st.column_config.TextColumn(
                help="Ollama's done_reason: stop, or length (cut by num_predict)"
            ),
        },
        key="trace-table",
    )


# ---- the charts ---------------------------------------------------------------------------------


def min_rates(run: RunRecord, names: dict[str, str]) -> dict[str, float]:
    """Each participant's min_tok_s, by the label the charts use; none for a run without a shape."""
    try:
        shape = run.shape()
    except DuologueError:
        return {}
    return {names.get(p.name, p.name): p.min_tok_s for p in shape.participants if p.min_tok_s}


def chart_frame(records: Sequence[TraceRecord], names: dict[str, str]) -> pd.DataFrame:
    rows = []
    for r in records:
        stages = {
            "placing": r.residency_s or 0,
            "load": (r.load_duration or 0) / NS,
            "prompt": (r.prompt_eval_duration or 0) / NS,
            "generation": (r.eval_duration or 0) / NS,
        }
        rows.append(
            {
                "turn": r.turn,
                "speaker": names.get(r.speaker or "", r.speaker or "?"),
                "tok/s": r.tokens_per_s,
                "latency s": r.latency_s,
                "prompt tokens": r.prompt_tokens,
                "tokens": r.completion_tokens,
                "most tokens": max(r.prompt_tokens or 0, r.completion_tokens or 0),
                **stages,
                "accounted s": sum(stages.values()),
                "flags": ", ".join(r.flags) or "-",
                "degraded": r.degraded,
                "mark": r.flags[0] if r.degraded else "",
            }
        )
    return pd.DataFrame(rows)


def outlined(chart: alt.Chart) -> alt.Chart:
    """A degraded turn's bars outlined in red, whatever colour they are."""
    return chart.encode(
        stroke=alt.condition(alt.datum.degraded, alt.value(RED), alt.value("transparent")),
        strokeWidth=alt.condition(alt.datum.degraded, alt.value(3), alt.value(0)),
    )


def red_marks(data: pd.DataFrame, x: alt.X, y: str) -> alt.Chart:
    """'CPU 48%' or 'slow' in red above a degraded turn's bars."""
    return (
        alt.Chart(data)
        .transform_filter(alt.datum.degraded)
        .mark_text(color=RED, fontWeight="bold", dy=-8, fontSize=12)
        .encode(x=x, y=alt.Y(f"{y}:Q"), text="mark:N")
    )


def show_charts(
    records: Sequence[TraceRecord], names: dict[str, str], floors: dict[str, float] | None = None
) -> None:
    """Per-turn charts: a model on the CPU, a slow load or a truncated prompt stands out.

    `floors`: each speaker's min_tok_s, drawn as its line on the decode-speed chart."""
    records = [r for r in records if not r.error]  # a failed attempt has no timings to compare
    if not records:
        return
    data = chart_frame(records, names)
    turn = alt.X("turn:O", title="turn", axis=alt.Axis(labelAngle=0))
    speaker = alt.Color("speaker:N", title="speaker")
    tips = ["turn:O", "speaker:N", "tok/s:Q", "latency s:Q", "tokens:Q", "prompt tokens:Q", "flags:N"]

    def bars(y: str, title: str, *more: alt.Chart) -> alt.LayerChart:
        drawn = outlined(
            alt.Chart(data)
            .mark_bar()
            .encode(x=turn, y=alt.Y(f"{y}:Q", title=None), color=speaker, tooltip=tips)
        )
        return alt.LayerChart(layer=[drawn, red_marks(data, turn, y), *more], title=title, height=220)

    floor_lines: list[alt.Chart] = []
    if floors:
        lines = pd.DataFrame([{"speaker": who, "min tok/s": rate} for who, rate in floors.items()])
        floor = alt.Chart(lines).encode(
            y=alt.Y("min tok/s:Q"), color=speaker, tooltip=["speaker:N", "min tok/s:Q"]
        )
        floor_lines = [
            floor.mark_rule(strokeDash=[6, 4], strokeWidth=2),
            floor.transform_calculate(label="'min ' + format(datum['min tok/s'], '.1f')")
            .mark_text(align="right", dy=-6, x={"expr": "width"}, fontWeight="bold")
            .encode(text="label:N"),
        ]
    decode = bars(
        "tok/s",
        "Decode speed (tok/s)" + ("; dashed: each speaker's min_tok_s" if floors else ""),
        *floor_lines,
    )

    tokens = outlined(
        alt.Chart(data)
        .transform_fold(["prompt tokens", "tokens"], as_=["direction", "count"])
        .transform_calculate(direction="datum.direction === 'tokens' ? 'out (reply)' : 'in (prompt)'")
        .mark_bar()
        .encode(
            x=turn,
            xOffset=alt.XOffset("direction:N", sort=["in (prompt)", "out (reply)"]),
            y=alt.Y("count:Q", title=None),
            color=alt.Color(
                "direction:N",
                title="tokens",
                sort=["in (prompt)", "out (reply)"],
                scale=alt.Scale(range=["#9ecae1", "#3182bd"]),
            ),
            tooltip=["turn:O", "speaker:N", "direction:N", "count:Q", "flags:N"],
        )
    )
    stages: list[Any] = ["placing", "load", "prompt", "generation"]
    time_split = outlined(
        alt.Chart(data)
        .transform_fold(stages, as_=["stage", "seconds"])
        .transform_calculate(order="indexof(['placing', 'load', 'prompt', 'generation'], datum.stage)")
        .mark_bar()
        .encode(
            x=turn,
            y=alt.Y("seconds:Q", title=None, stack="zero"),
            color=alt.Color("stage:N", sort=stages, scale=alt.Scale(domain=stages, range=STAGE_COLOURS)),
            order=alt.Order("order:Q"),
            tooltip=["turn:O", "speaker:N", "stage:N", alt.Tooltip("seconds:Q", format=".2f"), "flags:N"],
        )
    )
    left, right = st.columns(2)
    with left:
        st.altair_chart(decode, width="stretch")
        st.altair_chart(
            alt.LayerChart(
                layer=[tokens, red_marks(data, turn, "most tokens")], title="Tokens in and out", height=220
            ),
            width="stretch",
        )
    with right:
        st.altair_chart(bars("latency s", "Latency (s)"), width="stretch")
        st.altair_chart(
            alt.LayerChart(
                layer=[time_split, red_marks(data, turn, "accounted s")],
                title="Where the time went (s): placing, load, prompt, generation",
                height=220,
            ),
            width="stretch",
        )
    st.caption(
        "Bars outlined in red, marked CPU or slow: the turn ran (partly) on the CPU or decoded under "
        "its min_tok_s. Latency is the turn's wall time, as in the stats line. In where the time "
        "went, placing is duologue's own measure (residency_s: unloading others, waiting for VRAM, "
        "the preload); load, prompt and generation are Ollama's own account of the request "
        "(load_duration, prompt_eval_duration, eval_duration)."
    )


STAGE_COLOURS = ["#b39ddb", "#fdae6b", "#9ecae1", "#3182bd"]
"""placing, load, prompt, generation."""
TIMELINE_STAGES = ["placing", "load", "prompt", "generation", "rest"]
TIMELINE_COLOURS = [*STAGE_COLOURS, "#d9d9d9"]


def moment(stamp: str | None) -> float | None:
    """A trace time in seconds, or None for one a damaged or hand-made record doesn't give as ISO."""
    try:
        return datetime.fromisoformat(stamp).timestamp() if stamp else None
    except ValueError:
        return None


def timeline_frame(records: Sequence[TraceRecord], names: dict[str, str]) -> pd.DataFrame:
    """Each turn's stages laid end to end from its start, in seconds since the run's first turn:
    placing (duologue's measure), then Ollama's load, prompt and generation, then the rest of its
    wall time (streaming, the network, duologue), up to when it ended."""
    timed: list[tuple[TraceRecord, float, float]] = []
    for r in records:
        begun, ended = moment(r.started_at), moment(r.ended_at)
        if begun is not None and ended is not None:
            timed.append((r, begun, ended))
    if not timed:
        return pd.DataFrame()
    zero = min(begun for _, begun, _ in timed)
    rows = []
    for r, begun, ended in timed:
        start, end = begun - zero, ended - zero
        lengths = [
            r.residency_s or 0,
            (r.load_duration or 0) / NS,
            (r.prompt_eval_duration or 0) / NS,
            (r.eval_duration or 0) / NS,
        ]
        cursor = start
        for stage, length in zip(TIMELINE_STAGES, [*lengths, None], strict=True):
            until = end if length is None else min(end, cursor + length)
            if until - cursor > 0.0005:
                rows.append(
                    {
                        "model": r.model or "?",
                        "turn": r.turn,
                        "speaker": names.get(r.speaker or "", r.speaker or "?"),
                        "stage": stage,
                        "from s": round(cursor, 3),
                        "to s": round(until, 3),
                        "seconds": round(until - cursor, 3),
                        "flags": ", ".join(r.flags) or "-",
                        "degraded": r.degraded,
                    }
                )
            cursor = until
    return pd.DataFrame(rows)


def show_timeline(records: Sequence[TraceRecord], names: dict[str, str]) -> None:
    """The run along wall time, one lane per model: where each turn's time went, and the gaps."""
    frame = timeline_frame(records, names)
    if frame.empty:
        return
    lanes = frame["model"].nunique()
    chart = outlined(
        alt.Chart(
            frame,
            title="Timeline: each turn's placing, load, prompt and generation",
            height=60 * lanes + 60,
        )
        .mark_bar()
        .encode(
            x=alt.X("from s:Q", title="seconds since the first turn started"),
            x2="to s:Q",
            y=alt.Y("model:N", title=None, scale=alt.Scale(paddingInner=0.35)),
            color=alt.Color(
                "stage:N",
                sort=TIMELINE_STAGES,
                scale=alt.Scale(domain=TIMELINE_STAGES, range=TIMELINE_COLOURS),
            ),
            tooltip=[
                "turn:O",
                "speaker:N",
                "model:N",
                "stage:N",
                alt.Tooltip("seconds:Q", format=".2f"),
                alt.Tooltip("from s:Q", format=".2f"),
                "flags:N",
            ],
        )
    )
    st.altair_chart(chart, width="stretch")
    st.caption(
        "Each turn from its start to its end: placing the model (duologue's measure), then Ollama's "
        "load, prompt and generation, then the rest of its wall time (streaming, the network, "
        "duologue). A gap between turns is time outside any turn. Outlined in red: on the CPU or slow."
    )
