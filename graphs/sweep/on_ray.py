"""A sweep's cells as Ray tasks (`duologue sweep --ray auto|ADDRESS`, duologue[ray]).

The same driver decides what runs next (its slots, the same schedule, the same rule for a
failing host), so the results are those of the in-process sweep; what changes is where a cell
is held. Each host of the pool is a Ray custom resource, `duologue-host-<n>` with max_per_host
units, which each of its cells asks one of, so Ray's scheduler too holds max_per_host. A host
marked `ray_resource: NAME` is reachable only from the node that has NAME (a driver next to each
Ollama, none opened to the network), so its cells ask a sliver of NAME as well and run there.
Run folders go to the shared runs folder, checkpoints to Postgres with --checkpoint-url.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from graphs.errors import DuologueError
from graphs.records.tables import run_totals
from graphs.sweep.driver import POLL_S, SweepDriver
from graphs.sweep.plan import Cell
from graphs.sweep.spec import Sweep

if TYPE_CHECKING:
    from graphs.sweep.driver import SweepOutcome

RAY_MISSING = "--ray needs Ray, which is not installed: pip install 'duologue[ray]'"
NODE_SHARE = 0.001
"""What a cell asks of its host's node resource: only where it runs, not how many at once."""


def host_resource(index: int) -> str:
    """The custom resource of the pool's host number `index` (from 0): duologue-host-1, ..."""
    return f"duologue-host-{index + 1}"


def pool_resources(sweep: Sweep) -> dict[str, float]:
    """The resources a cluster started for this sweep declares: max_per_host of each host."""
    return {host_resource(i): float(sweep.file.max_per_host) for i in range(len(sweep.hosts))}


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise DuologueError(RAY_MISSING) from None
    return ray


def connect(ray: Any, address: str, sweep: Sweep) -> None:
    """Join the cluster at `address`; `auto`: the running one, else one started here for the sweep,
    with the pool's resources. A cluster without a host's resources is refused in one line."""
    if not ray.is_initialized():
        if address == "auto":
            try:
                ray.init(address="auto", include_dashboard=False, log_to_driver=False)
            except ConnectionError:
                ray.init(include_dashboard=False, resources=pool_resources(sweep), log_to_driver=False)
        else:
            try:
                ray.init(address=address, log_to_driver=False)
            except (ConnectionError, ValueError) as exc:
                raise DuologueError(f"--ray {address}: cannot join the Ray cluster ({exc})") from None
    have = ray.cluster_resources()
    wanted = pool_resources(sweep) | {name: NODE_SHARE for name in sweep.ray_resources.values()}
    missing = [name for name in wanted if have.get(name, 0) < min(wanted[name], 1)]
    if missing:
        declare = ", ".join(f'"{name}": {wanted[name]:g}' for name in missing)
        raise DuologueError(
            f"--ray: the Ray cluster has no resource {', '.join(missing)}; start the node beside each "
            f"host with `ray start ... --resources='{{{declare}}}'`"
        )


def hold_cell_task(
    sweep_json: str,
    number: int,
    host: str,
    runs_dir: str,
    run_id: str | None,
    checkpoint_url: str | None,
    trace: bool,
) -> tuple[str, str | None, str | None]:
    """A Ray task: hold one cell on `host`, as the in-process driver would; (status, error, run id)."""
    sweep = Sweep.model_validate_json(sweep_json)
    local = SweepDriver(sweep, runs_dir, checkpoint_url=checkpoint_url, trace=trace)
    if run_id is not None:
        local.run_ids[number] = run_id
    status, error = local.hold(local.cells[number], host, threading.Event())
    return status, error, local.run_ids.get(number)


class RaySweepDriver(SweepDriver):
    """The driver whose cells are held by Ray tasks; a slot waits for its task."""

    ray: Any = None

    def hold(self, cell: Cell, host: str, stop: threading.Event) -> tuple[str, str | None]:
        ray = self.ray
        index = self.sweep.hosts.index(host)
        resources = {host_resource(index): 1.0}
        node = self.sweep.ray_resources.get(host)
        if node:
            resources[node] = NODE_SHARE
        task = ray.remote(hold_cell_task).options(num_cpus=0, resources=resources, max_retries=0)
        ref = task.remote(
            self.sweep.model_dump_json(),
            cell.cell,
            host,
            str(Path(self.store.root).resolve()),
            self.run_ids.get(cell.cell),
            self.checkpoint_url,
            self.trace,
        )
        cancelled = False
        while not ray.wait([ref], timeout=POLL_S)[0]:
            if self.stop.is_set() and not cancelled:
                ray.cancel(ref)  # a KeyboardInterrupt in the task: the run records itself interrupted
                cancelled = True
        try:
            status, error, run_id = ray.get(ref)
        except (ray.exceptions.TaskCancelledError, ray.exceptions.RayTaskError) as exc:
            if cancelled or self.stop.is_set():
                return "interrupted", None
            return "failed", f"the Ray task failed: {str(exc).splitlines()[0]}"
        except ray.exceptions.RayError as exc:
            return "failed", f"the Ray task failed: {str(exc).splitlines()[0]}"
        if run_id is not None:
            self.cell_started(cell.cell, run_id, self.store.root / run_id)
            self.count_tokens(cell.cell, run_id)
        return status, error

    def count_tokens(self, number: int, run_id: str) -> None:
        """A task's turns are not streamed back: the cell's tokens count once it ends."""
        try:
            tokens = cast(int, run_totals(self.store.load(run_id))["tokens"])
        except DuologueError:
            return
        before = self.cell_tokens.get(number, 0)
        self.cell_tokens[number] = tokens
        self.tokens_added(tokens - before)


def run_on_ray(driver: SweepDriver, address: str) -> SweepOutcome:
    """The sweep on Ray: the same cells, the same plan, each cell a task on its host's node."""
    ray = import_ray()
    connect(ray, address, driver.sweep)
    on_ray = RaySweepDriver(
        driver.sweep,
        driver.runs_dir,
        stop=driver.stop,
        progress=driver.progress,
        checkpoint_url=driver.checkpoint_url,
        trace=driver.trace,
    )
    on_ray.ray = ray
    driver.running_folders = on_ray.running_folders  # type: ignore[method-assign]
    return on_ray.run()
