"""`duologue doctor` against the GPU-emulating Ollama: what it reports, and its exit codes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.fakeollama import FakeModel, fake_ollama

from graphs.commands.cli import main

pytestmark = pytest.mark.usefixtures("quick_waits")

GiB = 2**30
QWEN_KV = 256 * 1024
LAG_S = 0.15


def reference_pair() -> list[FakeModel]:
    return [
        FakeModel("glm-4.7-flash", weights_bytes=19 * GiB, gpu_tok_s=9.0),
        FakeModel(
            "qwen3:32b", weights_bytes=20 * GiB, kv_bytes_per_token=QWEN_KV, thinks=True, gpu_tok_s=9.5
        ),
    ]


def doctor(url: str, *args: str) -> int:
    return main(
        ["doctor", "duet", "--model", "a=glm-4.7-flash", "--model", "b=qwen3:32b", "--host", url, *args]
    )


def doctor_json(url: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = doctor(url, "--json", *args)
    return code, json.loads(capsys.readouterr().out)


def test_the_reference_pair_runs_on_the_gpu_one_at_a_time(capsys):
    with fake_ollama(reference_pair(), unload_lag_s=LAG_S) as (server, backend):
        assert doctor(server.url, "--topic", "An essay about inherited memory.") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{server.url}: Ollama 0.15.6"
    assert lines[1].split() == [
        "a", "glm-4.7-flash", "present;", "loaded", "alone:", "100%", "GPU,", "19.0", "GB,", "context", "6144,",
        "load", "0.0s;", "generation:", "9.0", "tok/s", "over", "28", "tokens",
    ]  # fmt: skip
    # Qwen thinks: its context has room for a turn of 4096 tokens, thinking included.
    assert lines[2].split()[:12] == [
        "b", "qwen3:32b", "present;", "loaded", "alone:", "100%", "GPU,", "22.2", "GB,", "context", "9216,", "load",
    ]  # fmt: skip
    assert lines[2].endswith("generation: 9.5 tok/s over 32 tokens (thinking)")
    assert lines[3].startswith(
        "  together: no, they do not all fit in VRAM at once (residency auto: exclusive"
    )
    assert lines[4] == "ok: every model is there and runs as required"
    # Loaded with the exact options a run of the same topic sends: no reload, ever.
    options = {name: opts for name, opts, _ in backend.load_requests}
    assert options["qwen3:32b"] == {
        "num_ctx": 9216,
        "num_gpu": 999,
        "temperature": 0.7,
        "seed": -1,
        "num_predict": 4096,
    }
    assert "reload" not in {kind for kind, _ in backend.events}
    # The short timed generation differs only in num_predict, which never reloads.
    assert [(r.model, r.options["num_predict"], r.think) for r in backend.chat_requests] == [
        ("glm-4.7-flash", 32, None),
        ("qwen3:32b", 32, True),
    ]


def test_a_model_that_spills_even_alone_fails_the_check(capsys):
    with fake_ollama(reference_pair(), unload_lag_s=LAG_S) as (server, _):
        code, report = doctor_json(server.url, capsys, "--set", "b.num_ctx=32768")
    assert code == 1
    qwen = report["models"][1]
    assert qwen["processor"] == "14%/86% CPU/GPU" and qwen["on_cpu"] and qwen["require_gpu"]
    assert qwen["context_length"] == 32768 and qwen["size"] == 20 * GiB + QWEN_KV * 32768
    assert report["problems"] == [
        "b (qwen3:32b) would run 14% on the CPU (14%/86% CPU/GPU) even loaded alone; try a smaller context "
        "(--set b.num_ctx=16384) or OLLAMA_MAX_LOADED_MODELS=1 on the server"
    ]
    assert report["ok"] is False


def test_without_require_gpu_a_spill_is_reported_but_passes(capsys):
    with fake_ollama(reference_pair(), unload_lag_s=LAG_S) as (server, _):
        assert doctor(server.url, "--set", "b.num_ctx=32768", "--no-require-gpu") == 0
    out = capsys.readouterr().out
    assert "loaded alone: 14%/86% CPU/GPU, 28.0 GB, context 32768" in out
    assert out.splitlines()[-1] == "ok: every model is there and runs as required"


def test_models_that_fit_together(capsys):
    small = [FakeModel("glm-4.7-flash", weights_bytes=8 * GiB), FakeModel("qwen3:32b", weights_bytes=9 * GiB)]
    with fake_ollama(small) as (server, _):
        code, report = doctor_json(server.url, capsys)
    assert code == 0
    [host] = report["hosts"]
    assert host["together"] is True
    assert host["together_processors"] == {"a": "100% GPU", "b": "100% GPU"}


def test_a_cpu_only_server_passes_unless_a_gpu_is_required(capsys):
    with fake_ollama(reference_pair(), vram_bytes=0) as (server, _):
        code, report = doctor_json(server.url, capsys)
        assert code == 0
        assert [m["processor"] for m in report["models"]] == ["100% CPU", "100% CPU"]
        assert doctor(server.url, "--require-gpu") == 1
    assert "problem: a (glm-4.7-flash) would run 100% on the CPU" in capsys.readouterr().out


def test_bare_models_without_a_shape(capsys):
    with fake_ollama(reference_pair(), unload_lag_s=LAG_S) as (server, _):
        assert main(["doctor", "--model", "qwen3:32b", "--host", server.url, "--set", "a.num_ctx=8192"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:11] == [
        "a", "qwen3:32b", "present;", "loaded", "alone:", "100%", "GPU,", "22.0", "GB,", "context", "8192,",
    ]  # fmt: skip


def test_a_missing_model_fails(capsys):
    with fake_ollama(["glm-4.7-flash", "llama3.2:3b"]) as (server, _):
        assert doctor(server.url) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[2].split() == ["b", "qwen3:32b", "missing"]
    assert out[-1] == (
        "problem: b (qwen3:32b): not on the server (it has: glm-4.7-flash, llama3.2:3b); "
        "pull it with `ollama pull qwen3:32b`"
    )


def test_an_unreachable_server_fails(capsys):
    with fake_ollama([]) as (server, _):
        url = server.url
    assert doctor(url) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{url}: unreachable"
    assert out[-1].startswith(f"problem: {url}: cannot reach Ollama at {url}; start it with `ollama serve`")


def test_just_the_server(capsys):
    with fake_ollama([]) as (server, _):
        assert main(["doctor", "--host", server.url]) == 0
    assert capsys.readouterr().out == (
        f"{server.url}: Ollama 0.15.6\nok: the server answers; name a shape or --model to check models\n"
    )


def test_participants_on_two_hosts(capsys):
    glm, qwen = reference_pair()
    with fake_ollama([glm]) as (one, _), fake_ollama([qwen]) as (two, _):
        code, report = doctor_json(one.url, capsys, "--host", f"b={two.url}")
    assert code == 0
    assert [h["url"] for h in report["hosts"]] == [one.url, two.url]
    assert [(m["host"], m["processor"]) for m in report["models"]] == [
        (one.url, "100% GPU"),
        (two.url, "100% GPU"),
    ]
    assert all(h["together"] is None for h in report["hosts"])  # one model per host


def test_bad_input_is_one_line(capsys):
    assert main(["doctor", "duet", "--set", "c.num_ctx=1"]) == 2
    assert capsys.readouterr().err == (
        "duologue: error: --set names 'c', who is not in shape 'duet'; its participants are a, b\n"
    )
