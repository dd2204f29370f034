"""Where each model sits while it speaks, and whether it heard the whole dialogue.

Policy only: every request to Ollama goes through graphs/ollama/api.py.

Before a run, resolve_shape() pins what a participant's options leave open: num_predict,
larger for a model that thinks (its thinking counts), num_ctx, sized to the dialogue and
capped at the model's trained context, and think, on for models that can think, so their
thinking is captured rather than silently dropped.

During a run, each participant's connector carries a guard from RunResidency:

- before a turn it places the model. `exclusive` unloads every other model on the
  speaker's host, waits until /api/ps no longer lists them and lets the free-VRAM reading
  settle; `shared` keeps them all loaded. Either way it reads /api/ps first; unless that
  reading shows the speaker's model where this run last placed it (same size, same bytes
  in VRAM, its context), it loads the model with its exact options and reads /api/ps
  again. Every turn's GPU reading is thus taken just before its request. `auto` preloads
  all of a host's participants once and picks `shared` if they all sit fully in VRAM
  together, else `exclusive`.
- with require_gpu (on by default once the host has shown any model in VRAM), a model
  not fully in VRAM is reloaded once after VRAM has had time to recover; if it still is
  not, the run stops with GpuRequired, saying what to try.
- after a turn it compares prompt_eval_count with the least an untruncated prompt could
  count: a shortfall marks the turn truncated (ContextTruncated with strict_context).
  A decode rate under the participant's min_tok_s marks it slow.

The findings go to the turn's trace record (see TraceRecord's fields).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from graphs.engine.spec import NUM_PREDICT, OBSERVER, THINKING_NUM_PREDICT, ModelOptions, Participant, Shape
from graphs.errors import OllamaError
from graphs.ollama import api as ollama
from graphs.ollama.api import Resident, find_resident
from graphs.ollama.names import is_embedded, same_model
from graphs.ollama.timings import decode_rate
from graphs.records.inputs import shared_prefix

Policy = Literal["auto", "exclusive", "shared"]
RESIDENCY_POLICIES: tuple[str, ...] = get_args(Policy)


@dataclass
class Timing:
    """How long to wait for Ollama; tests shorten these."""

    settle_s: float = 1.0
    """After unloading, before loading: the free-VRAM reading lags behind an unload."""
    recovery_s: float = 5.0
    """Before the one retry of a model that loaded partly on the CPU (Ollama itself waits up to 5 s)."""
    unload_timeout_s: float = 30.0
    poll_s: float = 0.25


TIMING = Timing()

# Sizing num_ctx to a dialogue: the topic, then every turn at its longest, plus templates.
CONTEXT_STEP = 1024
MIN_CONTEXT = 2048
PROMPT_OVERHEAD_TOKENS = 512
TURN_OVERHEAD_TOKENS = 128
UNBOUNDED_TURN_TOKENS = 2048
"""A turn's length when num_predict does not bound it (-1, -2)."""
BYTES_PER_TOKEN = 3
"""Generous: English runs about 4 bytes a token, so this overestimates the topic."""


class ResidencyError(OllamaError):
    """A turn could not run as required; `facts` go on the turn's trace record."""

    def __init__(self, message: str, facts: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.facts = facts or {}


class GpuRequired(ResidencyError):
    """require_gpu is on and the speaker's model would not fit fully in VRAM."""


class ContextTruncated(ResidencyError):
    """strict_context is on and Ollama dropped part of the prompt."""


@dataclass(frozen=True)
class ResidencySettings:
    policy: Policy = "auto"
    require_gpu: bool | None = None
    """None: on for a host once it has shown any model in VRAM."""
    strict_context: bool = False


# -- before the run: options -----------------------------------------------------------------


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)


