"""Run records: their schema, the run store (the only writer of runs/), checkpoints, transcript, tables."""
