"""Predict speed of exported artifacts through ``edgeseg.runtimes``: per-image stage times, detections, memory, cold start.

For every (artifact kind in ARTIFACTS) x (--imgsz) the model is exported (and verified), then
timed in a fresh process that imports only ``edgeseg.runtimes`` (never torch), as on a device:

* cold start: process start → ``import edgeseg.runtimes`` → ``load`` → first result on an image
  file, wall time and the peak RSS at that point;
* warm: after --warmup calls, --runs calls of ``Runtime.predict`` on in-memory synthetic images
  (``render_sample``, 320–480 x 240–400): medians of the pre / infer / post times the runtime
  reports and of the end-to-end wall time per image, mean detections per image, peak RSS.

The model: --model (a trained checkpoint, e.g. runs/bench/train_quality/weights/best.pt), or by
default a train-free yolo11n-seg whose BatchNorm statistics are fitted to the benchmark images
and whose class logits are standardised (the trick of tests/runtimes/test_runtime.py), centred so that
the median image gets ~20 detections (see ``logit_shift``): post-processing is timed on a
realistic load.

    python benchmarks/predict_speed.py
    python benchmarks/predict_speed.py --model runs/bench/train_quality/weights/best.pt --imgsz 320
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from edgeseg.benchmark import peak_rss_mb

RESULTS = Path(__file__).parent / "results" / "predict_speed.json"
# One row per artifact kind to time; later targets add theirs (target, precision, export options).
ARTIFACTS = [
    {"target": "onnx", "precision": "fp32", "options": {}},
    {"target": "onnx", "precision": "fp32", "options": {"end2end": True}},  # NMS in the graph, floor conf 0.001 (val's)
    {"target": "onnx", "precision": "fp32", "options": {"end2end": True, "conf": 0.25}},  # ... floor conf 0.25 (predict's)
    {"target": "openvino", "precision": "fp32", "options": {}},
    {"target": "openvino", "precision": "fp16", "options": {}},
    {"target": "openvino", "precision": "int8", "options": {"calib": 100}},  # calibration images: the model's train_args data
    {"target": "tflite", "precision": "fp32", "options": {}},
    {"target": "tflite", "precision": "fp16", "options": {}},
    {"target": "tflite", "precision": "int8", "options": {"calib": 100}},
]


def logit_shift(imgsz: int) -> float:
    """The offset of the train-free model's standardised class logits at ``imgsz``.

    The median benchmark image then has ~20 detections at conf 0.25 (measured: 19 at 320, 24 at
    640), though per image the count ranges from 0 to 300: random weights see some images as all
    foreground. Larger inputs have more anchors, so the offset falls by 2 per doubling of the size.
    """
    return -3.5 - 2 * float(np.log2(imgsz / 320))


def benchmark_images(n: int) -> list[np.ndarray]:
    """``n`` synthetic (H, W, 3) uint8 BGR images (seed 1 of the synthetic val split)."""
    from edgeseg.data.synth import render_sample, sample_rng

    return [render_sample(sample_rng(1, "val", i))[0] for i in range(n)]


def calibrated_checkpoint(imgsz: int, images: list[np.ndarray], path: Path, shift: float = 0.0) -> Path:
    """Save a train-free yolo11n-seg with realistic detection counts on ``images`` at ``imgsz``.

    ``shift`` is added to ``logit_shift(imgsz)``: negative for fewer detections per image.
    """
    import torch

    import edgeseg
    from edgeseg.data.synth import CLASS_NAMES
    from edgeseg.runtimes.pipeline.preprocess import letterbox, to_input_tensor

    torch.manual_seed(0)
    model = edgeseg.Model("yolo11n-seg.yaml", names=list(CLASS_NAMES))
    model.imgsz = imgsz
    for module in model.net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    logits = []
    hooks = [b[-1].register_forward_hook(lambda m, i, out: logits.append(out)) for b in model.net.head.cv3]
    model.net.train()
    with torch.no_grad():
        model.net(torch.from_numpy(to_input_tensor([letterbox(im, (imgsz, imgsz))[0] for im in images])))
    model.net.eval()
    for hook, branch, out in zip(hooks, model.net.head.cv3, logits):
        hook.remove()
        mean, std = out.mean((0, 2, 3)), out.std((0, 2, 3))
        branch[-1].weight.data /= std[:, None, None, None]
        branch[-1].bias.data[:] = (branch[-1].bias.data - mean) / std + logit_shift(imgsz) + shift
    return model.save(path)


def worker(artifact: str, image_file: str, spawned: float, runs: int, warmup: int, n_images: int) -> None:
    """Time one artifact in this (fresh) process and print one JSON line. Imports only edgeseg.runtimes."""
    import edgeseg.runtimes

    runtime = edgeseg.runtimes.load(artifact)
    next(runtime.predict(image_file))
    cold_s = time.time() - spawned
    cold_rss = peak_rss_mb()
    images = benchmark_images(n_images)
    stages = {"preprocess": [], "inference": [], "postprocess": [], "end_to_end": []}
    detections = []
    for i in range(warmup + runs):
        image = images[i % len(images)]
        start = time.perf_counter()
        result = next(runtime.predict(image))
        elapsed = (time.perf_counter() - start) * 1000
        if i >= warmup:
            for key in ("preprocess", "inference", "postprocess"):
                stages[key].append(result.speed[key])
            stages["end_to_end"].append(elapsed)
            detections.append(len(result))
    print(
        json.dumps(
            {
                "ms": {key: float(np.median(values)) for key, values in stages.items()},
                "detections_per_image": float(np.mean(detections)),
                "median_detections_per_image": float(np.median(detections)),
                "peak_rss_mb": peak_rss_mb(),
                "cold_start_s": cold_s,
                "cold_start_rss_mb": cold_rss,
                "torch_imported": "torch" in sys.modules,
            }
        )
    )


def time_artifact(path: Path, image_file: Path, args) -> dict:
    """Run ``worker`` on ``path`` in a fresh interpreter and return its measurements."""
    spawned = time.time()
    command = [
        sys.executable,
        __file__,
        "--worker",
        str(path),
        "--image-file",
        str(image_file),
        "--spawned",
        repr(spawned),
        "--runs",
        str(args.runs),
        "--warmup",
        str(args.warmup),
        "--images",
        str(args.images),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    """The rows as a fixed-width text table."""
    header = f"{'artifact':<24}{'imgsz':>6}{'pre':>7}{'infer':>8}{'post':>7}{'e2e':>8}{'det/img':>9}{'median':>7}{'RSS MB':>8}{'cold s':>8}{'cold MB':>9}"
    lines = [header, "-" * len(header)]
    for r in rows:
        ms = r["ms"]
        lines.append(
            f"{r['artifact']:<24}{r['imgsz']:>6}{ms['preprocess']:>7.1f}{ms['inference']:>8.1f}{ms['postprocess']:>7.1f}"
            f"{ms['end_to_end']:>8.1f}{r['detections_per_image']:>9.1f}{r['median_detections_per_image']:>7.0f}{r['peak_rss_mb']:>8.0f}"
            f"{r['cold_start_s']:>8.2f}{r['cold_start_rss_mb']:>9.0f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a trained .pt checkpoint (default: a calibrated train-free yolo11n-seg)")
    parser.add_argument("--imgsz", type=int, nargs="+", default=[320, 640], help="square export sizes")
    parser.add_argument("--targets", nargs="+", default=None, help="time only these targets (default: every row of ARTIFACTS)")
    parser.add_argument("--runs", type=int, default=50, help="timed predict calls per artifact")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first")
    parser.add_argument("--images", type=int, default=16, help="distinct synthetic images, cycled")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--image-file", help=argparse.SUPPRESS)
    parser.add_argument("--spawned", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.image_file, args.spawned, args.runs, args.warmup, args.images)
        return

    import cv2

    from edgeseg.runtimes.errors import EdgesegError
    from edgeseg.targets import export

    images = benchmark_images(args.images)
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        image_file = tmp / "first.png"
        cv2.imwrite(str(image_file), images[0])
        for imgsz in args.imgsz:
            source = Path(args.model) if args.model else calibrated_checkpoint(imgsz, images, tmp / f"yolo11n-seg-{imgsz}.pt")
            for kind in ARTIFACTS:
                if args.targets and kind["target"] not in args.targets:
                    continue
                name = f"{kind['target']} {kind['precision']}" + (
                    f" e2e {kind['options'].get('conf', 0.001):g}" if kind["options"].get("end2end") else ""
                )
                out = tmp / f"{name.replace(' ', '-')}-{imgsz}"
                out.mkdir()
                try:
                    artifact = export(source, target=kind["target"], precision=kind["precision"], imgsz=imgsz, out=out, **kind["options"])
                except EdgesegError as exc:  # e.g. the train-free model's fp16 drift fails verification: a row, not a crash
                    skipped.append({"artifact": name, "imgsz": imgsz, "skipped": str(exc)})
                    print(f"{name:<24}{imgsz:>6}  skipped: {exc}", flush=True)
                    continue
                measured = time_artifact(artifact.path, image_file, args)
                rows.append(
                    {
                        "artifact": name,
                        "imgsz": imgsz,
                        "size_mb": artifact.size_mb,
                        "verification": {k: artifact.report[k] for k in ("max_abs_diff", "agreement", "mask_iou")},
                        **measured,
                    }
                )
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    load_average = os.getloadavg()
    report = {
        "model": args.model or "yolo11n-seg, train-free (BatchNorm fitted to the images, logits standardised, see logit_shift)",
        "images": f"{args.images} synthetic images (render_sample, 320-480 x 240-400), cycled",
        "runs": args.runs,
        "warmup": args.warmup,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "onnxruntime": metadata.version("onnxruntime"),
            "load_average_at_end": [round(v, 2) for v in load_average],
        },
        "rows": rows,
        "skipped": skipped,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
