"""The JSON context a LangGraph Server run brings (Studio, the SDK): read once, one line per mistake."""

from __future__ import annotations

import pytest

from graphs.engine.spec import load_shape, with_overrides
from graphs.ollama.connector import FINDINGS_KEY, numbers_of
from graphs.run.served import ContextError, ServedContext, read_context, served_hosts, served_shape


def test_no_context_is_the_shape_as_written_on_ollama_host(monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", "gpu-box:11500")
    duet = load_shape("duet")
    context = read_context(None)
    assert context == ServedContext()
    assert served_shape(duet, context) == duet
    assert served_hosts(duet, context) == {"a": "http://gpu-box:11500", "b": "http://gpu-box:11500"}


def test_models_and_options_apply_as_model_and_set_flags_do(monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")
    duet = load_shape("duet")
    context = read_context(
        {
            "participants": {
                "a": {"model": "qwen3:8b", "host": "10.0.0.2"},
                "b": {"options": {"num_ctx": 8192, "temperature": 0.2}},
            },
            "require_gpu": True,
        }
    )
    expected = with_overrides(duet, {"a": "qwen3:8b"}, [("b", "num_ctx", 8192), ("b", "temperature", 0.2)])
    assert served_shape(duet, context) == expected
    assert served_hosts(duet, context) == {"a": "http://10.0.0.2:11434", "b": "http://127.0.0.1:9"}
    assert context.require_gpu is True and context.residency_policy is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"participants": {"c": {"model": "qwen3:8b"}}},
            "the run's context: participants.c: shape 'duet' has no participant 'c'; its participants are a, b",
        ),
        (
            {"participants": {"a": {"options": {"num_ktx": 4096}}}},
            "the run's context: participants.a.options.num_ktx: unknown field",
        ),
        (
            {"participants": {"a": {"options": {"num_ctx": "big"}}}},
            "the run's context: participants.a.options.num_ctx: should be a whole number",
        ),
        (
            {"participants": {"b": {"options": {"num_ctx": 100}}}},
            "the run's context: participants.b.options.num_ctx: should be at least 256",
        ),
        (
            {"participants": {"a": {"model": ""}}},
            "the run's context: participants.a.model: String should have at least 1 character",
        ),
        (
            {"residency_policy": "greedy"},
            "the run's context: residency_policy: Input should be 'auto', 'exclusive' or 'shared'",
        ),
        ({"require_gpu": "maybe"}, "the run's context: require_gpu: should be true or false"),
        ({"modle": "qwen3:8b"}, "the run's context: modle: unknown field"),
        (["a"], "the run's context should be a JSON object, got list"),
    ],
)
def test_an_invalid_context_is_one_line_naming_the_field(raw, message):
    with pytest.raises(ContextError) as caught:
        served_shape(load_shape("duet"), read_context(raw))
    assert str(caught.value) == message
    assert isinstance(
        caught.value, ValueError
    )  # the server shows a ValueError's message, not "internal error"


def test_every_field_of_the_context_schema_is_optional():
    schema = ServedContext.model_json_schema()
    assert "required" not in schema
    assert not any("required" in definition for definition in schema["$defs"].values())
    assert set(schema["properties"]) == {
        "shape", "participants", "residency_policy", "require_gpu", "strict_context", "timeout_s",
    }  # fmt: skip


def test_a_turns_numbers_follow_the_traces_rules():
    """Rates by timings.turn_numbers, flags by TraceRecord.flags, from the final chunk and the guard."""
    final = {
        "done": True,
        "done_reason": "length",
        "prompt_eval_count": 300,
        "prompt_eval_cached_count": 100,
        "prompt_eval_duration": 500_000_000,
        "eval_count": 90,
        "eval_duration": 3_000_000_000,
        "load_duration": 1_500_000_000,
        FINDINGS_KEY: {"gpu_fraction": 0.75, "truncated": True},
    }
    assert numbers_of(final, 0.42) == {
        "prompt_tokens": 300,
        "completion_tokens": 90,
        "tokens_per_s": 30.0,
        "prompt_tokens_per_s": 400.0,
        "ttft_s": 0.42,
        "load_s": 1.5,
        "gpu_fraction": 0.75,
        "flags": ["CPU 25%", "truncated", "cut by length"],
    }
