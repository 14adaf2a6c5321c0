"""YOLO26-seg's training loss: its one-to-many and one-to-one branches trained together, plus the semantic loss.

* one-to-many: ``SegmentationLoss`` with 10 anchors per GT; one-to-one: 7 candidates of which each
  GT keeps 1, so its detections need no NMS. Both assign by box and mask overlap
  (``MaskAlignedAssigner``) and widen GT sides under the middle level's stride for the candidate
  test (small-target-aware assignment).
* ``o2m_weight`` ("ProgLoss"): the one-to-many loss weighs 0.8 in the first epoch and falls
  linearly to 0.1 in the last; the one-to-one loss weighs the rest.
* ``semantic_loss``: ``Proto26``'s training-only branch predicts each pixel's class (BCE + Dice),
  weighted by the box gain.

Shapes as in ``edgeseg.loss``: B images, C classes, ``Hm x Wm`` the prototype resolution (input / 4).
"""

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from edgeseg.loss import DEFAULT_GAINS, SegmentationLoss

O2M_FIRST, O2M_LAST = 0.8, 0.1  # the one-to-many loss weight in the first and the last epoch


def o2m_weight(epoch: int, epochs: int) -> float:
    """The one-to-many loss weight during 0-based ``epoch`` of ``epochs``: 0.8 falling linearly to 0.1 at the last epoch.

    The one-to-one loss weighs ``1 - o2m_weight``.
    """
    progress = min(epoch / max(epochs - 1, 1), 1.0)
    return O2M_LAST + (1.0 - progress) * (O2M_FIRST - O2M_LAST)


def semantic_targets(masks: torch.Tensor, cls: torch.Tensor, batch_idx: torch.Tensor, bs: int, nc: int, overlap: bool) -> torch.Tensor:
    """Each pixel's class, one-hot: ``(B, nc, Hm, Wm)`` float, all zero on background.

    Args:
        masks: ``(B, Hm, Wm)`` index maps (``overlap``: value k = the image's k-th instance, 1-based,
            the smaller instance drawn over the larger) or ``(N, Hm, Wm)`` binary masks in batch order.
        cls: ``(N, 1)`` classes; batch_idx: ``(N,)`` image of each instance; bs: B; nc: C.

    Where binary masks overlap, the smaller instance's class wins, as in the index maps.
    """
    hm, wm = masks.shape[-2:]
    labels = torch.full((bs, hm, wm), -1, dtype=torch.long, device=masks.device)
    classes = cls.view(-1).long().to(masks.device)
    image = batch_idx.view(-1).long().to(masks.device)
    for i in range(bs):
        own = classes[image == i]
        if overlap:
            index = masks[i].long()
            inside = (index > 0) & (index <= len(own))
            labels[i][inside] = own[index[inside] - 1]
        else:
            binary = masks[image == i].bool()
            for k in binary.flatten(1).sum(1).argsort(descending=True).tolist():  # largest first, smallest on top
                labels[i][binary[k]] = own[k]
    onehot = F.one_hot(labels.clamp(min=0), nc).permute(0, 3, 1, 2).float()
    return onehot * (labels >= 0).unsqueeze(1)


def semantic_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``0.5 * BCE + 0.5 * Dice`` of ``(B, C, h, w)`` logits against ``(B, C, Hm, Wm)`` one-hot targets (resized, nearest).

    BCE is the mean over every element; Dice is ``1 - (2 * sum(p * t) + 1) / (sum(p) + sum(t) + 1)``
    per image and class with ``p = sigmoid(logits)``, averaged over the classes then the images.
    """
    if targets.shape[-2:] != logits.shape[-2:]:
        targets = F.interpolate(targets, logits.shape[-2:], mode="nearest")
    targets = targets.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, targets)
    p = logits.sigmoid().flatten(2)
    t = targets.flatten(2)
    dice = 1 - (2 * (p * t).sum(-1) + 1) / (p.sum(-1) + t.sum(-1) + 1)
    return 0.5 * bce + 0.5 * dice.mean()


class EndToEndSegmentationLoss:
    """YOLO26-seg's loss over ``Segment26``'s training outputs (see the module docstring).

    ``loss(preds, batch) -> (total, items)``: ``items`` is ``(5,)`` detached box, seg, cls, l1
    (one-to-one branch, after their gains, as Ultralytics logs them) and sem; ``total`` carries the
    gradient: ``w * (one-to-many + sem * B) + (1 - w) * one-to-one`` with ``w = o2m_weight``.
    Call ``set_epoch`` before each epoch.
    """

    def __init__(
        self, nc: int, epochs: int, stride: tuple[int, ...] = (8, 16, 32), overlap_mask: bool = True, hyp: Mapping[str, float] | None = None
    ):
        small = float(stride[1] if len(stride) > 1 else stride[0])
        common = dict(stride=stride, reg_max=1, overlap_mask=overlap_mask, hyp=hyp, min_side=small, mask_aware=True)
        self.one2many = SegmentationLoss(nc, tal_topk=10, **common)
        self.one2one = SegmentationLoss(nc, tal_topk=7, tal_topk2=1, **common)
        self.nc, self.epochs, self.overlap = nc, epochs, overlap_mask
        self.names = (*self.one2one.names, "sem_loss")
        self.box_gain = float((hyp or {}).get("box", DEFAULT_GAINS["box"]))
        self.weight = o2m_weight(0, epochs)

    def set_epoch(self, epoch: int) -> None:
        """Weigh the branches for 0-based ``epoch`` (``o2m_weight``)."""
        self.weight = o2m_weight(epoch, self.epochs)

    def __call__(self, preds: dict, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The weighted loss.

        Args:
            preds: ``{"one2many": (levels, coeffs, protos), "one2one": (...), "semantic": (B, C, H/8, W/8)}``
                (``Segment26`` in training).
            batch: as ``SegmentationLoss``.

        Returns:
            total: scalar with gradient; items: ``(5,)`` detached box, seg, cls, l1, sem.
        """
        o2m_total, _ = self.one2many(preds["one2many"], batch)
        o2o_total, o2o_items = self.one2one(preds["one2one"], batch)
        semantic = preds["semantic"]
        bs = semantic.shape[0]
        targets = semantic_targets(batch["masks"].to(semantic.device), batch["cls"], batch["batch_idx"], bs, self.nc, self.overlap)
        sem = semantic_loss(semantic, targets) * self.box_gain
        total = self.weight * (o2m_total + sem * bs) + (1 - self.weight) * o2o_total
        return total, torch.cat((o2o_items, sem.detach().view(1)))
