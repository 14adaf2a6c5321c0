"""Micro-benchmark of the numpy post-processing: NMS + mask decoding, per image.

Synthetic but structured outputs: ``--objects`` objects, each a cluster of jittered anchors
scoring 0.3-0.95 on its class; background anchors score below 0.1 on every class; smooth
prototypes. The source image is ``--source`` (h w), letterboxed into a square ``imgsz``.

    python benchmarks/postprocess_speed.py --imgsz 320 640 --objects 20
"""

import argparse
import time

import numpy as np

from edgeseg.runtimes.pipeline.postprocess import non_max_suppression, process_masks
from edgeseg.runtimes.pipeline.preprocess import letterbox


def synthetic_outputs(imgsz: int, objects: int, nc: int, nm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(4 + nc + nm, A) preds and (nm, imgsz / 4, imgsz / 4) protos for one image."""
    rng = np.random.default_rng(seed)
    anchors = sum((imgsz // s) ** 2 for s in (8, 16, 32))
    preds = np.empty((4 + nc + nm, anchors), np.float32)
    preds[:2] = rng.uniform(0, imgsz, (2, anchors))
    preds[2:4] = rng.uniform(4, imgsz / 3, (2, anchors))
    preds[4 : 4 + nc] = rng.uniform(0, 0.1, (nc, anchors))
    preds[4 + nc :] = rng.normal(0, 1, (nm, anchors))
    per_object = 20
    for idx in rng.choice(anchors, (objects, per_object), replace=False):
        cx, cy = rng.uniform(0.15, 0.85, 2) * imgsz
        w, h = rng.uniform(0.05, 0.3, 2) * imgsz
        preds[0, idx] = cx + rng.normal(0, 2, per_object)
        preds[1, idx] = cy + rng.normal(0, 2, per_object)
        preds[2, idx] = w * rng.uniform(0.9, 1.1, per_object)
        preds[3, idx] = h * rng.uniform(0.9, 1.1, per_object)
        preds[4 + rng.integers(nc), idx] = rng.uniform(0.3, 0.95, per_object)
    size = imgsz // 4
    yy, xx = np.mgrid[0:size, 0:size]
    waves = [
        np.sin(xx / rng.uniform(2, 8) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(2, 8) + rng.uniform(0, 6))
        for _ in range(nm)
    ]
    protos = np.stack(waves).astype(np.float32)
    return preds, protos


def median_ms(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, nargs="+", default=[320, 640], help="square model input sizes")
    parser.add_argument("--objects", type=int, default=20, help="objects per image")
    parser.add_argument("--source", type=int, nargs=2, default=[480, 640], metavar=("H", "W"), help="source image size")
    parser.add_argument("--conf", type=float, nargs="+", default=[0.25, 0.001], help="confidence thresholds")
    parser.add_argument("--max-det", type=int, default=300)
    parser.add_argument("--nc", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()

    source = np.zeros((*args.source, 3), np.uint8)
    h0, w0 = args.source
    print(f"source {h0}x{w0}, {args.objects} objects, {args.nc} classes, median of {args.repeats} runs")
    header = ("imgsz", "anchors", "conf", "dets", "nms ms", "masks ms", "total ms", "retina ms")
    print(" ".join(f"{h:>9}" for h in header))
    for imgsz in args.imgsz:
        _, info = letterbox(source, (imgsz, imgsz))
        preds, protos = synthetic_outputs(imgsz, args.objects, args.nc, 32, seed=imgsz)
        for conf in args.conf:
            boxes, _, _, coeffs = non_max_suppression(preds, args.nc, conf=conf, max_det=args.max_det)
            nms = median_ms(lambda: non_max_suppression(preds, args.nc, conf=conf, max_det=args.max_det), args.repeats)
            masks = median_ms(lambda: process_masks(protos, coeffs, boxes, info, (imgsz, imgsz)), args.repeats)
            retina = median_ms(
                lambda: process_masks(protos, coeffs, boxes, info, (imgsz, imgsz), retina_masks=True),
                max(args.repeats // 10, 3),
            )
            row = (f"{imgsz}", f"{preds.shape[1]}", f"{conf:g}", f"{len(boxes)}")
            row += tuple(f"{v:.2f}" for v in (nms, masks, nms + masks, retina))
            print(" ".join(f"{v:>9}" for v in row))


if __name__ == "__main__":
    main()
