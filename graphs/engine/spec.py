"""Dialogue shapes as data: who takes part, in what order, for how many turns.

Users write these files, so every model forbids unknown keys: a typo is an error
naming the file and the field, not a silently ignored setting.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from graphs.engine.prompting import load_template, template_names
from graphs.errors import DuologueError, ShapeError

TurnKind = Literal["opening", "response", "reply", "closing"]
TURN_KINDS: tuple[TurnKind, ...] = ("opening", "response", "reply", "closing")

NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"

MIN_TURNS, MAX_TURNS = 2, 500
Turns = Annotated[int, Field(ge=MIN_TURNS, le=MAX_TURNS)]
"""A dialogue's length, the closing included: the one limit for shape files, flags and the page."""

INT32 = 2**31 - 1
"""The largest integer option Ollama's runner holds: anything larger is refused, not wrapped."""
MAX_NUM_CTX = 2**24
"""Above any model's trained context (the longest are about 10M tokens)."""
NUM_PREDICT = 1024
"""A turn's token budget for a model that does not think: a few paragraphs."""
THINKING_NUM_PREDICT = 4096
"""For a model that thinks, whose thinking counts against num_predict: the reference run's
Qwen3:32B spent 1,546 tokens on one turn, which 1024 would have cut."""
MAX_SHAPE_BYTES = 1_000_000

Provider = Literal["ollama", "openai"]
"""Who serves a participant's model: Ollama, or any server speaking the OpenAI chat API
(llama.cpp's llama-server, vLLM, LM Studio, SGLang)."""
OPENAI_PREFIX = "openai:"
"""--model NAME=openai:MODEL@URL: the participant's model on an OpenAI-compatible server."""
OPENAI_OPTIONS = ("temperature", "top_p", "seed", "num_predict", "stop")
"""The options an OpenAI-compatible server is sent (num_predict as max_tokens)."""
OLLAMA_ONLY = {
    "num_ctx": "its context size (llama-server --ctx-size, vLLM --max-model-len)",
    "num_gpu": "its GPU layers (llama-server --n-gpu-layers)",
    "main_gpu": "its main GPU (llama-server --main-gpu)",
    "num_batch": "its batch size (llama-server --batch-size)",
    "num_thread": "its threads (llama-server --threads)",
    "use_mmap": "how it maps the model (llama-server --no-mmap)",
    "keep_alive": "how long it keeps the model (it holds it while it runs)",
    "think": "its reasoning settings (llama-server --reasoning-budget)",
    "top_k": "its sampling defaults (llama-server --top-k)",
    "repeat_penalty": "its sampling defaults (llama-server --repeat-penalty)",
}
"""Ollama's options that the OpenAI chat API has no field for, and where such a server sets them."""
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

ParticipantKind = Literal["model", "person"]
"""Who speaks: a model on a server, or a person at the keyboard (the CLI's prompt, the page's box)."""
PERSON = "person"
"""A person's `model` wherever a model's name would stand (run.json, the page): they have none."""
PERSON_HAS_NO = {
    "model": "model",
    "provider": "provider",
    "base_url": "server",
    "api_key_env": "API key",
    "host": "host",
    "persona": "persona (a model's instruction)",
    "system": "system prompt",
    "options": "model options",
    "min_tok_s": "decode rate",
}
"""What only a model participant has; a person given one is refused, not silently ignored."""


class ModelOptions(BaseModel):
    """What each request of one participant carries; sent identically on every call.

    Runtime keys (num_ctx, num_gpu, main_gpu, num_batch, num_thread, use_mmap) force
    Ollama to reload a model when they change, so they are fixed per participant.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    num_ctx: int | None = Field(
        default=None,
        ge=256,
        le=MAX_NUM_CTX,
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
    seed: int | None = Field(
        default=-1, ge=-1, description="the sampler's seed; -1: a new one on every request"
    )
    num_predict: int | None = Field(
        default=None,
        ge=-2,
        description=f"most tokens a turn may generate, thinking included; unset: {NUM_PREDICT}, "
        f"or {THINKING_NUM_PREDICT} for a model that thinks; -1: no limit, -2: until the context is full",
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

    @field_validator(
        "num_gpu", "main_gpu", "num_batch", "num_thread", "keep_alive", "seed", "num_predict", "top_k"
    )
    @classmethod
    def _fits_ollama(cls, value: Any, info: ValidationInfo) -> Any:
        """Ollama's runner keeps these in 32 bits (a seed unsigned): a larger one is refused here
        rather than wrapped or refused by the server mid-run."""
        if isinstance(value, int) and not isinstance(value, bool):
            limit = 2**32 - 1 if info.field_name == "seed" else INT32
            if value > limit:
                raise ValueError(f"should be at most {limit}")
            if value < -INT32:
                raise ValueError(f"should be at least {-INT32}")
        return value

    def merged(self, overrides: dict[str, Any]) -> ModelOptions:
        """A copy with overrides applied and validated (unknown keys are refused)."""
        return ModelOptions.model_validate({**self.model_dump(exclude_unset=True), **overrides})


def check_template(name: str | None) -> str | None:
    """A framing template's name, if it names a sound template in prompts/ (None: no framing)."""
    if name is None:
        return None
    if name not in template_names():
        raise ValueError(f"no prompt template '{name}' in prompts/; known: {', '.join(template_names())}")
    try:
        load_template(name)
    except DuologueError as exc:
        raise ValueError(str(exc)) from None
    return name


