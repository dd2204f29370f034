"""The duet most tests hold: the reference run's two models on the Ollama-protocol test server.

One pair of models and replies for every tier, so a change to what a duet sends or records
shows in each test the same way; and the few ways tests read a run back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graphs.records.store import RunRecord, RunStore
from support.fakeollama import FakeModel

A_REPLIES = ["The essay presents a paradox. How do you see it?", "You separate capability from preference."]
B_REPLIES = ["The tension is profound.", "We converge on the duality and diverge on inheritance."]


def duet_models(**b_kwargs: Any) -> list[FakeModel]:
    """glm-4.7-flash and qwen3:32b at the reference run's speeds; b_kwargs change qwen3:32b."""
    return [
        FakeModel("glm-4.7-flash", replies=A_REPLIES, gpu_tok_s=9.0),
        FakeModel("qwen3:32b", replies=B_REPLIES, **({"gpu_tok_s": 1.4} | b_kwargs)),
    ]


def run_args(url: str, runs_dir: Path, *extra: str) -> list[str]:
    """`duologue run duet` on the pair at url, on a short topic."""
    return [
        "run", "duet", "--model", "a=glm-4.7-flash", "--model", "b=qwen3:32b", "--topic", "An essay.",
        "--host", url, "--runs-dir", str(runs_dir), *extra,
    ]  # fmt: skip


def only_run(runs_dir: Path) -> RunRecord:
    """The one run in the folder (it fails if there are more, or none)."""
    [run] = RunStore(runs_dir).list()
    return run


def turn_sections(transcript: str) -> list[str]:
    """Each turn's block, heading to text, as the transcript prints it (without the trailer)."""
    body = transcript.split("\n---\n")[1:]
    sections = [section.strip() for section in body if section.strip().startswith("### Turn")]
    if sections:
        sections[-1] = "\n".join(
            line
            for line in sections[-1].splitlines()
            if not line.startswith(("*Run ", "Total: ", "*Waiting "))
        ).strip()
    return sections


def user(text: str) -> dict[str, str]:
    """A user message as Ollama's /api/chat carries it."""
    return {"role": "user", "content": text}
