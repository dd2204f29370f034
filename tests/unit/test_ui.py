"""The page's pure pieces: model text made safe for Markdown, a shape drawn as a graph."""

from __future__ import annotations

from graphs import graph_dot, load_shape
from graphs.ui.render import safe_markdown


def test_safe_markdown_disarms_latex_and_images_but_not_code():
    text = "Costs $5 ![x](http://t/x.png)\n```\necho $HOME ![y](z)\n```\nand `$PATH` too"
    assert (
        safe_markdown(text)
        == "Costs \\$5 !\\[x](http://t/x.png)\n```\necho $HOME ![y](z)\n```\nand `$PATH` too"
    )


def test_graph_dot_names_every_speaker():
    dot = graph_dot(load_shape("debate"))
    assert dot.startswith('digraph "debate" {')
    for node in ('"facilitator"', '"pro" [label="Proposition\\npro · smollm2:135m"]', '"closing"'):
        assert node in dot
    assert '"facilitator" -> "pro" [style=dashed];' in dot
