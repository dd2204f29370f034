"""The README's generated parts: the command table, record fields, options and the module map.

README.md calls these from its cog blocks: `make docs` rewrites the blocks and `make lint`
fails while the README says something the code no longer does. The output depends only on
the code: the parser's, the models' and the tree's own order, sorted where there is none,
with no paths or times of the machine that made it.
"""

from __future__ import annotations

import argparse
import ast
import json
import types
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parents[2]
"""The repository: the README's module map walks it."""

ROOMS = ("graphs", "prompts", "ui", "tests")
"""The top-level folders of the module map, in the README's order."""

SKIPPED_DIRS = {"__pycache__"}


def cell(text: str) -> str:
    """Text for one Markdown table cell: one line, its pipes escaped (code spans included)."""
    return " ".join(text.split()).replace("|", "\\|")


def table(headers: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    names = list(headers)
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n\n"  # a blank line ends the table before the block's end marker


# -- the command table ---------------------------------------------------------------------------


def commands_table(parser: argparse.ArgumentParser | None = None) -> str:
    """One row per subcommand: how to call it, its help line, and every argument with its help."""
    if parser is None:
        from graphs.commands.cli import build_parser

        parser = build_parser()
    rows = []
    for name, summary, command in subcommands(parser):
        arguments = [a for a in command._actions if not isinstance(a, argparse._HelpAction)]
        usage = [f"{parser.prog} {name}"]
        usage += [invocation(a, code=False) for a in arguments if not a.option_strings or a.required]
        described = [": ".join(filter(None, (invocation(a), help_text(a, command)))) for a in arguments]
        rows.append((f"`{' '.join(usage)}`", summary, "<br>".join(described)))
    return table(["command", "what it does", "arguments"], rows)


def subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                yield choice.dest, choice.help or "", action.choices[choice.dest]


def invocation(action: argparse.Action, code: bool = True) -> str:
    """How the argument is written: `--model NAME=MODEL`, `--require-gpu`/`--no-require-gpu`, `[SHAPE]`."""
    if not action.option_strings:
        name = str(action.metavar or action.dest)
        written = f"[{name}]" if action.nargs == "?" else name
        return f"`{written}`" if code else written
    flags = [flag for flag in action.option_strings if flag.startswith("--")] or action.option_strings
    if action.nargs == 0:
        return "/".join(f"`{flag}`" if code else flag for flag in flags)
    if action.metavar:
        value = str(action.metavar)
    elif action.choices:
        value = "|".join(str(choice) for choice in action.choices)
    else:
        value = action.dest.upper()
    written = f"{flags[0]} {value}"
    return f"`{written}`" if code else written


def help_text(action: argparse.Action, command: argparse.ArgumentParser) -> str:
    """The help as `--help` prints it (argparse's %-placeholders filled in)."""
    text = action.help or ""
    if "%" in text:
        params = dict(vars(action), prog=command.prog)
        if action.choices is not None:
            params["choices"] = ", ".join(str(choice) for choice in action.choices)
        text = text % params
    return text


# -- record fields and options -------------------------------------------------------------------


def fields_table(model: type[BaseModel]) -> str:
    """Each field of a record model, in the model's order, with its type and its docstring."""
    rows = [
        (f"`{name}`", type_name(field.annotation), description(field))
        for name, field in model.model_fields.items()
    ]
    return table(["field", "type", "meaning"], rows)


def options_table() -> str:
    """Each model option, its default and its meaning, from ModelOptions."""
    from graphs.engine.spec import ModelOptions

    rows = []
    for name, field in ModelOptions.model_fields.items():
        default = "unset" if field.default is None else f"`{field.default}`"
        values = " ".join([type_name(field.annotation, nullable=False), ", ".join(bounds(field))]).strip()
        rows.append((f"`{name}`", default, values, description(field)))
    return table(["option", "default", "values", "meaning"], rows)


def description(field: FieldInfo) -> str:
    return " ".join((field.description or "").split())


def bounds(field: FieldInfo) -> list[str]:
    """A field's numeric constraints, as `≥ 256`."""
    signs = {
        annotated_types.Ge: ("≥", "ge"),
        annotated_types.Gt: (">", "gt"),
        annotated_types.Le: ("≤", "le"),
    }
    return [
        f"{sign} {getattr(item, attribute)}"
        for item in field.metadata
        for kind, (sign, attribute) in signs.items()
        if isinstance(item, kind)
    ]


BASIC_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    dict: "object",
    Any: "any",
    type(None): "null",
}


