"""Screenshots the browser tests keep in their temporary folders, and also, for a reader who
asks with $DUOLOGUE_SHOTS_DIR, in one folder where they can be looked at together."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def keep(path: Path, name: str) -> None:
    """Copy the screenshot at `path` to $DUOLOGUE_SHOTS_DIR/`name`, when that is set."""
    folder = os.environ.get("DUOLOGUE_SHOTS_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / name)
