"""`duologue analyze --judge MODEL`: a model labels each turn's stance towards the turn before.

The labels are agrees, extends, challenges or concedes, each with a span quoted from the
turn as evidence. A label whose quote is not in the turn is dropped, and the labels are
kept apart from the deterministic signals (`judge` in analysis.json). The judge answers in
two plain lines rather than JSON, which small models (the embedded one) keep to better.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from graphs.engine.spec import ModelOptions
from graphs.errors import DuologueError
from graphs.insight.analysis import DialogueTurn, JudgeLabels, StanceLabel
from graphs.ollama import api

STANCES = ("agrees", "extends", "challenges", "concedes")
TRIES = 2
JUDGE_OPTIONS = ModelOptions(temperature=0, seed=1, num_predict=160)
SYSTEM = (
    "You label how one turn of a dialogue responds to the turn before it. Answer with exactly two "
    "lines and nothing else:\nSTANCE: one of agrees, extends, challenges, concedes\n"
    'QUOTE: "a short span copied word for word from the turn that shows it"'
)
STANCE_LINE = re.compile(r"stance\s*[:=]\s*\**\s*(agrees|extends|challenges|concedes)\b", re.I)
QUOTE_LINE = re.compile(r"quote\s*[:=]\s*[\"“']?(.+?)[\"”']?\s*$", re.I | re.M)


class JudgeFailed(DuologueError):
    """The judge's answers did not have the expected form, twice."""

    exit_code = 1


def judge_turns(turns: Sequence[DialogueTurn], model: str, host: str) -> JudgeLabels:
    api.check_models(host, [model])
    labels, dropped = [], []
    for before, turn in zip(turns, turns[1:], strict=False):
        stance, quote = ask(model, host, before, turn)
        if quoted_in(quote, turn.text):
            labels.append(StanceLabel(turn=turn.number, stance=stance, quote=quote))
        else:
            dropped.append(turn.number)
    return JudgeLabels(model=model, labels=labels, dropped=dropped)


def ask(model: str, host: str, before: DialogueTurn, turn: DialogueTurn) -> tuple[str, str]:
    """The judge's stance and quote for `turn`; asked again once when the answer has no such form."""
    request = (
        f"The turn before, by {before.speaker}:\n{before.text.strip()}\n\n"
        f"The turn to label, by {turn.speaker}:\n{turn.text.strip()}"
    )
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": request}]
    answer = ""
    for _ in range(TRIES):
        body = api.chat_body(model, JUDGE_OPTIONS, messages, stream=False)
        reply: dict[str, Any] = api.call_json(host, "POST", "/api/chat", body, api.REQUEST_TIMEOUT_S)
        answer = str((reply.get("message") or {}).get("content") or "")
        parsed = parse_answer(answer)
        if parsed is not None:
            return parsed
    shown = " ".join(answer.split())[:80]
    raise JudgeFailed(
        f"the judge ({model}) did not answer turn {turn.number} with STANCE and QUOTE lines, twice "
        f"(it said: {shown!r}); try a larger model"
    )


def parse_answer(answer: str) -> tuple[str, str] | None:
    stance, quote = STANCE_LINE.search(answer), QUOTE_LINE.search(answer)
    if stance is None or quote is None or not quote.group(1).strip():
        return None
    return stance.group(1).lower(), quote.group(1).strip()


def quoted_in(quote: str, text: str) -> bool:
    def flat(value: str) -> str:
        return " ".join(re.sub(r"[\"“”*_]", "", value).lower().split())

    return bool(flat(quote)) and flat(quote) in flat(text)
