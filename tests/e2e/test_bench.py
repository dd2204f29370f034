"""`duologue bench` on the embedded real model: decode speed and the prompt cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from graphs.commands import bench
from graphs.embedded.backend import ChatRequest


@pytest.mark.embedded
def test_bench_on_the_embedded_model_measures_decode_and_the_prompt_cache(tmp_path: Path):
    pytest.importorskip("llama_cpp")
    settings = bench.BenchSettings(turns=4, repeat=1, num_predict=16)
    figures = bench.measure_embedded(settings, tmp_path, lambda _line: None)
    assert figures["decode_ratio"] > 0
    assert figures["engine_decode_tok_s"] > 0 and figures["direct_decode_tok_s"] > 0
    # Each speaker's second turn reuses its cached prefix: far fewer tokens evaluated than sent.
    assert 0 < figures["prompt_reeval_ratio"] < 1.2


PEER_PYTHON = Path(__file__).resolve().parents[2] / ".venv-bench" / "bin" / "python"


def test_bench_holds_the_same_duet_through_autogen_in_its_own_venv(capsys):
    """AutoGen AgentChat, a real third-party framework from the bench extra (make bench-peer builds
    its venv), holds the same duet on the same instant server, and the report sets it beside ours."""
    from graphs.commands.cli import main

    assert PEER_PYTHON.exists(), "make bench-peer builds .venv-bench (make test does)"
    argv = [
        "bench",
        "--json",
        "--repeat",
        "1",
        "--turns",
        "6",
        "--skip-embedded",
        "--peer-python",
        str(PEER_PYTHON),
    ]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["peer_skipped"] is None and "AutoGen" not in err
    assert result["autogen_ms_per_turn_p50"] > 0
    ratio = result["added_ms_per_turn_p50"] / result["autogen_added_ms_per_turn_p50"]
    assert result["added_vs_autogen_ratio"] == pytest.approx(ratio, rel=0.01)


def test_the_autogen_side_sends_the_duets_system_prompts_and_turns(tmp_path: Path):
    """What AutoGen is given is the raw loop's script: its requests reach the same server, one a turn."""
    from graphs.embedded.instant import start_instant

    server = start_instant()
    sent: list[ChatRequest] = []
    chat = server.backend.chat

    def recording(request: ChatRequest, cancelled: Any) -> Any:
        sent.append(request)
        return chat(request, cancelled)

    server.backend.chat = recording  # type: ignore[method-assign]
    try:
        script = bench.duet_script(server.url, 6)
        side = bench.peer_run(str(PEER_PYTHON), script)
    finally:
        server.stop()
    assert len(side.turn_s) == 6
    assert [(r.model, r.messages[0]) for r in sent] == [
        (script.models[p.speaker], {"role": "system", "content": script.system[p.speaker]})
        for p in script.plan
    ]
    assert [len(r.messages) for r in sent] == [2, 3, 4, 5, 6, 7]  # the task, then every turn so far
