"""Ollama: REST calls, the pinned chat connector, GPU residency; the only code that talks to Ollama."""
