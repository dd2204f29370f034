"""Integration tier: the Ollama-protocol test server, the CLI, the page through AppTest, LangSmith's fake."""
