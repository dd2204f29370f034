"""`duologue doctor`: will these models run, and run on the GPU, before a dialogue relies on it.

For each host: is the server reachable, and which version. For each participant: is its
model there; where it sits once loaded alone with the participant's exact options (as
`ollama ps` puts it: "100% GPU", "48%/52% CPU/GPU"), with its context length; a short
timed generation (tok/s, load time). Then whether a host's participants stay loaded
together. The verdict fails if a participant would run on the CPU under require_gpu.

Models are placed as an `exclusive` run would place them (graphs/ollama/residency.py), so what
the doctor reports is what a run gets. All HTTP goes through graphs/ollama/api.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import ValidationError

from graphs.engine.spec import (
    OPENAI_OPTIONS,
    Participant,
    apply_setting,
    choose_model,
    describe_validation_error,
    flagged_problem,
    set_flag,
)
from graphs.errors import DuologueError, OllamaError, ShapeError
from graphs.ollama import api as ollama
from graphs.ollama import residency
from graphs.ollama.names import is_embedded, same_model
from graphs.ollama.timings import decode_rate
from graphs.records import checkpoints

PROBE_PROMPT = "Say hello in one short sentence."
PROBE_TOKENS = 32
"""The timed generation's num_predict; sampling options never make Ollama reload."""
DEFAULT_TURNS = 4
BARE_NAMES = "abcdefghijklmnopqrstuvwxyz"
CANNOT_ALLOCATE = "memory layout cannot be allocated"
"""What Ollama answers when num_gpu asks for more layers on the GPU than its memory holds."""


@dataclass
class ModelCheck:
    name: str
    model: str
    host: str
    present: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    thinks: bool = False
    processor: str | None = None
    """Where the model sits loaded alone, as `ollama ps` prints it."""
    gpu_fraction: float | None = None
    size: int | None = None
    size_vram: int | None = None
    context_length: int | None = None
    load_s: float | None = None
    tokens: int | None = None
    tokens_per_s: float | None = None
    generation_load_s: float | None = None
    require_gpu: bool = False
    error: str | None = None

    @property
    def on_cpu(self) -> bool:
        return self.gpu_fraction is not None and self.gpu_fraction < 1


@dataclass
class HostCheck:
    url: str
    reachable: bool = False
    version: str | None = None
    error: str | None = None
    embedded: bool = False
    shown_vram: bool = False
    together: bool | None = None
    """Every participant of the host fully in VRAM at once; None with a single participant."""
    together_processors: dict[str, str] = field(default_factory=dict)
    openai: bool = False
    """An OpenAI-compatible server (provider: openai): up and serving, residency unknown."""


@dataclass
class CheckpointCheck:
    """The Postgres database runs would keep their checkpoints in (password hidden)."""

    store: str
    error: str | None = None


@dataclass
class TraceCheck:
    """The OpenTelemetry collector runs would export their traces to (password hidden)."""

    endpoint: str
    error: str | None = None


@dataclass
class DoctorReport:
    hosts: list[HostCheck]
    models: list[ModelCheck]
    checkpoints: CheckpointCheck | None = None
    trace: TraceCheck | None = None

    @property
    def problems(self) -> list[str]:
        found = [f"{h.url}: {h.error}" for h in self.hosts if h.error]
        if self.checkpoints and self.checkpoints.error:
            found.append(self.checkpoints.error)
        for m in self.models:
            if m.error:
                found.append(f"{m.name} ({m.model}): {m.error}")
            elif m.on_cpu and m.require_gpu:
                num_ctx = m.context_length or residency.MIN_CONTEXT
                smaller = max(
                    residency.MIN_CONTEXT, num_ctx // 2 // residency.CONTEXT_STEP * residency.CONTEXT_STEP
                )
                found.append(
                    f"{m.name} ({m.model}) would run {1 - (m.gpu_fraction or 0):.0%} on the CPU "
                    f"({m.processor}) even loaded alone; try a smaller context "
                    f"(--set {m.name}.num_ctx={smaller}) or OLLAMA_MAX_LOADED_MODELS=1 on the server"
                )
        return found

    @property
    def cautions(self) -> list[str]:
        """What a run survives but should know: a model partly on the CPU where the GPU is not
        required, a host whose models do not fit in VRAM together (auto then swaps them)."""
        found = [
            f"{m.name} ({m.model}) would run {1 - (m.gpu_fraction or 0):.0%} on the CPU ({m.processor}) "
            "even loaded alone"
            for m in self.models
            if m.on_cpu and not m.require_gpu and not m.error
        ]
        found += [
            f"{h.url}: the models do not all fit in VRAM at once; residency auto swaps them, one at a time"
            for h in self.hosts
            if h.together is False and h.shown_vram
        ]
        if self.trace and self.trace.error:
            found.append(trace_caution(self.trace))
        return found

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0

    def text(self) -> str:
        """The report as `duologue doctor` prints it."""
        return render(self)

    def as_dict(self) -> dict[str, Any]:
        return {
            "hosts": [asdict(h) for h in self.hosts],
            "models": [asdict(m) | {"on_cpu": m.on_cpu} for m in self.models],
            "checkpoints": asdict(self.checkpoints) if self.checkpoints else None,
            "trace": asdict(self.trace) if self.trace else None,
            "problems": self.problems,
            "ok": not self.problems,
        }


