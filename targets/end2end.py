"""Detections in the graph: the torch modules that end-to-end exports trace (``--end2end``).

``End2End`` (NMS, for one-to-many heads) and ``TopK`` (a one-to-one head's best scores, YOLO26)
wrap the traced model: (B, 3, H, W) images → ``detections`` (B, max_det, 6 + nm) and ``protos``,
the layout of ``edgeseg.runtimes.pipeline.end2end``. Both are built from standard ONNX ops only,
so ONNX Runtime, OpenVINO and TensorRT run them without custom ops. ``End2End``:

1. each anchor's best class score and label (``ReduceMax``/``ArgMax``); a (B, nc, A) score
   tensor that holds the best score at the anchor's label and 0 elsewhere;
2. ``NonMaxSuppression`` (opset 10+) on it: per image and class, boxes as cx, cy, w, h
   (``center_point_box=1``), scores > ``conf``, IoU > ``iou`` suppressed, at most ``max_det``
   per class. Per-class NMS on one-label anchors is the runtime's class-aware NMS, without
   the class offset (so no float32 precision is lost on far-shifted boxes);
3. the kept anchors' scores scattered into a (B, A + max_det) row of -1 (``ScatterND``), the
   ``max_det`` best taken with ``TopK`` (the padding makes k valid for any A), and their boxes
   (as x1, y1, x2, y2), scores, labels and mask coefficients gathered (``GatherElements``);
   rows that hold no detection are zeros.
"""

import torch
from torch import nn
from torch.nn import functional as F


def _xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) cx, cy, w, h → (..., 4) x1, y1, x2, y2, same units."""
    xy, half = boxes[..., :2], boxes[..., 2:4] / 2
    return torch.cat((xy - half, xy + half), -1)


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, max_det: int, iou: float, conf: float) -> torch.Tensor:
    """ONNX ``NonMaxSuppression`` (``center_point_box=1``) in eager torch: what the exported node computes.

    Args:
        boxes: (B, A, 4) float cx, cy, w, h.
        scores: (B, C, A) float.
        max_det: most boxes kept per image and class.
        iou: a box whose IoU with a kept, higher-scored box of its image and class is > ``iou`` is dropped.
        conf: only boxes scoring > ``conf`` take part.

    Returns:
        (K, 3) int64 rows ``(image, class, anchor)``, by image, then class, then descending score.
    """
    selected = []
    corners = _xyxy(boxes.double())
    area = (corners[..., 2] - corners[..., 0]) * (corners[..., 3] - corners[..., 1])
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            order = torch.nonzero(scores[b, c] > conf).flatten()
            order = order[torch.argsort(scores[b, c, order], descending=True, stable=True)]
            box, box_area = corners[b, order], area[b, order]
            kept = []
            alive = torch.ones(len(order), dtype=torch.bool)
            for i in range(len(order)):
                if not alive[i]:
                    continue
                kept.append(int(order[i]))
                if len(kept) == max_det:
                    break
                lt = torch.maximum(box[i, :2], box[i + 1 :, :2])
                rb = torch.minimum(box[i, 2:], box[i + 1 :, 2:])
                inter = (rb - lt).clamp(min=0).prod(-1)
                union = box_area[i] + box_area[i + 1 :] - inter
                alive[i + 1 :] &= ~(inter > iou * union)
            selected += [(b, c, a) for a in kept]
    return torch.tensor(selected, dtype=torch.int64).reshape(-1, 3)


class NonMaxSuppression(torch.autograd.Function):
    """``greedy_nms`` in eager mode, one ``NonMaxSuppression`` node in an ONNX export."""

    @staticmethod
    def forward(ctx, boxes, scores, max_det: int, iou: float, conf: float):
        """See ``greedy_nms``."""
        return greedy_nms(boxes, scores, max_det, iou, conf)

    @staticmethod
    def symbolic(g, boxes, scores, max_det: int, iou: float, conf: float):
        """The ONNX node: boxes (B, A, 4) cx, cy, w, h; thresholds as constant inputs."""
        return g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            g.op("Constant", value_t=torch.tensor([max_det], dtype=torch.int64)),
            g.op("Constant", value_t=torch.tensor([iou], dtype=torch.float32)),
            g.op("Constant", value_t=torch.tensor([conf], dtype=torch.float32)),
            center_point_box_i=1,
        )


class End2End(nn.Module):
    """A (images → preds, protos) module followed by NMS: images → (detections, protos).

    Args:
        model: maps (B, 3, H, W) float32 to preds (B, 4 + nc + nm, A) and protos float32.
        nc: number of classes.
        conf: the lowest score reported (anchors scoring <= conf are dropped before NMS).
        iou: NMS IoU threshold.
        max_det: detections per image (rows of ``detections``).
    """

    def __init__(self, model: nn.Module, nc: int, conf: float, iou: float, max_det: int):
        super().__init__()
        self.model, self.nc, self.conf, self.iou, self.max_det = model, nc, conf, iou, max_det

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) → detections (B, max_det, 6 + nm) float32 (x1, y1, x2, y2, score, class, coefficients), protos."""
        preds, protos = self.model(images)
        nc = self.nc
        best, labels = preds[:, 4 : 4 + nc].max(1)  # (B, A)
        one_hot = torch.arange(nc, device=preds.device)[None, :, None] == labels[:, None, :]
        class_scores = best[:, None, :] * one_hot.to(best.dtype)  # (B, nc, A)
        kept = NonMaxSuppression.apply(preds[:, :4].transpose(1, 2), class_scores, self.max_det, self.iou, self.conf)
        image, anchor = kept[:, 0], kept[:, 2]
        kept_mask = torch.zeros_like(best)
        kept_mask[image, anchor] = 1.0
        ranked = torch.where(kept_mask > 0, best, -1.0)
        ranked = F.pad(ranked, (0, self.max_det), value=-1.0)  # (B, A + max_det): k = max_det is valid for any A
        scores, index = ranked.topk(self.max_det, dim=1)  # (B, max_det), best first
        valid = (scores >= 0).to(preds.dtype)
        nm = preds.shape[1] - 4 - nc
        rows = torch.cat((preds[:, :4], preds[:, 4 + nc :], labels[:, None].to(preds.dtype)), 1)  # (B, 4 + nm + 1, A)
        rows = F.pad(rows, (0, self.max_det))  # as wide as ``ranked``
        picked = torch.gather(rows, 2, index[:, None].expand(-1, rows.shape[1], -1)).transpose(1, 2)  # (B, max_det, 5 + nm)
        detections = torch.cat((_xyxy(picked[..., :4]), scores[..., None], picked[..., 4 + nm :], picked[..., 4 : 4 + nm]), -1)
        return detections * valid[..., None], protos


