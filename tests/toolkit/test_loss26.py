"""YOLO26-seg's training loss, piece by piece against answers worked out by hand on tiny inputs."""

import math

import numpy as np
import pytest
import torch

from edgeseg.loss26 import EndToEndSegmentationLoss, o2m_weight, semantic_loss, semantic_targets
from edgeseg.nn.assigner import MaskAlignedAssigner, TaskAlignedAssigner
from edgeseg.nn.network import build_network


@pytest.mark.parametrize("epoch, epochs, expected", [(0, 30, 0.8), (29, 30, 0.1), (5, 11, 0.45), (0, 1, 0.8), (40, 30, 0.1)])
def test_one_to_many_weight_falls_from_08_to_01(epoch, epochs, expected):
    assert o2m_weight(epoch, epochs) == pytest.approx(expected)


def anchor_grid(n: int, stride: float) -> torch.Tensor:
    """(n * n, 2) anchor centres of an n x n grid at ``stride`` px, row-major."""
    ys, xs = torch.meshgrid(torch.arange(n) + 0.5, torch.arange(n) + 0.5, indexing="ij")
    return torch.stack((xs, ys), -1).view(-1, 2) * stride


def test_small_targets_get_anchor_centres_inside_them():
    """A 6 x 6 px GT at (10, 10) holds one stride-8 anchor centre (12, 12); widened to 16 px ([2, 18]) it holds four."""
    anchors = anchor_grid(4, 8.0)  # centres 4, 12, 20, 28
    gt = torch.tensor([[[7.0, 7.0, 13.0, 13.0]]])
    inside = TaskAlignedAssigner().candidates_in_gts(anchors, gt)[0, 0]
    assert anchors[inside].tolist() == [[12.0, 12.0]]
    inside = TaskAlignedAssigner(min_side=16.0).candidates_in_gts(anchors, gt)[0, 0]
    assert anchors[inside].tolist() == [[4.0, 4.0], [12.0, 4.0], [4.0, 12.0], [12.0, 12.0]]
    big = torch.tensor([[[0.0, 0.0, 30.0, 20.0]]])  # sides over 16 px are left alone
    assert torch.equal(TaskAlignedAssigner(min_side=16.0).candidates_in_gts(anchors, big), TaskAlignedAssigner().candidates_in_gts(anchors, big))


def assign(assigner, scores, boxes, anchors, gt_box, **pair_inputs):
    """One image, one GT of class 0: the assigner's (target_scores[:, 0], fg_mask)."""
    _, _, target_scores, fg, _ = assigner(
        scores, boxes, anchors, torch.zeros(1, 1, 1), gt_box, torch.ones(1, 1, 1, dtype=torch.bool), **pair_inputs
    )
    return target_scores[0, :, 0], fg[0]


def test_the_second_top_k_keeps_each_gts_best_aligned_anchor_only():
    anchors = anchor_grid(4, 8.0)
    gt = torch.tensor([[[0.0, 0.0, 32.0, 32.0]]])
    boxes = gt[0].expand(16, 4).clone().unsqueeze(0)  # every anchor predicts the GT box: CIoU 1
    scores = torch.linspace(0.1, 0.9, 16).view(1, 16, 1)  # anchor 15 aligns best, then 14, 13
    _, fg = assign(TaskAlignedAssigner(topk=3, num_classes=1), scores, boxes, anchors, gt)
    assert fg.nonzero().view(-1).tolist() == [13, 14, 15]
    target, fg = assign(TaskAlignedAssigner(topk=3, num_classes=1, topk2=1), scores, boxes, anchors, gt)
    assert fg.nonzero().view(-1).tolist() == [15]
    assert target[15].item() == pytest.approx(1.0)  # the kept anchor's target is the GT's best overlap


def test_mask_aware_overlap_is_the_mean_of_box_ciou_and_mask_iou():
    """Two anchors predict the GT box exactly (CIoU 1); one's mask is the GT's (IoU 1), the other's covers half of it (IoU 0.5)."""
    nm, hm = 2, 8
    protos = torch.zeros(1, nm, hm, hm)
    protos[0, 0, 2:6, 2:6] = 1.0  # prototype 0: the GT square
    protos[0, 1, 2:6, 2:4] = 1.0  # prototype 1: its left half
    protos -= 0.5  # > 0 inside, < 0 outside
    gt_masks = torch.zeros(1, 1, hm, hm, dtype=torch.bool)
    gt_masks[0, 0, 2:6, 2:6] = True
    anchors = torch.tensor([[12.0, 12.0], [20.0, 20.0]])
    gt = torch.tensor([[[8.0, 8.0, 24.0, 24.0]]])  # input px; at 1/4: [2, 6)
    boxes = gt[0].expand(2, 4).clone().unsqueeze(0)
    coeffs = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    scores = torch.full((1, 2, 1), 0.5)
    assigner = MaskAlignedAssigner(topk=10, num_classes=1)
    mask = torch.ones(1, 1, 2, dtype=torch.bool)
    overlaps = assigner.pair_overlaps(mask, gt, boxes, torch.full((1, 1, 2), 0.5), coeffs, protos, gt_masks, proto_scale=0.25)
    np.testing.assert_allclose(overlaps.numpy(), [1.0, 0.75], rtol=1e-6)
    target, fg = assign(assigner, scores, boxes, anchors, gt, coeffs=coeffs, protos=protos, gt_masks=gt_masks, proto_scale=0.25)
    assert fg.tolist() == [True, True]
    assert target[0].item() == pytest.approx(1.0) and target[1].item() == pytest.approx(0.75**6)  # align ∝ overlap**6


