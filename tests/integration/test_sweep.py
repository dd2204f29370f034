"""`duologue sweep` and `sweep-report` against two Ollama-protocol test servers: the pool's
scheduling as the servers saw it, a sweep killed and run again, a host that starts failing,
the report's CSV, and sweep files with mistakes."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.fakeollama import FakeBackend, FakeModel, fake_ollama

from graphs.commands.cli import main
from graphs.embedded.backend import BackendFailure, ChatRequest
from graphs.records.store import RunRecord, RunStore
from graphs.records.tables import run_totals
from graphs.sweep.report import sweep_ids
from graphs.sweep.spec import load_sweep

A1, B1, A2, B2 = "glm-4.7-flash", "qwen3:32b", "llama3.2:3b", "gemma3:12b"
REPLIES = {A1: "Glm opens here.", B1: "Qwen answers so.", A2: "Llama says this.", B2: "Gemma closes it."}
RATES = {A1: 90.0, B1: 30.0, A2: 60.0, B2: 45.0}
ESSAY = "An essay on inherited memory."
QUESTION = "Is a diary a memory?"
TURNS = 4
CELL_TOKENS = 2 * 3 + 2 * 3  # each reply is three words, a token each
TURN_OF_MESSAGES = {2: 1, 3: 2, 5: 3, 6: 4}
"""A duet's turn by the messages its request carries: the system prompt, then the dialogue so far."""


def models() -> list[FakeModel | str]:
    return [FakeModel(name, replies=[text], gpu_tok_s=RATES[name]) for name, text in REPLIES.items()]


@dataclass
class Call:
    """One chat request as a server saw it: when, and which cell and turn it was."""

    started: float
    ended: float
    model: str
    assignment: int
    topic: str
    seed: int | None
    turn: int


class Logged:
    """A test server whose chat calls are timed, and which can start failing after `fail_after`."""

    def __init__(self, server: Any, backend: FakeBackend) -> None:
        self.server, self.backend = server, backend
        self.calls: list[Call] = []
        self.fail_after: int | None = None
        self.count = 0
        self.lock = threading.Lock()
        chat = backend.chat

        def timed(request: ChatRequest, cancelled: Any) -> Iterator[Any]:
            with self.lock:
                self.count += 1
                failing = self.fail_after is not None and self.count > self.fail_after
            if failing:
                raise BackendFailure("this host has gone bad")
            started = time.monotonic()
            try:
                yield from chat(request, cancelled)
            finally:  # the server stops reading once it has the final chunk
                self.calls.append(Call(started, time.monotonic(), request.model, *cell_of(request)))

        backend.chat = timed  # type: ignore[method-assign]

    @property
    def url(self) -> str:
        return str(self.server.url)


def cell_of(request: ChatRequest) -> tuple[int, str, int | None, int]:
    """(assignment, topic, seed, turn) of a request: its model's assignment, the topic its prompt
    quotes, its seed option, and its turn from how many messages it carries."""
    assignment = 0 if request.model in (A1, B1) else 1
    prompt = " ".join(str(m.get("content")) for m in request.messages)
    topic = "essay.md" if ESSAY in prompt else QUESTION
    return assignment, topic, request.options.get("seed"), TURN_OF_MESSAGES[len(request.messages)]


@contextmanager
def two_hosts(**kwargs: Any) -> Iterator[tuple[Logged, Logged]]:
    with ExitStack() as stack:
        logged = [Logged(*stack.enter_context(fake_ollama(models(), **kwargs))) for _ in range(2)]
        yield logged[0], logged[1]


def sweep_file(tmp_path: Path, hosts: list[Any], **more: Any) -> Path:
    (tmp_path / "essay.md").write_text(ESSAY + "\n", encoding="utf-8")
    data: dict[str, Any] = {
        "shape": "duet",
        "models": [{"a": A1, "b": B1}, {"a": A2, "b": B2}],
        "topics": ["essay.md", QUESTION],
        "seeds": [1, 2],
        "turns": TURNS,
        "hosts": hosts,
        "max_per_host": 1,
        "set": {"a.num_predict": 64},
    } | more
    path = tmp_path / "grid.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")  # JSON is YAML
    return path


