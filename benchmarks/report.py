"""What the training benchmarks share: the machine line and writing their JSON result."""

import json
import os
import platform
from pathlib import Path

import edgeseg


def machine() -> str:
    """``"<cpu>, <n> cores"`` of this machine."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def save_report(report: dict, out: str | Path) -> dict:
    """Add the machine and edgeseg version to ``report``, write it as JSON to ``out`` (numpy floats as floats) and return it."""
    report = {**report, "machine": machine(), "edgeseg": edgeseg.__version__}
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=float) + "\n")
    return report


def write_report(report: dict, out: str | Path) -> None:
    """``save_report``, then print the report."""
    print(json.dumps(save_report(report, out), indent=2))