def check_checkpoints(url: str | None) -> CheckpointCheck | None:
    """Can runs keep their checkpoints at `url`? None when they keep them in their folders."""
    if not url:
        return None
    try:
        checkpoints.check_reachable(url)
    except DuologueError as exc:
        return CheckpointCheck(checkpoints.redact_url(url), str(exc))
    return CheckpointCheck(checkpoints.redact_url(url))


def check_trace(otel_url: str | None = None) -> TraceCheck | None:
    """Would a run's trace reach its OpenTelemetry collector? None when runs export none.
    A collector that does not take it is a caution, not a problem: the runs go on without it."""
    from graphs.run import otel

    settings = otel.settings_for(otel_url)
    if settings is None:
        return None
    return TraceCheck(settings.shown, otel.probe(settings))


def trace_caution(check: TraceCheck) -> str:
    return f"the OpenTelemetry collector at {check.endpoint}: {check.error}; runs would go on, untraced"


def participants_for(
    shape: Any | None, models: Sequence[str], settings: Sequence[tuple[str, str, Any]]
) -> list[Participant]:
    """The participants to examine: a shape's (overrides applied), or bare `--model`s.

    Bare models are named a, b, c, ... unless given as NAME=MODEL.
    """
    if shape is not None:
        from graphs.engine.spec import with_overrides

        named = dict(pair(value, "--model") for value in models)
        speaking = with_overrides(shape, named, list(settings)).participants
        return [p for p in speaking if not p.is_person]  # a person has no model to check
    entries: dict[str, dict[str, Any]] = {}
    flags: dict[str, dict[tuple[Any, ...], tuple[str, str]]] = {}
    for index, value in enumerate(models):
        name, model = pair(value, "--model") if "=" in value else (BARE_NAMES[index % 26], value)
        entries[name] = {"name": name}
        choose_model(entries[name], name, model)
        flags[name] = {("model",): (f"--model {value}", "model")}
    for name, key, value in settings:
        if name not in entries:
            raise ShapeError(f"--set names '{name}', who is not among the models ({', '.join(entries)})")
        flags[name][apply_setting(entries[name], name, key, value)] = set_flag(name, key, value)
    participants = []
    for name, entry in entries.items():
        try:
            participants.append(Participant.model_validate(entry))
        except ValidationError as exc:
            problem = flagged_problem(exc, flags[name])
            raise ShapeError(problem or f"--model/--set: {describe_validation_error(exc)}") from None
    return participants


def pair(value: str, flag: str) -> tuple[str, str]:
    name, sep, rest = value.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise ShapeError(f"{flag} {value!r}: expected NAME=MODEL")
    return name.strip(), rest.strip()


def examine(
    participants: Sequence[Participant],
    hosts: Mapping[str, str],
    require_gpu: bool | None = None,
    turns: int = DEFAULT_TURNS,
    topic: str = "",
    default_host: str | None = None,
    timeout_s: float = ollama.TIMEOUT_S,
) -> DoctorReport:
    """Check every host and participant; `hosts` maps participant names to URLs. A load or the
    timed generation gives up after `timeout_s` seconds without an answer (--timeout)."""
    urls = list(dict.fromkeys(hosts[p.name] for p in participants)) or [default_host or ollama.default_host()]
    report = DoctorReport([], [])
    for url in urls:
        host = HostCheck(url)
        report.hosts.append(host)
        here = [p for p in participants if hosts.get(p.name) == url]
        checks = [ModelCheck(p.name, p.model, url) for p in here]
        report.models += checks
        if any(p.provider == "openai" for p in here):
            examine_openai(host, here, checks)
            continue
        try:
            host.version = ollama.server_version(url)
            host.reachable = True
            host.embedded = is_embedded(host.version)
            available = ollama.list_models(url)
        except OllamaError as exc:
            host.error = str(exc)
            continue
        resolved: list[tuple[Participant, ModelCheck]] = []
        for participant, check in zip(here, checks, strict=True):
            check.present = any(same_model(name, participant.model) for name in available)
            if not check.present:
                have = ", ".join(available) or "none"
                check.error = (
                    f"not on duologue's embedded server (it has: {have}); "
                    f"check one of those with --model {participant.name}=MODEL"
                    if host.embedded
                    else f"not on the server (it has: {have}); pull it with `ollama pull {participant.model}`"
                )
                continue
            try:
                facts = ollama.show_model(url, participant.model)
                options = residency.resolve_options(participant, facts, topic, turns, url)
            except DuologueError as exc:
                check.error = str(exc)
                continue
            check.thinks = facts.thinks
            check.options = options.model_dump(exclude_none=True)
            resolved.append((participant.model_copy(update={"options": options}), check))
        for participant, check in resolved:
            try:
                place_alone(host, participant, check, timeout_s)
                timed_generation(url, participant, check, timeout_s)
            except DuologueError as exc:
                check.error = str(exc)
        for _, check in resolved:
            check.require_gpu = require_gpu if require_gpu is not None else host.shown_vram
        if len(resolved) > 1 and not host.embedded:
            try:
                place_together(host, [p for p, _ in resolved], timeout_s)
            except DuologueError as exc:
                host.error = str(exc)
    return report


