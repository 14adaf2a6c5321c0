"""The verdict: each judged quantity against the limits of the artifact's precision."""

import numpy as np

from edgeseg.runtimes.backends.base import PredictUnavailable
from edgeseg.runtimes.evaluation.labels import Label
from edgeseg.runtimes.evaluation.validate import VAL_CONF, VAL_IOU, VAL_MAX_DET
from edgeseg.runtimes.pipeline.end2end import end2end_settings
from edgeseg.targets.verify.compare import as_detections, compare_outputs, iou_summary, map_delta, output_diff
from edgeseg.targets.verify.inputs import infer_frames

# One row per precision; a target whose format drifts more by design passes its own overrides.
# logit_margin: unmatched detections scoring below sigmoid(logit(conf) + logit_margin) are borderline
# (at conf 0.25: 0.2595 / 0.2689 / 0.3547). *_p5: 5th percentile over the matched detections.
# map_drop: the largest allowed reference - artifact mAP50-95. Measured on yolo11n-seg trained on
# synthetic sets (benchmarks/verify_judgement.py): fp32 artifacts match to IoU 1.000; legitimate
# int8 ones reach agreement >= 96.9 %, box IoU mean >= 0.96 / p5 >= 0.87, mask IoU mean >= 0.95 /
# p5 >= 0.87 and mAP drops <= 0.02, while a BGR or stretched input falls below the int8 row too.
TOLERANCES = {
    "fp32": {"logit_margin": 0.05, "agreement": 0.98, "box_iou_mean": 0.99, "box_iou_p5": 0.98,
             "mask_iou_mean": 0.99, "mask_iou_p5": 0.95, "map_drop": 0.005},
    "fp16": {"logit_margin": 0.1, "agreement": 0.95, "box_iou_mean": 0.98, "box_iou_p5": 0.9,
             "mask_iou_mean": 0.95, "mask_iou_p5": 0.85, "map_drop": 0.01},
    "bf16": {"logit_margin": 0.25, "agreement": 0.93, "box_iou_mean": 0.96, "box_iou_p5": 0.85,
             "mask_iou_mean": 0.95, "mask_iou_p5": 0.85, "map_drop": 0.01},
    "int8": {"logit_margin": 0.5, "agreement": 0.9, "box_iou_mean": 0.93, "box_iou_p5": 0.8,
             "mask_iou_mean": 0.93, "mask_iou_p5": 0.8, "map_drop": 0.03},
}  # fmt: skip


def _checks(report: dict, limits: dict) -> list[dict]:
    """One ``{"check", "value", "limit", "passed"}`` per judged quantity; a None value (nothing to judge) passes."""
    box, mask, maps = report["box_iou"], report["mask_iou"], report["map"] or {}
    delta = maps.get("delta", {})
    rows = [
        ("agreement", report["agreement"], "agreement", 1),
        ("box IoU mean", box["mean"], "box_iou_mean", 1),
        ("box IoU p5", box["p5"], "box_iou_p5", 1),
        ("mask IoU mean", mask["mean"], "mask_iou_mean", 1),
        ("mask IoU p5", mask["p5"], "mask_iou_p5", 1),
        ("box mAP drop", None if "box" not in delta else 0.0 - delta["box"], "map_drop", -1),
        ("mask mAP drop", None if "mask" not in delta else 0.0 - delta["mask"], "map_drop", -1),
    ]
    checks = [
        {"check": name, "value": value, "limit": limits[key], "at_least": sign > 0,
         "passed": value is None or (value >= limits[key] if sign > 0 else value <= limits[key])}
        for name, value, key, sign in rows
    ]  # fmt: skip
    checks.append({"check": "finite outputs", "value": report["finite"], "limit": True, "at_least": True, "passed": report["finite"]})
    return checks

def _failure(check: dict, report: dict) -> str:
    """The one-line reason of a failed check, naming it."""
    name, value, limit = check["check"], check["value"], check["limit"]
    if name == "finite outputs":
        return "the artifact's outputs are not finite (NaN or inf)"
    if name == "agreement":
        dets = report["detections"]
        return (
            f"detection agreement {value:.1%} < {limit:.0%} ({dets['matched']} matched; unmatched and clear of "
            f"the threshold: {dets['unmatched']['reference']} reference, {dets['unmatched']['artifact']} artifact)"
        )
    if name.endswith("mAP drop"):
        task = name.split()[0]
        maps = report["map"]
        return (
            f"{name} {value:.3f} > {limit:g} (mAP50-95 {maps['reference'][task]:.3f} → {maps['artifact'][task]:.3f} "
            f"on {maps['images']} labelled images)"
        )
    return f"{name} {value:.3f} < {limit:g}"

