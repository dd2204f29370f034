"""Shape → LangGraph StateGraph. Wiring only: the nodes live in nodes.py."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from graphs.engine.context import DialogueContext
from graphs.engine.nodes import CLOSING, FACILITATOR, make_facilitator, make_observer, make_speaker
from graphs.engine.spec import OBSERVER, Shape
from graphs.engine.state import DialogueState


def build_graph(
    shape: Shape,
    checkpointer: Any = None,
    default: DialogueContext | None = None,
    context_schema: type[Any] = DialogueContext,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """`default` serves the nodes when a run brings no DialogueContext, as under LangGraph Server,
    whose runs bring JSON of the `context_schema` the host declares (graphs/run/served.py)."""
    speakers = list(dict.fromkeys(shape.order))
    default = default or DialogueContext(shape)
    graph = StateGraph(DialogueState, context_schema=context_schema)
    graph.add_node(FACILITATOR, make_facilitator(default), destinations=(*speakers, CLOSING, END))
    for speaker in speakers:
        graph.add_node(speaker, make_speaker(default))
        graph.add_edge(speaker, FACILITATOR)
    graph.add_node(CLOSING, make_speaker(default))
    graph.add_edge(START, FACILITATOR)
    if shape.observer is None:
        graph.add_edge(CLOSING, END)
    else:
        graph.add_node(OBSERVER, make_observer(default))
        graph.add_edge(CLOSING, OBSERVER)
        graph.add_edge(OBSERVER, END)
    return graph.compile(checkpointer=checkpointer, name=shape.name)


def recursion_limit(turns: int) -> int:
    """Each turn takes two steps (facilitator, speaker); the cap in the state ends it first."""
    return 2 * turns + 4


def mermaid(shape: Shape) -> str:
    return build_graph(shape).get_graph().draw_mermaid()


def graph_dot(shape: Shape) -> str:
    """The compiled graph as Graphviz DOT, labelled with who speaks and on which model.

    The page draws this with st.graphviz_chart, which renders in the browser without a CDN
    (mermaid would need one).
    """
    graph = build_graph(shape).get_graph()
    closer = shape.closing.speaker
    closing_by = "whoever is due" if closer == "next" else shape.participant(closer).display

    def label(node: str) -> list[str]:
        if node in ("__start__", "__end__"):
            return [node.strip("_")]
        if node == FACILITATOR:
            return ["facilitator", "relays; calls no model"]
        if node == CLOSING:
            return ["closing synthesis", f"by {closing_by}"]
        if node == OBSERVER and shape.observer is not None:
            observer = shape.observer.as_participant()
            return ["observer's notes", f"by {observer.display}; never relayed"]
        participant = shape.participant(node)
        if participant.is_person:
            return [participant.display, f"{node} · a person; typed at the keyboard"]
        if participant.label:
            return [participant.label, f"{node} · {participant.model}"]
        return [node, participant.model]

    def quoted(*lines: str) -> str:
        return '"' + "\\n".join(line.replace("\\", "\\\\").replace('"', '\\"') for line in lines) + '"'

    lines = [
        f"digraph {quoted(shape.name)} {{",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica"];',
    ]
    for node in graph.nodes:
        terminal = ', shape=oval, fillcolor="#dddddd"' if node in ("__start__", "__end__") else ""
        lines.append(f"  {quoted(node)} [label={quoted(*label(node))}{terminal}];")
    for edge in graph.edges:
        style = " [style=dashed]" if edge.conditional else ""
        lines.append(f"  {quoted(edge.source)} -> {quoted(edge.target)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"
