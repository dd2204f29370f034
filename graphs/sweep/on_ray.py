"""A sweep's cells as Ray tasks (`duologue sweep --ray auto|ADDRESS`, duologue[ray])."""

from __future__ import annotations

from typing import TYPE_CHECKING

from graphs.errors import DuologueError

if TYPE_CHECKING:
    from graphs.sweep.driver import SweepDriver, SweepOutcome

RAY_MISSING = "--ray needs Ray: pip install 'duologue[ray]'"


def run_on_ray(driver: SweepDriver, address: str) -> SweepOutcome:
    try:
        import ray  # noqa: F401
    except ImportError:
        raise DuologueError(RAY_MISSING) from None
    raise DuologueError("--ray: not available in this build yet; run the sweep without --ray")
