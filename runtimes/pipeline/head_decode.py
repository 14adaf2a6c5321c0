"""The segmentation head's output names and its box decoding in numpy, for artifacts that keep the head split.

The torch head (``edgeseg.nn.head.Segment``) has two output layouts:

* ``OUTPUTS``: ``preds`` (B, 4 + nc + nm, A) float32, boxes cx, cy, w, h in input pixels, nc
  sigmoid class scores, nm mask coefficients; ``protos`` (B, nm, H / 4, W / 4) mask prototypes.
* ``SPLIT_OUTPUTS`` (the head's split mode, used by int8 formats so that each part gets its own
  scale): ``box_logits`` (B, 4 * reg_max, A) DFL bin logits, ``scores`` (B, nc, A) sigmoid class
  scores, ``coefficients`` (B, nm, A) mask coefficients, ``protos`` (B, nm, H / 4, W / 4).

A runs over the levels (strides 8, 16, 32) level by level, each level's H / s x W / s grid
row-major. ``join_split_head`` turns the split parts back into ``preds``; it is the numpy twin
of ``Detect.decode`` in ``edgeseg.nn.head`` and must give the same numbers.
"""

import numpy as np

OUTPUTS = ["preds", "protos"]
SPLIT_OUTPUTS = ["box_logits", "scores", "coefficients", "protos"]


def join_split_head(
    box_logits: np.ndarray, scores: np.ndarray, coefficients: np.ndarray, imgsz: tuple[int, int], strides: list[int]
) -> np.ndarray:
    """Rejoin the split head parts into ``preds``: DFL (softmax expectation over the bins) and box decoding.

    Each box side's distance from its anchor is the expectation of its bin index under the softmax
    of its ``reg_max`` logits (in grid cells of the anchor's level), or with ``reg_max`` 1 (YOLO26)
    the box output itself; the anchor is the cell centre
    ``(x + 0.5, y + 0.5)``; box and anchor are scaled by the level's stride into input pixels.

    Args:
        box_logits: (B, 4 * reg_max, A) DFL bin logits, l, t, r, b in that order, reg_max bins each
            (reg_max 1: the distances in grid cells).
        scores: (B, nc, A) class scores (already through the sigmoid).
        coefficients: (B, nm, A) mask coefficients.
        imgsz: the input (height, width) in pixels, multiples of the largest stride.
        strides: the head's level strides in pixels, e.g. [8, 16, 32]; anchors run level by level, row-major.

    Returns:
        (B, 4 + nc + nm, A) float32 preds, boxes cx, cy, w, h in input pixels.
    """
    b, channels, a = box_logits.shape
    if channels == 4:  # reg_max 1 (YOLO26): the four distances themselves, no DFL
        distances = box_logits.astype(np.float32, copy=False)
    else:
        logits = box_logits.reshape(b, 4, channels // 4, a)
        bins = np.exp(logits - logits.max(2, keepdims=True))
        distances = (bins * np.arange(channels // 4, dtype=np.float32).reshape(1, 1, -1, 1)).sum(2) / bins.sum(2)
    h, w = imgsz
    points, steps = [], []
    for stride in strides:
        gy, gx = np.meshgrid(np.arange(h // stride) + 0.5, np.arange(w // stride) + 0.5, indexing="ij")
        points.append(np.stack((gx.ravel(), gy.ravel())))
        steps.append(np.full(gx.size, stride))
    anchors, step = np.concatenate(points, 1)[None], np.concatenate(steps)
    lt, rb = distances[:, :2], distances[:, 2:]
    boxes = np.concatenate((anchors + (rb - lt) / 2, lt + rb), 1) * step
    return np.concatenate((boxes, scores, coefficients), 1).astype(np.float32, copy=False)
