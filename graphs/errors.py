"""Errors a user can act on: each carries one line saying what was wrong and what to do."""


class DuologueError(Exception):
    """A user-facing failure; the CLI prints its message on one line and exits non-zero."""

    exit_code = 2


class ShapeError(DuologueError):
    """A shape file or a --model/--set override does not describe a valid dialogue."""


class PromptError(DuologueError):
    """A framing template is missing, or uses or lacks variables."""


class OllamaError(DuologueError):
    """The Ollama server could not serve a participant: unreachable, model missing, fault."""


class RunNotFound(DuologueError):
    """A run id that names no run in the runs folder."""


class RunFailed(DuologueError):
    """The dialogue stopped before its last turn; finished turns are on disk."""

    exit_code = 1


class RunInterrupted(DuologueError):
    """Stopped on request (Ctrl-C, SIGTERM, the page's Stop button); finished turns are kept."""

    exit_code = 130
    recorded = True
    """False when the run's records could not be told it stopped; the message then says what."""


class RunBusy(DuologueError):
    """Another process is driving this run right now."""


class OpenAIServerError(DuologueError):
    """An OpenAI-compatible server could not serve a participant: unreachable, model missing,
    its API key unset."""
