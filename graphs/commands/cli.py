"""The `duologue` command. Every user mistake ends in one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import yaml

from graphs.commands import insight, sweep
from graphs.engine.schedule import PlannedTurn
from graphs.engine.spec import (
    MAX_TURNS,
    MIN_TURNS,
    NAME_PATTERN,
    OBSERVER,
    Participant,
    Shape,
    builtin_shape_names,
)
from graphs.engine.state import Turn
from graphs.errors import DuologueError, RunFailed, RunInterrupted, ShapeError
from graphs.ollama.timeouts import TIMEOUT_S
from graphs.records.schema import TraceRecord
from graphs.records.store import RUNS_DIR_ENV, RunStore
from graphs.run.observe import SilentObserver

if TYPE_CHECKING:
    from graphs.run.durable import ContinueOptions

MAX_TOPIC_BYTES = 1_000_000
SAME_SIGNAL_S = 0.5
"""Signals this close together are one Ctrl-C (see interrupt_signals)."""
EXIT_PAUSED = 3
"""A run paused for the facilitator's interjection: not failed, not completed."""


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
            metavar="DIR",
            help=f"folder of run records (default: ${RUNS_DIR_ENV} or ./runs)",
        )

    def checkpoint_url_option(command: argparse.ArgumentParser, what: str) -> None:
        command.add_argument(
            "--checkpoint-url",
            metavar="URL",
            help=f"{what}: postgresql://USER:PASSWORD@HOST:PORT/DB "
            "(default: $DUOLOGUE_CHECKPOINT_URL, else SQLite in the run's folder)",
        )

    def otel_option(command: argparse.ArgumentParser, more: str = "") -> None:
        command.add_argument(
            "--otel",
            type=collector_url,
            metavar="URL",
            help="export the run's trace over OpenTelemetry (OTLP/HTTP) to this collector, e.g. "
            f"http://localhost:4318 (default: $OTEL_EXPORTER_OTLP_ENDPOINT; needs duologue[otel]){more}",
        )

    run = commands.add_parser("run", help="hold a dialogue")
    builtins = ", ".join(builtin_shape_names())
    run.add_argument("shape", metavar="SHAPE", help=f"built-in shape ({builtins}) or a shape file")
    run.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=MODEL",
        help="a participant's model, or NAME=openai:MODEL@URL for one on an OpenAI-compatible server "
        "(repeatable)",
    )
    topic = run.add_mutually_exclusive_group()
    topic.add_argument("--topic", metavar="TEXT", help="the topic, as text")
    topic.add_argument("--topic-file", type=Path, metavar="PATH", help="the topic or essay, from a file")
    run.add_argument(
        "--turns",
        type=int,
        metavar="N",
        help=f"number of turns, the closing included, {MIN_TURNS} to {MAX_TURNS} (default: the shape's)",
    )
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
        help="a participant's option, label, persona, model or min_tok_s (repeatable)",
    )
    run.add_argument(
        "--interject",
        action="append",
        type=int,
        default=[],
        metavar="N",
        help="pause before turn N (2 to the last) for the facilitator's own words (repeatable)",
    )
    run.add_argument("--embedded", action="store_true", help="start the embedded model server for this run")
    run.add_argument(
        "--json", action="store_true", help="print a JSON summary instead of the streaming dialogue"
    )
    residency_options(run)
    run.add_argument(
        "--residency",
        choices=["auto", "exclusive", "shared"],
        default="auto",
        help="exclusive: one model at a time on each host; shared: all stay loaded; auto (the default): "
        "shared if they fit",
    )
    run.add_argument("--strict-context", action="store_true", help="stop the run when a prompt was truncated")
    timeout_option(
        run,
        f"give up on a turn when its model sends nothing for SECONDS, before its first token or between "
        f"two chunks (default {TIMEOUT_S:g}: time for a 32B model to load from disk and read the prompt)",
    )
    run.add_argument(
        "--no-trace",
        action="store_true",
        help="don't export this run's trace (LangSmith, OpenTelemetry), even if configured or given --otel",
    )
    otel_option(run)
    runs_dir_option(run)
    checkpoint_url_option(run, "keep the run's checkpoints in this Postgres database")

    def continuing(command: argparse.ArgumentParser, checkpoints_help: str) -> None:
        command.add_argument("run_id", metavar="RUN_ID", help="the run's id, as `duologue runs` lists it")
        command.add_argument(
            "--host",
            action="append",
            default=[],
            metavar="URL|NAME=URL",
            help="Ollama's address, for all or one participant, if not where the run was held",
        )
        command.add_argument(
            "--embedded",
            action="store_true",
            help="use the embedded model server (the default for a run held on it, unless --host is given)",
        )
        command.add_argument(
            "--json", action="store_true", help="print a JSON summary instead of the streaming dialogue"
        )
        command.add_argument(
            "--no-trace",
            action="store_true",
            help="don't export the trace (LangSmith, OpenTelemetry) this time",
        )
        otel_option(command, "; it turns the trace on again for a run held with --no-trace")
        timeout_option(
            command,
            "give up on a turn when its model sends nothing for SECONDS, before its first token or "
            "between two chunks (default: the run's, as recorded)",
        )
        runs_dir_option(command)
        checkpoint_url_option(command, checkpoints_help)

    resume = commands.add_parser(
        "resume", help="continue a failed or interrupted run from its last finished turn"
    )
    continuing(resume, "the Postgres database of a run that keeps its checkpoints there")
    resume.add_argument("--say", metavar="TEXT", help="the facilitator's words, when the run waits for them")

    fork = commands.add_parser("fork", help="a new run that copies a run's first N turns, then goes on")
    continuing(fork, "the Postgres database for the new run's checkpoints (and the original's, if there)")
    fork.add_argument("--at", type=int, required=True, metavar="N", help="copy turns 1..N")
    fork.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME=MODEL",
        help="a participant's model from turn N+1 on, or NAME=openai:MODEL@URL to move it to an "
        "OpenAI-compatible server (repeatable)",
    )
    fork.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME.KEY=VALUE",
        help="a participant's option, label, persona, model or min_tok_s from turn N+1 on (repeatable)",
    )

    runs = commands.add_parser("runs", help="list the recorded runs, newest first, with their totals")
    runs.add_argument("--json", action="store_true", help="print the runs and their totals as JSON")
    runs_dir_option(runs)

    show = commands.add_parser("show", help="print a run's transcript, or with --trace its per-turn table")
    show.add_argument("run_id", metavar="RUN_ID", help="the run's id, as `duologue runs` lists it")
    show.add_argument("--trace", action="store_true", help="the per-turn trace table")
    show.add_argument(
        "--json", action="store_true", help="the run and its trace as JSON; with --trace, the table's rows"
    )
    runs_dir_option(show)

    shapes = commands.add_parser("shapes", help="list the built-in shapes, or print one's graph")
    shapes.add_argument("--graph", metavar="NAME", help="print this shape's graph as mermaid")

    serve = commands.add_parser(
        "serve", help="run the embedded model server (Ollama's API) in the foreground"
    )
    serve.add_argument(
        "--port", type=int, default=11434, metavar="N", help="port on 127.0.0.1 (default 11434)"
    )

    doctor = commands.add_parser(
        "doctor", help="check the server, the models, and whether each runs fully on the GPU"
    )
    doctor.add_argument(
        "shape",
        metavar="SHAPE|MODEL",
        nargs="?",
        help="a shape whose participants to check, or a model to check (as --model MODEL)",
    )
    doctor.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="[NAME=]MODEL",
        help="a model to check, or with NAME= a participant's; openai:MODEL@URL for one on an "
        "OpenAI-compatible server (repeatable)",
    )
    doctor.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="URL|NAME=URL",
        help="Ollama's address, for all or one participant (default: $OLLAMA_HOST or http://127.0.0.1:11434)",
    )
    doctor.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME.KEY=VALUE",
        help="a participant's option, label, persona, model or min_tok_s (repeatable)",
    )
    doctor_topic = doctor.add_mutually_exclusive_group()
    doctor_topic.add_argument("--topic", metavar="TEXT", help="size num_ctx for this topic, as a run would")
    doctor_topic.add_argument(
        "--topic-file", type=Path, metavar="PATH", help="size num_ctx for the topic in this file"
    )
    doctor.add_argument(
        "--turns",
        type=int,
        metavar="N",
        help="size num_ctx for this many turns (default: the shape's, else 4)",
    )
    doctor.add_argument(
        "--embedded", action="store_true", help="check the embedded model server, started for the check"
    )
    doctor.add_argument("--json", action="store_true", help="print the findings as JSON")
    timeout_option(
        doctor,
        f"give up on a model that sends nothing for SECONDS while it loads or answers "
        f"(default {TIMEOUT_S:g}: time for a 32B model to load from disk)",
    )
    residency_options(doctor)
    checkpoint_url_option(doctor, "also check this Postgres database for runs' checkpoints")

    ui = commands.add_parser("ui", help="start the Streamlit page on 127.0.0.1 (Ctrl-C stops it)")
    ui.add_argument(
        "--port", type=int, default=8501, metavar="N", help="the page's port on 127.0.0.1 (default 8501)"
    )
    ui.add_argument("--host", metavar="URL", help="the page's default Ollama address (default: $OLLAMA_HOST)")
    runs_dir_option(ui)
    checkpoint_url_option(ui, "the Postgres database for runs launched or resumed from the page")

    bench = commands.add_parser(
        "bench", help="measure the framework's own cost next to a raw client loop and raw llama.cpp"
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    bench.add_argument("--repeat", type=int, default=5, metavar="N", help="repetitions per side (default 5)")
    bench.add_argument(
        "--turns", type=int, default=100, metavar="N", help="turns of the overhead duet (default 100)"
    )
    bench.add_argument(
        "--skip-embedded", action="store_true", help="leave out the figures that need the embedded model"
    )
    bench.add_argument(
        "--peer-python",
        metavar="PATH",
        help="the Python that has the bench extra, for AutoGen's figure "
        "(default: $DUOLOGUE_BENCH_PEER_PYTHON, else this one)",
    )
    insight.add_commands(commands, runs_dir_option)
    sweep.add_commands(commands, runs_dir_option)
    return parser


def timeout_option(command: argparse.ArgumentParser, help: str) -> None:
    command.add_argument("--timeout", type=seconds, metavar="SECONDS", help=help)


def collector_url(value: str) -> str:
    """--otel's value: an http(s) URL with a host, refused (exit 2) before anything is written."""
    from urllib.parse import urlsplit

    from graphs.records.checkpoints import redact_url

    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"{redact_url(value)!r} is not a collector's URL; give one like http://localhost:4318"
        )
    return value.strip()


