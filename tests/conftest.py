"""Shared setup for every tier: no test reaches the network, nor a real Ollama.

LangSmith and OpenTelemetry are off unless a test turns them on. OLLAMA_HOST points where nothing
listens, so neither duologue nor a process a test starts falls back to Ollama's default address;
and the guard (support.guard) fails any test that connects to this machine's port 11434 all the same.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.guard import NOWHERE, OllamaGuard  # noqa: E402 - needs tests/ on sys.path

for variable in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"):
    os.environ.pop(variable, None)
os.environ["LANGSMITH_TRACING"] = "false"
os.environ["OLLAMA_HOST"] = NOWHERE
os.environ.pop("DUOLOGUE_RUNS_DIR", None)
os.environ.pop("DUOLOGUE_CHECKPOINT_URL", None)
for variable in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
    os.environ.pop(variable, None)  # no export to a developer's collector; tests start their own


TESTS = Path(__file__).parent
TIERS = ("unit", "integration", "e2e")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(OllamaGuard(), "ollama-guard")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test sits in a tier's folder: `make test` runs the tiers, and would never run it."""
    here = [item.path.relative_to(TESTS) for item in items if item.path.is_relative_to(TESTS)]
    stray = sorted({str(path) for path in here if path.parts[0] not in TIERS})
    if stray:
        raise pytest.UsageError(
            f"tests outside tests/unit, tests/integration and tests/e2e: {', '.join(stray)}"
        )


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"
