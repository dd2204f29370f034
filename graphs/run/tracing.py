"""Trace records from LangGraph's callbacks, so no node has tracing code in it.

TraceRecorder watches every node execution and the chat-model call inside it,
timing it, catching the first token, and reading Ollama's final chunk from the
model's response metadata. The connector adds what only it knows (residency,
truncation) as custom events named in EVENT_*.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import LLMResult
from langgraph.errors import GraphInterrupt

from graphs.engine.schedule import PlannedTurn
from graphs.engine.spec import OBSERVER, PERSON
from graphs.engine.state import NUMBERS_KEY, Turn
from graphs.errors import RunInterrupted
from graphs.ollama.connector import EVENT_PLACED, EVENT_TURN_FACTS, FINDINGS_KEY
from graphs.ollama.timings import raw_fields, turn_numbers
from graphs.records.schema import InputsRecord, TraceRecord
from graphs.records.store import iso, now_iso


@dataclass
class _OpenNode:
    node: str
    started_at: str
    started: float
    planned: PlannedTurn | None
    model_run: UUID | None = None
    model: str | None = None
    first_token: float | None = None
    messages: list[BaseMessage] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    thinking_chars: int = 0
    facts: dict[str, Any] = field(default_factory=dict)


class TraceRecorder(BaseCallbackHandler):
    """Emits one TraceRecord per node execution, and the inputs of each model turn."""

    raise_error = True

    def __init__(
        self,
        run_id: str,
        on_record: Callable[[TraceRecord], None],
        on_inputs: Callable[[InputsRecord], None],
        planner: Callable[[Any], PlannedTurn | None],
        hosts: dict[str, str] | None = None,
        first_seq: int = 1,
        on_placed: Callable[[TraceRecord], None] | None = None,
    ) -> None:
        self.run_id = run_id
        self.planner = planner
        self.on_record = on_record
        self.on_inputs = on_inputs
        self.on_placed = on_placed
        """Called with a turn's record so far once its model is placed, before its request."""
        self.hosts = hosts or {}
        self._seq = first_seq
        self._open: dict[UUID, _OpenNode] = {}
        self._model_runs: dict[UUID, UUID] = {}
        self._lock = threading.Lock()

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        node = (metadata or {}).get("langgraph_node")
        if node and kwargs.get("name") == node:
            planned = self.planner(inputs) if node != "facilitator" else None
            with self._lock:
                self._open[run_id] = _OpenNode(node, now_iso(), time.perf_counter(), planned)

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        invocation_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        with self._lock:
            node = self._open.get(parent_run_id) if parent_run_id else None
            if node is None:
                return
            node.model_run = run_id
            node.messages = messages[0]
            node.model = (invocation_params or {}).get("model") or (metadata or {}).get("ls_model_name")
            self._model_runs[run_id] = parent_run_id  # type: ignore[assignment]

    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        node = self._node_of_model(run_id)
        if node is not None and node.first_token is None:
            node.first_token = time.perf_counter()

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        node = self._node_of_model(run_id)
        if node is None or not response.generations or not response.generations[0]:
            return
        generation = response.generations[0][0]
        message = getattr(generation, "message", None)
        final = dict(getattr(message, "response_metadata", None) or generation.generation_info or {})
        node.final = final
        thinking = getattr(message, "additional_kwargs", {}).get("reasoning_content") or ""
        node.thinking_chars = len(thinking)
        # What the connector's residency and context guard found (graphs/ollama/connector.py).
        with self._lock:
            node.facts.update(final.get(FINDINGS_KEY) or {})
            if thinking:
                node.facts["thinking"] = str(thinking)

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if name == EVENT_PLACED:
            self._placed(run_id, data)
        if name != EVENT_TURN_FACTS:
            return
        with self._lock:
            node = self._open.get(run_id) or self._node_of_model_locked(run_id)
            if node is not None:
                node.facts.update(data)

    def _placed(self, run_id: UUID, facts: dict[str, Any]) -> None:
        with self._lock:
            node = self._open.get(run_id) or self._node_of_model_locked(run_id)
        if self.on_placed is None or node is None or node.planned is None:
            return
        planned = node.planned
        self.on_placed(
            TraceRecord.model_validate(
                {
                    "run_id": self.run_id,
                    "seq": 0,
                    "node": node.node,
                    "turn": planned.number,
                    "kind": planned.kind,
                    "speaker": planned.speaker,
                    "model": node.model,
                    "host": self.hosts.get(planned.speaker),
                    "started_at": node.started_at,
                    "ended_at": node.started_at,
                }
                | facts
            )
        )

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._close(run_id, None, person_turn_of(outputs))

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            node = self._open.get(run_id)
        if isinstance(error, GraphInterrupt) and node is not None and node.planned is not None:
            self._open.pop(run_id, None)  # a person's turn waiting for their words: no attempt yet
            return
        self._close(run_id, error)

    def _node_of_model(self, model_run: UUID) -> _OpenNode | None:
        with self._lock:
            return self._node_of_model_locked(model_run)

    def _node_of_model_locked(self, model_run: UUID) -> _OpenNode | None:
        parent = self._model_runs.get(model_run)
        return self._open.get(parent) if parent else None

    def _close(self, run_id: UUID, error: BaseException | None, person: Turn | None = None) -> None:
        with self._lock:
            node = self._open.pop(run_id, None)
            if node is None:
                return
            if node.model_run is not None:
                self._model_runs.pop(node.model_run, None)
            seq = self._seq
            self._seq += 1
        ended = time.perf_counter()
        record = build_record(self.run_id, seq, node, ended, error)
        record.host = self.hosts.get(record.speaker or "")
        if person is not None:
            record = person_record(record, person)
        if record.is_turn and node.messages:
            self.on_inputs(
                InputsRecord.model_construct(  # of str fields only, built here: nothing to validate
                    run_id=self.run_id,
                    turn=record.turn or 0,
                    speaker=record.speaker or "",
                    model=record.model or "",
                    messages=[as_ollama_message(m) for m in node.messages],
                )
            )
        self.on_record(record)


