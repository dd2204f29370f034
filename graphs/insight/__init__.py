"""Dialogue insight: reading what happened between the speakers of a run."""