def test_semantic_targets_put_the_smaller_instance_on_top():
    index = torch.zeros(1, 4, 4)
    index[0, :, :3] = 1  # a large instance of class 2
    index[0, 1:3, 1:3] = 2  # a smaller one of class 0 drawn over it
    cls, batch_idx = torch.tensor([[2.0], [0.0]]), torch.tensor([0.0, 0.0])
    from_index = semantic_targets(index, cls, batch_idx, bs=1, nc=3, overlap=True)
    expected = torch.full((4, 4), -1)
    expected[:, :3] = 2
    expected[1:3, 1:3] = 0
    labels = torch.where(from_index.sum(1) > 0, from_index.argmax(1), torch.tensor(-1))[0]
    assert torch.equal(labels, expected)
    binary = torch.stack([index[0] >= 1, index[0] == 2]).float()  # the same instances as binary masks
    assert torch.equal(semantic_targets(binary, cls, batch_idx, bs=1, nc=3, overlap=False), from_index)


def test_semantic_loss_known_answer():
    """Zero logits: BCE ln 2; Dice per (image, class) 1 - (2 * 0.5 * T + 1) / (0.5 * N + T + 1), N pixels, T target pixels."""
    targets = torch.zeros(1, 2, 4, 4)
    targets[0, 0, :2] = 1  # class 0: 8 of 16 pixels; class 1: none
    loss = semantic_loss(torch.zeros(1, 2, 4, 4), targets)
    dice = ((1 - (8 + 1) / (8 + 8 + 1)) + (1 - 1 / (8 + 0 + 1))) / 2
    assert loss.item() == pytest.approx(0.5 * math.log(2) + 0.5 * dice, rel=1e-6)
    # targets at twice the logits' resolution are taken nearest
    assert semantic_loss(torch.zeros(1, 2, 2, 2), targets).item() == pytest.approx(
        semantic_loss(torch.zeros(1, 2, 2, 2), targets[..., ::2, ::2]).item()
    )


@pytest.fixture(scope="module")
def tiny_batch():
    masks = torch.zeros(2, 32, 32)
    masks[0, 4:12, 4:12] = 1
    masks[0, 20:22, 20:23] = 2
    masks[1, 10:30, 5:25] = 1
    return {
        "cls": torch.tensor([[0.0], [3.0], [1.0]]),
        "batch_idx": torch.tensor([0.0, 0.0, 1.0]),
        "bboxes": torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.67, 0.66, 0.09, 0.06], [0.47, 0.62, 0.62, 0.62]]),
        "masks": masks,
    }


def test_the_one_to_one_loss_trains_only_the_one_to_one_convs(tiny_batch, one_torch_thread):
    net = build_network("yolo26n-seg.yaml", names={i: str(i) for i in range(5)}).net.train()
    loss = EndToEndSegmentationLoss(5, epochs=10)
    outputs = net(torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0)))
    o2o, _ = loss.one2one(outputs["one2one"], tiny_batch)
    o2o.backward()
    moved = {name for name, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert moved and all(".one2one_" in name for name in moved)


def test_the_weighted_total_and_the_logged_items(tiny_batch, one_torch_thread):
    net = build_network("yolo26n-seg.yaml", names={i: str(i) for i in range(5)}).net.train()
    loss = EndToEndSegmentationLoss(5, epochs=3)
    outputs = net(torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0)))
    o2m, _ = loss.one2many(outputs["one2many"], tiny_batch)
    o2o, o2o_items = loss.one2one(outputs["one2one"], tiny_batch)
    targets = semantic_targets(tiny_batch["masks"], tiny_batch["cls"], tiny_batch["batch_idx"], 2, 5, True)
    sem = semantic_loss(outputs["semantic"], targets) * 7.5
    for epoch, w in ((0, 0.8), (2, 0.1)):
        loss.set_epoch(epoch)
        total, items = loss(outputs, tiny_batch)
        assert total.item() == pytest.approx((w * (o2m + 2 * sem) + (1 - w) * o2o).item(), rel=1e-5)
        np.testing.assert_allclose(items.numpy(), [*o2o_items.tolist(), sem.item()], rtol=1e-5)
    assert loss.names == ("box_loss", "seg_loss", "cls_loss", "l1_loss", "sem_loss")