def type_name(annotation: Any, nullable: bool = True) -> str:
    """A field's type in JSON's words: `integer or null`, `list of strings`, `"a" or "b"`."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        kept = [a for a in args if nullable or a is not type(None)]
        return " or ".join(type_name(a) for a in sorted(kept, key=lambda a: a is type(None)))
    if origin is Literal:
        return " or ".join(f"`{json.dumps(value)}`" for value in args)  # "a" for a string, 2 for a number
    if origin is list and args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return "list of objects"  # each described in its own table
    if origin is list:
        return f"list of {type_name(args[0])}s" if args else "list"
    if origin is dict:
        return "object"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.__name__.removesuffix("Record").lower()
    return BASIC_TYPES.get(annotation, str(annotation))


# -- the module map ------------------------------------------------------------------------------


def module_map(root: Path = ROOT, rooms: Iterable[str] = ROOMS) -> str:
    """Every room and its modules, each with the first line of its docstring.

    A room is a folder; its line is its package docstring, else its README's first sentence.
    graphs/'s own modules come first, then its rooms. tests/ lists its folders and support
    modules but not the test files, which are named after what they test.
    """
    lines: list[str] = []
    for name in rooms:
        folder = root / name
        if name == "graphs":
            lines += [entry(f"graphs/{m.name}", first_line(m)) for m in python_files(folder)]
            for sub in subfolders(folder):
                lines += room_lines(sub, f"graphs/{sub.name}/")
        else:
            lines += room_lines(folder, f"{name}/", tests=name == "tests")
    return "\n".join(lines) + "\n\n"


def room_lines(folder: Path, label: str, depth: int = 0, tests: bool = False) -> list[str]:
    indent = "  " * depth
    lines = [indent + entry(label, room_summary(folder))]
    for module in python_files(folder):
        if module.name != "__init__.py" and not (tests and module.name.startswith("test_")):
            lines.append(f"{indent}  {entry(module.name, first_line(module))}")
    data = sorted(
        p.name for p in folder.iterdir() if p.is_file() and p.suffix != ".py" and p.name != "README.md"
    )
    if data:
        lines.append(f"{indent}  - " + ", ".join(f"`{name}`" for name in data))
    for sub in subfolders(folder):
        lines += room_lines(sub, f"{sub.name}/", depth + 1, tests)
    return lines


def entry(name: str, summary: str) -> str:
    return f"- `{name}`: {summary}" if summary else f"- `{name}`"


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".py")


def subfolders(folder: Path) -> list[Path]:
    """The folders under a room, hidden, cache and build folders left out."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and p.name not in SKIPPED_DIRS
        and p.suffix != ".egg-info"
    )


def room_summary(folder: Path) -> str:
    init, readme = folder / "__init__.py", folder / "README.md"
    summary = first_line(init) if init.is_file() else ""
    if not summary and readme.is_file():
        paragraphs = readme.read_text(encoding="utf-8").split("\n\n")
        text = next((" ".join(p.split()) for p in paragraphs if p.strip() and not p.startswith("#")), "")
        summary = text.split(". ")[0].rstrip(".") + "." if text else ""
    return summary


def first_line(module: Path) -> str:
    docstring = ast.get_docstring(ast.parse(module.read_text(encoding="utf-8")))
    return docstring.strip().splitlines()[0].strip() if docstring else ""
