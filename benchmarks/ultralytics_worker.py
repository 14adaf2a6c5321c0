"""Ultralytics' side of benchmarks/compare_ultralytics.py: run inside the Ultralytics venv, print one JSON line.

Ultralytics (AGPL-3.0) is only run here, in its own venv, offline (``YOLO_OFFLINE=1``, a fresh
settings folder); edgeseg never imports it. Modes:

    train   --data D --work W --name N --epochs E --imgsz S --batch B   yolo11n-seg from its YAML, mosaic on, val off
    export  --model last.pt --imgsz S                         ONNX, static batch 1, not simplified
    predict --model m.onnx --images x.npz --imgsz S --conf C --runs R --warmup N
    val     --model m.onnx --data D --imgsz S
"""

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np


def train(args) -> dict:
    """Per-epoch training time (epochs after the first; validation off) and where the weights went."""
    from ultralytics import YOLO

    model = YOLO("yolo11n-seg.yaml", task="segment")
    ends = []
    model.add_callback("on_train_epoch_end", lambda trainer: ends.append(time.perf_counter()))
    model.train(
        data=args.data, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, workers=2, device="cpu", seed=0,
        deterministic=True, pretrained=False, amp=False, plots=False, val=False, close_mosaic=0,
        project=args.work, name=args.name, exist_ok=True, verbose=False,
    )  # fmt: skip
    seconds = [b - a for a, b in zip(ends, ends[1:])]
    return {"epoch_seconds": seconds, "weights": str(model.trainer.last), "images": len(model.trainer.train_loader.dataset)}


def export(args) -> dict:
    """The ONNX file both tools then run."""
    from ultralytics import YOLO

    path = YOLO(args.model, task="segment").export(format="onnx", imgsz=args.imgsz, simplify=False, dynamic=False, batch=1)
    return {"onnx": str(path)}


def predict(args) -> dict:
    """Median end-to-end ms per image of ``YOLO(onnx).predict`` on in-memory BGR images, and detections per image."""
    from ultralytics import YOLO

    images = list(np.load(args.images).values())
    model = YOLO(args.model, task="segment")
    times, detections = [], []
    for i in range(args.warmup + args.runs):
        image = images[i % len(images)]
        start = time.perf_counter()
        result = model.predict(image, imgsz=args.imgsz, conf=args.conf, verbose=False)[0]
        elapsed = (time.perf_counter() - start) * 1000
        if i >= args.warmup:
            times.append(elapsed)
            detections.append(len(result.boxes))
    return {"ms": statistics.median(times), "detections_per_image": float(np.mean(detections))}


def val(args) -> dict:
    """Wall time of ``YOLO(model).val`` (an .onnx or a .pt) on the data YAML's val split (batch 1: an ONNX's static batch), and its mAPs."""
    from ultralytics import YOLO

    model = YOLO(args.model, task="segment")
    start = time.perf_counter()
    metrics = model.val(data=args.data, imgsz=args.imgsz, batch=1, conf=0.001, iou=0.7, plots=False, verbose=False, workers=0)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "box_map": float(metrics.box.map), "mask_map": float(metrics.seg.map)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["train", "export", "predict", "val"])
    parser.add_argument("--data")
    parser.add_argument("--work")
    parser.add_argument("--name", default="ultralytics")
    parser.add_argument("--model")
    parser.add_argument("--images")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as settings:
        os.environ.update(YOLO_OFFLINE="1", YOLO_CONFIG_DIR=settings, MPLCONFIGDIR=settings)
        result = {"train": train, "export": export, "predict": predict, "val": val}[args.mode](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
