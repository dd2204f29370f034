"""An observer's notes on a finished or imported run (`duologue observe`).

The observer is sent the whole dialogue and the analysis's sentences (engine/relay.py's
observer_messages, the same as the graph's `observer` node), once; its notes go into
transcript.md as `## Observer's Notes (<label>)`, and its turn into trace.jsonl with kind
`observer` and its own numbers. Nothing it says reaches a speaker.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage

from graphs.engine.relay import dialogue_text, observer_messages
from graphs.engine.spec import ModelOptions, Participant
from graphs.errors import DuologueError
from graphs.insight.analysis import analyze
from graphs.insight.runs import dialogue_turns
from graphs.ollama import api
from graphs.ollama.connector import chat_model, close_chat_model
from graphs.ollama.residency import resolve_options
from graphs.ollama.timings import raw_fields, turn_numbers
from graphs.records.schema import TraceRecord
from graphs.records.store import RunStore, now_iso
from graphs.records.transcript import with_observer_notes

OBSERVER = "observer"


class ObserverFailed(DuologueError):
    """The observer's model could not write its notes; the run's record is unchanged."""

    exit_code = 1


def observe_run(
    run_id: str,
    model: str,
    host: str,
    runs_dir: Path | str | None = None,
    label: str | None = None,
    persona: str = "",
    options: ModelOptions | None = None,
    stop: threading.Event | None = None,
) -> tuple[str, TraceRecord]:
    """The observer's notes on the run, once they are in its transcript, and its trace row."""
    store = RunStore(runs_dir)
    run = store.load(run_id)
    turns = dialogue_turns(run)
    api.check_models(host, [model])
    speakers = list(dict.fromkeys(t.speaker for t in turns))
    dialogue = dialogue_text([(t.number, t.speaker, t.kind, t.text) for t in turns])
    summary = analyze(run.meta.run_id, turns).summary
    observer = Participant(
        name=OBSERVER, model=model, label=label, persona=persona, options=options or ModelOptions()
    )
    pinned = resolve_options(observer, api.show_model(host, model), dialogue, 1, host)
    observer = observer.model_copy(update={"options": pinned})
    messages = observer_messages(observer.display, persona, speakers, run.meta.topic, dialogue, summary)
    connector = chat_model(observer, host, stop=stop)
    started, started_at = time.perf_counter(), now_iso()
    try:
        reply: Any = connector.invoke(messages)
    except DuologueError:
        raise
    except Exception as exc:  # noqa: BLE001 - one line for any server fault; the record is untouched
        detail = api.describe_failure(exc, host) or f"{exc.__class__.__name__}: {exc}"
        raise ObserverFailed(f"the observer ({model}) failed: {detail}; run {run_id} is unchanged") from None
    finally:
        close_chat_model(connector)
    notes = reply.content.strip() if isinstance(reply, AIMessage) and isinstance(reply.content, str) else ""
    if not notes:
        raise ObserverFailed(f"the observer ({model}) wrote nothing; run {run_id} is unchanged")
    final = dict(getattr(reply, "response_metadata", {}) or {})
    last_seq = max((r.seq for r in run.trace), default=0)
    record = TraceRecord.model_validate(
        {
            "run_id": run.meta.run_id,
            "seq": last_seq + 1,
            "node": OBSERVER,
            "kind": OBSERVER,
            "speaker": OBSERVER,
            "model": model,
            "host": host,
            "started_at": started_at,
            "ended_at": now_iso(),
            "latency_s": round(time.perf_counter() - started, 6),
            "done_reason": final.get("done_reason"),
            **turn_numbers(final),
            **raw_fields(final),
        }
    )
    writer = store.reopen(run_id)
    writer.save_transcript(with_observer_notes(run.transcript(), observer.display, notes))
    writer.append_trace(record)
    return notes, record
