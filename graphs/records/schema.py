"""The run record's typed rows: run.json, trace.jsonl and inputs.jsonl.

This is a public, versioned format (see README, "Run records"): add fields freely,
but bump FORMAT_VERSION when a field changes meaning or goes away.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

FORMAT_VERSION = 1

RunStatus = Literal["running", "completed", "failed", "interrupted", "imported"]


class ParticipantRecord(BaseModel):
    """One participant in run.json, as it took part."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    name: str
    """Its name in the shape (`a`, `pro`, ...), as `--model NAME=...` and `--set NAME.KEY=...` use it."""
    label: str
    """The name readers see: the shape's label, else the model (with the name added when two share one)."""
    model: str
    """The model it ran on, as its server names it; `person` for a person (kind: person), who has none."""
    host: str
    """The server that served it: an Ollama host, or the base_url of an OpenAI-compatible server;
    empty for a person."""
    options: dict[str, Any]
    """The options every one of its requests carried, num_ctx and think as pinned before the run
    (on an OpenAI-compatible server only temperature, top_p, seed, num_predict and stop)."""


class RunMeta(BaseModel):
    """run.json: what ran, how it ended, and what a resume or fork needs."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    format_version: int = FORMAT_VERSION
    """The record format's version; it goes up when a field changes meaning or goes away."""
    run_id: str
    """The run's id and folder name: `<UTC date>-<time>-<shape>-<8 hex digits>`."""
    shape: str
    """The shape's name."""
    status: RunStatus
    """How it stands; a run killed outright stays `running` until resumed, a paused one is `interrupted`,
    and a transcript recorded by `duologue import` is `imported`."""
    participants: list[ParticipantRecord]
    """Who took part, in the shape's order."""
    observer: ParticipantRecord | None = None
    """The model that wrote notes on the dialogue after its closing (named `observer`), if any."""
    topic: str
    """The topic or essay, whole."""
    turns: int
    """The dialogue's length, the closing included."""
    started_at: str
    """When the run started (UTC, ISO 8601, milliseconds)."""
    ended_at: str | None = None
    """When it last ended: completed, failed or interrupted; null while it runs."""
    versions: dict[str, str] = {}
    """duologue, langgraph, langchain-ollama and python's versions (langchain-openai's too when a
    participant is on an OpenAI-compatible server), and each server's as `ollama@HOST` or
    `openai@BASE_URL` (`unknown (OpenAI-compatible)`: that API does not tell it)."""
    error: str | None = None
    """Why the run failed or stopped, in one line; null otherwise."""
    spec: dict[str, Any] | None = None
    """The whole shape as run (overrides applied), so the run can be resumed or forked."""
    embedded: bool = False
    """The models were on duologue's embedded server, which a resume or fork starts again."""
    settings: dict[str, Any] = {}
    """The run-level settings a resume or fork keeps: residency_policy, require_gpu, strict_context, trace,
    timeout_s (--timeout: seconds a turn may go without a chunk)."""
    forked_from: dict[str, Any] | None = None
    """For a fork: the original's `run_id` and the turn `at` which it was cut (turns 1..at copied)."""
    paused_before_turn: int | None = None
    """Set while the run waits for the facilitator's interjection (`resume --say`)."""
    checkpoint_store: str | None = None
    """Where the run's checkpoints are: null for checkpoints.sqlite in its folder, else the
    Postgres connection string with its password hidden."""
    held_by: str | None = None
    """`langgraph-server` for a dialogue held through LangGraph Server (`langgraph dev`), whose own
    checkpoints hold it under the thread with the run's id: it is continued there, not by
    `duologue resume` or `fork`; null for a run duologue held."""
    sweep_id: str | None = None
    """The sweep this run is a cell of (`duologue sweep`), as `duologue sweep-report` names it; else null."""
    cell: int | None = None
    """Its cell's number in that sweep, from 1; null for a run that is no sweep's cell."""


