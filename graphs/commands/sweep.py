"""`duologue sweep` and `duologue sweep-report`: the terminal's side of graphs/sweep."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from graphs.errors import DuologueError
from graphs.records.tables import number, table

if TYPE_CHECKING:
    from graphs.sweep.driver import SweepDriver, SweepProgress
    from graphs.sweep.report import SweepReport
    from graphs.sweep.spec import Sweep

EXIT_CELLS_FAILED = 1
PROGRESS_EVERY_S = 0.2
"""A terminal's progress line is redrawn at most this often (tokens change it on every turn)."""


def add_commands(commands: Any, runs_dir_option: Callable[[argparse.ArgumentParser], None]) -> None:
    sweep = commands.add_parser(
        "sweep", help="hold one shape over model assignments, topics and seeds, on a pool of hosts"
    )
    sweep.add_argument("file", nargs="?", type=Path, metavar="SWEEP.yaml", help="the sweep file")
    sweep.add_argument(
        "--resume",
        metavar="SWEEP_ID",
        help="continue a sweep from its sweep.json in the runs folder (the file is not needed)",
    )
    sweep.add_argument(
        "--dry-run", action="store_true", help="print the cells and which host runs which; run nothing"
    )
    sweep.add_argument("--json", action="store_true", help="print the sweep's cells as JSON at the end")
    sweep.add_argument(
        "--ray",
        metavar="auto|ADDRESS",
        help="run each cell as a Ray task: auto joins the running cluster, else starts one here; ADDRESS "
        "joins that one (needs duologue[ray])",
    )
    sweep.add_argument(
        "--no-trace", action="store_true", help="don't export the cells' traces (LangSmith, OpenTelemetry)"
    )
    sweep.add_argument(
        "--checkpoint-url",
        metavar="URL",
        help="keep the cells' checkpoints in this Postgres database (default: $DUOLOGUE_CHECKPOINT_URL, "
        "else SQLite in each run's folder)",
    )
    runs_dir_option(sweep)

    report = commands.add_parser("sweep-report", help="a sweep's cells and each model assignment's figures")
    report.add_argument("sweep_id", metavar="SWEEP_ID", help="the sweep's id, as `duologue sweep` prints it")
    report.add_argument("--json", action="store_true", help="print the report as one JSON object")
    report.add_argument("--csv", type=Path, metavar="FILE", help="also write one row per cell to FILE")
    runs_dir_option(report)


def chosen_sweep(args: argparse.Namespace) -> Sweep:
    from graphs.sweep.spec import load_manifest, load_sweep

    if args.file is None and args.resume is None:
        raise DuologueError("no sweep: give a sweep file, or --resume SWEEP_ID")
    if args.file is None:
        return load_manifest(args.resume, args.runs_dir).sweep()
    sweep = load_sweep(args.file)
    if args.resume is not None and args.resume != sweep.sweep_id:
        raise DuologueError(
            f"--resume {args.resume}: {args.file} is sweep {sweep.sweep_id}; give one of them "
            "(a changed file makes another sweep)"
        )
    return sweep


