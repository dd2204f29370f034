"""The launch page's logic that is not layout: uploads, option values, the run request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from graphs import RESIDENCY_POLICIES, RunRequest, Shape, new_run_id

from . import common

REQUIRE_GPU = {"once the host has shown a GPU": None, "yes": True, "no": False}


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
        **residency,
    )
