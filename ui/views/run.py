"""Run page: a run live while it streams, then every turn's text, numbers and inputs.

The run is named by ?run=ID, so a reload or a shared link opens it again. The id is looked
up in this server's registry (a dict) and through RunStore.load, which refuses ids that
could leave the runs folder; nothing else reads files. A failed or interrupted run can be
resumed from here, and a run paused for the facilitator takes their words here; either
continues in the background worker, under the same id, exactly as a launched run does.
"""

from __future__ import annotations

import streamlit as st

from graphs import DuologueError, EmbeddedUnavailable, RunRecord, Shape, labels, plan_turns
from graphs.ui import common, finding, insight, numbers, render, watch
from graphs.ui.live import LiveRun


def pick_run() -> None:
    """No run in the URL: offer the newest ones."""
    st.title("Run")
    runs = common.store().summaries()
    if not runs:
        st.info(render.plain(f"No runs in {common.store().root} yet."))
        st.page_link("views/launch.py", label="Launch one", icon=":material/rocket_launch:")
        return
    st.caption("Open a run (the Runs page has all of them, to filter and search):")
    for run in runs[:10]:
        st.page_link("views/run.py", label=finding.run_label(run), query_params={"run": run.run_id})


def resume(run: RunRecord, say: str | None) -> None:
    """Continue the run in the background worker, then show it live; a refusal is one error line."""
    meta = run.meta
    try:
        hosts = None
        if meta.embedded:  # the embedded server listens on a new port in this process
            url = common.embedded_server().url
            hosts = {p.name: url for p in meta.participants}
        live = common.registry().resume(run, say=say, hosts=hosts)
    except EmbeddedUnavailable as exc:
        st.error(render.plain(f"The embedded model is not installed here: {exc}"))
        return
    except DuologueError as exc:
        st.error(render.plain(exc))
        return
    st.session_state[f"resumed:{meta.run_id}"] = live
    st.rerun()


def facilitator_form(run: RunRecord) -> None:
    """A run paused for the facilitator: their words for the next speaker, or none."""
    meta = run.meta
    number = meta.paused_before_turn
    st.info(f"Paused before turn {number}, waiting for the facilitator's words.")
    words = st.text_area(
        f"The facilitator's words before turn {number}",
        key=f"say:{meta.run_id}:{number}",
        help=f"Relayed to the next speakers as the facilitator's, right before turn {number}: "
        "a challenge, a question, a correction.",
    )
    with st.container(horizontal=True):
        say = st.button("Say it and continue", type="primary", key=f"say-it:{meta.run_id}")
        skip = st.button("Continue without a word", key=f"no-word:{meta.run_id}")
    if say and not words.strip():
        st.error("Write the facilitator's words first, or continue without a word.")
    elif say:
        resume(run, words.strip())
    elif skip:
        resume(run, "")
    command = render.code_span(f"duologue resume {meta.run_id} --say TEXT")
    st.caption(f"From a terminal: {command} (`--say ''` adds nothing).")


def person_due(run: RunRecord, done: int) -> str | None:
    """Whose turn comes next when it is a person's (kind: person), by the shape the run recorded."""
    if run.meta.spec is None or done >= run.meta.turns:
        return None
    try:
        shape = Shape.model_validate(run.meta.spec)
    except ValueError:
        return None  # a record the page cannot read as a shape: its own message says why elsewhere
    speaker = plan_turns(shape, run.meta.turns)[done].speaker
    return labels(shape)[speaker] if shape.participant(speaker).is_person else None


def resume_button(run: RunRecord) -> None:
    if st.button(
        "Resume",
        key=f"resume:{run.meta.run_id}",
        icon=":material/play_arrow:",
        help="Continue from its last finished turn; finished turns are kept, not generated again.",
    ):
        resume(run, None)


def full_view(run: RunRecord, live: LiveRun | None) -> None:
    meta = run.meta
    names = render.run_names(run)
    models = ", ".join(p.model if p.label == p.model else f"{p.label} ({p.model})" for p in meta.participants)
    started = meta.started_at[:19].replace("T", " ")
    about = render.plain(f"shape {meta.shape} · {models} · started {started} UTC")
    st.caption(f"{render.status_label(run.status)} · {about}")
    done = len(run.finished_turns)
    if meta.status == "failed":
        reason = meta.error or "no reason recorded"
        st.error(render.plain(f"The run failed: {reason}. Its {done} finished turn(s) are below."))
        resume_button(run)
    elif meta.status == "interrupted" and meta.paused_before_turn:
        facilitator_form(run)
    elif meta.status == "interrupted":
        st.warning(f"The run was interrupted; its {done} finished turn(s) are kept below.")
        person = person_due(run, done)
        if person:
            st.info(render.plain(f"Turn {done + 1} is {person}'s: Resume asks for their words here."))
        resume_button(run)
    elif run.status == "stopped":
        st.warning(
            f"This run is marked running, but no process holds it: it was killed, or its machine went "
            f"down. Its {done} finished turn(s) are kept below."
        )
        resume_button(run)
    elif meta.status == "running" and live is None:
        st.info(
            "This run is being held by another process (a `duologue run` or another page server). "
            "Reload to see new turns."
        )
    numbers.show_totals(run)

    downloads = st.columns([1, 1, 1, 3])
    files = [
        ("transcript.md", "text/markdown", "dl-transcript"),
        ("trace.jsonl", "application/jsonl", "dl-trace"),
        ("inputs.jsonl", "application/jsonl", "dl-inputs"),
    ]
    for column, (name, mime, key) in zip(downloads, files, strict=False):
        path = run.folder / name
        data = path.read_bytes() if path.is_file() else b""
        column.download_button(name, data, file_name=name, mime=mime, key=key)

    transcript, turns, inputs, graph, analysis = st.tabs(
        ["Transcript", "Turns: trace and charts", "What each model was sent", "Graph", "Analysis"],
        key="run-tabs",
    )
    with transcript:
        render.show_transcript(run.transcript(), run.finished_records)
    with turns:
        numbers.show_trace_table(run.turn_records, names)
        numbers.show_charts(run.turn_records, names, numbers.min_rates(run, names))
        numbers.show_timeline(run.turn_records, names)
    with inputs:
        st.caption("Exactly the messages each model received for its turn, in order.")
        sent = run.read_inputs()
        render.show_inputs(sent.records, names, sent.unrebuilt)
    with graph:
        try:
            render.show_graph(run.shape())
        except DuologueError:
            st.caption("This run's record does not say what its shape was.")
    with analysis:
        insight.show_analysis(run)


run_id = st.query_params.get("run")
if not run_id:
    pick_run()
    st.stop()

live = common.registry().get(run_id)
st.title(f"Run {render.plain(run_id[:80])}")
if live is not None and not live.done:
    watch.live_view(live)
    st.stop()
try:
    record = common.store().load(run_id)
except DuologueError as exc:
    if live is not None and live.error:
        # It failed before it wrote anything, e.g. the host was down or lacks a model.
        st.error(render.plain(f"The run failed before its first turn: {live.error}"))
        st.page_link("views/launch.py", label="Back to Launch", icon=":material/rocket_launch:")
    else:
        st.error(render.plain(f"No such run: {exc}"))
        st.page_link("views/runs.py", label="See every run", icon=":material/list:")
    st.stop()
# A resume this session asked for that never started (the engine refused it): say why, once.
asked = st.session_state.get(f"resumed:{run_id}")
if asked is not None and asked.done:
    del st.session_state[f"resumed:{run_id}"]
    if asked.start_error:
        st.error(render.plain(f"The run was not continued: {asked.start_error}"))
full_view(record, live)
