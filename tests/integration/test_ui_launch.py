"""The Launch page launches from what the host has: its models by default, their sizes and GPU fit,
a Check that runs doctor before a run, num_predict and the timeout on the form, the page's words.

Driven through AppTest against the Ollama-protocol test server, as tests/integration/test_ui.py.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest
from support import ROOT
from support.fakeollama import FakeModel, fake_ollama
from support.markup import visible
from support.net import free_port

from graphs import MAX_TURNS, ModelOptions, RunStore
from graphs.ollama import api
from graphs.ui import common

APP = str(ROOT / "ui" / "app.py")
GB = 2**30
OLDER, NEWER = "2026-03-01T10:00:00Z", "2026-04-01T10:00:00Z"
FLAG = re.compile(r"--[a-z]")


@pytest.fixture
def page_env(runs_dir: Path, monkeypatch) -> Path:
    monkeypatch.setenv("DUOLOGUE_RUNS_DIR", str(runs_dir))
    return runs_dir


def launch_page(url: str, monkeypatch) -> AppTest:
    monkeypatch.setenv("OLLAMA_HOST", url)
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def chosen(at: AppTest) -> dict[str, str]:
    return {name: at.selectbox(key=f"Built-in:duet:{name}:model").value for name in ("a", "b")}


def fit_notes(at: AppTest) -> dict[str, str]:
    """Each participant's size-and-fit line, by the model it is about."""
    notes = [visible(c.value) for c in at.caption if "GPU" in visible(c.value)]
    return dict(zip(chosen(at).values(), notes, strict=True))


def findings(at: AppTest) -> tuple[str, str, str]:
    """What Check showed: its kind (success, warning, error), its line, and the doctor's report."""
    [(kind, line)] = [
        (kind, visible(e.value))
        for kind in ("success", "warning", "error")
        for e in getattr(at, kind)
        if not visible(e.value).startswith(("cannot reach", "A host answered"))
    ]
    [report] = [c.value for c in at.code]
    return kind, line, report