def build_record(
    run_id: str, seq: int, node: _OpenNode, ended: float, error: BaseException | None
) -> TraceRecord:
    final, planned = node.final, node.planned
    fields: dict[str, Any] = {
        "run_id": run_id,
        "seq": seq,
        "node": node.node,
        "turn": planned.number if planned else None,
        "kind": planned.kind if planned else OBSERVER if node.node == OBSERVER else None,
        "speaker": planned.speaker if planned else OBSERVER if node.node == OBSERVER else None,
        "model": node.model or final.get("model"),
        "started_at": node.started_at,
        "ended_at": now_iso(),
        "latency_s": round(ended - node.started, 6),
        "ttft_s": first_token_s(node),
        **turn_numbers(final),
        "done_reason": final.get("done_reason"),
        "thinking_chars": node.thinking_chars,
        "error": describe_error(error),
        "stopped": isinstance(error, (RunInterrupted, KeyboardInterrupt)),
    }
    return TraceRecord.model_validate(fields | raw_fields(final) | node.facts)


def person_turn_of(outputs: Any) -> Turn | None:
    """The person's turn a node returned (graphs/engine/nodes.py person_turn), if it did."""
    turns = outputs.get("turns") if isinstance(outputs, dict) else None
    if isinstance(turns, list) and len(turns) == 1 and isinstance(turns[0], dict) and "person_s" in turns[0]:
        return cast(Turn, turns[0])
    return None


def person_record(record: TraceRecord, turn: Turn) -> TraceRecord:
    """A person's turn, recorded like any other: their words counted, and the seconds they took
    as its latency, from when they were asked; no model, so no host and no token stats."""
    seconds = turn.get("person_s", 0.0)
    asked = datetime.fromisoformat(record.ended_at.replace("Z", "+00:00")) - timedelta(seconds=seconds)
    return record.model_copy(
        update={
            "speaker_kind": PERSON,
            "model": None,
            "host": None,
            "words": len(turn["text"].split()),
            "latency_s": seconds,
            "started_at": min(iso(asked), record.started_at),
        }
    )


def first_token_s(node: _OpenNode) -> float | None:
    """The connector's own TTFT, which its turn carries in the graph's state (graphs/ollama/connector.py),
    so the row and the turn agree; else the step's, as the callbacks saw it."""
    measured = (node.final.get(NUMBERS_KEY) or {}).get("ttft_s")
    if measured is not None:
        return float(measured)
    return round(node.first_token - node.started, 6) if node.first_token else None


def describe_error(error: BaseException | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, (RunInterrupted, KeyboardInterrupt)):
        return "stopped by the user before the turn finished"
    return f"{error.__class__.__name__}: {error}"


def as_ollama_message(message: BaseMessage) -> dict[str, str]:
    role = {"human": "user", "ai": "assistant", "system": "system"}.get(message.type, message.type)
    content = message.content if isinstance(message.content, str) else message.text
    return {"role": role, "content": content}
