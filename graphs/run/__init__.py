"""Holding runs: the runner, resume and fork, tracing, LangSmith and OTel export, LangGraph Server entry."""