class TraceRecord(BaseModel):
    """One node execution. Model turns carry Ollama's raw timing fields (nanoseconds)."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    run_id: str
    """The run this step belongs to."""
    seq: int
    """The step's place in the run's trace, from 1; a resumed run's steps go on counting."""
    node: str
    """The graph node that ran: `facilitator`, a speaker's name, or `closing`."""
    turn: int | None = None
    """The turn's number, from 1; null for a facilitator step."""
    kind: str | None = None
    """The kind of turn: opening, response, reply or closing."""
    speaker: str | None = None
    """The participant who spoke (its name in the shape)."""
    speaker_kind: Literal["model", "person"] = "model"
    """Who spoke: a model, or a person (kind: person in the shape), whose turn has no model, host or
    token stats, only `words` and the seconds they took (`latency_s`)."""
    words: int | None = None
    """A person's turn: the words they wrote; null for a model's."""
    model: str | None = None
    """The model that answered."""
    host: str | None = None
    """The server that answered: an Ollama host, or an OpenAI-compatible server's base_url."""
    started_at: str
    """When the step started (UTC, ISO 8601, milliseconds)."""
    ended_at: str
    """When it ended."""
    latency_s: float | None = None
    """The step's wall time in seconds, placing the model included: the stats line's seconds
    (null only for an imported turn whose transcript gave none)."""
    ttft_s: float | None = None
    """Seconds from the step's start to the first streamed token (placing and prompt reading included)."""
    prompt_tokens: int | None = None
    """Tokens in the prompt (prompt_eval_count), cached ones included."""
    completion_tokens: int | None = None
    """Tokens generated (eval_count)."""
    tokens_per_s: float | None = None
    """The decode rate: eval_count / eval_duration."""
    prompt_tokens_per_s: float | None = None
    """Prompt tokens evaluated (those not served from the prompt cache) / prompt_eval_duration."""
    load_s: float | None = None
    """load_duration in seconds: Ollama loading the model for this request (about 0 once it is placed)."""
    gpu_fraction: float | None = None
    """size_vram / size from /api/ps right before the turn: 1.0 all in VRAM, 0 all on the CPU."""
    size: int | None = None
    """The loaded model's size in bytes, weights and context (/api/ps)."""
    size_vram: int | None = None
    """How many of those bytes sat in VRAM (/api/ps)."""
    truncated: bool = False
    """prompt_eval_count fell short of expected_prompt_tokens: Ollama dropped the oldest messages."""
    done_reason: str | None = None
    """Why Ollama stopped generating: `stop` (the model finished) or `length` (num_predict: cut by length)."""
    thinking_chars: int = 0
    """The length of the turn's thinking in characters; 0 without thinking."""
    thinking: str | None = None
    """The turn's thinking, kept apart from the answer and never relayed to the others."""
    eval_includes_thinking: bool = False
    """eval_count (completion_tokens, tokens_per_s) counts the thinking tokens too."""
    context_length: int | None = None
    """The context the model was loaded with (/api/ps): the num_ctx in force."""
    expected_prompt_tokens: int | None = None
    """The context guard's lower bound for prompt_eval_count; fewer means truncated."""
    residency: str | None = None
    """How the model was placed for the turn: shared, exclusive, cpu (a CPU-only server), or
    unknown (an OpenAI-compatible server, which does not say where its model sits)."""
    require_gpu: bool | None = None
    """Whether require_gpu was in force on the speaker's host: a model not fully in VRAM stops the run."""
    unloaded: list[str] = []
    """Models unloaded from the speaker's host to make room before the turn."""
    retried: bool = False
    """The model was not fully in VRAM, so it was reloaded once after VRAM recovered."""
    residency_s: float | None = None
    """Seconds spent placing the model before the request (unloads, waits, preload)."""
    preload_s: float | None = None
    """Seconds spent loading the model with the turn's exact options (both loads when it was retried)."""
    slow: bool = False
    """Decoded below the participant's min_tok_s, whatever /api/ps said."""
    error: str | None = None
    """What went wrong in this step: the error's type and message; null when it went well."""
    stopped: bool = False
    """The user stopped the run during this turn; `error` says so and the turn is not finished."""
    total_duration: int | None = None
    """Ollama's raw field: the whole request, in nanoseconds."""
    load_duration: int | None = None
    """Ollama's raw field: loading the model, in nanoseconds."""
    prompt_eval_count: int | None = None
    """Ollama's raw field: the prompt's tokens, those served from its prompt cache included."""
    prompt_eval_cached_count: int | None = None
    """Ollama's raw field: the prompt's tokens served from its prompt cache (newer servers; else null)."""
    prompt_eval_duration: int | None = None
    """Ollama's raw field: evaluating the prompt's uncached tokens, in nanoseconds."""
    eval_count: int | None = None
    """Ollama's raw field: the tokens generated, thinking included when the model thought."""
    eval_duration: int | None = None
    """Ollama's raw field: generating them, in nanoseconds."""

    @property
    def is_turn(self) -> bool:
        return self.turn is not None and self.speaker is not None

    @property
    def degraded(self) -> bool:
        """Ran (partly) on the CPU, or decoded below min_tok_s: what this tool exists to catch,
        so every view marks such a turn in red."""
        return (self.gpu_fraction is not None and self.gpu_fraction < 1.0) or self.slow

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


INPUTS_FORMAT: Literal[2] = 2
"""inputs.jsonl's row format: 2 writes each turn as what it adds to its speaker's previous
prompt (InputsRow); rows of format 1 hold the whole prompt (InputsRecord). Both are read."""


class InputsRecord(BaseModel):
    """One turn's whole prompt: exactly the messages a model was sent for it. inputs.jsonl's row
    at format 1; at format 2 what reading a row (InputsRow) rebuilds."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    run_id: str
    """The run the turn belongs to."""
    turn: int
    """The turn's number, from 1."""
    speaker: str
    """The participant who was sent them."""
    model: str
    """Its model."""
    messages: list[dict[str, str]]
    """The messages in the order sent, each a `role` (system, user or assistant) and its `content`."""


class InputsRow(BaseModel):
    """inputs.jsonl's row at format 2: one turn's prompt as the messages it adds to its speaker's
    previous prompt, and a digest of the whole, so the file grows with the turns (not their
    square) and every prompt is rebuilt exactly, and checked, when it is read."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    format: Literal[2]
    """The row's format, 2 (a row without `format` is a format-1 InputsRecord)."""
    run_id: str
    """The run the turn belongs to."""
    turn: int
    """The turn's number, from 1."""
    speaker: str
    """The participant who was sent them."""
    model: str
    """Its model."""
    base_turn: int | None
    """The turn of this speaker's earlier row this prompt starts from (the latest row before this one
    with that turn); null: the prompt is `added` alone."""
    kept: int
    """How many of that prompt's first messages this one starts with (0 when `base_turn` is null)."""
    added: list[dict[str, str]]
    """The messages after those, in the order sent, each a `role` and its `content`."""
    sha256: str
    """The SHA-256 of the whole prompt as compact JSON (keys sorted, UTF-8): a rebuilt prompt that does
    not match it is not returned."""


def package_version(name: str) -> str:
    """An installed distribution's version, as run.json's `versions` records it."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"
