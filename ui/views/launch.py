"""Launch page: a shape, a model per participant (the host's by default), options, a topic, Check, Launch.

Each model shows its size and whether it fits the host's GPU, as far as /api/ps tells; Check
runs doctor with the form's options and starts nothing. The run itself goes to a background
worker (graphs.ui.live); this page only builds the request and then opens the run's page,
whose URL names the run so a reload finds it.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from graphs import (
    MAX_TURNS,
    MIN_TURNS,
    TIMEOUT_S,
    DuologueError,
    EmbeddedUnavailable,
    Participant,
    Shape,
    builtin_shape_names,
    default_host,
    embedded_models,
    examine,
    load_shape,
    normalize_host,
    parse_shape,
    plan_turns,
    suited_participant,
    suited_to_embedded,
    with_overrides,
)
from graphs.ui import common, launching, render
from graphs.ui.launching import Choice

UPLOAD_LIMIT_BYTES = 1_000_000  # as `duologue run --topic-file`: a topic or essay, not a book


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
openai_url = (
    st.text_input(
        "OpenAI-compatible server",
        value="",
        placeholder="http://127.0.0.1:8080/v1",
        help="Optional: a server speaking the OpenAI chat API (llama.cpp's llama-server, vLLM, LM Studio, "
        "SGLang), its address ending in /v1. Its models are offered beside the Ollama host's; it keeps "
        "its own context size and GPU settings, so where its models sit is unknown here.",
        key="openai-url",
    )
    .strip()
    .rstrip("/")
)
hosts = {p.name: normalize_host(p.host) if p.host else host for p in shape.participants}
page_server = (openai_url, None) if openai_url else None
servers = [(p.base_url, p.api_key_env) for p in shape.participants if p.base_url]  # the shape's own
if page_server:
    servers.append(page_server)
served = {server: common.openai_models(*server) for server in dict.fromkeys(servers)}
for found_there in served.values():
    if found_there.error:
        st.error(render.plain(launching.in_page_words(found_there.error)))
listed = {h: common.host_models(h) for h in dict.fromkeys(hosts.values())}
for found in listed.values():
    if found.error:
        st.error(render.plain(launching.in_page_words(found.error)))
if any(found.error for found in listed.values()):
    st.info(
        "The embedded model is offered in every participant's list: a small real model "
        "(SmolLM2-135M) that runs on this machine's CPU, no Ollama needed."
    )
elif any(not found.models for found in listed.values()):
    st.warning("A host answered but has no models; pull one with `ollama pull`, or use the embedded model.")
pulled = {found.host: found.models for found in listed.values()}
loaded = {found.host: common.host_residents(found.host) for found in listed.values() if not found.error}
embedded = [Choice(model, None) for model in embedded_models()]


def choices_for(participant: Participant) -> list[Choice]:
    """The host's models, the most recently pulled first, then the OpenAI-compatible server's,
    then the embedded ones; for a participant the shape puts on such a server, that server's
    (its own model if the server cannot say, so that Launch and Check tell why)."""
    if participant.base_url:
        own = served[(participant.base_url, participant.api_key_env)]
        names = own.names or (participant.model,)
        return [Choice(name, participant.base_url, openai=True) for name in names]
    found = listed[hosts[participant.name]]
    there = served[page_server].names if page_server else ()
    return (
        [Choice(model.name, found.host) for model in found.models]
        + [Choice(name, openai_url, openai=True) for name in there]
        + embedded
    )


speaking_models = [p for p in shape.participants if not p.is_person]  # a person picks no model
offered = {p.name: choices_for(p) for p in speaking_models}
defaults = launching.default_choices(speaking_models, offered)

# ---- participants -------------------------------------------------------------------------

THINK = {"model's default": None, "on": True, "off": False}
picked: dict[str, Choice] = {}
settings: list[tuple[str, str, Any]] = []
st.subheader("Participants")
columns = st.columns(len(shape.participants))
boxes = {}
for participant, column in zip(shape.participants, columns, strict=True):
    key = f"{scope}:{participant.name}"
    with column:
        boxes[participant.name] = st.container(border=True, key=f"participant-{participant.name}")
    with boxes[participant.name]:
        st.markdown(
            f"**{render.plain(participant.label or 'Participant')}** · {render.code_span(participant.name)}"
        )
        if participant.is_person:
            st.caption("A person: you write their turns in the run's box, each one sent with Send.")
            continue
        choices = offered[participant.name]
        by_label = {choice.label: choice for choice in choices}  # plain strings keep the widget simple
        default = defaults.get(participant.name)
        # The default until the user picks, and again once a host that had no models lists some.
        hosted = any(choice.host is not None for choice in choices)
        if st.session_state.get(f"{key}:model") not in by_label or (
            hosted and not st.session_state.get(f"{key}:hosted")
        ):
            st.session_state[f"{key}:model"] = default.label if default else next(iter(by_label), None)
        st.session_state[f"{key}:hosted"] = hosted
        label = st.selectbox("Model", list(by_label), key=f"{key}:model")
        picked[participant.name] = by_label[label]
for participant in speaking_models:
    choice = picked[participant.name]
    key = f"{scope}:{participant.name}"
    base = participant
    if choice.host is None:  # the embedded model's defaults, as the run will apply them
        base = suited_participant(participant.model_copy(update={"model": choice.model}), False)
        key = f"{key}:embedded:{choice.model}"
    if choice.openai:
        key = f"{key}:openai:{choice.host}"
    options = base.options
    with boxes[participant.name]:
        st.caption(render.plain(launching.gpu_fit(participant.name, picked, pulled, loaded)))
        if choice.host is None:
            st.caption("The embedded model's own options fill those you leave as they are.")
        if choice.openai:
            st.caption(
                "Its context size, GPU layers and how long it stays loaded are the server's own "
                "settings, made where the server is started."
            )
            values: dict[str, Any] = {
                "num_predict": st.number_input(
                    "num_predict",
                    min_value=1,
                    value=options.num_predict,
                    step=256,
                    placeholder="1024",
                    help="Most tokens a turn may generate (sent as max_tokens).",
                    key=f"{key}:num_predict",
                ),
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
                    settings.append((participant.name, option, value))
            continue
        values = {
            "num_ctx": st.number_input(
                "num_ctx",
                min_value=256,
                value=options.num_ctx,
                step=1024,
                placeholder="sized to the dialogue",
                help="Context window in tokens. Too small and Ollama silently drops the oldest turns; "
                "left empty, it holds the whole dialogue, up to the model's trained context.",
                key=f"{key}:num_ctx",
            ),
            "num_predict": st.number_input(
                "num_predict",
                min_value=-2,
                value=options.num_predict,
                step=256,
                placeholder="1024, or 4096 if it thinks",
                help="Most tokens a turn may generate, its thinking included; -1: no limit, "
                "-2: until the context is full.",
                key=f"{key}:num_predict",
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

if shape.observer is not None:
    where = normalize_host(shape.observer.host or host)
    st.caption(
        render.plain(
            f"Observer: {shape.observer.label or shape.observer.model} ({shape.observer.model} on {where}, "
            "as the shape names it) reads the finished dialogue and writes notes on it."
        )
    )

st.subheader("Residency")
residency = launching.residency_controls()
timeout_s = float(
    st.number_input(
        "Timeout, seconds",
        min_value=1.0,
        value=TIMEOUT_S,
        step=30.0,
        format="%.0f",
        help="Give up on a turn when its model sends nothing for this long, before its first token "
        "or between two chunks; the default suits a 32B model loading from disk. Check waits as long.",
        key="timeout",
    )
)

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
        min_value=MIN_TURNS,
        max_value=MAX_TURNS,
        value=shape.turns,
        key=f"{scope}:turns",
    )
)
plan = plan_turns(shape, turns)
names = {
    p.name: p.label or (picked[p.name].model if p.name in picked else p.display) for p in shape.participants
}
st.caption(
    render.plain(" → ".join(f"{t.number} {names[t.speaker]} ({t.kind})" for t in plan[:12]))
    + (" …" if turns > 12 else "")
)

# ---- check, then launch -----------------------------------------------------------------------


def final_shape(chosen: Shape) -> tuple[Shape, dict[str, str], bool]:
    """The shape as the run will hold it, each participant's host, and whether the embedded
    server is used (started here if it is); raises DuologueError, in the CLI's words."""
    models = {name: choice.as_flag for name, choice in picked.items()}
    final = with_overrides(chosen, models, settings)
    embedded_url = None
    if any(choice.host is None for choice in picked.values()):
        final = suited_to_embedded(final)  # short turns, and framing a 135M model answers
        embedded_url = common.embedded_server().url
    run_hosts = {name: choice.host or embedded_url or "" for name, choice in picked.items()}
    if final.observer is not None:  # as the shape names it, on its host or the page's
        observer = final.observer.as_participant()
        run_hosts[observer.name] = normalize_host(observer.host or host)
    return final, run_hosts, embedded_url is not None


