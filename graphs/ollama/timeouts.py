"""How long duologue waits on an Ollama server, in seconds: the one home of these numbers.

A module of constants only, so the CLI can name the defaults in its help without importing a client.
"""

TIMEOUT_S = 300.0
"""How long a turn may wait for the server's next bytes (`--timeout`): for its first token, then
between two streamed chunks. A 32B model (20 GB) loading from a disk that reads 100 MB/s, then
reading a long prompt partly on the CPU, sends nothing for about four minutes; once it speaks,
chunks come within seconds even at 1 tok/s, so a longer silence is a hung server."""

CONNECT_TIMEOUT_S = 30.0
"""A server that is up accepts a connection at once; one that does not is down, or not there."""

REQUEST_TIMEOUT_S = 600.0
"""A whole answer sent at once (stream false): a turn on a CPU-bound model can take ten minutes
(the reference's took 564 s)."""

LOAD_TIMEOUT_S = 600.0
"""Loading 20 GB from a slow disk takes minutes."""
