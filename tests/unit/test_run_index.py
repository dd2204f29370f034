"""The runs folder's index (graphs/records/index.py): a listing from it is the listing the folders
give, for 10,000 runs too; it follows runs changed by hand, by another machine or by an older
duologue, a corrupt or foreign index, and the store's own writes, without reading what did not change.

The folders are the truth here: `from_folders` summarizes every run from its run.json and trace.jsonl,
as the store did before it had an index.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from support.records import run_meta, trace_record, written_run

from graphs.commands.bench import small_run_folders
from graphs.commands.cli import main
from graphs.records.index import INDEX, INDEX_VERSION, RunSummary
from graphs.records.store import RunStore
from graphs.records.tables import RUNS_HEADERS, runs_rows, table


def from_folders(runs_dir: Path) -> list[RunSummary]:
    return [run.summary() for run in RunStore(runs_dir).list()]


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The runs a listing read from their folders, by id."""
    read: list[str] = []
    load = RunStore.load

    def counted(store: RunStore, run_id: str):
        read.append(run_id)
        return load(store, run_id)

    monkeypatch.setattr(RunStore, "load", counted)
    return read


def summary_of(runs_dir: Path, run_id: str) -> RunSummary:
    return RunStore(runs_dir).load(run_id).summary()


def five_runs(runs_dir: Path) -> list[str]:
    models = ["glm-4.7-flash", "qwen3:32b"]
    ids = [f"20261201-10000{n}-duet-0000000{n}" for n in range(5)]
    for n, run_id in enumerate(ids):
        written_run(
            runs_dir, run_id, "duet", models, "completed", f"2026-12-01T10:00:0{n}.000Z", f"topic {n}", "# duet\n",
            gpu_fraction=0.5 if n == 2 else 1.0, completion_tokens=10 + n,
        )  # fmt: skip
    return ids


# ---- 10,000 runs ---------------------------------------------------------------------------------


def test_a_listing_of_10000_runs_is_the_folders_listing_and_a_second_one_reads_no_folder(
    runs_dir: Path, loads: list[str]
):
    ids = small_run_folders(runs_dir)
    store = RunStore(runs_dir)
    cold = store.summaries()
    assert (runs_dir / INDEX).is_file()
    assert len(loads) == 10_000, "a missing index is built from every folder"
    assert len(cold) == 10_000 and {run.run_id for run in cold} == set(ids)
    assert [run.run_id for run in cold] == sorted(ids, reverse=True), "newest first"

    loads.clear()
    warm = store.summaries()
    assert loads == [], "nothing changed: the index has every row"
    assert warm == cold
    sample = cold[::97]
    truth = [summary_of(runs_dir, run.run_id) for run in sample]
    assert sample == truth
    assert runs_rows(sample) == runs_rows(truth)
    assert {run.status for run in warm} == {"completed", "failed", "interrupted"}
    assert sum("CPU" in run.flags for run in warm) == len(range(0, 10_000, 13))
    assert {run.sweep_id for run in warm} == {f"sweep-{n:04d}" for n in range(100)}


def test_duologue_runs_prints_what_the_folders_hold(runs_dir: Path, capsys):
    five_runs(runs_dir)
    RunStore(runs_dir).summaries()  # the index, built
    assert main(["runs", "--runs-dir", str(runs_dir)]) == 0
    assert capsys.readouterr().out == table(RUNS_HEADERS, runs_rows(from_folders(runs_dir))) + "\n"
    assert main(["runs", "--json", "--runs-dir", str(runs_dir)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["run_id"], r["tokens"], r["flags"]) for r in listed] == [
        ("20261201-100004-duet-00000004", 14, []),
        ("20261201-100003-duet-00000003", 13, []),
        ("20261201-100002-duet-00000002", 12, ["CPU"]),
        ("20261201-100001-duet-00000001", 11, []),
        ("20261201-100000-duet-00000000", 10, []),
    ]


# ---- what changes behind the store's back -------------------------------------------------------


