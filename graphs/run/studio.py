"""The built-in shapes' graphs for `langgraph dev` / LangGraph Server (see langgraph.json).

Compiled without a checkpointer, since the server brings its own; without a context
each participant's ChatOllama is built from the shape, on $OLLAMA_HOST.
"""

from langchain_core.runnables import Runnable

from graphs.engine.build import build_graph
from graphs.engine.context import DialogueContext
from graphs.engine.spec import Participant, Shape, load_shape
from graphs.ollama.api import default_host, normalize_host
from graphs.ollama.connector import chat_model


def on_ollama(participant: Participant) -> Runnable:
    return chat_model(participant, normalize_host(participant.host) if participant.host else default_host())


def served(shape: Shape):  # noqa: ANN201 - LangGraph's compiled graph type
    return build_graph(shape, default=DialogueContext(shape, connect=on_ollama))


duet = served(load_shape("duet"))
panel = served(load_shape("panel"))
debate = served(load_shape("debate"))
