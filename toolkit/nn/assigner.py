"""Task-Aligned Assigner (TOOD), as YOLOv8/11 use it to pick the positive anchors of each GT.

Shapes: B images, A anchors, M ground truths per image (padded to the largest count, with
``mask_gt`` marking the real ones), C classes. Boxes are xyxy in input pixels.
"""

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.nn.boxes import bbox_iou


class TaskAlignedAssigner(nn.Module):
    """Assigns each GT the ``topk`` anchors with the best ``score**alpha * CIoU**beta``.

    Candidates are anchors whose centre lies strictly inside the GT box. An anchor claimed by
    several GTs keeps the one it overlaps most. Target scores are the one-hot class of the
    assigned GT times the alignment metric normalised per GT so that its best anchor gets the
    GT's best overlap.
    """

    def __init__(
        self, topk: int = 10, num_classes: int = 80, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9
    ):
        super().__init__()
        self.topk = topk
        self.num_classes = num_classes
        self.alpha = alpha
        self.beta = beta
        self.eps = eps

    @torch.no_grad()
    def forward(
        self,
        pd_scores: torch.Tensor,
        pd_bboxes: torch.Tensor,
        anc_points: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_bboxes: torch.Tensor,
        mask_gt: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Assign targets to anchors.

        Args:
            pd_scores: ``(B, A, C)`` predicted class probabilities (after sigmoid).
            pd_bboxes: ``(B, A, 4)`` predicted boxes, xyxy pixels.
            anc_points: ``(A, 2)`` anchor centres in pixels.
            gt_labels: ``(B, M, 1)`` class indices.
            gt_bboxes: ``(B, M, 4)`` GT boxes, xyxy pixels.
            mask_gt: ``(B, M, 1)`` 1 for real GTs, 0 for padding.

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
            pd_scores, pd_bboxes, gt_labels, gt_bboxes, mask_in_gts & mask_gt
        )
        mask_topk = self.topk_candidates(align_metric)
        mask_pos = mask_topk & mask_in_gts & mask_gt
        mask_pos = self.resolve_multiple_gts(mask_pos, overlaps)

        fg_mask = mask_pos.any(1)
        target_gt_idx = mask_pos.to(torch.uint8).argmax(1)
        target_labels, target_bboxes, target_scores = self.targets(gt_labels, gt_bboxes, target_gt_idx, fg_mask)

        align_metric = align_metric * mask_pos
        pos_align = align_metric.amax(-1, keepdim=True)
        pos_overlaps = (overlaps * mask_pos).amax(-1, keepdim=True)
        norm_align = (align_metric * pos_overlaps / (pos_align + self.eps)).amax(1).unsqueeze(-1)
        return target_labels, target_bboxes, target_scores * norm_align, fg_mask, target_gt_idx

    def candidates_in_gts(self, anc_points: torch.Tensor, gt_bboxes: torch.Tensor) -> torch.Tensor:
        """``(A, 2)`` anchors, ``(B, M, 4)`` boxes -> ``(B, M, A)`` bool: anchor centre strictly inside the box."""
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
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Alignment metric and CIoU (clamped at 0) for each (GT, anchor) pair, zero outside ``mask``.

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
        gt = gt_bboxes.unsqueeze(2).expand(-1, -1, n_anchors, -1)[mask]
        pd = pd_bboxes.unsqueeze(1).expand(-1, n_max_boxes, -1, -1)[mask]
        overlaps[mask] = bbox_iou(gt, pd, xywh=False, CIoU=True).clamp(0).to(overlaps.dtype)

        bbox_scores = torch.where(mask, scores, torch.zeros_like(scores))
        align_metric = bbox_scores.pow(self.alpha) * overlaps.pow(self.beta)
        return align_metric, overlaps

    def topk_candidates(self, metrics: torch.Tensor) -> torch.Tensor:
        """``(B, M, A)`` metrics -> ``(B, M, A)`` bool: among the GT's ``topk`` largest (padding GTs included)."""
        topk_idxs = torch.topk(metrics, min(self.topk, metrics.shape[-1]), dim=-1, largest=True).indices
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
