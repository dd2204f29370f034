"""`duologue bench`: the framework's own cost, next to a raw client loop and raw llama.cpp.

Each figure is the median over --repeat repetitions in which the two sides alternate
(A B A B ...), so that drift on a busy machine falls on both alike:

1. Overhead. A --turns duet is held (a) through the engine - `run_dialogue` on the built-in
   duet with tracing, run records, checkpoints and the residency checks on, LangSmith off -
   and (b) by a hand-written loop of `ollama.Client.chat` calls sending the same histories,
   both against the instant server (graphs/embedded/instant.py), which runs in a child
   process as Ollama would. overhead_ratio is wall a / wall b; added_ms_per_turn_p50/_p95
   are percentiles over turns of a's turn minus b's, a turn being the wall time from the end
   of the previous turn to the end of this one. Beside them, (c) the page's worker holds the
   same duet (graphs.ui.live: a Registry's thread, its LiveRun the observer) while a poller
   takes the snapshots the page takes every POLL_S: ui_added_ms_per_turn_p50 is c's turn
   minus b's, and ui_minus_cli_ms_per_turn_p50 how much more the page adds than the CLI.
   And (d) AutoGen AgentChat holds the same duet in a process of its own, with the Python
   that has the bench extra (bench_autogen.py): autogen_added_ms_per_turn_p50 is d's turn
   minus b's, and added_vs_autogen_ratio ours over it.
2. Throughput. A short duet on the embedded model (in-process, as `run --embedded` has it;
   greedy, fixed num_predict and thread count) against the same prompts, from the run's
   inputs.jsonl, decoded straight through llama-cpp-python with the same settings:
   decode_ratio is the engine's decode tok/s (trace: eval_count / eval_duration) over the
   direct loop's.
3. Prompt cache. In those duets, the prompt tokens the server evaluated (prompt_eval_count -
   prompt_eval_cached_count of its final chunks, recorded at the server: the `ollama` client
   drops the cached count before it reaches the trace) over the tokens new since that
   speaker's previous turn (a first turn: its whole prompt).
4. Memory. The peak RSS of a child process holding one --turns engine run, and how its RSS
   grew per turn (least-squares slope from turn turns/10 on) next to the transcript's size
   per turn.
5. Records. inputs.jsonl's and the checkpoint database's bytes per turn after engine runs of
   100 and of 400 turns (GROWTH_TURNS): equal figures mean they grow linearly.

A benchmark reports figures; it asserts nothing (tests/test_bench.py checks the report).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphs.embedded.backend import ChatDone
from graphs.embedded.instant import INSTANT_MODELS
from graphs.errors import DuologueError
from graphs.run.observe import SilentObserver

if TYPE_CHECKING:
    from graphs.engine.schedule import PlannedTurn
    from graphs.engine.spec import Shape
    from graphs.engine.state import Turn
    from graphs.records.schema import TraceRecord

TOPIC = (
    "Whether a tool that records everything it does can still be fast: "
    "what a framework owes the models it drives, and what it may keep for itself."
)
EMBEDDED_NUM_PREDICT = 128
EMBEDDED_SEED = 42
EMBEDDED_TURNS = 4
WARMUP_TURNS = 6
SERVER_START_TIMEOUT_S = 30.0

KEYS = (
    "overhead_ratio",
    "added_ms_per_turn_p50",
    "added_ms_per_turn_p95",
    "autogen_added_ms_per_turn_p50",
    "added_vs_autogen_ratio",
    "ui_added_ms_per_turn_p50",
    "ui_minus_cli_ms_per_turn_p50",
    "decode_ratio",
    "prompt_reeval_ratio",
    "peak_rss_mb",
    "analyze_ms_100_turns",
    "list_ms_10k_runs",
    "list_cold_ms_10k_runs",
    "ui_list_ms_10k_runs",
    "inputs_bytes_per_turn_100",
    "inputs_bytes_per_turn_400",
    "checkpoint_bytes_per_turn_100",
    "checkpoint_bytes_per_turn_400",
)
TARGETS: dict[str, tuple[str, float]] = {
    "overhead_ratio": ("<=", 1.10),
    "added_ms_per_turn_p50": ("<=", 2.0),
    "ui_minus_cli_ms_per_turn_p50": ("<=", 2.0),
    "added_vs_autogen_ratio": ("<=", 1.0),
    "decode_ratio": (">=", 0.95),
    "prompt_reeval_ratio": ("<=", 1.2),
    "analyze_ms_100_turns": ("<=", 1000.0),
    "list_ms_10k_runs": ("<=", 1000.0),
    "ui_list_ms_10k_runs": ("<=", 1000.0),
}
GROWTH_TURNS = (100, 400)
"""The lengths at which the records' bytes per turn are measured: equal if they grow linearly."""
PEER_SCRIPT = Path(__file__).with_name("bench_autogen.py")
PEER_PYTHON_ENV = "DUOLOGUE_BENCH_PEER_PYTHON"
ANALYSIS_TURNS = 100
ANALYSIS_WORDS_PER_TURN = 180


class BenchError(DuologueError):
    """The benchmark could not run as asked (a bad setting, a server that did not start)."""