def ollama_only_problem(key: str, base_url: str | None) -> str:
    """Why an Ollama option cannot go to an OpenAI-compatible server, and where to set it there."""
    return (
        f"{key} is an Ollama option the OpenAI API has no field for; "
        f"set {OLLAMA_ONLY[key]} on the server at {base_url or 'base_url'} instead"
    )


def check_base_url(value: str | None) -> str | None:
    """An OpenAI API address: http(s), a host, no trailing slash (`/v1` is the caller's to give)."""
    if value is None:
        return None
    from urllib.parse import urlsplit

    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not a server's URL; give one like http://127.0.0.1:8080/v1")
    return value


class Participant(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=NAME_PATTERN)
    kind: ParticipantKind = Field(
        default="model", description="model, or person for someone typing their turns"
    )
    model: str = Field(min_length=1)
    label: str | None = None
    provider: Provider = Field(
        default="ollama", description="ollama, or openai for a server speaking the OpenAI chat API"
    )
    base_url: str | None = Field(
        default=None, description="an openai participant's server, e.g. http://127.0.0.1:8080/v1"
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=ENV_NAME_PATTERN,
        description="the environment variable holding an openai participant's API key (never recorded)",
    )
    host: str | None = None
    persona: str = ""
    system: str | None = Field(default=None, description="template overriding framing.system")
    options: ModelOptions = Field(default_factory=ModelOptions)
    min_tok_s: float | None = Field(
        default=None, gt=0, description="flag a turn as slow below this decode rate, whatever /api/ps says"
    )

    _system_is_a_template = field_validator("system")(check_template)
    _base_url_is_a_url = field_validator("base_url")(check_base_url)

    @model_validator(mode="before")
    @classmethod
    def _a_person_has_no_model(cls, data: Any) -> Any:
        """A person's `model` is PERSON, so every view that names a participant's model names
        them; what only a model has is refused in one line."""
        if not isinstance(data, dict) or data.get("kind") != PERSON:
            return data
        for key, what in PERSON_HAS_NO.items():
            if key in data and data[key] != person_default(key):
                raise ValueError(f"a person has no {what}; drop {key} from their entry")
        return {**data, "model": PERSON}

    @model_validator(mode="after")
    def _provider_fits(self) -> Participant:
        if self.kind == PERSON:
            return self
        if self.provider == "ollama":
            stray = [key for key in ("base_url", "api_key_env") if getattr(self, key) is not None]
            if stray:
                raise ValueError(
                    f"{stray[0]} is for provider: openai; an Ollama participant's server is its host"
                )
            return self
        if self.base_url is None:
            raise ValueError(
                "provider: openai needs base_url, the server's OpenAI API address "
                "(e.g. http://127.0.0.1:8080/v1)"
            )
        if self.host is not None:
            raise ValueError("host is an Ollama server's address; an openai participant's is its base_url")
        for key in OLLAMA_ONLY:
            given = key in self.options.model_fields_set
            if given and getattr(self.options, key) != ModelOptions.model_fields[key].default:
                raise ValueError(ollama_only_problem(key, self.base_url))  # a default: a run.json's spec
        return self

    @property
    def display(self) -> str:
        """The name a reader sees: the label, or else the model."""
        return self.label or self.model

    @property
    def is_person(self) -> bool:
        return self.kind == PERSON


