"""Dialogue shapes as data: who takes part, in what order, for how many turns.

Users write these files, so every model forbids unknown keys: a typo is an error
naming the file and the field, not a silently ignored setting.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from graphs.errors import ShapeError

TurnKind = Literal["opening", "response", "reply", "closing"]
TURN_KINDS: tuple[TurnKind, ...] = ("opening", "response", "reply", "closing")

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"


class ModelOptions(BaseModel):
    """What each request of one participant carries; sent identically on every call.

    Runtime keys (num_ctx, num_gpu, main_gpu, num_batch, num_thread, use_mmap) force
    Ollama to reload a model when they change, so they are fixed per participant.
    """

    model_config = ConfigDict(extra="forbid")

    num_ctx: int | None = Field(
        default=None,
        ge=256,
        description="context window in tokens; unset: sized to the dialogue, at most the trained context",
    )
    num_gpu: int | None = Field(
        default=999, ge=0, description="layers on the GPU; 999: all of them, 0: CPU only"
    )
    main_gpu: int | None = Field(
        default=None,
        ge=0,
        description="the GPU that takes the small tensors when a model is split across GPUs",
    )
    num_batch: int | None = Field(default=None, ge=1, description="prompt tokens evaluated per batch")
    num_thread: int | None = Field(default=None, ge=1, description="threads for the computation on the CPU")
    use_mmap: bool | None = Field(
        default=None, description="map the model file into memory rather than read it in"
    )
    keep_alive: str | int = Field(
        default="30m",
        description="how long Ollama keeps the model loaded after a request (a duration or seconds)",
    )
    think: bool | None = Field(
        default=None,
        description="let a thinking model think, kept apart from the answer; unset: on for models that can",
    )
    temperature: float | None = Field(
        default=0.7, ge=0, description="sampling temperature; 0: the likeliest token"
    )
    seed: int | None = Field(default=-1, description="the sampler's seed; -1: a new one on every request")
    num_predict: int | None = Field(
        default=1024,
        ge=-2,
        description="most tokens a turn may generate; -1: no limit, -2: until the context is full",
    )
    top_k: int | None = Field(default=None, ge=0, description="sample from the k likeliest tokens only")
    top_p: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="sample from the likeliest tokens whose probabilities add up to p",
    )
    repeat_penalty: float | None = Field(
        default=None, ge=0, description="how much less likely a repeated token becomes; 1: no penalty"
    )
    stop: list[str] | None = Field(default=None, description="strings that end the turn when generated")

    def merged(self, overrides: dict[str, Any]) -> ModelOptions:
        """A copy with overrides applied and validated (unknown keys are refused)."""
        return ModelOptions.model_validate({**self.model_dump(exclude_unset=True), **overrides})


class Participant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    model: str = Field(min_length=1)
    label: str | None = None
    host: str | None = None
    persona: str = ""
    system: str | None = Field(default=None, description="template overriding framing.system")
    options: ModelOptions = Field(default_factory=ModelOptions)
    min_tok_s: float | None = Field(
        default=None, gt=0, description="flag a turn as slow below this decode rate, whatever /api/ps says"
    )

    @property
    def display(self) -> str:
        """The name a reader sees: the label, or else the model."""
        return self.label or self.model


class Framing(BaseModel):
    """Template names in prompts/ for the system prompt and each kind of turn; null = none."""

    model_config = ConfigDict(extra="forbid")

    system: str = "system"
    opening: str | None = "opening"
    response: str | None = "response"
    reply: str | None = "reply"
    closing: str | None = "closing"


class Closing(BaseModel):
    model_config = ConfigDict(extra="forbid")

    speaker: str = Field(default="next", description="a participant's name, or 'next' for whoever is due")


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    participants: list[Participant] = Field(min_length=2)
    order: list[str] = Field(min_length=1, description="speakers in rotation, first opens")
    turns: int = Field(default=4, ge=2, le=500, description="all turns, the closing included")
    closing: Closing = Field(default_factory=Closing)
    framing: Framing = Field(default_factory=Framing)
    interject_before: list[int] = Field(
        default_factory=list, description="turns before which the facilitator pauses to add words"
    )

    @model_validator(mode="after")
    def _names_are_consistent(self) -> Shape:
        names = [p.name for p in self.participants]
        reserved = {"facilitator", "closing"} & set(names)
        if reserved:
            raise ValueError(
                f"'{reserved.pop()}' is a node of every dialogue; name the participant otherwise"
            )
        if len(set(names)) != len(names):
            raise ValueError(f"participant names must be unique, got {names}")
        for speaker in self.order:
            if speaker not in names:
                raise ValueError(f"order names '{speaker}', who is not a participant ({names})")
        if self.closing.speaker != "next" and self.closing.speaker not in names:
            raise ValueError(f"closing.speaker '{self.closing.speaker}' is not a participant ({names})")
        return self

    def participant(self, name: str) -> Participant:
        for participant in self.participants:
            if participant.name == name:
                return participant
        raise ShapeError(
            f"shape '{self.name}' has no participant '{name}'; "
            f"its participants are {', '.join(self.participant_names)}"
        )

    @property
    def participant_names(self) -> list[str]:
        return [p.name for p in self.participants]


def builtin_shape_names() -> list[str]:
    folder = resources.files("graphs.engine.shapes")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_shape(name_or_path: str) -> Shape:
    """A built-in shape by name, or a shape file by path."""
    if name_or_path in builtin_shape_names():
        resource = resources.files("graphs.engine.shapes").joinpath(f"{name_or_path}.yaml")
        return parse_shape(resource.read_text(encoding="utf-8"), source=f"built-in shape '{name_or_path}'")
    path = Path(name_or_path)
    if not path.is_file():
        raise ShapeError(
            f"no shape '{name_or_path}': not a built-in ({', '.join(builtin_shape_names())}) and no such file"
        )
    return parse_shape(path.read_text(encoding="utf-8"), source=str(path))


def builtin_shape_text(name: str) -> str:
    """A built-in shape's YAML file as written, comments included (the page shows it)."""
    if name not in builtin_shape_names():
        raise ShapeError(f"no built-in shape '{name}' ({', '.join(builtin_shape_names())})")
    return resources.files("graphs.engine.shapes").joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def parse_shape(text: str, source: str) -> Shape:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ShapeError(f"{source}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ShapeError(f"{source}: a shape file must be a mapping of fields, got {type(data).__name__}")
    try:
        return Shape.model_validate(data)
    except ValidationError as exc:
        raise ShapeError(f"{source}: {describe_validation_error(exc)}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """The first problem, as 'field.path: message', which is what a person fixes first."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    else:
        message = error["msg"].removeprefix("Value error, ")
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{where}: {message}{suffix}"


PARTICIPANT_SETTINGS = frozenset({"label", "persona", "model", "min_tok_s"})


def apply_setting(entry: dict[str, Any], name: str, key: str, value: Any) -> None:
    """--set NAME.KEY=VALUE on a participant's data: a setting of its own, or one of its options."""
    option_keys = set(ModelOptions.model_fields)
    if key in PARTICIPANT_SETTINGS:
        entry[key] = value
    elif key in option_keys:
        entry.setdefault("options", {})[key] = value
    else:
        known = ", ".join(sorted(option_keys | PARTICIPANT_SETTINGS))
        raise ShapeError(f"--set {name}.{key}: unknown key '{key}'; known keys: {known}")


def with_overrides(shape: Shape, models: dict[str, str], settings: list[tuple[str, str, Any]]) -> Shape:
    """The shape with --model NAME=MODEL and --set NAME.KEY=VALUE applied and re-validated."""
    data = shape.model_dump(exclude_unset=True)
    by_name = {p["name"]: p for p in data["participants"]}

    def participant(name: str, flag: str) -> dict[str, Any]:
        if name not in by_name:
            raise ShapeError(
                f"{flag} names '{name}', who is not in shape '{shape.name}'; "
                f"its participants are {', '.join(by_name)}"
            )
        return by_name[name]

    for name, model in models.items():
        participant(name, "--model")["model"] = model
    for name, key, value in settings:
        apply_setting(participant(name, "--set"), name, key, value)
    try:
        return Shape.model_validate(data)
    except ValidationError as exc:
        raise ShapeError(f"--model/--set: {describe_validation_error(exc)}") from None
