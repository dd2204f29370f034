"""Launch page: a shape, a model per participant, the key options, a topic, then Launch.

The run itself goes to a background worker (graphs.ui.live); this page only builds the
request and then opens the run's page, whose URL names the run so a reload finds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

from graphs import (
    DuologueError,
    EmbeddedUnavailable,
    Participant,
    Shape,
    builtin_shape_names,
    default_host,
    embedded_models,
    load_shape,
    normalize_host,
    parse_shape,
    plan_turns,
    with_overrides,
)
from graphs.ui import common, launching, render

UPLOAD_LIMIT_BYTES = 1_000_000  # as `duologue run --topic-file`: a topic or essay, not a book


@dataclass(frozen=True)
class Choice:
    """A model a participant can be given, and where it is served."""

    model: str
    host: str | None  # None: the embedded server

    @property
    def label(self) -> str:
        return f"{self.model} · embedded (CPU, this machine)" if self.host is None else self.model


st.title("Launch a dialogue")

# ---- shape ------------------------------------------------------------------------------

shape: Shape | None = None
source = st.radio("Shape", ["Built-in", "Shape file"], horizontal=True, key="shape-source")
if source == "Built-in":
    builtins = builtin_shape_names()
    name = st.selectbox(
        "Built-in shape",
        builtins,
        index=builtins.index("duet") if "duet" in builtins else 0,
        key="shape-name",
    )
    shape = load_shape(name)
else:
    shape_file = st.file_uploader(
        "Shape file (YAML)", type=["yaml", "yml"], max_upload_size=1, key="shape-file"
    )
    if shape_file is not None:
        text, problem = launching.read_upload(shape_file, UPLOAD_LIMIT_BYTES)
        if problem:
            st.error(render.plain(problem))
        else:
            try:
                shape = parse_shape(text, source=shape_file.name)
            except DuologueError as exc:
                st.error(render.plain(exc))
if shape is None:
    st.info("Choose a built-in shape, or upload a shape file (see the Shapes page for examples).")
    st.stop()
if shape.description:
    st.caption(render.plain(shape.description))
scope = f"{source}:{shape.name}"  # widget keys per shape, so switching shapes starts afresh

# ---- where the models are -----------------------------------------------------------------

host = st.text_input(
    "Ollama host",
    value=default_host(),
    help="Where Ollama listens; $OLLAMA_HOST when set. The embedded model needs no Ollama.",
    key="host",
)
hosts = {p.name: normalize_host(p.host) if p.host else host for p in shape.participants}
listed = {h: common.host_models(h) for h in dict.fromkeys(hosts.values())}
for found in listed.values():
    if found.error:
        st.error(render.plain(found.error))
if any(found.error for found in listed.values()):
    st.info(
        "The embedded model is offered in every participant's list: a small real model "
        "(SmolLM2-135M) that runs on this machine's CPU, no Ollama needed."
    )
elif any(not found.models for found in listed.values()):
    st.warning("A host answered but has no models; pull one with `ollama pull`, or use the embedded model.")
embedded = [Choice(model, None) for model in embedded_models()]


def choices_for(participant: Participant) -> list[Choice]:
    found = listed[hosts[participant.name]]
    return [Choice(model, found.host) for model in found.models] + embedded


def default_choice(participant: Participant, options: list[Choice]) -> int:
    """The shape's model on the host if it has it, else the embedded one of that name, else the first."""
    for index, choice in enumerate(options):
        if choice.model == participant.model and choice.host is not None:
            return index
    for index, choice in enumerate(options):
        if choice.model == participant.model:
            return index
    return 0


# ---- participants -------------------------------------------------------------------------