def person_default(key: str) -> Any:
    """What a person's entry may hold for `key`: a model participant's default, as run.json's
    spec writes it back (model: person, options: the defaults)."""
    if key == "model":
        return PERSON
    if key == "options":
        return ModelOptions().model_dump()
    return Participant.model_fields[key].default


class Framing(BaseModel):
    """Template names in prompts/ for the system prompt and each kind of turn; null = none."""

    model_config = ConfigDict(extra="forbid")

    system: str = "system"
    opening: str | None = "opening"
    response: str | None = "response"
    reply: str | None = "reply"
    closing: str | None = "closing"

    _names_are_templates = field_validator("system", "opening", "response", "reply", "closing")(
        check_template
    )


class Closing(BaseModel):
    model_config = ConfigDict(extra="forbid")

    speaker: str = Field(default="next", description="a participant's name, or 'next' for whoever is due")


OBSERVER = "observer"
"""The observer's node, and its name wherever a participant's would stand (hosts, models)."""


class Observer(BaseModel):
    """A model that reads the finished dialogue and writes notes on it; it never speaks in it."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    label: str | None = None
    host: str | None = None
    persona: str = ""
    options: ModelOptions = Field(default_factory=ModelOptions)

    def as_participant(self) -> Participant:
        """The observer as the connectors know a model: a participant named `observer`."""
        return Participant(
            name=OBSERVER,
            model=self.model,
            label=self.label,
            host=self.host,
            persona=self.persona,
            options=self.options,
        )


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    participants: list[Participant] = Field(min_length=2)
    order: list[str] = Field(min_length=1, description="speakers in rotation, first opens")
    turns: Turns = Field(default=4, description="all turns, the closing included")
    closing: Closing = Field(default_factory=Closing)
    framing: Framing = Field(default_factory=Framing)
    interject_before: list[int] = Field(
        default_factory=list, description="turns before which the facilitator pauses to add words"
    )
    observer: Observer | None = Field(
        default=None, description="a model that writes notes on the dialogue after its closing"
    )

    @field_validator("interject_before")
    @classmethod
    def _interjections_name_turns(cls, value: list[int], info: ValidationInfo) -> list[int]:
        turns = info.data.get("turns")
        for number in value:
            problem = interjection_problem(number, turns) if turns is not None else None
            if problem:
                raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _names_are_consistent(self) -> Shape:
        names = [p.name for p in self.participants]
        reserved = {"facilitator", "closing", OBSERVER} & set(names)
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
    def connected(self) -> list[Participant]:
        """Everyone a run connects a model for: the participants but a person, then the observer
        if there is one."""
        observer = [self.observer.as_participant()] if self.observer is not None else []
        return [*(p for p in self.participants if not p.is_person), *observer]

    @property
    def participant_names(self) -> list[str]:
        return [p.name for p in self.participants]


def interjection_problem(number: int, turns: int) -> str | None:
    """Why the facilitator cannot pause before turn `number` of a dialogue of `turns`, or None.

    Before turn 1 nobody has spoken yet, so the first pause can come before turn 2.
    """
    if MIN_TURNS <= number <= turns:
        return None
    return f"turn {number} is not a turn to pause before; name one from {MIN_TURNS} to {turns}"


def check_turns(turns: int, flag: str = "--turns") -> int:
    """A dialogue length given outside a shape (a flag), held to the shape's own limits."""
    if turns < MIN_TURNS:
        raise ShapeError(
            f"{flag} {turns}: a dialogue needs at least {MIN_TURNS} turns (an opening and a closing)"
        )
    if turns > MAX_TURNS:
        raise ShapeError(f"{flag} {turns}: a dialogue has at most {MAX_TURNS} turns, as in a shape file")
    return turns


def builtin_shape_names() -> list[str]:
    folder = resources.files("graphs.engine.shapes")
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_shape(name_or_path: str) -> Shape:
    """A built-in shape by name, or a shape file by path."""
    if name_or_path in builtin_shape_names():
        resource = resources.files("graphs.engine.shapes").joinpath(f"{name_or_path}.yaml")
        return parse_shape(resource.read_text(encoding="utf-8"), source=f"built-in shape '{name_or_path}'")
    path = Path(name_or_path)
    if not path.exists():
        raise ShapeError(
            f"no shape '{name_or_path}': not a built-in ({', '.join(builtin_shape_names())}) and no such file"
        )
    return parse_shape(read_text_file(path, str(path), MAX_SHAPE_BYTES, "a shape file"), source=str(path))


FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
)


def read_text_file(path: Path, where: str, max_bytes: int, wanted: str = "a text file") -> str:
    """A file a user named (a shape, a topic) as text; one line saying what it is when it is not.

    Only regular files are read: a device never ends and a directory has no text.
    """
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise ShapeError(f"{where}: no such file") from None
    except OSError as exc:
        raise ShapeError(f"{where}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in FILE_KINDS if test(info.st_mode)), "not a regular file")
        raise ShapeError(f"{where}: is {kind}, not {wanted}")
    if info.st_size > max_bytes:
        raise ShapeError(f"{where}: larger than {max_bytes // 1000} kB; give a shorter file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ShapeError(f"{where}: cannot be read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ShapeError(
            f"{where}: not UTF-8 text (byte {exc.start + 1} is 0x{data[exc.start]:02x}); "
            f"give {wanted} saved as UTF-8"
        ) from None
    problem = binary_problem(text)
    if problem:
        raise ShapeError(f"{where}: {problem}; give {wanted}")
    return text


def binary_problem(text: str) -> str | None:
    """Why `text` is not something a person wrote, or None; empty text is the caller's to judge."""
    if "\x00" in text:
        return "it holds NUL bytes, so it is not text (UTF-16? save it as UTF-8)"
    if text.strip() and not any(c.isprintable() and not c.isspace() for c in text):
        return "it holds only control characters, no text"
    return None


def builtin_shape_text(name: str) -> str:
    """A built-in shape's YAML file as written, comments included (the page shows it)."""
    if name not in builtin_shape_names():
        raise ShapeError(f"no built-in shape '{name}' ({', '.join(builtin_shape_names())})")
    return resources.files("graphs.engine.shapes").joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def yaml_fields(text: str, source: str, what: str) -> dict[str, Any]:
    """A shape's or a sweep's YAML as its mapping of fields, or one line saying where it isn't."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ShapeError(f"{source}:{where} is not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise ShapeError(f"{source}: {what} must be a mapping of fields, got {type(data).__name__}")
    return data


def parse_shape(text: str, source: str) -> Shape:
    data = yaml_fields(text, source, "a shape file")
    try:
        return Shape.model_validate(data)
    except ValidationError as exc:
        raise ShapeError(f"{source}: {describe_validation_error(exc)}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """The first problem, as 'field.path: message', which is what a person fixes first."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    return f"{where}: {user_message(error)}{more_problems(exc)}"


def more_problems(exc: ValidationError) -> str:
    more = len(exc.errors()) - 1
    return f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""


USER_MESSAGES = {
    "extra_forbidden": "unknown field",
    "int_parsing": "should be a whole number",
    "int_from_float": "should be a whole number",
    "int_type": "should be a whole number",
    "float_parsing": "should be a number",
    "float_type": "should be a number",
    "finite_number": "should be a finite number",
    "bool_parsing": "should be true or false",
    "bool_type": "should be true or false",
    "string_type": "should be text",
    "list_type": "should be a list",
    "greater_than_equal": "should be at least {ge}",
    "greater_than": "should be more than {gt}",
    "less_than_equal": "should be at most {le}",
    "less_than": "should be less than {lt}",
}


def user_message(error: ErrorDetails) -> str:
    """Pydantic's message in the terms of someone writing a shape or a flag."""
    template = USER_MESSAGES.get(error["type"])
    if template is None:
        return error["msg"].removeprefix("Value error, ")
    return template.format(**(error.get("ctx") or {}))


PARTICIPANT_SETTINGS = frozenset({"label", "persona", "model", "min_tok_s"})


def apply_setting(entry: dict[str, Any], name: str, key: str, value: Any) -> tuple[str, ...]:
    """--set NAME.KEY=VALUE on a participant's data: a setting of its own, or one of its options.

    Returns where the value went in the participant, as a validation error's location names it.
    """
    option_keys = set(ModelOptions.model_fields)
    if entry.get("kind") == PERSON and key != "label":
        raise ShapeError(
            f"--set {name}.{key}: {name} is a person, who has no {key}; only {name}.label can be set"
        )
    if entry.get("provider") == "openai" and key in OLLAMA_ONLY:
        raise ShapeError(f"--set {name}.{key}: {ollama_only_problem(key, entry.get('base_url'))}")
    if key in PARTICIPANT_SETTINGS:
        entry[key] = value
        return (key,)
    if key in option_keys:
        entry.setdefault("options", {})[key] = value
        return ("options", key)
    known = ", ".join(sorted(option_keys | PARTICIPANT_SETTINGS))
    raise ShapeError(f"--set {name}.{key}: unknown key '{key}'; known keys: {known}")


def flag_value(value: Any) -> str:
    """A --set value as the user typed it (YAML reads `abc` as text, `8192` as a number)."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=2**16).removesuffix("\n...\n").strip()


def with_overrides(
    shape: Shape,
    models: dict[str, str],
    settings: list[tuple[str, str, Any]],
    *,
    turns: int | None = None,
    interject: list[int] | tuple[int, ...] = (),
) -> Shape:
    """The shape with --model NAME=MODEL, --set NAME.KEY=VALUE, --turns N and --interject N applied
    and re-validated; a problem names the flag as the user typed it."""
    data = shape.model_dump(exclude_unset=True)
    by_name = {p["name"]: p for p in data["participants"]}
    index = {p["name"]: i for i, p in enumerate(data["participants"])}
    flags: dict[tuple[Any, ...], tuple[str, str]] = {}
    """Where each flag's value went in the data, as a validation error's location names it."""

    def participant(name: str, flag: str) -> dict[str, Any]:
        if name not in by_name:
            raise ShapeError(
                f"{flag} names '{name}', who is not in shape '{shape.name}'; "
                f"its participants are {', '.join(by_name)}"
            )
        return by_name[name]

    for name, model in models.items():
        choose_model(participant(name, "--model"), name, model)
        flags[("participants", index[name], "model")] = (f"--model {name}={model}", "model")
        flags[("participants", index[name], "base_url")] = (f"--model {name}={model}", "the URL")
    for name, key, value in settings:
        where = apply_setting(participant(name, "--set"), name, key, value)
        flags[("participants", index[name], *where)] = set_flag(name, key, value)
    if turns is not None:
        data["turns"] = check_turns(turns)
    if interject:
        total = data.get("turns", shape.turns)
        for number in interject:
            problem = interjection_problem(number, total)
            if problem:
                raise ShapeError(f"--interject {number}: {problem}")
        data["interject_before"] = sorted(set(shape.interject_before) | set(interject))
    try:
        return Shape.model_validate(data)
    except ValidationError as exc:
        problem = flagged_problem(exc, flags)
        if problem:
            raise ShapeError(problem) from None
        if turns is not None and exc.errors()[0]["loc"][:1] == ("interject_before",):
            raise ShapeError(f"--turns {turns}: the shape's {describe_validation_error(exc)}") from None
        raise ShapeError(f"--model/--set: {describe_validation_error(exc)}") from None


def choose_model(entry: dict[str, Any], name: str, value: str) -> None:
    """--model NAME=MODEL on a participant's data; NAME=openai:MODEL@URL moves it to that
    OpenAI-compatible server, leaving behind the Ollama options its old server was given."""
    if entry.get("kind") == PERSON:
        raise ShapeError(f"--model {name}={value}: {name} is a person, who has no model")
    if not value.startswith(OPENAI_PREFIX):
        entry["model"] = value
        return
    model, at, url = value.removeprefix(OPENAI_PREFIX).rpartition("@")
    if not at or not model or not url:
        raise ShapeError(
            f"--model {name}={value}: expected {name}=openai:MODEL@URL, "
            f"e.g. {name}=openai:qwen3@http://127.0.0.1:8080/v1"
        )
    entry.update(provider="openai", model=model, base_url=url)
    entry.pop("host", None)
    options = entry.get("options") or {}
    entry["options"] = {key: value for key, value in options.items() if key not in OLLAMA_ONLY}


def set_flag(name: str, key: str, value: Any) -> tuple[str, str]:
    """--set NAME.KEY=VALUE as typed, and its key: what a problem with the value names."""
    return f"--set {name}.{key}={flag_value(value)}", key


def flagged_problem(exc: ValidationError, flags: Mapping[tuple[Any, ...], tuple[str, str]]) -> str | None:
    """The first problem as the flag that caused it, '--set a.num_ctx=abc: num_ctx should be a
    whole number', if a flag did; `flags` maps where each flag's value went to (flag, key)."""
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    for at, (text, key) in flags.items():
        if loc[: len(at)] == at:
            return f"{text}: {key} {user_message(error)}{more_problems(exc)}"
    return None
