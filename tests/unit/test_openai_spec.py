"""A participant on an OpenAI-compatible server: what a shape and the flags may say of it, and a
turn's numbers from what such a server streams."""

from __future__ import annotations

import pytest

from graphs.engine.spec import Participant, load_shape, parse_shape, with_overrides
from graphs.errors import ShapeError
from graphs.openai.timings import StreamClock, openai_turn_numbers
from graphs.run.runner import participant_record

URL = "http://127.0.0.1:8080/v1"


def shape_text(b: str) -> str:
    return f"name: mixed\nparticipants:\n  - {{name: a, model: qwen3:8b}}\n  - {b}\norder: [a, b]\n"


def problem(b: str) -> str:
    with pytest.raises(ShapeError) as caught:
        parse_shape(shape_text(b), "mixed.yaml")
    return str(caught.value)


def test_an_openai_participant_in_a_shape():
    shape = parse_shape(
        shape_text(f"{{name: b, model: smol, provider: openai, base_url: '{URL}/', api_key_env: LLAMA_KEY}}"),
        "mixed.yaml",
    )
    b = shape.participant("b")
    assert (b.provider, b.model, b.base_url, b.api_key_env) == ("openai", "smol", URL, "LLAMA_KEY")
    assert shape.participant("a").provider == "ollama"


def test_what_a_shape_may_not_say_of_an_openai_participant():
    assert problem("{name: b, model: smol, provider: openai}") == (
        "mixed.yaml: participants.1: provider: openai needs base_url, the server's OpenAI API address "
        "(e.g. http://127.0.0.1:8080/v1)"
    )
    assert problem(
        f"{{name: b, model: smol, provider: openai, base_url: '{URL}', options: {{num_ctx: 8192}}}}"
    ) == (
        "mixed.yaml: participants.1: num_ctx is an Ollama option the OpenAI API has no field for; set its "
        f"context size (llama-server --ctx-size, vLLM --max-model-len) on the server at {URL} instead"
    )
    assert "llama-server --n-gpu-layers" in problem(
        f"{{name: b, model: smol, provider: openai, base_url: '{URL}', options: {{num_gpu: 20}}}}"
    )
    assert "keep_alive is an Ollama option" in problem(
        f"{{name: b, model: smol, provider: openai, base_url: '{URL}', options: {{keep_alive: 5m}}}}"
    )
    assert problem(
        f"{{name: b, model: smol, provider: openai, base_url: '{URL}', host: 'http://h:11434'}}"
    ) == (
        "mixed.yaml: participants.1: host is an Ollama server's address; an openai participant's is its base_url"
    )
    assert problem(f"{{name: b, model: smol, base_url: '{URL}'}}") == (
        "mixed.yaml: participants.1: base_url is for provider: openai; an Ollama participant's server is its host"
    )
    assert problem("{name: b, model: smol, provider: openai, base_url: 'ftp://x'}") == (
        "mixed.yaml: participants.1.base_url: 'ftp://x' is not a server's URL; give one like http://127.0.0.1:8080/v1"
    )
    assert "participants.1.api_key_env" in problem(
        f"{{name: b, model: smol, provider: openai, base_url: '{URL}', api_key_env: 'sk-1234 oops'}}"
    )
    assert "participants.1.provider" in problem("{name: b, model: smol, provider: vllm}")


def test_a_shape_recorded_by_a_run_loads_again():
    """run.json's spec dumps every option, Ollama's defaults included: a resume reads it back."""
    shape = parse_shape(
        shape_text(f"{{name: b, model: smol, provider: openai, base_url: '{URL}', options: {{seed: 7}}}}"),
        "mixed.yaml",
    )
    again = type(shape).model_validate(shape.model_dump(mode="json"))
    assert again == shape


def test_the_model_flag_moves_a_participant_to_an_openai_server():
    duet = load_shape("duet")
    shape = with_overrides(duet, {"b": f"openai:smol@{URL}"}, [("b", "temperature", 0)])
    b = shape.participant("b")
    assert (b.provider, b.model, b.base_url, b.host) == ("openai", "smol", URL, None)
    assert b.options.temperature == 0
    # A model id may hold an '@' of its own: the URL is what follows the last one.
    assert with_overrides(duet, {"b": f"openai:org@model@{URL}"}, []).participant("b").model == "org@model"


