"""Export verification: the artifact and the PyTorch model on the same images through the same pipeline.

Both models see the same letterboxed batch (``letterbox`` → ``to_input_tensor``), run through
their ``Backend.infer`` and the runtime's ``postprocess``: exactly the steps ``Runtime.predict``
takes, so any drift is the backend's. Three numbers are checked against a tolerance per precision:

* max abs output difference, on outputs put on a 0–1 scale so that one limit fits all of them:
  the box rows of ``preds`` (cx, cy, w, h in input pixels) are divided by the input
  width/height, class scores (0–1) are compared as they are, mask coefficients and ``protos``
  are divided by the reference's largest absolute coefficient / prototype value;
* detection agreement: detections matched one to one (same class, box IoU ≥ 0.9, greedy by
  IoU) divided by ``max(reference count, artifact count)``, summed over the images;
* mean mask IoU of the matched detections, at the source resolution.
"""

import json
from pathlib import Path

import numpy as np

from edgeseg.data.labels import read_image
from edgeseg.data.synth import render_sample, sample_rng
from edgeseg.data.yaml_config import img_paths, load_data_config
from edgeseg.errors import EdgesegError
from edgeseg.metrics import box_iou
from edgeseg.runtimes.backends.base import PredictUnavailable
from edgeseg.runtimes.postprocess import non_max_suppression, postprocess
from edgeseg.runtimes.preprocess import letterbox, to_input_tensor

# One row per precision; a target whose format drifts more by design passes its own overrides.
TOLERANCES = {
    "fp32": {"max_abs_diff": 1e-3, "agreement": 0.99, "mask_iou": 0.98},
    "fp16": {"max_abs_diff": 1e-2, "agreement": 0.95, "mask_iou": 0.95},
    "int8": {"max_abs_diff": 0.1, "agreement": 0.80, "mask_iou": 0.85},
}
CONF = 0.25  # detection threshold for the agreement
MIN_DETECTIONS = 5  # below this many reference detections at CONF, the threshold is lowered ...
TOP_K = 50  # ... to keep the reference's TOP_K best detections (found by NMS at LOWEST_CONF)
LOWEST_CONF = 0.0  # every anchor: an untrained model scores ~1e-4
MATCH_IOU = 0.9  # box IoU for two detections of the same class to count as the same object
MAX_IMAGES = 16  # dataset val images used (the first, sorted by path)
SYNTHETIC_IMAGES = 8  # images drawn when no dataset is available
CHUNK = 8  # images per inference call


def synthetic_images(n: int = SYNTHETIC_IMAGES, seed: int = 0) -> list[np.ndarray]:
    """``n`` synthetic (H, W, 3) uint8 BGR images of 320–480 x 240–400 pixels (``render_sample``)."""
    return [render_sample(sample_rng(seed, "val", i))[0] for i in range(n)]


def dataset_images(data_yaml: str | Path, n: int = MAX_IMAGES) -> list[np.ndarray]:
    """The first ``n`` readable val images of a data YAML, (H, W, 3) uint8 BGR.

    Raises:
        EdgesegError: the YAML or its val split is unusable, or no val image is readable.
    """
    cfg = load_data_config(data_yaml)
    images = []
    for path in img_paths(cfg["val"], cfg["path"]):
        image = read_image(path)
        if image is not None:
            images.append(image)
        if len(images) == n:
            break
    if not images:
        raise EdgesegError(f"{cfg['yaml_file']}: no readable val images to verify the export on")
    return images


def verification_images(data: str | Path | None, checkpoint: dict | None) -> tuple[list[np.ndarray], str]:
    """The images an export is verified on, and where they came from.

    ``data`` when given, else the data YAML named by the checkpoint's ``train_args`` when that
    file exists (a relative path is taken from the current folder, as training did), else
    ``synthetic_images()``.
    """
    if data is None and checkpoint:
        trained_on = (checkpoint.get("train_args") or {}).get("data")
        if trained_on and Path(trained_on).is_file():
            data = trained_on
    if data is None:
        return synthetic_images(), f"{SYNTHETIC_IMAGES} synthetic images"
    images = dataset_images(data)
    return images, f"{len(images)} val images of {data}"