def seconds(value: str) -> float:
    """--timeout's value: a number of seconds above 0, refused (exit 2) before anything is written."""
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0 < number <= 7 * 24 * 3600:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds above 0, e.g. 600")
    return number


def residency_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--require-gpu",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stop rather than run a model partly on the CPU (default: on once a host shows VRAM)",
    )


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
    except BrokenPipeError:
        return reader_gone()
    except (OSError, sqlite3.Error) as exc:  # a fault no layer put in words: still one line
        from graphs.records.faults import fault_of

        fault = fault_of(exc)
        where = f"{exc.filename}: " if isinstance(exc, OSError) and exc.filename else ""
        said = f"{fault.what}; {fault.remedy}" if fault and fault.remedy else fault.what if fault else exc
        print(f"duologue: error: {where}{said}", file=sys.stderr)
        return 1


def reader_gone() -> int:
    """stdout's reader left (`duologue runs | head -1`): stop quietly, as `yes | head -1` does,
    and point stdout at /dev/null so the exit's own flush has nowhere to fail."""
    with suppress(OSError, ValueError, io.UnsupportedOperation):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 128 + signal.SIGPIPE


def cmd_run(args: argparse.Namespace) -> int:
    from graphs.engine.spec import load_shape, with_overrides
    from graphs.run.runner import RunRequest, run_dialogue

    shape = with_overrides(
        load_shape(args.shape),
        parse_models(args.model),
        parse_settings(args.set),
        turns=args.turns,
        interject=args.interject,
    )
    if args.embedded:
        from graphs.embedded.defaults import suited_to_embedded

        shape = suited_to_embedded(shape)  # short turns, and framing a 135M model answers
    topic = read_topic(args.topic, args.topic_file)
    turns = shape.turns
    with model_hosts(args, shape) as hosts:
        observer = make_observer(args)
        request = RunRequest(
            shape=shape,
            topic=topic,
            turns=turns,
            hosts=hosts,
            runs_dir=runs_dir(args),
            embedded=args.embedded,
            residency_policy=args.residency,
            require_gpu=args.require_gpu,
            strict_context=args.strict_context,
            trace=not args.no_trace,
            otel=args.otel,
        )
        if args.checkpoint_url:
            request.checkpoint_url = args.checkpoint_url
        if args.timeout is not None:
            request.timeout_s = args.timeout
        return report_outcome(args, observer, lambda: run_dialogue(request, observer), request.stop)


