"""`duologue import`, `analyze` and `compare`: the terminal's side of graphs/insight."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from graphs.records.tables import number, table


def add_commands(commands: Any, runs_dir_option: Callable[[argparse.ArgumentParser], None]) -> None:
    imported = commands.add_parser("import", help="record a hand-held dialogue's transcript as a run")
    imported.add_argument("file", type=Path, metavar="FILE.md", help="a transcript in the reference's format")
    imported.add_argument("--json", action="store_true", help="print the new run's id and folder as JSON")
    runs_dir_option(imported)

    analyze = commands.add_parser("analyze", help="what happened between the speakers of a run")
    analyze.add_argument("run_id", metavar="RUN_ID", help="a run id, as `duologue runs` lists them")
    analyze.add_argument("--json", action="store_true", help="print the analysis as one JSON object")
    analyze.add_argument(
        "--judge", metavar="MODEL", help="also have this model label each turn's stance, with a quote"
    )
    analyze.add_argument(
        "--embed-model",
        metavar="MODEL",
        help="also compare each turn with the one before by this model's embeddings",
    )
    model_server_options(analyze, "the judge's and the embedding")
    runs_dir_option(analyze)

    observe = commands.add_parser("observe", help="an observer model's notes on a finished or imported run")
    observe.add_argument("run_id", metavar="RUN_ID", help="a run id, as `duologue runs` lists them")
    observe.add_argument("--model", required=True, metavar="MODEL", help="the observer's model")
    observe.add_argument(
        "--label", metavar="TEXT", help="the observer's name in the notes' heading (default: the model)"
    )
    observe.add_argument(
        "--persona", default="", metavar="TEXT", help="added to the observer's system prompt"
    )
    model_server_options(observe, "the observer's")
    observe.add_argument(
        "--json", action="store_true", help="print the notes and the observer's trace row as JSON"
    )
    runs_dir_option(observe)

    compare = commands.add_parser("compare", help="set runs side by side: models, speed, flags, analysis")
    compare.add_argument("run_ids", nargs="+", metavar="RUN_ID", help="two runs or more")
    compare.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    runs_dir_option(compare)


def model_server_options(command: argparse.ArgumentParser, whose: str) -> None:
    command.add_argument(
        "--host", metavar="URL", help=f"{whose} Ollama (default: $OLLAMA_HOST or http://127.0.0.1:11434)"
    )
    command.add_argument("--embedded", action="store_true", help=f"{whose} model on the embedded server")


@contextmanager
def model_server(args: argparse.Namespace) -> Iterator[str]:
    """The Ollama a judge or an observer is on: --host, --embedded (started here), or the default."""
    from graphs.commands.cli import embedded_host
    from graphs.ollama.api import default_host, normalize_host

    with embedded_host(args.embedded, normalize_host(args.host) if args.host else None) as host:
        yield host or default_host()


def cmd_import(args: argparse.Namespace) -> int:
    from graphs.insight.importer import import_transcript

    writer = import_transcript(args.file, args.runs_dir)
    if args.json:
        print(json.dumps({"run_id": writer.run_id, "folder": str(writer.folder)}, indent=2))
    else:
        turns, labels = writer.meta.turns, ", ".join(p.label for p in writer.meta.participants)
        print(f"Imported {args.file} as run {writer.run_id} ({turns} turns: {labels}): {writer.folder}")
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from graphs.insight.runs import analyze_run, as_json

    if args.judge or args.embed_model:
        with model_server(args) as host:
            judge = (args.judge, host) if args.judge else None
            embed = (args.embed_model, host) if args.embed_model else None
            analysis = analyze_run(args.run_id, args.runs_dir, judge, embed)
    else:
        analysis = analyze_run(args.run_id, args.runs_dir)
    if args.json:
        print(as_json(analysis))
        return 0
    headers: tuple[str, ...] = (
        "turn",
        "speaker",
        "words",
        "questions",
        "hedges",
        "agree",
        "challenge",
        "concede",
        "echo",
        "new",
        "sim",
    )
    rows = [
        [
            str(t.turn),
            t.speaker,
            str(t.words),
            str(t.questions),
            str(t.hedges),
            str(t.agreements),
            str(t.challenges),
            str(t.concessions),
            f"{t.echo_share:.0%}",
            f"{t.novelty:.0%}",
            number(t.similarity_to_previous, 2),
        ]
        for t in analysis.turns
    ]
    if analysis.embed_model:
        headers = (*headers, "emb sim")
        for row, signal in zip(rows, analysis.turns, strict=True):
            row.append(number(signal.embedding_similarity_to_previous, 2))
    print(table(headers, rows))
    print()
    speaker_headers = (
        "speaker",
        "turns",
        "words",
        "questions",
        "hedges/100w",
        "boosters/100w",
        "agree",
        "challenge",
    )
    speaker_rows = [
        [
            label,
            str(s.turns),
            str(s.words),
            str(s.questions),
            f"{s.hedges_per_100w:.2f}",
            f"{s.boosters_per_100w:.2f}",
            str(s.agreements),
            str(s.challenges),
        ]
        for label, s in analysis.speakers.items()
    ]
    print(table(speaker_headers, speaker_rows))
    if analysis.phrases:
        print("\nPhrases taken up:")
        for p in analysis.phrases[:10]:
            turns = ", ".join(map(str, p.turns))
            adopters = ", ".join(p.adopted_by)
            print(f'  "{p.phrase}": {p.first_by} (turn {p.first_turn}) → {adopters} (turns {turns})')
    if analysis.judge is not None:
        print(f"\nThe judge's labels ({analysis.judge.model}):")
        for label in analysis.judge.labels:
            print(f'  turn {label.turn}: {label.stance}: "{label.quote}"')
    if analysis.closing_attribution:
        print("\nThe closing's account of each position:")
        for a in analysis.closing_attribution:
            mark = "found" if a.supported else "NOT FOUND"
            print(f"  {mark:9}  {a.attributed_to}: {a.claim}")
    print()
    print("\n".join(analysis.summary))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from graphs.insight.runs import compare_runs

    comparison = compare_runs(args.run_ids, args.runs_dir)
    if args.json:
        print(json.dumps(comparison, indent=2))
        return 0
    runs = comparison["runs"]
    rows: list[list[str]] = [
        ["shape", *(r["shape"] for r in runs)],
        ["status", *(r["status"] for r in runs)],
        ["models", *(", ".join(r["models"].values()) for r in runs)],
        ["turns", *(r["turns"] for r in runs)],
        ["tokens", *(str(r["tokens"]) for r in runs)],
        ["tok/s", *(", ".join(f"{m} {v}" for m, v in r["tokens_per_s"].items()) or "-" for r in runs)],
        ["flags", *(", ".join(r["flags"]) or "-" for r in runs)],
        ["verdict", *(r["verdict"] or "-" for r in runs)],
    ]

    def per_speaker(run: dict[str, Any], key: str, form: str = "{}") -> str:
        return ", ".join(f"{label} {form.format(s[key])}" for label, s in run["speakers"].items()) or "-"

    rows.append(["questions", *(per_speaker(r, "questions") for r in runs)])
    rows.append(["challenges", *(per_speaker(r, "challenges") for r in runs)])
    rows.append(["hedges/100w", *(per_speaker(r, "hedges_per_100w") for r in runs)])
    rows.append(["echo", *(per_speaker(r, "echo_share", "{:.0%}") for r in runs)])
    print(table(["", *(r["run_id"] for r in runs)], rows))
    return 0


def cmd_observe(args: argparse.Namespace) -> int:
    from graphs.insight.observer import observe_run

    with model_server(args) as host:
        notes, record = observe_run(args.run_id, args.model, host, args.runs_dir, args.label, args.persona)
    if args.json:
        print(json.dumps({"notes": notes, "trace": record.model_dump(mode="json")}, indent=2))
    else:
        print(notes)
    return 0


COMMANDS = {"import": cmd_import, "analyze": cmd_analyze, "observe": cmd_observe, "compare": cmd_compare}