def verify(
    reference,
    artifact,
    images: list[np.ndarray],
    precision: str,
    imgsz=None,
    tolerance: dict | None = None,
    labels: list[Label] | None = None,
) -> dict:
    """Compare an exported artifact with its reference model on ``images``.

    Args:
        reference: the Runtime of the PyTorch model the artifact was exported from.
        artifact: the Runtime of the exported artifact.
        images: (H, W, 3) uint8 BGR images, any sizes.
        precision: the artifact's precision, a key of TOLERANCES.
        imgsz: the input (height, width); default: the artifact's.
        tolerance: overrides of ``TOLERANCES[precision]`` entries.
        labels: the images' Labels (same order), to compare mAP; None skips that check.

    Returns:
        A JSON-serialisable report: ``precision``, ``images``, ``imgsz``, ``conf`` (the threshold
        used) and ``conf_lowered``, ``borderline_below`` (unmatched detections scoring in
        [conf, this) are not counted), ``detections`` (``reference``, ``artifact``, ``matched``,
        ``compared`` counts; ``unmatched``, ``borderline`` and ``tied`` per side), ``agreement``, ``box_iou`` and
        ``mask_iou`` (``mean``, ``p5`` of the matched detections, None when none matched),
        ``score_change`` (``mean``, ``max`` |score difference| of matched detections), ``map``
        (see ``map_delta``; None without labels), ``finite``, ``max_abs_diff`` (``preds``,
        ``protos``, ``boxes``, ``scores``, ``coefficients``; reported, not judged),
        ``tolerance``, ``checks`` (``check``, ``value``, ``limit``, ``at_least``, ``passed``),
        ``failures`` (one line per failed check, naming it), ``passed``, ``backend`` (the name of
        the backend that ran it) and ``stand_in`` (``Backend.stand_in``: what imitated the device,
        e.g. rknn-toolkit2's simulator, else empty). When the artifact
        cannot run on this machine (``PredictUnavailable``, e.g. CoreML off macOS) only
        ``precision``, ``images``, ``imgsz``, ``skipped`` (``verification skipped: <why>``),
        ``failures`` ([]) and ``passed`` (None).
    """
    shape = artifact.input_shape(imgsz)
    nc = artifact.meta.nc
    limits = {**TOLERANCES[precision], **(tolerance or {})}
    frames = [(None, image) for image in images]
    try:
        batch, infos, art = infer_frames(artifact, frames, shape)
    except PredictUnavailable as exc:
        return {
            "precision": precision,
            "images": len(images),
            "imgsz": list(shape),
            "skipped": f"verification skipped: {exc}",
            "failures": [],
            "passed": None,
        }
    _, _, ref = infer_frames(reference, frames, shape)
    nms, selection = end2end_settings(artifact.meta), artifact.meta.selection
    finite = bool(np.isfinite(art[0]).all() and np.isfinite(art[1]).all())
    diff = output_diff(*(as_detections(ref, art, nc, nms, selection) if nms else (ref, art)), nc, shape)
    art = tuple(np.nan_to_num(a) for a in art)
    conf, lowered, borderline, compared = compare_outputs(ref, art, infos, shape, artifact.names, limits["logit_margin"], nms, selection)
    changes = compared["score_changes"]
    report = {
        "precision": precision,
        "images": len(images),
        "imgsz": list(shape),
        "conf": conf,
        "conf_lowered": lowered,
        "borderline_below": borderline,
        "detections": {key: compared[key] for key in ("reference", "artifact", "matched", "compared", "unmatched", "borderline", "tied")},
        "agreement": compared["agreement"],
        "box_iou": iou_summary(compared["box_ious"]),
        "mask_iou": iou_summary(compared["mask_ious"]),
        "score_change": {"mean": float(changes.mean()) if len(changes) else None, "max": float(changes.max(initial=0.0))},
        "map": None if labels is None else map_delta(
            batch, {"reference": ref, "artifact": art}, labels, nc,
            max(VAL_CONF, nms.get("conf", 0.0)), min(VAL_IOU, nms.get("iou", 1.0)), min(VAL_MAX_DET, nms.get("max_det", VAL_MAX_DET)),
            selection, multi_label=not nms,
        ),  # fmt: skip
        "finite": finite,
        "max_abs_diff": diff,
        "tolerance": limits,
        "backend": artifact.backend.name,
        "stand_in": artifact.backend.stand_in,
    }
    report["checks"] = _checks(report, limits)
    report["failures"] = [_failure(check, report) for check in report["checks"] if not check["passed"]]
    report["passed"] = not report["failures"]
    return report
