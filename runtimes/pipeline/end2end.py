"""End-to-end artifacts: NMS inside the graph, detections out instead of one row per anchor.

An end-to-end artifact (exported with ``--end2end``: ``ModelMeta.nms`` set for NMS in the graph,
``ModelMeta.topk`` for a one-to-one head's top-k in the graph) has two outputs:

* ``detections`` (B, D, 6 + nm) float32, D = ``nms["max_det"]`` rows per image, best score
  first: x1, y1, x2, y2 in input px, score, class id (as a float), nm mask coefficients. Rows
  past the image's last detection are all zeros (score 0);
* ``protos`` (B, nm, H / 4, W / 4), as in every artifact.

An NMS graph keeps, per image, the anchors whose best class score is > ``nms["conf"]``, labels
each with its best class, runs class-aware greedy NMS at IoU ``nms["iou"]`` and keeps the
``max_det`` best survivors: the runtime's ``non_max_suppression`` at those settings. A top-k
graph keeps the ``topk`` best (anchor, class) pairs scoring > 0: the runtime's
``topk_detections`` with ``conf`` 0 and ``max_det`` = ``topk``.

``detections_to_preds`` writes such detections back in the ``preds`` layout (one column per
detection, the score at its class and 0 at the others), so predict, val and verification run
their usual post-processing on them unchanged: NMS over boxes that already survived it keeps
them all, and a higher ``conf``, a lower ``max_det`` or a class filter apply as usual.
"""

import numpy as np

from .postprocess import select_detections

DETECTION_COLUMNS = 6  # x1, y1, x2, y2, score, class; the mask coefficients follow


def detections_to_preds(detections: np.ndarray, nc: int) -> np.ndarray:
    """End-to-end detections in the ``preds`` layout.

    Args:
        detections: (B, D, 6 + nm) float32, see the module docstring.
        nc: number of classes.

    Returns:
        (B, 4 + nc + nm, D) float32: cx, cy, w, h in input px, the score in its class's row (0 in
        the others and in padding columns), the mask coefficients.

    Raises:
        ValueError: a class id outside 0..nc-1 in a row with a positive score.
    """
    b, d, channels = detections.shape
    nm = channels - DETECTION_COLUMNS
    preds = np.zeros((b, 4 + nc + nm, d), np.float32)
    xyxy = detections[..., :4]
    preds[:, 0:2] = ((xyxy[..., 0:2] + xyxy[..., 2:4]) / 2).transpose(0, 2, 1)
    preds[:, 2:4] = (xyxy[..., 2:4] - xyxy[..., 0:2]).transpose(0, 2, 1)
    scores = detections[..., 4]
    labels = np.rint(detections[..., 5]).astype(np.int64)
    real = scores > 0
    if real.any() and (labels[real].min() < 0 or labels[real].max() >= nc):
        raise ValueError(f"end-to-end detections hold class ids outside 0..{nc - 1}")
    rows, cols = np.nonzero(real)
    preds[rows, 4 + labels[rows, cols], cols] = scores[rows, cols]
    preds[:, 4 + nc :] = detections[..., DETECTION_COLUMNS:].transpose(0, 2, 1)
    return preds


def end2end_settings(meta) -> dict:
    """The ``conf``, ``iou`` and ``max_det`` an end-to-end artifact's graph ran with; empty for a raw-output artifact.

    ``meta``: its ModelMeta. NMS graphs have ``meta.nms``; a top-k graph (``meta.topk``) keeps
    every (anchor, class) pair scoring > 0 among its ``topk`` best (``iou`` unused).
    """
    if meta.nms:
        return dict(meta.nms)
    return {"conf": 0.0, "iou": 1.0, "max_det": meta.topk} if meta.topk else {}


def host_detections(preds: np.ndarray, nc: int, conf: float, iou: float, max_det: int, selection: str = "nms") -> np.ndarray:
    """What an end-to-end graph with these settings outputs, computed on the host from ``preds``.

    Args:
        preds: (B, 4 + nc + nm, A) float32 raw outputs.
        nc: number of classes.
        conf, iou, max_det: the graph's settings (``end2end_settings``).
        selection: ``nms`` (an NMS graph) or ``topk`` (a one-to-one head's top-k graph).

    Returns:
        (B, max_det, 6 + nm) float32 detections, zero rows after each image's last one.
    """
    nm = preds.shape[1] - 4 - nc
    out = np.zeros((len(preds), max_det, DETECTION_COLUMNS + nm), np.float32)
    for b, image in enumerate(preds):
        boxes, scores, labels, coeffs = select_detections(image, nc, selection, conf=conf, iou=iou, max_det=max_det)
        n = len(boxes)
        out[b, :n, :4], out[b, :n, 4], out[b, :n, 5], out[b, :n, DETECTION_COLUMNS:] = boxes, scores, labels, coeffs
    return out
