"""Ultralytics reads edgeseg's artifacts as they are: ONNX, OpenVINO and TFLite, the same detections as edgeseg's runtime.

One run, on the same files:

1. the model: ``--weights``, by default the shipped ``weights/yolo11n-seg-synth320.pt`` (trained
   here at 320), or ``--weights calibrated``: a train-free yolo11n-seg calibrated at 320 to give
   many detections per image (``predict_speed.calibrated_checkpoint``);
2. the artifacts: ``edgeseg export`` to each of ``--targets`` (fp32, static, 320);
3. the images: ``--images`` non-square scenes, side by side and stacked pairs of the
   synthetic val images (640 x 320 and 320 x 640, then cropped to 600 x 280 and 300 x 560);
4. edgeseg: ``edgeseg.runtimes.load(artifact).predict(image, conf=0.25, iou=0.7)``
   (Ultralytics' defaults, given explicitly);
5. Ultralytics: ``YOLO(artifact).predict(image)``, with no other argument, in its own venv
   (``--ultralytics-venv``, built once as in ``compare_ultralytics.py``), through
   ``benchmarks/ultralytics_worker.py detect``: it must find the task, the class names and the
   input size in the artifact itself;
6. on a CPU with bf16, where OpenVINO computes in bf16 unless told otherwise (Ultralytics
   does not tell it), the OpenVINO artifact is also run with the worker's ``--f32``: the same call
   computing in f32, as on CPUs without bf16; the f32 row is the one judged, the bf16 row reported;
7. per artifact: the task and names Ultralytics read, and the detections matched one to one
   (same class, greatest IoU); a pair counts as the same when every box side is within
   ``--px`` (1 px). A detection only one tool reports is allowed only when its score lies within
   ``--margin`` of the 0.25 threshold (the two tools' float rounding differs slightly).

It passes when every artifact passes. Results go to ``benchmarks/results/ultralytics_reads.json``.

    .venv/bin/python benchmarks/ultralytics_reads.py
    .venv/bin/python benchmarks/ultralytics_reads.py --weights calibrated
"""

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from compare_ultralytics import ROOT, WORKER, run_json, ultralytics_python
from report import write_report

RESULTS = ROOT / "benchmarks" / "results" / "ultralytics_reads.json"
CONF, IOU = 0.25, 0.7  # Ultralytics' predict defaults
IMGSZ = 320
WEIGHTS = ROOT / "weights" / "yolo11n-seg-synth320.pt"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(WEIGHTS), help="an edgeseg checkpoint trained at 320, or 'calibrated'")
    parser.add_argument("--targets", nargs="+", default=["onnx", "openvino", "tflite"])
    parser.add_argument("--images", type=int, default=8, help="non-square images")
    parser.add_argument("--px", type=float, default=1.0, help="largest allowed box-side difference, px")
    parser.add_argument("--margin", type=float, default=0.01, help="score margin around the threshold for one-sided detections")
    parser.add_argument("--ultralytics-venv", default=str(ROOT / ".venv-ultralytics"))
    parser.add_argument("--out", default=str(RESULTS))
    return parser.parse_args(argv)


def scenes(n: int, work: Path) -> dict[str, np.ndarray]:
    """``n`` non-square BGR images from the synthetic val split: pairs side by side (wide) and stacked (tall), cropped."""
    from edgeseg.data.synth import synthesize

    data = synthesize(work / "synth", 4, 2 * n, seed=3, progress=False)
    files = sorted((data.parent / "images" / "val").glob("*.png"))
    tiles = [cv2.resize(cv2.imread(str(f)), (320, 320)) for f in files]
    out = {}
    for i in range(n):
        a, b = tiles[2 * i], tiles[2 * i + 1]
        out[f"{i:02d}"] = np.hstack([a, b])[20:300, 20:620] if i % 2 == 0 else np.vstack([a, b])[40:600, 10:310]
    return out


def model_weights(weights: str, work: Path, images: list[np.ndarray]) -> Path:
    """``weights``, or for ``calibrated`` a train-free yolo11n-seg calibrated at 320 on ``images``."""
    if weights != "calibrated":
        return Path(weights)
    from predict_speed import calibrated_checkpoint

    return calibrated_checkpoint(IMGSZ, images, work / "calibrated.pt")


def edgeseg_detections(artifact: Path, images: dict[str, np.ndarray]) -> dict:
    """edgeseg's runtime on ``images``: names, input size and per-image boxes (N, 4) xyxy px, classes and scores."""
    from edgeseg.runtimes import load

    runtime = load(artifact)
    out = []
    for key, image in sorted(images.items()):
        (result,) = runtime.predict(image, conf=CONF, iou=IOU, pipeline=False)
        out.append({"image": key, "boxes": result.boxes.tolist(), "classes": result.classes.tolist(), "scores": result.scores.tolist()})
    return {"names": dict(runtime.meta.names), "imgsz": list(runtime.meta.imgsz), "images": out}


