"""What names mean to an Ollama server: model identity, and the embedded server's mark.

Both sides of the protocol use these, duologue's clients and its own servers, so the
rules live once, below both.
"""

from __future__ import annotations

EMBEDDED_MARK = "+embedded"
"""In the version of duologue's embedded server, which is CPU-only by design: nothing to place."""


def model_key(name: str) -> str:
    """The name Ollama files a model under: a bare name means its ':latest' tag."""
    return name if ":" in name else f"{name}:latest"


def same_model(a: str, b: str) -> bool:
    """Ollama treats 'name' and 'name:latest' as one model."""
    return model_key(a) == model_key(b)


def is_embedded(version: str) -> bool:
    return EMBEDDED_MARK in version
