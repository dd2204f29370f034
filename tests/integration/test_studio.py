"""The graphs langgraph.json exports, invoked as LangGraph Server would: no context, $OLLAMA_HOST."""

from __future__ import annotations

from support.fakeollama import FakeModel, fake_ollama


def test_the_served_duet_pins_each_participants_options_as_a_run_does(monkeypatch):
    from graphs.run import studio

    with fake_ollama([FakeModel("smollm2:135m"), FakeModel("smollm2:135m-warm")]) as (server, backend):
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        state = studio.duet.invoke({"topic": "memory and inheritance", "max_turns": 2})
    assert [(t["number"], t["speaker"], t["kind"]) for t in state["turns"]] == [
        (1, "a", "opening"),
        (2, "b", "closing"),
    ]
    options = {"num_ctx": 5120, "num_gpu": 999, "temperature": 0.7, "seed": -1, "num_predict": 1024}
    assert [(r.model, r.options) for r in backend.chat_requests] == [
        ("smollm2:135m", options),
        ("smollm2:135m-warm", options),
    ]