class TopK(nn.Module):
    """A one-to-one head's model followed by top-k (no NMS): images → (detections, protos).

    The graph form of ``edgeseg.runtimes.pipeline.topk.topk_detections`` with ``conf`` 0: the
    ``max_det`` anchors with the best class score (``TopK``), then the ``max_det`` best
    (anchor, class) scores among them, as x1, y1, x2, y2, score, class, coefficients; rows that
    hold no detection (score 0, or padding when the image has fewer than ``max_det`` anchors) are zeros.

    Args:
        model: maps (B, 3, H, W) float32 to the one-to-one branch's preds (B, 4 + nc + nm, A) and protos.
        nc: number of classes.
        max_det: detections per image (rows of ``detections``).
    """

    def __init__(self, model: nn.Module, nc: int, max_det: int):
        super().__init__()
        self.model, self.nc, self.max_det = model, nc, max_det

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) → detections (B, max_det, 6 + nm) float32 (x1, y1, x2, y2, score, class, coefficients), protos."""
        preds, protos = self.model(images)
        nc, k = self.nc, self.max_det
        preds = F.pad(preds, (0, k))  # (B, C, A + k): zero columns make k valid for any A
        best = preds[:, 4 : 4 + nc].amax(1)  # (B, A + k)
        anchors = best.topk(k, dim=1).indices  # (B, k)
        candidates = torch.gather(preds, 2, anchors[:, None].expand(-1, preds.shape[1], -1))  # (B, C, k)
        pairs = candidates[:, 4 : 4 + nc].transpose(1, 2).flatten(1)  # (B, k * nc), anchor-major
        scores, order = pairs.topk(k, dim=1)  # (B, k), best first
        picked = torch.gather(candidates, 2, (order // nc)[:, None].expand(-1, preds.shape[1], -1)).transpose(1, 2)  # (B, k, C)
        labels = (order % nc).to(preds.dtype)
        detections = torch.cat((_xyxy(picked[..., :4]), scores[..., None], labels[..., None], picked[..., 4 + nc :]), -1)
        return detections * (scores > 0).to(preds.dtype)[..., None], protos
