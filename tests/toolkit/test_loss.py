"""Box codecs, the Task-Aligned Assigner and the segmentation loss on small hand-built tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

from edgeseg.loss import SegmentationLoss
from edgeseg.nn.assigner import TaskAlignedAssigner
from edgeseg.nn.boxes import bbox2dist, bbox_iou, dist2bbox, make_anchors

NC = 3
IMGSZ = 64
STRIDES = (8, 16, 32)
REG_MAX = 16
NM = 32
MASK_SZ = IMGSZ // 4
# Non-overlapping GT boxes (xyxy pixels, multiples of 4 so they align with the mask grid),
# each with at most 10 anchor centres inside it over the three levels.
GT_BOXES = torch.tensor([[4.0, 0.0, 24.0, 28.0], [36.0, 32.0, 60.0, 48.0], [12.0, 36.0, 40.0, 60.0]])
GT_IMAGE = torch.tensor([0.0, 0.0, 1.0])
GT_CLS = torch.tensor([[0.0], [1.0], [2.0]])


def n_anchors(imgsz=IMGSZ):
    return sum((imgsz // s) ** 2 for s in STRIDES)


def make_batch(overlap=True, mask_scale=1, boxes=GT_BOXES, image=GT_IMAGE, cls=GT_CLS, bs=2):
    """A batch dict for the given xyxy pixel boxes, with box-shaped masks at MASK_SZ * mask_scale."""
    size = MASK_SZ * mask_scale
    per_pixel = 4 // mask_scale
    xywh = torch.cat(((boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]), 1) / IMGSZ
    binary = torch.zeros(len(boxes), size, size)
    for k, (x1, y1, x2, y2) in enumerate((boxes / per_pixel).long().tolist()):
        binary[k, y1:y2, x1:x2] = 1
    if overlap:
        masks = torch.zeros(bs, size, size)
        for b in range(bs):
            for j, k in enumerate(torch.nonzero(image == b).view(-1).tolist()):
                masks[b][binary[k] > 0] = j + 1
    else:
        masks = binary
    return {
        "img": torch.zeros(bs, 3, IMGSZ, IMGSZ),
        "cls": cls.clone(),
        "bboxes": xywh,
        "batch_idx": image.clone(),
        "masks": masks,
    }


def random_preds(seed=0, bs=2, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(bs, 4 * REG_MAX + NC, IMGSZ // s, IMGSZ // s, generator=g) for s in STRIDES]
    coeffs = torch.randn(bs, NM, n_anchors(), generator=g)
    protos = torch.randn(bs, NM, MASK_SZ, MASK_SZ, generator=g)
    feats = [t.requires_grad_(requires_grad) for t in feats]
    return feats, coeffs.requires_grad_(requires_grad), protos.requires_grad_(requires_grad)


def perfect_preds(bs=2):
    """Predictions that decode to the GT boxes, score the GT class, and reproduce the GT masks."""
    feats = [torch.zeros(bs, 4 * REG_MAX + NC, IMGSZ // s, IMGSZ // s) for s in STRIDES]
    flat = torch.cat([f.view(bs, 4 * REG_MAX + NC, -1) for f in feats], 2)
    flat[:, 4 * REG_MAX :] = -12.0
    coeffs = torch.zeros(bs, NM, n_anchors())
    protos = torch.full((bs, NM, MASK_SZ, MASK_SZ), 0.0)
    protos[:, 0] = -12.0
    anchors, strides = make_anchors(feats, STRIDES)
    anchors_px = anchors * strides
    for box, b, c in zip(GT_BOXES, GT_IMAGE.long(), GT_CLS.long().view(-1)):
        x1, y1, x2, y2 = (box / 4).long().tolist()
        protos[b, 0, y1:y2, x1:x2] = 12.0
        inside = ((anchors_px > box[:2]) & (anchors_px < box[2:])).all(1)
        ltrb = bbox2dist(anchors[inside], box / strides[inside])
        left = ltrb.floor()
        logits = torch.full((int(inside.sum()), 4, REG_MAX), -30.0)
        frac = ltrb - left
        logits.scatter_(2, left.long().unsqueeze(-1), (1 - frac).clamp(min=1e-12).log().unsqueeze(-1))
        logits.scatter_(2, left.long().unsqueeze(-1) + 1, frac.clamp(min=1e-12).log().unsqueeze(-1))
        idx = torch.nonzero(inside).view(-1)
        flat[b, : 4 * REG_MAX, idx] = logits.view(-1, 4 * REG_MAX).T
        flat[b, 4 * REG_MAX + c, idx] = 12.0
        coeffs[b, 0, idx] = 1.0
    splits = [(IMGSZ // s) ** 2 for s in STRIDES]
    feats = [chunk.reshape(f.shape) for chunk, f in zip(flat.split(splits, 2), feats)]
    return feats, coeffs, protos


# ---- boxes ----------------------------------------------------------------------------------


def test_bbox_iou_identical_boxes_is_one():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 9.0, 7.0]])
    assert torch.allclose(bbox_iou(boxes, boxes, xywh=False), torch.ones(2), atol=1e-5)
    assert torch.allclose(bbox_iou(boxes, boxes, xywh=False, CIoU=True), torch.ones(2), atol=1e-5)


def test_bbox_iou_disjoint_boxes():
    a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    b = torch.tensor([4.0, 0.0, 6.0, 2.0])
    assert bbox_iou(a, b, xywh=False).item() == pytest.approx(0.0, abs=1e-7)
    # centres 4 apart, enclosing box 6 x 2: CIoU = 0 - 16 / 40
    assert bbox_iou(a, b, xywh=False, CIoU=True).item() == pytest.approx(-0.4, abs=1e-5)


def test_bbox_iou_hand_computed():
    a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    b = torch.tensor([1.0, 1.0, 3.0, 3.0])
    assert bbox_iou(a, b, xywh=False).item() == pytest.approx(1 / 7, abs=1e-6)
    assert bbox_iou(a, b, xywh=False, CIoU=True).item() == pytest.approx(1 / 7 - 2 / 18, abs=1e-6)
    # different aspect ratios: IoU 0.5, centres 1 apart, enclosing 4 x 2
    c = torch.tensor([0.0, 0.0, 4.0, 2.0])
    v = 4 / math.pi**2 * (math.atan(2.0) - math.atan(1.0)) ** 2
    expected = 0.5 - 1 / 20 - v * v / (v - 0.5 + 1)
    assert bbox_iou(a, c, xywh=False, CIoU=True).item() == pytest.approx(expected, abs=1e-6)
    # the same pair in xywh
    a_xywh, c_xywh = torch.tensor([1.0, 1.0, 2.0, 2.0]), torch.tensor([2.0, 1.0, 4.0, 2.0])
    assert bbox_iou(a_xywh, c_xywh, CIoU=True).item() == pytest.approx(expected, abs=1e-6)


def test_bbox_iou_broadcasts():
    a = torch.rand(5, 1, 4) * 10
    a[..., 2:] += a[..., :2]
    b = torch.rand(1, 7, 4) * 10
    b[..., 2:] += b[..., :2]
    out = bbox_iou(a, b, xywh=False, CIoU=True)
    assert out.shape == (5, 7)
    assert out[2, 3].item() == pytest.approx(bbox_iou(a[2, 0], b[0, 3], xywh=False, CIoU=True).item(), abs=1e-6)


def test_dist2bbox_bbox2dist_round_trip():
    g = torch.Generator().manual_seed(1)
    anchors = torch.rand(20, 2, generator=g) * 10
    dist = torch.rand(20, 4, generator=g) * 5
    boxes = dist2bbox(dist, anchors, xywh=False)
    assert torch.allclose(bbox2dist(anchors, boxes), dist, atol=1e-5)
    xywh = dist2bbox(dist, anchors, xywh=True)
    assert torch.allclose(xywh[:, 2:], dist[:, :2] + dist[:, 2:], atol=1e-5)
    assert torch.allclose(xywh[:, :2], (boxes[:, :2] + boxes[:, 2:]) / 2, atol=1e-5)
    # channel-first layout, as the head decodes (B, 4, A) with (1, 2, A) anchors
    assert torch.allclose(dist2bbox(dist.T[None], anchors.T[None], xywh=False, dim=1)[0].T, boxes, atol=1e-6)
    # with reg_max the distances are clamped to [0, reg_max - 1.01]
    clamped = bbox2dist(torch.zeros(1, 2), torch.tensor([[-40.0, 1.0, 2.0, 3.0]]), reg_max=16)
    assert torch.allclose(clamped, torch.tensor([[14.99, 0.0, 2.0, 3.0]]))


def test_make_anchors_counts_and_centres():
    feats = [torch.zeros(1, 5, IMGSZ // s, IMGSZ // s) for s in STRIDES]
    points, strides = make_anchors(feats, STRIDES)
    assert points.shape == (84, 2) and strides.shape == (84, 1)
    assert points[0].tolist() == [0.5, 0.5]
    assert points[1].tolist() == [1.5, 0.5]  # row-major: x runs fastest
    assert points[8].tolist() == [0.5, 1.5]
    assert points[63].tolist() == [7.5, 7.5]
    assert points[64].tolist() == [0.5, 0.5] and strides[64].item() == 16
    assert points[-1].tolist() == [1.5, 1.5] and strides[-1].item() == 32
    assert (strides[:64] == 8).all() and (strides[64:80] == 16).all()


# ---- assigner -------------------------------------------------------------------------------


def grid_anchors(n=16, stride=4.0):
    feats = [torch.zeros(1, 1, n, n)]
    points, strides = make_anchors(feats, (stride,))
    return points * strides


def test_assigner_picks_topk_in_box_anchors_by_iou():
    anchors = grid_anchors()
    a = anchors.shape[0]
    gt = torch.tensor([10.0, 10.0, 40.0, 34.0])
    g = torch.Generator().manual_seed(0)
    pd_bboxes = (gt + (torch.rand(a, 4, generator=g) - 0.5) * 8)[None]
    pd_scores = torch.full((1, a, NC), 0.5)
    assigner = TaskAlignedAssigner(topk=10, num_classes=NC)
    labels, boxes, scores, fg, gt_idx = assigner(
        pd_scores, pd_bboxes, anchors, torch.tensor([[[1.0]]]), gt[None, None], torch.ones(1, 1, 1)
    )
    inside = ((anchors > gt[:2]) & (anchors < gt[2:])).all(1)
    ious = bbox_iou(gt, pd_bboxes[0], xywh=False, CIoU=True).clamp(0)
    expected = torch.topk(torch.where(inside, ious, torch.full_like(ious, -1.0)), 10).indices
    assert inside.sum() > 10
    assert fg[0].sum() == 10
    assert set(torch.nonzero(fg[0]).view(-1).tolist()) == set(expected.tolist())
    assert inside[fg[0]].all()
    assert (labels[0][fg[0]] == 1).all() and (gt_idx[0][fg[0]] == 0).all()
    assert torch.allclose(boxes[0][fg[0]], gt.expand(10, 4))
    assert (scores[0][~fg[0]] == 0).all() and (scores[0][:, [0, 2]] == 0).all()
    # normalised so the best anchor gets the GT's best IoU
    assert scores[0, :, 1].max().item() == pytest.approx(ious[expected].max().item(), rel=1e-4)


def two_gt_case(shared_box):
    """GT A and B overlap; anchor 85 (centre 22, 22) lies in both and predicts ``shared_box``."""
    anchors = grid_anchors()
    a = anchors.shape[0]
    gts = torch.tensor([[[0.0, 0.0, 32.0, 32.0], [16.0, 16.0, 48.0, 48.0]]])
    pd_bboxes = torch.cat((anchors - 1, anchors + 1), 1)[None].clone()
    pd_bboxes[0, 85] = torch.tensor(shared_box)
    pd_scores = torch.full((1, a, NC), 0.5)
    labels = torch.tensor([[[0.0], [2.0]]])
    return anchors, pd_scores, pd_bboxes, labels, gts


@pytest.mark.parametrize(("shared_box", "winner"), [((17.0, 17.0, 47.0, 47.0), 1), ((1.0, 1.0, 31.0, 31.0), 0)])
def test_assigner_anchor_in_two_gts_keeps_max_iou(shared_box, winner):
    anchors, pd_scores, pd_bboxes, labels, gts = two_gt_case(shared_box)
    assert anchors[85].tolist() == [22.0, 22.0]
    assigner = TaskAlignedAssigner(topk=10, num_classes=NC)
    for k in range(2):  # each GT alone claims the anchor
        one = slice(k, k + 1)
        _, _, _, fg, _ = assigner(pd_scores, pd_bboxes, anchors, labels[:, one], gts[:, one], torch.ones(1, 1, 1))
        assert fg[0, 85]
    target_labels, target_boxes, _, fg, gt_idx = assigner(
        pd_scores, pd_bboxes, anchors, labels, gts, torch.ones(1, 2, 1)
    )
    assert fg[0, 85] and gt_idx[0, 85] == winner
    assert target_labels[0, 85] == labels[0, winner, 0]
    assert torch.equal(target_boxes[0, 85], gts[0, winner])


def test_assigner_ignores_padding_and_no_gts():
    anchors = grid_anchors()
    a = anchors.shape[0]
    pd_bboxes = torch.cat((anchors - 4, anchors + 4), 1)[None].expand(2, -1, -1)
    pd_scores = torch.full((2, a, NC), 0.5)
    assigner = TaskAlignedAssigner(topk=10, num_classes=NC)
    gts = torch.tensor([[[0.0, 0.0, 20.0, 20.0]], [[0.0, 0.0, 0.0, 0.0]]])
    mask_gt = torch.tensor([[[1.0]], [[0.0]]])
    _, _, scores, fg, _ = assigner(pd_scores, pd_bboxes, anchors, torch.zeros(2, 1, 1), gts, mask_gt)
    assert fg[0].sum() > 0 and not fg[1].any() and (scores[1] == 0).all()
    empty = torch.zeros(2, 0, 1), torch.zeros(2, 0, 4), torch.zeros(2, 0, 1)
    labels, _, scores, fg, _ = assigner(pd_scores, pd_bboxes, anchors, *empty)
    assert not fg.any() and (scores == 0).all() and (labels == NC).all()


# ---- loss -----------------------------------------------------------------------------------


def test_loss_without_instances():
    feats, coeffs, protos = random_preds(requires_grad=True)
    batch = make_batch(boxes=torch.zeros(0, 4), image=torch.zeros(0), cls=torch.zeros(0, 1))
    total, items = SegmentationLoss(NC)((feats, coeffs, protos), batch)
    assert items.shape == (4,) and not items.requires_grad
    assert items[0] == 0 and items[1] == 0 and items[3] == 0
    logits = torch.cat([f.view(2, 4 * REG_MAX + NC, -1) for f in feats], 2)[:, 4 * REG_MAX :]
    expected = 0.5 * F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="sum")
    assert items[2].item() == pytest.approx(expected.item(), rel=1e-5)
    assert total.item() == pytest.approx(items.sum().item() * 2, rel=1e-6)
    total.backward()
    assert protos.grad is not None and coeffs.grad is not None


def test_loss_items_and_gains():
    preds = random_preds()
    batch = make_batch()
    total, items = SegmentationLoss(NC)(preds, batch)
    assert (items > 0).all()
    assert total.item() == pytest.approx(items.sum().item() * 2, rel=1e-5)
    _, scaled = SegmentationLoss(NC, hyp={"box": 1.5, "cls": 1.0, "dfl": 3.0, "lr0": 0.01})(preds, batch)
    assert torch.allclose(scaled, items * torch.tensor([0.2, 0.2, 2.0, 2.0]), rtol=1e-5)


def test_perfect_predictions_beat_random_ones():
    loss = SegmentationLoss(NC)
    batch = make_batch()
    _, perfect = loss(perfect_preds(), batch)
    _, rand = loss(random_preds(), batch)
    assert perfect[0] < 1e-3  # decoded boxes equal the GT boxes
    assert perfect[1] < 1e-3  # masks reproduced inside the boxes
    assert perfect[2] < 0.01 * rand[2]
    assert perfect.sum() < 0.1 * rand.sum()


def test_gradient_reaches_all_inputs():
    feats, coeffs, protos = random_preds(requires_grad=True)
    total, _ = SegmentationLoss(NC)((feats, coeffs, protos), make_batch())
    total.backward()
    for t in (*feats, coeffs, protos):
        assert t.grad is not None and t.grad.abs().sum() > 0 and torch.isfinite(t.grad).all()


def test_overlap_and_binary_masks_agree():
    preds = random_preds(seed=3)
    _, overlap = SegmentationLoss(NC, overlap_mask=True)(preds, make_batch(overlap=True))
    _, binary = SegmentationLoss(NC, overlap_mask=False)(preds, make_batch(overlap=False))
    assert torch.allclose(overlap, binary, rtol=1e-6)


@pytest.mark.parametrize("overlap", [True, False])
def test_masks_resized_to_proto_resolution(overlap):
    preds = random_preds(seed=4)
    loss = SegmentationLoss(NC, overlap_mask=overlap)
    _, at_proto = loss(preds, make_batch(overlap=overlap))
    _, full_res = loss(preds, make_batch(overlap=overlap, mask_scale=4))
    assert torch.allclose(at_proto, full_res, rtol=1e-6)


def test_instances_order_within_image_is_kept():
    """Interleaving the images in the batch arrays changes nothing for binary or overlap masks."""
    preds = random_preds(seed=5)
    order = torch.tensor([2, 0, 1])
    for overlap in (True, False):
        loss = SegmentationLoss(NC, overlap_mask=overlap)
        _, ref = loss(preds, make_batch(overlap=overlap))
        shuffled_batch = make_batch(overlap=overlap, boxes=GT_BOXES[order], image=GT_IMAGE[order], cls=GT_CLS[order])
        _, shuffled = loss(preds, shuffled_batch)
        assert torch.allclose(ref, shuffled, rtol=1e-6)


def test_adam_reduces_loss():
    torch.manual_seed(0)
    feats, coeffs, protos = random_preds(seed=6)
    params = [torch.nn.Parameter(t) for t in (*feats, coeffs, protos)]
    opt = torch.optim.Adam(params, lr=0.1)
    loss = SegmentationLoss(NC)
    batch = make_batch()
    first = None
    for _ in range(100):
        total, items = loss((params[:3], params[3], params[4]), batch)
        first = (total.item(), items) if first is None else first
        opt.zero_grad()
        total.backward()
        opt.step()
    final, final_items = loss((params[:3], params[3], params[4]), batch)
    assert final.item() < 0.2 * first[0]
    assert (final_items[:3] < 0.2 * first[1][:3]).all()  # box, seg, cls
    assert final_items[3] < first[1][3]  # DFL is bounded below by the entropy of the target bins
