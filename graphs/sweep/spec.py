"""Sweep files: one shape held over model assignments, topics and seeds, on a pool of hosts.

A person writes these, so, as a shape file, every key is checked: a typo is one line naming
the file and the field. What a sweep file names is resolved here once (the shape, the topics'
texts, each cell's shape with its overrides), so a problem shows before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from graphs.engine.spec import (
    MAX_SHAPE_BYTES,
    Shape,
    Turns,
    binary_problem,
    builtin_shape_names,
    describe_validation_error,
    load_shape,
    read_text_file,
    with_overrides,
    yaml_fields,
)
from graphs.errors import ShapeError
from graphs.sweep.plan import Cell, plan_cells

MAX_TOPIC_BYTES = 1_000_000
TOPIC_FILE_SUFFIXES = (".md", ".txt", ".markdown", ".text", ".rst")


class SweepHost(BaseModel):
    """A host of the pool, with the Ray node beside it when only that node can reach it."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1)
    ray_resource: str | None = Field(
        default=None, description="the Ray custom resource of the node beside this host (--ray)"
    )


class SweepFile(BaseModel):
    """What a sweep file says, as written."""

    model_config = ConfigDict(extra="forbid")

    shape: str = Field(min_length=1, description="a built-in shape's name or a shape file")
    models: list[dict[str, str]] = Field(min_length=1, description="model assignments, by participant name")
    topics: list[str] = Field(min_length=1, description="topic files (relative to the sweep file) or texts")
    seeds: list[int] | None = Field(default=None, description="each participant's seed, one cell per seed")
    repeats: int | None = Field(default=None, ge=1, le=1000, description="cells per topic without seeds")
    turns: Turns | None = None
    set: dict[str, Any] = Field(default_factory=dict, description="NAME.KEY: VALUE, as --set")
    hosts: list[SweepHost] = Field(min_length=1, description="URLs, or {host: URL, ray_resource: NAME}")
    max_per_host: int = Field(default=1, ge=1, le=64, description="dialogues a host holds at once")
    residency: Literal["auto", "exclusive", "shared"] = "auto"
    require_gpu: bool | None = None
    timeout_s: float | None = Field(default=None, gt=0)

    @field_validator("hosts", mode="before")
    @classmethod
    def _urls_are_hosts(cls, value: Any) -> Any:
        """A host given as its URL alone, as most are."""
        if isinstance(value, list):
            return [{"host": entry} if isinstance(entry, str) else entry for entry in value]
        return value

    @model_validator(mode="after")
    def _seeds_or_repeats(self) -> SweepFile:
        if self.seeds is not None and self.repeats is not None:
            raise ValueError("give seeds or repeats, not both")
        if self.seeds is not None and not self.seeds:
            raise ValueError("seeds: give at least one seed, or repeats: N")
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: each seed once, got {self.seeds}")
        return self


class Sweep(BaseModel):
    """A sweep file resolved: the shape, each topic's text and the pool, checked together."""

    sweep_id: str
    source: str
    """The sweep file as named, for messages."""
    file: SweepFile
    shape: Shape
    """The shape as loaded, before a cell's models, settings and seed."""
    topics: list[str]
    """Each topic's text, in the file's order (a file's content, or the text itself)."""

    @property
    def pool(self) -> dict[str, str]:
        """Each host of the pool by its name in the plan and the report, to the URL its cells are
        sent to. The name is the URL, unless the same URL stands for several Ray nodes' own
        servers (a driver beside each Ollama on its 127.0.0.1): then it is URL#ray_resource."""
        from graphs.ollama.api import normalize_host

        urls = [normalize_host(h.host) for h in self.file.hosts]
        return {
            f"{url}#{h.ray_resource}" if urls.count(url) > 1 and h.ray_resource else url: url
            for url, h in zip(urls, self.file.hosts, strict=True)
        }

    @property
    def hosts(self) -> list[str]:
        return list(self.pool)

    def url_of(self, host: str) -> str:
        """The server a pool host's cells are sent to."""
        return self.pool[host]

    @property
    def ray_resources(self) -> dict[str, str]:
        """The pool's hosts marked as reachable only from one Ray node, and that node's resource."""
        return {
            name: h.ray_resource for name, h in zip(self.pool, self.file.hosts, strict=True) if h.ray_resource
        }

    @property
    def seeds(self) -> list[int | None]:
        return list(self.file.seeds) if self.file.seeds is not None else [None] * (self.file.repeats or 1)

    @property
    def turns(self) -> int:
        return self.file.turns or self.shape.turns

    def cell_shape(self, models: dict[str, str], seed: int | None) -> Shape:
        """The shape one cell holds: its models, the file's set, its seed for every participant."""
        settings = [*set_entries(self.file.set)]
        if seed is not None:
            settings += [(p.name, "seed", seed) for p in self.shape.participants]
        return with_overrides(self.shape, models, settings, turns=self.turns)


