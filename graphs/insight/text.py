"""Words, sentences, stems and content phrases: how the signals read a turn's text.

Deterministic and small on purpose: the same text gives the same numbers on every
machine, with no model and no download. The lexicons live in markers.yaml, each with
its source.
"""

from __future__ import annotations

import re
from bisect import bisect
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
CLAUSE_BREAK = re.compile(r"[.,;:!?()\[\]\"“”—–]|\s-\s|\*\*")
SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)\]*_]*\s+")
APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'"})
SUFFIXES = (
    "ization", "ational", "fulness", "ousness", "iveness", "ations", "ation", "ement", "ments",
    "ment", "ness", "ance", "ence", "able", "ible", "ally", "ical", "ural", "ings", "ing", "ure",
    "ies", "ied", "ed", "es", "ly", "al", "s", "e", "y",
)  # fmt: skip
MAX_GAP = 2
"""Function words allowed between the two content words of a phrase ('fiction of coherence')."""


@cache
def lexicons() -> dict[str, tuple[str, ...]]:
    """markers.yaml's lists, by name."""
    text = resources.files("graphs.insight").joinpath("markers.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return {name: tuple(str(m).lower() for m in entry["markers"]) for name, entry in data.items()}


@cache
def stopwords() -> frozenset[str]:
    return frozenset(lexicons()["stopwords"])


def fold(text: str) -> str:
    return text.translate(APOSTROPHES).lower()


def words(text: str) -> list[str]:
    return WORD.findall(fold(text))


def sentences(text: str) -> list[str]:
    flat = " ".join(text.split())
    return [s.strip() for s in SENTENCE_END.split(flat) if s.strip()]


def is_question(sentence: str) -> bool:
    return sentence.rstrip("\"'”’)]*_ ").endswith("?")


@cache
def stem(word: str) -> str:
    """A crude suffix stripper: 'architectural' and 'architecture' meet at 'architect'."""
    for _ in range(2):
        for suffix in SUFFIXES:
            if word.endswith(suffix) and len(word) - len(suffix) >= 4:
                word = word[: -len(suffix)]
                break
        else:
            break
    return word


@cache
def is_content(word: str) -> bool:
    return len(word) > 2 and word not in stopwords() and not word.isdigit()


def content_stems(text: str) -> list[str]:
    return [stem(w) for w in words(text) if is_content(w)]


@dataclass(frozen=True)
class Phrase:
    """Two content words close together in one clause, and how they were written there."""

    key: tuple[str, str]
    surface: str


def phrases(text: str) -> list[Phrase]:
    """The content phrases of a text, in order, repeats included."""
    folded = fold(text)
    original = text if len(folded) == len(text) else folded  # lower() can change a length
    breaks = [m.start() for m in CLAUSE_BREAK.finditer(folded)]
    tokens = [(m.start(), m.end(), m.group(), bisect(breaks, m.start())) for m in WORD.finditer(folded)]
    content = [i for i, token in enumerate(tokens) if is_content(token[2])]
    found: list[Phrase] = []
    for left, right in zip(content, content[1:], strict=False):
        first, last = tokens[left], tokens[right]
        if right - left - 1 > MAX_GAP or first[3] != last[3]:
            continue
        surface = " ".join(original[first[0] : last[1]].split())
        found.append(Phrase((stem(first[2]), stem(last[2])), surface))
    return found


MARKER_TOKEN = re.compile(r"[a-z0-9']+|,")


@cache
def marker_pattern(name: str) -> re.Pattern[str]:
    """One alternation of the lexicon's markers, longest first, on whole tokens."""
    needles = sorted(
        (" ".join(MARKER_TOKEN.findall(marker)) for marker in lexicons()[name]), key=len, reverse=True
    )
    return re.compile(r"(?<![^ ])(" + "|".join(re.escape(n) for n in needles) + r")(?![^ ])")


def count_markers(text: str, name: str) -> list[str]:
    """The markers of lexicon `name` in the text, in order; overlapping ones count once (the longest)."""
    haystack = " ".join(MARKER_TOKEN.findall(fold(text)))
    return [match.group(1).replace(" ,", ",") for match in marker_pattern(name).finditer(haystack)]
