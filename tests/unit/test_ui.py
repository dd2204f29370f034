"""The page's pure pieces: untrusted text made safe for Markdown, a shape drawn as a graph."""

from __future__ import annotations

import pytest
from support.markup import armed, visible

from graphs import graph_dot, load_shape
from graphs.ui.render import code_span, model_text_blocks, plain, safe_markdown

SINK = "http://127.0.0.1:8765"
ACTING = [
    f"an image ![s]({SINK}/x.png) and a link [details]({SINK}/d)",
    f"a bare {SINK}/bare, an autolink <{SINK}/auto>, and HTML <img src={SINK}/h.png>",
    "www.example.org, mail@example.org and HTTPS://EXAMPLE.ORG/CAPS",
    f"entities &#91;x&#93;({SINK}/e) &lt;b&gt; and escapes \\[x\\]({SINK}/esc) http:/\\/{SINK[7:]}/slash",
    f"a reference [x][1]\n\n[1]: {SINK}/ref and a footnote[^1]",
    f"lone backticks `` and ``` around {SINK}/tick`, which open no code span",
    "$5 and $10, \\$20, a :red[directive] and a :material/home: icon",
]


@pytest.mark.parametrize("text", ACTING)
def test_model_text_reads_as_written_and_nothing_in_it_links(text):
    shown = safe_markdown(text)
    assert armed(shown) == [], shown
    assert visible(shown) == text


@pytest.mark.parametrize("text", ACTING)
def test_plain_text_is_one_line_that_reads_as_written_and_nothing_in_it_links(text):
    shown = plain(text)
    assert armed(shown) == [] and "\n" not in shown
    assert visible(shown) == " ".join(text.split())


def test_model_text_keeps_its_formatting_and_takes_urls_out_of_sentences():
    text = "**Bold**, *em*, `$PATH` and a list:\n- see https://d.example/a_b.\n- (or www.d.example)"
    assert safe_markdown(text) == (
        "**Bold**, *em*, `$PATH` and a list:\n- see `https://d.example/a_b`.\n- (or `www.d.example`)"
    )


def test_plain_text_escapes_every_character_markdown_reads():
    assert plain("# 1. *a*_b_ <c> [d](e) :red[f] $g\n\n- h") == (
        "\\# 1\\. \\*a\\*\\_b\\_ \\<c\\> \\[d\\]\\(e\\) \\:red\\[f\\] \\$g \\- h"
    )


def test_a_code_span_holds_any_backticks():
    assert code_span("a`b") == "``a`b``"
    assert code_span("`a") == "`` `a ``"
    assert visible(code_span("x``y`")) == "x``y`"


def test_fenced_code_is_cut_out_of_model_text_to_be_shown_as_code():
    text = (
        "Before\n```python\nprint('![c](http://x/c.png)')\n```\nbetween\n"
        "  ~~~\n  indented http://x/i\n  ~~~\nafter\n```\nnever closed"
    )
    assert model_text_blocks(text) == [
        ("markdown", "Before", None),
        ("code", "print('![c](http://x/c.png)')", "python"),
        ("markdown", "between", None),
        ("code", "indented http://x/i", None),
        ("markdown", "after", None),
        ("code", "never closed", None),
    ]


def test_a_fence_with_backticks_in_its_info_is_no_fence():
    assert model_text_blocks("```a`b\nhttp://x/y\n```") == [
        ("markdown", "```a`b\nhttp://x/y", None),
        ("code", "", None),
    ]


def test_graph_dot_names_every_speaker():
    dot = graph_dot(load_shape("debate"))
    assert dot.startswith('digraph "debate" {')
    for node in ('"facilitator"', '"pro" [label="Proposition\\npro · smollm2:135m"]', '"closing"'):
        assert node in dot
    assert '"facilitator" -> "pro" [style=dashed];' in dot
