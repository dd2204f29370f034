"""The built-in shapes' graphs for `langgraph dev` / LangGraph Server (see langgraph.json).

Compiled without a checkpointer, since the server brings its own; without a context
each participant's ChatOllama is built from the shape, on $OLLAMA_HOST, with its options
pinned as a run pins them (num_ctx, think and num_predict, from /api/show).
"""

from collections.abc import Callable

from langchain_core.runnables import Runnable

from graphs.engine.build import build_graph
from graphs.engine.context import DialogueContext
from graphs.engine.spec import Participant, Shape, load_shape
from graphs.ollama.api import default_host, normalize_host, show_model
from graphs.ollama.connector import chat_model
from graphs.ollama.residency import resolve_options


def on_ollama(turns: int) -> Callable[[Participant], Runnable]:
    """A participant's chat model on its host, options resolved for a dialogue of `turns` turns."""

    def connect(participant: Participant) -> Runnable:
        host = normalize_host(participant.host) if participant.host else default_host()
        options = resolve_options(participant, show_model(host, participant.model), "", turns, host)
        return chat_model(participant.model_copy(update={"options": options}), host)

    return connect


def served(shape: Shape):  # noqa: ANN201 - LangGraph's compiled graph type
    return build_graph(shape, default=DialogueContext(shape, connect=on_ollama(shape.turns)))


duet = served(load_shape("duet"))
panel = served(load_shape("panel"))
debate = served(load_shape("debate"))
