"""Shared setup for every tier: no test reaches the network, nor a real Ollama.

LangSmith is off unless a test turns it on. OLLAMA_HOST points where nothing listens, so neither
duologue nor a process a test starts falls back to Ollama's default address; and the guard
(support.guard) fails any test that connects to this machine's port 11434 all the same.
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


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(OllamaGuard(), "ollama-guard")


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"