def examine_openai(
    host: HostCheck, participants: Sequence[Participant], checks: Sequence[ModelCheck]
) -> None:
    """An OpenAI-compatible server: up, its models served (GET /models), each key set. Where
    a model sits there is unknown: the API does not say, so nothing is placed or timed."""
    from graphs.openai import api as openai_api

    host.openai = True
    try:
        keys = [openai_api.api_key(p) for p in participants]
        served = openai_api.served_models(host.url, keys[0])
    except DuologueError as exc:
        host.error = str(exc)
        return
    host.reachable = True
    for participant, check in zip(participants, checks, strict=True):
        check.present = participant.model in served
        check.options = participant.options.model_dump(exclude_none=True, include=set(OPENAI_OPTIONS))
        if not check.present:
            check.error = (
                f"not served at {host.url} (it serves: {', '.join(served) or 'none'}); "
                f"check one of those with --model {participant.name}=openai:MODEL@{host.url}"
            )


def place_alone(
    host: HostCheck, participant: Participant, check: ModelCheck, timeout_s: float = ollama.TIMEOUT_S
) -> None:
    """Load the model as an exclusive run would: others unloaded first, then its exact options."""
    if not host.embedded:
        residency.make_room(host.url, participant.model, running(host))
    try:
        loaded = ollama.load_model(host.url, participant.model, participant.options, timeout_s)
        check.load_s = round(loaded, 3)
    except OllamaError as exc:
        if CANNOT_ALLOCATE not in str(exc):
            raise
        raise OllamaError(does_not_fit(host, participant)) from None
    resident = ollama.find_resident(running(host), participant.model)
    if resident is None:
        raise OllamaError(f"not in /api/ps at {host.url} right after loading it")
    check.processor = resident.processor
    check.gpu_fraction = round(resident.gpu_fraction, 4)
    check.size, check.size_vram = resident.size, resident.size_vram
    check.context_length = resident.context_length
    if host.embedded:
        check.gpu_fraction = None  # CPU by design: nothing to flag
        check.processor = "100% CPU (embedded server)"


def does_not_fit(host: HostCheck, participant: Participant) -> str:
    """Why Ollama could not lay out the model with the participant's num_gpu, in sizes and a fix.

    Ollama only says "memory layout cannot be allocated"; loading the model once with num_gpu
    left to Ollama shows how big it is and how much of it the GPU holds (then it is unloaded).
    """
    num_gpu = participant.options.num_gpu
    auto = participant.options.model_copy(update={"num_gpu": None})
    try:
        ollama.load_model(host.url, participant.model, auto)
        resident = ollama.find_resident(running(host), participant.model)
        ollama.unload_model(host.url, participant.model)
        info = ollama.call_json(host.url, "POST", "/api/show", {"model": participant.model}, 30.0)
    except OllamaError:
        resident, info = None, {}
    layers = next((v for k, v in (info.get("model_info") or {}).items() if k.endswith(".block_count")), None)
    if resident is None:
        return (
            f"does not fit in the GPU's memory with num_gpu {num_gpu} (Ollama: {CANNOT_ALLOCATE}); "
            f"try a smaller num_gpu (--set {participant.name}.num_gpu=N) or a smaller quantization"
        )
    return too_big_message(participant.name, num_gpu, resident.size, resident.size_vram, layers)


