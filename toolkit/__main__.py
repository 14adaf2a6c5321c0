"""``python -m edgeseg`` runs the CLI (and is what ``torchrun -m edgeseg`` launches)."""

from edgeseg.cli import main

main()