@dataclass(frozen=True)
class BenchSettings:
    turns: int = 100
    """Turns of the overhead and memory duets."""
    repeat: int = 5
    """Repetitions of each side; every figure is a median over them."""
    embedded: bool = True
    """Measure decode_ratio and prompt_reeval_ratio on the embedded model (needs the extra)."""
    embedded_turns: int = EMBEDDED_TURNS
    num_predict: int = EMBEDDED_NUM_PREDICT
    num_thread: int | None = None
    """llama.cpp threads on both sides; None: one core fewer than there are (at least one)."""
    peer_python: str | None = None
    """The Python that has the bench extra (AutoGen); None: $DUOLOGUE_BENCH_PEER_PYTHON, else this one."""

    def threads(self) -> int:
        """With every core decoding, the client's own work stalls llama.cpp's thread barrier:
        on 2 shared cores, 2 threads decoded anywhere from 4 to 166 tok/s, 1 thread 140-155."""
        return self.num_thread or max(1, usable_cores() - 1)

    def check(self) -> None:
        if self.turns < 2:
            raise BenchError(f"--turns {self.turns}: a duet needs at least 2 turns")
        if self.repeat < 1:
            raise BenchError(f"--repeat {self.repeat}: repeat at least once")


Progress = Callable[[str], None]


def run_bench(settings: BenchSettings, progress: Progress | None = None) -> dict[str, Any]:
    """Every figure, as one JSON-ready dict; embedded figures are None when not measured."""
    settings.check()
    say = progress or (lambda _message: None)
    result: dict[str, Any] = dict.fromkeys(KEYS)
    result |= {"turns": settings.turns, "repeat": settings.repeat}
    with tempfile.TemporaryDirectory(prefix="duologue-bench-") as scratch:
        runs_dir = Path(scratch) / "runs"
        runs_dir.mkdir()
        from graphs.records.store import RunStore

        RunStore(runs_dir).summaries()  # its index, as any runs folder listed once has: runs keep it up
        peer, result["peer_skipped"] = peer_python(settings)
        with instant_server() as url:
            result |= measure_overhead(url, settings, runs_dir, say, peer)
            say("memory: one engine run in a child process")
            result |= measure_memory(url, settings.turns, runs_dir)
            say(f"records: bytes per turn at {' and '.join(map(str, GROWTH_TURNS))} turns")
            result |= measure_record_growth(url, runs_dir / "growth")
        say(f"analysis: a {ANALYSIS_TURNS}-turn dialogue, {settings.repeat} time(s)")
        result |= measure_analysis(settings.repeat)
        say(f"listing: {LISTED_RUNS} run folders, {settings.repeat} time(s)")
        result |= measure_listing(Path(scratch) / "many-runs", settings.repeat)
        result["embedded_skipped"] = None
        if not settings.embedded:
            result["embedded_skipped"] = "decode_ratio and prompt_reeval_ratio not measured (--skip-embedded)"
        else:
            from graphs.embedded.llama_backend import EmbeddedUnavailable

            try:
                result |= measure_embedded(settings, runs_dir, say)
            except EmbeddedUnavailable as exc:
                result["embedded_skipped"] = f"decode_ratio and prompt_reeval_ratio not measured: {exc}"
    result["machine"] = machine()
    return result


# -- the instant server ------------------------------------------------------------------