def test_a_run_json_edited_by_hand_is_read_again_and_only_it(runs_dir: Path, loads: list[str]):
    ids = five_runs(runs_dir)
    RunStore(runs_dir).summaries()
    path = runs_dir / ids[1] / "run.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps(meta | {"status": "failed", "topic": "edited by hand"}, indent=2))
    loads.clear()
    listed = RunStore(runs_dir).summaries()
    assert loads == [ids[1]]
    assert listed == from_folders(runs_dir)
    assert (listed[3].status, listed[3].topic) == ("failed", "edited by hand")


def test_a_trace_appended_by_another_process_counts(runs_dir: Path, loads: list[str]):
    ids = five_runs(runs_dir)
    RunStore(runs_dir).summaries()
    row = trace_record(ids[0], 2, 2).model_copy(update={"completion_tokens": 5, "gpu_fraction": 0.0})
    with open(runs_dir / ids[0] / "trace.jsonl", "a") as trace:  # not through this process's store
        trace.write(row.model_dump_json() + "\n")
    loads.clear()
    listed = RunStore(runs_dir).summaries()
    assert loads == [ids[0]]
    assert listed == from_folders(runs_dir)
    assert (listed[-1].turns_done, listed[-1].tokens, listed[-1].flags) == (2, 15, ["CPU"])


