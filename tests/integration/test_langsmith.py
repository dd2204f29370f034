"""LangSmith export (graphs/run/langsmith.py) against a LangSmith-compatible endpoint on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langsmith import run_trees as rt
from langsmith import utils as ls_utils
from support.duet import duet_models
from support.fakeollama import fake_ollama
from support.fakesmith import FakeLangSmith, fake_langsmith
from support.net import free_port

from graphs.commands.cli import main
from graphs.engine.spec import load_shape, with_overrides
from graphs.errors import RunInterrupted
from graphs.records.store import RunStore
from graphs.run import langsmith as smith
from graphs.run.observe import SilentObserver
from graphs.run.runner import RunRequest, run_dialogue

KEY = "secret-key-value"
TOPIC = "What does a successor owe to its predecessor?"
TURN_NAMES = [
    "turn 1 · glm-4.7-flash · opening",
    "turn 2 · qwen3:32b · response",
    "turn 3 · glm-4.7-flash · reply",
    "turn 4 · qwen3:32b · closing",
]


def run_duet(url: str, runs_dir: Path, *extra: str) -> int:
    return main(
        [
            "run", "duet", "--model", "a=glm-4.7-flash", "--model", "b=qwen3:32b", "--topic", TOPIC,
            "--turns", "4", "--host", url, "--runs-dir", str(runs_dir), *extra,
        ]
    )  # fmt: skip


@pytest.fixture
def langsmith_env(monkeypatch) -> Iterator[pytest.MonkeyPatch]:
    """LangSmith configured in the environment, for LangChain's own tracer too.

    langsmith caches its environment lookups and its client; both are reset so that its
    environment-driven tracer really is on here, and the cache again before the variables go back.
    """
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.setenv("LANGSMITH_API_KEY", KEY)
    monkeypatch.setenv("LANGSMITH_PROJECT", "duologue-tests")
    ls_utils.get_env_var.cache_clear()
    monkeypatch.setattr(rt, "_CLIENT", None)  # LangChain's tracer would make its client from this env
    yield monkeypatch
    ls_utils.get_env_var.cache_clear()


def assert_no_key(runs_dir: Path, capsys, caplog) -> None:
    """Neither the key nor langsmith's masked form of it ('secre*******ue') anywhere."""
    captured = capsys.readouterr()
    for text in (captured.out, captured.err, caplog.text):
        assert KEY not in text and smith.masked(KEY) not in text and KEY[:5] not in text
    for record in caplog.records:
        assert KEY[:5] not in record.getMessage()
    for path in runs_dir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def flush_langchain_tracer() -> None:
    """Send what LangChain's own (environment-driven) tracer may have queued."""
    if rt._CLIENT is not None:
        rt._CLIENT.flush(timeout=5)


def runs_by_name(endpoint: FakeLangSmith) -> dict[str, dict[str, Any]]:
    return {run["name"]: run for run in endpoint.runs.values()}


def test_run_is_one_trace_with_a_child_run_per_turn(langsmith_env, runs_dir: Path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="langsmith")
    with fake_langsmith() as endpoint, fake_ollama(duet_models()) as (server, _):
        langsmith_env.setenv("LANGSMITH_ENDPOINT", endpoint.url)
        assert run_duet(server.url, runs_dir) == 0
        runs = endpoint.runs
        requests = list(endpoint.requests)
    [run] = RunStore(runs_dir).list()
    run_id = run.meta.run_id

    # The multipart endpoint got it, with the key in its header (and only there).
    assert ("POST", "/runs/multipart") in [(method, path) for method, path, _ in requests]
    assert {headers.get("x-api-key") for _, path, headers in requests if path.startswith("/runs")} == {KEY}

    # One trace: a root run named after the run, everything else beneath it.
    [root] = [r for r in runs.values() if r.get("parent_run_id") is None]
    assert root["name"] == f"duologue duet {run_id}"
    assert {r["trace_id"] for r in runs.values()} == {root["id"]}
    assert root["session_name"] == "duologue-tests"
    assert root["end_time"] and not root.get("error")
    metadata = root["extra"]["metadata"]
    assert (metadata["run_id"], metadata["shape"], metadata["thread_id"]) == (run_id, "duet", run_id)
    assert {"duologue", "shape:duet"} <= set(root["tags"])

    # Each turn is a child run of the root with a readable name, its labels and its stats.
    turns = [
        r for r in runs.values() if r.get("parent_run_id") == root["id"] and r["name"].startswith("turn ")
    ]
    assert sorted(r["name"] for r in turns) == TURN_NAMES
    records = {r.turn: r for r in run.turn_records}
    options = {p.name: p.options for p in run.meta.participants}
    by_name = runs_by_name(endpoint)
    for number, name in enumerate(TURN_NAMES, start=1):
        turn = by_name[name]
        meta = turn["extra"]["metadata"]
        speaker = "a" if number % 2 else "b"
        assert {k: meta[k] for k in ("run_id", "shape", "turn", "speaker", "model", "host")} == {
            "run_id": run_id,
            "shape": "duet",
            "turn": number,
            "speaker": speaker,
            "model": records[number].model,
            "host": server.url,
        }
        assert meta["options"] == options[speaker]
        assert meta["kind"] == name.rsplit(" · ", 1)[1]
        assert {"turn", f"speaker:{speaker}", f"model:{records[number].model}"} <= set(turn["tags"])
        assert meta["prompt_tokens"] == records[number].prompt_tokens
        assert meta["completion_tokens"] == records[number].completion_tokens
        assert meta["tokens_per_s"] == records[number].tokens_per_s
        assert turn["outputs"]["turns"][0]["number"] == number

        # Its chat model run carries the same labels and the token usage.
        [llm] = [r for r in runs.values() if r.get("parent_run_id") == turn["id"]]
        assert llm["run_type"] == "llm"
        assert llm["extra"]["metadata"]["turn"] == number
        assert llm["extra"]["metadata"]["usage_metadata"] == {
            "input_tokens": records[number].prompt_tokens,
            "output_tokens": records[number].completion_tokens,
            "total_tokens": records[number].prompt_tokens + records[number].completion_tokens,
        }

    # The facilitator's steps are there too, under their own name; nothing else is.
    assert {r["name"] for r in runs.values()} - set(TURN_NAMES) == {
        "PinnedChatOllama",
        "facilitator",
        root["name"],
    }
    assert_no_key(runs_dir, capsys, caplog)


