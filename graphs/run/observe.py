"""What a front end sees of a run while it happens (the CLI's terminal, the page's buffer)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from graphs.engine.schedule import PlannedTurn
    from graphs.engine.state import Turn
    from graphs.records.schema import TraceRecord


class RunObserver(Protocol):
    """What a front end sees of a run while it happens.

    An observer may also have `turn_placed(placement: TraceRecord)`, which the runner calls,
    from the turn's thread, once the model is placed and before its request is sent: the
    turn's record so far, holding only where the model sits (gpu_fraction, residency,
    preload_s...). And `run_ended(status: str)`, called once run.json records how the run
    ended, before the trace's flush to LangSmith, so a page can show the end at once. And
    `trace_exported(where: str)`, called once before the run when its trace goes to an
    OpenTelemetry collector (the endpoint, its password hidden). And `person_turn(planned:
    PlannedTurn, label: str) -> str | None`, called in the runner's thread when a person's turn
    is due (kind: person; the graph waits on its interrupt): their words, or None when none will
    come, which ends the run interrupted for `duologue resume` to ask again (the CLI reads the
    terminal, the page waits for its Send). All are optional, so an observer written before them
    keeps working.

    `token` is called from the turn's thread (a LangGraph worker) as chunks arrive, as
    turn_placed is; a turn's tokens all come between its turn_started and its turn_finished.
    """

    def run_started(self, run_id: str, folder: Path) -> None: ...

    def turn_started(self, planned: PlannedTurn, label: str, model: str) -> None: ...

    def token(self, text: str, thinking: bool) -> None: ...

    def turn_finished(self, turn: Turn, record: TraceRecord | None) -> None: ...


class SilentObserver:
    """Sees nothing: for scripts, tests, and observers that only need a hook or two."""

    def run_started(self, run_id: str, folder: Path) -> None:
        pass

    def turn_started(self, planned: PlannedTurn, label: str, model: str) -> None:
        pass

    def turn_placed(self, placement: TraceRecord) -> None:
        pass

    def token(self, text: str, thinking: bool) -> None:
        pass

    def turn_finished(self, turn: Turn, record: TraceRecord | None) -> None:
        pass

    def run_ended(self, status: str) -> None:
        pass
