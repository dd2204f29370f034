"""The Streamlit page (`duologue ui`). Installed as graphs.ui; calls only `from graphs import ...`."""
