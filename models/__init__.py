"""Model architecture YAMLs shipped with edgeseg (package data)."""

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent


def available() -> list[str]:
    """Names of the bundled architecture files, e.g. ``["yolo11-seg.yaml"]``."""
    return sorted(p.name for p in MODELS_DIR.glob("*.yaml"))
