"""``python -m ftune ...``: the command line (also what ``accelerate launch -m ftune train`` runs)."""

import sys

from ftune.cli.main import main

sys.exit(main())
