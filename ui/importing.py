"""The Runs page's actions: import a transcript by upload, send 2–4 runs to Compare, delete runs."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import streamlit as st

from graphs import DuologueError, RunStore, RunSummary, import_transcript
from graphs.ui import common, render

MIN_COMPARED, MAX_COMPARED = 2, 4
ASKED, DELETED = "delete-asked", "delete-report"
"""Session keys: the runs a Delete click asks about, and what the confirmed deletion did."""


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
    """Under the table in select mode: the selected runs, on the Compare page, if there are 2–4."""
    count = len(run_ids)
    ready = MIN_COMPARED <= count <= MAX_COMPARED
    if st.button(
        f"Compare {count} runs" if ready else "Compare",
        type="primary",
        disabled=not ready,
        icon=":material/compare_arrows:",
        key="compare-selected",
        help=f"Select {MIN_COMPARED} to {MAX_COMPARED} rows.",
    ):
        st.switch_page("views/compare.py", query_params={"runs": ",".join(run_ids)})
    if not ready:
        st.caption(compare_hint(count))


def compare_hint(count: int) -> str:
    """Why Compare waits: the 2–4 rule, said for the rows selected now."""
    if count == 0:
        return f"Select {MIN_COMPARED} to {MAX_COMPARED} runs to compare them side by side."
    if count < MIN_COMPARED:
        return f"1 run selected: select at least one more to compare (up to {MAX_COMPARED})."
    return (
        f"{count} runs selected: the Compare page takes at most {MAX_COMPARED}; "
        f"unselect {count - MAX_COMPARED} to compare."
    )


def delete_button(run_ids: Sequence[str]) -> None:
    """Under the table in select mode: asks to delete the selected runs (delete_confirmation)."""
    count = len(run_ids)
    if st.button(
        f"Delete {count} run{'s' if count != 1 else ''}…" if count else "Delete…",
        disabled=not count,
        icon=":material/delete:",
        key="delete-selected",
        help="Asks before it deletes.",
    ):
        st.session_state[ASKED] = tuple(run_ids)


def delete_confirmation(runs: Sequence[RunSummary], store: RunStore) -> None:
    """The second click that deletes the runs Delete asked about, while they are still selected.

    It names the runs, and says what stays in a database. Only RunStore.delete removes a folder;
    a run this page is driving is refused before the store is asked.
    """
    run_ids = tuple(run.run_id for run in runs)
    count = len(run_ids)
    if st.session_state.get(ASKED) != run_ids or not count:
        st.session_state.pop(ASKED, None)  # the selection changed: ask again
        return
    with st.container(border=True, key="delete-confirmation"):
        named = ", ".join(render.plain(run_id) for run_id in run_ids)
        st.warning(
            f"Delete run {named} for good? Its folder goes, with every record in it."
            if count == 1
            else f"Delete these {count} runs for good? Their folders go, with every record in them: {named}.",
            icon=":material/delete_forever:",
        )
        for run in runs:
            if run.checkpoint_store:
                st.caption(
                    render.plain(
                        f"Run {run.run_id} keeps its checkpoints in Postgres "
                        f"({run.checkpoint_store}): its rows stay in that database."
                    )
                )
        with st.container(horizontal=True):
            confirmed = st.button("Delete for good", type="primary", key="delete-confirm")
            kept = st.button("Keep them" if count > 1 else "Keep it", key="delete-cancel")
    if kept:
        st.session_state.pop(ASKED, None)
        st.rerun()
    if confirmed:
        st.session_state.pop(ASKED, None)
        st.session_state[DELETED] = deleted(run_ids, store)
        st.rerun()


def deleted(run_ids: Sequence[str], store: RunStore) -> tuple[list[str], list[str]]:
    """The runs deleted, and one line for each that was refused."""
    gone, refused = [], []
    for run_id in run_ids:
        live = common.registry().get(run_id)
        if live is not None and not live.done:
            refused.append(
                f"Not deleted: run {run_id} is running from this page; stop it on its page, then delete it."
            )
            continue
        try:
            store.delete(run_id)
        except DuologueError as exc:
            refused.append(f"Not deleted: {exc}")
        else:
            gone.append(run_id)
    return gone, refused


def deletion_report() -> None:
    """What the last deletion did, once, after the page redrew without the deleted runs."""
    report = st.session_state.pop(DELETED, None)
    if report is None:
        return
    gone, refused = report
    if gone:
        st.success(
            render.plain(f"Deleted {len(gone)} run{'s' if len(gone) != 1 else ''}: {', '.join(gone)}"),
            icon=":material/delete:",
        )
    for line in refused:
        st.error(render.plain(line))