def test_folders_removed_and_added_by_hand_leave_and_join_the_listing(runs_dir: Path, loads: list[str]):
    ids = five_runs(runs_dir)
    RunStore(runs_dir).summaries()
    shutil.rmtree(runs_dir / ids[3])
    copied = "20261202-090000-duet-0c0ffee0"
    shutil.copytree(runs_dir / ids[0], runs_dir / copied)  # as an older duologue, or rsync, would leave it
    meta = json.loads((runs_dir / copied / "run.json").read_text())
    (runs_dir / copied / "run.json").write_text(
        json.dumps(meta | {"run_id": copied, "started_at": "2026-12-02T09:00:00.000Z"})
    )
    (runs_dir / "notes").mkdir()  # a folder with no run.json is no run
    loads.clear()
    listed = RunStore(runs_dir).summaries()
    assert loads == [copied]
    assert [run.run_id for run in listed] == [copied, ids[4], ids[2], ids[1], ids[0]]
    assert listed == from_folders(runs_dir)
    rows = sqlite3.connect(runs_dir / INDEX).execute("SELECT run_id FROM runs ORDER BY run_id").fetchall()
    assert [run_id for (run_id,) in rows] == sorted([copied, ids[4], ids[2], ids[1], ids[0]])


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda path: path.write_bytes(b"\x00garbage, not a database" * 100), id="not-sqlite"),
        pytest.param(lambda path: path.write_bytes(path.read_bytes()[:200]), id="cut-short"),
        pytest.param(lambda path: path.write_bytes(b""), id="empty"),
        pytest.param(
            lambda path: sqlite3.connect(path).execute(f"PRAGMA user_version={INDEX_VERSION + 1}"),
            id="another-version",
        ),
        pytest.param(
            lambda path: sqlite3.connect(path, isolation_level=None).execute("UPDATE runs SET summary = '{'"),
            id="rows-unreadable",
        ),
    ],
)
def test_a_damaged_index_is_rebuilt_and_the_listing_is_whole(runs_dir: Path, damage, capsys):
    five_runs(runs_dir)
    before = RunStore(runs_dir).summaries()
    shutil.rmtree(runs_dir / before[0].run_id)  # and the folders moved on meanwhile
    damage(runs_dir / INDEX)
    listed = RunStore(runs_dir).summaries()
    assert listed == from_folders(runs_dir) == before[1:]
    again = sqlite3.connect(runs_dir / INDEX).execute("SELECT count(*) FROM runs").fetchone()
    assert again == (4,), "the index is whole again"
    assert main(["runs", "--runs-dir", str(runs_dir)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and len(out.splitlines()) == 2 + 4


def test_an_unreadable_run_is_listed_with_its_reason_from_the_index_too(runs_dir: Path, loads: list[str]):
    ids = five_runs(runs_dir)
    (runs_dir / ids[2] / "run.json").write_bytes(b'{"run_id": \xff}')
    cold = RunStore(runs_dir).summaries()
    loads.clear()
    warm = RunStore(runs_dir).summaries()
    assert loads == [] and warm == cold == from_folders(runs_dir)
    [bad] = [run for run in warm if run.unreadable]
    assert (bad.run_id, bad.status, bad.unreadable) == (
        ids[2],
        "unreadable",
        "run.json is not UTF-8 text (byte 0xff at offset 11)",
    )


# ---- the store's own writes ------------------------------------------------------------------------


def test_the_stores_writes_keep_the_index_so_a_listing_reads_no_folder(runs_dir: Path, loads: list[str]):
    ids = five_runs(runs_dir)
    store = RunStore(runs_dir)
    store.summaries()
    writer = store.create(run_meta("20261203-080000-duet-00000abc", "2026-12-03T08:00:00.000Z"))
    writer.append_trace(trace_record(writer.run_id, 1, 1).model_copy(update={"completion_tokens": 7}))
    failed = trace_record(writer.run_id, 2, 2).model_copy(update={"error": "boom", "latency_s": 2.0})
    writer.append_trace(failed)
    writer.save_meta(status="failed", error="boom")
    resumed = store.reopen(ids[0])  # a resume: the writer starts from the run's recorded trace
    resumed.append_trace(trace_record(ids[0], 2, 2).model_copy(update={"completion_tokens": 3}))
    store.delete(ids[4])
    loads.clear()
    listed = store.summaries()
    assert loads == [], "every change came through the store, which kept its row"
    assert listed == from_folders(runs_dir)
    assert [(r.run_id, r.status, r.turns_done, r.tokens, r.attempts_s, r.flags) for r in listed[:1]] == [
        (writer.run_id, "failed", 1, 7, 3.0, ["error"])
    ]
    assert (listed[-1].run_id, listed[-1].turns_done, listed[-1].tokens) == (ids[0], 2, 13)
    assert ids[4] not in [run.run_id for run in listed]


def test_a_run_recorded_running_is_stopped_unless_a_process_holds_it(runs_dir: Path):
    writer = RunStore(runs_dir).create(run_meta("r1"))
    RunStore(runs_dir).summaries()
    with writer.lock():
        [held] = RunStore(runs_dir).summaries()
    [left] = RunStore(runs_dir).summaries()
    assert (held.status, left.status) == ("running", "stopped")
    assert [left] == from_folders(runs_dir)


def test_the_bench_table_holds_the_listings_to_a_second():
    from graphs.commands import bench

    machine = {"cpu": "a CPU", "cores": 2, "python": "3.11", "date": "2026-12-02"}
    result = dict.fromkeys(bench.KEYS) | {"turns": 10, "repeat": 1, "machine": machine}
    result |= {"list_ms_10k_runs": 420.5, "list_cold_ms_10k_runs": 1800.0, "ui_list_ms_10k_runs": 1200.0}
    rows = {line.split()[0]: line.split()[1:] for line in bench.render_table(result).splitlines() if line}
    assert rows["list_ms_10k_runs"] == ["420.5", "ms", "<=", "1000", "ms", "yes"]
    assert rows["list_cold_ms_10k_runs"] == ["1800", "ms", "(index", "rebuilt)"]
    assert rows["ui_list_ms_10k_runs"] == ["1200", "ms", "<=", "1000", "ms", "no"]


def test_a_folder_copied_by_hand_keeps_its_own_folder_and_its_row(runs_dir: Path, loads: list[str]):
    ids = five_runs(runs_dir)
    shutil.copytree(runs_dir / ids[0], runs_dir / "copy-of-a-run")  # its run.json still says ids[0]
    cold = RunStore(runs_dir).summaries()
    loads.clear()
    warm = RunStore(runs_dir).summaries()
    assert loads == [] and warm == cold == from_folders(runs_dir)
    assert sorted(str(run.folder) for run in warm if run.run_id == ids[0]) == [
        str(runs_dir / ids[0]),
        str(runs_dir / "copy-of-a-run"),
    ]
