"""Training throughput of yolo11n-seg on this machine (mosaic on), and peak RSS.

Settings from the training issue: imgsz 320, batch 16, the default synthetic set (256 train
images). Validation is off so that only the training loop is timed; the first epoch is a warm-up.
Writes benchmarks/results/train_speed.json.

    .venv/bin/python benchmarks/train_speed.py [--epochs 3] [--workers 2]
"""

import argparse
import resource
import time
from pathlib import Path

import torch

from edgeseg.data.synth import synthesize
from edgeseg.train.trainer import Trainer

from report import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="datasets/synth/data.yaml", help="Data YAML (synthesized if missing).")
    parser.add_argument("--epochs", type=int, default=3, help="Timed epochs + 1 warm-up epoch.")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/train_speed.json")
    args = parser.parse_args()
    data = Path(args.data)
    if not data.exists():
        synthesize(data.parent, n_train=256, n_val=64, seed=0)
    epoch_ends = []
    trainer = Trainer(
        dict(data=str(data), epochs=args.epochs + 1, imgsz=args.imgsz, batch=args.batch, workers=args.workers,
             close_mosaic=0, val=False, plots=False, project="runs/bench", name="train_speed", exist_ok=True)
    )
    trainer.callbacks["on_epoch_end"].append(lambda t: epoch_ends.append(time.perf_counter()))
    trainer.train()
    images = len(trainer.train_set)
    seconds = [b - a for a, b in zip(epoch_ends, epoch_ends[1:])]
    report = {
        "model": "yolo11n-seg",
        "imgsz": args.imgsz,
        "batch": args.batch,
        "workers": args.workers,
        "mosaic": True,
        "images_per_epoch": images,
        "img_per_s": round(images * len(seconds) / sum(seconds), 2),
        "epoch_seconds": [round(s, 1) for s in seconds],
        "peak_rss_mb": round(max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                                 resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024, 0),
        "torch_threads": torch.get_num_threads(),
    }
    write_report(report, args.out)


if __name__ == "__main__":
    main()
