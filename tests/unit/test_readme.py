"""The README's generated parts: the README says what the code does, and the generators say it whole."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

from cogapp import Cog
from pydantic import BaseModel, ConfigDict, Field

from graphs.commands import readme

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_is_what_the_code_generates(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    status = Cog().main(["cog", "--check", "--diff", "README.md"])
    out = capsys.readouterr()
    assert status == 0, f"README.md is out of date; `make docs` regenerates it\n{out.out}{out.err}"


def test_command_table_has_every_argument_with_its_help_and_escapes_pipes():
    parser = argparse.ArgumentParser(prog="duologue")
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="hold a dialogue")
    run.add_argument("shape", metavar="SHAPE", help="a shape")
    run.add_argument("--host", metavar="URL|NAME=URL", help="where Ollama is")
    run.add_argument(
        "--residency", choices=["auto", "shared"], default="auto", help="placement (default %(default)s)"
    )
    run.add_argument("--require-gpu", action=argparse.BooleanOptionalAction, help="GPU only")
    run.add_argument("--at", type=int, required=True, metavar="N", help="copy turns 1..N")
    doctor = commands.add_parser("doctor", help="check | report")
    doctor.add_argument("shape", nargs="?", metavar="SHAPE")
    doctor.add_argument("--json", action="store_true", help="as JSON")

    assert readme.commands_table(parser) == (
        "| command | what it does | arguments |\n"
        "|---|---|---|\n"
        "| `duologue run SHAPE --at N` | hold a dialogue | `SHAPE`: a shape<br>`--host URL\\|NAME=URL`: where Ollama is"
        "<br>`--residency auto\\|shared`: placement (default auto)<br>`--require-gpu`/`--no-require-gpu`: GPU only"
        "<br>`--at N`: copy turns 1..N |\n"
        "| `duologue doctor [SHAPE]` | check \\| report | `[SHAPE]`<br>`--json`: as JSON |\n"
        "\n"
    )


class Inner(BaseModel):
    name: str


class Record(BaseModel):
    """A record with one field of each kind the tables name."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    status: Literal["running", "done"]
    """How it stands: running | done."""
    people: list[Inner]
    """Who took part,
    over two lines."""
    size: int | None = Field(default=None, ge=0, description="bytes")
    extra: dict[str, str] = {}


def test_fields_table_gives_each_field_its_type_and_docstring():
    assert readme.fields_table(Record) == (
        "| field | type | meaning |\n"
        "|---|---|---|\n"
        '| `status` | `"running"` or `"done"` | How it stands: running \\| done. |\n'
        "| `people` | list of objects | Who took part, over two lines. |\n"
        "| `size` | integer or null | bytes |\n"
        "| `extra` | object |  |\n"
        "\n"
    )


def test_options_table_gives_each_option_its_default_values_and_meaning():
    table = readme.options_table()
    assert table.splitlines()[:4] == [
        "| option | default | values | meaning |",
        "|---|---|---|---|",
        "| `num_ctx` | unset | integer ≥ 256, ≤ 16777216 | context window in tokens; unset: sized to the dialogue, at most the "
        "trained context |",
        "| `num_gpu` | `999` | integer ≥ 0 | layers on the GPU; 999: all of them, 0: CPU only |",
    ]


def write(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_module_map_walks_the_tree_so_a_new_module_appears_by_itself(tmp_path: Path):
    write(tmp_path / "graphs/__init__.py", '"""duologue: dialogues.\n\nThe public API."""\n')
    write(tmp_path / "graphs/errors.py", '"""Errors a user can act on."""\n')
    write(tmp_path / "graphs/engine/__init__.py", '"""The engine. No I/O."""\n')
    write(tmp_path / "graphs/engine/spec.py", '"""Shapes as data."""\n')
    write(tmp_path / "graphs/engine/shapes/__init__.py", '"""Built-in shapes."""\n')
    write(tmp_path / "graphs/engine/shapes/duet.yaml", "name: duet\n")
    write(tmp_path / "graphs/engine/__pycache__/spec.cpython-311.pyc")
    write(tmp_path / "prompts/__init__.py")
    write(
        tmp_path / "prompts/README.md",
        "# Framing templates\n\nThe only words added. Each file is a template.\n",
    )
    write(tmp_path / "prompts/opening.md", "Open the conversation.\n")
    write(tmp_path / "tests/conftest.py", '"""Shared setup."""\n')
    write(tmp_path / "tests/unit/__init__.py")
    write(tmp_path / "tests/unit/test_spec.py", '"""Shapes."""\n')
    write(tmp_path / "tests/support/fake.py", "")
    rooms = ["graphs", "prompts", "tests"]

    before = readme.module_map(tmp_path, rooms)
    assert before == (
        "- `graphs/__init__.py`: duologue: dialogues.\n"
        "- `graphs/errors.py`: Errors a user can act on.\n"
        "- `graphs/engine/`: The engine. No I/O.\n"
        "  - `spec.py`: Shapes as data.\n"
        "  - `shapes/`: Built-in shapes.\n"
        "    - `duet.yaml`\n"
        "- `prompts/`: The only words added.\n"
        "  - `opening.md`\n"
        "- `tests/`\n"
        "  - `conftest.py`: Shared setup.\n"
        "  - `support/`\n"
        "    - `fake.py`\n"
        "  - `unit/`\n"
        "\n"
    )

    write(tmp_path / "graphs/engine/relay.py", '"""What each speaker is sent.\n\nMore."""\n')
    after = readme.module_map(tmp_path, rooms)
    assert after == before.replace(
        "  - `spec.py`: Shapes as data.\n",
        "  - `relay.py`: What each speaker is sent.\n  - `spec.py`: Shapes as data.\n",
    )
