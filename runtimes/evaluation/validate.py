"""Box and mask mAP of any model on a YOLO-seg split, through the runtime's own pipeline (no torch).

The same function validates during training (a torch model wrapped as ``infer``), ``edgeseg
val`` on a checkpoint, and every exported artifact, so the numbers differ only by the backend.
"""

from collections.abc import Callable

import cv2
import numpy as np
from tqdm import tqdm

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.evaluation.label_cache import scan_labels
from edgeseg.runtimes.evaluation.labels import Label
from edgeseg.runtimes.evaluation.metrics import SegmentEvaluator, SegmentMetrics, mask_extents
from edgeseg.runtimes.io.data_config import img_paths
from edgeseg.runtimes.io.images import read_image
from edgeseg.runtimes.pipeline.loop import infer_batches
from edgeseg.runtimes.pipeline.postprocess import mask_logits, pixel_windows, scale_boxes, select_detections

VAL_CONF = 0.001  # keep nearly every detection for mAP, as COCO-style evaluation expects
VAL_IOU = 0.7
VAL_MAX_DET = 300


def ground_truth(label: Label) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An image's GT at its original resolution.

    Returns:
        boxes (M, 4) xyxy pixels (polygon extents), classes (M,) int, masks (M, H, W) bool
        (polygons filled with OpenCV, vertices rounded to pixel centres).
    """
    h, w = label.shape
    masks = np.zeros((len(label.segments), h, w), dtype=np.uint8)
    boxes = np.zeros((len(label.segments), 4), dtype=np.float32)
    for i, segment in enumerate(label.segments):
        points = segment * np.array([w, h], dtype=np.float32)
        cv2.fillPoly(masks[i], [np.round(points).astype(np.int32)], 1)
        boxes[i] = [*points.min(0), *points.max(0)]
    return boxes, label.cls.astype(np.int64), masks.astype(bool)


def split_labels(data: dict, split: str = "val") -> list[Label]:
    """The scanned labels of ``split`` from a data config (``edgeseg.runtimes.io.data_config.load_data_config``)."""
    if data.get(split) is None:
        raise EdgesegError(f"{data.get('yaml_file', 'data config')}: no '{split}' split")
    labels, _ = scan_labels(img_paths(data[split], data["path"]), data["nc"], prefix=split)
    if not labels:
        raise EdgesegError(f"{data.get('yaml_file', 'data config')}: no usable images in the '{split}' split")
    return labels


def matchable_windows(windows: np.ndarray, classes: np.ndarray, gt_masks: np.ndarray, gt_classes: np.ndarray) -> np.ndarray:
    """``windows`` with those that touch no ground-truth mask of their class emptied.

    A detection whose window misses every same-class ground-truth mask has mask IoU 0 with all of
    them, whatever its mask: val need not decode it (an empty window is decoded as nothing).

    Args:
        windows: (N, 4) int ``y0, y1, x0, x1`` of the detections (``pixel_windows``).
        classes: (N,) int detection classes.
        gt_masks: (M, H, W) bool ground-truth masks; gt_classes: (M,) int.

    Returns:
        (N, 4) int windows, ``(y0, y0, x0, x0)`` for the detections no ground truth can match.
    """
    extents = mask_extents(gt_masks)
    keep = np.zeros(len(windows), dtype=bool)
    for (y1, y2, x1, x2), c in zip(extents.tolist(), np.asarray(gt_classes).tolist()):
        if y2 > y1:
            keep |= (classes == c) & (windows[:, 0] < y2) & (windows[:, 1] > y1) & (windows[:, 2] < x2) & (windows[:, 3] > x1)
    out = windows.copy()
    out[~keep, 1] = out[~keep, 0]
    out[~keep, 3] = out[~keep, 2]
    return out


def evaluate(
    infer: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    labels: list[Label],
    nc: int,
    imgsz: int,
    batch: int = 16,
    conf: float = VAL_CONF,
    iou: float = VAL_IOU,
    max_det: int = VAL_MAX_DET,
    progress: bool = True,
    desc: str = "val",
    selection: str = "nms",
    multi_label: bool = True,
) -> SegmentMetrics:
    """Run ``infer`` over the labelled images and compute COCO-style box and mask metrics.

    Args:
        infer: (B, 3, imgsz, imgsz) float32 RGB in [0, 1] → (preds (B, 4 + nc + nm, A), protos (B, nm, imgsz/4, imgsz/4)).
        labels: the split's labels (``split_labels``).
        nc: number of classes.
        imgsz: square input size in pixels; images are letterboxed to it.
        batch: images per ``infer`` call.
        conf, iou, max_det: post-processing thresholds (defaults as Ultralytics validates).
        progress: show a tqdm bar.
        desc: the bar's label.
        selection: how detections are picked, ``nms`` or ``topk`` (``ModelMeta.selection``).
        multi_label: NMS keeps a candidate per (anchor, class) above ``conf``, not only each
            anchor's best class, as Ultralytics' val does (``non_max_suppression``); predict keeps one.

    Returns:
        SegmentMetrics with ``box`` and ``seg`` results (mask IoU at the original resolution).
    """
    evaluator = SegmentEvaluator(nc)
    shape = (imgsz, imgsz)
    bar = tqdm(total=len(labels), desc=desc, disable=not progress, unit="img", leave=False)
    with bar:
        # read lazily: the loop reads the next batch on its background thread while this one infers
        frames = ((label.im_file, read_image(label.im_file)) for label in labels)
        pending = iter(labels)
        for step, (preds, protos), _ in infer_batches(infer, frames, shape, batch):
            for b, info in enumerate(step.infos):
                gt_boxes, gt_classes, gt_masks = ground_truth(next(pending))
                boxes, scores, classes, coeffs = select_detections(preds[b], nc, selection, conf=conf, iou=iou, max_det=max_det, multi_label=multi_label)
                boxes = scale_boxes(boxes, info)
                windows = matchable_windows(pixel_windows(boxes, info.source_shape), classes, gt_masks, gt_classes)
                crops = [logits > 0 for logits in mask_logits(protos[b], coeffs, windows, info, shape)]
                evaluator.update(boxes, scores, classes, crops, gt_boxes, gt_classes, gt_masks, pred_windows=windows)
            bar.update(len(step.infos))
    return evaluator.result()
