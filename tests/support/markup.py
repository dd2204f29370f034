"""What a Markdown string on the page shows, and what in it a browser would turn into a link.

A model of Streamlit's Markdown (CommonMark, GFM's autolinks, entities), written apart from
ui/render.py so that the page's tests check its escaping rather than restate it; the browser
test (tests/e2e/test_ui_browser.py) checks the same in Chromium.

    visible(r"run \\[1\\] at `http://x/y`")   # 'run [1] at http://x/y'
    armed("see [this](http://x/y)")          # ['[', 'http://']
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

ESCAPED = re.compile(r"\\([!-/:-@\[-`{-~])")
ESCAPE_OR_ENTITY = re.compile(r"\\([!-/:-@\[-`{-~])|&(?:#\d+|#[xX][0-9a-fA-F]+|\w+);")
# Streamlit's colour and badge directives, whose brackets open no link.
DIRECTIVE = re.compile(
    r":(?:red|orange|yellow|green|blue|violet|gray|grey|rainbow|primary)(?:-background|-badge)?\["
)
# GFM's literal autolinks, which the browser finds in the text left after escapes and entities.
LITERAL_LINK = re.compile(r"https?://|www\.|[-.\w+]+@[-\w]+\.[-\w]", re.IGNORECASE)


def pieces(markdown: str) -> Iterator[tuple[str, str]]:
    """("text", raw) and ("code", content) runs, as CommonMark reads code spans and escapes."""
    text, index = [], 0
    while index < len(markdown):
        char = markdown[index]
        if char == "\\" and index + 1 < len(markdown) and ESCAPED.match(markdown, index):
            text.append(markdown[index : index + 2])
            index += 2
            continue
        if char == "`":
            run = re.match(r"`+", markdown[index:])
            assert run is not None
            fence = run.group(0)
            closer = re.compile(rf"(?<!`){fence}(?!`)")
            found = closer.search(markdown, index + len(fence))
            if found is None:
                text.append(fence)
                index += len(fence)
                continue
            if text:
                yield "text", "".join(text)
                text = []
            content = markdown[index + len(fence) : found.start()].replace("\n", " ")
            if content.startswith(" ") and content.endswith(" ") and content.strip():
                content = content[1:-1]
            yield "code", content
            index = found.end()
            continue
        text.append(char)
        index += 1
    if text:
        yield "text", "".join(text)


def unescaped(raw: str) -> str:
    """Text as the browser holds it once escapes and entities are read (an escaped & starts none)."""

    def one(match: re.Match[str]) -> str:
        return match.group(1) if match.group(1) is not None else html.unescape(match.group(0))

    return ESCAPE_OR_ENTITY.sub(one, raw)


def visible(markdown: str) -> str:
    """What a reader sees, give or take emphasis and headings: code spans' text, escapes read."""
    return "".join(unescaped(raw) if kind == "text" else raw for kind, raw in pieces(markdown))


def armed(markdown: str) -> list[str]:
    """What the browser would make a link, an image or HTML of: an unescaped `[` (links, images,
    footnotes) or `<` (HTML, autolinks), or a URL or e-mail address outside code."""
    found: list[str] = []
    for kind, raw in pieces(markdown):
        if kind == "code":
            continue
        bare = DIRECTIVE.sub("", re.sub(r"\\.", "", raw))
        found += re.findall(r"[\[<]", bare)
        found += [m.group(0) for m in LITERAL_LINK.finditer(unescaped(raw))]
    return found


def page_markdown(at: Any) -> list[str]:
    """Every string an AppTest page renders as Markdown: text elements, alerts, headings,
    toasts, metrics, page links, and every label and tooltip."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if node.type in MARKDOWN_VALUES:
            found.append(str(node.value))
        for attribute in ("label", "help"):
            value = getattr(node, attribute, None)
            if isinstance(value, str) and value:
                found.append(value)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at.main)
    walk(at.sidebar)
    found += [str(toast.value) for toast in at.toast]
    return found


MARKDOWN_VALUES = frozenset(
    {"markdown", "caption", "error", "warning", "info", "success", "title", "header", "subheader"}
    | {"toast", "metric", "page_link"}
)
