"""The graphs langgraph.json serves to `langgraph dev` / LangGraph Server and Studio.

`duet`, `panel` and `debate` hold the built-in shapes; `dialogue` holds the shape its
assistant names in `configurable.shape` (a built-in name or a shape file), so a Studio user
makes one assistant per shape. Each is a graph factory the server calls per run: the run's
JSON context is read there (graphs/run/served.py), its models are reached as `duologue run`
reaches them, and with $DUOLOGUE_RUNS_DIR set the run is recorded under its thread's id.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphBubbleUp
from langgraph.graph.state import CompiledStateGraph
from langgraph_sdk.runtime import ServerRuntime

from graphs.engine.build import build_graph
from graphs.engine.spec import Shape, load_shape
from graphs.errors import DuologueError
from graphs.run.served import (
    ContextError,
    ServedContext,
    ServedDialogue,
    ServedRunFailed,
    read_context,
    runs_dir_from_env,
)

DEFAULT_SHAPE = "duet"
"""What a `dialogue` assistant without `configurable.shape` holds."""

BUILT_IN = {name: load_shape(name) for name in ("duet", "panel", "debate")}
"""Read at import: the server's event loop refuses a file read in a factory."""


@asynccontextmanager
async def serving(
    shape: Shape, config: RunnableConfig, runtime: ServerRuntime, context: ServedContext
) -> AsyncIterator[CompiledStateGraph[Any, Any, Any, Any]]:
    """The shape's graph for one use by the server; for a run, it holds the run's models and
    record until the run ends, then records how it ended."""
    thread_id = (config.get("configurable") or {}).get("thread_id")
    served = ServedDialogue(shape, context, str(thread_id) if thread_id else None, runs_dir_from_env())
    graph: Any = build_graph(served.shape, default=served.dialogue_context(), context_schema=ServedContext)
    if runtime.execution_runtime is None:  # the server reads the graph's schema or its state
        yield graph
        return
    if served.recording is not None:
        graph = graph.with_config(callbacks=[served.recording.recorder])
    try:
        yield graph
    except GraphBubbleUp:
        await asyncio.to_thread(served.ended, None)
        raise
    except Exception as exc:
        message = await asyncio.to_thread(served.ended, exc)
        if message is None:  # cancelled by the user: the server's own interrupt goes on
            raise
        raise ServedRunFailed(message) from exc
    except BaseException as exc:  # cancelled
        await asyncio.to_thread(served.ended, exc)
        raise
    await asyncio.to_thread(served.ended, None)


def run_context(runtime: ServerRuntime) -> ServedContext:
    execution = runtime.execution_runtime
    return read_context(execution.context if execution is not None else None)


def shape_named(config: RunnableConfig, context: ServedContext) -> str:
    """The assistant's `configurable.shape` (the server mirrors it into the context)."""
    configurable: Mapping[str, Any] = config.get("configurable") or {}
    return str(configurable.get("shape") or context.shape or DEFAULT_SHAPE)


def asks_for_shape(config: RunnableConfig, context: ServedContext) -> bool:
    return bool(context.shape or (config.get("configurable") or {}).get("shape"))


@asynccontextmanager
async def dialogue(
    config: RunnableConfig, runtime: ServerRuntime
) -> AsyncIterator[CompiledStateGraph[Any, Any, Any, Any]]:
    """Any shape: the one the assistant's `configurable.shape` names."""
    context = run_context(runtime)
    name = shape_named(config, context)
    try:
        shape = BUILT_IN[name] if name in BUILT_IN else await asyncio.to_thread(load_shape, name)
    except DuologueError as exc:
        raise ContextError(f"configurable.shape: {exc}") from None
    async with serving(shape, config, runtime, context) as graph:
        yield graph


Factory = Callable[
    [RunnableConfig, ServerRuntime], AbstractAsyncContextManager[CompiledStateGraph[Any, Any, Any, Any]]
]


def built_in(name: str) -> Factory:
    """A graph factory for one built-in shape (a `dialogue` assistant takes any shape)."""

    @asynccontextmanager
    async def factory(
        config: RunnableConfig, runtime: ServerRuntime
    ) -> AsyncIterator[CompiledStateGraph[Any, Any, Any, Any]]:
        context = run_context(runtime)
        asked = shape_named(config, context) if asks_for_shape(config, context) else name
        if asked != name:
            raise ContextError(
                f"the '{name}' graph holds the {name} shape, not '{asked}'; "
                "make an assistant of the `dialogue` graph for configurable.shape"
            )
        async with serving(BUILT_IN[name], config, runtime, context) as graph:
            yield graph

    factory.__name__ = factory.__qualname__ = name
    return factory


duet = built_in("duet")
panel = built_in("panel")
debate = built_in("debate")