def set_entries(values: dict[str, Any]) -> list[tuple[str, str, Any]]:
    entries = []
    for target, value in values.items():
        name, dot, key = str(target).partition(".")
        if not dot or not name or not key:
            raise ValueError(f"'{target}' is not NAME.KEY, e.g. b.num_ctx")
        entries.append((name, key, value))
    return entries


def load_sweep(path: Path | str) -> Sweep:
    """A sweep file, read and checked whole; ShapeError (one line: the file, the field) if not."""
    path = Path(path)
    source = str(path)
    text = read_text_file(path, source, MAX_SHAPE_BYTES, "a sweep file")
    data = yaml_fields(text, source, "a sweep file")
    try:
        file = SweepFile.model_validate(data)
    except ValidationError as exc:
        raise ShapeError(f"{source}: {describe_validation_error(exc)}") from None
    return resolve(file, source, path.parent)


def resolve(file: SweepFile, source: str, base: Path) -> Sweep:
    """The sweep the file describes, each field checked against the shape it names."""
    shape_name = file.shape
    if shape_name not in builtin_shape_names() and not Path(shape_name).is_absolute():
        shape_name = str(base / shape_name)
    try:
        shape = load_shape(shape_name)
    except ShapeError as exc:
        raise ShapeError(f"{source}: shape: {exc}") from None
    if shape.interject_before:
        raise ShapeError(
            f"{source}: shape: '{shape.name}' pauses for the facilitator's words (interject_before), "
            "which no sweep can give; use a shape without pauses"
        )
    names = shape.participant_names
    for index, assignment in enumerate(file.models):
        for name in assignment:
            if name not in names:
                raise ShapeError(
                    f"{source}: models.{index}.{name}: no participant '{name}' in shape '{shape.name}'; "
                    f"its participants are {', '.join(names)}"
                )
    try:
        entries = set_entries(file.set)
    except ValueError as exc:
        raise ShapeError(f"{source}: set: {exc}") from None
    for name, key, _ in entries:
        if name not in names:
            raise ShapeError(
                f"{source}: set.{name}.{key}: no participant '{name}' in shape '{shape.name}'; "
                f"its participants are {', '.join(names)}"
            )
    topics = [topic_text(topic, f"{source}: topics.{i}", base) for i, topic in enumerate(file.topics)]
    sweep = Sweep(sweep_id="-", source=source, file=file, shape=shape, topics=topics)
    for index, assignment in enumerate(file.models):
        for seed in sweep.seeds[:1]:
            try:
                sweep.cell_shape(assignment, seed)
            except ShapeError as exc:
                raise ShapeError(f"{source}: models.{index} with set: {exc}") from None
    from graphs.ollama.api import normalize_host

    urls = [normalize_host(entry.host) for entry in file.hosts]
    for index, host in enumerate(urls):
        if not re.match(r"^https?://[^/\s]+", host):
            raise ShapeError(f"{source}: hosts.{index}: {host!r} is not a server's URL")
    repeated = [h for url, h in zip(urls, file.hosts, strict=True) if urls.count(url) > 1]
    if len(sweep.pool) != len(file.hosts) or any(h.ray_resource is None for h in repeated):
        raise ShapeError(
            f"{source}: hosts: each host once, got {', '.join(urls)} (the same URL on several Ray "
            "nodes needs each entry's ray_resource)"
        )
    sweep.sweep_id = sweep_id_of(Path(source).stem, file, shape, topics)
    return sweep