def cmd_sweep(args: argparse.Namespace) -> int:
    from graphs.commands.cli import interrupt_signals, mark_interrupted
    from graphs.sweep.driver import SweepDriver

    sweep = chosen_sweep(args)
    stop = threading.Event()
    line = ProgressLine(sys.stderr)
    driver = SweepDriver(
        sweep,
        args.runs_dir,
        stop=stop,
        progress=line.show,
        checkpoint_url=args.checkpoint_url,
        trace=not args.no_trace,
    )
    if args.dry_run:
        print(dry_run(driver, args.json))
        return 0
    if args.ray is not None:
        from graphs.sweep.on_ray import run_on_ray

        hold: Callable[[], Any] = lambda: run_on_ray(driver, args.ray)  # noqa: E731
    else:
        hold = driver.run
    print(f"duologue: sweep {sweep.sweep_id}: {len(driver.cells)} cell(s) on {len(sweep.hosts)} host(s)",
          file=sys.stderr)  # fmt: skip

    def forced_exit() -> str:
        said = [mark_interrupted(folder) for folder in driver.running_folders()]
        return "; ".join(said) or "no cell was running"

    with interrupt_signals(stop, forced_exit):
        outcome = hold()
    line.end()
    report = outcome.report
    for left in report.left_pool:
        moved = ", ".join(map(str, left.cells_moved)) or "none"
        print(
            f"duologue: host {left.host} left the pool after failing twice in a row ({left.reason}); "
            f"its cells still to run moved to the others: {moved}",
            file=sys.stderr,
        )
    unfinished = [row.cell for row in report.cells if row.status != "completed"]
    if unfinished and len({left.host for left in report.left_pool}) == len(sweep.hosts):
        print(
            f"duologue: no host is left in the pool, so {len(unfinished)} cell(s) did not finish; "
            f"mend the hosts, then run the sweep again (`duologue sweep --resume {sweep.sweep_id}`)",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
    else:
        print(summary(report))
    if outcome.interrupted:
        print(
            f"duologue: sweep interrupted; run it again (or `duologue sweep --resume {sweep.sweep_id}`) "
            "to continue",
            file=sys.stderr,
        )
        return 130
    return 0 if outcome.all_completed else EXIT_CELLS_FAILED


def dry_run(driver: SweepDriver, as_json: bool) -> str:
    from graphs.sweep.plan import describe_plan

    plan = driver.plan()
    remaining = {n for numbers in plan.values() for n in numbers}
    cells = list(driver.cells.values())
    if as_json:
        return json.dumps(
            {
                "sweep_id": driver.sweep.sweep_id,
                "cells": [c.model_dump() | {"run_id": driver.run_ids.get(c.cell)} for c in cells],
                "plan": plan,
            },
            indent=2,
        )
    lines = [f"sweep {driver.sweep.sweep_id} ({driver.sweep.source}), {driver.sweep.turns} turns a cell"]
    lines += describe_plan([c for c in cells if c.cell in remaining], plan, driver.sweep.file.max_per_host)
    done = [c for c in cells if c.cell not in remaining]
    if done:
        lines.append(f"completed already, skipped: cells {', '.join(str(c.cell) for c in done)}")
    resumed = sorted(n for n in remaining if n in driver.run_ids)
    if resumed:
        lines.append(
            "resumed from their last finished turn: "
            + ", ".join(f"cell {n} (run {driver.run_ids[n]})" for n in resumed)
        )
    return "\n".join(lines)


def summary(report: SweepReport) -> str:
    counts: dict[str, int] = {}
    for row in report.cells:
        counts[row.status] = counts.get(row.status, 0) + 1
    said = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    cells = f"{len(report.cells)} cell(s), {said}"
    return f"Sweep {report.sweep_id}: {cells} (`duologue sweep-report {report.sweep_id}`)"


class ProgressLine:
    """One line on stderr: a `\\r`-redrawn line on a terminal, else a plain line per change."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.last = ""
        self.last_counts: tuple[int, int, int] | None = None
        self.drawn_at = 0.0
        self.lock = threading.Lock()

    def show(self, progress: SweepProgress) -> None:
        text = progress_text(progress)
        counts = (progress.done, progress.failed, progress.running)
        with self.lock:
            if self.tty:
                now = time.monotonic()
                if counts == self.last_counts and now - self.drawn_at < PROGRESS_EVERY_S:
                    return
                self.out.write("\r\x1b[2K" + text)
                self.drawn_at = now
            elif counts != self.last_counts:
                self.out.write(f"duologue: {text}\n")
            self.out.flush()
            self.last, self.last_counts = text, counts

    def end(self) -> None:
        if self.tty and self.last:
            self.out.write("\n")
            self.out.flush()


def progress_text(p: SweepProgress) -> str:
    eta = f" · ETA {duration(p.eta_s)}" if p.eta_s is not None and p.done < p.total else ""
    return (
        f"cells {p.done}/{p.total} done · {p.failed} failed · {p.running} running · {p.tokens:,} tokens{eta}"
    )


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


REPORT_HEADERS = ("cell", "status", "host", "models", "topic", "seed", "tokens", "tok/s", "minutes", "flags",
                  "verdict")  # fmt: skip
SUMMARY_HEADERS = ("models", "cells", "completed", "tokens", "tok/s", "minutes", "verdicts")


def cmd_sweep_report(args: argparse.Namespace) -> int:
    from graphs.sweep.report import report_csv, sweep_report

    report = sweep_report(args.sweep_id, args.runs_dir)
    if args.csv is not None:
        try:
            args.csv.write_text(report_csv(report), encoding="utf-8")
        except OSError as exc:
            raise DuologueError(f"--csv {args.csv}: cannot write it ({exc.strerror or exc})") from None
    if args.json:
        print(json.dumps(report.model_dump(mode="json"), indent=2))
        return 0
    print(render_report(report))
    return 0


def render_report(report: SweepReport) -> str:
    from graphs.sweep.plan import short

    rows = [
        [
            str(r.cell),
            r.status,
            r.host or "-",
            ", ".join(f"{name}={model}" for name, model in r.models.items()),
            short(r.topic, 30),
            number(r.seed),
            number(r.tokens),
            ", ".join(f"{m} {rate:.1f}" for m, rate in r.tokens_per_s.items()) or "-",
            number(r.minutes),
            ", ".join(r.flags) or "-",
            r.verdict or "-",
        ]
        for r in report.cells
    ]
    lines = [f"sweep {report.sweep_id}", table(REPORT_HEADERS, rows), ""]

    def spread(s: Any, digits: int = 1) -> str:
        return "-" if s.mean is None else f"{s.mean:.{digits}f} ± {s.spread:.{digits}f}"

    summary_rows = [
        [
            ", ".join(f"{name}={model}" for name, model in a.models.items()),
            str(a.cells),
            str(a.completed),
            spread(a.tokens, 0),
            ", ".join(f"{m} {spread(s)}" for m, s in a.tokens_per_s.items()) or "-",
            spread(a.minutes),
            ", ".join(f"{v} {n}" for v, n in a.verdicts.items()) or "-",
        ]
        for a in report.assignments
    ]
    lines += ["per model assignment (completed cells: mean ± standard deviation)"]
    lines += [table(SUMMARY_HEADERS, summary_rows)]
    for left in report.left_pool:
        moved = ", ".join(map(str, left.cells_moved)) or "none"
        lines.append(
            f"host {left.host} left the pool after failing twice in a row ({left.reason}); moved: {moved}"
        )
    return "\n".join(lines)


COMMANDS = {"sweep": cmd_sweep, "sweep-report": cmd_sweep_report}