THINK = {"model's default": None, "on": True, "off": False}
picked: dict[str, Choice] = {}
settings: list[tuple[str, str, Any]] = []
st.subheader("Participants")
columns = st.columns(len(shape.participants))
for participant, column in zip(shape.participants, columns, strict=True):
    options = participant.options
    key = f"{scope}:{participant.name}"
    with column, st.container(border=True, key=f"participant-{participant.name}"):
        st.markdown(
            f"**{render.plain(participant.label or 'Participant')}** · {render.code_span(participant.name)}"
        )
        offered = choices_for(participant)
        by_label = {choice.label: choice for choice in offered}  # plain strings keep the widget simple
        label = st.selectbox(
            "Model", list(by_label), index=default_choice(participant, offered), key=f"{key}:model"
        )
        picked[participant.name] = by_label[label]
        values: dict[str, Any] = {
            "num_ctx": st.number_input(
                "num_ctx",
                min_value=256,
                value=options.num_ctx,
                step=1024,
                placeholder="server default",
                help="Context window in tokens. Too small and Ollama silently drops the oldest turns.",
                key=f"{key}:num_ctx",
            ),
            "num_gpu": st.number_input(
                "num_gpu",
                min_value=0,
                value=options.num_gpu,
                placeholder="server default",
                help="Layers on the GPU (999: all of them; 0: CPU only).",
                key=f"{key}:num_gpu",
            ),
            "keep_alive": st.text_input(
                "keep_alive",
                value=str(options.keep_alive),
                help="How long Ollama keeps the model loaded after a turn: 30m, 1h, 0 (unload), -1 (always).",
                key=f"{key}:keep_alive",
            ).strip(),
            "think": THINK[
                st.selectbox(
                    "think",
                    list(THINK),
                    index=list(THINK.values()).index(options.think),
                    key=f"{key}:think",
                )
            ],
            "temperature": st.number_input(
                "temperature",
                min_value=0.0,
                max_value=5.0,
                value=options.temperature,
                step=0.1,
                placeholder="server default",
                key=f"{key}:temperature",
            ),
        }
        for option, value in values.items():
            if value != getattr(options, option):
                settings.append((participant.name, option, launching.option_value(option, value)))

st.subheader("Residency")
residency = launching.residency_controls()

# ---- topic and turns ------------------------------------------------------------------------

st.subheader("Topic")
topic_source = st.radio("Give the topic", ["As text", "From a file"], horizontal=True, key="topic-source")
topic = ""
if topic_source == "As text":
    topic = st.text_area(
        "Topic",
        value="Is a model's context window a kind of memory?",
        height=120,
        key="topic-text",
    )
else:
    topic_file = st.file_uploader(
        f"A .md or .txt file, up to {UPLOAD_LIMIT_BYTES // 1000} kB",
        type=["md", "txt", "markdown"],
        max_upload_size=1,
        key="topic-file",
    )
    if topic_file is not None:
        topic, problem = launching.read_upload(topic_file, UPLOAD_LIMIT_BYTES)
        if problem:
            st.error(render.plain(problem))
            topic = ""
        else:
            st.caption(render.plain(f"{topic_file.name}: {len(topic.split())} words"))

turns = int(
    st.number_input(
        "Turns, the closing included",
        min_value=2,
        max_value=500,
        value=shape.turns,
        key=f"{scope}:turns",
    )
)
plan = plan_turns(shape, turns)
names = {p.name: p.label or picked[p.name].model for p in shape.participants}
st.caption(
    render.plain(" → ".join(f"{t.number} {names[t.speaker]} ({t.kind})" for t in plan[:12]))
    + (" …" if turns > 12 else "")
)

# ---- launch ---------------------------------------------------------------------------------

if st.button("Launch", type="primary", key="launch"):
    problem = None
    request = None
    try:
        if not topic.strip():
            raise DuologueError("no topic: write one, or upload a .md or .txt file")
        models = {name: choice.model for name, choice in picked.items()}
        final = with_overrides(shape, models, settings)
        embedded_url = None
        if any(choice.host is None for choice in picked.values()):
            embedded_url = common.embedded_server().url
        run_hosts = {name: choice.host or embedded_url or "" for name, choice in picked.items()}
        request = launching.request(final, topic, turns, run_hosts, embedded_url is not None, residency)
    except EmbeddedUnavailable as exc:
        problem = f"The embedded model is not installed here: {exc}"
    except DuologueError as exc:
        problem = str(exc)
    if problem or request is None:
        st.error(render.plain(problem or "could not build the run"))
    else:
        live = common.registry().launch(request)
        st.switch_page("views/run.py", query_params={"run": live.run_id})

# ---- runs in progress -----------------------------------------------------------------------

active = common.registry().active()
if active:
    st.subheader("Running now")
    for run in active:
        snap = run.snapshot()
        st.page_link(
            "views/run.py",
            label=render.plain(
                f"{run.run_id} · {(snap.resumed_after or 0) + len(snap.turns)}/{snap.planned_turns} turns"
            ),
            query_params={"run": run.run_id},
            icon=":material/play_circle:",
        )