def topic_text(topic: str, where: str, base: Path) -> str:
    """A topic entry's text: a file's (relative to the sweep file) when it names one, else itself.

    An entry that looks like a file's name (one word ending in .md, .txt, ..., or a path with a
    slash) must be a file, so a typo in it is an error rather than a topic of one word."""
    if not topic.strip():
        raise ShapeError(f"{where}: an empty topic; give a text or a file")
    candidate = Path(topic).expanduser()
    path = candidate if candidate.is_absolute() else base / candidate
    looks_like_file = not re.search(r"\s", topic) and (
        topic.lower().endswith(TOPIC_FILE_SUFFIXES) or "/" in topic
    )
    if looks_like_file or path.is_file():
        text = read_text_file(path, f"{where}: {topic}", MAX_TOPIC_BYTES, "a topic file")
        if not text.strip():
            raise ShapeError(f"{where}: {topic}: the file is empty")
        return text
    problem = binary_problem(topic)
    if problem:
        raise ShapeError(f"{where}: {problem}; give the topic as text")
    return topic


def sweep_id_of(stem: str, file: SweepFile, shape: Shape, topics: list[str]) -> str:
    """The sweep's id, from what it holds: the same file run again is the same sweep, so it
    continues where it stopped; a change to what its cells hold makes another sweep. The pool
    (hosts, max_per_host) and the timeout are not what a cell holds: a sweep moved to other hosts,
    or given more patience, is the same sweep."""
    content = {
        "file": file.model_dump(mode="json", exclude={"hosts", "max_per_host", "timeout_s"}),
        "shape": shape.model_dump(mode="json"),
        "topics": topics,
    }
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:10]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.")[:48] or "sweep"
    return f"{name}-{digest}"


class LeftPool(BaseModel):
    """A host the sweep took out of its pool: it failed twice in a row."""

    host: str
    reason: str
    """Its last failure, in one line."""
    cells_moved: list[int]
    """The cells it had still to run, which went to the other hosts."""


class SweepManifest(BaseModel):
    """sweep.json: the sweep as planned, so a report lists every cell (those not yet begun too)
    and `--resume SWEEP_ID` runs it without its file. Each cell's run says its cell in run.json."""

    sweep_id: str
    source: str
    file: SweepFile
    shape: Shape
    topics: list[str]
    cells: list[Cell]
    left_pool: list[LeftPool] = []
    """What the last session took out of the pool."""

    def sweep(self) -> Sweep:
        return Sweep(
            sweep_id=self.sweep_id, source=self.source, file=self.file, shape=self.shape, topics=self.topics
        )


def sweep_cells(sweep: Sweep) -> list[Cell]:
    return plan_cells(sweep.file.models, sweep.file.topics, sweep.seeds)


def manifest_of(sweep: Sweep, left_pool: list[LeftPool] | None = None) -> SweepManifest:
    return SweepManifest(
        sweep_id=sweep.sweep_id,
        source=sweep.source,
        file=sweep.file,
        shape=sweep.shape,
        topics=sweep.topics,
        cells=sweep_cells(sweep),
        left_pool=left_pool or [],
    )


def load_manifest(sweep_id: str, runs_dir: Path | str | None = None) -> SweepManifest:
    """A sweep's sweep.json from the runs folder; one line if there is none or it is unreadable."""
    from graphs.errors import RunNotFound
    from graphs.records.store import SWEEP, RunStore

    store = RunStore(runs_dir)
    text = store.sweep_manifest(sweep_id)
    if text is None:
        raise RunNotFound(f"no sweep '{sweep_id}' in {store.root} (`duologue sweep FILE` starts one)")
    try:
        return SweepManifest.model_validate_json(text)
    except ValidationError as exc:
        where = store.sweep_folder(sweep_id) / SWEEP
        raise RunNotFound(
            f"sweep {sweep_id}: {where} is not a sweep record ({describe_validation_error(exc)})"
        ) from None
