"""A sweep's cells and the schedule that runs them: pure functions, no I/O.

A 24 GB card holds one dialogue's models at a time, and a cold reload costs tens of seconds,
so the schedule keeps cells with the same models together on one host.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel


class Cell(BaseModel):
    """One dialogue of the sweep: a model assignment, a topic, a seed (or a repeat)."""

    cell: int
    """Its number, from 1: assignment, then topic, then seed, in the file's order."""
    assignment: int
    """The model assignment's place in the file's `models`, from 0."""
    models: dict[str, str]
    topic: str
    """The topic as the file gives it: a file's name or the text."""
    topic_index: int
    seed: int | None
    repeat: int
    """Which repeat of its assignment and topic, from 1 (with seeds, the seed's place)."""


def plan_cells(
    models: Sequence[dict[str, str]], topics: Sequence[str], seeds: Sequence[int | None]
) -> list[Cell]:
    """Every cell, numbered the same way each time the same file is read."""
    cells: list[Cell] = []
    for assignment, chosen in enumerate(models):
        for topic_index, topic in enumerate(topics):
            for repeat, seed in enumerate(seeds, start=1):
                cells.append(
                    Cell(
                        cell=len(cells) + 1,
                        assignment=assignment,
                        models=dict(chosen),
                        topic=topic,
                        topic_index=topic_index,
                        seed=seed,
                        repeat=repeat,
                    )
                )
    return cells


def schedule(cells: Sequence[Cell], hosts: Sequence[str]) -> dict[str, list[int]]:
    """Which host runs which cells, in order: the cells in assignment order, cut into one run of
    near-equal length per host, so a host changes models only where its run crosses from one
    assignment to the next (two assignments on two hosts: no reload at all)."""
    ordered = sorted(cells, key=lambda c: (c.assignment, c.cell))
    plan: dict[str, list[int]] = {host: [] for host in hosts}
    if not hosts:
        return plan
    share, extra = divmod(len(ordered), len(hosts))
    start = 0
    for index, host in enumerate(hosts):
        size = share + (1 if index < extra else 0)
        plan[host] = [c.cell for c in ordered[start : start + size]]
        start += size
    return plan


def next_cell(
    queues: dict[str, list[int]],
    host: str,
    last_assignment: int | None,
    assignment_of: dict[int, int],
    refused: dict[int, set[str]] | None = None,
) -> int | None:
    """The cell `host` should run next, taken out of `queues`: its own next cell of the assignment
    it holds, else its own next; when its queue is empty, one from the end of another host's
    queue (that host's last to start), of the same assignment if one is left. A cell that failed
    on `host` (`refused`) goes to another."""
    refused = refused or {}

    def allowed(cell: int) -> bool:
        return host not in refused.get(cell, set())

    own = [c for c in queues.get(host, []) if allowed(c)]
    if own:
        same = [c for c in own if assignment_of[c] == last_assignment]
        chosen = same[0] if same else own[0]
        queues[host].remove(chosen)
        return chosen
    others = [(h, q) for h, q in queues.items() if h != host and any(allowed(c) for c in q)]
    if not others:
        return None
    candidates = [(h, c) for h, q in others for c in reversed(q) if allowed(c)]
    alike = [(h, c) for h, c in candidates if assignment_of[c] == last_assignment]
    longest = max(others, key=lambda hq: len(hq[1]))[0]
    pick = alike[0] if alike else next((hc for hc in candidates if hc[0] == longest), candidates[0])
    queues[pick[0]].remove(pick[1])
    return pick[1]


def describe_plan(cells: Sequence[Cell], plan: dict[str, list[int]], max_per_host: int) -> list[str]:
    """The plan as `--dry-run` prints it: each cell, then each host's cells in order."""
    by_number = {c.cell: c for c in cells}
    lines = [f"{len(cells)} cell(s):"]
    for c in cells:
        models = ", ".join(f"{name}={model}" for name, model in c.models.items())
        seed = f"seed {c.seed}" if c.seed is not None else f"repeat {c.repeat}"
        lines.append(f"  cell {c.cell}: {models} · topic {short(c.topic)} · {seed}")
    at_once = f"{max_per_host} dialogue(s) at a time" if max_per_host > 1 else "one dialogue at a time"
    lines.append(f"plan ({at_once} per host, hosts at once):")
    for host, numbers in plan.items():
        groups: list[tuple[int, list[int]]] = []
        for number in numbers:
            assignment = by_number[number].assignment
            if groups and groups[-1][0] == assignment:
                groups[-1][1].append(number)
            else:
                groups.append((assignment, [number]))
        runs = "; ".join(f"cells {', '.join(map(str, ns))} (models {a + 1})" for a, ns in groups) or "nothing"
        lines.append(f"  {host}: {runs}")
    return lines


def short(text: str, width: int = 40) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"
