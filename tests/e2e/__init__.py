"""End-to-end tier: the embedded real model, a real browser (Chromium), a real PostgreSQL server."""
