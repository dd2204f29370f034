"""The `duologue` command. Every user mistake ends in one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import yaml

from graphs.errors import DuologueError, RunFailed, ShapeError
from graphs.records import TraceRecord
from graphs.runstore import RUNS_DIR_ENV, RunStore
from graphs.schedule import PlannedTurn
from graphs.spec import NAME_PATTERN, Shape
from graphs.state import Turn

MAX_TOPIC_BYTES = 1_000_000


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> Parser:
    parser = Parser(prog="duologue", description="Dialogues between local language models, served by Ollama.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")

    def runs_dir_option(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--runs-dir",
            type=Path,
            default=None,
            help=f"folder of run records (default: ${RUNS_DIR_ENV} or ./runs)",
        )

    run = commands.add_parser("run", help="hold a dialogue")
    run.add_argument("shape", metavar="SHAPE", help="built-in shape (duet, panel, debate) or a shape file")
    run.add_argument(
        "--model", action="append", default=[], metavar="NAME=MODEL", help="a participant's model"
    )
    topic = run.add_mutually_exclusive_group()
    topic.add_argument("--topic", metavar="TEXT", help="the topic, as text")
    topic.add_argument("--topic-file", type=Path, metavar="PATH", help="the topic or essay, from a file")
    run.add_argument("--turns", type=int, metavar="N", help="number of turns, the closing included")
    run.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="URL|NAME=URL",
        help="Ollama's address, for all or one participant (default: $OLLAMA_HOST or http://127.0.0.1:11434)",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME.KEY=VALUE",
        help="a participant's option, label or persona",
    )
    run.add_argument("--embedded", action="store_true", help="start the embedded model server for this run")
    run.add_argument(
        "--json", action="store_true", help="print a JSON summary instead of the streaming dialogue"
    )
    runs_dir_option(run)

    runs = commands.add_parser("runs", help="list recorded runs with their totals")
    runs.add_argument("--json", action="store_true")
    runs_dir_option(runs)

    show = commands.add_parser("show", help="print a run's transcript, or with --trace its per-turn table")
    show.add_argument("run_id", metavar="RUN_ID")
    show.add_argument("--trace", action="store_true", help="the per-turn trace table")
    show.add_argument("--json", action="store_true")
    runs_dir_option(show)

    shapes = commands.add_parser("shapes", help="list the built-in shapes, or print one's graph")
    shapes.add_argument("--graph", metavar="NAME", help="print this shape's graph as mermaid")

    serve = commands.add_parser(
        "serve", help="run the embedded model server (Ollama's API) in the foreground"
    )
    serve.add_argument("--port", type=int, default=11434)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except RunFailed as exc:
        print(f"duologue: run failed: {exc}", file=sys.stderr)
        return exc.exit_code
    except DuologueError as exc:
        print(f"duologue: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\nduologue: interrupted", file=sys.stderr)
        return 130


def cmd_run(args: argparse.Namespace) -> int:
    from graphs.runner import RunRequest, run_dialogue
    from graphs.spec import load_shape, with_overrides

    shape = with_overrides(load_shape(args.shape), parse_models(args.model), parse_settings(args.set))
    topic = read_topic(args.topic, args.topic_file)
    turns = args.turns if args.turns is not None else shape.turns
    if turns < 2:
        raise ShapeError(f"--turns {turns}: a dialogue needs at least 2 turns (an opening and a closing)")
    default_host, named_hosts = parse_hosts(args.host, shape)
    server = None
    if args.embedded:
        if default_host:
            raise ShapeError("--embedded and --host URL both say where the models are; give one of them")
        from graphs.embedded.serve import start_embedded

        server = start_embedded()
        default_host = server.url
    try:
        hosts = resolve_hosts(shape, default_host, named_hosts)
        observer = SummaryObserver() if args.json else TerminalObserver(sys.stdout)
        request = RunRequest(shape=shape, topic=topic, turns=turns, hosts=hosts, runs_dir=runs_dir(args))
        try:
            outcome = run_dialogue(request, observer)
        except KeyboardInterrupt:
            if observer.folder:
                print(f"\nduologue: interrupted; finished turns kept in {observer.folder}", file=sys.stderr)
            return 130
    finally:
        if server is not None:
            server.stop()
    if args.json:
        summary = {
            "run_id": outcome.run_id,
            "folder": str(outcome.folder),
            "status": outcome.status,
            "turns": [outcome.records[n].model_dump() for n in sorted(outcome.records)],
        }
        print(json.dumps(summary, indent=2))
    else:
        print(f"\nRun {outcome.run_id} {outcome.status}: {outcome.folder}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from graphs.report import RUNS_HEADERS, run_totals, runs_rows, table

    runs = RunStore(runs_dir(args)).list()
    if args.json:
        print(json.dumps([run_totals(r) for r in runs], indent=2))
    elif not runs:
        print(
            f"no runs in {runs_dir(args) or RunStore().root} yet; "
            "start one with `duologue run duet --embedded --topic TEXT`"
        )
    else:
        print(table(RUNS_HEADERS, runs_rows(runs)))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from graphs.report import TRACE_HEADERS, table, trace_rows

    run = RunStore(runs_dir(args)).load(args.run_id)
    if args.json:
        payload: dict[str, Any] = {
            "run": run.meta.model_dump(),
            "trace": [r.model_dump() for r in run.turn_records],
        }
        print(json.dumps(payload, indent=2))
    elif args.trace:
        print(table(TRACE_HEADERS, trace_rows(run.turn_records)))
    else:
        print(run.transcript() or f"run {run.meta.run_id} has no finished turn yet", end="")
    return 0


def cmd_shapes(args: argparse.Namespace) -> int:
    from graphs.build import mermaid
    from graphs.spec import builtin_shape_names, load_shape

    if args.graph:
        print(mermaid(load_shape(args.graph)))
        return 0
    for name in builtin_shape_names():
        shape = load_shape(name)
        people = ", ".join(f"{p.name}={p.model}" for p in shape.participants)
        print(f"{name:8} {shape.turns} turns · {people}\n         {' '.join(shape.description.split())}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from graphs.embedded.serve import serve_forever

    serve_forever(port=args.port)
    return 0


COMMANDS = {"run": cmd_run, "runs": cmd_runs, "show": cmd_show, "shapes": cmd_shapes, "serve": cmd_serve}


def runs_dir(args: argparse.Namespace) -> Path | None:
    return args.runs_dir


def parse_pair(value: str, flag: str, form: str) -> tuple[str, str]:
    name, sep, rest = value.partition("=")
    if not sep or not name or not rest:
        raise ShapeError(f"{flag} {value!r}: expected {form}")
    return name.strip(), rest.strip()


def parse_models(values: list[str]) -> dict[str, str]:
    return dict(parse_pair(v, "--model", "NAME=MODEL, e.g. a=qwen3:32b") for v in values)


def parse_settings(values: list[str]) -> list[tuple[str, str, Any]]:
    settings = []
    for value in values:
        target, raw = parse_pair(value, "--set", "NAME.KEY=VALUE, e.g. a.num_ctx=8192")
        name, dot, key = target.partition(".")
        if not dot or not key:
            raise ShapeError(f"--set {value!r}: expected NAME.KEY=VALUE, e.g. a.num_ctx=8192")
        try:
            parsed = yaml.safe_load(raw)
        except yaml.YAMLError:
            parsed = raw
        settings.append((name, key, parsed))
    return settings


def parse_hosts(values: list[str], shape: Shape) -> tuple[str | None, dict[str, str]]:
    from graphs.ollama import normalize_host

    default: str | None = None
    named: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if sep and re.match(NAME_PATTERN, name) and "/" not in name:
            shape.participant(name)
            named[name] = normalize_host(url)
        elif default is not None:
            raise ShapeError(
                f"--host given twice ({default}, {value}); name a participant with --host NAME=URL"
            )
        else:
            default = normalize_host(value)
    return default, named


def resolve_hosts(shape: Shape, default: str | None, named: dict[str, str]) -> dict[str, str]:
    """--host NAME=URL, else the shape's host, else --host URL or --embedded, else $OLLAMA_HOST."""
    from graphs.ollama import default_host, normalize_host

    fallback = default or default_host()
    return {
        p.name: named.get(p.name) or (normalize_host(p.host) if p.host else fallback)
        for p in shape.participants
    }