def wait_until(predicate: Callable[[], object], timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def duet_host(**kwargs):
    """glm-4.7-flash (5 GB, pulled earlier) and qwen3:32b (20 GB, pulled later)."""
    models = [
        FakeModel("glm-4.7-flash", weights_bytes=5 * GB, modified_at=OLDER),
        FakeModel("qwen3:32b", weights_bytes=20 * GB, modified_at=NEWER),
    ]
    return fake_ollama(models, **kwargs)


# ---- the defaults -----------------------------------------------------------------------------


def test_the_hosts_models_are_the_defaults_the_most_recently_pulled_first(page_env: Path, monkeypatch):
    with duet_host() as (server, _backend):
        at = launch_page(server.url, monkeypatch)
        # The duet's own models (the embedded smollm2s) are not on the host: its models, newest first.
        assert chosen(at) == {"a": "qwen3:32b", "b": "glm-4.7-flash"}
        assert at.selectbox(key="Built-in:duet:a:model").options == [
            "qwen3:32b",
            "glm-4.7-flash",
            "smollm2:135m · embedded (CPU, this machine)",
            "smollm2:135m-warm · embedded (CPU, this machine)",
        ]
        assert at.number_input(key="Built-in:duet:turns").max == MAX_TURNS


def test_a_shapes_own_model_on_the_host_is_its_default(page_env: Path, monkeypatch):
    models = [
        FakeModel("smollm2:135m", modified_at=OLDER),  # the duet's a, served by Ollama here
        FakeModel("qwen3:32b", modified_at=NEWER),
        FakeModel("glm-4.7-flash", modified_at=OLDER),
    ]
    with fake_ollama(models) as (server, _backend):
        at = launch_page(server.url, monkeypatch)
        # b's smollm2:135m-warm is not there: the host's newest model a does not have.
        assert chosen(at) == {"a": "smollm2:135m", "b": "qwen3:32b"}


def test_a_model_whose_pull_time_is_unreadable_is_offered_last(page_env: Path, monkeypatch):
    models = [
        FakeModel("odd:1b", modified_at="the day before yesterday"),
        FakeModel("new:1b", modified_at=NEWER),
        FakeModel("old:1b", modified_at=OLDER),
    ]
    with fake_ollama(models) as (server, _backend):
        at = launch_page(server.url, monkeypatch)
        assert at.selectbox(key="Built-in:duet:a:model").options[:3] == ["new:1b", "old:1b", "odd:1b"]
        assert chosen(at) == {"a": "new:1b", "b": "old:1b"}


def test_the_embedded_model_is_the_default_only_when_the_host_has_none(page_env: Path, monkeypatch):
    with fake_ollama([]) as (server, _backend):
        at = launch_page(server.url, monkeypatch)
        assert chosen(at) == {
            "a": "smollm2:135m · embedded (CPU, this machine)",
            "b": "smollm2:135m-warm · embedded (CPU, this machine)",
        }
        assert any("has no models" in visible(w.value) for w in at.warning)
    at = launch_page(f"http://127.0.0.1:{free_port()}", monkeypatch)  # nothing listens there
    assert chosen(at)["a"] == "smollm2:135m · embedded (CPU, this machine)"
    [error] = [visible(e.value) for e in at.error]
    assert error.startswith("cannot reach Ollama at ") and not FLAG.search(error), error
    assert "give a running server's address as the Ollama host, or choose an embedded model" in error
    # Pointed at a host that has models, the participants take them.
    with duet_host() as (server, _backend):
        at.text_input(key="host").set_value(server.url).run()
        assert not at.error
        assert chosen(at) == {"a": "qwen3:32b", "b": "glm-4.7-flash"}
        # A choice the user made stays as the page reruns.
        at.selectbox(key="Built-in:duet:b:model").set_value("qwen3:32b").run()
        at.run()
        assert chosen(at) == {"a": "qwen3:32b", "b": "qwen3:32b"}


# ---- sizes and GPU fit ------------------------------------------------------------------------


def test_each_model_shows_its_size_and_fit_unknown_until_the_host_shows_a_gpu(page_env: Path, monkeypatch):
    with duet_host() as (server, _backend):
        at = launch_page(server.url, monkeypatch)
        assert fit_notes(at) == {
            "qwen3:32b": "20.0 GB on disk (its context adds to that once loaded). Fits the GPU alone or "
            "together with glm-4.7-flash: unknown, the host has shown no GPU (no model sits in its VRAM now).",
            "glm-4.7-flash": "5.0 GB on disk (its context adds to that once loaded). Fits the GPU alone or "
            "together with qwen3:32b: unknown, the host has shown no GPU (no model sits in its VRAM now).",
        }


def test_a_model_that_spilled_shows_what_fits_the_card(page_env: Path, monkeypatch):
    with duet_host(vram_bytes=8 * GB) as (server, _backend):
        api.load_model(server.url, "qwen3:32b", ModelOptions(num_ctx=4096))  # 20 GB on an 8 GB card
        at = launch_page(server.url, monkeypatch)
        assert fit_notes(at) == {
            "qwen3:32b": "20.0 GB loaded now, with its context (60%/40% CPU/GPU). Does not fit the GPU "
            "alone: 20.0 GB, the GPU holds about 8.0 GB; part would run on the CPU. Does not fit the GPU "
            "together with glm-4.7-flash: 25.0 GB, the GPU holds about 8.0 GB; part would run on the CPU.",
            "glm-4.7-flash": "5.0 GB on disk (its context adds to that once loaded). Fits the GPU alone "
            "(5.0 GB; the GPU holds about 8.0 GB). Does not fit the GPU together with qwen3:32b: 25.0 GB, "
            "the GPU holds about 8.0 GB; part would run on the CPU.",
        }
        # Both on the small model: it is loaded once, so there is nothing to fit it together with.
        at.selectbox(key="Built-in:duet:a:model").set_value("glm-4.7-flash").run()
        assert fit_notes(at)["glm-4.7-flash"] == (
            "5.0 GB on disk (its context adds to that once loaded). Fits the GPU alone (5.0 GB; the GPU "
            "holds about 8.0 GB)."
        )


# ---- Check --------------------------------------------------------------------------------------


def test_check_runs_doctor_with_the_forms_options_and_starts_no_run(page_env: Path, monkeypatch):
    with duet_host() as (server, backend):
        at = launch_page(server.url, monkeypatch)
        at.number_input(key="Built-in:duet:b:num_ctx").set_value(8192)
        at.button(key="check").click().run()
        assert not at.exception, at.exception
        kind, line, report = findings(at)
        assert (kind, line) == (
            "warning",
            f"A run would go, but: {server.url}: the models do not all fit in VRAM at once; residency auto "
            "swaps them, one at a time",
        )
        assert f"{server.url}: Ollama 0.15.6" in report
        assert re.search(r"a +qwen3:32b +present; loaded alone: 100% GPU, 20\.0 GB, context \d+", report)
        assert re.search(r"b +glm-4.7-flash +present; loaded alone: 100% GPU, 5\.0 GB, context 8192", report)
        assert "together: no" in report
        # The doctor loaded each model with the participant's options; no run was started.
        assert ("glm-4.7-flash", 8192) in {(m, o.get("num_ctx")) for m, o, _ in backend.load_requests}
        assert RunStore(page_env).list() == [] and common.registry().active() == []
        # What the check loaded now shows in the fit notes, and its findings stay until the form changes.
        assert fit_notes(at)["glm-4.7-flash"].startswith("5.0 GB loaded now, with its context (100% GPU).")
        at.run()
        assert findings(at)[0] == "warning"
        at.number_input(key="Built-in:duet:a:temperature").set_value(0.2).run()
        assert not at.code and not at.warning


def test_check_on_a_card_too_small_says_what_to_try_in_the_pages_words(page_env: Path, monkeypatch):
    with duet_host(vram_bytes=8 * GB) as (server, _backend):
        at = launch_page(server.url, monkeypatch)
        at.selectbox(key="require-gpu").set_value("yes")
        at.button(key="check").click().run()
        kind, line, report = findings(at)
        assert kind == "error"
        assert line.startswith(
            "A run would fail or stop: a (qwen3:32b) would run 60% on the CPU (60%/40% CPU/GPU) even "
            "loaded alone; try a smaller context (num_ctx "
        ), line
        assert not FLAG.search(line) and not FLAG.search(report), (line, report)
        assert re.search(r"b +glm-4.7-flash +present; loaded alone: 100% GPU", report)


def test_check_names_the_pages_fields_when_an_option_does_not_suit_the_model(page_env: Path, monkeypatch):
    with duet_host() as (server, _backend):
        at = launch_page(server.url, monkeypatch)
        at.selectbox(key="Built-in:duet:b:think").set_value("on")  # glm-4.7-flash does not think here
        at.button(key="check").click().run()
        kind, line, _report = findings(at)
        assert kind == "error"
        assert line.endswith(
            f"b (glm-4.7-flash): b: model 'glm-4.7-flash' at {server.url} does not think (its capabilities: "
            "completion); drop think from its options (think set to model's default for b)"
        ), line


def test_check_leaves_a_host_alone_while_a_run_is_going_there(page_env: Path, monkeypatch):
    gate = threading.Event()  # the run's first turn sends nothing until the test is done
    with duet_host(hold_first_token=(1, gate)) as (server, backend):
        try:
            at = launch_page(server.url, monkeypatch)
            at.button(key="launch").click().run()
            wait_until(lambda: backend.chat_requests, what="the run's first turn")
            loads = len(backend.load_requests)
            at = launch_page(server.url, monkeypatch)
            at.button(key="check").click().run()
            assert [visible(w.value) for w in at.warning] == [
                f"A run is going on {server.url}: Check loads and unloads models there, which would disturb "
                "it. Check again once it has ended, or stop it."
            ]
            assert len(backend.load_requests) == loads and not at.code
        finally:
            gate.set()
            for run in common.registry().active():
                run.request.stop.set()
            wait_until(lambda: not common.registry().active(), what="the run to stop")


# ---- the form reaches the run ---------------------------------------------------------------------


def test_num_predict_and_the_timeout_reach_the_run(page_env: Path, monkeypatch):
    with duet_host() as (server, backend):
        at = launch_page(server.url, monkeypatch)
        at.number_input(key="Built-in:duet:a:num_predict").set_value(77)
        at.number_input(key="timeout").set_value(123.0)
        at.button(key="launch").click().run()
        assert not at.exception, at.exception
        run_id = at.query_params["run"]
        run_id = run_id[0] if isinstance(run_id, list) else run_id
        run_json = page_env / run_id / "run.json"
        wait_until(
            lambda: run_json.exists() and json.loads(run_json.read_text())["status"] != "running",
            what="the run to end",
        )
    meta = RunStore(page_env).load(run_id).meta
    assert meta.status == "completed"
    options = {p.name: p.options for p in meta.participants}
    assert options["a"]["num_predict"] == 77 and options["b"]["num_predict"] == 1024  # b's left to the run
    assert meta.settings["timeout_s"] == 123.0
    sent = {(r.model, r.options.get("num_predict")) for r in backend.chat_requests if r.messages}
    assert sent == {("qwen3:32b", 77), ("glm-4.7-flash", 1024)}


def test_a_run_on_the_embedded_model_gets_its_defaults(page_env: Path, monkeypatch):
    stand_in = [FakeModel("smollm2:135m"), FakeModel("smollm2:135m-warm")]
    with (
        fake_ollama([]) as (host, _),
        fake_ollama(stand_in) as (embedded, backend),
    ):
        # The embedded server, played by the test server: the page starts no llama.cpp here.
        monkeypatch.setattr(common, "embedded_server", lambda: SimpleNamespace(url=embedded.url))
        at = launch_page(host.url, monkeypatch)
        # The form shows what the run will use: the embedded model's short turns and sampling.
        key = "Built-in:duet:a:embedded:smollm2:135m"
        assert at.number_input(key=f"{key}:num_predict").value == 160
        assert at.number_input(key=f"{key}:temperature").value == 0.6
        at.number_input(key="Built-in:duet:b:embedded:smollm2:135m-warm:temperature").set_value(0.3)
        at.button(key="launch").click().run()
        run_id = at.query_params["run"]
        run_id = run_id[0] if isinstance(run_id, list) else run_id
        run_json = page_env / run_id / "run.json"
        wait_until(
            lambda: run_json.exists() and json.loads(run_json.read_text())["status"] != "running",
            what="the run to end",
        )
    meta = RunStore(page_env).load(run_id).meta
    assert meta.status == "completed" and meta.embedded
    options = {p.name: p.options for p in meta.participants}
    assert {k: options["a"][k] for k in ("num_predict", "temperature", "stop")} == {
        "num_predict": 160,
        "temperature": 0.6,
        "stop": ["\n\n"],
    }
    assert (options["b"]["num_predict"], options["b"]["temperature"]) == (160, 0.3)  # the form's 0.3 kept
    assert meta.spec and meta.spec["framing"]["opening"] == "embedded_opening"
    assert {r.options.get("num_predict") for r in backend.chat_requests if r.messages} == {160}


OBSERVED_SHAPE = b"""\
name: observed
participants:
  - {name: a, model: glm-4.7-flash}
  - {name: b, model: qwen3:32b}
order: [a, b]
turns: 4
observer: {model: nox, label: Nox}
"""


def test_a_shape_with_an_observer_is_checked_and_launched_with_it(page_env: Path, monkeypatch):
    models = [FakeModel("glm-4.7-flash"), FakeModel("qwen3:32b"), FakeModel("nox:latest", replies=["Notes."])]
    with fake_ollama(models) as (server, backend):
        at = launch_page(server.url, monkeypatch)
        at.radio(key="shape-source").set_value("Shape file").run()
        at.file_uploader(key="shape-file").set_value(("observed.yaml", OBSERVED_SHAPE, "text/yaml")).run()
        assert (
            f"Observer: Nox (nox on {server.url}, as the shape names it) reads the finished dialogue and "
            "writes notes on it." in [visible(c.value) for c in at.caption]
        )
        at.button(key="check").click().run()
        assert re.search(r"observer +nox +present; loaded alone: 100% GPU", findings(at)[2])
        at.button(key="launch").click().run()
        assert not at.error, [visible(e.value) for e in at.error]
        run_id = at.query_params["run"]
        run_id = run_id[0] if isinstance(run_id, list) else run_id
        run_json = page_env / run_id / "run.json"
        wait_until(
            lambda: run_json.exists() and json.loads(run_json.read_text())["status"] != "running",
            what="the run to end",
        )
    run = RunStore(page_env).load(run_id)
    assert run.meta.status == "completed"
    assert [r.model for r in backend.chat_requests if r.messages][-1] == "nox"
    assert "## Observer's Notes (Nox)\n\nNotes." in run.transcript()
