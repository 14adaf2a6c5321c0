"""edgeseg.runtimes.evaluation.metrics against pycocotools' COCOeval (bbox and segm) and hand-computed answers."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edgeseg.runtimes.evaluation.metrics import (
    IOU_THRESHOLDS,
    MatchAccumulator,
    SegmentEvaluator,
    box_iou,
    mask_iou,
)

pycocotools = pytest.importorskip("pycocotools")
from pycocotools import mask as mask_utils  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

H, W = 120, 160
TOL = 2e-3  # required agreement with COCOeval
EXACT = 1e-9  # what we actually expect (same arithmetic as COCOeval)


# ----------------------------------------------------------------------------- data


def draw(shape, h=H, w=W):
    """Shape dict -> (H, W) bool mask."""
    m = np.zeros((h, w), np.uint8)
    if shape["kind"] == "rect":
        x1, y1, x2, y2 = (int(round(v)) for v in shape["xyxy"])
        cv2.rectangle(m, (x1, y1), (x2, y2), 1, -1)
    else:
        cx, cy, ax, ay, ang = shape["ellipse"]
        cv2.ellipse(m, (int(round(cx)), int(round(cy))), (max(1, int(round(ax))), max(1, int(round(ay)))), ang, 0, 360, 1, -1)
    return m.astype(bool)


def mask_box(m):
    """Tight xyxy box of a mask, integer pixels (x2, y2 exclusive)."""
    ys, xs = np.nonzero(m)
    if len(xs) == 0:
        return np.zeros(4)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def random_shape(rng):
    cx, cy = rng.integers(25, W - 25), rng.integers(25, H - 25)
    if rng.random() < 0.5:
        bw, bh = rng.integers(8, 40), rng.integers(8, 35)
        return {"kind": "rect", "xyxy": (cx - bw // 2, cy - bh // 2, cx + bw // 2, cy + bh // 2)}
    return {"kind": "ellipse", "ellipse": (cx, cy, rng.integers(5, 22), rng.integers(5, 20), int(rng.integers(0, 180)))}


def jitter_shape(shape, rng, s):
    """Perturb a shape by up to ``s`` pixels."""
    if shape["kind"] == "rect":
        return {"kind": "rect", "xyxy": tuple(v + rng.integers(-s, s + 1) for v in shape["xyxy"])}
    cx, cy, ax, ay, ang = shape["ellipse"]
    d = rng.integers(-s, s + 1, size=4)
    return {"kind": "ellipse", "ellipse": (cx + d[0], cy + d[1], max(2, ax + d[2]), max(2, ay + d[3]), ang + int(rng.integers(-10, 11)))}


def shift_mask(m, dx, dy):
    out = np.zeros_like(m)
    h, w = m.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = m[max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)]
    return out


def make_gt(rng, n_images=6, nc=3, max_obj=5):
    images = []
    for _ in range(n_images):
        k = int(rng.integers(1, max_obj + 1))
        shapes = [random_shape(rng) for _ in range(k)]
        masks = np.stack([draw(s) for s in shapes])
        images.append(
            {
                "shapes": shapes,
                "gt_masks": masks,
                "gt_boxes": np.stack([mask_box(m) for m in masks]),
                "gt_classes": rng.integers(0, nc, size=k),
            }
        )
    return images


def preds(boxes, scores, classes, masks):
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    masks = np.asarray(masks, bool).reshape(-1, H, W)
    return {"pred_boxes": boxes, "pred_scores": np.asarray(scores, np.float64), "pred_classes": np.asarray(classes, np.int64), "pred_masks": masks}


def perfect_preds(img, rng):
    n = len(img["gt_classes"])
    return preds(img["gt_boxes"], rng.uniform(0.3, 1.0, n), img["gt_classes"], img["gt_masks"])


def random_fp(rng, n, nc, lo=0.01, hi=0.2):
    shapes = [random_shape(rng) for _ in range(n)]
    masks = np.stack([draw(s) for s in shapes]) if n else np.zeros((0, H, W), bool)
    boxes = np.stack([mask_box(m) for m in masks]) if n else np.zeros((0, 4))
    return preds(boxes, rng.uniform(lo, hi, n), rng.integers(0, nc, n), masks)


def cat(*ps):
    return {k: np.concatenate([p[k] for p in ps]) for k in ps[0]}


# ----------------------------------------------------------------------------- references


def ours(images, nc, max_det=100):
    ev = SegmentEvaluator(nc, max_det=max_det)
    for img in images:
        ev.update(
            img["pred_boxes"], img["pred_scores"], img["pred_classes"], img["pred_masks"],
            img["gt_boxes"], img["gt_classes"], img["gt_masks"],
        )  # fmt: skip
    return ev.result()


def coco_reference(images, nc, iou_type):
    """(mAP50-95, mAP50, mAP75, per-class AP50-95 with nan for absent) from COCOeval."""
    gt = {"images": [], "annotations": [], "categories": [{"id": c + 1, "name": str(c)} for c in range(nc)]}
    dts = []
    aid = 1
    for i, img in enumerate(images):
        gt["images"].append({"id": i + 1, "height": H, "width": W})
        for b, c, m in zip(img["gt_boxes"], img["gt_classes"], img["gt_masks"]):
            x1, y1, x2, y2 = (float(v) for v in b)
            gt["annotations"].append(
                {
                    "id": aid, "image_id": i + 1, "category_id": int(c) + 1, "iscrowd": 0,
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(m.sum()),
                    "segmentation": mask_utils.encode(np.asfortranarray(m.astype(np.uint8))),
                }
            )  # fmt: skip
            aid += 1
        for b, s, c, m in zip(img["pred_boxes"], img["pred_scores"], img["pred_classes"], img["pred_masks"]):
            d = {"image_id": i + 1, "category_id": int(c) + 1, "score": float(s)}
            if iou_type == "bbox":
                x1, y1, x2, y2 = (float(v) for v in b)
                d["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            else:
                d["segmentation"] = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            dts.append(d)
    with contextlib.redirect_stdout(io.StringIO()):
        cgt = COCO()
        cgt.dataset = gt
        cgt.createIndex()
        cdt = cgt.loadRes(dts)
        e = COCOeval(cgt, cdt, iou_type)
        e.evaluate()
        e.accumulate()
    prec = e.eval["precision"][:, :, :, 0, -1]  # (T, R, K), area all, maxDets 100
    assert e.params.maxDets[-1] == 100

    def mean(s):
        s = s[s > -1]
        return float(np.mean(s)) if s.size else -1.0

    per_class = np.array([mean(prec[:, :, k]) if (prec[:, :, k] > -1).any() else np.nan for k in range(nc)])
    return mean(prec), mean(prec[0]), mean(prec[5]), per_class


MAX_DIFF = {"box": 0.0, "mask": 0.0}  # observed, for the record


def assert_matches_coco(images, nc):
    res = ours(images, nc)
    for task, iou_type in (("box", "bbox"), ("seg", "segm")):
        m = getattr(res, task)
        ref_map, ref_50, ref_75, ref_cls = coco_reference(images, nc, iou_type)
        diffs = [abs(m.map - ref_map), abs(m.map50 - ref_50), abs(m.map75 - ref_75)]
        has = ~np.isnan(ref_cls)
        np.testing.assert_array_equal(np.flatnonzero(has), m.ap_class_index)
        diffs += list(np.abs(m.maps[has] - ref_cls[has]))
        assert np.all(m.maps[~has] == 0)
        key = "box" if task == "box" else "mask"
        MAX_DIFF[key] = max(MAX_DIFF[key], max(diffs))
        assert max(diffs) < TOL, (task, m.map, ref_map, m.map50, ref_50)
        assert max(diffs) < EXACT, (task, max(diffs))
    return res


# ----------------------------------------------------------------------------- scenarios


def scenario_perfect(rng):
    imgs = make_gt(rng)
    return [img | perfect_preds(img, rng) for img in imgs], 3


def scenario_shifted(rng):
    imgs = make_gt(rng)
    out = []
    for img in imgs:
        n = len(img["gt_classes"])
        d = rng.integers(-6, 7, size=(n, 2))
        masks = np.stack([shift_mask(m, int(dx), int(dy)) for m, (dx, dy) in zip(img["gt_masks"], d)])
        boxes = img["gt_boxes"] + np.concatenate([d, d], 1)
        out.append(img | preds(boxes, rng.uniform(0.3, 1, n), img["gt_classes"], masks))
    return out, 3


def scenario_missing(rng):
    imgs, nc = scenario_shifted(rng)
    for img in imgs:
        keep = rng.random(len(img["pred_scores"])) < 0.6
        for k in ("pred_boxes", "pred_scores", "pred_classes", "pred_masks"):
            img[k] = img[k][keep]
    return imgs, nc


def scenario_duplicates(rng):
    imgs = make_gt(rng)
    out = []
    for img in imgs:
        p = perfect_preds(img, rng)
        n = len(p["pred_scores"])
        dup = preds(
            p["pred_boxes"] + 2,
            np.where(rng.random(n) < 0.5, p["pred_scores"] * 0.9, np.minimum(p["pred_scores"] + 0.05, 1.0)),
            p["pred_classes"],
            np.stack([shift_mask(m, 2, 2) for m in p["pred_masks"]]),
        )
        out.append(img | cat(p, dup))
    return out, 3


def scenario_wrong_class(rng):
    imgs, nc = scenario_shifted(rng)
    for img in imgs:
        flip = rng.random(len(img["pred_classes"])) < 0.3
        img["pred_classes"] = np.where(flip, (img["pred_classes"] + 1) % nc, img["pred_classes"])
    return imgs, nc


def scenario_low_score_fp(rng):
    imgs, nc = scenario_shifted(rng)
    return [img | cat(preds(img["pred_boxes"], img["pred_scores"], img["pred_classes"], img["pred_masks"]), random_fp(rng, 4, nc)) for img in imgs], nc


def scenario_class_without_gt(rng):
    imgs, _ = scenario_shifted(rng)  # GT classes 0..2
    nc = 5  # class 3 only has (false) detections, class 4 has nothing at all
    for img in imgs:
        fp = random_fp(rng, 3, nc, 0.2, 0.9)
        fp["pred_classes"][:] = 3
        img.update(cat(preds(img["pred_boxes"], img["pred_scores"], img["pred_classes"], img["pred_masks"]), fp))
    return imgs, nc


def scenario_over_100(rng):
    imgs, nc = scenario_shifted(rng)
    # image 0: 150 detections of class 0 and 120 of class 1, true positives among them,
    # scores interleaved so that truncation to the top 100 per class drops some TPs
    img = imgs[0]
    img["gt_classes"][:] = 0
    extra = random_fp(rng, 270, nc, 0.0, 1.0)
    extra["pred_classes"][:150] = 0
    extra["pred_classes"][150:] = 1
    tps = perfect_preds(img, rng)
    tps["pred_scores"] = np.linspace(0.02, 0.6, len(tps["pred_scores"]))  # the lowest ones fall past 100
    img.update(cat(extra, tps))
    # image 1: > 100 detections spread over classes, none over 100 per class
    fp = random_fp(rng, 130, nc, 0.0, 1.0)
    imgs[1].update(cat(preds(imgs[1]["pred_boxes"], imgs[1]["pred_scores"], imgs[1]["pred_classes"], imgs[1]["pred_masks"]), fp))
    return imgs, nc


def scenario_ties_and_empty(rng):
    imgs, nc = scenario_duplicates(rng)
    for img in imgs:  # only three distinct scores: order among ties decides the curve
        img["pred_scores"] = np.array([0.3, 0.6, 0.9])[rng.integers(0, 3, len(img["pred_scores"]))]
    # an image with GT and no detection, one with detections and no GT
    g = make_gt(rng, n_images=2)
    imgs.append(g[0] | preds(np.zeros((0, 4)), [], [], np.zeros((0, H, W), bool)))
    fp = random_fp(rng, 3, nc, 0.3, 0.9)
    imgs.append({"gt_boxes": np.zeros((0, 4)), "gt_classes": np.zeros(0, np.int64), "gt_masks": np.zeros((0, H, W), bool)} | fp)
    return imgs, nc


def box_mask(b):
    m = np.zeros((H, W), bool)
    x1, y1, x2, y2 = (int(v) for v in b)
    m[y1:y2, x1:x2] = True
    return m


def scenario_iou_tie(rng):
    """d1 has the same IoU (9/11) with g1 and g2: COCOeval gives it the *later* GT (g2), so
    d2 (a copy of g1) is a TP too and AP is 1 at every threshold up to 0.80; taking g1
    would leave d2 with g2 at IoU 2/3 only (a FP from 0.70 on)."""
    g = np.array([[20, 30, 30, 40], [22, 30, 32, 40]], np.float64)
    d = np.array([[21, 30, 31, 40], [20, 30, 30, 40]], np.float64)
    img = {"gt_boxes": g, "gt_classes": np.array([0, 0]), "gt_masks": np.stack([box_mask(b) for b in g])}
    img |= preds(d, [0.9, 0.8], [0, 0], np.stack([box_mask(b) for b in d]))
    return [img], 1


SCENARIOS = {
    "perfect": scenario_perfect,
    "shifted": scenario_shifted,
    "missing": scenario_missing,
    "duplicates": scenario_duplicates,
    "wrong_class": scenario_wrong_class,
    "low_score_fp": scenario_low_score_fp,
    "class_without_gt": scenario_class_without_gt,
    "over_100": scenario_over_100,
    "ties_and_empty": scenario_ties_and_empty,
    "iou_tie": scenario_iou_tie,
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_matches_cocoeval(name):
    rng = np.random.default_rng(list(SCENARIOS).index(name) + 10)
    images, nc = SCENARIOS[name](rng)
    res = assert_matches_coco(images, nc)
    if name == "perfect":
        for t in (res.box, res.seg):
            assert t.map == pytest.approx(1.0, abs=1e-12) and t.map50 == pytest.approx(1.0, abs=1e-12)
            assert t.mp == pytest.approx(1.0) and t.mr == pytest.approx(1.0)
    elif name == "shifted":
        assert 0.05 < res.box.map < 0.95 and 0.05 < res.seg.map < 0.95
    elif name == "class_without_gt":
        np.testing.assert_array_equal(res.box.ap_class_index, [0, 1, 2])
        assert res.box.maps[3] == 0 and res.seg.maps[4] == 0 and res.box.p[3] == 0
    elif name == "iou_tie":
        for t in (res.box, res.seg):
            np.testing.assert_allclose(t.ap[0, :7], 1.0, atol=1e-12)  # IoU thresholds .50 ... .80
    elif name == "over_100":
        # truncation matters: keeping every detection gives a different (higher) AP
        assert ours(images, nc, max_det=1000).box.map != res.box.map


def test_randomized_matches_cocoeval():
    rng = np.random.default_rng(2024)
    nc = 3
    imgs = make_gt(rng, n_images=20, nc=nc, max_obj=6)
    for img in imgs:
        ps = []
        for shape, c, gb in zip(img["shapes"], img["gt_classes"], img["gt_boxes"]):
            if rng.random() < 0.15:
                continue  # missed
            m = draw(jitter_shape(shape, rng, int(rng.integers(0, 7))))
            b = (mask_box(m) if m.any() else gb) + rng.integers(-2, 3, 4)
            c = (c + 1) % nc if rng.random() < 0.1 else c
            ps.append(preds(b, [round(float(rng.uniform(0.05, 1.0)), 2)], [c], m[None]))
        ps.append(random_fp(rng, int(rng.integers(0, 4)), nc, 0.0, 0.7))
        img.update(cat(*ps))
    res = assert_matches_coco(imgs, nc)
    assert 0.1 < res.seg.map < 0.9
    assert 0 < res.box.mp <= 1 and 0 < res.box.mr <= 1


def test_hand_computed_known_answer():
    """2 GTs, 3 detections. d1 (0.9) IoU .82 with g1; d2 (0.8) IoU .62 with g1; d3 (0.7) IoU .57 with g2."""
    acc = MatchAccumulator()
    iou = np.array([[0.82, 0.0], [0.62, 0.0], [0.0, 0.57]])
    acc.add([0.9, 0.8, 0.7], [0, 0, 0], [0, 0], iou)
    m = acc.compute(nc=1)
    # t in {.50,.55}: TP FP TP -> recall .5,.5,1; envelope precision 1, 2/3, 2/3
    #   recall thresholds 0..0.50 (51) -> 1, 0.51..1 (50) -> 2/3
    ap_low = (51 + 50 * 2 / 3) / 101
    # t in {.60,...,.80}: TP FP FP -> precision 1 up to recall .5, then 0
    ap_mid = 51 / 101
    # t in {.85,.90,.95}: nothing matches
    expected = np.array([ap_low] * 2 + [ap_mid] * 5 + [0.0] * 3)
    np.testing.assert_allclose(m.ap[0], expected, atol=1e-12)
    assert m.map50 == pytest.approx(ap_low, abs=1e-12)
    assert m.map75 == pytest.approx(ap_mid, abs=1e-12)
    assert m.map == pytest.approx((2 * ap_low + 5 * ap_mid) / 10, abs=1e-12)
    # P/R at IoU 0.5 at max F1: all 3 kept (P 2/3, R 1, F1 .8) beats the top one (P 1, R .5)
    assert m.p[0] == pytest.approx(2 / 3, abs=1e-6) and m.r[0] == pytest.approx(1.0, abs=1e-6)
    assert m.mp == m.p[0] and m.mr == m.r[0]
    # PR curve at IoU 0.5 on the 101-point recall grid
    assert m.px.shape == (101,) and m.prec.shape == (1, 101)
    assert m.prec[0, 50] == pytest.approx(1.0) and m.prec[0, 51] == pytest.approx(2 / 3)


def test_greedy_match_prefers_best_iou_and_respects_taken():
    acc = MatchAccumulator()
    # d1 overlaps both GTs, best with g2 -> takes g2; d2 then gets g1
    acc.add([0.9, 0.8], [0, 0], [0, 0], np.array([[0.6, 0.9], [0.7, 0.0]]))
    m = acc.compute(1)
    assert m.ap50[0] == pytest.approx(1.0, abs=1e-12)


def test_max_det_per_image_and_class():
    acc = MatchAccumulator(max_det=2)
    # 3 detections of class 0: the TP has the lowest score and is dropped
    acc.add([0.9, 0.8, 0.1], [0, 0, 0], [0], np.array([[0.0], [0.0], [1.0]]))
    assert acc.compute(1).map == 0.0
    acc = MatchAccumulator(max_det=2)
    # the cap is per class: 2 of class 1 do not push out class 0's TP
    acc.add([0.9, 0.8, 0.1], [1, 1, 0], [0], np.array([[0.0], [0.0], [1.0]]))
    assert acc.compute(2).map == pytest.approx(1.0, abs=1e-12)


# ----------------------------------------------------------------------------- IoU


def test_box_iou_matches_pycocotools():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (20, 2))
    a = np.concatenate([xy, xy + rng.uniform(1, 50, (20, 2))], 1)
    xy = rng.uniform(0, 100, (15, 2))
    b = np.concatenate([xy, xy + rng.uniform(1, 50, (15, 2))], 1)
    ref = mask_utils.iou([[*r[:2], *(r[2:] - r[:2])] for r in a], [[*r[:2], *(r[2:] - r[:2])] for r in b], [0] * 15)
    np.testing.assert_allclose(box_iou(a, b), ref, atol=1e-12)
    assert box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10]]))[0, 0] == pytest.approx(1 / 3)
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 15)


def test_mask_iou_exact_counts():
    rng = np.random.default_rng(1)
    a = rng.random((7, 40, 50)) < 0.3
    b = rng.random((5, 40, 50)) < 0.5
    b[0] = False  # empty mask -> IoU 0
    brute = np.array([[(x & y).sum() / (x | y).sum() if (x | y).any() else 0.0 for y in b] for x in a])
    np.testing.assert_array_equal(mask_iou(a, b), brute)
    ref = mask_utils.iou([mask_utils.encode(np.asfortranarray(x.astype(np.uint8))) for x in a],
                         [mask_utils.encode(np.asfortranarray(y.astype(np.uint8))) for y in b], [0] * 5)  # fmt: skip
    np.testing.assert_allclose(mask_iou(a, b), ref, atol=1e-12)
    # sparse shapes at the image borders, overlapping and disjoint boxes, 0/1 uint8 input
    a = np.zeros((4, 30, 40), np.uint8)
    b = np.zeros((3, 30, 40), np.uint8)
    a[0, :5, :5] = a[1, 25:, 35:] = a[2, 10:20, 10:30] = 1
    a[1, 0, 0] = 1  # box spans the whole image, two far-apart blobs
    b[0, :3, :3] = b[1, 28:, 38:] = b[2, 15:25, 5:15] = 1
    brute = np.array([[(x & y).sum() / (x | y).sum() if (x | y).any() else 0.0 for y in b] for x in a])
    np.testing.assert_array_equal(mask_iou(a, b), brute)
    assert mask_iou(np.zeros((0, 30, 40), bool), b).shape == (0, 3)



def test_mask_iou_and_evaluator_with_window_crops_match_full_masks():
    """Masks given as crops over windows that hold every True pixel: mask_iou and SegmentEvaluator give identical answers."""
    rng = np.random.default_rng(5)
    h, w = 60, 80
    windows = []
    a = np.zeros((9, h, w), bool)
    for i in range(9):
        y0, x0 = rng.integers(0, h - 5), rng.integers(0, w - 5)
        y1, x1 = rng.integers(y0 + 1, h + 1), rng.integers(x0 + 1, w + 1)
        a[i, y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.6
        windows.append((y0, y1, x0, x1))
    windows[3] = (0, h, 0, w)  # a window larger than the mask's extent
    a[5] = False  # empty mask
    b = rng.random((4, h, w)) < 0.2
    crops = [mask[y0:y1, x0:x1] for mask, (y0, y1, x0, x1) in zip(a, windows)]
    np.testing.assert_array_equal(mask_iou(crops, b, np.array(windows)), mask_iou(a, b))
    with pytest.raises(ValueError, match="fit their windows"):
        mask_iou(list(a), b, np.array(windows))  # full masks are not crops

    boxes = np.array([(x0, y0, x1, y1) for y0, y1, x0, x1 in windows], np.float64)
    scores, classes = rng.random(9), rng.integers(0, 2, 9)
    gt_boxes, gt_classes = np.array([mask_box(m) for m in b]), np.array([0, 1, 0, 1])
    plain, windowed = SegmentEvaluator(2), SegmentEvaluator(2)
    plain.update(boxes, scores, classes, a, gt_boxes, gt_classes, b)
    windowed.update(boxes, scores, classes, crops, gt_boxes, gt_classes, b, pred_windows=np.array(windows))
    assert plain.result().results_dict == windowed.result().results_dict

def test_mask_iou_is_fast_at_640x480():
    import time

    rng = np.random.default_rng(2)
    a = np.zeros((30, 480, 640), bool)
    b = np.zeros((30, 480, 640), bool)
    for k in range(30):
        x, y = rng.integers(0, 550), rng.integers(0, 390)
        a[k, y : y + 80, x : x + 80] = True
        b[k, y + 5 : y + 85, x + 5 : x + 85] = True
    out = mask_iou(a, b)  # warm-up (BLAS threads, first page faults)
    assert out.shape == (30, 30)
    assert np.diag(out) == pytest.approx(75 * 75 / (2 * 6400 - 75 * 75))
    times = []
    for _ in range(3):
        t = time.perf_counter()
        mask_iou(a, b)
        times.append(time.perf_counter() - t)
    assert min(times) < 0.5, times  # ~7 ms idle, ~15 ms on a loaded 2-core box; generous on purpose


# ----------------------------------------------------------------------------- API


def test_results_dict_table_and_fitness():
    rng = np.random.default_rng(5)
    images, nc = scenario_shifted(rng)
    res = ours(images, nc)
    d = res.results_dict
    for s in ("B", "M"):
        for k in ("precision", "recall", "mAP50", "mAP50-95"):
            assert 0 <= d[f"metrics/{k}({s})"] <= 1
    assert d["metrics/mAP50-95(M)"] == res.seg.map
    assert res.fitness == pytest.approx(0.1 * (res.box.map50 + res.seg.map50) + 0.9 * (res.box.map + res.seg.map))
    assert d["fitness"] == res.fitness
    text = res.table(["cat", "dog", "bird"])
    lines = text.splitlines()
    assert "Box(P" in lines[0] and "Mask(P" in lines[0]
    assert lines[1].split()[:3] == ["all", str(len(images)), str(sum(len(i["gt_classes"]) for i in images))]
    assert len(lines) == 2 + len(res.box.ap_class_index)
    assert res.table({0: "a", 1: "b", 2: "c"}).splitlines()[2].split()[0] == "abc"[res.box.ap_class_index[0]]


def test_empty_and_bad_input():
    ev = SegmentEvaluator(2)
    ev.update(np.zeros((0, 4)), [], [], np.zeros((0, H, W), bool), np.zeros((0, 4)), [], np.zeros((0, H, W), bool))
    r = ev.result()
    assert r.box.map == 0.0 and r.seg.mp == 0.0 and len(r.box.ap_class_index) == 0 and r.box.seen == 1
    with pytest.raises(ValueError):
        ev.update(np.zeros((2, 4)), [0.5], [0], np.zeros((1, H, W), bool), np.zeros((0, 4)), [], np.zeros((0, H, W), bool))
    acc = MatchAccumulator()
    acc.add([0.5], [3], [0], np.zeros((1, 1)))
    with pytest.raises(ValueError):
        acc.compute(nc=2)


def test_iou_thresholds_are_cocos():
    assert len(IOU_THRESHOLDS) == 10 and IOU_THRESHOLDS[0] == 0.5 and IOU_THRESHOLDS[-1] == 0.95


def test_metrics_does_not_import_torch():
    code = "import sys, edgeseg.runtimes.evaluation.metrics; assert 'torch' not in sys.modules; assert 'pycocotools' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
