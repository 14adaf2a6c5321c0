"""The YOLOv8/11 instance-segmentation loss: CIoU + DFL box loss, BCE class loss, cropped BCE mask loss (each YOLO26 branch: L1 in place of DFL, edgeseg.loss26).

Shapes: B images, A anchors over all levels, C classes, N instances in the batch, ``nm`` (=32)
mask coefficients, ``Hm x Wm`` the prototype resolution (input / 4).
"""

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from edgeseg.nn.assigner import MaskAlignedAssigner, TaskAlignedAssigner
from edgeseg.nn.boxes import bbox2dist, bbox_iou, crop_mask, dist2bbox, make_anchors, xywh2xyxy

DEFAULT_GAINS = {"box": 7.5, "cls": 0.5, "dfl": 1.5}


def distribution_focal_loss(pred_dist: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DFL: cross-entropy to the two bins around a continuous target, weighted by proximity.

    Args:
        pred_dist: ``(n * 4, reg_max)`` bin logits.
        target: ``(n, 4)`` distances in ``[0, reg_max - 1)``.

    Returns:
        ``(n, 1)`` loss averaged over the 4 sides.
    """
    left = target.long()
    right = left + 1
    w_left = right - target
    w_right = 1 - w_left
    ce_left = F.cross_entropy(pred_dist, left.view(-1), reduction="none").view(left.shape)
    ce_right = F.cross_entropy(pred_dist, right.view(-1), reduction="none").view(left.shape)
    return (ce_left * w_left + ce_right * w_right).mean(-1, keepdim=True)


def distance_l1_loss(pred_ltrb: torch.Tensor, target_ltrb: torch.Tensor, strides: torch.Tensor, imgsz: torch.Tensor) -> torch.Tensor:
    """The box-side term of a head without DFL (reg_max 1, YOLO26): L1 of the four distances in 0–1 of the input.

    Args:
        pred_ltrb, target_ltrb: ``(n, 4)`` l, t, r, b distances from the anchor in grid units.
        strides: ``(n, 1)`` each anchor's stride in pixels.
        imgsz: ``(2,)`` input height, width in pixels (l and r are divided by the width, t and b by the height).

    Returns:
        ``(n, 1)`` the mean absolute difference over the four sides.
    """
    scale = strides / imgsz[[1, 0, 1, 0]]
    return (pred_ltrb * scale - target_ltrb * scale).abs().mean(-1, keepdim=True)


def padded_gt_masks(masks: torch.Tensor, batch_idx: torch.Tensor, bs: int, n_max: int, overlap: bool) -> torch.Tensor:
    """Each image's GT masks in its padded GT slots (``SegmentationLoss.pad_targets`` order): ``(B, n_max, Hm, Wm)`` bool.

    Args:
        masks: ``(B, Hm, Wm)`` index maps (``overlap``: pixel value k = the image's k-th instance,
            1-based) or ``(N, Hm, Wm)`` binary masks in batch order.
        batch_idx: ``(N,)`` image index of each instance; bs: images; n_max: slots per image.
    """
    if overlap:
        return masks.unsqueeze(1) == torch.arange(1, n_max + 1, device=masks.device).view(1, -1, 1, 1)
    out = torch.zeros((bs, n_max, *masks.shape[-2:]), dtype=torch.bool, device=masks.device)
    for i in range(bs):
        own = masks[batch_idx == i].bool()
        out[i, : len(own)] = own
    return out


class SegmentationLoss:
    """YOLOv8/11-seg training loss, a drop-in for Ultralytics' ``v8SegmentationLoss``.

    ``loss(preds, batch) -> (total, items)``: ``items`` is ``(4,)`` detached box, seg, cls, dfl
    losses after their gains (``names``; a head without DFL: l1 for dfl); ``total = items.sum() * B``
    with gradient. The mask loss uses the box gain. Each YOLO26 branch is one of these
    (``edgeseg.loss26``).
    """

    def __init__(
        self,
        nc: int,
        stride: tuple[int, ...] = (8, 16, 32),
        reg_max: int = 16,
        overlap_mask: bool = True,
        hyp: Mapping[str, float] | None = None,
        tal_topk: int = 10,
        tal_topk2: int | None = None,
        min_side: float = 0.0,
        mask_aware: bool = False,
    ):
        """
        Args:
            nc: number of classes.
            stride: stride of each head level.
            reg_max: DFL bins per box side; 1 for a head that regresses the four distances directly
                (YOLO26), whose ``dfl`` term is then ``distance_l1_loss``.
            overlap_mask: ``batch["masks"]`` is one ``(B, Hm, Wm)`` index map per image (pixel value
                k = k-th instance of that image, 1-based) instead of ``(N, Hm, Wm)`` binary masks.
            hyp: gains ``box``, ``cls``, ``dfl`` overriding 7.5, 0.5, 1.5; other keys are ignored.
            tal_topk: anchors the assigner picks per GT.
            tal_topk2, min_side: YOLO26's assignment options (``TaskAlignedAssigner``): keep each GT's
                ``tal_topk2`` best positives; widen GT sides under ``min_side`` px for the candidate test.
            mask_aware: assign by the mean of box CIoU and predicted-mask IoU (``MaskAlignedAssigner``, YOLO26).
        """
        self.nc = nc
        self.names = ("box_loss", "seg_loss", "cls_loss", "dfl_loss" if reg_max > 1 else "l1_loss")
        self.stride = tuple(float(s) for s in stride)
        self.reg_max = reg_max
        self.no = 4 * reg_max + nc
        self.overlap = overlap_mask
        hyp = hyp or {}
        self.gains = {k: float(hyp.get(k, v)) for k, v in DEFAULT_GAINS.items()}
        assigner = MaskAlignedAssigner if mask_aware else TaskAlignedAssigner
        self.assigner = assigner(topk=tal_topk, num_classes=nc, alpha=0.5, beta=6.0, topk2=tal_topk2, min_side=min_side)
        self.mask_aware = mask_aware

    def __call__(
        self, preds: tuple[list[torch.Tensor], torch.Tensor, torch.Tensor], batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute the loss.

        Args:
            preds: ``(feats, mask_coeffs, protos)``: feats a list of ``(B, 4 * reg_max + C, H/s, W/s)``
                per stride, mask_coeffs ``(B, nm, A)``, protos ``(B, nm, Hm, Wm)``.
            batch: ``cls`` ``(N, 1)``, ``bboxes`` ``(N, 4)`` normalised cx, cy, w, h, ``batch_idx`` ``(N,)``,
                ``masks`` ``(B, Hm', Wm')`` (overlap) or ``(N, Hm', Wm')`` (resized to ``Hm x Wm`` if needed).

        Returns:
            total: scalar, ``(box + seg + cls + dfl) * B``.
            items: ``(4,)`` detached box, seg, cls, dfl.
        """
        feats, pred_masks, protos = preds
        bs, _, mask_h, mask_w = protos.shape
        device, dtype = feats[0].device, feats[0].dtype
        loss = torch.zeros(4, device=device, dtype=dtype)

        pred_distri, pred_scores = torch.cat([f.view(bs, self.no, -1) for f in feats], 2).split(
            (4 * self.reg_max, self.nc), 1
        )
        pred_scores = pred_scores.permute(0, 2, 1).contiguous()
        pred_distri = pred_distri.permute(0, 2, 1).contiguous()
        pred_masks = pred_masks.permute(0, 2, 1).contiguous()

        imgsz = torch.tensor(feats[0].shape[2:], device=device, dtype=dtype) * self.stride[0]
        anchor_points, stride_tensor = make_anchors(feats, self.stride, 0.5)

        batch_idx = batch["batch_idx"].view(-1).to(device)
        gt_labels, gt_bboxes, mask_gt = self.pad_targets(
            batch_idx, batch["cls"].to(device, dtype), batch["bboxes"].to(device, dtype), bs, imgsz
        )

        masks = batch["masks"].to(device)
        if tuple(masks.shape[-2:]) != (mask_h, mask_w):
            masks = F.interpolate(masks[None].float(), (mask_h, mask_w), mode="nearest")[0]
        pair_inputs = {}
        if self.mask_aware:
            pair_inputs = dict(
                coeffs=pred_masks.detach(), protos=protos.detach(), proto_scale=mask_w / float(imgsz[1]),
                gt_masks=padded_gt_masks(masks, batch_idx, bs, gt_labels.shape[1], self.overlap),
            )  # fmt: skip
        pred_bboxes = self.bbox_decode(anchor_points, pred_distri)
        _, target_bboxes, target_scores, fg_mask, target_gt_idx = self.assigner(
            pred_scores.detach().sigmoid(),
            (pred_bboxes.detach() * stride_tensor).to(gt_bboxes.dtype),
            anchor_points * stride_tensor,
            gt_labels,
            gt_bboxes,
            mask_gt,
            **pair_inputs,
        )
        target_scores_sum = target_scores.sum().clamp(min=1)

        bce = F.binary_cross_entropy_with_logits(pred_scores, target_scores.to(dtype), reduction="sum")
        loss[2] = bce / target_scores_sum

        if fg_mask.any():
            loss[0], loss[3] = self.box_loss(
                pred_distri,
                pred_bboxes,
                anchor_points,
                target_bboxes / stride_tensor,
                target_scores,
                target_scores_sum,
                fg_mask,
                stride_tensor,
                imgsz,
            )
            loss[1] = self.mask_loss(fg_mask, masks, target_gt_idx, target_bboxes, batch_idx, protos, pred_masks, imgsz)
        else:
            loss[1] = (protos * 0).sum() + (pred_masks * 0).sum()

        loss[0] *= self.gains["box"]
        loss[1] *= self.gains["box"]
        loss[2] *= self.gains["cls"]
        loss[3] *= self.gains["dfl"]
        return loss.sum() * bs, loss.detach()

    @staticmethod
    def pad_targets(
        batch_idx: torch.Tensor, cls: torch.Tensor, bboxes: torch.Tensor, bs: int, imgsz: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Group the batch's instances per image, padded to the largest count M.

        Args:
            batch_idx: ``(N,)`` image index; cls: ``(N, 1)``; bboxes: ``(N, 4)`` normalised cx, cy, w, h;
            bs: B; imgsz: ``(2,)`` input height, width in pixels.

        Returns:
            gt_labels ``(B, M, 1)``, gt_bboxes ``(B, M, 4)`` xyxy pixels, mask_gt ``(B, M, 1)`` bool;
            instances of each image keep their batch order.
        """
        img_idx = batch_idx.long()
        counts = torch.bincount(img_idx, minlength=bs)
        n_max = int(counts.max()) if img_idx.numel() else 0
        gt_labels = torch.zeros((bs, n_max, 1), device=cls.device, dtype=cls.dtype)
        gt_bboxes = torch.zeros((bs, n_max, 4), device=cls.device, dtype=bboxes.dtype)
        if n_max:
            order = torch.argsort(img_idx, stable=True)
            starts = torch.cumsum(counts, 0) - counts
            slot = torch.arange(img_idx.numel(), device=cls.device) - starts[img_idx[order]]
            scale = imgsz[[1, 0, 1, 0]]
            gt_labels[img_idx[order], slot] = cls.view(-1, 1)[order]
            gt_bboxes[img_idx[order], slot] = xywh2xyxy(bboxes[order]) * scale
        mask_gt = (torch.arange(n_max, device=cls.device).view(1, -1) < counts.view(-1, 1)).unsqueeze(-1)
        return gt_labels, gt_bboxes, mask_gt

    def bbox_decode(self, anchor_points: torch.Tensor, pred_dist: torch.Tensor) -> torch.Tensor:
        """``(A, 2)`` anchors, ``(B, A, 4 * reg_max)`` logits (reg_max 1: the l, t, r, b distances) -> ``(B, A, 4)`` xyxy boxes in grid units."""
        if self.reg_max == 1:
            return dist2bbox(pred_dist, anchor_points, xywh=False)
        b, a, _ = pred_dist.shape
        proj = torch.arange(self.reg_max, device=pred_dist.device, dtype=pred_dist.dtype)
        dist = pred_dist.view(b, a, 4, self.reg_max).softmax(3).matmul(proj)
        return dist2bbox(dist, anchor_points, xywh=False)

    def box_loss(
        self,
        pred_dist: torch.Tensor,
        pred_bboxes: torch.Tensor,
        anchor_points: torch.Tensor,
        target_bboxes: torch.Tensor,
        target_scores: torch.Tensor,
        target_scores_sum: torch.Tensor,
        fg_mask: torch.Tensor,
        stride_tensor: torch.Tensor,
        imgsz: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(1 - CIoU) and DFL (reg_max 1: ``distance_l1_loss``) over positive anchors, weighted by their target score.

        Args:
            pred_dist: ``(B, A, 4 * reg_max)``; pred_bboxes, target_bboxes: ``(B, A, 4)`` xyxy grid units;
            anchor_points: ``(A, 2)``; target_scores: ``(B, A, C)``; target_scores_sum: scalar;
            fg_mask: ``(B, A)`` bool; stride_tensor: ``(A, 1)`` each anchor's stride in pixels;
            imgsz: ``(2,)`` input height, width in pixels.

        Returns:
            iou loss, dfl loss: scalars.
        """
        weight = target_scores.sum(-1)[fg_mask].unsqueeze(-1)
        iou = bbox_iou(pred_bboxes[fg_mask], target_bboxes[fg_mask], xywh=False, CIoU=True).unsqueeze(-1)
        loss_iou = ((1.0 - iou) * weight).sum() / target_scores_sum

        if self.reg_max == 1:
            target_ltrb = bbox2dist(anchor_points, target_bboxes)
            strides = stride_tensor.expand(fg_mask.shape[0], -1, -1)[fg_mask]
            dfl = distance_l1_loss(pred_dist[fg_mask], target_ltrb[fg_mask], strides, imgsz)
        else:
            target_ltrb = bbox2dist(anchor_points, target_bboxes, self.reg_max)
            dfl = distribution_focal_loss(pred_dist[fg_mask].view(-1, self.reg_max), target_ltrb[fg_mask])
        loss_dfl = (dfl * weight).sum() / target_scores_sum
        return loss_iou, loss_dfl

    def mask_loss(
        self,
        fg_mask: torch.Tensor,
        masks: torch.Tensor,
        target_gt_idx: torch.Tensor,
        target_bboxes: torch.Tensor,
        batch_idx: torch.Tensor,
        protos: torch.Tensor,
        pred_masks: torch.Tensor,
        imgsz: torch.Tensor,
    ) -> torch.Tensor:
        """BCE of each positive anchor's mask (coefficients @ protos) against its GT's mask.

        The per-pixel loss is kept inside the assigned GT box only and divided by the box area,
        then averaged over all positive anchors of the batch.

        Args:
            fg_mask: ``(B, A)`` bool; masks: ``(B, Hm, Wm)`` index maps or ``(N, Hm, Wm)`` binary;
            target_gt_idx: ``(B, A)``; target_bboxes: ``(B, A, 4)`` xyxy pixels; batch_idx: ``(N,)``;
            protos: ``(B, nm, Hm, Wm)``; pred_masks: ``(B, A, nm)``; imgsz: ``(2,)`` height, width.

        Returns:
            scalar loss.
        """
        _, _, mask_h, mask_w = protos.shape
        boxes_norm = target_bboxes / imgsz[[1, 0, 1, 0]]
        areas = (boxes_norm[..., 2] - boxes_norm[..., 0]) * (boxes_norm[..., 3] - boxes_norm[..., 1])
        mask_scale = torch.tensor([mask_w, mask_h, mask_w, mask_h], device=protos.device, dtype=protos.dtype)
        boxes_mask = boxes_norm * mask_scale

        loss = protos.new_zeros(())
        for i in range(fg_mask.shape[0]):
            fg = fg_mask[i]
            if not fg.any():
                loss = loss + (protos * 0).sum() + (pred_masks * 0).sum()
                continue
            gt_idx = target_gt_idx[i][fg]
            if self.overlap:
                gt_mask = (masks[i] == (gt_idx + 1).view(-1, 1, 1)).to(protos.dtype)
            else:
                gt_mask = masks[batch_idx == i][gt_idx].to(protos.dtype)
            logits = torch.einsum("nk,khw->nhw", pred_masks[i][fg], protos[i])
            bce = F.binary_cross_entropy_with_logits(logits, gt_mask, reduction="none")
            loss = loss + (crop_mask(bce, boxes_mask[i][fg]).mean(dim=(1, 2)) / areas[i][fg]).sum()
        return loss / fg_mask.sum()