def test_a_failed_run_is_traced_with_its_error(langsmith_env, runs_dir: Path, capsys):
    with fake_langsmith() as endpoint, fake_ollama(duet_models(), fail_on_call=3) as (server, _):
        langsmith_env.setenv("LANGSMITH_ENDPOINT", endpoint.url)
        assert run_duet(server.url, runs_dir) == 1
        by_name = runs_by_name(endpoint)
    [run] = RunStore(runs_dir).list()
    root = by_name[f"duologue duet {run.meta.run_id}"]
    assert root["error"] and root["end_time"]
    failed = by_name["turn 3 · glm-4.7-flash · reply"]
    assert failed["error"] and failed["extra"]["metadata"]["turn"] == 3
    assert not by_name["turn 2 · qwen3:32b · response"].get("error")
    assert "turn 4 · qwen3:32b · closing" not in by_name
    assert capsys.readouterr().err.startswith("duologue: run failed: turn 3 (glm-4.7-flash) failed")


def test_an_interrupted_run_is_traced_to_where_it_stopped(langsmith_env, runs_dir: Path):
    with fake_langsmith() as endpoint, fake_ollama(duet_models()) as (server, _):
        langsmith_env.setenv("LANGSMITH_ENDPOINT", endpoint.url)
        shape = with_overrides(load_shape("duet"), {"a": "glm-4.7-flash", "b": "qwen3:32b"}, [])
        request = RunRequest(
            shape=shape, topic=TOPIC, turns=4, hosts={"a": server.url, "b": server.url}, runs_dir=runs_dir
        )

        class StopAfterTurnOne(SilentObserver):
            def turn_finished(self, turn: Any, record: Any) -> None:
                request.stop.set()

        with pytest.raises(RunInterrupted):
            run_dialogue(request, StopAfterTurnOne())
        by_name = runs_by_name(endpoint)  # flushed before run_dialogue returned
    [run] = RunStore(runs_dir).list()
    assert run.meta.status == "interrupted"
    root = by_name[f"duologue duet {run.meta.run_id}"]
    assert root["end_time"]
    assert by_name["turn 1 · glm-4.7-flash · opening"]["end_time"]
    assert not any(name.startswith("turn 3") for name in by_name)


def timed(action: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def test_unreachable_endpoint_costs_seconds_at_most_and_never_shows_the_key(
    langsmith_env, runs_dir: Path, capsys, caplog
):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="langsmith")
    langsmith_env.setenv("LANGSMITH_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens
    with fake_ollama(duet_models()) as (server, _):
        untraced, plain_s = timed(lambda: run_duet(server.url, runs_dir, "--no-trace"))
        traced, traced_s = timed(lambda: run_duet(server.url, runs_dir))
    assert untraced == traced == 0
    assert traced_s - plain_s < 5.0, (plain_s, traced_s)
    assert all(r.meta.status == "completed" for r in RunStore(runs_dir).list())
    # langsmith did fail, and logged about it (redacted); the run says so in one line.
    assert "API Key: [redacted]" in caplog.text  # langsmith's message that shows part of the key
    [summary] = [r.getMessage() for r in caplog.records if r.name == "graphs.run.langsmith"]
    assert "did not fully reach http://127.0.0.1:" in summary and "(cannot connect)" in summary
    assert_no_key(runs_dir, capsys, caplog)


def test_endpoint_that_never_answers_is_given_up_on(langsmith_env, runs_dir: Path, capsys, caplog):
    caplog.set_level(logging.DEBUG, logger="langsmith")
    with socket.socket() as silent, fake_ollama(duet_models()) as (server, _):
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # connections complete, but no request is ever read or answered
        langsmith_env.setenv("LANGSMITH_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        untraced, plain_s = timed(lambda: run_duet(server.url, runs_dir, "--no-trace"))
        traced, traced_s = timed(lambda: run_duet(server.url, runs_dir))
    assert untraced == traced == 0
    assert traced_s - plain_s < smith.FLUSH_TIMEOUT_S + 3.0, (plain_s, traced_s)
    assert_no_key(runs_dir, capsys, caplog)


def test_no_trace_sends_nothing(langsmith_env, runs_dir: Path):
    with fake_langsmith() as endpoint, fake_ollama(duet_models()) as (server, _):
        langsmith_env.setenv("LANGSMITH_ENDPOINT", endpoint.url)
        assert ls_utils.tracing_is_enabled()  # LangChain's own tracer would trace this run
        assert run_duet(server.url, runs_dir, "--no-trace") == 0
        flush_langchain_tracer()
        assert endpoint.requests == []


def test_tracing_without_a_key_sends_nothing_and_says_why(langsmith_env, runs_dir: Path, caplog):
    langsmith_env.delenv("LANGSMITH_API_KEY")
    with fake_langsmith() as endpoint, fake_ollama(duet_models()) as (server, _):
        langsmith_env.setenv("LANGSMITH_ENDPOINT", endpoint.url)
        assert run_duet(server.url, runs_dir) == 0
        flush_langchain_tracer()
        assert endpoint.requests == []
    assert "LANGSMITH_API_KEY is not set" in caplog.text
