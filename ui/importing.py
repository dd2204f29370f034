"""The Runs page's two additions: import a transcript by upload, and send 2–4 runs to Compare."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import streamlit as st

from graphs import DuologueError, RunStore, import_transcript
from graphs.ui import render

MAX_COMPARED = 4


def upload_form(store: RunStore) -> None:
    """A .md transcript uploaded becomes a run (as `duologue import` makes one), which then opens.

    The upload is written to a temporary file under its own name, so the importer's one line
    names the file the reader chose; a file is imported once, however often the page reruns.
    """
    with st.expander("Import a transcript (.md)", icon=":material/upload_file:"):
        upload = st.file_uploader(
            "A dialogue's transcript in the reference's format",
            type=["md"],
            key="import-file",
            help="It becomes a run of shape 'imported', which can be analyzed and compared.",
        )
        if upload is None:
            return
        done = st.session_state.get("imported")
        if done is not None and done[0] == upload.file_id:
            st.caption(render.plain(f"{upload.name} was imported as run {done[1]}."))
            return
        try:
            run_id = imported(upload.name, upload.getvalue(), store)
        except DuologueError as exc:
            st.error(render.plain(exc))
            return
        st.session_state["imported"] = (upload.file_id, run_id)
        st.switch_page("views/run.py", query_params={"run": run_id})


def imported(name: str, data: bytes, store: RunStore) -> str:
    """The new run's id; the temporary file is gone afterwards, whatever happened."""
    safe_name = Path(name).name or "transcript.md"
    with tempfile.TemporaryDirectory(prefix="duologue-import-") as folder:
        path = Path(folder) / safe_name
        path.write_bytes(data)
        try:
            return import_transcript(path, store.root).run_id
        except DuologueError as exc:  # the reader chose a file by its name, not our temporary path
            raise DuologueError(str(exc).replace(str(path), safe_name)) from None


def compare_button(run_ids: Sequence[str]) -> None:
    """Under the table in compare mode: the selected runs, on the Compare page."""
    count = len(run_ids)
    ready = 2 <= count <= MAX_COMPARED
    if st.button(
        f"Compare {count} runs" if ready else "Compare",
        type="primary",
        disabled=not ready,
        icon=":material/compare_arrows:",
        key="compare-selected",
        help="Select two to four rows.",
    ):
        st.switch_page("views/compare.py", query_params={"runs": ",".join(run_ids)})
    if count > MAX_COMPARED:
        st.caption(f"{count} rows selected; the Compare page takes up to {MAX_COMPARED}.")
