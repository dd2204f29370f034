"""Shared fixtures. No test reaches the network: LangSmith is off unless a test turns it on."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

for variable in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"):
    os.environ.pop(variable, None)
os.environ["LANGSMITH_TRACING"] = "false"
os.environ.pop("OLLAMA_HOST", None)
os.environ.pop("DUOLOGUE_RUNS_DIR", None)
os.environ.pop("DUOLOGUE_CHECKPOINT_URL", None)


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"
