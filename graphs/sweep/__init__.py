"""Sweeps: one shape over model assignments, topics and seeds, on a pool of hosts (issue 18)."""
