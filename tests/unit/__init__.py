"""Unit tier: no server of any kind, no subprocess, no network socket; the whole tier runs in seconds."""
