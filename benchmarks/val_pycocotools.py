"""edgeseg's val against pycocotools run on Ultralytics' own predictions, for genuine Ultralytics checkpoints.

For each ``--weights`` (checkpoints Ultralytics trained, of any family), in one run on the same
val split of ``--data``:

1. Ultralytics: ``YOLO(pt).val(save_json=True)`` in its own venv (``ultralytics_worker.py val``,
   imgsz ``--imgsz``, conf 0.001, IoU 0.7, batch 1), which writes its COCO results
   (``predictions.json``: boxes, RLE masks at the source resolution, category = class + 1);
2. pycocotools' ``COCOeval`` (``bbox`` and ``segm``) on those results, against a COCO ground truth
   made from the YOLO-seg labels the way edgeseg's val reads them (``validate.ground_truth``:
   polygons filled at the source resolution; boxes their extents);
3. edgeseg: ``edgeseg.runtimes.load(pt).val(data, imgsz)`` (its own numpy COCO evaluator on its own
   val detections: multi-label NMS, as Ultralytics' val), and pycocotools on edgeseg's predict of
   the same images (``Results.to_coco``; predict keeps each anchor's best class only, as
   Ultralytics' predict does), which shows what the multi-label rule adds.

It passes when edgeseg's val mask mAP50-95 is within ``--tolerance`` (0.005) of pycocotools on
Ultralytics' predictions for every checkpoint. Results go to ``benchmarks/results/val_pycocotools.json``.

    .venv/bin/python benchmarks/val_pycocotools.py --data D/data.yaml --weights a.pt b.pt \\
        --ultralytics-venv .venv-ultralytics-8.4
"""

import argparse
import contextlib
import io
import json
import tempfile
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import edgeseg.runtimes
from edgeseg.runtimes.evaluation.validate import ground_truth, split_labels
from edgeseg.runtimes.io.data_config import load_data_config
from edgeseg.runtimes.io.images import decode_image

from compare_ultralytics import ROOT, WORKER, run_json, ultralytics_python
from report import write_report

RESULTS = ROOT / "benchmarks" / "results" / "val_pycocotools.json"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="data YAML; its val split is evaluated")
    parser.add_argument("--weights", nargs="+", required=True, help="genuine Ultralytics checkpoints (.pt)")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--tolerance", type=float, default=0.005, help="largest allowed mask mAP50-95 difference")
    parser.add_argument("--ultralytics-venv", default=str(ROOT / ".venv-ultralytics"))
    parser.add_argument("--out", default=str(RESULTS))
    return parser.parse_args(argv)


def coco_ground_truth(labels, nc: int) -> dict:
    """A COCO instances dict of ``labels``: image id = the numeric file stem, category = class + 1, RLE masks."""
    images, annotations = [], []
    for label in labels:
        stem = Path(label.im_file).stem
        h, w = label.shape
        images.append({"id": int(stem) if stem.isdecimal() else stem, "width": w, "height": h, "file_name": Path(label.im_file).name})
        boxes, classes, masks = ground_truth(label)
        for box, cls, mask in zip(boxes, classes, masks):
            rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            x1, y1, x2, y2 = map(float, box)
            annotations.append(
                {"id": len(annotations) + 1, "image_id": images[-1]["id"], "category_id": int(cls) + 1, "segmentation": rle,
                 "area": float(mask.sum()), "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0}
            )  # fmt: skip
    return {"images": images, "annotations": annotations, "categories": [{"id": i + 1, "name": str(i)} for i in range(nc)]}


def pycocotools_maps(truth: dict, results: list[dict]) -> dict:
    """``{"box_map", "mask_map"}``: COCOeval mAP50-95 of ``results`` against ``truth`` (its output silenced)."""
    maps = {}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = truth
        gt.createIndex()
        dt = gt.loadRes(results) if results else None
        for iou_type, key in (("bbox", "box_map"), ("segm", "mask_map")):
            if dt is None:
                maps[key] = 0.0
                continue
            evaluation = COCOeval(gt, dt, iou_type)
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
            maps[key] = float(evaluation.stats[0])
    return maps


def edgeseg_predictions(runtime, labels, imgsz: int) -> list[dict]:
    """edgeseg's predict on ``labels``' images at val's thresholds, as COCO results (category = class + 1)."""
    results = []
    for label in labels:
        stem = Path(label.im_file).stem
        (result,) = runtime.predict(decode_image(label.im_file), conf=0.001, iou=0.7, imgsz=imgsz, max_det=300, stream=False)
        results += result.to_coco(int(stem) if stem.isdecimal() else stem, category_ids=list(range(1, runtime.meta.nc + 1)))
    return results


def main(argv=None) -> None:
    args = parse_args(argv)
    python = ultralytics_python(Path(args.ultralytics_venv).resolve())
    cfg = load_data_config(args.data)
    labels = split_labels(cfg, "val")
    truth = coco_ground_truth(labels, cfg["nc"])
    report = {"data": str(args.data), "val_images": len(labels), "imgsz": args.imgsz, "tolerance": args.tolerance, "models": {}}
    with tempfile.TemporaryDirectory() as work:
        for weights in args.weights:
            theirs = run_json([python, WORKER, "val", "--model", Path(weights).resolve(), "--data", Path(args.data).resolve(), "--imgsz", args.imgsz,
                               "--save-json", "--work", Path(work) / Path(weights).stem], cwd=ROOT)  # fmt: skip
            their_results = json.loads(Path(theirs["predictions"]).read_text())
            runtime = edgeseg.runtimes.load(weights)
            ours = runtime.val(cfg, imgsz=args.imgsz, progress=False)
            row = {
                "pycocotools_on_ultralytics": pycocotools_maps(truth, their_results),
                "ultralytics_val": {"box_map": theirs["box_map"], "mask_map": theirs["mask_map"]},
                "edgeseg_val": {"box_map": float(ours.box.map), "mask_map": float(ours.seg.map)},
                "pycocotools_on_edgeseg_predict": pycocotools_maps(truth, edgeseg_predictions(runtime, labels, args.imgsz)),
            }
            row["mask_map_diff"] = row["edgeseg_val"]["mask_map"] - row["pycocotools_on_ultralytics"]["mask_map"]
            row["box_map_diff"] = row["edgeseg_val"]["box_map"] - row["pycocotools_on_ultralytics"]["box_map"]
            row["passed"] = abs(row["mask_map_diff"]) <= args.tolerance
            report["models"][str(weights)] = row
            print(json.dumps({weights: row}, indent=1), flush=True)
    report["passed"] = all(row["passed"] for row in report["models"].values())
    write_report(report, args.out)


if __name__ == "__main__":
    main()
