"""GPU residency, the context guard and thinking models, against the GPU-emulating Ollama.

The pair is the reference run's: GLM-4.7-Flash (19 GB) and Qwen3:32B (20 GB plus its KV
cache) on one 24 GB card, where alternating them naively left Qwen on the CPU.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from support.duet import only_run
from support.fakeollama import FakeBackend, FakeModel, fake_ollama

from graphs.commands.cli import main
from graphs.embedded.backend import ChatRequest
from graphs.records.store import RunRecord

pytestmark = pytest.mark.usefixtures("quick_waits")

GiB = 2**30
QWEN_KV = 256 * 1024  # bytes per token: 64 layers x 8 KV heads x 128 dims x (K, V) x fp16
NUM_CTX = 6144  # what the default duet on a short topic sizes to: 4 turns of up to 1024 tokens
QWEN_CTX = 9216  # for a model that thinks: 3 answers of up to 1024 tokens, and a turn of up to 4096
QWEN_SIZE = 20 * GiB + QWEN_KV * QWEN_CTX  # 22.25 GB


LAG_S = 0.15  # the fake's free-VRAM reading lags an unload by this long (< settle_s)


def reference_pair(**qwen: Any) -> list[FakeModel]:
    return [
        FakeModel("glm-4.7-flash", weights_bytes=19 * GiB, gpu_tok_s=9.0, cpu_tok_s=1.4),
        FakeModel(
            "qwen3:32b",
            **{"weights_bytes": 20 * GiB, "kv_bytes_per_token": QWEN_KV, "thinks": True}
            | {"gpu_tok_s": 9.5, "cpu_tok_s": 1.4}
            | qwen,
        ),
    ]


def run_duet(url: str, runs_dir: Path, *extra: str, topic: str = "An essay about inherited memory.") -> int:
    return main(
        [
            "run", "duet", "--model", "a=glm-4.7-flash", "--model", "b=qwen3:32b", "--topic", topic,
            "--host", url, "--runs-dir", str(runs_dir), *extra,
        ]
    )  # fmt: skip


def stats_lines(run: RunRecord) -> list[str]:
    return [line for line in run.transcript().splitlines() if line.startswith("*(")]


def trace(run: RunRecord) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (run.folder / "trace.jsonl").read_text().splitlines()]
    return [row for row in rows if row["turn"] is not None]


def requests_of(backend: FakeBackend, model: str) -> list[tuple[dict[str, Any], Any]]:
    """(options, keep_alive) of every /api/chat for a model: the loads and the turns."""
    loads = [(options, keep) for name, options, keep in backend.load_requests if name == model]
    chats = [(r.options, r.keep_alive) for r in backend.chat_requests if r.model == model]
    return loads + chats


# -- the reference's failure, reproduced and caught --------------------------------------------


def test_naive_alternation_reproduces_the_cpu_fallback_and_flags_it(runs_dir: Path, capsys):
    """Both kept loaded, no GPU requirement: Qwen lands mostly on the CPU, as in the reference."""
    with fake_ollama(reference_pair(), unload_lag_loads=1) as (server, backend):
        assert run_duet(server.url, runs_dir, "--residency", "shared", "--no-require-gpu") == 0
    out = capsys.readouterr().out
    run = only_run(runs_dir)
    records = run.turn_records

    # Qwen's load evicted GLM, and the lagging free-VRAM reading left it 5 GB of 22.25 GB.
    assert ("evict", "glm-4.7-flash") in backend.events
    assert [r.gpu_fraction for r in records] == [1.0, round(5 / 22.25, 4), 1.0, round(5 / 22.25, 4)]
    assert [(r.size, r.size_vram) for r in records[1::2]] == [(QWEN_SIZE, 5 * GiB)] * 2
    assert [r.context_length for r in records] == [NUM_CTX, QWEN_CTX] * 2
    assert [r.tokens_per_s for r in records[1::2]] == [records[1].tokens_per_s] * 2
    assert records[1].tokens_per_s < 2.0  # the reference's 1.4 tok/s, near enough

    # Flagged in the trace, the transcript and on the terminal: never silent.
    assert [r.flags for r in records] == [[], ["CPU 78%", "thinking"], [], ["CPU 78%", "thinking"]]
    lines = stats_lines(run)
    assert all(", CPU 78%, thinking)*" in line for line in lines[1::2])
    assert not any("CPU" in line for line in lines[0::2])
    assert out.count(", CPU 78%, thinking)*") == 2


def test_require_gpu_catches_the_fallback_and_stops_with_a_clear_message(runs_dir: Path, capsys):
    """GLM showed the host has VRAM, so require_gpu is on: Qwen is retried once, then the run stops."""
    with fake_ollama(reference_pair(), unload_lag_loads=1) as (server, backend):
        assert run_duet(server.url, runs_dir, "--residency", "shared") == 1
    err = capsys.readouterr().err
    run = only_run(runs_dir)
    assert err == (
        f"duologue: run failed: b (qwen3:32b) at {server.url} is 100% on the CPU (100% CPU: 0.0 GB of "
        "22.2 GB in VRAM, context 9216) even after reloading it; try --residency exclusive, a smaller "
        "context (--set b.num_ctx=4096), OLLAMA_MAX_LOADED_MODELS=1 on the server, or --no-require-gpu "
        f"to run it on the CPU anyway (run {run.meta.run_id}: 1 finished turn(s) kept)\n"
    )
    assert run.meta.status == "failed"
    assert run.transcript().count("### Turn") == 1
    [failed] = [r for r in trace(run) if r["turn"] == 2]
    assert failed["gpu_fraction"] == 0.0 and failed["retried"] is True and failed["require_gpu"] is True
    assert failed["error"].startswith("GpuRequired: b (qwen3:32b)")
    # The retry unloaded Qwen and loaded it again; no turn of Qwen's was generated.
    assert backend.events[-2:] == [("evict", "glm-4.7-flash"), ("load", "qwen3:32b")]
    assert [r.model for r in backend.chat_requests] == ["glm-4.7-flash"]


def test_default_settings_keep_every_turn_fully_on_the_gpu(runs_dir: Path, capsys):
    """auto finds the pair does not fit together and swaps them, waiting out the VRAM lag."""
    with fake_ollama(reference_pair(), unload_lag_s=LAG_S) as (server, backend):
        assert run_duet(server.url, runs_dir) == 0
    run = only_run(runs_dir)
    records = run.turn_records
    assert [r.gpu_fraction for r in records] == [1.0] * 4
    assert [(r.size, r.size_vram) for r in records] == [(19 * GiB, 19 * GiB), (QWEN_SIZE, QWEN_SIZE)] * 2
    assert [r.residency for r in records] == ["exclusive"] * 4
    assert [r.unloaded for r in records] == [["qwen3:32b"], ["glm-4.7-flash"]] * 2
    assert all(r.require_gpu and not r.retried for r in records)
    assert not any("CPU" in line for line in stats_lines(run))
    # The auto probe loaded both (Qwen spilled after evicting GLM); from then on, one at a time.
    turns = backend.events[3:]
    assert (
        turns
        == [
            ("unload", "qwen3:32b"),
            ("load", "glm-4.7-flash"),
            ("unload", "glm-4.7-flash"),
            ("load", "qwen3:32b"),
        ]
        * 2
    )


def test_default_settings_stop_clearly_when_vram_never_recovers(runs_dir: Path, capsys):
    """A card whose free-VRAM reading stays stale for the next load: even exclusive cannot help."""
    with fake_ollama(reference_pair(), unload_lag_loads=1) as (server, _):
        assert run_duet(server.url, runs_dir) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"duologue: run failed: b (qwen3:32b) at {server.url} is 15% on the CPU (15%/85% CPU/GPU: 19.0 GB of "
        "22.2 GB in VRAM, context 9216) even after unloading every other model and reloading it; try a "
        "smaller context (--set b.num_ctx=4096), OLLAMA_MAX_LOADED_MODELS=1 on the server, or --no-require-gpu"
    )
    assert "--residency exclusive" not in err and err.count("\n") == 1


def test_exclusive_waits_until_the_others_have_left(runs_dir: Path):
    """Ollama lists an unloading model for a while; exclusive polls /api/ps until it is gone."""
    with fake_ollama(reference_pair(), unload_lag_s=LAG_S, unload_delay_s=0.1) as (server, backend):
        assert run_duet(server.url, runs_dir, "--residency", "exclusive") == 0
    records = only_run(runs_dir).turn_records
    assert [r.gpu_fraction for r in records] == [1.0] * 4
    assert [r.residency for r in records] == ["exclusive"] * 4
    assert [r.unloaded for r in records] == [[], ["glm-4.7-flash"], ["qwen3:32b"], ["glm-4.7-flash"]]
    assert all(r.residency_s is not None and r.residency_s >= 0.1 for r in records[1:])
    assert "evict" not in {kind for kind, _ in backend.events}  # nothing left for the scheduler to evict


def test_models_that_fit_together_stay_loaded(runs_dir: Path):
    small = [FakeModel("glm-4.7-flash", weights_bytes=8 * GiB), FakeModel("qwen3:32b", weights_bytes=9 * GiB)]
    with fake_ollama(small, unload_lag_loads=1) as (server, backend):
        assert run_duet(server.url, runs_dir) == 0
    records = only_run(runs_dir).turn_records
    assert [r.residency for r in records] == ["shared"] * 4
    assert [r.gpu_fraction for r in records] == [1.0] * 4
    assert [r.unloaded for r in records] == [[]] * 4
    assert backend.events == [("load", "glm-4.7-flash"), ("load", "qwen3:32b")]


def test_every_request_of_a_participant_carries_the_same_complete_options(runs_dir: Path):
    """Runtime options ChatOllama has no field for are sent too, and nothing ever reloads."""
    extra = ["--set", "b.num_batch=256", "--set", "b.main_gpu=0", "--set", "b.use_mmap=false"]
    extra += ["--set", "b.num_thread=8", "--set", "a.num_ctx=4096", "--set", "b.top_k=40"]
    with fake_ollama(reference_pair(), unload_lag_s=LAG_S) as (server, backend):
        assert run_duet(server.url, runs_dir, *extra) == 0
    run = only_run(runs_dir)
    recorded = {p.name: p.options for p in run.meta.participants}
    a_options = {"num_ctx": 4096, "num_gpu": 999, "temperature": 0.7, "seed": -1, "num_predict": 1024}
    b_options = {
        "num_ctx": QWEN_CTX, "num_gpu": 999, "main_gpu": 0, "num_batch": 256, "num_thread": 8,
        "use_mmap": False, "temperature": 0.7, "seed": -1, "num_predict": 4096, "top_k": 40,
    }  # fmt: skip
    assert requests_of(backend, "glm-4.7-flash") == [(a_options, "30m")] * len(
        requests_of(backend, "glm-4.7-flash")
    )
    assert requests_of(backend, "qwen3:32b") == [(b_options, "30m")] * len(requests_of(backend, "qwen3:32b"))
    assert len(requests_of(backend, "qwen3:32b")) == 1 + 2 + 2  # the probe, two preloads, two turns
    assert recorded["a"] == a_options | {"keep_alive": "30m"}
    assert recorded["b"] == b_options | {"keep_alive": "30m", "think": True}
    assert "reload" not in {kind for kind, _ in backend.events}
    assert all(r.think is True for r in backend.chat_requests if r.model == "qwen3:32b")


def test_cpu_only_server_runs_without_requiring_a_gpu(runs_dir: Path):
    """A host that never shows VRAM: no GPU to require, no point in swapping; turns say CPU."""
    with fake_ollama(reference_pair(), vram_bytes=0) as (server, backend):
        assert run_duet(server.url, runs_dir) == 0
    records = only_run(runs_dir).turn_records
    assert [r.gpu_fraction for r in records] == [0.0] * 4
    assert [r.residency for r in records] == ["shared"] * 4
    assert not any(r.require_gpu for r in records)
    assert all(r.flags[0] == "CPU" for r in records)
    assert "unload" not in {kind for kind, _ in backend.events}


def test_require_gpu_when_asked_stops_on_a_cpu_only_server(runs_dir: Path, capsys):
    with fake_ollama(reference_pair(), vram_bytes=0) as (server, _):
        assert run_duet(server.url, runs_dir, "--require-gpu") == 1
    assert capsys.readouterr().err.startswith(
        f"duologue: run failed: a (glm-4.7-flash) at {server.url} is 100% on the CPU (100% CPU: 0.0 GB of 19.0 GB"
    )


def test_a_slow_turn_is_flagged_even_at_100_percent_gpu(runs_dir: Path):
    with fake_ollama(reference_pair(gpu_tok_s=1.4), unload_lag_s=LAG_S) as (server, _):
        assert run_duet(server.url, runs_dir, "--set", "b.min_tok_s=5") == 0
    run = only_run(runs_dir)
    records = run.turn_records
    assert [r.gpu_fraction for r in records] == [1.0] * 4
    assert [r.slow for r in records] == [False, True, False, True]
    assert all(line.endswith(", slow, thinking)*") for line in stats_lines(run)[1::2])


def test_several_hosts_one_model_each(runs_dir: Path):
    """The policy applies per host: each GPU machine keeps its one model, nothing is swapped."""
    glm, qwen = reference_pair()
    with (
        fake_ollama([glm], unload_lag_loads=1) as (one, first),
        fake_ollama([qwen], unload_lag_loads=1) as (two, second),
    ):
        code = main(
            [
                "run", "duet", "--model", "a=glm-4.7-flash", "--model", "b=qwen3:32b", "--topic", "t",
                "--host", f"a={one.url}", "--host", f"b={two.url}", "--runs-dir", str(runs_dir),
            ]
        )  # fmt: skip
    assert code == 0
    records = only_run(runs_dir).turn_records
    assert [r.host for r in records] == [one.url, two.url] * 2
    assert [r.gpu_fraction for r in records] == [1.0] * 4
    assert [r.residency for r in records] == ["shared"] * 4
    assert first.events == [("load", "glm-4.7-flash")] and second.events == [("load", "qwen3:32b")]


# -- the context guard -------------------------------------------------------------------------

LONG_A = " ".join(["memory"] * 100)
LONG_B = " ".join(["inheritance"] * 100)


def long_replies() -> list[FakeModel]:
    return [FakeModel("glm-4.7-flash", replies=[LONG_A]), FakeModel("qwen3:32b", replies=[LONG_B])]


def test_num_ctx_is_sized_to_the_dialogue_and_capped_at_the_trained_context(runs_dir: Path, tmp_path: Path):
    essay = tmp_path / "essay.md"
    essay.write_text("word " * 6000)  # 30 kB: about 10k tokens at a generous 3 bytes each
    models = [FakeModel("glm-4.7-flash", context_length=131072), FakeModel("qwen3:32b", context_length=8192)]
    with fake_ollama(models) as (server, backend):
        code = main(
            [
                "run", "duet", "--model", "a=glm-4.7-flash", "--model", "b=qwen3:32b", "--topic-file", str(essay),
                "--turns", "6", "--set", "a.num_predict=512", "--host", server.url, "--runs-dir", str(runs_dir),
            ]
        )  # fmt: skip
    assert code == 0
    options = {p.name: p.options for p in only_run(runs_dir).meta.participants}
    # 512 + 10000 + 6 x (512 + 128) = 14352 -> 15360; b's 6 x 1152 = 17424 -> 18432, capped at 8192.
    assert options["a"]["num_ctx"] == 15360
    assert options["b"]["num_ctx"] == 8192
    assert {r.options["num_ctx"] for r in backend.chat_requests if r.model == "qwen3:32b"} == {8192}
    assert [r.context_length for r in only_run(runs_dir).turn_records] == [15360, 8192] * 3


def test_truncation_is_detected_and_flagged(runs_dir: Path, capsys):
    with fake_ollama(long_replies()) as (server, _):
        assert run_duet(server.url, runs_dir, "--set", "a.num_ctx=256", "--set", "b.num_ctx=256") == 0
    out = capsys.readouterr().out
    run = only_run(runs_dir)
    records = run.turn_records
    assert [r.truncated for r in records] == [False, False, True, True]
    third = records[2]
    assert third.prompt_eval_count is not None and third.expected_prompt_tokens is not None
    assert third.prompt_eval_count < third.expected_prompt_tokens
    # The guard's bound is what an untruncated prompt counts at least: the words sent.
    inputs = run.inputs()
    sent_words = sum(len(m["content"].split()) for m in inputs[2].messages)
    assert third.expected_prompt_tokens >= sent_words > third.prompt_eval_count
    lines = stats_lines(run)
    assert [line.endswith(", truncated)*") for line in lines] == [False, False, True, True]
    assert out.count(", truncated)*") == 2


def test_an_untruncated_dialogue_is_not_flagged(runs_dir: Path):
    """The same dialogue with the context the guard sizes: no false alarm."""
    with fake_ollama(long_replies()) as (server, _):
        assert run_duet(server.url, runs_dir) == 0
    records = only_run(runs_dir).turn_records
    assert [r.truncated for r in records] == [False] * 4
    assert all(r.prompt_eval_count >= r.expected_prompt_tokens for r in records)  # type: ignore[operator]


def test_strict_context_stops_the_run(runs_dir: Path, capsys):
    with fake_ollama(long_replies()) as (server, _):
        code = run_duet(
            server.url, runs_dir, "--set", "a.num_ctx=256", "--set", "b.num_ctx=256", "--strict-context"
        )
    assert code == 1
    err = capsys.readouterr().err
    run = only_run(runs_dir)
    [failed] = [r for r in trace(run) if r["turn"] == 3]
    assert failed["truncated"] is True
    expected, counted = failed["expected_prompt_tokens"], failed["prompt_eval_count"]
    assert counted is None  # the turn was stopped: its final chunk never reached the trace
    assert re.fullmatch(
        r"duologue: run failed: a \(glm-4\.7-flash\) was sent a prompt of at least (\d+) tokens but Ollama "
        r"evaluated \d+ \(num_ctx 256\): it dropped the oldest messages; give it a larger context "
        r"\(--set a\.num_ctx=\d+\) or fewer turns, or leave out --strict-context to flag such turns and go on "
        rf"\(run {run.meta.run_id}: 2 finished turn\(s\) kept\)\n",
        err,
    )
    assert f"at least {expected} tokens" in err
    assert run.meta.status == "failed" and run.transcript().count("### Turn") == 2


# -- thinking models ---------------------------------------------------------------------------


def test_thinking_is_captured_kept_apart_and_never_relayed(runs_dir: Path):
    with fake_ollama(reference_pair(), unload_lag_s=LAG_S) as (server, backend):
        assert run_duet(server.url, runs_dir) == 0
    run = only_run(runs_dir)
    records = {r.turn: r for r in run.turn_records}
    qwen_turns = [records[2], records[4]]

    # Thinking is asked for explicitly, only of the model that can think.
    assert {r.think for r in backend.chat_requests if r.model == "qwen3:32b"} == {True}
    assert {r.think for r in backend.chat_requests if r.model == "glm-4.7-flash"} == {None}

    # Kept in the run record apart from the answer, and counted in eval_count.
    for record in qwen_turns:
        assert record.thinking and record.thinking.startswith("Let me think about")
        assert record.thinking_chars == len(record.thinking)
        assert record.eval_includes_thinking and "thinking" in record.flags
    transcript = run.transcript()
    assert "Let me think" not in transcript
    reply = "This is qwen3:32b, reply 1. I have read what you wrote and I agree with some of it, though the argument needs one more step before it holds."
    reply_words = len(reply.split())
    assert records[2].eval_count == len(records[2].thinking.split()) + reply_words  # type: ignore[union-attr]
    assert not records[1].thinking and not records[1].eval_includes_thinking

    # Never relayed: not in what GLM was sent, not in any later request.
    inputs = (run.folder / "inputs.jsonl").read_text()
    assert "Let me think" not in inputs
    glm_sent = [m["content"] for r in backend.chat_requests if r.model == "glm-4.7-flash" for m in r.messages]
    assert not any("Let me think" in text for text in glm_sent)
    assert all(isinstance(r, ChatRequest) for r in backend.chat_requests)


def test_thinking_can_be_turned_off(runs_dir: Path):
    with fake_ollama(reference_pair(), unload_lag_s=LAG_S) as (server, backend):
        assert run_duet(server.url, runs_dir, "--set", "b.think=false") == 0
    records = only_run(runs_dir).turn_records
    assert {r.think for r in backend.chat_requests if r.model == "qwen3:32b"} == {False}
    assert not any(r.thinking or r.eval_includes_thinking for r in records)
    assert only_run(runs_dir).meta.participants[1].options["think"] is False


def test_think_on_a_model_that_cannot_think_is_refused_up_front(runs_dir: Path, capsys):
    with fake_ollama(reference_pair()) as (server, backend):
        assert run_duet(server.url, runs_dir, "--set", "a.think=true") == 2
    assert capsys.readouterr().err == (
        f"duologue: error: a: model 'glm-4.7-flash' at {server.url} does not think (its capabilities: "
        "completion); drop think from its options (--set a.think=null)\n"
    )
    assert not runs_dir.exists() and not backend.chat_requests


# -- pieces ------------------------------------------------------------------------------------
