"""Participants on servers speaking the OpenAI chat API (llama-server, vLLM, LM Studio, SGLang)."""
