"""Shapes page: each built-in shape's graph and its file, and a check for your own.

The graph has the page's width, not half of it, so a panel's labels are drawn at their own size;
the file wraps its long lines (personas) rather than hiding them.
"""

from __future__ import annotations

import streamlit as st

from graphs import DuologueError, builtin_shape_names, builtin_shape_text, load_shape, parse_shape
from graphs.ui import launching, render

st.title("Shapes")
st.caption(
    "A shape says who takes part, in what order, for how many turns. Each compiles to a LangGraph "
    "graph: the facilitator routes to the speaker due (dashed: a route it may take), each speaker "
    "hands back to it, and the closing synthesis ends the run."
)

for name in builtin_shape_names():
    shape = load_shape(name)
    st.header(name)
    if shape.description:
        st.caption(render.plain(shape.description))
    render.show_graph(shape)
    st.code(builtin_shape_text(name), language="yaml", wrap_lines=True)

st.header("Your own shape file")
upload = st.file_uploader(
    "Check a shape file (YAML)", type=["yaml", "yml"], max_upload_size=1, key="own-shape"
)
if upload is not None:
    text, problem = launching.read_upload(upload, 1_000_000)
    try:
        if problem:
            raise DuologueError(problem)
        shape = parse_shape(text, source=upload.name)
    except DuologueError as exc:
        st.error(render.plain(exc))
    else:
        count = len(shape.participants)
        st.success(render.plain(f"{upload.name} is a valid shape: {shape.name}, {count} participants."))
        render.show_graph(shape)
        st.code(text, language="yaml", wrap_lines=True)
