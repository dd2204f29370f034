"""Scripted chat models for graph logic: no server, no HTTP, deterministic."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

Reply = str | Callable[[Sequence[BaseMessage]], str]


class ScriptedChatModel(BaseChatModel):
    """Answers from a queue of replies, streaming word by word like ChatOllama.

    The final chunk carries Ollama-style metrics (nanoseconds) so that traces and
    stats lines can be checked exactly: one token per word, 10 tok/s, 0.5 s load.
    `calls` keeps every message list received; `fail_on` raises on that call (1-based).
    """

    model: str = "scripted"
    replies: list[Reply] = []
    calls: list[list[BaseMessage]] = []
    fail_on: int | None = None
    thinking: str = ""

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        self.calls.append(list(messages))
        number = len(self.calls)
        if self.fail_on == number:
            raise ConnectionError(f"scripted failure on call {number}")
        reply = (
            self.replies[(number - 1) % len(self.replies)] if self.replies else f"{self.model} reply {number}"
        )
        text = reply(messages) if callable(reply) else reply
        if self.thinking:
            chunk = ChatGenerationChunk(
                message=AIMessageChunk(content="", additional_kwargs={"reasoning_content": self.thinking})
            )
            yield chunk
        words = text.split(" ")
        for index, word in enumerate(words):
            piece = word if index == 0 else f" {word}"
            if run_manager:
                run_manager.on_llm_new_token(piece)
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        prompt_tokens = sum(len(str(m.content).split()) for m in messages)
        yield ChatGenerationChunk(
            message=AIMessageChunk(content="", response_metadata=self.metrics(prompt_tokens, len(words))),
            generation_info=self.metrics(prompt_tokens, len(words)),
        )

    def metrics(self, prompt_tokens: int, eval_tokens: int) -> dict[str, Any]:
        return {
            "model": self.model,
            "done": True,
            "done_reason": "stop",
            "total_duration": 500_000_000 + eval_tokens * 100_000_000,
            "load_duration": 500_000_000,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": prompt_tokens * 1_000_000,
            "eval_count": eval_tokens,
            "eval_duration": eval_tokens * 100_000_000,
        }

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        chunks = list(self._stream(messages, stop, run_manager, **kwargs))
        merged = chunks[0]
        for chunk in chunks[1:]:
            merged += chunk
        message = merged.message
        return ChatResult(
            generations=[ChatGeneration(message=message, generation_info=merged.generation_info)]
        )


class ScriptedSource:
    """The runner's ModelSource for scripted models: the same four steps a run takes on Ollama,
    with no server. Options are pinned by the engine's own rule, for a model that reports no
    trained context and no thinking; `closed` lists the models the run released."""

    def __init__(self, models: dict[str, ScriptedChatModel]) -> None:
        self.models = models
        self.closed: list[str] = []
        self.resolved: list[str] = []

    def versions(self, shape: Any, hosts: Any) -> dict[str, str]:
        return {hosts[p.name]: "scripted" for p in shape.connected}

    def resolve(self, shape: Any, hosts: Any, topic: str, turns: int) -> Any:
        from graphs.ollama.api import ModelFacts
        from graphs.ollama.residency import resolve_shape

        def facts(host: str, model: str) -> ModelFacts:
            self.resolved.append(model)
            return ModelFacts(model, None, [])

        return resolve_shape(shape, hosts, topic, turns, facts)

    def connect(
        self, shape: Any, hosts: Any, settings: Any, stop: Any, timeout_s: float = 0.0
    ) -> Callable[[Any, str], Any]:
        return lambda participant, host: self.models[participant.name]

    def close(self, model: Any) -> None:
        self.closed.append(model.model)
