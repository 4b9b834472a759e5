"""``python -m anyshot`` runs the command line."""

import sys

from anyshot.cli import main

sys.exit(main())
