"""Finding a run: the Runs page's filters and search, and how a run is named in a list of runs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

import streamlit as st

from graphs import DuologueError, RunSummary
from graphs.ui import render

KEPT: Literal["session"] = "session"
"""The filters outlive a visit to a run: back on the Runs page, the same runs are shown."""
TOPIC_CHARS = 60
"""How much of a topic's first line a list shows: enough to tell runs apart."""


def topic_line(topic: str, limit: int = TOPIC_CHARS) -> str:
    """A topic's first non-blank line, cut at `limit` characters (an essay's topic is long)."""
    first = next((" ".join(line.split()) for line in topic.splitlines() if line.strip()), "")
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


def started_on(run: RunSummary) -> date:
    """The UTC day the run started (run ids and started_at are UTC)."""
    return date.fromisoformat(run.started_at[:10])


def started_text(run: RunSummary) -> str:
    return run.started_at[:16].replace("T", " ") + " UTC"


def run_label(run: RunSummary) -> str:
    """A run as a link to it reads (Markdown): id, status, models, topic and when it started."""
    parts = [render.plain(run.run_id), render.status_label(run.status)]
    parts += [render.plain(text) for text in (", ".join(run.models), topic_line(run.topic)) if text]
    return " · ".join([*parts, render.plain(started_text(run))])


@dataclass(frozen=True)
class RunFilter:
    """What the Runs page's filters ask for: each field empty means any; a run must match all."""

    shapes: frozenset[str] = frozenset()
    models: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()
    flags: frozenset[str] = frozenset()
    since: date | None = None
    until: date | None = None
    search: str = ""

    def shown(self, runs: Iterable[RunSummary]) -> list[RunSummary]:
        """The runs that match, in their order: every filter reads the index's summaries; transcripts
        are read only for a search, and only for the runs every other filter kept."""
        kept = [run for run in runs if self.matches(run)]
        needle = self.search.strip().casefold()
        return [run for run in kept if found(run, needle)] if needle else kept

    def matches(self, run: RunSummary) -> bool:
        return (
            (not self.shapes or run.shape in self.shapes)
            and (not self.models or not self.models.isdisjoint(run.models))
            and (not self.statuses or run.status in self.statuses)
            and (not self.flags or not self.flags.isdisjoint(run.flags))
            and (self.since is None or started_on(run) >= self.since)
            and (self.until is None or started_on(run) <= self.until)
        )


def found(run: RunSummary, needle: str) -> bool:
    """Whether the run's topic or transcript holds `needle` (casefolded), as a substring."""
    if needle in run.topic.casefold():
        return True
    try:
        return needle in run.transcript().casefold()
    except DuologueError:  # a transcript that is not text holds no words to find
        return False


def filter_widgets(runs: Sequence[RunSummary]) -> RunFilter:
    """The filters above the Runs table, each offering what the runs hold."""
    search = st.text_input(
        "Search topics and transcripts",
        key="runs-search",
        persist_state=KEPT,
        type="search",
        placeholder="A word or phrase, any case",
        help="Finds the runs whose topic or transcript contains this text.",
    )
    shape, model, status, flag, dates = st.columns([1, 1.3, 1.1, 1.2, 1.5])
    shapes = shape.multiselect("Shape", sorted({r.shape for r in runs}), key="runs-shape", persist_state=KEPT)
    chosen_models = model.multiselect(
        "Model", sorted({m for r in runs for m in r.models}), key="runs-model", persist_state=KEPT
    )
    statuses = status.multiselect(
        "Status", sorted({r.status for r in runs}), key="runs-status", persist_state=KEPT
    )
    flags = flag.multiselect(
        "Flag",
        sorted({f for r in runs for f in r.flags}),
        key="runs-flag",
        persist_state=KEPT,
        help="Runs with any of these flags: CPU (a model ran partly on the CPU), slow, truncated, ...",
    )
    picked = dates.date_input(
        "Started (UTC)", value=[], format="YYYY-MM-DD", key="runs-dates", persist_state=KEPT
    )
    days = list(picked) if isinstance(picked, tuple | list) else [picked] if picked else []
    return RunFilter(
        frozenset(shapes),
        frozenset(chosen_models),
        frozenset(statuses),
        frozenset(flags),
        since=days[0] if days else None,
        until=days[1] if len(days) > 1 else None,
        search=search or "",
    )
