"""`python -m graphs`: the `duologue` command."""

import sys

from graphs.commands.cli import main

sys.exit(main())