def size_context(
    topic: str, turns: int, num_predict: int | None, trained: int | None, thinks: bool = False
) -> int:
    """A num_ctx that holds the topic, every earlier turn and the turn being generated, rounded
    up, capped at the trained context.

    The turn being generated may take all of num_predict; an earlier turn is only its answer,
    since thinking is never sent back, so a thinking model's earlier turns count as a turn of a
    model that does not think (NUM_PREDICT) when num_predict is larger.
    """
    generated = num_predict if num_predict and num_predict > 0 else UNBOUNDED_TURN_TOKENS
    answer = min(generated, NUM_PREDICT) if thinks else generated
    turn_tokens = (turns - 1) * (answer + TURN_OVERHEAD_TOKENS) + generated + TURN_OVERHEAD_TOKENS
    wanted = PROMPT_OVERHEAD_TOKENS + estimate_tokens(topic) + turn_tokens
    num_ctx = max(MIN_CONTEXT, math.ceil(wanted / CONTEXT_STEP) * CONTEXT_STEP)
    return min(num_ctx, trained) if trained else num_ctx


def resolve_options(
    participant: Participant, facts: ollama.ModelFacts, topic: str, turns: int, host: str
) -> ModelOptions:
    """The participant's options with num_predict, num_ctx and think pinned where they were left
    open: a model that thinks gets room for its thinking, which counts against num_predict."""
    options = participant.options
    update: dict[str, Any] = {}
    thinks = facts.thinks and options.think is not False
    if options.num_predict is None:
        update["num_predict"] = THINKING_NUM_PREDICT if thinks else NUM_PREDICT
    if options.num_ctx is None:
        num_predict = update.get("num_predict", options.num_predict)
        update["num_ctx"] = size_context(topic, turns, num_predict, facts.context_length, thinks)
    if facts.thinks and options.think is None:
        update["think"] = True  # captured, not dropped: Ollama thinks by default and counts it
    if options.think and not facts.thinks:
        raise OllamaError(
            f"{participant.name}: model '{participant.model}' at {host} does not think "
            f"(its capabilities: {', '.join(facts.capabilities) or 'none'}); "
            f"drop think from its options (--set {participant.name}.think=null)"
        )
    return options.model_copy(update=update) if update else options


def resolve_shape(
    shape: Shape,
    hosts: Mapping[str, str],
    topic: str,
    turns: int,
    facts: Callable[[str, str], ollama.ModelFacts] = ollama.show_model,
) -> Shape:
    """The shape with every participant's options, and the observer's, resolved against its
    server (/api/show). `facts(host, model)` is asked once for each.

    The observer's context is sized like a speaker's: it reads the whole dialogue.
    """
    resolved = {}
    for participant in shape.connected:
        if participant.provider != "ollama":  # its server sizes its own context
            resolved[participant.name] = participant.options
            continue
        host = hosts[participant.name]
        facts_now = facts(host, participant.model)
        resolved[participant.name] = resolve_options(participant, facts_now, topic, turns, host)
    participants = [  # a person has no options to resolve
        p.model_copy(update={"options": resolved.get(p.name, p.options)}) for p in shape.participants
    ]
    update: dict[str, Any] = {"participants": participants}
    if shape.observer is not None:
        update["observer"] = shape.observer.model_copy(update={"options": resolved[OBSERVER]})
    return shape.model_copy(update=update)


@dataclass(frozen=True)
class GpuEstimate:
    """What a reading of /api/ps tells of a host's GPU, before anything is loaded for a run.

    Ollama reports neither the card's size nor its free memory, only where each loaded model
    sits. So: the GPU holds at least what sits in VRAM now; when a model spilled to the CPU,
    what sits in VRAM is about all it holds (the doctor reads a spilled model's size_vram as the
    GPU's free memory the same way). Anything larger than a card not seen full: unknown.
    """

    shown: bool
    """Some model sits (partly) in VRAM: the host has a GPU (ollama.shows_gpu)."""
    in_vram: int = 0
    """Bytes in VRAM now, over every loaded model."""
    full: bool = False
    """Some loaded model spilled to the CPU: in_vram is about all the GPU holds."""

    def fits(self, size: int) -> bool | None:
        """Whether `size` bytes fit in VRAM with every other model unloaded; None: cannot tell."""
        if not self.shown:
            return None
        if size <= self.in_vram:
            return True
        return False if self.full else None


def estimate_gpu(residents: Sequence[Resident]) -> GpuEstimate:
    """The GpuEstimate of a fresh /api/ps reading."""
    if not ollama.shows_gpu(residents):
        return GpuEstimate(shown=False)
    return GpuEstimate(
        shown=True,
        in_vram=sum(r.size_vram for r in residents),
        full=any(0 < r.size_vram < r.size for r in residents),
    )


