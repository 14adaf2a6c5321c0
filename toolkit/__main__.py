"""``python -m edgeseg`` runs the CLI (and is what ``torchrun -m edgeseg`` launches)."""

import sys

from edgeseg.cli import main

sys.exit(main())
