"""The launch page's logic that is not layout: the models offered and chosen by default, what the
host tells of their fit on its GPU, the doctor's verdict, the page's words for the CLI's flags,
uploads, option values, the run request."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import streamlit as st

from graphs import (
    OPENAI_PREFIX,
    RESIDENCY_POLICIES,
    TIMEOUT_S,
    DoctorReport,
    GpuEstimate,
    Participant,
    Pulled,
    Resident,
    RunRequest,
    Shape,
    estimate_gpu,
    gb,
    new_run_id,
    same_model,
)

from . import common

REQUIRE_GPU = {"once the host has shown a GPU": None, "yes": True, "no": False}


@dataclass(frozen=True)
class Choice:
    """A model a participant can be given, and where it is served."""

    model: str
    host: str | None  # None: the embedded server; an OpenAI-compatible server's base_url if openai
    openai: bool = False
    """On an OpenAI-compatible server, at `host`."""

    @property
    def label(self) -> str:
        if self.openai:
            return f"{self.model} · OpenAI-compatible ({self.host})"
        return f"{self.model} · embedded (CPU, this machine)" if self.host is None else self.model

    @property
    def as_flag(self) -> str:
        """The model as --model NAME=... takes it: NAME=openai:MODEL@URL for such a server."""
        return f"{OPENAI_PREFIX}{self.model}@{self.host}" if self.openai else self.model


def default_choices(
    participants: Sequence[Participant], offered: Mapping[str, Sequence[Choice]]
) -> dict[str, Choice]:
    """Each participant's model until the user picks one.

    Its shape's own model if its host has it (same_model: 'name' is 'name:latest'); else the
    host's models in the order offered (the most recently pulled first), one no other
    participant on that host has yet while there is one; the embedded models only when the
    host has none (or can't be reached), the one the shape names if it is one of them.
    """
    chosen: dict[str, Choice] = {}
    for participant in participants:
        own = [
            c
            for c in offered[participant.name]
            if c.host is not None and same_model(c.model, participant.model)
        ]
        if own:
            chosen[participant.name] = own[0]
    for participant in participants:
        if participant.name in chosen:
            continue
        choices = offered[participant.name]
        hosted = [c for c in choices if c.host is not None]
        if hosted:
            taken = [c for c in chosen.values() if c.host == hosted[0].host]
            fresh = [c for c in hosted if not any(same_model(c.model, t.model) for t in taken)]
            chosen[participant.name] = fresh[0] if fresh else hosted[len(taken) % len(hosted)]
            continue
        own = [c for c in choices if same_model(c.model, participant.model)]
        if own or choices:
            chosen[participant.name] = (own or list(choices))[0]
    return chosen


# ---- what the host tells of the GPU --------------------------------------------------------------


def gpu_fit(
    name: str,
    picked: Mapping[str, Choice],
    pulled: Mapping[str, Sequence[Pulled]],
    residents: Mapping[str, Sequence[Resident] | None],
) -> str:
    """One line on a participant's model: its size, and whether it fits the host's GPU alone and
    together with the other models chosen on that host, as far as /api/ps tells (estimate_gpu)."""
    choice = picked[name]
    if choice.host is None:
        return "Runs on this machine's CPU (the embedded server): no GPU to fit."
    if choice.openai:
        return (
            "On an OpenAI-compatible server: whether it runs on the GPU is the server's own setting, "
            "which its API does not tell (residency unknown)."
        )
    loaded = residents.get(choice.host)
    estimate = estimate_gpu(list(loaded)) if loaded is not None else GpuEstimate(shown=False)

    def size(model: str) -> tuple[int | None, Resident | None]:
        resident = next((r for r in loaded or () if same_model(r.name, model)), None)
        if resident is not None:
            return resident.size, resident
        entry = next((m for m in pulled.get(choice.host or "", ()) if same_model(m.name, model)), None)
        return (entry.size if entry else None), None

    own, resident = size(choice.model)
    if own is None:
        said = "Size unknown (the host does not say)"
    elif resident is not None:
        said = f"{gb(own)} loaded now, with its context ({resident.processor})"
    else:
        said = f"{gb(own)} on disk (its context adds to that once loaded)"
    others: list[str] = []
    for other, c in picked.items():
        same_host = other != name and c.host == choice.host and not c.openai
        if same_host and not any(same_model(c.model, m) for m in [choice.model, *others]):
            others.append(c.model)
    if not estimate.shown:
        alone = " or together with " + ", ".join(others) if others else ""
        return (
            f"{said}. Fits the GPU alone{alone}: unknown, the host has shown no GPU "
            "(no model sits in its VRAM now)."
        )
    if own is None:
        return f"{said}. Fits the GPU: unknown."
    held = f"about {gb(estimate.in_vram)}" if estimate.full else f"at least {gb(estimate.in_vram)}"
    parts = [said + ".", fit_words("alone", own, estimate.fits(own), held)]
    if others:
        sizes = [size(model)[0] for model in others]
        if any(s is None for s in sizes):
            parts.append(f"Together with {', '.join(others)}: unknown (a size is unknown).")
        else:
            total = own + sum(s or 0 for s in sizes)
            parts.append(fit_words(f"together with {', '.join(others)}", total, estimate.fits(total), held))
    return " ".join(parts)


def fit_words(how: str, size: int, fits: bool | None, held: str) -> str:
    if fits:
        return f"Fits the GPU {how} ({gb(size)}; the GPU holds {held})."
    if fits is False:
        return f"Does not fit the GPU {how}: {gb(size)}, the GPU holds {held}; part would run on the CPU."
    return f"Fits the GPU {how}: unknown ({gb(size)}; the GPU has shown it holds {held})."


def busy_hosts(active: Iterable[Any], hosts: Iterable[str]) -> list[str]:
    """Those of `hosts` a run in progress (LiveRun) uses: Check must leave their models alone."""
    wanted = set(hosts)
    return sorted({url for run in active for url in run.request.hosts.values() if url in wanted})


# ---- the doctor's verdict, in the page's words ----------------------------------------------------

Verdict = Literal["success", "warning", "error"]


def verdict(report: DoctorReport) -> tuple[Verdict, str]:
    """The doctor's exit meaning as the page shows it: problems (exit 1) are an error; a run
    that would go on but with a model partly on the CPU, or swapping, a warning."""
    if report.problems:
        return "error", in_page_words("A run would fail or stop: " + "; ".join(report.problems))
    if report.cautions:
        return "warning", in_page_words("A run would go, but: " + "; ".join(report.cautions))
    return "success", "Every model is there and runs as required."


def _set_words(match: re.Match[str]) -> str:
    name, key, value = match.group("name"), match.group("key"), match.group("value")
    if value is None:
        return f"{name}'s {key}"
    if value == "null" and key == "think":  # think's own word for it
        return f"think set to model's default for {name}"
    if value == "null":  # the page's empty field
        return f"{key} left empty for {name}"
    return f"{key} {value} for {name}"


PAGE_WORDS: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    (re.compile(r"--model/--set: "), "the participants' options: "),
    (
        re.compile(r"--set (?P<name>[a-z][a-z0-9_-]*)\.(?P<key>\w+)(?:=(?P<value>[^\s),;:]+))?"),
        _set_words,
    ),
    (
        re.compile(r"check one of those with --model (\S+)=(?:openai:MODEL@\S+|MODEL)"),
        r"choose one of those as \1's model",
    ),
    (re.compile(r"name one of those, as --model NAME=openai:MODEL@URL"), "choose one of those"),
    (re.compile(r"pick one with --model (\S+)=(\S+?)(?=[,;]|$)"), r"choose \2 as \1's model"),
    (re.compile(r"--model (\S+?)=(\S+?)(?=:?(?:\s|$)|[,;])"), r"\1's model \2"),
    (
        re.compile(
            r"point --host or OLLAMA_HOST at a running server, or add --embedded to use the built-in model"
        ),
        "give a running server's address as the Ollama host, or choose an embedded model",
    ),
    (re.compile(r"drop --embedded to use Ollama"), "choose a model on the Ollama host"),
    (re.compile(r"--embedded"), "the embedded model"),
    (re.compile(r"--residency (\w+)"), r"Residency policy \1"),
    (
        re.compile(r"or --no-require-gpu to run it on the CPU anyway"),
        "or Require the GPU: no, to run it on the CPU anyway",
    ),
    (re.compile(r"--no-require-gpu"), "Require the GPU: no"),
    (re.compile(r"leave out --strict-context"), "untick Stop on a truncated prompt"),
    (re.compile(r"--strict-context"), "Stop on a truncated prompt"),
    (re.compile(r"a longer --timeout SECONDS"), "a longer Timeout"),
    (re.compile(r"--timeout(?: SECONDS)?"), "Timeout"),
    (re.compile(r"--topic-file"), "the topic file"),
    (re.compile(r"--turns (\d+)"), r"Turns \1"),
    (re.compile(r"--host"), "the Ollama host"),
]
"""The CLI's flags in a message, as the launch page's own fields: its messages are the engine's,
which the CLI shows too."""


def in_page_words(message: str) -> str:
    """A message from the engine, the doctor or Ollama's client, naming the page's fields
    instead of the CLI's flags."""
    for pattern, words in PAGE_WORDS:
        message = pattern.sub(words, message)
    return message


def read_upload(upload: Any, limit_bytes: int) -> tuple[str, str | None]:
    """An uploaded file's text, or a one-line reason it can't be used.

    The widget's own limit is in whole MB and only holds in a browser, so it is checked here too.
    """
    size = getattr(upload, "size", None)
    data = upload.getvalue()
    size = len(data) if size is None else size
    if size > limit_bytes:
        return "", (
            f"{upload.name} is {size / 1000:,.0f} kB; the limit is {limit_bytes // 1000:,} kB. "
            "Give a shorter text, or paste the part that matters."
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "", f"{upload.name} is not UTF-8 text; save it as UTF-8 and upload it again."
    if not text.strip():
        return "", f"{upload.name} is empty."
    return text, None


def option_value(option: str, value: Any) -> Any:
    """A widget's value as the shape's option wants it (keep_alive '0' and '-1' are seconds)."""
    if option == "keep_alive" and isinstance(value, str):
        stripped = value.strip()
        if stripped.lstrip("-").isdigit():
            return int(stripped)
        return stripped or "30m"
    return value


def residency_controls() -> dict[str, Any]:
    """Where models sit while they speak: the residency fields of the RunRequest."""
    chosen: dict[str, Any] = {}
    policy, gpu, strict = st.columns(3, vertical_alignment="bottom")
    with policy:
        chosen["residency_policy"] = st.selectbox(
            "Residency policy",
            list(RESIDENCY_POLICIES),
            index=RESIDENCY_POLICIES.index("auto"),
            help="exclusive: unload the other models before each turn; shared: keep them all "
            "loaded; auto: shared if they all fit in VRAM together, else exclusive.",
            key="residency",
        )
    with gpu:
        chosen["require_gpu"] = REQUIRE_GPU[
            st.selectbox(
                "Require the GPU",
                list(REQUIRE_GPU),
                help="Stop the run rather than let a turn run (partly) on the CPU.",
                key="require-gpu",
            )
        ]
    with strict:
        chosen["strict_context"] = st.checkbox(
            "Stop on a truncated prompt",
            help="Otherwise a truncated turn is flagged and the run goes on.",
            key="strict-context",
        )
    return chosen


def request(
    shape: Shape,
    topic: str,
    turns: int,
    hosts: Mapping[str, str],
    embedded: bool,
    residency: Mapping[str, Any],
    timeout_s: float = TIMEOUT_S,
) -> RunRequest:
    """The RunRequest, with a run id chosen now so the page can show the run before it starts."""
    return RunRequest(
        shape=shape,
        topic=topic,
        turns=turns,
        hosts=dict(hosts),
        runs_dir=common.store().root,
        run_id=new_run_id(shape.name),
        embedded=embedded,
        timeout_s=timeout_s,
        **residency,
    )
