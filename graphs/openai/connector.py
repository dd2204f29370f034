"""The chat connector for a participant on an OpenAI-compatible server: langchain-openai's
ChatOpenAI, sent the participant's sampling options, reporting each turn's numbers where
Ollama's connector reports them (NUMBERS_KEY, and the trace's facts under FINDINGS_KEY).

Nothing here knows where the model sits on such a server, so a turn's residency is
`unknown`, with no gpu_fraction and no residency guard.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.runnables import Runnable
from langchain_openai import ChatOpenAI
from pydantic import Field, SecretStr

from graphs.engine.spec import NUM_PREDICT, Participant
from graphs.engine.state import NUMBERS_KEY
from graphs.ollama.api import TIMEOUT_S, client_timeout, tls_context
from graphs.ollama.connector import FINDINGS_KEY, numbers_of, until_stopped
from graphs.openai.api import api_key
from graphs.openai.timings import StreamClock, openai_turn_numbers

TIMINGS = "duologue_timings"
"""Where a chunk's llama.cpp `timings` wait, in its response_metadata, for the turn's numbers."""
RESIDENCY_UNKNOWN = "unknown"
"""A turn's residency on a server that does not say where its model sits."""


class PinnedChatOpenAI(ChatOpenAI):
    """ChatOpenAI that streams every request, keeps reasoning_content apart, and reports the
    turn's numbers on a last, empty chunk."""

    stop_event: Any = Field(default=None, exclude=True)
    """A threading.Event, or None: once set, the request in progress ends (see until_stopped)."""
    min_tok_s: float | None = None
    """The participant's min_tok_s: a turn decoded below it is flagged slow, as on Ollama."""

    def _get_request_payload(
        self, input_: LanguageModelInput, *, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        if "max_completion_tokens" in payload:  # OpenAI's newer name; llama-cpp-python knows only this one
            payload["max_tokens"] = payload.pop("max_completion_tokens")
        return payload

    def _convert_chunk_to_generation_chunk(
        self, chunk: dict[str, Any], default_chunk_class: type, base_generation_info: dict[str, Any] | None
    ) -> ChatGenerationChunk | None:
        generation = super()._convert_chunk_to_generation_chunk(
            chunk, default_chunk_class, base_generation_info
        )
        if generation is None:
            return None
        message = generation.message
        choices = chunk.get("choices") or []
        delta = (choices[0].get("delta") or {}) if choices else {}
        reasoning = delta.get("reasoning_content") if isinstance(delta, dict) else None
        if reasoning:
            message.additional_kwargs["reasoning_content"] = str(reasoning)
        if isinstance(chunk.get("timings"), dict):
            message.response_metadata[TIMINGS] = chunk["timings"]
        return generation

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        started = time.perf_counter()
        parts = super()._stream(messages, stop, run_manager, **kwargs)
        if self.stop_event is not None:
            parts = until_stopped(parts, self.stop_event)  # type: ignore[arg-type]
        clock = StreamClock()
        usage: dict[str, Any] | None = None
        timings: dict[str, Any] | None = None
        finish: str | None = None
        thought = False
        for part in parts:
            message = part.message
            timings = message.response_metadata.pop(TIMINGS, None) or timings
            counted = getattr(message, "usage_metadata", None)
            if counted:
                usage = {
                    "prompt_tokens": counted.get("input_tokens"),
                    "completion_tokens": counted.get("output_tokens"),
                }
            finish = (part.generation_info or {}).get("finish_reason") or finish
            thought = thought or bool(message.additional_kwargs.get("reasoning_content"))
            if message.content or message.additional_kwargs.get("reasoning_content"):
                clock.piece(time.perf_counter())
            yield part
        facts = turn_facts(usage, timings, clock, finish, started)
        if thought:  # the usage, like Ollama's eval_count, counts the reasoning tokens too
            facts["eval_includes_thinking"] = True
        rate = facts["tokens_per_s"]
        if self.min_tok_s is not None and rate is not None and rate < self.min_tok_s:
            facts["slow"] = True
        final = {FINDINGS_KEY: facts}
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                response_metadata={FINDINGS_KEY: facts, NUMBERS_KEY: numbers_of(final, facts["ttft_s"])},
            )
        )


def turn_facts(
    usage: dict[str, Any] | None,
    timings: dict[str, Any] | None,
    clock: StreamClock,
    finish: str | None,
    started: float,
) -> dict[str, Any]:
    """The TraceRecord fields a turn on such a server fills: its numbers, why it ended, and
    that where its model sits is unknown."""
    facts = openai_turn_numbers(usage, timings, clock) | {
        "done_reason": finish,
        "residency": RESIDENCY_UNKNOWN,
        "ttft_s": round(clock.first - started, 6) if clock.first is not None else None,
    }
    if timings:
        facts["server_timings"] = {k: v for k, v in timings.items() if isinstance(v, int | float)}
    return facts


def chat_model(
    participant: Participant, timeout: float = TIMEOUT_S, stop: threading.Event | None = None
) -> Runnable:
    """A ChatOpenAI for one participant on its base_url, with its key read from the environment
    now; a request gives up once the server has sent nothing for `timeout` seconds."""
    options = participant.options
    limit = NUM_PREDICT if options.num_predict is None else options.num_predict
    http = httpx.Client(timeout=client_timeout(timeout), verify=tls_context())
    return PinnedChatOpenAI(
        model=participant.model,
        base_url=participant.base_url,
        api_key=SecretStr(api_key(participant)),
        organization=None,
        temperature=options.temperature,
        top_p=options.top_p,
        seed=options.seed if options.seed is not None and options.seed >= 0 else None,
        max_completion_tokens=limit if limit > 0 else None,
        stop_sequences=options.stop,
        streaming=True,
        stream_usage=True,
        max_retries=0,
        timeout=client_timeout(timeout),
        http_client=http,
        stop_event=stop,
        min_tok_s=participant.min_tok_s,
    )


def close_chat_model(model: Runnable) -> None:
    """Close the HTTP client the connector opened."""
    bound = getattr(model, "bound", model)
    client = getattr(bound, "http_client", None)
    if isinstance(client, httpx.Client):
        client.close()