def too_big_message(name: str, num_gpu: int | None, size: int, vram: int, layers: int | None) -> str:
    """'needs ~42.0 GB, the GPU has ~24.0 GB: try --set a.num_gpu=N or a smaller quantization'."""
    asked = f" with num_gpu {num_gpu}" if num_gpu is not None else ""
    if layers and vram:
        fitting = layers * vram // size
        on_gpu = f"{fitting} of its {layers} layers on the GPU"
        fix = f"--set {name}.num_gpu={fitting} ({on_gpu}, the rest on the CPU)"
    else:
        fix = f"--set {name}.num_gpu=null (Ollama puts what fits on the GPU, the rest on the CPU)"
    return (
        f"needs ~{residency.gb(size)}{asked}, the GPU has ~{residency.gb(vram)} free: "
        f"try {fix} or a smaller quantization"
    )


def timed_generation(
    url: str, participant: Participant, check: ModelCheck, timeout_s: float = ollama.TIMEOUT_S
) -> None:
    """A short generation with the loaded options (num_predict aside, which never reloads)."""
    options = participant.options.model_copy(update={"num_predict": PROBE_TOKENS})
    messages = [{"role": "user", "content": PROBE_PROMPT}]
    body = ollama.chat_body(participant.model, options, messages, stream=False)
    final = ollama.call_json(url, "POST", "/api/chat", body, timeout_s)
    check.tokens = final.get("eval_count")
    rate = decode_rate(final)
    check.tokens_per_s = round(rate, 1) if rate is not None else None
    load_ns = final.get("load_duration")
    check.generation_load_s = round(load_ns / 1e9, 3) if isinstance(load_ns, int) else None


def place_together(
    host: HostCheck, participants: Sequence[Participant], timeout_s: float = ollama.TIMEOUT_S
) -> None:
    """Load every participant of the host, none unloaded, and see whether all stay in VRAM."""
    for participant in participants:
        ollama.load_model(host.url, participant.model, participant.options, timeout_s)
    residents = running(host)
    host.together = True
    for participant in participants:
        resident = ollama.find_resident(residents, participant.model)
        host.together_processors[participant.name] = resident.processor if resident else "not loaded"
        if resident is None or resident.gpu_fraction < 1:
            host.together = False


def running(host: HostCheck) -> list[ollama.Resident]:
    residents = ollama.running_models(host.url)
    if ollama.shows_gpu(residents):
        host.shown_vram = True
    return residents


def render(report: DoctorReport) -> str:
    lines = []
    for host in report.hosts:
        if not host.reachable:
            lines.append(f"{host.url}: unreachable")
        elif host.openai:
            lines.append(
                f"{host.url}: OpenAI-compatible server (residency unknown: it does not say where models sit)"
            )
        else:
            kind = " (duologue's embedded server, CPU only)" if host.embedded else ""
            lines.append(f"{host.url}: Ollama {host.version}{kind}")
        checks = [m for m in report.models if m.host == host.url]
        width = max((len(m.model) for m in checks), default=0)
        for m in checks:
            lines.append(f"  {m.name:<6} {m.model:<{width}}  {describe_check(m, host)}")
        if host.together is not None:
            where = ", ".join(f"{name}: {place}" for name, place in host.together_processors.items())
            verdict = (
                "yes, all stay 100% on the GPU (residency auto: shared)"
                if host.together
                else "no, they do not all fit in VRAM at once (residency auto: exclusive, one at a time)"
            )
            lines.append(f"  together: {verdict} [{where}]")
    if report.checkpoints is not None:
        state = "unusable" if report.checkpoints.error else "ready (Postgres)"
        lines.append(f"checkpoints: {report.checkpoints.store}: {state}")
    if report.trace is not None:
        state = f"{report.trace.error}; runs would go on, untraced" if report.trace.error else "ready"
        lines.append(f"trace: OpenTelemetry collector at {report.trace.endpoint}: {state}")
    problems = report.problems
    if problems:
        lines += [f"problem: {p}" for p in problems]
    elif report.models:
        lines.append("ok: every model is there and runs as required")
    else:
        lines.append("ok: the server answers; name a shape or --model to check models")
    return "\n".join(lines)


def describe_check(check: ModelCheck, host: HostCheck) -> str:
    if not host.reachable:
        return "not checked"
    if not check.present:
        return "missing"
    if host.openai:
        return "served; residency unknown (placement and GPU are the server's own settings)"
    parts = ["present"]
    if check.processor:
        size, load = residency.gb(check.size or 0), check.load_s or 0.0
        parts.append(
            f"loaded alone: {check.processor}, {size}, context {check.context_length}, load {load:.1f}s"
        )
    if check.tokens_per_s is not None:
        thinking = " (thinking)" if check.options.get("think") else ""
        parts.append(f"generation: {check.tokens_per_s:.1f} tok/s over {check.tokens} tokens{thinking}")
    if check.error:
        parts.append(f"error: {check.error}")
    return "; ".join(parts)