def bf16_cpu() -> bool:
    """True when OpenVINO's CPU plugin computes in bf16 by default here (a CPU with bf16 support)."""
    from edgeseg.runtimes.backends.openvino import shared_core

    return "BF16" in shared_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def match(ours: dict, theirs: dict, margin: float) -> dict:
    """One image's detections paired one to one (same class, greatest IoU first).

    Returns ``pairs``, the largest box-side difference over pairs (px), and the detections
    one tool alone reports, split into borderline (score within ``margin`` of CONF) and not.
    """
    a, b = np.array(ours["boxes"]).reshape(-1, 4), np.array(theirs["boxes"]).reshape(-1, 4)
    ca, cb = np.array(ours["classes"], int), np.array(theirs["classes"], int)
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    iou = inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)
    iou[ca[:, None] != cb[None, :]] = 0
    pairs, used_a, used_b = [], set(), set()
    for i, j in zip(*np.unravel_index(np.argsort(-iou, axis=None), iou.shape)):
        if iou[i, j] <= 0.5 or i in used_a or j in used_b:
            continue
        pairs.append((int(i), int(j)))
        used_a.add(i)
        used_b.add(j)
    diff = max((float(np.abs(a[i] - b[j]).max()) for i, j in pairs), default=0.0)
    alone = [ours["scores"][i] for i in range(len(a)) if i not in used_a] + [theirs["scores"][j] for j in range(len(b)) if j not in used_b]
    borderline = [s for s in alone if abs(s - CONF) <= margin]
    return {"pairs": len(pairs), "max_px": diff, "borderline": len(borderline), "unmatched": len(alone) - len(borderline)}


def compare(ours: dict, theirs: dict, px: float, margin: float) -> dict:
    """One artifact: what Ultralytics read (task, names, input size) and the detections of both tools, matched."""
    per_image = [match(o, t, margin) for o, t in zip(ours["images"], theirs["images"])]
    row = {
        "task": theirs["task"],
        "names_equal": {int(k): v for k, v in theirs["names"].items()} == {int(k): v for k, v in ours["names"].items()},
        "ultralytics_imgsz": theirs["imgsz"],
        "edgeseg_imgsz": ours["imgsz"],
        "detections": sum(len(o["boxes"]) for o in ours["images"]),
        "pairs": sum(m["pairs"] for m in per_image),
        "max_box_px": max((m["max_px"] for m in per_image), default=0.0),
        "borderline": sum(m["borderline"] for m in per_image),
        "unmatched": sum(m["unmatched"] for m in per_image),
        "masks": sum(t["masks"] for t in theirs["images"]),
        "ultralytics_detections": sum(len(t["boxes"]) for t in theirs["images"]),
    }
    row["passed"] = bool(
        row["task"] == "segment" and row["names_equal"] and row["ultralytics_imgsz"] == row["edgeseg_imgsz"]
        and row["pairs"] > 0 and row["unmatched"] == 0 and row["max_box_px"] <= px
        and row["masks"] == row["ultralytics_detections"]
    )  # fmt: skip
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    from edgeseg.targets import export

    python = ultralytics_python(Path(args.ultralytics_venv))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images = scenes(args.images, work)
        np.savez(work / "images.npz", **images)
        weights = model_weights(args.weights, work, list(images.values()))
        for target in args.targets:
            (work / target).mkdir()
            artifact = export(weights, target=target, imgsz=IMGSZ, out=work / target, verify=False).path
            ours = edgeseg_detections(artifact, images)
            command = [python, WORKER, "detect", "--model", artifact, "--images", work / "images.npz"]
            theirs = run_json(command, ROOT)
            rows[target] = compare(ours, theirs, args.px, args.margin)
            if target == "openvino" and bf16_cpu():
                rows[target]["bf16"] = True
                rows["openvino f32"] = compare(ours, run_json([*command, "--f32"], ROOT), args.px, args.margin)
    passes = {t: row for t, row in rows.items() if not row.get("bf16")}
    report = {"weights": args.weights, "imgsz": IMGSZ, "images": args.images, "px": args.px, "targets": rows}
    write_report(report, args.out)
    print(f"{'target':13s} {'task':8s} names  imgsz        pairs  max px  borderline  unmatched  passed")
    for target, row in rows.items():
        print(
            f"{target:13s} {row['task']:8s} {'same' if row['names_equal'] else 'DIFF':5s}  {str(row['ultralytics_imgsz']):11s}  "
            f"{row['pairs']:5d}  {row['max_box_px']:6.3f}  {row['borderline']:10d}  {row['unmatched']:9d}  {row['passed']}"
        )
    if any(row.get("bf16") for row in rows.values()):
        print("openvino: this CPU has bf16, OpenVINO's CPU default there, which Ultralytics keeps; 'openvino f32' is the same call computing in f32")
    return 0 if passes and all(row["passed"] for row in passes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
