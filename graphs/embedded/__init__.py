"""An Ollama-compatible server embedded in duologue, so dialogues run where no Ollama is installed."""
