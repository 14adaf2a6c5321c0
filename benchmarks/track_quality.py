"""Tracking quality on the generated clip (``edgeseg data synth-clip``): MOTA, IDF1 and ID switches, box vs mask association.

Two detectors feed the same tracker, side by side in one run, on the clips of --seeds:

* ``ground truth + noise``: each visible object's box and mask, dropped with probability 0.1,
  boxes jittered by 2 px, scores drawn from 0.3-1 (0.15 when less than half of the object is
  visible, as a detector scores an occluded object): the tracker's own quality, with and
  without ``fuse_score``;
* ``model``: ``Runtime.track`` with a trained checkpoint (default: the one
  ``benchmarks/train_quality.py`` writes), the whole pipeline, on the first seed's clip.

Metrics by motmetrics (pip install motmetrics), matching boxes at IoU >= 0.5. Writes
``benchmarks/results/track_quality.json``.

    .venv/bin/python benchmarks/track_quality.py [--model runs/bench/train_quality/weights/best.pt] [--frames 300] [--seeds 0 1 2 3]
"""

import argparse
import time
from pathlib import Path

import numpy as np

from edgeseg.data.synth_clip import render_clip
from edgeseg.runtimes import load
from edgeseg.runtimes.tracking import ByteTracker, TrackerSettings
from edgeseg.runtimes.tracking.byte_tracker import box_iou

from report import write_report

MATCH_IOU = 0.5


def evaluate(truth: list, tracked: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """MOTA, IDF1, ID switches, misses and false positives of per-frame (ids, boxes) against the clip's ground truth."""
    import motmetrics as mm

    accumulator = mm.MOTAccumulator(auto_id=True)
    for frame, (ids, boxes) in zip(truth, tracked):
        distance = 1 - box_iou(frame.boxes, boxes)
        distance[distance > 1 - MATCH_IOU] = np.nan
        accumulator.update(frame.ids.tolist(), ids.tolist(), distance)
    names = ["mota", "idf1", "num_switches", "num_misses", "num_false_positives"]
    summary = mm.metrics.create().compute(accumulator, metrics=names, name="clip")
    return {name: float(summary[name].iloc[0]) for name in names}


def noisy_truth(frame, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(boxes, scores, classes, masks) of a frame's visible objects as an imperfect detector would give them."""
    keep = rng.random(len(frame.ids)) >= 0.1
    boxes = frame.boxes[keep] + rng.normal(0, 2, (int(keep.sum()), 4))
    scores = np.where(frame.visible[keep] < 0.5, 0.15, rng.uniform(0.3, 1.0, int(keep.sum())))
    return boxes, scores, frame.classes[keep], frame.masks[keep]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/bench/train_quality/weights/best.pt")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--objects", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="clips (each seed draws its own objects and motion)")
    parser.add_argument("--out", default="benchmarks/results/track_quality.json")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        truth = list(render_clip(seed, args.frames, args.objects))
        crossings = sum(int(len(f.ids) < args.objects) for f in truth)
        print(f"clip seed {seed}: {args.frames} frames, {args.objects} objects, {crossings} frames with an object hidden or out of frame")
        for fuse in (True, False):
            for association in ("box", "mask"):
                settings = TrackerSettings(association=association, fuse_score=fuse)
                rng, tracker, tracked = np.random.default_rng(seed), ByteTracker(settings), []
                start = time.perf_counter()
                for frame in truth:
                    boxes, scores, classes, masks = noisy_truth(frame, rng)
                    ids = tracker.update(boxes, scores, classes, masks)
                    tracked.append((ids[ids >= 0], boxes[ids >= 0]))
                ms = 1000 * (time.perf_counter() - start) / len(truth)
                rows.append({"detector": "ground truth + noise", "seed": seed, "association": association, "fuse_score": fuse,
                             "tracker_ms": ms, **evaluate(truth, tracked)})  # fmt: skip
    truth = list(render_clip(args.seeds[0], args.frames, args.objects))
    if Path(args.model).is_file():
        runtime = load(args.model)
        for association in ("box", "mask"):
            results = runtime.track([f.image for f in truth], tracker=TrackerSettings(association=association))
            tracked = [(r.track_ids, r.boxes) for r in results]
            rows.append({"detector": f"model {Path(args.model).name}", "seed": args.seeds[0], "association": association, "fuse_score": True,
                         **evaluate(truth, tracked)})  # fmt: skip
    print(f"{'detector':<24}{'seed':>5}  {'assoc':<7}{'fuse':<6}{'MOTA':>7}{'IDF1':>7}{'IDsw':>6}{'miss':>7}{'FP':>6}")
    for row in rows:
        print(f"{row['detector']:<24}{row['seed']:>5}  {row['association']:<7}{str(row['fuse_score']):<6}{row['mota']:>7.3f}{row['idf1']:>7.3f}"
              f"{row['num_switches']:>6.0f}{row['num_misses']:>7.0f}{row['num_false_positives']:>6.0f}")  # fmt: skip
    for fuse in (True, False):
        total = {a: sum(r["num_switches"] for r in rows if r["detector"] == "ground truth + noise" and r["association"] == a and r["fuse_score"] == fuse) for a in ("box", "mask")}
        print(f"ground truth + noise, fuse_score {fuse}: ID switches over {len(args.seeds)} clips: box {total['box']:.0f}, mask {total['mask']:.0f}")
    write_report({"frames": args.frames, "objects": args.objects, "seeds": args.seeds, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
