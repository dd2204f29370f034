"""Shape → LangGraph StateGraph. Wiring only: the nodes live in nodes.py."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from graphs.context import DialogueContext
from graphs.nodes import CLOSING, FACILITATOR, facilitator, speak
from graphs.spec import Shape
from graphs.state import DialogueState


def build_graph(shape: Shape, checkpointer: Any = None) -> CompiledStateGraph:
    speakers = list(dict.fromkeys(shape.order))
    graph = StateGraph(DialogueState, context_schema=DialogueContext)
    graph.add_node(FACILITATOR, facilitator, destinations=(*speakers, CLOSING, END))
    for speaker in speakers:
        graph.add_node(speaker, speak)
        graph.add_edge(speaker, FACILITATOR)
    graph.add_node(CLOSING, speak)
    graph.add_edge(START, FACILITATOR)
    graph.add_edge(CLOSING, END)
    return graph.compile(checkpointer=checkpointer, name=shape.name)


def recursion_limit(turns: int) -> int:
    """Each turn takes two steps (facilitator, speaker); the cap in the state ends it first."""
    return 2 * turns + 4


def mermaid(shape: Shape) -> str:
    return build_graph(shape).get_graph().draw_mermaid()
