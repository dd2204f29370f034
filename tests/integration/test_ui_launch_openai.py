"""The Launch page offers an OpenAI-compatible server's models beside the Ollama host's: chosen,
a participant shows only the options such a server is sent, its residency unknown, and its run
goes to that server. Through AppTest, against the Ollama-protocol test server and a scripted
OpenAI-compatible one."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from support import ROOT
from support.fakeollama import FakeModel, fake_ollama
from support.markup import visible
from support.net import free_port
from support.openaiserver import ScriptedReply, loopback_only, scripted_openai  # noqa: F401

from graphs import RunStore

APP = str(ROOT / "ui" / "app.py")

pytestmark = pytest.mark.usefixtures("loopback_only")


@pytest.fixture
def page_env(runs_dir: Path, monkeypatch) -> Path:
    monkeypatch.setenv("DUOLOGUE_RUNS_DIR", str(runs_dir))
    return runs_dir


def launch_page(url: str, monkeypatch) -> AppTest:
    monkeypatch.setenv("OLLAMA_HOST", url)
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def wait_until(predicate: Callable[[], object], timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def keys(at: AppTest, prefix: str) -> list[str]:
    return sorted(str(w.key) for w in at.number_input if str(w.key).startswith(prefix))


def test_a_participant_on_an_openai_compatible_server(page_env: Path, monkeypatch):
    def reply(number: int) -> ScriptedReply:
        return ScriptedReply(pieces=["Rivers ", "bend."], usage={"prompt_tokens": 30, "completion_tokens": 2})

    with (
        fake_ollama([FakeModel("glm-4.7-flash")]) as (host, _backend),
        scripted_openai(["smol", "qwen-14b"], reply) as server,
    ):
        at = launch_page(host.url, monkeypatch)
        at.text_input(key="openai-url").set_value(server.base_url + "/").run()
        assert not at.exception, at.exception
        b_model = at.selectbox(key="Built-in:duet:b:model")
        assert b_model.options == [
            "glm-4.7-flash",
            f"smol · OpenAI-compatible ({server.base_url})",
            f"qwen-14b · OpenAI-compatible ({server.base_url})",
            "smollm2:135m · embedded (CPU, this machine)",
            "smollm2:135m-warm · embedded (CPU, this machine)",
        ]
        b_model.set_value(f"smol · OpenAI-compatible ({server.base_url})").run()

        # Only what such a server is sent: num_predict (as max_tokens) and temperature.
        prefix = f"Built-in:duet:b:openai:{server.base_url}"
        assert keys(at, "Built-in:duet:b") == [f"{prefix}:num_predict", f"{prefix}:temperature"]
        assert keys(at, "Built-in:duet:a") == [
            f"Built-in:duet:a:{option}"
            for option in sorted(["num_ctx", "num_gpu", "num_predict", "temperature"])
        ]
        captions = [visible(c.value) for c in at.caption]
        assert (
            "On an OpenAI-compatible server: whether it runs on the GPU is the server's own setting, "
            "which its API does not tell (residency unknown)."
        ) in captions

        at.button(key="check").click().run()
        [report] = [c.value for c in at.code]
        assert f"{server.base_url}: OpenAI-compatible server (residency unknown" in report
        assert [visible(s.value) for s in at.success] == ["Every model is there and runs as required."]

        at.number_input(key=f"{prefix}:num_predict").set_value(40)
        at.button(key="launch").click().run()
        assert not at.exception, at.exception
        run_id = at.query_params["run"]
        run_id = run_id[0] if isinstance(run_id, list) else run_id
        run_json = page_env / run_id / "run.json"
        wait_until(
            lambda: run_json.exists() and json.loads(run_json.read_text())["status"] != "running",
            what="the run to end",
        )
    run = RunStore(page_env).load(run_id)
    assert run.meta.status == "completed"
    b = run.meta.participants[1]
    assert (b.model, b.host, b.options) == (
        "smol",
        server.base_url,
        {"temperature": 0.7, "seed": -1, "num_predict": 40},
    )
    assert [body["max_tokens"] for body in server.requests] == [40, 40]
    b_rows = [row for row in run.turn_records if row.speaker == "b"]
    assert [(r.residency, r.completion_tokens, r.prompt_tokens) for r in b_rows] == [("unknown", 2, 30)] * 2


def test_a_server_the_page_cannot_reach_says_so_in_one_line(page_env: Path, monkeypatch):
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    with fake_ollama([FakeModel("glm-4.7-flash")]) as (host, _backend):
        at = launch_page(host.url, monkeypatch)
        at.text_input(key="openai-url").set_value(nowhere).run()
    assert not at.exception, at.exception
    assert [visible(e.value) for e in at.error] == [
        f"cannot reach an OpenAI-compatible server at {nowhere}; is it running, and is that its address?"
    ]
    # Nothing of it is offered; the Ollama host's models and the embedded ones still are.
    assert at.selectbox(key="Built-in:duet:b:model").options == [
        "glm-4.7-flash",
        "smollm2:135m · embedded (CPU, this machine)",
        "smollm2:135m-warm · embedded (CPU, this machine)",
    ]