def cmd_resume(args: argparse.Namespace) -> int:
    from graphs.run.durable import resume_dialogue

    return continue_run(args, lambda options: resume_dialogue(args.run_id, options, args.say))


def cmd_fork(args: argparse.Namespace) -> int:
    from graphs.run.durable import fork_dialogue

    models, settings = parse_models(args.model), parse_settings(args.set)
    return continue_run(args, lambda options: fork_dialogue(args.run_id, args.at, options, models, settings))


def continue_run(args: argparse.Namespace, hold: Callable[[ContinueOptions], Any]) -> int:
    """Resume or fork: hosts as recorded unless named; a run held on the embedded server starts
    it again unless --host is given."""
    from graphs.run.durable import ContinueOptions

    run = RunStore(runs_dir(args)).load(args.run_id)
    args.embedded = args.embedded or (run.meta.embedded and not args.host)
    stop = threading.Event()
    with model_hosts(args, run.shape(), keep_recorded=True) as hosts:
        observer = make_observer(args)
        options = ContinueOptions(
            runs_dir=runs_dir(args),
            hosts=hosts,
            observer=observer,
            trace=False if args.no_trace else True if args.otel else None,  # --otel asks for a trace
            otel=args.otel,
            stop=stop,
            checkpoint_url=args.checkpoint_url,
            timeout_s=args.timeout,
        )
        return report_outcome(args, observer, lambda: hold(options), stop)


