"""How untrusted text looks on the page: transcript, model text, inputs, graph, and the guard on failures.

Every string the page did not write itself (model text, and whatever came from a server, a
file or the URL: errors, run ids, labels, models, topics, hosts, file names) is untrusted, and
every Streamlit text element reads Markdown. So such a string reaches the page only through one
of the two helpers here. plain() shows it as one line of text with no Markdown meaning;
safe_markdown() keeps model text's formatting (emphasis, lists, code) but disarms what acts on
its own or takes the reader elsewhere: images, which the browser would fetch from wherever the
text pointed; links, autolinks and bare URLs, which the browser's Markdown turns into links
(even escaped: it finds them in the text left after escapes); raw HTML; and `$...$`, which
Streamlit would typeset as LaTeX and so garble prices. A URL or an e-mail address is shown in a
code span, where nothing is linked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import streamlit as st

from graphs import (
    DuologueError,
    InputsRecord,
    RunRecord,
    Shape,
    TraceRecord,
    graph_dot,
    labels,
    stats_line,
)

log = logging.getLogger("duologue.ui")

FENCE = re.compile(r"^( {0,3})(`{3,}(?=[^`]*$)|~{3,})(.*)$")
"""A fenced code block's opening line: its indent, its fence, and its info string."""
# A code span as CommonMark reads it: a backtick run not escaped, closed by a run of the same length.
CODE_SPAN = re.compile(r"(?<![`\\])(`+)(?!`)(.+?)(?<!`)\1(?!`)")
# What the browser would link even with every character escaped: a scheme's ://, www., an e-mail.
LINKABLE = re.compile(r"://|www\.|@[-\w]+\.", re.IGNORECASE)
WORD = re.compile(r"\S+")
MARKDOWN_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
MODEL_TEXT_SPECIALS = "\\`$[<&"
"""Escaped in model text outside code spans: what could start a link, an image, HTML, an entity,
code or LaTeX; backslashes too, so that no escape in the text can undo one of ours."""
PLAIN_SPECIALS = "\\`*_{}[]()#+-.!|<>~$:&@"
"""Escaped in plain text: every character that Markdown or Streamlit's directives give a meaning."""
# Material icons ship with Streamlit; emoji need a font a headless browser may lack.
STATUS_ICONS = {
    "completed": ":green[:material/check_circle:]",
    "running": ":blue[:material/hourglass_top:]",
    "starting": ":blue[:material/hourglass_top:]",
    "failed": ":red[:material/error:]",
    "interrupted": ":orange[:material/stop_circle:]",
    "stopped": ":orange[:material/heart_broken:]",
    "unreadable": ":red[:material/broken_image:]",
}


def safe_markdown(text: str) -> str:
    """Model text (no fenced code: see model_text_blocks) made safe to hand to st.markdown.

    Code spans are kept; outside them, MODEL_TEXT_SPECIALS are escaped and a word the browser
    would link goes in a code span. A backtick that opens no code span on its line is escaped,
    so no code span or fence can take in what was left unescaped.
    """
    return "\n".join(_escape_outside_code_spans(line) for line in text.split("\n"))


def model_text_blocks(text: str) -> list[tuple[str, str, str | None]]:
    """Model text cut into ("markdown", text, None) and ("code", code, language) blocks.

    Fenced code goes to st.code, which reads no Markdown: were a fence read otherwise by the
    browser than here (a list item's indent, an odd closing line), no text left as code could
    turn into a link.
    """
    blocks: list[tuple[str, str, str | None]] = []
    prose: list[str] = []
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        opener = FENCE.match(lines[index])
        if opener is None:
            prose.append(lines[index])
            index += 1
            continue
        if prose:
            blocks.append(("markdown", "\n".join(prose), None))
            prose = []
        indent, fence, info = len(opener.group(1)), opener.group(2), opener.group(3).strip()
        closer = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        code: list[str] = []
        index += 1
        while index < len(lines) and not closer.match(lines[index]):
            line = lines[index]
            code.append(line[min(indent, len(line) - len(line.lstrip(" "))) :])
            index += 1
        index += 1  # the closing fence, if there was one
        language = info.split()[0] if info else None
        blocks.append(("code", "\n".join(code), language if language and language.isidentifier() else None))
    if prose:
        blocks.append(("markdown", "\n".join(prose), None))
    return blocks


def _escape_outside_code_spans(line: str) -> str:
    parts, last = [], 0
    for span in CODE_SPAN.finditer(line):
        parts.append(_disarm(line[last : span.start()], MODEL_TEXT_SPECIALS))
        parts.append(span.group(0))
        last = span.end()
    parts.append(_disarm(line[last:], MODEL_TEXT_SPECIALS))
    return "".join(parts)


