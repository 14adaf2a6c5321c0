"""What the training benchmarks share: the machine line and writing their JSON result."""

import json
import os
import time
import platform
from pathlib import Path

import edgeseg


def machine() -> str:
    """``"<cpu>, <n> cores"`` of this machine."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def save_report(report: dict, out: str | Path) -> dict:
    """Add the machine, its CPU's bf16 feature (``cpu_bf16``: e.g. ``avx512_bf16``, None without) and edgeseg's version to
    ``report``, write it as JSON to ``out`` (numpy floats as floats) and return it."""
    from edgeseg.runtimes.cpus import native_bf16

    report = {**report, "machine": machine(), "cpu_bf16": native_bf16(), "edgeseg": edgeseg.__version__}
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=float) + "\n")
    return report


def write_report(report: dict, out: str | Path) -> None:
    """``save_report``, then print the report."""
    print(json.dumps(save_report(report, out), indent=2))


def save_judgement(fields: dict, acceptance: dict, rows: list[dict], started: float, out: str | Path) -> None:
    """Save a verification benchmark's result: ``fields``, its ``acceptance`` checks, its ``rows`` and the
    seconds since ``started`` (``time.perf_counter()``), via ``save_report``; then print the acceptance."""
    save_report({**fields, "acceptance": acceptance, "rows": rows, "seconds": round(time.perf_counter() - started)}, out)
    print(json.dumps(acceptance, indent=2))
