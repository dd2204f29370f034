"""A turn is preloaded only when /api/ps shows its model moved since this run placed it.

The GPU-emulating Ollama serves two small models that fit on its card together (`shared`):
after the first placement, each turn makes one /api/ps reading and its chat, and the reading
is still the turn's (gpu_fraction, residency_s). A model another client reloaded with other
options, or unloaded, is preloaded again before its next turn.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.fakeollama import FakeModel, fake_ollama

from graphs.engine.schedule import PlannedTurn
from graphs.engine.spec import ModelOptions, load_shape, with_overrides
from graphs.engine.state import Turn
from graphs.ollama import api
from graphs.records.schema import TraceRecord
from graphs.run.observe import SilentObserver
from graphs.run.runner import RunRequest, run_dialogue

pytestmark = pytest.mark.usefixtures("quick_waits")

GiB = 2**30
MODELS = [FakeModel("small-a:1b", weights_bytes=2 * GiB), FakeModel("small-b:1b", weights_bytes=2 * GiB)]


class AfterTurn(SilentObserver):
    """Does `act(url)` once turn `number` has finished, as another client of the server would."""

    def __init__(self, number: int, act: object) -> None:
        self.number, self.act, self.url = number, act, ""

    def turn_started(self, planned: PlannedTurn, label: str, model: str) -> None:
        pass

    def turn_finished(self, turn: Turn, record: TraceRecord | None) -> None:
        if turn["number"] == self.number:
            self.act(self.url)  # type: ignore[operator]


def hold(url: str, runs_dir: Path, observer: SilentObserver | None = None) -> list[TraceRecord]:
    shape = with_overrides(load_shape("duet"), {"a": "small-a:1b", "b": "small-b:1b"}, [])
    request = RunRequest(shape, "What a cache owes its readers.", 6, {"a": url, "b": url}, runs_dir=runs_dir)
    outcome = run_dialogue(request, observer)
    assert outcome.status == "completed"
    return [outcome.records[n] for n in sorted(outcome.records)]


def test_after_the_first_placement_a_turn_is_one_reading_and_its_chat(runs_dir: Path):
    with fake_ollama(MODELS) as (server, backend):
        records = hold(server.url, runs_dir)
    loaded = [model for model, _options, _keep in backend.load_requests]
    # The first placement's probe of both, then each model's first turn; none after.
    assert loaded == ["small-a:1b", "small-b:1b", "small-a:1b", "small-b:1b"]
    assert [r.preload_s == 0 for r in records] == [False, False, True, True, True, True]
    assert [(r.residency, r.gpu_fraction) for r in records] == [("shared", 1.0)] * 6
    assert all(r.residency_s is not None and r.size_vram == 2 * GiB for r in records)
    assert not [event for event in backend.events if event[0] == "reload"]


def test_a_model_reloaded_by_another_client_with_other_options_is_preloaded_again(runs_dir: Path):
    def reload_with_a_smaller_context(url: str) -> None:
        api.load_model(url, "small-a:1b", ModelOptions(num_ctx=2048))

    observer = AfterTurn(3, reload_with_a_smaller_context)
    with fake_ollama(MODELS) as (server, backend):
        observer.url = server.url
        records = hold(server.url, runs_dir, observer)
    turn_options = {r.model: r.options.get("num_ctx") for r in backend.chat_requests}
    loads = [(model, options.get("num_ctx")) for model, options, _keep in backend.load_requests]
    # Turn 5 is a's next: its reading shows a's context changed, so it is loaded as it speaks.
    assert loads == [
        ("small-a:1b", turn_options["small-a:1b"]),
        ("small-b:1b", turn_options["small-b:1b"]),
        ("small-a:1b", turn_options["small-a:1b"]),
        ("small-b:1b", turn_options["small-b:1b"]),
        ("small-a:1b", 2048),  # the other client's
        ("small-a:1b", turn_options["small-a:1b"]),  # before turn 5
    ]
    assert [r.preload_s == 0 for r in records] == [False, False, True, True, False, True]
    assert records[4].context_length == turn_options["small-a:1b"]


def test_a_model_unloaded_meanwhile_is_preloaded_before_its_turn(runs_dir: Path):
    observer = AfterTurn(4, lambda url: api.unload_model(url, "small-b:1b"))
    with fake_ollama(MODELS) as (server, backend):
        observer.url = server.url
        records = hold(server.url, runs_dir, observer)
    loaded = [model for model, _options, _keep in backend.load_requests]
    assert loaded == ["small-a:1b", "small-b:1b", "small-a:1b", "small-b:1b", "small-b:1b"]
    assert [r.preload_s == 0 for r in records] == [False, False, True, True, True, False]
    assert records[5].gpu_fraction == 1.0