CELLS = [
    (number, assignment, topic, seed)
    for number, (assignment, topic, seed) in enumerate(
        ((a, t, s) for a in (0, 1) for t in ("essay.md", QUESTION) for s in (1, 2)), start=1
    )
]


def minutes(run: RunRecord) -> float:
    """A cell's generation minutes, as `duologue runs` counts them (wall time: taken, not predicted)."""
    return float(run_totals(run)["generation_minutes"])  # type: ignore[arg-type]


def spread_of(values: list[float]) -> dict[str, Any]:
    return {
        "mean": round(statistics.fmean(values), 2),
        "spread": round(statistics.pstdev(values), 2),
        "n": len(values),
    }


def sweep_runs(runs_dir: Path) -> dict[int, RunRecord]:
    return {r.meta.cell: r for r in RunStore(runs_dir).list() if r.meta.cell is not None}


def host_of(cell: tuple[int, int, str, int], hosts: tuple[Logged, ...]) -> str:
    """The one server that served the cell's last turn."""
    _, assignment, topic, seed = cell
    served = [h.url for h in hosts for c in h.calls if (c.assignment, c.topic, c.seed, c.turn) == (
        assignment, topic, seed, TURNS)]  # fmt: skip
    assert len(served) == 1, served
    return served[0]


def test_a_two_host_sweep_holds_one_dialogue_per_host_and_keeps_models_together(
    tmp_path: Path, runs_dir: Path, capsys
):
    with two_hosts(token_delay_s=0.01) as (one, two):
        path = sweep_file(tmp_path, [one.url, two.url])
        assert main(["sweep", str(path), "--runs-dir", str(runs_dir), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)

    for host in (one, two):
        spans: dict[tuple[int, str, int | None], list[float]] = {}
        for call in host.calls:
            span = spans.setdefault((call.assignment, call.topic, call.seed), [call.started, call.ended])
            span[0], span[1] = min(span[0], call.started), max(span[1], call.ended)
        ordered = sorted(spans.items(), key=lambda item: item[1][0])
        for (_, (_, end)), (_, (start, _)) in zip(ordered, ordered[1:], strict=False):
            assert end <= start, "a host held two dialogues at once"
        assignments = [cell[0] for cell, _ in ordered]
        assert assignments == sorted(assignments, key=assignments.index), (
            f"cells with the same models ran back to back: {assignments}"
        )
        assert all(len([c for c in host.calls if (c.assignment, c.topic, c.seed) == cell]) == TURNS
                   for cell in spans)  # fmt: skip
    assert one.calls and two.calls, "both hosts worked"

    runs = sweep_runs(runs_dir)
    sweep_id = printed["sweep_id"]
    assert sweep_id.startswith("grid-")
    assert {r.meta.sweep_id for r in runs.values()} == {sweep_id}
    rows = []
    for cell in CELLS:
        number, assignment, topic, seed = cell
        a, b = (A1, B1) if assignment == 0 else (A2, B2)
        rows.append(
            {
                "cell": number,
                "run_id": runs[number].meta.run_id,
                "status": "completed",
                "host": host_of(cell, (one, two)),
                "models": {"a": a, "b": b},
                "topic": topic,
                "seed": seed,
                "tokens": CELL_TOKENS,
                "repeat": [1, 2].index(seed) + 1,
                "assignment": assignment,
                "turns_done": TURNS,
                "turns": TURNS,
                "tokens_per_s": {a: RATES[a], b: RATES[b]},
                "minutes": minutes(runs[number]),
                "flags": [],
                "verdict": None,
                "challenges": None,
                "questions": None,
            }
        )

    def spread(mean: float) -> dict[str, Any]:
        return {"mean": mean, "spread": 0.0, "n": 4}

    assert printed == {
        "sweep_id": sweep_id,
        "cells": rows,
        "assignments": [
            {
                "assignment": index,
                "models": {"a": a, "b": b},
                "cells": 4,
                "completed": 4,
                "tokens": spread(float(CELL_TOKENS)),
                "minutes": spread_of([minutes(runs[n]) for n, a, *_ in CELLS if a == index]),
                "tokens_per_s": {a: spread(RATES[a]), b: spread(RATES[b])},
                "verdicts": {},
            }
            for index, (a, b) in enumerate([(A1, B1), (A2, B2)])
        ],
        "left_pool": [],
    }
    # Each cell's seed went to every participant's requests.
    for host in (one, two):
        assert all(call.seed in (1, 2) for call in host.calls)
    assert main(["sweep-report", sweep_id, "--runs-dir", str(runs_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == printed, "sweep-report says what the sweep said"


def test_a_sweep_killed_mid_way_completes_when_run_again_without_regenerating_a_turn(
    tmp_path: Path, runs_dir: Path, capsys
):
    with two_hosts(token_delay_s=0.05) as (one, two):
        path = sweep_file(tmp_path, [one.url, two.url])
        command = [sys.executable, "-m", "graphs", "sweep", str(path), "--runs-dir", str(runs_dir)]
        process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                runs = sweep_runs(runs_dir) if runs_dir.exists() else {}
                done = [r for r in runs.values() if r.meta.status == "completed"]
                if len(done) >= 2 and any(0 < len(r.finished_turns) < TURNS for r in runs.values()):
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the sweep never got half-way")
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        killed = sweep_runs(runs_dir)
        finished_before = {(cell, t) for cell, run in killed.items() for t in run.finished_turns}
        assert any(run.status == "stopped" for run in killed.values())
        assert len(killed) < len(CELLS) or any(run.status != "completed" for run in killed.values())
        calls_before = len(one.calls) + len(two.calls)

        assert main(["sweep", str(path), "--runs-dir", str(runs_dir)]) == 0
        after = sweep_runs(runs_dir)
        assert sorted(after) == [number for number, *_ in CELLS]
        assert all(
            run.meta.status == "completed" and run.finished_turns == {1, 2, 3, 4} for run in after.values()
        )
        assert {cell: run.meta.run_id for cell, run in killed.items()} == {
            cell: after[cell].meta.run_id for cell in killed
        }, "the rerun resumed the cells' runs, it did not start them again"

        by_key: dict[tuple[int, str, int | None], int] = {(a, t, s): n for n, a, t, s in CELLS}
        served: dict[tuple[int, int], int] = {}
        for call in [*one.calls, *two.calls]:
            key = (by_key[(call.assignment, call.topic, call.seed)], call.turn)
            served[key] = served.get(key, 0) + 1
        assert calls_before < len(one.calls) + len(two.calls)
        for key in finished_before:
            assert served[key] == 1, f"cell {key[0]}'s finished turn {key[1]} was generated again"
        assert set(served) == {(number, turn) for number, *_ in CELLS for turn in range(1, TURNS + 1)}
        assert all(n == 1 for key, n in served.items() if key in finished_before)
        assert sum(n - 1 for n in served.values()) <= 2, "at most the turn each host had in progress"


def test_a_host_that_fails_twice_in_a_row_leaves_the_pool_and_the_other_finishes_its_cells(
    tmp_path: Path, runs_dir: Path, capsys
):
    with two_hosts() as (one, two):
        two.fail_after = TURNS  # it serves its first cell whole, then fails every chat
        path = sweep_file(tmp_path, [one.url, two.url])
        assert main(["sweep", str(path), "--runs-dir", str(runs_dir), "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    rows = {row["cell"]: row for row in report["cells"]}
    assert all(row["status"] == "completed" for row in rows.values())
    assert {n: row["host"] for n, row in rows.items()} == {n: two.url if n == 5 else one.url for n in rows}
    [left] = report["left_pool"]
    assert left["host"] == two.url and left["cells_moved"] == [6, 7, 8]
    assert "this host has gone bad" in left["reason"]
    assert f"duologue: host {two.url} left the pool after failing twice in a row" in err
    runs = sweep_runs(runs_dir)
    for number in (6, 7):  # failed on the bad host at turn 1, then held whole on the good one
        assert [r.host for r in runs[number].turn_rows] == [one.url] * TURNS
    assert f"host {two.url} left the pool" in report_text(report["sweep_id"], runs_dir, capsys)


def report_text(sweep_id: str, runs_dir: Path, capsys) -> str:
    assert main(["sweep-report", sweep_id, "--runs-dir", str(runs_dir)]) == 0
    return capsys.readouterr().out


def test_the_reports_csv_one_row_per_cell(tmp_path: Path, runs_dir: Path, capsys):
    with two_hosts() as (one, two):
        path = sweep_file(
            tmp_path,
            [one.url],
            models=[{"a": A1, "b": B1}],
            seeds=[7],
            residency="exclusive",
            require_gpu=True,
        )
        assert main(["sweep", str(path), "--runs-dir", str(runs_dir), "--json"]) == 0
    sweep_id = json.loads(capsys.readouterr().out)["sweep_id"]
    assert sweep_ids(runs_dir) == [sweep_id]
    runs = sweep_runs(runs_dir)
    for run in runs.values():  # the residency policy and require_gpu hold every cell, as a single run
        assert (run.meta.settings["residency_policy"], run.meta.settings["require_gpu"]) == (
            "exclusive",
            True,
        )
        assert {r.residency for r in run.turn_rows} == {"exclusive"}
        assert {r.require_gpu for r in run.turn_rows} == {True}
    assert main(["analyze", runs[1].meta.run_id, "--runs-dir", str(runs_dir), "--json"]) == 0
    analysis = json.loads(capsys.readouterr().out)
    csv_path = tmp_path / "report.csv"
    assert main(["sweep-report", sweep_id, "--runs-dir", str(runs_dir), "--csv", str(csv_path)]) == 0
    questions = sum(s["questions"] for s in analysis["speakers"].values())
    challenges = sum(s["challenges"] for s in analysis["speakers"].values())
    assert csv_path.read_text(encoding="utf-8") == (
        "cell,status,host,models,topic,seed,run_id,tokens,minutes,flags,verdict,challenges,questions,"
        f"tok/s {A1},tok/s {B1}\n"
        f"1,completed,{one.url},a={A1}; b={B1},essay.md,7,{runs[1].meta.run_id},{CELL_TOKENS},{minutes(runs[1])},,"
        f"{analysis['verdict']},{challenges},{questions},90.0,30.0\n"
        f"2,completed,{one.url},a={A1}; b={B1},{QUESTION},7,{runs[2].meta.run_id},{CELL_TOKENS},{minutes(runs[2])},,,,,"
        "90.0,30.0\n"
    )


def test_bad_sweep_files_are_one_line_naming_the_file_and_field(tmp_path: Path, runs_dir: Path, capsys):
    host = "http://127.0.0.1:9"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"stray": 1}, "stray: unknown field"),
        (
            {"models": [{"a": A1, "c": B1}]},
            "models.0.c: no participant 'c' in shape 'duet'; its participants are a, b",
        ),
        ({"topics": ["missing.md"]}, "topics.0: missing.md: no such file"),
    ]
    for more, problem in cases:
        path = sweep_file(tmp_path, [host], **more)
        assert main(["sweep", str(path), "--runs-dir", str(runs_dir)]) == 2
        assert capsys.readouterr().err == f"duologue: error: {path}: {problem}\n"
    assert main(["sweep-report", "nope", "--runs-dir", str(runs_dir)]) == 2
    assert capsys.readouterr().err == (
        f"duologue: error: no sweep 'nope' in {runs_dir} (`duologue sweep FILE` starts one)\n"
    )
    path = sweep_file(tmp_path, [host])
    assert main(["sweep", str(path), "--resume", "grid-0000000000", "--runs-dir", str(runs_dir)]) == 2
    assert capsys.readouterr().err.startswith(
        f"duologue: error: --resume grid-0000000000: {path} is sweep grid-"
    )
    assert not runs_dir.exists(), "nothing was held"


def start_sweep(path: Path, runs_dir: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "graphs", "sweep", str(path), "--runs-dir", str(runs_dir)]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_for(condition: Any, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"never: {what}")


def test_ctrl_c_stops_every_cell_and_records_each_interrupted(tmp_path: Path, runs_dir: Path):
    with two_hosts(token_delay_s=0.05) as (one, two):
        path = sweep_file(tmp_path, [one.url, two.url])
        process = start_sweep(path, runs_dir)
        try:

            def both_mid_dialogue() -> bool:
                runs = sweep_runs(runs_dir) if runs_dir.exists() else {}
                return len([r for r in runs.values() if r.meta.status == "running" and r.finished_turns]) == 2

            wait_for(both_mid_dialogue, "two cells mid-dialogue")
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=60)
        finally:
            process.kill()
    assert process.returncode == 130
    runs = sweep_runs(runs_dir)
    stopped = [r for r in runs.values() if r.meta.status != "completed"]
    assert len(stopped) == 2
    assert all(r.meta.status == "interrupted" and r.meta.error == "interrupted by the user" for r in stopped)
    assert b"sweep interrupted; run it again" in err


def test_a_second_ctrl_c_exits_at_once_with_the_running_cells_marked(tmp_path: Path, runs_dir: Path):
    gate = threading.Event()  # b's first turn sends two words, then nothing until the test ends
    with two_hosts(stall=(2, 2, gate)) as (one, _):
        path = sweep_file(tmp_path, [one.url], models=[{"a": A1, "b": B1}], topics=[QUESTION], seeds=[1])
        process = start_sweep(path, runs_dir)
        try:
            wait_for(lambda: len(one.backend.chat_requests) == 2, "b's turn in progress")
            process.send_signal(signal.SIGINT)
            time.sleep(1.0)  # a second Ctrl-C, not the first one again (cli.SAME_SIGNAL_S)
            assert process.poll() is None, "the stalled turn holds the sweep, as it would a user"
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=60)
        finally:
            gate.set()
            process.kill()
    assert process.returncode == 130, err.decode()
    [run] = sweep_runs(runs_dir).values()
    assert (run.meta.status, run.meta.error) == (
        "interrupted",
        "interrupted by the user (exited at once, before the turn in progress ended)",
    )
    assert f"duologue: exiting at once; run {run.meta.run_id} marked interrupted".encode() in err


def test_dry_run_prints_the_cells_and_the_plan_and_holds_nothing(tmp_path: Path, runs_dir: Path, capsys):
    path = sweep_file(tmp_path, ["http://gpu1:11434", "http://gpu2:11434"])
    assert main(["sweep", str(path), "--runs-dir", str(runs_dir), "--dry-run"]) == 0
    out = capsys.readouterr().out
    sweep_id = out.split()[1]
    assert out == (
        f"sweep {sweep_id} ({path}), 4 turns a cell\n"
        "8 cell(s):\n"
        f"  cell 1: a={A1}, b={B1} · topic essay.md · seed 1\n"
        f"  cell 2: a={A1}, b={B1} · topic essay.md · seed 2\n"
        f"  cell 3: a={A1}, b={B1} · topic {QUESTION} · seed 1\n"
        f"  cell 4: a={A1}, b={B1} · topic {QUESTION} · seed 2\n"
        f"  cell 5: a={A2}, b={B2} · topic essay.md · seed 1\n"
        f"  cell 6: a={A2}, b={B2} · topic essay.md · seed 2\n"
        f"  cell 7: a={A2}, b={B2} · topic {QUESTION} · seed 1\n"
        f"  cell 8: a={A2}, b={B2} · topic {QUESTION} · seed 2\n"
        "plan (one dialogue at a time per host, hosts at once):\n"
        "  http://gpu1:11434: cells 1, 2, 3, 4 (models 1)\n"
        "  http://gpu2:11434: cells 5, 6, 7, 8 (models 2)\n"
    )
    assert not runs_dir.exists()


def test_resume_by_sweep_id_runs_what_is_left_without_the_file(tmp_path: Path, runs_dir: Path, capsys):
    with two_hosts() as (_, two):
        two.fail_after = 0  # every chat fails: the one host leaves the pool, its cells wait
        path = sweep_file(tmp_path, [two.url], models=[{"a": A1, "b": B1}], seeds=[1])
        assert main(["sweep", str(path), "--runs-dir", str(runs_dir), "--json"]) == 1
        first = json.loads(capsys.readouterr().out)
        assert [row["status"] for row in first["cells"]] == ["failed", "failed"]
        path.unlink()
        two.fail_after = None
        assert main(["sweep", "--resume", first["sweep_id"], "--runs-dir", str(runs_dir), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert [(row["status"], row["run_id"]) for row in again["cells"]] == [
        ("completed", row["run_id"]) for row in first["cells"]
    ], "the same runs, resumed"
    assert again["left_pool"] == []


def test_max_per_host_caps_the_dialogues_a_host_holds_at_once(tmp_path: Path, runs_dir: Path, capsys):
    with two_hosts(token_delay_s=0.01) as (one, _):
        path = sweep_file(tmp_path, [one.url], topics=[QUESTION], max_per_host=2)
        assert main(["sweep", str(path), "--runs-dir", str(runs_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [row["status"] for row in report["cells"]] == ["completed"] * 4
    spans: dict[tuple[int, str, int | None], list[float]] = {}
    for call in one.calls:
        span = spans.setdefault((call.assignment, call.topic, call.seed), [call.started, call.ended])
        span[0], span[1] = min(span[0], call.started), max(span[1], call.ended)
    for start, _ in spans.values():
        held = [s for s, e in spans.values() if s <= start < e]
        assert len(held) <= 2, "never more than max_per_host dialogues on the host"


def test_one_url_for_two_ray_nodes_servers_sends_every_cell_to_that_url(tmp_path: Path, capsys):
    """Without --ray the node names only tell the pool's two hosts apart; each cell still goes to
    the URL itself, and the report names the server that answered."""
    with fake_ollama(models()) as served:
        url = served[0].url
        pool = [{"host": url, "ray_resource": "gpu-box-1"}, {"host": url, "ray_resource": "gpu-box-2"}]
        path = sweep_file(tmp_path, pool)
        runs_dir = tmp_path / "runs"
        assert main(["sweep", str(path), "--runs-dir", str(runs_dir), "--dry-run"]) == 0
        plan = capsys.readouterr().out
        assert f"{url}#gpu-box-1" in plan and f"{url}#gpu-box-2" in plan
        assert main(["sweep", str(path), "--runs-dir", str(runs_dir), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
    runs = sweep_runs(runs_dir)
    assert sorted(runs) == [number for number, *_ in CELLS]
    assert {p.host for run in runs.values() for p in run.meta.participants} == {url}
    assert [(row["status"], row["host"]) for row in report["cells"]] == [("completed", url)] * len(CELLS)


def test_when_every_host_has_left_the_pool_it_says_so_and_how_to_go_on(
    tmp_path: Path, runs_dir: Path, capsys
):
    path = sweep_file(tmp_path, ["http://127.0.0.1:9", "http://127.0.0.1:10"])
    assert main(["sweep", str(path), "--runs-dir", str(runs_dir)]) == 1
    err = capsys.readouterr().err.splitlines()
    sweep_id = load_sweep(path).sweep_id
    assert err[-1] == (
        f"duologue: no host is left in the pool, so {len(CELLS)} cell(s) did not finish; "
        f"mend the hosts, then run the sweep again (`duologue sweep --resume {sweep_id}`)"
    )
    assert sum("left the pool after failing twice in a row" in line for line in err) == 2