@contextmanager
def model_hosts(
    args: argparse.Namespace, shape: Shape | None, keep_recorded: bool = False
) -> Iterator[dict[str, str]]:
    """Where each participant's models are, starting the embedded server if asked.

    With keep_recorded (resume, fork), only hosts the user names are returned; the run's
    recorded hosts fill in the rest.
    """
    default_host, named_hosts = parse_hosts(args.host, shape)
    if args.embedded and shape is not None:
        check_embedded_models([p for p in shape.participants if p.name not in named_hosts], "model" in args)
    with embedded_host(args.embedded, default_host) as default_host:
        if shape is None:
            yield {}
        elif keep_recorded:
            chosen = {p.name: named_hosts.get(p.name) or default_host for p in shape.connected}
            yield {name: host for name, host in chosen.items() if host}
        else:
            yield resolve_hosts(shape, default_host, named_hosts)


@contextmanager
def embedded_host(embedded: bool, default_host: str | None) -> Iterator[str | None]:
    """The address for participants not given one: the embedded server's, started here and
    stopped on exit, with --embedded; else --host URL's (None: not given)."""
    if not embedded:
        yield default_host
        return
    if default_host:
        raise ShapeError("--embedded and --host URL both say where the models are; give one of them")
    from graphs.embedded.serve import start_embedded

    server = start_embedded()
    try:
        yield server.url
    finally:
        server.stop()


def check_embedded_models(participants: Sequence[Participant], can_pick: bool) -> None:
    """With --embedded, refuse a model the embedded server does not serve before starting it,
    naming the ones it does (its port is a new one on each start, and `ollama pull` cannot help)."""
    from graphs.embedded.serve import embedded_models
    from graphs.ollama.names import same_model

    served = embedded_models()
    for p in participants:
        if p.provider != "ollama" or p.is_person:
            continue  # on its own OpenAI-compatible server, or a person at the keyboard
        if not any(same_model(name, p.model) for name in served):
            pick = f"; pick one with --model {p.name}={served[0]}" if can_pick else ""
            raise ShapeError(
                f"--embedded: the embedded server has no model '{p.model}' (for {p.name}); "
                f"it has {', '.join(served)}{pick}, or drop --embedded to use Ollama"
            )