def test_the_ollama_options_it_had_stay_behind():
    """A fork's recorded spec pins num_ctx for Ollama: moving the participant drops it, as it
    was for the server it leaves."""
    pinned = with_overrides(load_shape("duet"), {}, [("b", "num_ctx", 8192), ("b", "top_p", 0.5)])
    moved = with_overrides(pinned, {"b": f"openai:smol@{URL}"}, []).participant("b")
    assert (moved.options.num_ctx, moved.options.top_p) == (None, 0.5)


@pytest.mark.parametrize(
    ("models", "settings", "message"),
    [
        (
            {"b": "openai:smol"},
            [],
            "--model b=openai:smol: expected b=openai:MODEL@URL, e.g. b=openai:qwen3@http://127.0.0.1:8080/v1",
        ),
        (
            {"b": f"openai:smol@{URL}"},
            [("b", "num_ctx", 4096)],
            "--set b.num_ctx: num_ctx is an Ollama option the OpenAI API has no field for; set its context "
            f"size (llama-server --ctx-size, vLLM --max-model-len) on the server at {URL} instead",
        ),
        (
            {"b": "openai:smol@localhost:8080"},
            [],
            "--model b=openai:smol@localhost:8080: the URL 'localhost:8080' is not a server's URL; "
            "give one like http://127.0.0.1:8080/v1",
        ),
    ],
)
def test_flags_refused_in_one_line(models, settings, message):
    with pytest.raises(ShapeError) as caught:
        with_overrides(load_shape("duet"), models, settings)
    assert str(caught.value) == message


def test_run_json_records_only_the_options_such_a_server_is_sent():
    b = Participant(name="b", model="smol", provider="openai", base_url=URL, api_key_env="KEY")
    record = participant_record(b, "smol", URL)
    assert record.model_dump() == {
        "name": "b",
        "label": "smol",
        "model": "smol",
        "host": URL,
        "options": {"temperature": 0.7, "seed": -1},
    }


def clock(pieces: int, first: float = 10.0, last: float = 12.0) -> StreamClock:
    return StreamClock(pieces=pieces, first=first, last=last)


def test_the_numbers_from_the_streams_usage():
    numbers = openai_turn_numbers({"prompt_tokens": 80, "completion_tokens": 41}, None, clock(40))
    # 40 tokens after the first, decoded in the 2 s between the first piece and the last
    assert numbers == {
        "prompt_tokens": 80,
        "completion_tokens": 41,
        "tokens_per_s": 20.0,
        "prompt_tokens_per_s": None,
        "load_s": None,
        "counted_by": "usage",
    }


def test_llama_cpps_own_timings_are_preferred():
    timings = {
        "cache_n": 30,
        "prompt_n": 50,
        "prompt_ms": 250.0,
        "prompt_per_second": 200.0,
        "predicted_n": 41,
        "predicted_ms": 1000.0,
        "predicted_per_second": 41.0,
    }
    numbers = openai_turn_numbers({"prompt_tokens": 80, "completion_tokens": 41}, timings, clock(40))
    assert (numbers["tokens_per_s"], numbers["prompt_tokens_per_s"]) == (41.0, 200.0)
    assert (numbers["prompt_tokens"], numbers["completion_tokens"], numbers["counted_by"]) == (
        80,
        41,
        "usage",
    )
    # Without usage, the timings count: prompt_n leaves the cached tokens out, the prompt has both.
    alone = openai_turn_numbers(None, {k: v for k, v in timings.items() if "per_second" not in k}, clock(40))
    assert alone == {
        "prompt_tokens": 80,
        "completion_tokens": 41,
        "tokens_per_s": 20.0,
        "prompt_tokens_per_s": 200.0,
        "load_s": None,
        "counted_by": "timings",
    }


def test_a_stream_with_neither_counts_its_pieces():
    """llama-cpp-python's server sends no usage in a stream, whatever include_usage says."""
    numbers = openai_turn_numbers(None, None, clock(25, 3.0, 5.0))
    assert numbers == {
        "prompt_tokens": None,
        "completion_tokens": 25,
        "tokens_per_s": 12.0,
        "prompt_tokens_per_s": None,
        "load_s": None,
        "counted_by": "stream",
    }
    assert openai_turn_numbers(None, None, StreamClock())["completion_tokens"] is None
    assert openai_turn_numbers(None, None, clock(1, 3.0, 3.0))["tokens_per_s"] is None
