"""The graph factories langgraph.json exports, called in-process as LangGraph Server calls them
for a run (the server itself is in test_langgraph_server.py): a JSON context, $OLLAMA_HOST."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph_sdk.runtime import _ExecutionRuntime
from support.fakeollama import FakeModel, fake_ollama


def hold(factory: Any, context: dict[str, Any] | None, graph_input: dict[str, Any]) -> dict[str, Any]:
    """One run of the factory's graph, as the server holds it: the factory reads the context,
    the graph is streamed with it as a dict, then the factory's context manager closes."""
    runtime = _ExecutionRuntime(access_context="threads.create_run", user=None, store=None, context=context)
    config: Any = {"configurable": {"thread_id": "served-thread-1"}}

    async def run() -> dict[str, Any]:
        async with factory(config, runtime) as graph:
            graph = graph.copy(update={"checkpointer": InMemorySaver()})
            return await asyncio.to_thread(graph.invoke, graph_input, config, context=context)

    return asyncio.run(run())


def test_the_served_duet_pins_each_participants_options_as_a_run_does(monkeypatch, tmp_path: Path):
    from graphs.run import studio

    monkeypatch.delenv("DUOLOGUE_RUNS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with fake_ollama([FakeModel("smollm2:135m"), FakeModel("smollm2:135m-warm")]) as (server, backend):
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        state = hold(studio.duet, None, {"topic": "memory and inheritance", "max_turns": 2})
    assert [(t["number"], t["speaker"], t["kind"]) for t in state["turns"]] == [
        (1, "a", "opening"),
        (2, "b", "closing"),
    ]
    # num_ctx sized to the run's 2 turns (its input's max_turns), as `duologue run --turns 2` sizes it
    options = {"num_ctx": 3072, "num_gpu": 999, "temperature": 0.7, "seed": -1, "num_predict": 1024}
    assert [(r.model, r.options) for r in backend.chat_requests] == [
        ("smollm2:135m", options),
        ("smollm2:135m-warm", options),
    ]
    # The residency placement loaded the models (a probe of each, then the speaker's preload)
    # with the very options their turns carried, so Ollama never reloaded one for a turn.
    assert [(model, opts) for model, opts, _keep in backend.load_requests] == [
        ("smollm2:135m", options),
        ("smollm2:135m-warm", options),
    ] * 2
    assert not [event for event in backend.events if event[0] == "reload"]
    assert list(tmp_path.iterdir()) == []  # no $DUOLOGUE_RUNS_DIR: no run record anywhere
