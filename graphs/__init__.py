"""duologue: dialogues between local language models."""
