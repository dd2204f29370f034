"""A person's turn through LangGraph Server (`langgraph dev`), as a Studio user holds one: the
run pauses on the person's interrupt (whose turn, its number and kind), and Studio's resume, the
SDK's Command(resume=TEXT), gives their words; the run is recorded as `duologue run` records it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from langgraph_sdk import get_sync_client
from support.fakeollama import FakeModel, fake_ollama

from graphs.records.store import RunStore
from integration.test_langgraph_server import start_server, stop_server

REPLIES = ["Memory is inheritance, not storage.", "We agree on inheritance and part on storage."]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, Path, object]]:
    folder = tmp_path_factory.mktemp("langgraph-dev-person")
    runs_dir = folder / "runs"
    with fake_ollama([FakeModel("served-guest", replies=REPLIES)]) as (ollama, backend):
        unset = ("LANGSMITH", "LANGCHAIN", "OTEL_")
        env = {key: value for key, value in os.environ.items() if not key.startswith(unset)}
        env |= {
            "OLLAMA_HOST": ollama.url,
            "DUOLOGUE_RUNS_DIR": str(runs_dir),
            "LANGSMITH_TRACING": "false",
            "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        }
        process, url, _log = start_server(folder, env)
        try:
            yield get_sync_client(url=url), runs_dir, backend
        finally:
            stop_server(process)


def test_a_persons_turn_is_an_interrupt_the_server_resumes_with_their_words(server):
    client, runs_dir, backend = server
    assistant = client.assistants.create("dialogue", config={"configurable": {"shape": "interview"}})
    thread = client.threads.create()["thread_id"]
    context = {"participants": {"guest": {"model": "served-guest"}}}
    client.runs.wait(
        thread, assistant["assistant_id"], input={"topic": "Memory.", "max_turns": 4}, context=context
    )
    state = client.threads.get_state(thread)
    assert [i["value"] for i in state["interrupts"]] == [
        {"person": "you", "label": "Interviewer", "turn": 1, "kind": "opening"}
    ]
    run = RunStore(runs_dir).load(thread)
    assert run.meta.status == "interrupted"
    assert run.meta.error == "waiting for Interviewer to write turn 1; resume the thread with their words"

    client.runs.wait(
        thread, assistant["assistant_id"], command={"resume": " Has it memory? "}, context=context
    )
    state = client.threads.get_state(thread)
    assert [i["value"]["turn"] for i in state["interrupts"]] == [3]
    done = client.runs.wait(
        thread, assistant["assistant_id"], command={"resume": "Then what?"}, context=context
    )
    assert [(t["speaker"], t["text"]) for t in done["turns"]] == [
        ("you", "Has it memory?"),
        ("guest", REPLIES[0]),
        ("you", "Then what?"),
        ("guest", REPLIES[1]),
    ]
    assert [m["content"] for m in backend.chat_requests[-1].messages if m["role"] == "user"][::2] == [
        "Has it memory?",
        "Then what?",
    ]
    run = RunStore(runs_dir).load(thread)
    assert run.meta.status == "completed"
    assert [(r.turn, r.speaker_kind, r.words) for r in run.turn_records if r.speaker == "you"] == [
        (1, "person", 3),
        (3, "person", 2),
    ]
    assert "*(person, 3 words, 0s)*" in run.transcript()
