"""The verification report as a text table and as JSON beside the artifact."""

import json
from pathlib import Path

from edgeseg.runtimes.io.files import atomic_write_text
from edgeseg.targets.verify.compare import CONF


def _value(check: dict) -> str:
    """A check's value for the text table: a percentage for agreement, ``-`` for None."""
    value = check["value"]
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.1%}" if check["check"] == "agreement" else f"{value:.4f}"

def _limit(check: dict) -> str:
    """A check's limit for the text table (``>= 95%``, ``<= 0.03``)."""
    if isinstance(check["limit"], bool):
        return ""
    limit = f"{check['limit']:.0%}" if check["check"] == "agreement" else f"{check['limit']:g}"
    return (">= " if check["at_least"] else "<= ") + limit

def format_report(report: dict) -> str:
    """A short text table of a ``verify`` report (its ``skipped`` line for a skipped one)."""
    if report.get("skipped"):
        return report["skipped"]
    dets, diff, maps = report["detections"], report["max_abs_diff"], report["map"]
    h, w = report["imgsz"]
    conf = f"conf {report['conf']:.3g}" + (f" (lowered: few detections at {CONF:g})" if report["conf_lowered"] else "")
    ran = f" in {report['stand_in']}" if report.get("stand_in") else ""
    lines = [
        f"verification ({report['precision']}, {report['images']} images at {h}x{w}, {conf}){ran}: "
        + ("passed" if report["passed"] else "FAILED"),
        f"  {'check':<16}{'value':>10}  {'limit':<10}",
    ]
    lines += [f"  {c['check']:<16}{_value(c):>10}  {_limit(c):<10}{'ok' if c['passed'] else 'FAIL'}" for c in report["checks"]]
    lines.append(
        f"  detections: {dets['reference']} reference, {dets['artifact']} artifact, {dets['matched']} matched of "
        f"{dets['compared']} judged; unmatched {dets['unmatched']['reference']} / {dets['unmatched']['artifact']}, "
        f"borderline (score < {report['borderline_below']:.3g}, not judged) {dets['borderline']['reference']} / {dets['borderline']['artifact']}, "
        f"NMS near-ties (held by the other side before NMS, not judged) {dets['tied']['reference']} / {dets['tied']['artifact']}"
    )
    if maps is not None:
        lines.append(
            f"  mAP50-95: {maps['skipped']}" if "skipped" in maps else
            f"  mAP50-95 on {maps['images']} labelled images: box {maps['reference']['box']:.3f} → {maps['artifact']['box']:.3f}, "
            f"mask {maps['reference']['mask']:.3f} → {maps['artifact']['mask']:.3f}"
        )  # fmt: skip
    lines.append(
        f"  not judged: max |diff| preds {diff['preds']:.2e}, protos {diff['protos']:.2e}; "
        f"matched score change max {report['score_change']['max']:.3g}"
    )
    return "\n".join(lines)

def save_report(report: dict, path: str | Path) -> Path:
    """Write ``report`` as indented JSON to ``path`` (atomically, never through a planted link)."""
    return atomic_write_text(path, json.dumps(report, indent=2) + "\n")
