from string import Template

import pytest

from graphs.engine import prompting
from graphs.errors import PromptError


def test_every_shipped_template_loads_and_uses_only_known_variables():
    for name in prompting.template_names():
        template = prompting.load_template(name)
        assert set(template.get_identifiers()) <= prompting.VARIABLES


def test_unfilled_variable_is_refused():
    with pytest.raises(PromptError, match=r"prompts/opening.md needs a value for others"):
        prompting.render("opening")


def test_unknown_variable_is_refused():
    with pytest.raises(PromptError, match=r"unknown variable\(s\) colour"):
        prompting.render("opening", others="b", colour="red")


def test_unknown_template_is_refused():
    with pytest.raises(PromptError, match="no prompt template 'nope'"):
        prompting.render("nope")


def test_template_with_unknown_placeholder_is_refused_on_load(monkeypatch):
    prompting.load_template.cache_clear()

    class FakeResource:
        def is_file(self):
            return True

        def read_text(self, encoding):
            return "Hello $speakr"

    class FakeFolder:
        def joinpath(self, name):
            return FakeResource()

    monkeypatch.setattr(prompting.resources, "files", lambda package: FakeFolder())
    try:
        with pytest.raises(PromptError, match=r"prompts/typo.md uses unknown variable\(s\) speakr"):
            prompting.load_template("typo")
    finally:
        monkeypatch.undo()
        prompting.load_template.cache_clear()
    assert isinstance(prompting.load_template("opening"), Template)
