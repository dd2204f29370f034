"""`make demo` on the real model: a new user's first dialogue reads as one.

It used to go badly: turn 1 recited the framing instructions word for word, and the closing
looped for 1,008 tokens until its words ran together ("...foreverremainedforeverunknown...").
The run is sampled, so this checks what holds for every sample: what the models were asked,
with which options, and that no turn runs on.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

from support import ROOT  # noqa: E402

from graphs.records.store import RunStore  # noqa: E402

pytestmark = pytest.mark.embedded

ESSAY = ROOT / "graphs" / "samples" / "essay.md"
SYSTEM = (
    "You are smollm2:135m, in a conversation with smollm2:135m-warm about the text below. Say what you "
    "think in a few plain sentences, as people do when they talk."
)
TURNS = {
    "num_gpu": 999,
    "keep_alive": "30m",
    "seed": -1,
    "num_predict": 160,
    "repeat_penalty": 1.15,
    "stop": ["\n\n"],
}
COOL = TURNS | {"temperature": 0.6, "top_p": 0.9}
WARM = TURNS | {"temperature": 0.8, "top_p": 0.95}


def test_the_demo_asks_short_questions_and_no_turn_runs_on(tmp_path: Path) -> None:
    runs_dir = tmp_path / "runs"
    demo = subprocess.run(
        [sys.executable, "-m", "graphs", "run", "duet", "--embedded", "--topic-file", str(ESSAY),
         "--runs-dir", str(runs_dir)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    [run] = RunStore(runs_dir).list()
    options = [{k: v for k, v in p.options.items() if k != "num_ctx"} for p in run.meta.participants]
    assert options == [COOL, WARM], "num_ctx aside, which is sized to the dialogue"
    inputs = [i.model_dump() for i in run.inputs()]  # each turn's whole prompt, rebuilt from format 2
    assert inputs[0]["messages"] == [
        {"role": "system", "content": f"{SYSTEM}\n\n{ESSAY.read_text().strip()}"},
        {"role": "user", "content": "What do you make of its argument?"},
    ]
    assert inputs[-1]["messages"][-1] == {
        "role": "user",
        "content": "Time to wrap up. Where do we agree, and where not?",
    }
    turns = run.turn_records
    assert len(turns) == 4 and all(r.completion_tokens and r.completion_tokens <= 160 for r in turns)
    opening = run.transcript().split("### Turn 1:")[1].split("### Turn 2:")[0]
    assert "Say what you think in a few plain sentences" not in opening, "turn 1 does not recite its framing"
    words = re.findall(r"[A-Za-z]+", run.transcript())
    assert max(len(word) for word in words) < 30, "no words run together"
