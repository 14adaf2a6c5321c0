"""What the training benchmarks share: the machine line and writing their JSON result."""

import json
import os
import platform
from pathlib import Path

import edgeseg


def machine() -> str:
    """``"<cpu>, <n> cores"`` of this machine."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def write_report(report: dict, out: str | Path) -> None:
    """Add the machine and edgeseg version to ``report``, write it as JSON to ``out`` and print it."""
    report = {**report, "machine": machine(), "edgeseg": edgeseg.__version__}
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
