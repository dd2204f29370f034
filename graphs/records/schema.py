"""The run record's typed rows: run.json, trace.jsonl and inputs.jsonl.

This is a public, versioned format (see README, "Run records"): add fields freely,
but bump FORMAT_VERSION when a field changes meaning or goes away.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

FORMAT_VERSION = 1

RunStatus = Literal["running", "completed", "failed", "interrupted"]


class ParticipantRecord(BaseModel):
    name: str
    label: str
    model: str
    host: str
    options: dict[str, Any]


class RunMeta(BaseModel):
    """run.json"""

    model_config = ConfigDict(extra="allow")

    format_version: int = FORMAT_VERSION
    run_id: str
    shape: str
    status: RunStatus
    participants: list[ParticipantRecord]
    topic: str
    turns: int
    started_at: str
    ended_at: str | None = None
    versions: dict[str, str] = {}
    error: str | None = None
    spec: dict[str, Any] | None = None
    """The whole shape as run (overrides applied), so the run can be resumed or forked."""
    embedded: bool = False
    settings: dict[str, Any] = {}
    """The run-level settings a resume or fork keeps: residency_policy, require_gpu, strict_context, trace."""
    forked_from: dict[str, Any] | None = None
    paused_before_turn: int | None = None
    """Set while the run waits for the facilitator's interjection (`resume --say`)."""
    checkpoint_store: str | None = None
    """Where the run's checkpoints are: None for checkpoints.sqlite in its folder, else the
    Postgres connection string with its password hidden."""


class TraceRecord(BaseModel):
    """One node execution. Model turns carry Ollama's raw timing fields (nanoseconds)."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    seq: int
    node: str
    turn: int | None = None
    kind: str | None = None
    speaker: str | None = None
    model: str | None = None
    host: str | None = None
    started_at: str
    ended_at: str
    latency_s: float
    ttft_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_per_s: float | None = None
    prompt_tokens_per_s: float | None = None
    load_s: float | None = None
    gpu_fraction: float | None = None
    size: int | None = None
    size_vram: int | None = None
    truncated: bool = False
    done_reason: str | None = None
    thinking_chars: int = 0
    thinking: str | None = None
    """The turn's thinking, kept apart from the answer and never relayed to the others."""
    eval_includes_thinking: bool = False
    """eval_count (completion_tokens, tokens_per_s) counts the thinking tokens too."""
    context_length: int | None = None
    """The context the model was loaded with (/api/ps): the num_ctx in force."""
    expected_prompt_tokens: int | None = None
    """The context guard's lower bound for prompt_eval_count; fewer means truncated."""
    residency: str | None = None
    """How the model was placed for the turn: shared, exclusive, or cpu (a CPU-only server)."""
    require_gpu: bool | None = None
    unloaded: list[str] = []
    """Models unloaded from the speaker's host to make room before the turn."""
    retried: bool = False
    """The model was not fully in VRAM, so it was reloaded once after VRAM recovered."""
    residency_s: float | None = None
    """Seconds spent placing the model before the request (unloads, waits, preload)."""
    preload_s: float | None = None
    slow: bool = False
    """Decoded below the participant's min_tok_s, whatever /api/ps said."""
    error: str | None = None
    stopped: bool = False
    """The user stopped the run during this turn; `error` says so and the turn is not finished."""
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_cached_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None

    @property
    def is_turn(self) -> bool:
        return self.turn is not None and self.speaker is not None

    @property
    def flags(self) -> list[str]:
        """What a reader should notice about this turn."""
        found = []
        if self.gpu_fraction is not None and self.gpu_fraction < 1.0:
            found.append("CPU" if self.gpu_fraction == 0 else f"CPU {1 - self.gpu_fraction:.0%}")
        if self.slow:
            found.append("slow")
        if self.truncated:
            found.append("truncated")
        if self.eval_includes_thinking:
            found.append("thinking")
        if self.done_reason == "length":
            found.append("cut by length")
        if self.stopped:
            found.append("stopped")
        elif self.error:
            found.append("error")
        return found


class InputsRecord(BaseModel):
    """inputs.jsonl: exactly the messages a model was sent for one turn."""

    run_id: str
    turn: int
    speaker: str
    model: str
    messages: list[dict[str, str]]
