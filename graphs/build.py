"""Shape → LangGraph StateGraph. Wiring only: the nodes live in nodes.py."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from graphs.context import DialogueContext
from graphs.nodes import CLOSING, FACILITATOR, make_facilitator, make_speaker
from graphs.spec import Shape
from graphs.state import DialogueState


def build_graph(shape: Shape, checkpointer: Any = None) -> CompiledStateGraph[Any, Any, Any, Any]:
    speakers = list(dict.fromkeys(shape.order))
    default = DialogueContext(shape)
    graph = StateGraph(DialogueState, context_schema=DialogueContext)
    graph.add_node(FACILITATOR, make_facilitator(default), destinations=(*speakers, CLOSING, END))
    for speaker in speakers:
        graph.add_node(speaker, make_speaker(default))
        graph.add_edge(speaker, FACILITATOR)
    graph.add_node(CLOSING, make_speaker(default))
    graph.add_edge(START, FACILITATOR)
    graph.add_edge(CLOSING, END)
    return graph.compile(checkpointer=checkpointer, name=shape.name)


def recursion_limit(turns: int) -> int:
    """Each turn takes two steps (facilitator, speaker); the cap in the state ends it first."""
    return 2 * turns + 4


def mermaid(shape: Shape) -> str:
    return build_graph(shape).get_graph().draw_mermaid()