def make_observer(args: argparse.Namespace) -> TerminalObserver | SummaryObserver:
    return SummaryObserver() if args.json else TerminalObserver(sys.stdout)


def report_outcome(
    args: argparse.Namespace,
    observer: TerminalObserver | SummaryObserver,
    hold: Callable[[], Any],
    stop: threading.Event,
) -> int:
    """Run `hold`, then say how it ended: the JSON summary, or a line for the terminal."""
    try:
        with interrupt_signals(stop, lambda: mark_interrupted(observer.folder)):
            outcome = hold()
    except (KeyboardInterrupt, RunInterrupted) as exc:  # the stop, raised here or by the turn it ended
        observer.end_line()
        if isinstance(exc, RunInterrupted) and not exc.recorded:
            raise
        where = f"; finished turns kept in {observer.folder}" if observer.folder else ""
        print(f"duologue: interrupted{where}", file=sys.stderr)
        return 130
    except DuologueError:
        observer.end_line()
        raise
    paused = outcome.paused_before_turn
    if args.json:
        summary = {
            "run_id": outcome.run_id,
            "folder": str(outcome.folder),
            "status": outcome.status,
            "paused_before_turn": paused,
            "awaiting_person": outcome.awaiting_person,
            "turns": [outcome.records[n].model_dump() for n in sorted(outcome.records)],
        }
        print(json.dumps(summary, indent=2))
    elif paused is None and outcome.awaiting_person is None:
        print(f"\nRun {outcome.run_id} {outcome.status}: {outcome.folder}")
    if outcome.awaiting_person is not None:
        print(
            f"duologue: no words came for turn {outcome.awaiting_person} (standard input ended); run "
            f"{outcome.run_id} is kept, interrupted; `duologue resume {outcome.run_id}` asks again",
            file=sys.stderr,
        )
        return EXIT_PAUSED
    if paused is not None:
        print(
            f"duologue: run {outcome.run_id} is waiting for the facilitator before turn {paused}; "
            f'continue with `duologue resume {outcome.run_id} --say "..."` (--say "" adds nothing)',
            file=sys.stderr,
        )
        return EXIT_PAUSED
    return 0


