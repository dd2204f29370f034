"""The dialogue engine: shapes, schedule, state, relay, nodes and wiring. No I/O."""
