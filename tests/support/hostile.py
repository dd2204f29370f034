"""Text that would fetch or link if the page read it as Markdown or HTML, planted in a run.

Every field the page shows that comes from a server or a file gets planted(field, sink):
an image, a link, raw HTML, an autolink, a bare URL, www., an e-mail address and an entity,
each pointing at `sink`. The page must show it all as text: no request reaches the sink, no
<a> or <img> in the page points there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from graphs import RunFailed, RunRecord, RunRequest, RunStore, load_shape, run_dialogue, with_overrides
from graphs.embedded.backend import BackendFailure, ChatRequest
from support.fakeollama import FakeModel

FIELDS = ("label", "topic", "reply", "error", "model")
"""The run's planted fields; the host's model list error is planted apart (host_down)."""


def planted(field: str, sink: str) -> str:
    """`field`'s text, carrying each way Markdown or HTML could reach `sink`."""
    return (
        f"{field}: ![s]({sink}/{field}/image.png) [details]({sink}/{field}/link) "
        f"<img src={sink}/{field}/html.png> <{sink}/{field}/auto> {sink}/{field}/bare "
        f"www.{field}.example mail@{field}.example &#91;x&#93;({sink}/{field}/entity) *{field}* $5"
    )


def hostile_models(sink: str) -> list[FakeModel]:
    """The duet's models: a's first reply is planted, its second call fails with a planted error."""

    def a_replies(_request: ChatRequest, n: int) -> str:
        if n > 1:
            raise BackendFailure(planted("error", sink))
        return planted("reply", sink)

    return [FakeModel("glm-4.7-flash", replies=a_replies), FakeModel("qwen3:32b")]


def hostile_run(url: str, runs_dir: Path, sink: str) -> RunRecord:
    """A duet on hostile_models at url that fails at turn 3, its labels, topic, replies, error
    and (written into run.json afterwards, as a file could say) models planted."""
    settings: list[tuple[str, str, Any]] = [
        ("a", "label", planted("label", sink) + " a"),
        ("b", "label", planted("label", sink) + " b"),
    ]
    shape = with_overrides(load_shape("duet"), {"a": "glm-4.7-flash", "b": "qwen3:32b"}, settings)
    with pytest.raises(RunFailed):
        run_dialogue(RunRequest(shape, planted("topic", sink), 4, {"a": url, "b": url}, runs_dir=runs_dir))
    [run] = RunStore(runs_dir).list()
    path = run.folder / "run.json"
    record = json.loads(path.read_text())
    for participant in record["participants"]:
        participant["model"] = planted("model", sink)
    path.write_text(json.dumps(record, indent=2))
    return RunStore(runs_dir).load(run.meta.run_id)
