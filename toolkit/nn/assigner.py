"""Task-Aligned Assigner (TOOD), as YOLOv8/11 use it to pick the positive anchors of each GT.

Shapes: B images, A anchors, M ground truths per image (padded to the largest count, with
``mask_gt`` marking the real ones), C classes. Boxes are xyxy in input pixels.
"""

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.nn.boxes import bbox_iou, crop_mask


class TaskAlignedAssigner(nn.Module):
    """Assigns each GT the ``topk`` anchors with the best ``score**alpha * overlap**beta`` (overlap: CIoU).

    Candidates are anchors whose centre lies strictly inside the GT box. An anchor claimed by
    several GTs keeps the one it overlaps most. Target scores are the one-hot class of the
    assigned GT times the alignment metric normalised per GT so that its best anchor gets the
    GT's best overlap.

    YOLO26's options: ``topk2`` then keeps only each GT's ``topk2`` best-aligned positives (its
    one-to-one branch: 7 candidates, 1 kept); ``min_side`` (px, small-target-aware assignment)
    widens a GT box side shorter than it to ``min_side`` about its centre for the candidate test
    only, so a tiny object still has anchor centres inside it (the overlaps use the real box).
    """

    def __init__(
        self,
        topk: int = 10,
        num_classes: int = 80,
        alpha: float = 0.5,
        beta: float = 6.0,
        eps: float = 1e-9,
        topk2: int | None = None,
        min_side: float = 0.0,
    ):
        super().__init__()
        self.topk = topk
        self.topk2 = topk2 or topk
        self.num_classes = num_classes
        self.alpha = alpha
        self.beta = beta
        self.eps = eps
        self.min_side = min_side

    @torch.no_grad()
    def forward(
        self,
        pd_scores: torch.Tensor,
        pd_bboxes: torch.Tensor,
        anc_points: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_bboxes: torch.Tensor,
        mask_gt: torch.Tensor,
        **pair_inputs: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Assign targets to anchors.

        Args:
            pd_scores: ``(B, A, C)`` predicted class probabilities (after sigmoid).
            pd_bboxes: ``(B, A, 4)`` predicted boxes, xyxy pixels.
            anc_points: ``(A, 2)`` anchor centres in pixels.
            gt_labels: ``(B, M, 1)`` class indices.
            gt_bboxes: ``(B, M, 4)`` GT boxes, xyxy pixels.
            mask_gt: ``(B, M, 1)`` 1 for real GTs, 0 for padding.
            pair_inputs: what a subclass's ``pair_overlaps`` needs besides the boxes (``MaskAlignedAssigner``).

        Returns:
            target_labels: ``(B, A)`` long, class of the assigned GT (``num_classes`` where no GT exists).
            target_bboxes: ``(B, A, 4)`` box of the assigned GT, xyxy pixels.
            target_scores: ``(B, A, C)`` soft class targets, zero for background anchors.
            fg_mask: ``(B, A)`` bool, True for positive anchors.
            target_gt_idx: ``(B, A)`` long, index in ``0..M-1`` of the assigned GT within its image.
        """
        bs, n_anchors = pd_scores.shape[:2]
        n_max_boxes = gt_bboxes.shape[1]
        device = pd_scores.device
        if n_max_boxes == 0:
            return (
                torch.full((bs, n_anchors), self.num_classes, dtype=torch.long, device=device),
                torch.zeros_like(pd_bboxes),
                torch.zeros_like(pd_scores),
                torch.zeros((bs, n_anchors), dtype=torch.bool, device=device),
                torch.zeros((bs, n_anchors), dtype=torch.long, device=device),
            )

        mask_gt = mask_gt.bool()
        mask_in_gts = self.candidates_in_gts(anc_points, gt_bboxes)
        align_metric, overlaps = self.box_metrics(
            pd_scores, pd_bboxes, gt_labels, gt_bboxes, mask_in_gts & mask_gt, **pair_inputs
        )
        mask_topk = self.topk_candidates(align_metric, self.topk)
        mask_pos = mask_topk & mask_in_gts & mask_gt
        mask_pos = self.resolve_multiple_gts(mask_pos, overlaps)
        if self.topk2 < self.topk:
            mask_pos = mask_pos & self.topk_candidates(align_metric * mask_pos, self.topk2)

        fg_mask = mask_pos.any(1)
        target_gt_idx = mask_pos.to(torch.uint8).argmax(1)
        target_labels, target_bboxes, target_scores = self.targets(gt_labels, gt_bboxes, target_gt_idx, fg_mask)

        align_metric = align_metric * mask_pos
        pos_align = align_metric.amax(-1, keepdim=True)
        pos_overlaps = (overlaps * mask_pos).amax(-1, keepdim=True)
        norm_align = (align_metric * pos_overlaps / (pos_align + self.eps)).amax(1).unsqueeze(-1)
        return target_labels, target_bboxes, target_scores * norm_align, fg_mask, target_gt_idx

    def candidates_in_gts(self, anc_points: torch.Tensor, gt_bboxes: torch.Tensor) -> torch.Tensor:
        """``(A, 2)`` anchors, ``(B, M, 4)`` boxes -> ``(B, M, A)`` bool: anchor centre strictly inside the box
        (each side widened to at least ``min_side`` px about the box centre)."""
        if self.min_side > 0:
            centre, size = (gt_bboxes[..., :2] + gt_bboxes[..., 2:]) / 2, gt_bboxes[..., 2:] - gt_bboxes[..., :2]
            half = size.clamp(min=self.min_side) / 2
            gt_bboxes = torch.cat((centre - half, centre + half), -1)
        lt, rb = gt_bboxes.unsqueeze(2).chunk(2, -1)
        deltas = torch.cat((anc_points - lt, rb - anc_points), -1)
        return deltas.amin(-1) > self.eps

    def box_metrics(
        self,
        pd_scores: torch.Tensor,
        pd_bboxes: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_bboxes: torch.Tensor,
        mask: torch.Tensor,
        **pair_inputs: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Alignment metric and overlap (``pair_overlaps``) for each (GT, anchor) pair, zero outside ``mask``.

        Args:
            pd_scores: ``(B, A, C)``; pd_bboxes: ``(B, A, 4)``; gt_labels: ``(B, M, 1)``;
            gt_bboxes: ``(B, M, 4)``; mask: ``(B, M, A)`` bool pairs to evaluate.

        Returns:
            align_metric, overlaps: both ``(B, M, A)``.
        """
        bs, n_anchors = pd_scores.shape[:2]
        n_max_boxes = gt_bboxes.shape[1]
        batch_ind = torch.arange(bs, device=pd_scores.device).view(-1, 1).expand(-1, n_max_boxes)
        labels = gt_labels.squeeze(-1).long().clamp(0, self.num_classes - 1)
        scores = pd_scores.permute(0, 2, 1)[batch_ind, labels]

        overlaps = torch.zeros((bs, n_max_boxes, n_anchors), dtype=pd_bboxes.dtype, device=pd_bboxes.device)
        overlaps[mask] = self.pair_overlaps(mask, gt_bboxes, pd_bboxes, scores, **pair_inputs).to(overlaps.dtype)

        bbox_scores = torch.where(mask, scores, torch.zeros_like(scores))
        align_metric = bbox_scores.pow(self.alpha) * overlaps.pow(self.beta)
        return align_metric, overlaps

    def pair_overlaps(
        self, mask: torch.Tensor, gt_bboxes: torch.Tensor, pd_bboxes: torch.Tensor, scores: torch.Tensor
    ) -> torch.Tensor:
        """CIoU clamped at 0 of the ``(B, M, A)`` ``mask`` pairs: ``(P,)`` in ``mask.nonzero()`` order (``scores``: unused here)."""
        gt = gt_bboxes.unsqueeze(2).expand(-1, -1, mask.shape[2], -1)[mask]
        pd = pd_bboxes.unsqueeze(1).expand(-1, mask.shape[1], -1, -1)[mask]
        return bbox_iou(gt, pd, xywh=False, CIoU=True).clamp(0)

    @staticmethod
    def topk_candidates(metrics: torch.Tensor, k: int) -> torch.Tensor:
        """``(B, M, A)`` metrics -> ``(B, M, A)`` bool: among the GT's ``k`` largest (padding GTs included)."""
        topk_idxs = torch.topk(metrics, min(k, metrics.shape[-1]), dim=-1, largest=True).indices
        return torch.zeros_like(metrics, dtype=torch.bool).scatter_(-1, topk_idxs, True)

    @staticmethod
    def resolve_multiple_gts(mask_pos: torch.Tensor, overlaps: torch.Tensor) -> torch.Tensor:
        """``(B, M, A)`` positives and overlaps -> ``(B, M, A)`` with each anchor kept for its max-overlap GT only."""
        multi = mask_pos.sum(1, keepdim=True) > 1
        if not multi.any():
            return mask_pos
        best = F.one_hot(overlaps.argmax(1), overlaps.shape[1]).permute(0, 2, 1).bool()
        return torch.where(multi.expand_as(mask_pos), best, mask_pos)

    def targets(
        self, gt_labels: torch.Tensor, gt_bboxes: torch.Tensor, target_gt_idx: torch.Tensor, fg_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gather the assigned GT of every anchor.

        Args:
            gt_labels: ``(B, M, 1)``; gt_bboxes: ``(B, M, 4)``; target_gt_idx: ``(B, A)``; fg_mask: ``(B, A)`` bool.

        Returns:
            target_labels ``(B, A)`` long, target_bboxes ``(B, A, 4)``, one-hot target_scores ``(B, A, C)``
            (zero for background anchors).
        """
        bs, n_max_boxes = gt_bboxes.shape[:2]
        flat_idx = target_gt_idx + torch.arange(bs, device=gt_bboxes.device).unsqueeze(-1) * n_max_boxes
        target_labels = gt_labels.long().flatten()[flat_idx].clamp(0, self.num_classes - 1)
        target_bboxes = gt_bboxes.view(-1, 4)[flat_idx]
        target_scores = F.one_hot(target_labels, self.num_classes) * fg_mask.unsqueeze(-1)
        return target_labels, target_bboxes, target_scores.to(gt_bboxes.dtype)


class MaskAlignedAssigner(TaskAlignedAssigner):
    """``TaskAlignedAssigner`` whose overlap is the mean of the box CIoU and the predicted mask's IoU (YOLO26-seg).

    Positives, the anchor each GT keeps and the soft class targets then favour anchors whose mask
    is right, so scores rank detections by mask quality. The mask IoU is computed only for each
    GT's ``3 * topk`` best pairs by the box metric (``score**alpha * CIoU**beta``); other pairs get
    mask IoU 0. A predicted mask is ``coefficients @ protos > 0`` kept inside its box, as val
    binarises it; the GT mask is not cropped.
    """

    def pair_overlaps(
        self,
        mask: torch.Tensor,
        gt_bboxes: torch.Tensor,
        pd_bboxes: torch.Tensor,
        scores: torch.Tensor,
        coeffs: torch.Tensor,
        protos: torch.Tensor,
        gt_masks: torch.Tensor,
        proto_scale: float,
    ) -> torch.Tensor:
        """``(CIoU + mask IoU) / 2`` of the ``mask`` pairs, ``(P,)`` in ``mask.nonzero()`` order.

        Args:
            mask: ``(B, M, A)`` bool pairs; gt_bboxes ``(B, M, 4)``, pd_bboxes ``(B, A, 4)`` xyxy input px;
            scores: ``(B, M, A)`` each pair's predicted score of the GT's class;
            coeffs: ``(B, A, nm)`` mask coefficients; protos: ``(B, nm, Hm, Wm)``;
            gt_masks: ``(B, M, Hm, Wm)`` binary GT masks at the prototype resolution;
            proto_scale: prototype pixels per input pixel (1/4).
        """
        iou = super().pair_overlaps(mask, gt_bboxes, pd_bboxes, scores)
        box_metric = torch.zeros(mask.shape, dtype=iou.dtype, device=iou.device)
        box_metric[mask] = scores[mask].to(iou.dtype).pow(self.alpha) * iou.pow(self.beta) + self.eps
        chosen = self.topk_candidates(box_metric, 3 * self.topk) & mask
        mask_iou = torch.zeros(mask.shape, dtype=iou.dtype, device=iou.device)
        _, nm, mh, mw = protos.shape
        for b in range(mask.shape[0]):
            pairs = chosen[b].nonzero()
            if not len(pairs):
                continue
            anchors, inverse = pairs[:, 1].unique(return_inverse=True)
            logits = (coeffs[b, anchors].float() @ protos[b].float().view(nm, -1)).view(-1, mh, mw)
            predicted = crop_mask((logits > 0).float(), pd_bboxes[b, anchors].float() * proto_scale)
            truth = gt_masks[b].float().view(gt_masks.shape[1], -1)
            inter = truth @ predicted.view(len(anchors), -1).T
            union = truth.sum(1, keepdim=True) + predicted.view(len(anchors), -1).sum(1) - inter
            ious = inter / union.clamp(min=1)
            mask_iou[b, pairs[:, 0], pairs[:, 1]] = ious[pairs[:, 0], inverse].to(iou.dtype)
        return (iou + mask_iou[mask]) / 2