def problem_of(exc: DuologueError) -> str:
    if isinstance(exc, EmbeddedUnavailable):
        return f"The embedded model is not installed here: {exc}"
    return launching.in_page_words(str(exc))


form = (
    scope,
    tuple((name, choice.model, choice.host, choice.openai) for name, choice in picked.items()),
    tuple(map(repr, settings)),
    turns,
    topic,
    tuple(residency.items()),
    timeout_s,
)  # what a check was made for: its findings are shown while the form still says this
buttons = st.container(horizontal=True)
launched = buttons.button("Launch", type="primary", key="launch")
checked = buttons.button(
    "Check",
    key="check",
    help="Run doctor for these participants with these options: loads each model as a run would "
    "place it (unloading the others on its host) and times a short generation. Starts no run.",
)
if checked:
    try:
        final, run_hosts, _embedded = final_shape(shape)
        busy = launching.busy_hosts(common.registry().active(), run_hosts.values())
        if busy:
            line = (
                f"A run is going on {', '.join(busy)}: Check loads and unloads models there, which would "
                "disturb it. Check again once it has ended, or stop it."
            )
            st.session_state["launch-check"] = (form, "warning", line, None)
        else:
            with st.spinner("Checking each model: loading it as a run would, then a short generation…"):
                report = examine(
                    final.connected,
                    run_hosts,
                    residency["require_gpu"],
                    turns,
                    topic,
                    timeout_s=timeout_s,
                )
            common.host_residents.clear()  # the check loaded models: the fit notes read /api/ps again
            kind, line = launching.verdict(report)
            st.session_state["launch-check"] = (form, kind, line, launching.in_page_words(report.text()))
    except DuologueError as exc:
        st.session_state["launch-check"] = (form, "error", problem_of(exc), None)
    st.rerun()  # the form again, its fit notes from what the check left loaded, then the findings
found = st.session_state.get("launch-check")
if found and found[0] == form:
    _, kind, line, text = found
    {"success": st.success, "warning": st.warning, "error": st.error}[kind](render.plain(line))
    if text:
        st.code(text, language=None, wrap_lines=True)

if launched:
    problem = None
    request = None
    try:
        if not topic.strip():
            raise DuologueError("no topic: write one, or upload a .md or .txt file")
        final, run_hosts, uses_embedded = final_shape(shape)
        request = launching.request(final, topic, turns, run_hosts, uses_embedded, residency, timeout_s)
    except DuologueError as exc:
        problem = problem_of(exc)
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
