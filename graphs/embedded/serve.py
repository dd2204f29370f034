"""Start the embedded server: SmolLM2 (llama_backend.py) behind Ollama's API (protocol.py).

The CLI's `--embedded` runs use start_embedded(); `duologue serve` uses serve_forever().
Both build the backend first, so a missing extra fails with EmbeddedUnavailable before any
port is bound.
"""

from __future__ import annotations

from contextlib import suppress

from graphs.embedded.llama_backend import SERVED, LlamaBackend
from graphs.embedded.protocol import OllamaServer


class _EmbeddedServer(OllamaServer):
    """Its stop() also frees the models at once rather than when keep_alive runs out."""

    backend: LlamaBackend

    def stop(self) -> None:
        super().stop()
        self.backend.close()


def start_embedded(port: int = 0, host: str = "127.0.0.1") -> OllamaServer:
    """A started server in a background thread; port 0 picks a free port (see `.url`)."""
    return _EmbeddedServer(LlamaBackend(), host=host, port=port).start()


def serve_forever(port: int = 11434, host: str = "127.0.0.1") -> None:
    """Serve in the foreground until Ctrl-C, then unload the models and return."""
    backend = LlamaBackend()
    server = OllamaServer(backend, host=host, port=port)
    print(
        f"duologue embedded server on {server.url} serving {', '.join(SERVED)} (Ctrl-C to stop)",
        flush=True,
    )
    try:
        with suppress(KeyboardInterrupt):
            server.serve_forever()
    finally:
        backend.close()


def embedded_models() -> list[str]:
    """The names the embedded server answers to; cheap, and works without the extra installed."""
    return list(SERVED)
