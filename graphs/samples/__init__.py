"""Sample topics that ship with duologue, for the demo."""