@contextmanager
def instant_server() -> Iterator[str]:
    """The instant server in a child process, as Ollama is a process of its own; yields its URL."""
    child = subprocess.Popen(
        [sys.executable, "-m", "graphs.embedded.instant"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise BenchError("the benchmark's instant server did not start (see the lines above)")
        yield url
    finally:
        if child.stdin is not None:
            child.stdin.close()  # the server stops when its stdin closes
        try:
            child.wait(timeout=SERVER_START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


# -- 1. overhead ---------------------------------------------------------------------------


@dataclass
class SideRun:
    """One repetition of one side: its wall time and each turn's."""

    wall_s: float
    turn_s: list[float]
    residency_s: list[float] = field(default_factory=list)
    sent: list[list[dict[str, str]]] = field(default_factory=list)


class TurnClock(SilentObserver):
    """Stamps the start of the first turn and the end of every turn."""

    def __init__(self) -> None:
        self.first_started: float | None = None
        self.ends: list[float] = []

    def turn_started(self, planned: PlannedTurn, label: str, model: str) -> None:
        if self.first_started is None:
            self.first_started = time.perf_counter()

    def turn_finished(self, turn: Turn, record: TraceRecord | None) -> None:
        self.ends.append(time.perf_counter())

    def turn_seconds(self) -> list[float]:
        if self.first_started is None:
            return []
        starts = [self.first_started, *self.ends[:-1]]
        return [end - start for start, end in zip(starts, self.ends, strict=True)]


def instant_shape() -> Shape:
    from graphs.engine.spec import load_shape, with_overrides

    return with_overrides(load_shape("duet"), dict(zip(("a", "b"), INSTANT_MODELS, strict=True)), [])


def engine_run(
    url: str,
    turns: int,
    runs_dir: Path,
    observer: SilentObserver | None = None,
    shape: Shape | None = None,
    topic: str = TOPIC,
) -> SideRun:
    """(a) The dialogue through the engine, as `duologue run` holds it (LangSmith off)."""
    from graphs.run.runner import RunRequest, run_dialogue

    shape = shape or instant_shape()
    clock = observer if isinstance(observer, TurnClock) else TurnClock()
    request = RunRequest(
        shape=shape,
        topic=topic,
        turns=turns,
        hosts={p.name: url for p in shape.participants},
        runs_dir=runs_dir,
        trace=False,
    )
    started = time.perf_counter()
    outcome = run_dialogue(request, observer or clock)
    wall = time.perf_counter() - started
    if outcome.status != "completed":
        raise BenchError(f"the benchmark's engine run ended {outcome.status}: {outcome.folder}")
    residency = [outcome.records[n].residency_s or 0.0 for n in sorted(outcome.records)]
    return SideRun(wall, clock.turn_seconds(), residency)


class PageClock(TurnClock):
    """A TurnClock that hands everything on to the page's LiveRun, as the page's worker has it."""

    def __init__(self, live: Any) -> None:
        super().__init__()
        self.live = live

    def run_started(self, run_id: str, folder: Path) -> None:
        self.live.run_started(run_id, folder)

    def turn_started(self, planned: PlannedTurn, label: str, model: str) -> None:
        super().turn_started(planned, label, model)
        self.live.turn_started(planned, label, model)

    def turn_placed(self, placement: TraceRecord) -> None:
        self.live.turn_placed(placement)

    def token(self, text: str, thinking: bool) -> None:
        self.live.token(text, thinking)

    def turn_finished(self, turn: Turn, record: TraceRecord | None) -> None:
        self.live.turn_finished(turn, record)
        super().turn_finished(turn, record)

    def run_ended(self, status: str) -> None:
        self.live.run_ended(status)


def page_run(url: str, turns: int, runs_dir: Path) -> SideRun:
    """(c) The dialogue as the page holds it: launched into a Registry's worker thread, its LiveRun
    read by a poller every POLL_S, as the page's two fragments read it (a status line, the turn)."""
    import threading

    from graphs.run.runner import RunRequest, run_dialogue
    from graphs.ui.live import POLL_S, Registry

    shape = instant_shape()
    request = RunRequest(
        shape=shape,
        topic=TOPIC,
        turns=turns,
        hosts={p.name: url for p in shape.participants},
        runs_dir=runs_dir,
        trace=False,
    )
    clocks: list[PageClock] = []

    def runner(request: RunRequest, live: Any) -> Any:
        clocks.append(PageClock(live))
        return run_dialogue(request, clocks[0])

    started = time.perf_counter()
    live = Registry().launch(request, runner)
    watching = threading.Event()

    def poll() -> None:
        while not watching.wait(POLL_S):
            live.snapshot()
            live.snapshot()

    poller = threading.Thread(target=poll, name="duologue-bench-poller", daemon=True)
    poller.start()
    assert live.thread is not None
    live.thread.join()
    wall = time.perf_counter() - started
    watching.set()
    poller.join()
    if live.status != "completed":
        raise BenchError(f"the benchmark's page run ended {live.status}: {live.error or live.folder}")
    return SideRun(wall, clocks[0].turn_seconds())


@dataclass
class DuetScript:
    """What the raw loop needs, prepared before its clock starts: the texts a client would
    have as constants (system prompts, framing) and each participant's request settings."""

    url: str
    plan: list[PlannedTurn]
    models: dict[str, str]
    options: dict[str, dict[str, Any]]
    keep_alive: dict[str, str | int]
    system: dict[str, str]
    framing: dict[int, str | None]


def duet_script(url: str, turns: int, topic: str = TOPIC) -> DuetScript:
    """The same prompts and options the engine will send, the options resolved as it resolves them."""
    from graphs.engine.relay import messages_for
    from graphs.engine.schedule import plan_turns
    from graphs.ollama import api as ollama
    from graphs.ollama import residency

    shape = instant_shape()
    hosts = {p.name: url for p in shape.participants}
    shape = residency.resolve_shape(shape, hosts, topic, turns)
    plan = plan_turns(shape, turns)
    system: dict[str, str] = {}
    framing: dict[int, str | None] = {}
    for planned in plan:
        sent = messages_for(shape, topic, [], planned, turns)
        system.setdefault(planned.speaker, str(sent[0].content))
        framed = getattr(shape.framing, planned.kind) is not None
        framing[planned.number] = str(sent[-1].content) if framed else None
    return DuetScript(
        url=url,
        plan=plan,
        models={p.name: p.model for p in shape.participants},
        options={p.name: ollama.request_options(p.options) for p in shape.participants},
        keep_alive={p.name: p.options.keep_alive for p in shape.participants},
        system=system,
        framing=framing,
    )


def client_run(script: DuetScript, keep_sent: bool = False) -> SideRun:
    """(b) A minimal hand-written loop: the `ollama` client, alternating histories, no records."""
    import ollama

    started = time.perf_counter()
    turn_s: list[float] = []
    sent: list[list[dict[str, str]]] = []
    with ollama.Client(host=script.url, timeout=600) as client:
        histories = {name: [{"role": "system", "content": text}] for name, text in script.system.items()}
        for planned in script.plan:
            turn_started = time.perf_counter()
            history = histories[planned.speaker]
            framing = script.framing[planned.number]
            if framing is not None:
                history.append({"role": "user", "content": framing})
            if keep_sent:
                sent.append([dict(m) for m in history])
            parts = client.chat(
                model=script.models[planned.speaker],
                messages=history,
                options=script.options[planned.speaker],
                keep_alive=script.keep_alive[planned.speaker],
                stream=True,
            )
            text = "".join(part.message.content or "" for part in parts).strip()
            for name, other in histories.items():
                other.append({"role": "assistant" if name == planned.speaker else "user", "content": text})
            turn_s.append(time.perf_counter() - turn_started)
    return SideRun(time.perf_counter() - started, turn_s, sent=sent)


def peer_python(settings: BenchSettings) -> tuple[str | None, str | None]:
    """The interpreter to hold the AutoGen side with, or None and the one line saying why not."""
    chosen = settings.peer_python or os.environ.get(PEER_PYTHON_ENV) or sys.executable
    try:
        done = subprocess.run(
            [chosen, str(PEER_SCRIPT), "--check"], capture_output=True, text=True, timeout=120, check=False
        )
        missing = json.loads(done.stdout.strip().splitlines()[-1]).get("missing")
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as exc:
        missing = f"{chosen} could not be run ({exc.__class__.__name__})"
    if not missing:
        return chosen, None
    return None, (
        f"AutoGen AgentChat not measured: {chosen} lacks the bench extra ({missing}); install it with "
        "pip install 'duologue[bench]', in a venv of its own if the dev extra is installed (its LangGraph "
        f"server needs a newer protobuf than AutoGen allows): make bench-peer, then --peer-python "
        f".venv-bench/bin/python or ${PEER_PYTHON_ENV}"
    )


def peer_run(python: str, script: DuetScript, topic: str = TOPIC) -> SideRun:
    """(d) AutoGen AgentChat holding the same duet, in a process of its own (bench_autogen.py)."""
    order = list(dict.fromkeys(planned.speaker for planned in script.plan))
    payload = {
        "url": script.url,
        "order": order,
        "models": script.models,
        "options": script.options,
        "system": script.system,
        "topic": script.framing.get(1) or topic,
        "turns": len(script.plan),
    }
    done = subprocess.run(
        [python, str(PEER_SCRIPT)], input=json.dumps(payload), capture_output=True, text=True, check=False
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"the AutoGen side failed (exit {done.returncode}): {last}")
    report = json.loads(lines[-1])
    if len(report["turn_s"]) != len(script.plan):
        raise BenchError(f"the AutoGen side held {len(report['turn_s'])} turns of {len(script.plan)}")
    return SideRun(report["wall_s"], report["turn_s"])


def measure_overhead(
    url: str, settings: BenchSettings, runs_dir: Path, say: Progress, peer: str | None = None
) -> dict[str, Any]:
    script = duet_script(url, settings.turns)
    warmup = duet_script(url, min(settings.turns, WARMUP_TURNS))
    say("overhead: warming up both sides")
    engine_run(url, min(settings.turns, WARMUP_TURNS), runs_dir)  # imports, caches, first compile
    page_run(url, min(settings.turns, WARMUP_TURNS), runs_dir)
    client_run(warmup)
    if peer is not None:
        peer_run(peer, warmup)
    ratios, p50s, p95s, engine_turn, client_turn, residency = [], [], [], [], [], []
    walls_a, walls_b, ui_p50s, ui_minus_cli, peer_p50s, peer_turn = [], [], [], [], [], []
    for rep in range(settings.repeat):
        sides = "engine, the page's worker, raw client" + (", then AutoGen" if peer else "")
        say(f"overhead: repetition {rep + 1}/{settings.repeat} ({sides})")
        a = engine_run(url, settings.turns, runs_dir)
        c = page_run(url, settings.turns, runs_dir)
        b = client_run(script)
        if peer is not None:
            d = peer_run(peer, script)
            peer_added = [(x - y) * 1000 for x, y in zip(d.turn_s, b.turn_s, strict=True)]
            peer_p50s.append(percentile(peer_added, 50))
            peer_turn.append(percentile([s * 1000 for s in d.turn_s], 50))
        added = [(x - y) * 1000 for x, y in zip(a.turn_s, b.turn_s, strict=True)]
        ui_added = [(x - y) * 1000 for x, y in zip(c.turn_s, b.turn_s, strict=True)]
        ui_p50s.append(percentile(ui_added, 50))
        ui_minus_cli.append(ui_p50s[-1] - percentile(added, 50))
        ratios.append(a.wall_s / b.wall_s)
        walls_a.append(a.wall_s)
        walls_b.append(b.wall_s)
        p50s.append(percentile(added, 50))
        p95s.append(percentile(added, 95))
        engine_turn.append(percentile([s * 1000 for s in a.turn_s], 50))
        client_turn.append(percentile([s * 1000 for s in b.turn_s], 50))
        residency.append(percentile([s * 1000 for s in a.residency_s], 50))
    compared: dict[str, Any] = {}
    if peer_p50s:
        autogen = statistics.median(peer_p50s)
        compared = {
            "autogen_added_ms_per_turn_p50": round(autogen, 3),
            "autogen_ms_per_turn_p50": round(statistics.median(peer_turn), 3),
            "added_vs_autogen_ratio": round(statistics.median(p50s) / autogen, 3) if autogen > 0 else None,
        }
    return compared | {
        "overhead_ratio": round(statistics.median(ratios), 3),
        "added_ms_per_turn_p50": round(statistics.median(p50s), 3),
        "added_ms_per_turn_p95": round(statistics.median(p95s), 3),
        "ui_added_ms_per_turn_p50": round(statistics.median(ui_p50s), 3),
        "ui_minus_cli_ms_per_turn_p50": round(statistics.median(ui_minus_cli), 3),
        "engine_wall_s": round(statistics.median(walls_a), 3),
        "client_wall_s": round(statistics.median(walls_b), 3),
        "engine_ms_per_turn_p50": round(statistics.median(engine_turn), 3),
        "client_ms_per_turn_p50": round(statistics.median(client_turn), 3),
        "residency_ms_per_turn_p50": round(statistics.median(residency), 3),
    }


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile, interpolated between the two nearest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# -- 4. memory ---------------------------------------------------------------------------


class RssClock(TurnClock):
    """Also samples the process's resident memory at the end of every turn."""

    def __init__(self) -> None:
        super().__init__()
        self.rss_kb: list[int] = []

    def turn_finished(self, turn: Turn, record: TraceRecord | None) -> None:
        super().turn_finished(turn, record)
        rss = current_rss_kb()
        if rss is not None:
            self.rss_kb.append(rss)


def current_rss_kb() -> int | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def peak_rss_kb() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, kB elsewhere


def memory_child(url: str, turns: int, runs_dir: Path) -> dict[str, Any]:
    """In the child process: one engine run, its RSS at every turn end and its peak."""
    clock = RssClock()
    engine_run(url, turns, runs_dir, observer=clock)
    from graphs.records.store import TRANSCRIPT

    folders = sorted((f for f in runs_dir.iterdir() if f.is_dir()), key=lambda f: f.stat().st_mtime)
    transcript = folders[-1] / TRANSCRIPT
    return {
        "peak_rss_kb": peak_rss_kb(),
        "rss_kb": clock.rss_kb,
        "transcript_bytes": transcript.stat().st_size,
    }


def measure_memory(url: str, turns: int, runs_dir: Path) -> dict[str, Any]:
    child_dir = runs_dir / "memory"
    child_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "graphs.commands.bench", "memory", url, str(turns), str(child_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"the memory run failed (exit {done.returncode}): {last}")
    report = json.loads(lines[-1])
    rss = report["rss_kb"]
    growth = None
    first = min(max(turns // 10, 1), len(rss) - 1) - 1  # the sample after turn turns/10
    if len(rss) - first >= 2:  # the least-squares slope: one allocator step weighs little
        growth = statistics.linear_regression(range(first, len(rss)), rss[first:]).slope
    return {
        "peak_rss_mb": round(report["peak_rss_kb"] / 1024, 1),
        "rss_growth_kb_per_turn": round(growth, 2) if growth is not None else None,
        "transcript_kb_per_turn": round(report["transcript_bytes"] / 1024 / turns, 2),
    }


def measure_record_growth(url: str, runs_dir: Path) -> dict[str, Any]:
    """inputs.jsonl's and the checkpoint database's bytes per turn, for runs of each GROWTH_TURNS
    length: a record that grows linearly has the same figure at every length."""
    from graphs.records.store import CHECKPOINTS, INPUTS

    figures: dict[str, Any] = {}
    for turns in GROWTH_TURNS:
        folder = runs_dir / str(turns)
        folder.mkdir(parents=True, exist_ok=True)
        engine_run(url, turns, folder)
        (run,) = (f for f in folder.iterdir() if f.is_dir())
        database = sum(p.stat().st_size for p in run.iterdir() if p.name.startswith(CHECKPOINTS))  # -wal too
        figures[f"inputs_bytes_per_turn_{turns}"] = round((run / INPUTS).stat().st_size / turns)
        figures[f"checkpoint_bytes_per_turn_{turns}"] = round(database / turns)
    return figures


# -- 2 and 3. the embedded model -------------------------------------------------------------


@dataclass
class EmbeddedRun:
    decode_tok_s: float
    evaluated: int
    new: int
    prompts: list[tuple[list[dict[str, str]], int]]
    """Each turn's messages and eval_count, for the direct side to decode alike."""
    num_ctx: int


def embedded_shape(num_predict: int, num_thread: int) -> Shape:
    """The built-in duet, greedy, with a fixed length and thread count."""
    from graphs.engine.spec import load_shape, with_overrides

    options = {"temperature": 0, "seed": EMBEDDED_SEED, "num_predict": num_predict, "num_thread": num_thread}
    settings = [(name, key, value) for name in ("a", "b") for key, value in options.items()]
    return with_overrides(load_shape("duet"), {}, settings)


def essay() -> str:
    return resources.files("graphs.samples").joinpath("essay.md").read_text(encoding="utf-8")


def embedded_engine_run(
    url: str, settings: BenchSettings, runs_dir: Path, finals: list[ChatDone] | None = None
) -> EmbeddedRun:
    """The engine's duet on the embedded server, read back from its trace and inputs.

    `finals` collects the server's final chunks (see recording_chat); when given, the
    prompt counts come from them, since the `ollama` client drops prompt_eval_cached_count
    before it reaches the trace. Without them, the trace's counts serve.
    """
    from graphs.records.store import RunStore

    before = {f for f in runs_dir.iterdir() if f.is_dir()} if runs_dir.is_dir() else set()
    first_final = len(finals) if finals is not None else 0
    shape = embedded_shape(settings.num_predict, settings.threads())
    engine_run(url, settings.embedded_turns, runs_dir, shape=shape, topic=essay())
    (folder,) = {f for f in runs_dir.iterdir() if f.is_dir()} - before  # the index's files are no run
    run = RunStore(runs_dir).load(folder.name)
    records = sorted(run.turn_records, key=lambda r: r.turn or 0)
    inputs = {row.turn: row.messages for row in run.inputs()}
    counts = [(r.prompt_eval_count or 0, r.prompt_eval_cached_count or 0) for r in records]
    if finals is not None:
        served = finals[first_final:]
        if len(served) != len(records):
            raise BenchError(f"the embedded server answered {len(served)} chats for {len(records)} turns")
        counts = [(done.prompt_eval_count, done.prompt_eval_cached_count) for done in served]
    evaluated = new = 0
    last_prompt: dict[str, int] = {}
    for record, (prompt, cached) in zip(records, counts, strict=True):
        evaluated += prompt - cached
        new += prompt - last_prompt.get(record.speaker or "", 0)
        last_prompt[record.speaker or ""] = prompt
    eval_count = sum(r.eval_count or 0 for r in records)
    eval_ns = sum(r.eval_duration or 0 for r in records)
    num_ctx = max(int(p.options.get("num_ctx") or 0) for p in run.meta.participants)
    return EmbeddedRun(
        decode_tok_s=eval_count / (eval_ns / 1e9) if eval_ns else 0.0,
        evaluated=evaluated,
        new=new,
        prompts=[(inputs[r.turn or 0], r.eval_count or 0) for r in records],
        num_ctx=num_ctx,
    )


def recording_chat(backend: Any, finals: list[ChatDone]) -> None:
    """Make `backend` keep every final chunk it sends, for the prompt counts."""
    chat = backend.chat

    def recording(request: Any, cancelled: Callable[[], bool]) -> Iterator[Any]:
        for item in chat(request, cancelled):
            if isinstance(item, ChatDone):
                finals.append(item)
            yield item

    backend.chat = recording


class DirectLlama:
    """The same GGUF straight through llama-cpp-python: template, prefill, greedy decode."""

    def __init__(self, path: Path, num_ctx: int, num_thread: int) -> None:
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from graphs.embedded.llama_backend import new_llama

        self.llm = new_llama(path, num_ctx, num_thread)
        llm = self.llm
        self.formatter = Jinja2ChatFormatter(
            llm.metadata["tokenizer.chat_template"],
            eos_token=llm.detokenize([llm.token_eos()], special=True).decode(),
            bos_token=llm.detokenize([llm.token_bos()], special=True).decode(),
        )
        self.llama_cpp = llama_cpp

    def decode_tok_s(self, prompts: Sequence[tuple[list[dict[str, str]], int]]) -> float:
        """Decode exactly as many tokens as the engine did for each prompt; tokens per second."""
        llm = self.llm
        count = elapsed_ns = 0
        for messages, tokens_wanted in prompts:
            prompt = self.formatter(messages=messages).prompt  # type: ignore[arg-type]
            llm.reset()
            llm.eval(llm.tokenize(prompt.encode(), add_bos=True, special=True))  # prefill, not timed
            llm.set_seed(EMBEDDED_SEED)
            llm.last_n_tokens_size = 64  # Ollama's repeat_last_n, as the embedded server sets it
            tokens = llm.generate([], reset=False, temp=0.0, repeat_penalty=1.1)
            started = time.perf_counter_ns()
            for _ in range(tokens_wanted):
                next(tokens)
            elapsed_ns += time.perf_counter_ns() - started
            tokens.close()
            count += tokens_wanted
        return count / (elapsed_ns / 1e9) if elapsed_ns else 0.0

    def close(self) -> None:
        self.llm.close()


def measure_embedded(settings: BenchSettings, runs_dir: Path, say: Progress) -> dict[str, Any]:
    """decode_ratio and prompt_reeval_ratio; EmbeddedUnavailable when the extra is missing."""
    from graphs.embedded.llama_backend import SERVED, require_embedded
    from graphs.embedded.serve import start_embedded
    from graphs.ollama import api as ollama

    path = require_embedded()
    server = start_embedded()
    finals: list[ChatDone] = []
    recording_chat(server.backend, finals)
    direct: DirectLlama | None = None
    embedded_dir = runs_dir / "embedded"
    embedded_dir.mkdir(parents=True, exist_ok=True)
    ratios, reevals, engine_rates, direct_rates = [], [], [], []
    try:
        for rep in range(settings.repeat):
            say(f"embedded: repetition {rep + 1}/{settings.repeat} (engine, then llama-cpp-python)")
            for name in SERVED:  # every repetition starts with an empty prompt cache
                ollama.unload_model(server.url, name)
            engine = embedded_engine_run(server.url, settings, embedded_dir, finals)
            if direct is None:
                direct = DirectLlama(path, engine.num_ctx, settings.threads())
            direct_rate = direct.decode_tok_s(engine.prompts)
            ratios.append(engine.decode_tok_s / direct_rate)
            reevals.append(engine.evaluated / engine.new if engine.new else 0.0)
            engine_rates.append(engine.decode_tok_s)
            direct_rates.append(direct_rate)
    finally:
        server.stop()
        if direct is not None:
            direct.close()
    return {
        "decode_ratio": round(statistics.median(ratios), 3),
        "prompt_reeval_ratio": round(statistics.median(reevals), 3),
        "engine_decode_tok_s": round(statistics.median(engine_rates), 1),
        "direct_decode_tok_s": round(statistics.median(direct_rates), 1),
        "embedded_num_thread": settings.threads(),
    }


# -- the report ----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": usable_cores(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def synthetic_dialogue(turns: int = ANALYSIS_TURNS, words: int = ANALYSIS_WORDS_PER_TURN) -> list[Any]:
    """A long dialogue in plain sentences, the same every time: words drawn from the bench's topic
    and a few marker phrases, so every signal has work to do."""
    import random

    from graphs.insight.analysis import DialogueTurn

    draw = random.Random(7)
    vocabulary = [w.strip(".,:;") for w in TOPIC.split() if len(w) > 3] + ["memory", "river", "echo"]
    openers = ["I agree that", "I'd argue that", "Perhaps", "You emphasize that", "Clearly", "Why is it that"]
    dialogue = []
    for number in range(1, turns + 1):
        sentences, count = [], 0
        while count < words:
            body = " ".join(draw.choice(vocabulary) for _ in range(draw.randint(6, 14)))
            end = "?" if draw.random() < 0.15 else "."
            sentences.append(f"{draw.choice(openers)} {body}{end}")
            count += len(body.split()) + 2
        kind = "opening" if number == 1 else "closing" if number == turns else "reply"
        dialogue.append(DialogueTurn(number, "Ada" if number % 2 else "Brin", kind, " ".join(sentences)))
    return dialogue


def measure_analysis(repeat: int) -> dict[str, Any]:
    """analyze_ms_100_turns: the median wall time of the deterministic analysis of a long run."""
    from graphs.insight.analysis import analyze

    dialogue = synthetic_dialogue()
    analyze("warm-up", dialogue[:2])  # the lexicons load once per process
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        analyze("bench", dialogue)
        times.append((time.perf_counter() - started) * 1000)
    return {"analyze_ms_100_turns": round(statistics.median(times), 1)}


# -- 6. many runs ---------------------------------------------------------------------------

LISTED_RUNS = 10_000
LISTED_SHAPES = ("duet", "debate", "panel", "interjection")
LISTED_MODELS = ("glm-4.7-flash", "qwen3:32b", "llama3.2:3b", "gemma3:12b")
LISTED_STATUSES = ("completed", "completed", "completed", "failed", "interrupted")


def small_run_folders(root: Path, count: int = LISTED_RUNS) -> list[str]:
    """`count` small runs of two finished turns, written straight in the store's layout (run.json
    and trace.jsonl, no fsync): what a few sweeps leave behind, in seconds rather than hours.
    Shapes, models, statuses, flags and sweeps vary, so a listing has something to tell apart."""
    from graphs.records.schema import ParticipantRecord, RunMeta, TraceRecord

    root.mkdir(parents=True, exist_ok=True)
    run_ids = []
    for number in range(count):
        shape = LISTED_SHAPES[number % len(LISTED_SHAPES)]
        minute, second = divmod(number, 60)
        run_id = f"20261201-{minute // 60:02d}{minute % 60:02d}{second:02d}-{shape}-{number:08x}"
        started = f"2026-12-01T{minute // 60:02d}:{minute % 60:02d}:{second:02d}.000Z"
        models = [LISTED_MODELS[number % 4], LISTED_MODELS[(number // 4) % 4]]
        meta = RunMeta(
            run_id=run_id,
            shape=shape,
            status=LISTED_STATUSES[number % len(LISTED_STATUSES)],  # type: ignore[arg-type]
            participants=[
                ParticipantRecord(name=name, label=model, model=model, host="http://127.0.0.1:9", options={})
                for name, model in zip(("a", "b"), models, strict=True)
            ],
            topic=f"Topic {number % 50}: whether a sweep's {number}th dialogue says anything new",
            turns=4,
            started_at=started,
            ended_at=started,
            sweep_id=f"sweep-{number // 100:04d}",
            cell=number % 100,
        )
        folder = root / run_id
        folder.mkdir()
        (folder / "run.json").write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")
        rows = [
            TraceRecord(
                run_id=run_id,
                seq=turn,
                node=name,
                turn=turn,
                speaker=name,
                model=model,
                started_at=started,
                ended_at=started,
                latency_s=1.5,
                completion_tokens=40 + number % 7,
                tokens_per_s=30.0,
                gpu_fraction=0.5 if number % 13 == 0 else 1.0,
            )
            for turn, (name, model) in enumerate(zip(("a", "b"), models, strict=True), start=1)
        ]
        lines = "".join(row.model_dump_json() + "\n" for row in rows)
        (folder / "trace.jsonl").write_text(lines, encoding="utf-8")
        run_ids.append(run_id)
    return run_ids


def measure_listing(root: Path, repeat: int) -> dict[str, Any]:
    """list_ms_10k_runs: what `duologue runs` does with 10,000 runs (list them, make its table),
    from a warm index (median of `repeat`); list_cold_ms_10k_runs: the first listing, which builds
    the index from the folders; ui_list_ms_10k_runs: the page's Runs page drawing them (its
    script run in Streamlit's AppTest, once warm)."""
    from graphs.records.index import INDEX
    from graphs.records.store import RunStore
    from graphs.records.tables import RUNS_HEADERS, runs_rows, table

    small_run_folders(root)
    store = RunStore(root)

    def listing_ms() -> float:
        started = time.perf_counter()
        table(RUNS_HEADERS, runs_rows(store.summaries()))
        return (time.perf_counter() - started) * 1000

    for suffix in ("", "-wal", "-shm"):
        Path(f"{root / INDEX}{suffix}").unlink(missing_ok=True)
    cold = listing_ms()
    warm = [listing_ms() for _ in range(repeat)]
    return {
        "list_ms_10k_runs": round(statistics.median(warm), 1),
        "list_cold_ms_10k_runs": round(cold, 1),
        "ui_list_ms_10k_runs": round(statistics.median(page_listing_ms(root, repeat)), 1),
    }


def page_listing_ms(root: Path, repeat: int) -> list[float]:
    """The Runs page's script runs over the runs folder `root`, after a first one (imports, caches)."""
    from streamlit import logger
    from streamlit.testing.v1 import AppTest

    from graphs.records.store import RUNS_DIR_ENV

    page = Path(str(resources.files("graphs.ui").joinpath("views", "runs.py")))
    level, before = logger._global_log_level, os.environ.get(RUNS_DIR_ENV)
    logger.set_log_level("error")  # AppTest warns it runs bare: no figure, and not for the bench's output
    os.environ[RUNS_DIR_ENV] = str(root)
    try:
        app = AppTest.from_file(str(page), default_timeout=120).run()
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            app.run()
            times.append((time.perf_counter() - started) * 1000)
        if app.exception or not app.dataframe or len(app.dataframe[0].value) != LISTED_RUNS:
            raise BenchError(f"the Runs page did not list the {LISTED_RUNS} runs in {root}")
        return times
    finally:
        logger.set_log_level(level)
        if before is None:
            os.environ.pop(RUNS_DIR_ENV, None)
        else:
            os.environ[RUNS_DIR_ENV] = before


def holds(key: str, value: float | None) -> str:
    if key not in TARGETS:
        return ""
    if value is None:
        return "not measured"
    op, bound = TARGETS[key]
    return "yes" if (value <= bound if op == "<=" else value >= bound) else "no"


def memory_holds(result: dict[str, Any]) -> str:
    growth, transcript = result.get("rss_growth_kb_per_turn"), result.get("transcript_kb_per_turn")
    if growth is None or transcript is None:
        return "not measured"
    return "yes" if growth <= transcript else "no"


def render_table(result: dict[str, Any]) -> str:
    from graphs.records.tables import table

    def value(key: str, unit: str = "") -> str:
        number = result.get(key)
        return "-" if number is None else f"{number:g}{unit}"

    rows = [
        [
            "overhead_ratio",
            value("overhead_ratio"),
            "<= 1.10",
            holds("overhead_ratio", result["overhead_ratio"]),
        ],
        [
            "added_ms_per_turn_p50",
            value("added_ms_per_turn_p50", " ms"),
            "<= 2 ms",
            holds("added_ms_per_turn_p50", result["added_ms_per_turn_p50"]),
        ],
        ["added_ms_per_turn_p95", value("added_ms_per_turn_p95", " ms"), "", ""],
        ["autogen_added_ms_per_turn_p50", value("autogen_added_ms_per_turn_p50", " ms"), "(AutoGen's)", ""],
        [
            "added_vs_autogen_ratio",
            value("added_vs_autogen_ratio"),
            "<= 1.0",
            holds("added_vs_autogen_ratio", result.get("added_vs_autogen_ratio")),
        ],
        [
            "ui_added_ms_per_turn_p50",
            value("ui_added_ms_per_turn_p50", " ms"),
            "<= added_ms_per_turn_p50 + 2 ms",
            holds("ui_minus_cli_ms_per_turn_p50", result["ui_minus_cli_ms_per_turn_p50"]),
        ],
        [
            "ui_minus_cli_ms_per_turn_p50",
            value("ui_minus_cli_ms_per_turn_p50", " ms"),
            "<= 2 ms",
            holds("ui_minus_cli_ms_per_turn_p50", result["ui_minus_cli_ms_per_turn_p50"]),
        ],
        ["decode_ratio", value("decode_ratio"), ">= 0.95", holds("decode_ratio", result["decode_ratio"])],
        [
            "prompt_reeval_ratio",
            value("prompt_reeval_ratio"),
            "<= 1.2",
            holds("prompt_reeval_ratio", result["prompt_reeval_ratio"]),
        ],
        ["peak_rss_mb", value("peak_rss_mb", " MB"), "", ""],
        [
            "analyze_ms_100_turns",
            value("analyze_ms_100_turns", " ms"),
            "<= 1000 ms",
            holds("analyze_ms_100_turns", result["analyze_ms_100_turns"]),
        ],
        [
            "list_ms_10k_runs",
            value("list_ms_10k_runs", " ms"),
            "<= 1000 ms",
            holds("list_ms_10k_runs", result.get("list_ms_10k_runs")),
        ],
        ["list_cold_ms_10k_runs", value("list_cold_ms_10k_runs", " ms"), "(index rebuilt)", ""],
        [
            "ui_list_ms_10k_runs",
            value("ui_list_ms_10k_runs", " ms"),
            "<= 1000 ms",
            holds("ui_list_ms_10k_runs", result.get("ui_list_ms_10k_runs")),
        ],
        [
            "rss_growth_kb_per_turn",
            value("rss_growth_kb_per_turn", " kB"),
            f"<= {value('transcript_kb_per_turn', ' kB')} (transcript/turn)",
            memory_holds(result),
        ],
        *(
            [f"{record}_bytes_per_turn_{turns}", value(f"{record}_bytes_per_turn_{turns}", " B"), "", ""]
            for record in ("inputs", "checkpoint")
            for turns in GROWTH_TURNS
        ),
    ]
    details = [
        f"per turn (p50): engine {value('engine_ms_per_turn_p50', ' ms')}, of which residency checks "
        f"{value('residency_ms_per_turn_p50', ' ms')}; raw client {value('client_ms_per_turn_p50', ' ms')}",
        f"whole runs: engine {value('engine_wall_s', ' s')}, raw client {value('client_wall_s', ' s')}",
    ]
    if result.get("engine_decode_tok_s") is not None:
        details.append(
            f"decode: engine {value('engine_decode_tok_s')} tok/s, "
            f"llama-cpp-python {value('direct_decode_tok_s')} tok/s "
            f"({value('embedded_num_thread')} llama.cpp thread(s) on both sides)"
        )
    if result.get("autogen_ms_per_turn_p50") is not None:
        autogen = value("autogen_ms_per_turn_p50", " ms")
        details.append(f"AutoGen AgentChat, RoundRobinGroupChat: {autogen} a turn")
    for skipped in ("embedded_skipped", "peer_skipped"):
        if result.get(skipped):
            details.append(result[skipped])
    m = result["machine"]
    title = (
        f"duologue bench: {result['turns']}-turn duet, median of {result['repeat']} interleaved "
        f"repetition(s); {m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['date']}"
    )
    return "\n".join([title, "", table(["figure", "value", "target", "holds"], rows), "", *details])


# -- child processes ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m graphs.commands.bench memory URL TURNS RUNS_DIR`: the memory run, for measure_memory."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 4 or args[0] != "memory":
        print(
            "usage: python -m graphs.commands.bench memory URL TURNS RUNS_DIR (use `duologue bench`)",
            file=sys.stderr,
        )
        return 2
    print(json.dumps(memory_child(args[1], int(args[2]), Path(args[3]))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
