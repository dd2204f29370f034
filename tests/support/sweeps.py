"""A sweep written by hand, for the Sweeps page's tests: its sweep.json from a sweep file
(graphs.sweep.spec), and a run per begun cell with its sweep_id and cell in run.json."""

from __future__ import annotations

from pathlib import Path

from graphs.insight.analysis import Analysis
from graphs.records.store import RunStore, RunWriter
from graphs.sweep.spec import load_sweep, manifest_of
from support.records import written_run

GLM, QWEN, LLAMA = "glm-4.7-flash", "qwen3:32b", "llama3.2:3b"
DIARY = "Is a diary a memory?"
MARKUP = "**Bold** and [a link](http://example.com) <b>HTML</b>"
SWEEP_FILE = f"""
shape: duet
models:
  - {{a: {GLM}, b: {QWEN}}}
  - {{a: {LLAMA}, b: {QWEN}}}
topics: ["{DIARY}", "{MARKUP}"]
seeds: [7]
turns: 4
hosts: [http://127.0.0.1:9]
"""
RUNS = {  # cell: run id, status, the first model's tok/s, the verdict
    1: ("20261201-100000-duet-0000c001", "completed", 30.0, "converged"),
    2: ("20261201-100100-duet-0000c002", "completed", 25.0, "contested"),
    3: ("20261201-100200-duet-0000c003", "running", 50.0, None),
}
"""Cells 1-3 begun, cell 4 not."""
ALONE = "20261201-110000-duet-00000ff0"
"""A run of no sweep."""


def analysis(run_id: str, verdict: str) -> Analysis:
    return Analysis(
        run_id=run_id, verdict=verdict, verdict_reason="", speakers={}, turns=[], phrases=[], loops=[],
        closing_attribution=[], summary=[],
    )  # fmt: skip


def written_sweep(runs_dir: Path, folder: Path) -> tuple[str, dict[int, RunWriter]]:
    """The sweep of SWEEP_FILE (written into `folder`) with RUNS: two cells completed and analyzed,
    one recorded running (no process holds it unless the caller takes its writer's lock), one not
    begun; and a run of no sweep. Returns the sweep's id and each begun cell's writer."""
    path = folder / "pairs.yaml"
    path.write_text(SWEEP_FILE)
    planned = load_sweep(path)
    manifest = manifest_of(planned)
    store = RunStore(runs_dir)
    store.save_sweep(planned.sweep_id, manifest)
    store.summaries()  # the index exists: the runs below are written into it as they are made
    writers = {}
    for cell in manifest.cells[:3]:
        run_id, status, rate, verdict = RUNS[cell.cell]
        written_run(
            runs_dir, run_id, "duet", list(cell.models.values()), status,
            f"2026-12-01T10:0{cell.cell - 1}:00.000Z", cell.topic, "# duet\n\n## Turn 1\n\nA first turn.\n",
            completion_tokens=40, tokens_per_s=rate,
        )  # fmt: skip
        writer = store.reopen(run_id)
        writer.save_meta(sweep_id=planned.sweep_id, cell=cell.cell)
        if verdict:
            writer.save_analysis(analysis(run_id, verdict))
        writers[cell.cell] = writer
    written_run(runs_dir, ALONE, "duet", [GLM], "completed", "2026-12-01T11:00:00.000Z", "alone", "# duet\n")
    return planned.sweep_id, writers
