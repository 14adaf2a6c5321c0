"""Anchor grids, the distance <-> box codecs and the (C)IoU used by the head and the loss.

Conventions: an anchor is the centre of a grid cell, ``(x + 0.5, y + 0.5)`` in grid units of
its level; a box is ``x1, y1, x2, y2`` (xyxy) or ``cx, cy, w, h`` (xywh) in the last dimension
(or in ``dim``); distances are ``l, t, r, b`` from the anchor to the box sides.
"""

import math
from collections.abc import Sequence

import torch


def make_anchors(
    feats: Sequence[torch.Tensor], strides: Sequence[float] | torch.Tensor, offset: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor centres and strides for every cell of every level, level by level, row-major.

    Args:
        feats: one tensor ``(B, C, H_i, W_i)`` per level; only the shapes, dtype and device are used.
        strides: one stride per level (pixels per grid cell), e.g. ``(8, 16, 32)``.
        offset: position of the anchor inside its cell, 0.5 = centre.

    Returns:
        anchor_points: ``(A, 2)`` x, y in grid units of the anchor's level, ``A = sum H_i * W_i``.
        stride_tensor: ``(A, 1)`` the stride of each anchor's level.
    """
    dtype, device = feats[0].dtype, feats[0].device
    points, stride_rows = [], []
    for feat, stride in zip(feats, strides):
        h, w = feat.shape[2:]
        # integer ranges cast to ``dtype``: the ONNX exporter cannot trace a float16 ``arange``
        sx = torch.arange(w, device=device).to(dtype) + offset
        sy = torch.arange(h, device=device).to(dtype) + offset
        gy, gx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((gx, gy), -1).view(-1, 2))
        # a product, not float(stride): torch.export cannot read a buffer's value while it captures the graph
        stride_rows.append(torch.ones(h * w, 1, dtype=dtype, device=device) * stride)
    return torch.cat(points), torch.cat(stride_rows)


def dist2bbox(
    distance: torch.Tensor, anchor_points: torch.Tensor, xywh: bool = True, dim: int = -1
) -> torch.Tensor:
    """Decode ltrb distances from anchors into boxes.

    Args:
        distance: ``(..., 4, ...)`` l, t, r, b along ``dim``.
        anchor_points: ``(..., 2, ...)`` x, y along ``dim``, broadcastable to ``distance``.
        xywh: return cx, cy, w, h instead of x1, y1, x2, y2.
        dim: the dimension holding the 4 (and 2) coordinates.

    Returns:
        ``(..., 4, ...)`` boxes along ``dim``, in the units of the inputs.
    """
    lt, rb = distance.chunk(2, dim)
    x1y1 = anchor_points - lt
    x2y2 = anchor_points + rb
    if xywh:
        return torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), dim)
    return torch.cat((x1y1, x2y2), dim)


def bbox2dist(anchor_points: torch.Tensor, bbox: torch.Tensor, reg_max: int | None = None) -> torch.Tensor:
    """Encode xyxy boxes as ltrb distances from anchors (the inverse of ``dist2bbox(xywh=False)``).

    Args:
        anchor_points: ``(..., 2)`` x, y, broadcastable to ``bbox``.
        bbox: ``(..., 4)`` x1, y1, x2, y2 in the units of ``anchor_points``.
        reg_max: number of DFL bins; when given, distances are clamped to
            ``[0, reg_max - 1 - 0.01]`` so that both neighbouring bins exist.

    Returns:
        ``(..., 4)`` l, t, r, b.
    """
    x1y1, x2y2 = bbox.chunk(2, -1)
    dist = torch.cat((anchor_points - x1y1, x2y2 - anchor_points), -1)
    if reg_max is None:
        return dist
    return dist.clamp(0, reg_max - 1 - 0.01)


def xywh2xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` cx, cy, w, h -> ``(..., 4)`` x1, y1, x2, y2."""
    xy, wh = boxes.chunk(2, -1)
    return torch.cat((xy - wh / 2, xy + wh / 2), -1)


def bbox_iou(
    box1: torch.Tensor, box2: torch.Tensor, xywh: bool = True, CIoU: bool = False, eps: float = 1e-7
) -> torch.Tensor:
    """IoU, or Complete IoU, of two broadcastable sets of boxes.

    CIoU = IoU - d^2 / c^2 - alpha * v, with d the distance between the centres, c the diagonal
    of the smallest enclosing box, v the aspect-ratio consistency term
    ``4 / pi^2 * (atan(w2 / h2) - atan(w1 / h1))^2`` and ``alpha = v / (v - IoU + 1)`` (held
    constant for the gradient). It lies in (-1, 1]; identical boxes give 1.

    Args:
        box1: ``(..., 4)`` boxes.
        box2: ``(..., 4)`` boxes, broadcastable against ``box1``.
        xywh: boxes are cx, cy, w, h (else x1, y1, x2, y2).
        CIoU: return the Complete IoU instead of the plain IoU.
        eps: guards the divisions.

    Returns:
        ``(...)`` the broadcast shape without the coordinate dimension.
    """
    if xywh:
        box1, box2 = xywh2xyxy(box1), xywh2xyxy(box2)
    b1_x1, b1_y1, b1_x2, b1_y2 = box1.unbind(-1)
    b2_x1, b2_y1, b2_x2, b2_y2 = box2.unbind(-1)
    w1, h1 = b1_x2 - b1_x1, b1_y2 - b1_y1 + eps
    w2, h2 = b2_x2 - b2_x1, b2_y2 - b2_y1 + eps

    inter = (torch.minimum(b1_x2, b2_x2) - torch.maximum(b1_x1, b2_x1)).clamp(0) * (
        torch.minimum(b1_y2, b2_y2) - torch.maximum(b1_y1, b2_y1)
    ).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    if not CIoU:
        return iou

    cw = torch.maximum(b1_x2, b2_x2) - torch.minimum(b1_x1, b2_x1)
    ch = torch.maximum(b1_y2, b2_y2) - torch.minimum(b1_y1, b2_y1)
    c2 = cw.pow(2) + ch.pow(2) + eps
    rho2 = ((b2_x1 + b2_x2 - b1_x1 - b1_x2).pow(2) + (b2_y1 + b2_y2 - b1_y1 - b1_y2).pow(2)) / 4
    v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def crop_mask(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Zero ``(n, H, W)`` masks outside ``(n, 4)`` xyxy boxes given in mask pixels (pixel i spans [i, i + 1))."""
    _, h, w = masks.shape
    x1, y1, x2, y2 = boxes[:, :, None, None].unbind(1)
    cols = torch.arange(w, device=masks.device, dtype=boxes.dtype).view(1, 1, w)
    rows = torch.arange(h, device=masks.device, dtype=boxes.dtype).view(1, h, 1)
    return masks * ((cols >= x1) & (cols < x2) & (rows >= y1) & (rows < y2))
