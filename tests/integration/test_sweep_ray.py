"""`duologue sweep --ray`: the same sweep on a local Ray cluster the test starts, each cell a
Ray task asking its host's custom resource; the same cells and results as in one process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.fakeollama import fake_ollama

from graphs.commands.cli import main

ray = pytest.importorskip("ray")

from integration.test_sweep import (  # noqa: E402 - after the skip without Ray
    CELLS,
    Logged,
    models,
    sweep_file,
    sweep_runs,
    wait_for,
)

COMPARED = (
    "cell",
    "status",
    "models",
    "topic",
    "seed",
    "tokens",
    "repeat",
    "turns_done",
    "tokens_per_s",
    "flags",
)


def test_ctrl_c_stops_every_cell_on_ray_and_records_each_interrupted(tmp_path: Path) -> None:
    """In its own process, which starts a local Ray cluster for the sweep (or joins the running one)."""
    with fake_ollama(models(), token_delay_s=0.05) as one, fake_ollama(models(), token_delay_s=0.05) as two:
        path = sweep_file(tmp_path, [one[0].url, two[0].url])
        runs_dir = tmp_path / "runs"
        command = [
            sys.executable,
            "-m",
            "graphs",
            "sweep",
            str(path),
            "--runs-dir",
            str(runs_dir),
            "--ray",
            "auto",
        ]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:

            def both_mid_dialogue() -> bool:
                runs = sweep_runs(runs_dir) if runs_dir.exists() else {}
                return len([r for r in runs.values() if r.meta.status == "running" and r.finished_turns]) == 2

            wait_for(both_mid_dialogue, "two cells mid-dialogue on Ray", seconds=180)
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=120)
        finally:
            process.kill()
    assert process.returncode == 130, err.decode()
    stopped = [r for r in sweep_runs(runs_dir).values() if r.meta.status != "completed"]
    assert len(stopped) == 2
    assert all((r.meta.status, r.meta.error) == ("interrupted", "interrupted by the user") for r in stopped)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    resources = {"duologue-host-1": 1, "duologue-host-2": 1, "gpu-box-1": 1}
    ray.init(num_cpus=2, include_dashboard=False, resources=resources, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def no_overlap(host: Logged) -> None:
    spans: dict[tuple[int, str, int | None], list[float]] = {}
    for call in host.calls:
        span = spans.setdefault((call.assignment, call.topic, call.seed), [call.started, call.ended])
        span[0], span[1] = min(span[0], call.started), max(span[1], call.ended)
    ordered = sorted(spans.values())
    assert all(end <= start for (_, end), (start, _) in zip(ordered, ordered[1:], strict=False))


def test_a_sweep_on_ray_holds_the_same_cells_with_the_same_results(
    local_ray: None, tmp_path: Path, capsys
) -> None:
    reports: dict[str, dict[str, Any]] = {}
    for where in ("process", "ray"):
        with (
            fake_ollama(models(), token_delay_s=0.01) as one,
            fake_ollama(models(), token_delay_s=0.01) as two,
        ):
            hosts = Logged(*one), Logged(*two)
            folder = tmp_path / where
            folder.mkdir()
            pool = [hosts[0].url, {"host": hosts[1].url, "ray_resource": "gpu-box-1"}]
            path = sweep_file(folder, pool)
            runs_dir = folder / "runs"
            extra = ["--ray", "auto"] if where == "ray" else []
            assert main(["sweep", str(path), "--runs-dir", str(runs_dir), "--json", *extra]) == 0
            reports[where] = json.loads(capsys.readouterr().out)
            for host in hosts:
                no_overlap(host)
            assert hosts[0].calls and hosts[1].calls
            served = {h.url: {(c.assignment, c.topic, c.seed) for c in h.calls} for h in hosts}
            for row in reports[where]["cells"]:
                key = (row["assignment"], row["topic"], row["seed"])
                assert key in served[row["host"]], "the host the report names served the cell"
            runs = sweep_runs(runs_dir)
            assert sorted(runs) == [number for number, *_ in CELLS]
            assert {row["run_id"] for row in reports[where]["cells"]} == {
                r.meta.run_id for r in runs.values()
            }

    process, on_ray = reports["process"], reports["ray"]
    assert on_ray["sweep_id"] == process["sweep_id"]
    assert [{k: row[k] for k in COMPARED} for row in on_ray["cells"]] == [
        {k: row[k] for k in COMPARED} for row in process["cells"]
    ]
    assert on_ray["assignments"] == process["assignments"]
    assert all(row["status"] == "completed" for row in on_ray["cells"])


def test_a_cluster_without_a_hosts_resource_is_one_line(local_ray: None, tmp_path: Path, capsys) -> None:
    path = sweep_file(tmp_path, ["http://127.0.0.1:9", "http://127.0.0.1:10", "http://127.0.0.1:11"])
    runs_dir = tmp_path / "runs"
    assert main(["sweep", str(path), "--runs-dir", str(runs_dir), "--ray", "auto"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "duologue: error: --ray: the Ray cluster has no resource duologue-host-3; start the node beside "
        """each host with `ray start ... --resources='{"duologue-host-3": 1}'`"""
    )


def test_without_ray_installed_it_says_what_to_install(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as without the extra
    path = sweep_file(tmp_path, ["http://127.0.0.1:9"])
    assert main(["sweep", str(path), "--runs-dir", str(tmp_path / "runs"), "--ray", "auto"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "duologue: error: --ray needs Ray, which is not installed: pip install 'duologue[ray]'"
    )