def make_room(url: str, model: str, residents: Sequence[Resident]) -> list[str]:
    """Unload every model but `model` from the host; wait until gone, then for VRAM to settle.

    `residents` is a fresh /api/ps reading; returns the models unloaded.
    """
    others = [r.name for r in residents if not same_model(r.name, model)]
    if not others:
        return []
    for name in others:
        ollama.unload_model(url, name)
    ollama.wait_unloaded(url, others, TIMING.unload_timeout_s, TIMING.poll_s)
    time.sleep(TIMING.settle_s)
    return others


# -- during the run: placing models and checking turns ------------------------------------


@dataclass
class _Host:
    url: str
    participants: list[Participant]
    policy: Literal["shared", "exclusive"] | None = None
    shown_vram: bool = False
    embedded: bool | None = None


class _Seen:
    """A participant's previous request, for the next one's expected prompt count: a hash and the
    words of each of its messages, not the messages (a run keeps one prompt per participant). Two
    messages that differ hash alike once in 2**64; the count would then be expected too high."""

    def __init__(
        self,
        messages: Sequence[Mapping[str, Any]],
        prompt_eval_count: int | None,
        counted: Counted | None = None,
    ) -> None:
        self.hashes, self.words = counted or counted_words(messages, None)
        self.prompt_eval_count = prompt_eval_count


Counted = tuple[list[int], list[int]]
"""A prompt's message hashes and each message's words."""


def counted_words(messages: Sequence[Mapping[str, Any]], previous: _Seen | None) -> Counted:
    """Each message's words, counted again only past the part the previous prompt shares."""
    hashes = [hash(sent(m)) for m in messages]
    kept = shared_prefix(previous.hashes, hashes) if previous is not None else 0
    known = previous.words[:kept] if previous is not None else []
    return hashes, [*known, *(words(m) for m in messages[kept:])]