def _disarm(text: str, specials: str) -> str:
    """Each word with `specials` escaped, or, if a browser would link it, in a code span."""

    def escaped(part: str) -> str:
        return "".join(f"\\{c}" if c in specials else c for c in part)

    def word(match: re.Match[str]) -> str:
        found = match.group(0)
        if not LINKABLE.search(found):
            return escaped(found)
        tail = ""  # a sentence's punctuation after a URL reads better outside its code span
        while found[-1] in ".,;:!?'\"" or (found[-1] == ")" and found.count(")") > found.count("(")):
            found, tail = found[:-1], found[-1] + tail
        return code_span(found) + escaped(tail)

    return WORD.sub(word, text)


def code_span(text: str) -> str:
    """`text` as inline code, whatever backticks it holds: nothing in a code span is Markdown."""
    runs = [len(run) for run in re.findall(r"`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


@contextmanager
def failure_shown() -> Iterator[None]:
    """A fault the page did not foresee: one line on the page, its traceback in the server's log.

    A traceback names the server's files and helps no reader of the page; the terminal that
    runs `duologue ui` has it. Streamlit's own controls (st.stop, st.rerun) pass through.
    """
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - the page says one line, never a traceback
        log.exception("the page failed")
        said = " ".join(str(exc).split())[:300]
        st.error(
            plain(
                f"The page failed: {exc.__class__.__name__}{': ' + said if said else ''}. "
                "The details are in the terminal that runs duologue ui; reload the page to try again."
            )
        )


def show_model_text(text: str) -> None:
    """Untrusted text as Markdown, HTML off and disarmed; its fenced code as st.code."""
    if not text.strip():
        st.markdown("*(empty reply)*")
        return
    for kind, block, language in model_text_blocks(text):
        if kind == "code":
            st.code(block, language=language, wrap_lines=True)
        elif block.strip():
            st.markdown(safe_markdown(block), unsafe_allow_html=False)


def status_label(status: str) -> str:
    return f"{STATUS_ICONS.get(status, '')} {plain(status)}".strip()


def plain(text: object) -> str:
    """Text from a server, a file, a shape or the URL, as one line with no Markdown meaning."""
    return _disarm(" ".join(str(text).split()), PLAIN_SPECIALS)


# ---- inputs, graph, names -------------------------------------------------------------


def show_inputs(inputs: Sequence[InputsRecord], names: dict[str, str], unrebuilt: Sequence[int] = ()) -> None:
    """Exactly what each model was sent, message by message, as plain text; `unrebuilt`: the lines
    of inputs.jsonl whose prompt could not be rebuilt and checked, said before the rest."""
    if unrebuilt:
        lines = ", ".join(map(str, unrebuilt))
        st.warning(
            plain(
                f"inputs.jsonl line{'s' * (len(unrebuilt) != 1)} {lines}: the prompt could not be rebuilt "
                "to match its recorded digest (the file was edited or damaged), so "
                f"{'those turns are' if len(unrebuilt) != 1 else 'that turn is'} not shown."
            )
        )
    if not inputs:
        st.caption("No inputs recorded yet.")
        return
    for entry in inputs:
        who = names.get(entry.speaker, entry.speaker)
        who = who if who == entry.model else f"{who} ({entry.model})"
        count = len(entry.messages)
        label = f"Turn {entry.turn}: {plain(who)} was sent {count} message{'s' * (count != 1)}"
        with st.expander(label):
            for index, message in enumerate(entry.messages, 1):
                content = str(message.get("content", ""))
                st.caption(plain(f"{index}. {message.get('role', '?')} · {len(content)} characters"))
                st.code(content, language=None, wrap_lines=True)


def show_graph(shape: Shape) -> None:
    st.graphviz_chart(graph_dot(shape), width="content")


def run_names(run: RunRecord) -> dict[str, str]:
    """Participant name → the label a reader sees."""
    names = {p.name: p.label for p in run.meta.participants}
    if names:
        return names
    try:
        return labels(run.shape())
    except DuologueError:
        return {}


def split_transcript(text: str) -> tuple[list[str], str]:
    """transcript.md's header lines (title, date, topic, ...) and the turns after them.

    The header is duologue's own text, shown small; the rest holds the models' words.
    """
    head, sep, body = text.partition("\n---\n")
    if not sep:
        return [], text
    return [line.lstrip("#").strip() for line in head.splitlines() if line.strip()], body


@dataclass(frozen=True)
class TranscriptTurn:
    """One finished turn of transcript.md, cut out where duologue wrote its heading."""

    record: TraceRecord
    heading: str
    """As transcript.md has it, without its hashes: 'Turn 2: qwen3:32b — Response'."""
    text: str
    """The model's words."""
    after: str
    """What stands between it and the next turn: the facilitator's words, the run's ending, the
    observer's notes, the Total line."""


def split_turns(body: str, records: Mapping[int, TraceRecord]) -> tuple[str, list[TranscriptTurn]]:
    """The body of transcript.md cut at each finished turn's heading, and what comes before them.

    A heading is taken where a line `### Turn N: ` is followed by the stats line duologue wrote
    from turn N's trace record, searched after the turn before it. No model can write that pair:
    a turn's stats are only known once it has ended, so a heading in model text stays text. The
    body's first line is a heading with or without one (an imported transcript's may have none);
    a turn whose heading is not found (a transcript from elsewhere) stays in the text before it.
    """
    turns: list[tuple[TraceRecord, int, int, str]] = []  # record, heading's start, text's start, heading
    position = 0
    for number in sorted(records):
        record = records[number]
        pair = re.compile(rf"^### (Turn {number}: [^\n]*)\n{re.escape(stats_line(record))}\n", re.MULTILINE)
        found = pair.search(body, position)
        if found is None and not turns:  # no stats line, but nothing before it that a model wrote
            found = re.compile(rf"\A\n*### (Turn {number}: [^\n]*)\n").search(body)
        if found is None:
            continue
        turns.append((record, found.start(), found.end(), found.group(1)))
        position = found.end()
    if not turns:
        return body, []
    cut = []
    for index, (record, _start, begins, heading) in enumerate(turns):
        ends = turns[index + 1][1] if index + 1 < len(turns) else len(body)
        text, after = turn_and_after(body[begins:ends], record.turn or 0, last=index + 1 == len(turns))
        cut.append(TranscriptTurn(record, heading, text, after))
    return body[: turns[0][1]], cut


RULE_LINE = re.compile(r"\n+---\n+$")


def turn_and_after(section: str, number: int, last: bool) -> tuple[str, str]:
    """A turn's words apart from what transcript.py writes after them (transcript_pieces)."""
    after = ""
    if not last:
        said = section.rfind(f"\n### Facilitator — before Turn {number + 1}\n")
        if said >= 0:
            section, after = section[:said], section[said:]
        return RULE_LINE.sub("", section.rstrip("\n") + "\n").strip("\n"), RULE_LINE.sub("", after).strip()
    total = section.rfind("\nTotal: ")
    if total >= 0:
        section, after = section[:total], section[total:]
    notes = section.find("\n---\n\n## Observer's Notes (")
    if notes >= 0:
        section, after = section[:notes], section[notes:] + after
    lines = section.rstrip("\n").split("\n")
    if lines and ENDING.match(lines[-1]):
        after = lines[-1] + "\n" + after
        lines = lines[:-1]
    return "\n".join(lines).strip("\n"), after.strip()


ENDING = re.compile(r"^\*(Run failed|Run interrupted|Waiting for the facilitator)\b.*\*$")
"""The line transcript.py ends a run's transcript with when it stopped early."""


def show_transcript(text: str, records: Mapping[int, TraceRecord] | None = None) -> None:
    """transcript.md; given the run's finished records, turn by turn, a degraded turn's heading in
    red and its thinking to open below it (the Markdown of a turn heading is never nested in an
    expander, so the live view, which shows earlier turns in one, passes none)."""
    if not text:
        st.caption("No finished turn yet.")
        return
    header, body = split_transcript(text)
    if header:  # duologue's Markdown, whose escapes say how each line reads
        lines = [plain(MARKDOWN_ESCAPE.sub(r"\1", line)) for line in header]
        st.markdown(f"**{lines[0]}**")
        st.caption("  \n".join(lines[1:]))
    before, turns = split_turns(body, records or {})
    if before.strip("-\n "):
        show_model_text(before)
    for index, turn in enumerate(turns):
        if index:
            st.divider()
        show_turn(turn)


def show_turn(turn: TranscriptTurn) -> None:
    """Heading, stats line, words, and the thinking kept apart from them."""
    record = turn.record
    heading, stats = plain(turn.heading), plain(stats_line(record).strip("*"))
    if record.degraded:
        why = [flag for flag in record.flags if flag.startswith("CPU") or flag == "slow"]
        badges = " ".join(f":red-badge[{plain(flag)}]" for flag in why)
        st.markdown(f"### :red[:material/warning: {heading}] {badges}")
        st.markdown(f":red[*{stats}*]")
    else:
        st.markdown(f"### {heading}")
        st.markdown(f"*{stats}*")
    show_model_text(turn.text)
    if record.thinking:
        with st.expander(f"Thinking ({len(record.thinking)} characters, never relayed to the others)"):
            show_model_text(record.thinking)
    if turn.after:
        show_model_text(turn.after)
