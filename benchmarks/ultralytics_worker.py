"""Ultralytics' side of benchmarks/compare_ultralytics.py: run inside the Ultralytics venv, print one JSON line.

Ultralytics (AGPL-3.0) is only run here, in its own venv, offline (``YOLO_OFFLINE=1``, a fresh
settings folder); edgeseg never imports it. Modes:

    train   --model M --data D --work W --name N --epochs E --imgsz S --batch B [--seed N]   M (yolo11n-seg) from its YAML, mosaic on, val off
    export  --model last.pt --imgsz S                         ONNX, static batch 1, not simplified
    predict --model m.onnx --images x.npz --imgsz S --conf C --runs R --warmup N
    val     --model m.onnx --data D --imgsz S [--save-json --work W]   with --save-json: COCO results in W/val/predictions.json
    detect  --model ARTIFACT --images x.npz [--f32]         ``YOLO(artifact).predict(image)`` with no other argument
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

    model = YOLO(f"{args.model}.yaml", task="segment")
    ends = []
    model.add_callback("on_train_epoch_end", lambda trainer: ends.append(time.perf_counter()))
    model.train(
        data=args.data, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, workers=2, device="cpu", seed=args.seed,
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
    saved = dict(save_json=True, project=args.work, name="val", exist_ok=True) if args.save_json else {}
    metrics = model.val(data=args.data, imgsz=args.imgsz, batch=1, conf=0.001, iou=0.7, plots=False, verbose=False, workers=0, **saved)
    seconds = time.perf_counter() - start
    result = {"seconds": seconds, "box_map": float(metrics.box.map), "mask_map": float(metrics.seg.map)}
    if args.save_json:
        result["predictions"] = os.path.join(args.work, "val", "predictions.json")
    return result


def f32_openvino() -> None:
    """Make every OpenVINO compile in this process compute in f32, as OpenVINO does by default on a CPU without bf16.

    On a CPU with bf16 (this machine's Xeon has AMX), OpenVINO's CPU default is bf16 and
    Ultralytics compiles with that default; ``--f32`` shows what the same call gives on the
    other CPUs, where the artifact is computed as written.
    """
    import openvino as ov

    compile_model = ov.Core.compile_model

    def compile_f32(self, model, device_name=None, config=None):
        return compile_model(self, model, device_name, {**(config or {}), "INFERENCE_PRECISION_HINT": "f32"})

    ov.Core.compile_model = compile_f32


def detect(args) -> dict:
    """What Ultralytics makes of an artifact given nothing but its path: task, names, input size and each image's detections.

    Detections per image: ``boxes`` (N, 4) xyxy px in the image, ``classes`` (N,), ``scores`` (N,).
    """
    from ultralytics import YOLO

    if args.f32:
        f32_openvino()
    model = YOLO(args.model)
    images = np.load(args.images)
    out = []
    for key in sorted(images.files):
        result = model.predict(images[key], verbose=False)[0]
        out.append(
            {
                "image": key,
                "boxes": result.boxes.xyxy.cpu().numpy().tolist(),
                "classes": result.boxes.cls.cpu().numpy().astype(int).tolist(),
                "scores": result.boxes.conf.cpu().numpy().tolist(),
                "masks": 0 if result.masks is None else len(result.masks),
            }
        )
    names = {int(k): v for k, v in model.predictor.model.names.items()}
    return {"task": model.task, "names": names, "imgsz": list(model.predictor.imgsz), "images": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["train", "export", "predict", "val", "detect"])
    parser.add_argument("--data")
    parser.add_argument("--work")
    parser.add_argument("--name", default="ultralytics")
    parser.add_argument("--model")
    parser.add_argument("--images")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="train: the training seed")
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--f32", action="store_true", help="detect: OpenVINO computes in f32 (see f32_openvino)")
    parser.add_argument("--save-json", action="store_true", help="val: write COCO results (predictions.json) under --work")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as settings:
        os.environ.update(YOLO_OFFLINE="1", YOLO_CONFIG_DIR=settings, MPLCONFIGDIR=settings)
        result = {"train": train, "export": export, "predict": predict, "val": val, "detect": detect}[args.mode](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