@contextmanager
def interrupt_signals(stop: threading.Event, on_exit: Callable[[], str] | None = None) -> Iterator[None]:
    """SIGTERM stops a run like Ctrl-C; a second Ctrl-C or SIGTERM exits at once, after `on_exit`
    (which marks the record, and says what it did).

    `stop` is set first, so the turn in progress ends at its next token rather than running to
    its end. While this thread streams the run's graph, setting it is all (runner.stop_is_polled):
    the turn and the loop end the run there. Anywhere else a KeyboardInterrupt is raised.
    A signal within SAME_SIGNAL_S of the first is that one again, not a second Ctrl-C: `timeout`
    and supervisors signal the process and then its group, and a terminal's Ctrl-C reaches every
    process of the group. So the handler stays for that long, even after the run has ended.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from graphs.run.runner import stop_is_polled

    first: float | None = None

    def handler(signum: int, frame: object) -> None:
        nonlocal first
        if first is not None:
            if time.monotonic() - first < SAME_SIGNAL_S:
                return
            said = on_exit() if on_exit else "the turn in progress was not recorded"
            print(f"\nduologue: exiting at once; {said}", file=sys.stderr, flush=True)
            os._exit(130)
        first = time.monotonic()
        stop.set()
        print(
            "\nduologue: stopping; the turn in progress ends at its next token (again to exit at once)",
            file=sys.stderr,
            flush=True,
        )
        if not stop_is_polled():
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        if first is not None:
            time.sleep(max(0.0, first + SAME_SIGNAL_S - time.monotonic()))
        for sig, old in previous.items():
            signal.signal(sig, old)


def mark_interrupted(folder: Path | None) -> str:
    """Before a forced exit: the run's record says `interrupted` unless it says how it ended already;
    returns what it did, for the one line the exit prints."""
    from graphs.records.store import now_iso

    if folder is None:
        return "no run was recorded yet"
    try:
        writer = RunStore(folder.parent).reopen(folder.name)
        if writer.meta.status != "running":
            return f"run {writer.run_id} is recorded {writer.meta.status}; finished turns kept in {folder}"
        writer.save_meta(
            status="interrupted",
            ended_at=now_iso(),
            error="interrupted by the user (exited at once, before the turn in progress ended)",
        )
    except (DuologueError, OSError) as exc:
        return f"the record in {folder} could not be updated ({exc}) and still says running"
    return f"run {writer.run_id} marked interrupted; finished turns kept in {folder}"


def cmd_runs(args: argparse.Namespace) -> int:
    from graphs.records.tables import RUNS_HEADERS, run_totals, runs_rows, table

    store = RunStore(runs_dir(args))
    runs = store.summaries()
    if args.json:
        print(json.dumps([run_totals(r) for r in runs], indent=2))
    elif not runs:
        print(
            f"no runs in {runs_dir(args) or RunStore().root} yet; "
            "start one with `duologue run duet --embedded --topic TEXT`"
        )
    else:
        print(table(RUNS_HEADERS, runs_rows(runs)))
    unreadable = [r for r in runs if r.unreadable]
    if unreadable:
        print(
            f"duologue: could not read {len(unreadable)} of the {len(runs)} runs in {store.root} "
            "(status unreadable, with the reason)",
            file=sys.stderr,
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from graphs.records.tables import TRACE_HEADERS, table, trace_dicts, trace_rows

    run = RunStore(runs_dir(args)).load(args.run_id)
    if args.json and args.trace:
        print(json.dumps(trace_dicts(run.turn_rows), indent=2))
    elif args.json:
        payload: dict[str, Any] = {
            "run": run.meta.model_dump(),
            "trace": [r.model_dump() for r in run.turn_records],
        }
        print(json.dumps(payload, indent=2))
    elif args.trace:
        print(table(TRACE_HEADERS, trace_rows(run.turn_rows)))
    else:
        print(run.transcript() or f"run {run.meta.run_id} has no finished turn yet", end="")
    return 0


def cmd_shapes(args: argparse.Namespace) -> int:
    from graphs.engine.build import mermaid
    from graphs.engine.spec import builtin_shape_names, load_shape

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


def cmd_doctor(args: argparse.Namespace) -> int:
    from graphs.commands.doctor import (
        DEFAULT_TURNS,
        check_checkpoints,
        check_trace,
        examine,
        participants_for,
        render,
    )
    from graphs.engine.spec import check_turns
    from graphs.ollama.api import default_host, normalize_host
    from graphs.records.checkpoints import url_from_env

    shape, models = doctor_subject(args.shape, args.model)
    turns = check_turns(args.turns) if args.turns is not None else (shape.turns if shape else DEFAULT_TURNS)
    participants = participants_for(shape, models, parse_settings(args.set))
    topic = read_topic(args.topic, args.topic_file) if args.topic or args.topic_file else ""
    default, named = parse_hosts(args.host, shape)
    if args.embedded:
        check_embedded_models([p for p in participants if p.name not in named], True)
    with embedded_host(args.embedded, default) as default:
        fallback = default or default_host()
        hosts = {
            p.name: p.base_url or named.get(p.name) or (normalize_host(p.host) if p.host else fallback)
            for p in participants
        }
        patience = args.timeout if args.timeout is not None else TIMEOUT_S
        report = examine(
            participants, hosts, args.require_gpu, turns, topic, default_host=fallback, timeout_s=patience
        )
    report.checkpoints = check_checkpoints(args.checkpoint_url or url_from_env())
    report.trace = check_trace()
    print(json.dumps(report.as_dict(), indent=2) if args.json else render(report))
    return report.exit_code


def doctor_subject(positional: str | None, models: list[str]) -> tuple[Shape | None, list[str]]:
    """`doctor SHAPE`, or `doctor MODEL`: what is neither a built-in shape nor a file, nor named
    like a shape file, is a model to check, as --model MODEL would be."""
    from graphs.engine.spec import builtin_shape_names, load_shape

    if positional is None:
        return None, models
    if (
        positional in builtin_shape_names()
        or Path(positional).exists()
        or positional.endswith((".yaml", ".yml"))
    ):
        return load_shape(positional), models
    return None, [positional, *models]


def cmd_ui(args: argparse.Namespace) -> int:
    """The Streamlit page installed as graphs.ui, served from this process on 127.0.0.1 only.

    In this process, not a child: whatever stops duologue (Ctrl-C, a supervisor's SIGTERM, the
    terminal's SIGHUP) stops the page's server, so none is left behind serving the port. Once it
    has stopped, the page's runs still going are stopped as its Stop button would stop them.
    """
    import socket
    from importlib.resources import files

    from streamlit.web import cli as streamlit_cli

    from graphs.ui.live import stop_every_run

    app = Path(str(files("graphs.ui").joinpath("app.py")))
    with socket.socket() as probe:  # as the server will bind it, so a port in use is one line
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", args.port))
        except OSError as exc:
            raise DuologueError(
                f"cannot serve the page on 127.0.0.1:{args.port} ({exc.strerror or exc}): "
                "another program (another duologue ui?) has the port; stop it, or pick another with --port"
            ) from None
    if args.runs_dir is not None:
        os.environ[RUNS_DIR_ENV] = str(args.runs_dir.resolve())
    if args.host:
        os.environ["OLLAMA_HOST"] = args.host
    if args.checkpoint_url:
        os.environ["DUOLOGUE_CHECKPOINT_URL"] = args.checkpoint_url
    command = ["run", str(app), "--server.address", "127.0.0.1", "--server.port", str(args.port)]
    command += ["--server.headless", "true", "--browser.gatherUsageStats", "false"]
    # A fault the page did not catch shows its type in the browser; its traceback stays here.
    command += ["--client.toolbarMode", "minimal", "--client.showErrorDetails", "type"]
    # Streamlit's default is a full gc.collect() after every script run, and the live view's fragment
    # reruns every POLL_S: each collection (150-200 ms in this process) held up the run's worker and
    # the page with it; the interpreter's own collections are enough.
    command += ["--runner.postScriptGC", "false"]
    print(f"duologue: the page is at http://127.0.0.1:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    stopping = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.getsignal(sig) for sig in stopping}
    # Streamlit stops its server on SIGTERM, SIGINT and SIGQUIT; SIGHUP would kill it outright.
    signal.signal(signal.SIGHUP, lambda _sig, _frame: signal.raise_signal(signal.SIGTERM))
    try:
        streamlit_cli.main(args=command, prog_name="streamlit", standalone_mode=False)
    finally:
        for sig in stopping:  # stopping the runs takes a moment; another signal changes nothing
            signal.signal(sig, signal.SIG_IGN)
        stopped = stop_every_run()
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
    if stopped:
        ids = ", ".join(run.run_id for run in stopped)
        print(f"duologue: the page stopped; runs it held are recorded interrupted: {ids}", file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from graphs.commands.bench import BenchSettings, render_table, run_bench

    settings = BenchSettings(
        turns=args.turns, repeat=args.repeat, embedded=not args.skip_embedded, peer_python=args.peer_python
    )
    result = run_bench(settings, progress=bench_progress if sys.stderr.isatty() else None)
    for skipped in ("embedded_skipped", "peer_skipped"):
        if result[skipped]:
            print(f"duologue bench: {result[skipped]}", file=sys.stderr)
    print(json.dumps(result, indent=2) if args.json else render_table(result))
    return 0


def bench_progress(line: str) -> None:
    print(f"duologue bench: {line}", file=sys.stderr)


COMMANDS = {
    "run": cmd_run,
    "resume": cmd_resume,
    "fork": cmd_fork,
    "runs": cmd_runs,
    "show": cmd_show,
    "shapes": cmd_shapes,
    "serve": cmd_serve,
    "ui": cmd_ui,
    "doctor": cmd_doctor,
    "bench": cmd_bench,
    **insight.COMMANDS,
    **sweep.COMMANDS,
}


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


def parse_hosts(values: list[str], shape: Shape | None) -> tuple[str | None, dict[str, str]]:
    from graphs.ollama.api import normalize_host

    default: str | None = None
    named: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if sep and re.match(NAME_PATTERN, name) and "/" not in name:
            if shape is not None and not (name == OBSERVER and shape.observer is not None):
                on = shape.participant(name).base_url
                if on is not None:
                    raise ShapeError(
                        f"--host {value}: {name} is on the OpenAI-compatible server at {on}; "
                        f"move it with --model {name}=openai:MODEL@URL"
                    )
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
    from graphs.run.providers import participant_hosts

    return participant_hosts(shape, default, named)


def read_topic(text: str | None, path: Path | None) -> str:
    """The topic from --topic or --topic-file, refused if it is no text a model could discuss."""
    from graphs.engine.spec import binary_problem, read_text_file

    if path is not None:
        text = read_text_file(path, f"--topic-file {path}", MAX_TOPIC_BYTES, "a text file")
        if not text.strip():
            raise ShapeError(f"--topic-file {path}: the file is empty")
        return text
    if text is None or not text.strip():
        raise ShapeError("no topic: give one with --topic TEXT or --topic-file PATH")
    problem = binary_problem(text)
    if problem:
        raise ShapeError(f"--topic: {problem}; give the topic as text")
    return text


class TerminalObserver:
    """Streams the dialogue to the terminal the way the transcript will read."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.folder: Path | None = None
        self.dim = out.isatty() and not os.environ.get("NO_COLOR")
        self._thinking = False
        self._mid_line = False

    def run_started(self, run_id: str, folder: Path) -> None:
        self.folder = folder
        self.out.write(f"duologue: run {run_id} → {folder}\n")

    def trace_exported(self, where: str) -> None:
        self.out.write(f"duologue: trace → OpenTelemetry collector at {where}\n")

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
        self._mid_line = not text.endswith("\n")

    def person_turn(self, planned: PlannedTurn, label: str) -> str | None:
        text = read_person_turn(planned, label)
        if text is not None and not sys.stdin.isatty():
            self.out.write(text + "\n")  # typed into a pipe, not echoed: the stream shows it as said
            self._mid_line = False
        return text

    def turn_finished(self, turn: Turn, record: TraceRecord | None) -> None:
        from graphs.records.transcript import stats_line

        self.end_line()
        self.out.write(f"{stats_line(record)}\n")
        self.out.flush()

    def end_line(self) -> None:
        """Finish a line cut short, so what follows (a stats line, an error) starts clean."""
        if self._thinking:
            self.out.write("\x1b[0m")
            self._thinking = False
        if self._mid_line:
            self.out.write("\n")
            self.out.flush()
            self._mid_line = False


PERSON_PROMPT = "{label}, your turn {number} ({kind}): type it; end with a line holding only . (or Ctrl-D)"


def read_person_turn(planned: PlannedTurn, label: str) -> str | None:
    """A person's turn from standard input, the prompt on stderr (stdout is the dialogue's, or
    --json's): lines up to one holding only `.`, or to the end of the input. An empty turn is asked
    again; None when the input ended before a word, so the run stops and a resume asks again."""
    while True:
        print(PERSON_PROMPT.format(label=label, number=planned.number, kind=planned.kind),
              file=sys.stderr, flush=True)  # fmt: skip
        lines: list[str] = []
        ended = False
        while True:
            line = sys.stdin.readline()
            if not line:
                ended = True
                break
            if line.rstrip("\r\n") == ".":
                break
            lines.append(line.rstrip("\r\n"))
        text = "\n".join(lines).strip()
        if text:
            return text
        if ended:
            return None
        print("duologue: an empty turn is not sent; type your words (Ctrl-C stops the run)", file=sys.stderr)


class SummaryObserver(SilentObserver):
    """For --json: nothing while the run goes on, so stdout stays one JSON document."""

    folder: Path | None = None

    def run_started(self, run_id: str, folder: Path) -> None:
        self.folder = folder

    def person_turn(self, planned: PlannedTurn, label: str) -> str | None:
        return read_person_turn(planned, label)

    def end_line(self) -> None:
        pass


if __name__ == "__main__":
    sys.exit(main())
