"""Holding runs: the runner, resume and fork, tracing, LangSmith export, the LangGraph Server entry."""
