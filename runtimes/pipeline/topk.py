"""Detections of a one-to-one head (YOLO26's ``one2one`` branch): the best scores, no NMS.

A one-to-one head is trained so that each object gets one anchor, so its detections are the
highest (anchor, class) scores as they are. ``topk_detections`` takes the ``k`` anchors with the
highest best-class score, then the ``k`` highest (anchor, class) scores among them (one anchor may
give two classes), and keeps those above ``conf``: what Ultralytics' end-to-end YOLO26 head does
(``k`` = max_det, at least ``MIN_CANDIDATES`` so that a class filter still finds its objects).
"""

import numpy as np

MIN_CANDIDATES = 300  # (anchor, class) pairs ranked before the class filter and max_det apply


def _top(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest of the 1-D ``values``, largest first (ties by lower index)."""
    if k >= len(values):
        return np.argsort(-values, kind="stable")
    part = np.argpartition(-values, k - 1)[:k]
    return part[np.argsort(-values[part], kind="stable")]


def topk_detections(
    preds: np.ndarray,
    nc: int,
    conf: float = 0.25,
    max_det: int = 300,
    classes=None,
    agnostic: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The best-scored (anchor, class) pairs of one image, without NMS.

    Args:
        preds: (4 + nc + nm, A) float32 for one image: cx, cy, w, h in input px, nc class scores
            after sigmoid, nm mask coefficients (the one-to-one branch's).
        nc: number of classes.
        conf: keep pairs whose score is > conf.
        max_det: keep at most this many detections.
        classes: optional iterable of class ids to keep.
        agnostic: one pair per anchor (its best class) instead of the best pairs over all classes.

    Returns:
        boxes (N, 4) float32 xyxy in input px, scores (N,) float32, classes (N,) int64 and mask
        coefficients (N, nm) float32, by descending score: ``non_max_suppression``'s layout.
    """
    nm = preds.shape[0] - 4 - nc
    scores = preds[4 : 4 + nc]
    k = min(max(max_det, MIN_CANDIDATES), scores.shape[1])
    best = scores.max(0)
    anchors = _top(best, k)
    if agnostic:
        values, labels = best[anchors], scores[:, anchors].argmax(0)
    else:
        pairs = scores[:, anchors].T.ravel()  # anchor-major: pair i is anchor i // nc, class i % nc
        order = _top(pairs, k)
        values, labels, anchors = pairs[order], order % nc, anchors[order // nc]
    keep = values > conf
    if classes is not None:
        keep &= np.isin(labels, np.asarray(list(classes), dtype=np.int64))
    keep = np.flatnonzero(keep)[:max_det]
    anchors = anchors[keep]
    xywh = preds[:4, anchors].T
    boxes = np.concatenate((xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2), 1)
    return (
        np.ascontiguousarray(boxes, dtype=np.float32),
        values[keep].astype(np.float32),
        labels[keep].astype(np.int64),
        np.ascontiguousarray(preds[4 + nc :, anchors].T, dtype=np.float32).reshape(len(anchors), nm),
    )
