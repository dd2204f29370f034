"""What the embedded models speak with, unless a shape or --set says otherwise.

SmolLM2-135M recites long instructions (turn 1 used to repeat the framing word for word), and
given 1,024 tokens it loops until its words run together. So a participant on an embedded model
gets turns of a paragraph (at most TURN_OPTIONS' num_predict tokens), a repeat penalty, and
framing it answers rather than recites: a system prompt of two sentences and the essay, a
question to open, a question to close, and nothing between, where the other's words are the
prompt. This module imports no llama.cpp, so the CLI and the page can use it without the extra.
"""

from __future__ import annotations

from typing import Any

from graphs.engine.spec import Framing, ModelOptions, Participant, Shape
from graphs.ollama.names import same_model

SAMPLING: dict[str, dict[str, float]] = {
    "smollm2:135m": {"temperature": 0.6, "top_p": 0.9, "repeat_penalty": 1.15},
    "smollm2:135m-warm": {"temperature": 0.8, "top_p": 0.95, "repeat_penalty": 1.15},
}
"""Each name the embedded server answers to, and its sampling: the server's own defaults too."""

TURN_OPTIONS: dict[str, Any] = {"num_predict": 160, "stop": ["\n\n"]}
"""A turn ends with its paragraph, or after about 120 words."""

FRAMING = Framing(
    system="embedded_system",
    opening="embedded_opening",
    response=None,
    reply=None,
    closing="embedded_closing",
)
"""prompts/embedded_*.md: the framing of a shape whose participants all speak on embedded models."""


def served_name(model: str) -> str | None:
    """The embedded model's name that `model` means, or None if it is not one."""
    return next((name for name in SAMPLING if same_model(name, model)), None)


def suited_to_embedded(shape: Shape) -> Shape:
    """The shape with the embedded models' defaults for its participants on them: the options
    they leave unset, and FRAMING when the shape keeps the default framing; if some of its
    participants are on other models, only those on embedded ones get FRAMING's system prompt."""
    if shape.framing == Framing() and all(served_name(p.model) for p in shape.participants):
        participants = [suited_participant(p, False) for p in shape.participants]
        return shape.model_copy(update={"participants": participants, "framing": FRAMING})
    own_system = shape.framing.system == Framing().system  # else the shape's system prompt stays
    participants = [suited_participant(p, own_system) for p in shape.participants]
    return shape.model_copy(update={"participants": participants})


def suited_participant(participant: Participant, system: bool) -> Participant:
    """The participant with the embedded defaults its options leave unset (and, with `system`,
    FRAMING's system prompt unless it names one), if it is on an embedded model."""
    name = served_name(participant.model)
    if name is None or participant.provider != "ollama":
        return participant
    given = participant.options.model_dump(exclude_unset=True)
    options = ModelOptions.model_validate({**SAMPLING[name], **TURN_OPTIONS, **given})
    update: dict[str, Any] = {"options": options}
    if system and participant.system is None:
        update["system"] = FRAMING.system
    return participant.model_copy(update=update)
