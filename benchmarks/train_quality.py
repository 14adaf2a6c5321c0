"""Train yolo11n-seg on the default synthetic set and report box and mask mAP.

Settings fixed by the training issue: 256 train / 64 val synthetic images, imgsz 320, batch 16,
seed 0, 30 epochs. Writes the final metrics to benchmarks/results/train_quality.json.

    .venv/bin/python benchmarks/train_quality.py [--epochs 30] [--data datasets/synth/data.yaml]
"""

import argparse
import logging
import time
from pathlib import Path

import edgeseg
from edgeseg.data.synth import synthesize

from report import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="datasets/synth/data.yaml", help="Data YAML (synthesized if missing).")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/train_quality.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = Path(args.data)
    if not data.exists():
        synthesize(data.parent, n_train=256, n_val=64, seed=0)
    start = time.time()
    model = edgeseg.Model("yolo11n-seg.yaml")
    metrics = model.train(
        str(data), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, seed=0, workers=args.workers,
        project="runs/bench", name="train_quality", exist_ok=True,
    )
    report = {
        "model": "yolo11n-seg",
        "epochs": args.epochs,
        "imgsz": args.imgsz,
        "batch": args.batch,
        "box_map50": round(metrics.box.map50, 4),
        "box_map50_95": round(metrics.box.map, 4),
        "mask_map50": round(metrics.seg.map50, 4),
        "mask_map50_95": round(metrics.seg.map, 4),
        "minutes": round((time.time() - start) / 60, 1),
    }
    write_report(report, args.out)


if __name__ == "__main__":
    main()