def _infer(runtime, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``runtime.backend.infer`` over (N, 3, H, W) in chunks of CHUNK images → (preds, protos)."""
    outputs = [runtime.backend.infer(batch[i : i + CHUNK]) for i in range(0, len(batch), CHUNK)]
    return np.concatenate([o[0] for o in outputs]), np.concatenate([o[1] for o in outputs])


def _preds_scale(preds: np.ndarray, nc: int, shape: tuple[int, int]) -> np.ndarray:
    """(1, 4 + nc + nm, 1) divisors that put reference ``preds`` (B, 4 + nc + nm, A) on a 0–1 scale.

    cx, w: the input width; cy, h: its height; scores: 1; mask coefficients: their largest magnitude.
    """
    scale = np.ones((1, preds.shape[1], 1), np.float32)
    scale[0, [0, 2], 0] = shape[1]
    scale[0, [1, 3], 0] = shape[0]
    scale[0, 4 + nc :, 0] = max(float(np.abs(preds[:, 4 + nc :]).max(initial=0.0)), 1e-6)
    return scale


def _match(a, b) -> list[tuple[int, int]]:
    """One-to-one (i, j) pairs of Results ``a`` and ``b`` detections: same class, box IoU ≥ MATCH_IOU, best IoU first."""
    iou = box_iou(a.boxes, b.boxes)
    iou[a.classes[:, None] != b.classes[None, :]] = 0
    pairs, used_a, used_b = [], set(), set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] < MATCH_IOU:
            break
        if i not in used_a and j not in used_b:
            pairs.append((int(i), int(j)))
            used_a.add(i)
            used_b.add(j)
    return pairs


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two (H, W) bool masks; 1.0 when both are empty."""
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def _lowered_conf(preds: np.ndarray, nc: int) -> float:
    """A threshold that keeps the TOP_K best detections of (B, 4 + nc + nm, A) ``preds`` (or all of them).

    It lies halfway between the TOP_K-th and the next score (after NMS at LOWEST_CONF), so no
    reference detection sits on it.
    """
    scores = np.sort(np.concatenate([non_max_suppression(p, nc, conf=LOWEST_CONF)[1] for p in preds]))[::-1]
    if len(scores) == 0:
        return CONF
    k = min(TOP_K, len(scores)) - 1
    below = scores[k + 1] if k + 1 < len(scores) else LOWEST_CONF
    return float((scores[k] + below) / 2)


def verify(reference, artifact, images: list[np.ndarray], precision: str, imgsz=None, tolerance: dict | None = None) -> dict:
    """Compare an exported artifact with its reference model on ``images``.

    Args:
        reference: the Runtime of the PyTorch model the artifact was exported from.
        artifact: the Runtime of the exported artifact.
        images: (H, W, 3) uint8 BGR images, any sizes.
        precision: the artifact's precision, a key of TOLERANCES.
        imgsz: the input (height, width); default: the artifact's.
        tolerance: overrides of ``TOLERANCES[precision]`` entries.

    Returns:
        A JSON-serialisable report: ``precision``, ``images``, ``imgsz``, ``conf`` (the threshold
        used) and ``conf_lowered``, ``max_abs_diff`` (``preds``, ``protos`` and the parts of preds:
        ``boxes``, ``scores``, ``coefficients``; see the module docstring), ``detections``
        (``reference``, ``artifact``, ``matched`` counts), ``agreement``, ``mask_iou`` (1.0 when
        nothing was matched: ``agreement`` covers that case), ``tolerance``, ``failures`` (one
        line per failed check) and ``passed``. When the artifact cannot run on this machine
        (``PredictUnavailable``, e.g. CoreML off macOS) only ``precision``, ``images``, ``imgsz``,
        ``skipped`` (``verification skipped: <why>``), ``failures`` ([]) and ``passed`` (None).
    """
    shape = artifact.input_shape(imgsz)
    nc, names = artifact.meta.nc, artifact.names
    limits = {**TOLERANCES[precision], **(tolerance or {})}
    boxed = [letterbox(image, shape) for image in images]
    infos = [b[1] for b in boxed]
    batch = to_input_tensor([b[0] for b in boxed])
    try:
        art_preds, art_protos = _infer(artifact, batch)
    except PredictUnavailable as exc:
        return {
            "precision": precision,
            "images": len(images),
            "imgsz": list(shape),
            "skipped": f"verification skipped: {exc}",
            "failures": [],
            "passed": None,
        }
    ref_preds, ref_protos = _infer(reference, batch)
    preds_diff = np.abs(ref_preds - art_preds) / _preds_scale(ref_preds, nc, shape)
    protos_scale = max(float(np.abs(ref_protos).max(initial=0.0)), 1e-6)
    diff = {
        "preds": float(preds_diff.max()),
        "protos": float(np.abs(ref_protos - art_protos).max() / protos_scale),
        "boxes": float(preds_diff[:, :4].max()),
        "scores": float(preds_diff[:, 4 : 4 + nc].max()),
        "coefficients": float(preds_diff[:, 4 + nc :].max()),
    }
    conf = CONF
    ref_results = postprocess(ref_preds, ref_protos, infos, shape, nc=nc, conf=conf, names=names)
    if sum(map(len, ref_results)) < MIN_DETECTIONS:
        conf = _lowered_conf(ref_preds, nc)
        ref_results = postprocess(ref_preds, ref_protos, infos, shape, nc=nc, conf=conf, names=names)
    art_results = postprocess(art_preds, art_protos, infos, shape, nc=nc, conf=conf, names=names)
    matched, compared, mask_ious = 0, 0, []
    for a, b in zip(ref_results, art_results):
        pairs = _match(a, b)
        matched += len(pairs)
        compared += max(len(a), len(b))
        mask_ious += [_mask_iou(a.masks[i], b.masks[j]) for i, j in pairs]
    report = {
        "precision": precision,
        "images": len(images),
        "imgsz": list(shape),
        "conf": conf,
        "conf_lowered": conf != CONF,
        "max_abs_diff": diff,
        "detections": {
            "reference": sum(map(len, ref_results)),
            "artifact": sum(map(len, art_results)),
            "matched": matched,
        },
        "agreement": matched / compared if compared else 1.0,
        "mask_iou": float(np.mean(mask_ious)) if mask_ious else 1.0,
        "tolerance": limits,
    }
    failures = []
    worst = max(diff["preds"], diff["protos"])
    if worst > limits["max_abs_diff"]:
        failures.append(f"max abs diff {worst:.3g} > {limits['max_abs_diff']:g}")
    if report["agreement"] < limits["agreement"]:
        failures.append(f"detection agreement {report['agreement']:.1%} < {limits['agreement']:.0%}")
    if report["mask_iou"] < limits["mask_iou"]:
        failures.append(f"mask IoU {report['mask_iou']:.3f} < {limits['mask_iou']:g}")
    report["failures"] = failures
    report["passed"] = not failures
    return report


def format_report(report: dict) -> str:
    """A short text table of a ``verify`` report (its ``skipped`` line for a skipped one)."""
    if report.get("skipped"):
        return report["skipped"]
    limits, diff, dets = report["tolerance"], report["max_abs_diff"], report["detections"]
    h, w = report["imgsz"]
    conf = f"conf {report['conf']:.3g}" + (f" (lowered: few detections at {CONF:g})" if report["conf_lowered"] else "")
    rows = [
        ("max |diff| preds", f"{diff['preds']:.2e}", f"<= {limits['max_abs_diff']:g}", diff["preds"] <= limits["max_abs_diff"]),
        ("max |diff| protos", f"{diff['protos']:.2e}", f"<= {limits['max_abs_diff']:g}", diff["protos"] <= limits["max_abs_diff"]),
        ("agreement", f"{report['agreement']:.1%}", f">= {limits['agreement']:.0%}", report["agreement"] >= limits["agreement"]),
        ("mask IoU", f"{report['mask_iou']:.4f}", f">= {limits['mask_iou']:g}", report["mask_iou"] >= limits["mask_iou"]),
    ]
    lines = [
        f"verification ({report['precision']}, {report['images']} images at {h}x{w}, {conf}): "
        + ("passed" if report["passed"] else "FAILED"),
        f"  {'check':<18}{'value':>10}  {'limit':<10}",
    ]
    lines += [f"  {name:<18}{value:>10}  {limit:<10}{'ok' if ok else 'FAIL'}" for name, value, limit, ok in rows]
    lines.append(f"  detections: {dets['reference']} reference, {dets['artifact']} artifact, {dets['matched']} matched")
    return "\n".join(lines)


def save_report(report: dict, path: str | Path) -> Path:
    """Write ``report`` as indented JSON to ``path``."""
    path = Path(path)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
