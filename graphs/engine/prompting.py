"""The one loader of the framing templates in prompts/.

Templates use $name placeholders. A template naming a variable outside VARIABLES is
refused when loaded (a typo would otherwise reach a model verbatim), and rendering
without a value for each of its variables is refused too.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from string import Template

from graphs.errors import PromptError

VARIABLES = frozenset(
    {"speaker", "others", "persona", "topic", "turn", "turns", "kind", "shape", "dialogue", "summary"}
)


@cache
def load_template(name: str) -> Template:
    resource = resources.files("graphs.prompts").joinpath(f"{name}.md")
    if not resource.is_file():
        raise PromptError(f"no prompt template '{name}' in prompts/; known: {', '.join(template_names())}")
    template = Template(resource.read_text(encoding="utf-8").strip())
    if not template.is_valid():
        raise PromptError(f"prompts/{name}.md has a malformed $placeholder; write $$ for a dollar sign")
    unknown = sorted(set(template.get_identifiers()) - VARIABLES)
    if unknown:
        raise PromptError(
            f"prompts/{name}.md uses unknown variable(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(VARIABLES))}"
        )
    return template


def render(name: str, **values: str | int) -> str:
    template = load_template(name)
    unknown = sorted(set(values) - VARIABLES)
    if unknown:
        raise PromptError(f"rendering prompts/{name}.md with unknown variable(s) {', '.join(unknown)}")
    needed = template_variables(name)
    missing = sorted(needed - set(values))
    if missing:
        raise PromptError(f"prompts/{name}.md needs a value for {', '.join(missing)}")
    if not needed:
        return fixed_text(name)
    return tidied(template.substitute(values))


@cache
def template_variables(name: str) -> frozenset[str]:
    return frozenset(load_template(name).get_identifiers())


@cache
def fixed_text(name: str) -> str:
    """A template without variables, rendered once: a speaker's prompt holds its framing again
    before each of its turns, and renders it at every turn."""
    return tidied(load_template(name).substitute({}))


def tidied(rendered: str) -> str:
    return "\n".join(line.rstrip() for line in rendered.splitlines())


def template_names() -> list[str]:
    folder = resources.files("graphs.prompts")
    return sorted(
        p.name.removesuffix(".md")
        for p in folder.iterdir()
        if p.name.endswith(".md") and p.name != "README.md"
    )