def read_topic(text: str | None, path: Path | None) -> str:
    if path is not None:
        if not path.is_file():
            raise ShapeError(f"--topic-file {path}: no such file")
        if path.stat().st_size > MAX_TOPIC_BYTES:
            raise ShapeError(
                f"--topic-file {path}: larger than {MAX_TOPIC_BYTES // 1000} kB; give a shorter text"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ShapeError(f"--topic-file {path}: not UTF-8 text") from None
        if not text.strip():
            raise ShapeError(f"--topic-file {path}: the file is empty")
        return text
    if text is None or not text.strip():
        raise ShapeError("no topic: give one with --topic TEXT or --topic-file PATH")
    return text


class TerminalObserver:
    """Streams the dialogue to the terminal the way the transcript will read."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.folder: Path | None = None
        self.dim = out.isatty() and not os.environ.get("NO_COLOR")
        self._thinking = False

    def run_started(self, run_id: str, folder: Path) -> None:
        self.folder = folder
        self.out.write(f"duologue: run {run_id} → {folder}\n")

    def turn_started(self, planned: PlannedTurn, label: str, model: str) -> None:
        self.out.write(f"\n### Turn {planned.number}: {label} — {planned.kind.capitalize()}\n")
        self.out.flush()

    def token(self, text: str, thinking: bool) -> None:
        if thinking and not self.dim:
            return
        if thinking != self._thinking and self.dim:
            self.out.write("\x1b[2m" if thinking else "\x1b[0m\n")
            self._thinking = thinking
        self.out.write(text)
        self.out.flush()

    def turn_finished(self, turn: Turn, record: TraceRecord | None) -> None:
        from graphs.transcript import stats_line

        if self._thinking:
            self.out.write("\x1b[0m")
            self._thinking = False
        self.out.write(f"\n{stats_line(record)}\n")
        self.out.flush()


class SummaryObserver:
    """For --json: nothing while the run goes on, so stdout stays one JSON document."""

    folder: Path | None = None

    def run_started(self, run_id: str, folder: Path) -> None:
        self.folder = folder

    def turn_started(self, planned: PlannedTurn, label: str, model: str) -> None:
        pass

    def token(self, text: str, thinking: bool) -> None:
        pass

    def turn_finished(self, turn: Turn, record: TraceRecord | None) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main())
