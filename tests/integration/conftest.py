"""Fixtures for the integration tier."""

from __future__ import annotations

import pytest

from graphs.ollama import residency


@pytest.fixture
def quick_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Residency's real waits are seconds; the test server's VRAM reading recovers in a fraction of one."""
    timing = residency.Timing(settle_s=0.25, recovery_s=0.05, unload_timeout_s=2.0, poll_s=0.01)
    monkeypatch.setattr(residency, "TIMING", timing)