@dataclass
class ParticipantGuard:
    """The TurnGuard of one participant's connector."""

    run: RunResidency
    participant: Participant
    last_before: dict[str, Any] = field(default_factory=dict)

    def before(self, messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        self.last_before = self.run.before_turn(self.participant)
        return self.last_before

    def after(
        self, messages: Sequence[Mapping[str, Any]], final: Mapping[str, Any], thinking: str
    ) -> dict[str, Any]:
        return self.run.after_turn(self.participant, messages, final, thinking, self.last_before)


class RunResidency:
    """One run's residency policy and context guard, per host."""

    def __init__(self, shape: Shape, hosts: Mapping[str, str], settings: ResidencySettings) -> None:
        self.shape = shape
        self.settings = settings
        self._hosts: dict[str, _Host] = {}
        self._host_of: dict[str, _Host] = {}
        for participant in shape.participants:
            if participant.provider != "ollama" or participant.is_person:  # nothing to place
                continue
            url = hosts[participant.name]
            host = self._hosts.setdefault(url, _Host(url, []))
            host.participants.append(participant)
            self._host_of[participant.name] = host
        self._seen: dict[str, _Seen] = {}
        self._placed: dict[str, tuple[int, int, int | None]] = {}
        """Where each participant's model sat after this run last placed it (see placement)."""
        self._lock = threading.Lock()

    def guard(self, name: str) -> ParticipantGuard:
        return ParticipantGuard(self, self.shape.participant(name))

    # -- before a turn

    def before_turn(self, participant: Participant) -> dict[str, Any]:
        with self._lock:
            host = self._host_of[participant.name]
            started = time.perf_counter()
            if self._is_embedded(host):
                return {"residency": "cpu", "require_gpu": False}
            if host.policy is None:
                host.policy = self._first_placement(host)
            unloaded: list[str] = []
            residents = self._ps(host)
            if host.policy == "exclusive":
                unloaded += make_room(host.url, participant.model, residents)
            required = self._requires_gpu(host)
            preload_s = 0.0
            found = None if unloaded else find_resident(residents, participant.model)
            if found is not None and self._still_placed(participant, found, required):
                resident = found
            else:
                preload_s = ollama.load_model(host.url, participant.model, participant.options)
                residents = self._ps(host)
                resident = self._reading(host, participant, residents)
            retried = False
            if resident.gpu_fraction < 1 and required:
                if self._auto_shared(host):
                    host.policy = "exclusive"  # they no longer fit together
                time.sleep(TIMING.recovery_s)
                if host.policy == "exclusive":
                    unloaded += self._make_room(host, participant)
                ollama.unload_model(host.url, participant.model)
                ollama.wait_unloaded(host.url, [participant.model], TIMING.unload_timeout_s, TIMING.poll_s)
                time.sleep(TIMING.settle_s)
                preload_s += ollama.load_model(host.url, participant.model, participant.options)
                resident = self._reading(host, participant)
                retried = True
            elif self._auto_shared(host) and host.shown_vram and not self._all_fit(host, residents):
                host.policy = "exclusive"  # another model took room since: swap from now on
            self._placed[participant.name] = placement(resident)
            facts = {
                "residency": host.policy,
                "require_gpu": required,
                "unloaded": unloaded,
                "retried": retried,
                "preload_s": round(preload_s, 6),
                "residency_s": round(time.perf_counter() - started, 6),
                "gpu_fraction": round(resident.gpu_fraction, 4),
                "size": resident.size,
                "size_vram": resident.size_vram,
                "context_length": resident.context_length,
            }
            if resident.gpu_fraction < 1 and required:
                raise GpuRequired(self._gpu_message(host, participant, resident), facts)
            return facts

    def _still_placed(self, participant: Participant, resident: Resident, required: bool) -> bool:
        """The model sits where this run's last placement of it left it (same size, same share
        in VRAM, the context it speaks with), so a preload would change nothing: this reading,
        taken just now, is the turn's."""
        if required and resident.gpu_fraction < 1:
            return False
        return self._placed.get(participant.name) == placement(resident)

    def _auto_shared(self, host: _Host) -> bool:
        return host.policy == "shared" and self.settings.policy == "auto"

    def _is_embedded(self, host: _Host) -> bool:
        if host.embedded is None:
            host.embedded = is_embedded(ollama.server_version(host.url))
        return host.embedded

    def _first_placement(self, host: _Host) -> Literal["shared", "exclusive"]:
        """exclusive as asked; else preload every participant of the host and see if they fit."""
        if self.settings.policy == "exclusive":
            return "exclusive"
        for participant in host.participants:
            ollama.load_model(host.url, participant.model, participant.options)
        if self.settings.policy == "shared" or self._all_fit(host):
            return "shared"
        # A server that has never shown VRAM runs everything on the CPU: swapping gains nothing.
        return "exclusive" if host.shown_vram else "shared"

    def _all_fit(self, host: _Host, residents: list[Resident] | None = None) -> bool:
        """Every participant of the host fully in VRAM; `residents` is a fresh /api/ps reading."""
        residents = self._ps(host) if residents is None else residents
        for participant in host.participants:
            resident = find_resident(residents, participant.model)
            if resident is None or resident.gpu_fraction < 1:
                return False
        return True

    def _make_room(self, host: _Host, participant: Participant) -> list[str]:
        return make_room(host.url, participant.model, self._ps(host))

    def _reading(
        self, host: _Host, participant: Participant, residents: list[Resident] | None = None
    ) -> Resident:
        resident = find_resident(self._ps(host) if residents is None else residents, participant.model)
        if resident is None:
            raise ResidencyError(
                f"{participant.name} ({participant.model}) is not in /api/ps at {host.url} right after "
                "loading it; another client may be unloading models there"
            )
        return resident

    def _ps(self, host: _Host) -> list[Resident]:
        residents = ollama.running_models(host.url)
        if ollama.shows_gpu(residents):
            host.shown_vram = True
        return residents

    def _requires_gpu(self, host: _Host) -> bool:
        if self.settings.require_gpu is not None:
            return self.settings.require_gpu
        return host.shown_vram

    def _gpu_message(self, host: _Host, participant: Participant, resident: Resident) -> str:
        cpu = 1 - resident.gpu_fraction
        tries = []
        if host.policy != "exclusive":
            tries.append("--residency exclusive")
        num_ctx = resident.context_length or participant.options.num_ctx
        if num_ctx and num_ctx > MIN_CONTEXT:
            smaller = max(MIN_CONTEXT, num_ctx // 2 // CONTEXT_STEP * CONTEXT_STEP)
            tries.append(f"a smaller context (--set {participant.name}.num_ctx={smaller})")
        tries.append("OLLAMA_MAX_LOADED_MODELS=1 on the server")
        alone = "unloading every other model and " if host.policy == "exclusive" else ""
        return (
            f"{participant.name} ({participant.model}) at {host.url} is {cpu:.0%} on the CPU "
            f"({resident.processor}: {gb(resident.size_vram)} of {gb(resident.size)} in VRAM, "
            f"context {num_ctx}) even after {alone}reloading it; try {', '.join(tries)}, "
            "or --no-require-gpu to run it on the CPU anyway"
        )

    # -- after a turn

    def after_turn(
        self,
        participant: Participant,
        messages: Sequence[Mapping[str, Any]],
        final: Mapping[str, Any],
        thinking: str,
        before: Mapping[str, Any],
    ) -> dict[str, Any]:
        with self._lock:
            facts: dict[str, Any] = {}
            if thinking:
                facts["eval_includes_thinking"] = True
            rate = decode_rate(final)
            if participant.min_tok_s and rate is not None and rate < participant.min_tok_s:
                facts["slow"] = True
            count = final.get("prompt_eval_count")
            previous = self._seen.get(participant.name)
            counted = counted_words(messages, previous)
            expected = expected_prompt_tokens(messages, previous, counted)
            self._seen[participant.name] = _Seen(messages, count, counted)
            facts["expected_prompt_tokens"] = expected
            num_ctx = before.get("context_length") or participant.options.num_ctx
            # Ollama counts the whole prompt, cached tokens included (prompt_eval_cached_count apart).
            short = count is not None and count < expected
            if short or (num_ctx and expected > num_ctx and sum(counted[1]) > num_ctx):
                facts["truncated"] = True
                if self.settings.strict_context:
                    raise ContextTruncated(
                        self._truncation_message(participant, count, expected, num_ctx), facts
                    )
            return facts

    def _truncation_message(
        self, participant: Participant, count: int | None, expected: int, num_ctx: int | None
    ) -> str:
        bigger = math.ceil(max(expected * 2, (num_ctx or 0) * 2) / CONTEXT_STEP) * CONTEXT_STEP
        return (
            f"{participant.name} ({participant.model}) was sent a prompt of at least {expected} tokens "
            f"but Ollama evaluated {count} (num_ctx {num_ctx}): it dropped the oldest messages; "
            f"give it a larger context (--set {participant.name}.num_ctx={bigger}) or fewer turns, "
            "or leave out --strict-context to flag such turns and go on"
        )


def placement(resident: Resident) -> tuple[int, int, int | None]:
    """What /api/ps shows of where a model sits: its size, its bytes in VRAM, its context."""
    return (resident.size, resident.size_vram, resident.context_length)


def words(message: Mapping[str, Any]) -> int:
    """A lower bound of a message's tokens: tokenizers split at whitespace, then within words."""
    return len(str(message.get("content") or "").split())


def expected_prompt_tokens(
    messages: Sequence[Mapping[str, Any]], previous: _Seen | None, counted: Counted | None = None
) -> int:
    """The least prompt_eval_count an untruncated prompt of `messages` can have.

    Between two turns of one speaker the prompt only grows at the end, so it counts at
    least the previous prompt's count plus the words appended since.
    """
    hashes, counts = counted or counted_words(messages, previous)
    least = sum(counts)
    if previous and previous.prompt_eval_count is not None:
        before = previous.hashes
        if len(before) <= len(hashes) and hashes[: len(before)] == before:
            least = max(least, previous.prompt_eval_count + sum(counts[len(before) :]))
    return least


def sent(message: Mapping[str, Any]) -> tuple[str, str]:
    return (str(message.get("role") or ""), str(message.get("content") or ""))


def gb(size: int) -> str:
    return f"{size / 2**30:.1f} GB"
