"""What a front end sees of a run while it happens (the CLI's terminal, the page's buffer)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from graphs.engine.schedule import PlannedTurn
    from graphs.engine.state import Turn
    from graphs.records.schema import TraceRecord


class RunObserver(Protocol):
    """What a front end sees of a run while it happens."""

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

    def token(self, text: str, thinking: bool) -> None:
        pass

    def turn_finished(self, turn: Turn, record: TraceRecord | None) -> None:
        pass
