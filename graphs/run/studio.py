"""The built-in shapes' graphs for `langgraph dev` / LangGraph Server (see langgraph.json).

Compiled without a checkpointer, since the server brings its own; without a context
each participant's ChatOllama is built from the shape, on $OLLAMA_HOST.
"""

from graphs.engine.build import build_graph
from graphs.engine.spec import load_shape

duet = build_graph(load_shape("duet"))
panel = build_graph(load_shape("panel"))
debate = build_graph(load_shape("debate"))
