"""Front ends on the terminal: the `duologue` command, doctor and bench."""
