"""Post-processing: NMS, box scaling, mask decoding, polygons, RLE and Results (numpy + OpenCV only)."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pycocotools.mask as mask_utils
import pytest

from edgeseg.runtimes.pipeline.polygons import masks_to_polygons
from edgeseg.runtimes.pipeline.postprocess import (
    non_max_suppression,
    pixel_windows,
    postprocess,
    process_masks,
    scale_boxes,
)
from edgeseg.runtimes.pipeline.preprocess import letterbox
from edgeseg.runtimes.pipeline.results import Results
from edgeseg.runtimes.pipeline.rle import rle_decode, rle_encode

NM = 32
SOURCE = (480, 640)  # non-square source (h, w)
INPUT_SHAPES = [(320, 320), (320, 480), (640, 640)]

# pycocotools' decode trips a numpy 2 deprecation inside its own C extension
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def build_preds(boxes_xywh, labels, scores, nc, nm=NM, n_anchors=None):
    """(4 + nc + nm, A) preds; anchor k gets coefficient row 0 = k so survivors can be traced back."""
    n = len(boxes_xywh)
    a = n_anchors or n
    preds = np.zeros((4 + nc + nm, a), np.float32)
    preds[:4, :n] = np.asarray(boxes_xywh, np.float32).T
    preds[4 + np.asarray(labels), np.arange(n)] = scores
    preds[4 + nc] = np.arange(a)
    return preds


def anchor_ids(coeffs):
    return coeffs[:, 0].astype(int).tolist()


def iou(a, b):
    union = np.logical_or(a, b).sum()
    return np.logical_and(a, b).sum() / union if union else 1.0


def source_info(input_shape, source=SOURCE):
    return letterbox(np.zeros((*source, 3), np.uint8), input_shape)[1]


# ----------------------------------------------------------------------------- NMS

HAND = dict(
    boxes_xywh=[
        (100, 100, 50, 50),  # 0: cls 0, .90
        (105, 100, 50, 50),  # 1: cls 0, .80, IoU .818 with 0 -> suppressed
        (105, 100, 50, 50),  # 2: cls 1, .85, overlaps 0 but another class
        (300, 300, 40, 40),  # 3: cls 2, .60
        (300, 300, 40, 40),  # 4: cls 2, .20, below conf
        (130, 100, 50, 50),  # 5: cls 0, .70, IoU .25 with 0
    ],
    labels=[0, 0, 1, 2, 2, 0],
    scores=[0.9, 0.8, 0.85, 0.6, 0.2, 0.7],
)


def test_nms_hand_built_class_aware():
    preds = build_preds(**HAND, nc=3, n_anchors=8)
    boxes, scores, classes, coeffs = non_max_suppression(preds, nc=3)
    assert anchor_ids(coeffs) == [0, 2, 5, 3]
    np.testing.assert_allclose(scores, [0.9, 0.85, 0.7, 0.6], rtol=1e-6)
    assert classes.tolist() == [0, 1, 0, 2]
    np.testing.assert_allclose(boxes[0], [75, 75, 125, 125])
    assert boxes.dtype == np.float32 and coeffs.shape == (4, NM) and classes.dtype == np.int64


def test_nms_hand_built_options():
    preds = build_preds(**HAND, nc=3, n_anchors=8)
    assert anchor_ids(non_max_suppression(preds, 3, agnostic=True)[3]) == [0, 5, 3]
    assert anchor_ids(non_max_suppression(preds, 3, classes=[2])[3]) == [3]
    assert anchor_ids(non_max_suppression(preds, 3, classes=[0, 1])[3]) == [0, 2, 5]
    assert anchor_ids(non_max_suppression(preds, 3, max_det=2)[3]) == [0, 2]
    assert anchor_ids(non_max_suppression(preds, 3, conf=0.65)[3]) == [0, 2, 5]
    assert anchor_ids(non_max_suppression(preds, 3, conf=0.1)[3]) == [0, 2, 5, 3]
    assert anchor_ids(non_max_suppression(preds, 3, iou=0.85)[3]) == [0, 2, 1, 5, 3]
    empty = non_max_suppression(preds, 3, conf=0.95)
    assert [a.shape for a in empty] == [(0, 4), (0,), (0,), (0, NM)]


def test_multi_label_nms_gives_an_anchor_one_candidate_per_class_above_conf():
    """Anchor 0 scores 0.9 for class 0 and 0.5 for class 2: single-label it is one detection, multi-label two (val's rule)."""
    preds = build_preds(**HAND, nc=3, n_anchors=8)
    preds[4 + 2, 0] = 0.5
    assert anchor_ids(non_max_suppression(preds, 3)[3]) == [0, 2, 5, 3]
    boxes, scores, classes, coeffs = non_max_suppression(preds, 3, multi_label=True)
    assert anchor_ids(coeffs) == [0, 2, 5, 3, 0] and classes.tolist() == [0, 1, 0, 2, 2]
    np.testing.assert_allclose(scores, [0.9, 0.85, 0.7, 0.6, 0.5], rtol=1e-6)
    np.testing.assert_array_equal(boxes[4], boxes[0])  # the same box, for its second class
    assert anchor_ids(non_max_suppression(preds, 3, multi_label=True, classes=[2])[3]) == [3, 0]
    assert anchor_ids(non_max_suppression(preds, 3, multi_label=True, agnostic=True)[3]) == [0, 5, 3]  # its own box suppresses it
    preds[4 + 1, 0] = 0.5  # a class-1 candidate on anchor 0 overlaps anchor 2 (0.85, class 1) by IoU .818
    assert non_max_suppression(preds, 3, multi_label=True)[2].tolist() == [0, 1, 0, 2, 2]
    assert non_max_suppression(preds, 3, multi_label=True, iou=0.85)[2].tolist() == [0, 1, 0, 0, 2, 1, 2]


def reference_nms(preds, nc, conf, iou_thr, max_det, classes, agnostic):
    """Plain-loop greedy NMS: anchor ids of the survivors, in score order."""
    scores = preds[4 : 4 + nc]
    cands = []
    for k in range(preds.shape[1]):
        label = int(np.argmax(scores[:, k]))
        score = float(scores[label, k])
        if score > conf and (classes is None or label in classes):
            cx, cy, w, h = (float(v) for v in preds[:4, k])
            cands.append((score, k, label, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
    cands.sort(key=lambda c: -c[0])  # stable: ties keep anchor order
    kept = []
    for score, k, label, (x1, y1, x2, y2) in cands:
        if len(kept) == max_det:
            break
        suppressed = False
        for _, _, other_label, (a1, b1, a2, b2) in kept:
            if not agnostic and other_label != label:
                continue
            inter = max(0.0, min(x2, a2) - max(x1, a1)) * max(0.0, min(y2, b2) - max(y1, b1))
            union = (x2 - x1) * (y2 - y1) + (a2 - a1) * (b2 - b1) - inter
            if inter / union > iou_thr:
                suppressed = True
                break
        if not suppressed:
            kept.append((score, k, label, (x1, y1, x2, y2)))
    return [k for _, k, _, _ in kept]


@pytest.mark.parametrize(
    "seed, conf, iou_thr, max_det, classes, agnostic",
    [
        (0, 0.25, 0.7, 300, None, False),
        (1, 0.25, 0.5, 300, None, True),
        (2, 0.05, 0.7, 40, None, False),
        (3, 0.10, 0.45, 3, None, False),
        (4, 0.10, 0.6, 300, [1, 3], False),
        (5, 0.30, 0.7, 7, None, True),
    ],
)
def test_nms_matches_reference_on_random_data(seed, conf, iou_thr, max_det, classes, agnostic):
    rng = np.random.default_rng(seed)
    nc, a = 5, 2100
    centres = rng.uniform(20, 300, (12, 2))
    pick = rng.integers(0, 12, a)
    preds = np.zeros((4 + nc + NM, a), np.float32)
    preds[:2] = (centres[pick] + rng.normal(0, 6, (a, 2))).T
    preds[2:4] = rng.uniform(10, 60, (2, a))
    preds[4 : 4 + nc] = rng.random((nc, a)) ** 3
    preds[4 + nc] = np.arange(a)
    got = non_max_suppression(preds, nc, conf=conf, iou=iou_thr, max_det=max_det, classes=classes, agnostic=agnostic)
    expected = reference_nms(preds, nc, conf, iou_thr, max_det, classes, agnostic)
    assert len(expected) > 2
    assert anchor_ids(got[3]) == expected


def test_nms_max_nms_keeps_highest_scores():
    preds = build_preds([(50 * i + 30, 30, 20, 20) for i in range(6)], [0] * 6, [0.3, 0.9, 0.4, 0.8, 0.5, 0.7], nc=1)
    assert anchor_ids(non_max_suppression(preds, 1, max_nms=3)[3]) == [1, 3, 5]


# ----------------------------------------------------------------------------- boxes


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
@pytest.mark.parametrize("source", [SOURCE, (640, 480)])
def test_scale_boxes_round_trip(input_shape, source):
    info = source_info(input_shape, source)
    h0, w0 = source
    src = np.array(
        [[37.3, 52.9, 301.4, 211.6], [0.0, 0.0, w0, h0], [w0 - 80.5, h0 - 33.2, w0 - 1.0, h0 - 0.5]], np.float32
    )
    inp = src * info.ratio + np.array([info.pad_x, info.pad_y] * 2, np.float32)
    np.testing.assert_allclose(scale_boxes(inp, info), src, atol=0.5)


def test_scale_boxes_matches_letterboxed_pixels_and_clips():
    image = np.zeros((*SOURCE, 3), np.uint8)
    x1, y1, x2, y2 = 100, 60, 420, 300
    image[y1:y2, x1:x2] = 255
    for input_shape in INPUT_SHAPES:
        lb, info = letterbox(image, input_shape)
        x, y, w, h = cv2.boundingRect((lb[..., 0] > 127).astype(np.uint8))
        back = scale_boxes(np.array([[x, y, x + w, y + h]], np.float32), info)[0]
        np.testing.assert_allclose(back, [x1, y1, x2, y2], atol=1.0 / info.ratio + 0.5)
    info = source_info((320, 320))
    clipped = scale_boxes(np.array([[-50, 0, 400, 500]], np.float32), info)[0]
    np.testing.assert_allclose(clipped, [0, 0, 640, 480])


# ----------------------------------------------------------------------------- masks


def circle_protos(info, input_shape, centre_src, radius_src):
    """Protos whose channel 0 is the signed distance (input px) to a circle given in source px."""
    h, w = input_shape[0] // 4, input_shape[1] // 4
    protos = np.zeros((NM, h, w), np.float32)
    cy, cx = np.mgrid[0:h, 0:w] * 4.0 + 2.0  # input px of each proto pixel centre
    ccx, ccy = (np.array(centre_src) * info.ratio + (info.pad_x, info.pad_y)).tolist()
    protos[0] = radius_src * info.ratio - np.hypot(cx - ccx, cy - ccy)
    protos[1] = 1.0
    return protos


def to_input(box_src, info):
    return np.array([box_src], np.float32) * info.ratio + np.array([info.pad_x, info.pad_y] * 2, np.float32)


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
@pytest.mark.parametrize("retina", [False, True])
def test_process_masks_decodes_circle_and_rectangle(input_shape, retina):
    info = source_info(input_shape)
    h0, w0 = SOURCE
    yy, xx = np.mgrid[0:h0, 0:w0] + 0.5
    centre, radius = (400.0, 260.0), 90.0
    expected_circle = np.hypot(xx - centre[0], yy - centre[1]) < radius

    protos = circle_protos(info, input_shape, centre, radius)
    rect = (60.0, 40.0, 300.0, 220.0)  # source px
    rect_input = to_input(rect, info)[0] / 4  # proto px
    ph, pw = protos.shape[1:]
    py, px = np.mgrid[0:ph, 0:pw] + 0.5
    inside = (px >= rect_input[0]) & (px < rect_input[2]) & (py >= rect_input[1]) & (py < rect_input[3])
    protos[2] = np.where(inside, 1.0, -1.0)
    expected_rect = (xx >= rect[0]) & (xx < rect[2]) & (yy >= rect[1]) & (yy < rect[3])

    coeffs = np.zeros((3, NM), np.float32)
    coeffs[0, 0] = 1.0  # circle, box much larger than the circle
    coeffs[1, 2] = 1.0  # rectangle
    coeffs[2, 0] = 1.0  # circle, box cutting it in half
    boxes_src = np.array(
        [(280, 140, 520, 380), (0, 0, 380, 300), (280, 140, 400, 380)],
        np.float32,
    )
    boxes = boxes_src * info.ratio + np.array([info.pad_x, info.pad_y] * 2, np.float32)
    masks = process_masks(protos, coeffs, boxes, info, input_shape, retina_masks=retina)

    assert masks.shape == (3, h0, w0) and masks.dtype == bool
    assert iou(masks[0], expected_circle) >= 0.97
    assert iou(masks[1], expected_rect) >= 0.9
    half = expected_circle & (xx < 400)
    assert iou(masks[2], half) >= 0.95
    for mask, (x1, y1, x2, y2) in zip(masks, boxes_src):
        outside = ~((xx >= x1) & (xx < x2) & (yy >= y1) & (yy < y2))
        assert not (mask & outside).any()


@pytest.mark.parametrize("retina", [False, True])
def test_process_masks_box_crop_uses_pixel_centres(retina):
    input_shape = (320, 480)
    info = source_info(input_shape)
    protos = np.ones((NM, 80, 120), np.float32)
    box_src = (10.2, 20.7, 100.4, 50.3)
    masks = process_masks(protos, np.ones((1, NM), np.float32), to_input(box_src, info), info, input_shape, retina)
    expected = np.zeros(SOURCE, bool)
    expected[21:50, 10:100] = True  # centres c + 0.5 in [x1, x2) and [y1, y2)
    np.testing.assert_array_equal(masks[0], expected)


@pytest.mark.parametrize("input_shape", INPUT_SHAPES)
def test_process_masks_fast_path_agrees_with_retina(input_shape):
    rng = np.random.default_rng(7)
    info = source_info(input_shape)
    h, w = input_shape[0] // 4, input_shape[1] // 4
    yy, xx = np.mgrid[0:h, 0:w]
    waves = [
        np.sin(xx / rng.uniform(2, 8) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(2, 8) + rng.uniform(0, 6))
        for _ in range(NM)
    ]
    protos = np.stack(waves).astype(np.float32)
    n = 20
    coeffs = rng.normal(0, 1, (n, NM)).astype(np.float32)
    xy = rng.uniform(0, 0.7, (n, 2)) * (input_shape[1], input_shape[0])
    wh = rng.uniform(0.1, 0.3, (n, 2)) * (input_shape[1], input_shape[0])
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    fast = process_masks(protos, coeffs, boxes, info, input_shape)
    retina = process_masks(protos, coeffs, boxes, info, input_shape, retina_masks=True)
    ious = [iou(a, b) for a, b in zip(fast, retina) if b.any()]
    assert len(ious) >= n // 2
    assert np.mean(ious) >= 0.95



def exact_masks(protos, coeffs, windows, info, input_shape):
    """Reference decode: bilinear logits sampled at the exact proto position of every source pixel centre (float64)."""
    nm, ph, pw = protos.shape
    h0, w0 = info.source_shape
    sx, sy = pw / input_shape[1], ph / input_shape[0]
    px = np.clip(((np.arange(w0) + 0.5) * info.ratio + info.pad_x) * sx - 0.5, 0, pw - 1)
    py = np.clip(((np.arange(h0) + 0.5) * info.ratio + info.pad_y) * sy - 0.5, 0, ph - 1)
    x0, y0 = np.minimum(px.astype(int), pw - 2), np.minimum(py.astype(int), ph - 2)
    fx, fy = px - x0, py - y0
    logits = np.einsum("nc,chw->nhw", coeffs.astype(np.float64), protos.astype(np.float64))
    rows = logits[:, y0] * (1 - fy)[None, :, None] + logits[:, y0 + 1] * fy[None, :, None]
    full = rows[:, :, x0] * (1 - fx) + rows[:, :, x0 + 1] * fx
    masks = np.zeros((len(coeffs), h0, w0), bool)
    for mask, logit, (ya, yb, xa, xb) in zip(masks, full, windows.tolist()):
        mask[ya:yb, xa:xb] = logit[ya:yb, xa:xb] > 0
    return masks


@pytest.mark.parametrize("source", [(480, 640), (12, 20), (500, 37), (1080, 1920), (333, 333)])
@pytest.mark.parametrize("input_shape", [(320, 320), (320, 480)])
def test_process_masks_matches_exact_bilinear_decode(source, input_shape):
    """The resize-based decode samples every source pixel centre to within half a pixel: masks agree with an exact float64 decode."""
    rng = np.random.default_rng(sum(source) + input_shape[1])
    info = source_info(input_shape, source)
    h, w = input_shape[0] // 4, input_shape[1] // 4
    yy, xx = np.mgrid[0:h, 0:w]
    protos = np.stack(
        [np.sin(xx / rng.uniform(3, 9) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(3, 9) + rng.uniform(0, 6)) for _ in range(NM)]
    ).astype(np.float32)
    n = 12
    coeffs = rng.normal(0, 1, (n, NM)).astype(np.float32)
    xy = rng.uniform(-0.1, 0.8, (n, 2)) * (input_shape[1], input_shape[0])
    wh = rng.uniform(0.05, 0.9, (n, 2)) * (input_shape[1], input_shape[0])
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    boxes[0] = (0, 0, input_shape[1], input_shape[0])  # the whole input, edges included
    masks = process_masks(protos, coeffs, boxes, info, input_shape)
    windows = pixel_windows(scale_boxes(boxes, info), source)
    expected = exact_masks(protos, coeffs, windows, info, input_shape)
    assert masks.shape == expected.shape
    for mask, ref, (ya, yb, xa, xb) in zip(masks, expected, windows.tolist()):
        outside = mask.copy()
        outside[ya:yb, xa:xb] = False
        assert not outside.any()
        area = max((yb - ya) * (xb - xa), 1)
        # samples move by at most half a source pixel: only pixels next to the mask edge may flip
        assert np.count_nonzero(mask != ref) <= max(0.03 * area, 2 + (yb - ya) + (xb - xa))


def test_pixel_windows_are_the_pixel_centres_inside_each_box():
    boxes = np.array([(10.2, 20.7, 100.4, 50.3), (-5, -5, 3000, 3000), (5.0, 5.0, 5.4, 9.0), (0, 0, 0.5, 0.5)], np.float32)
    windows = pixel_windows(boxes, (480, 640))
    np.testing.assert_array_equal(windows, [(21, 50, 10, 100), (0, 480, 0, 640), (5, 9, 5, 5), (0, 0, 0, 0)])

def test_process_masks_empty():
    info = source_info((320, 320))
    protos, coeffs = np.zeros((NM, 80, 80), np.float32), np.zeros((0, NM), np.float32)
    masks = process_masks(protos, coeffs, np.zeros((0, 4)), info, (320, 320))
    assert masks.shape == (0, *SOURCE)


def test_masks_to_polygons():
    masks = np.zeros((3, 60, 80), bool)
    masks[0, 10:20, 5:30] = True
    masks[1, 5:8, 5:8] = True
    masks[1, 20:50, 30:70] = True  # the larger blob wins
    polygons = masks_to_polygons(masks)
    assert polygons[0].dtype == np.float32 and polygons[0].shape == (4, 2)
    np.testing.assert_array_equal(polygons[0].min(0), [5, 10])
    np.testing.assert_array_equal(polygons[0].max(0), [29, 19])
    np.testing.assert_array_equal(polygons[1].min(0), [30, 20])
    assert polygons[2].shape == (0, 2)


# ----------------------------------------------------------------------------- RLE


def test_rle_matches_pycocotools():
    rng = np.random.default_rng(3)
    for t in range(60):
        h, w = rng.integers(1, 120, 2)
        kind = t % 4
        if kind == 0:
            mask = rng.random((h, w)) < rng.random()
        elif kind == 1:
            mask = np.zeros((h, w), bool)
            mask[rng.integers(0, h) : rng.integers(0, h + 1), rng.integers(0, w) : rng.integers(0, w + 1)] = True
        else:
            mask = np.full((h, w), kind == 2)
        ref = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        ours = rle_encode(mask)
        assert ours["counts"] == ref["counts"].decode("ascii")
        assert ours["size"] == [int(h), int(w)]
        np.testing.assert_array_equal(rle_decode(ours), mask)
        np.testing.assert_array_equal(rle_decode({"size": ref["size"], "counts": ref["counts"]}), mask)
        np.testing.assert_array_equal(mask_utils.decode(ours).astype(bool), mask)


def test_rle_large_runs_and_uncompressed_counts():
    mask = np.zeros((1500, 2000), bool)
    mask[3:1400, 7:1990] = True
    ref = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert rle_encode(mask)["counts"] == ref["counts"].decode("ascii")
    np.testing.assert_array_equal(rle_decode(rle_encode(mask)), mask)
    assert rle_decode({"size": [2, 3], "counts": [1, 2, 3]}).tolist() == [[False, True, False], [True, False, False]]
    with pytest.raises(ValueError):
        rle_decode({"size": [2, 3], "counts": [1, 2]})


# ----------------------------------------------------------------------------- Results


@pytest.fixture(scope="module")
def batch():
    """Two images (non-square letterbox at 320x480), each with a circle and a square object."""
    input_shape = (320, 480)
    sources = [SOURCE, (360, 360)]
    images = [np.full((*s, 3), 90, np.uint8) for s in sources]
    infos = [letterbox(im, input_shape)[1] for im in images]
    preds, protos = [], []
    for info in infos:
        p = circle_protos(info, input_shape, (200.0, 150.0), 70.0)
        sq = to_input((20.0, 230.0, 120.0, 330.0), info)[0] / 4
        py, px = np.mgrid[0 : p.shape[1], 0 : p.shape[2]] + 0.5
        p[2] = np.where((px >= sq[0]) & (px < sq[2]) & (py >= sq[1]) & (py < sq[3]), 1.0, -1.0)
        circle_box = to_input((125.0, 75.0, 275.0, 225.0), info)[0]
        square_box = to_input((15.0, 225.0, 125.0, 335.0), info)[0]
        xywh = [np.r_[(b[:2] + b[2:]) / 2, b[2:] - b[:2]] for b in (circle_box, square_box)]
        pr = build_preds(xywh, [0, 2], [0.91, 0.77], nc=3, n_anchors=630)
        pr[4 + 3 :, :2] = 0
        pr[4 + 3 + 0, 0] = 1.0
        pr[4 + 3 + 2, 1] = 1.0
        preds.append(pr)
        protos.append(p)
    results = postprocess(
        np.stack(preds),
        np.stack(protos),
        infos,
        input_shape,
        names={0: "ball", 1: "cup", 2: "box"},
        images=images,
        paths=["a.jpg", "b.jpg"],
    )
    return results, sources


def test_postprocess_batch(batch):
    results, sources = batch
    assert len(results) == 2
    for r, source in zip(results, sources):
        assert isinstance(r, Results) and len(r) == 2 and r.orig_shape == source
        assert r.masks.shape == (2, *source)
        np.testing.assert_allclose(r.boxes[0], [125, 75, 275, 225], atol=0.5)
        assert r.classes.tolist() == [0, 2]
        yy, xx = np.mgrid[0 : source[0], 0 : source[1]] + 0.5
        assert iou(r.masks[0], np.hypot(xx - 200, yy - 150) < 70) >= 0.95
    assert results[1].path == "b.jpg"


def test_results_json_and_coco(batch):
    r = batch[0][0]
    items = json.loads(r.to_json())
    assert len(items) == len(r) == 2
    assert items[0]["name"] == "ball" and items[1]["name"] == "box" and items[1]["class"] == 2
    assert set(items[0]["box"]) == {"x1", "y1", "x2", "y2"}
    assert len(items[0]["segments"]["x"]) == len(items[0]["segments"]["y"]) > 4

    coco = r.to_coco(image_id=42, category_ids={0: 1, 1: 2, 2: 3})
    assert [c["category_id"] for c in coco] == [1, 3] and coco[0]["image_id"] == 42
    x, y, w, h = coco[0]["bbox"]
    np.testing.assert_allclose([x, y, x + w, y + h], r.boxes[0], atol=1e-3)
    for entry, mask in zip(coco, r.masks):
        assert isinstance(entry["segmentation"]["counts"], str)
        np.testing.assert_array_equal(mask_utils.decode(entry["segmentation"]).astype(bool), mask)
    json.dumps(coco)


def test_results_save_txt_round_trip(batch, tmp_path):
    for r in batch[0]:
        h0, w0 = r.orig_shape
        path = tmp_path / "labels.txt"
        r.save_txt(path)
        lines = path.read_text().splitlines()
        assert len(lines) == len(r)
        for line, mask, cls in zip(lines, r.masks, r.classes):
            values = line.split()
            assert int(values[0]) == cls and all(len(v.split(".")[1]) == 6 for v in values[1:])
            polygon = np.array(values[1:], float).reshape(-1, 2) * (w0, h0)
            drawn = np.zeros((h0, w0), np.uint8)
            cv2.fillPoly(drawn, [np.round(polygon).astype(np.int32)], 1)
            assert iou(drawn.astype(bool), mask) >= 0.9
        r.save_txt(path, save_conf=True)
        assert float(path.read_text().splitlines()[0].split()[-1]) == pytest.approx(r.scores[0], abs=1e-6)


def test_results_plot(batch):
    r = batch[0][0]
    canvas = r.plot()
    assert canvas.shape == r.image.shape and canvas.dtype == np.uint8
    changed = (canvas != r.image).any(-1)
    assert changed[r.masks.any(0)].mean() > 0.95
    assert not changed[:, -40:].any()  # nothing drawn far from the detections
    np.testing.assert_array_equal(r.image, np.full_like(r.image, 90))  # the source is untouched
    bare = r.plot(masks=False, labels=False)
    assert (bare != r.image).any(-1).sum() < changed.sum()
    np.testing.assert_array_equal(r.plot(), canvas)  # deterministic colours


def test_results_empty():
    r = Results(np.zeros((0, 4)), [], [], np.zeros((0, 20, 30), bool), {}, (20, 30))
    assert len(r) == 0 and r.polygons == [] and json.loads(r.to_json()) == [] and r.to_coco(1) == []
    assert r.plot().shape == (20, 30, 3)
    with pytest.raises(ValueError):
        Results(np.zeros((2, 4)), [0.5], [0], np.zeros((1, 20, 30), bool), {}, (20, 30))


def test_runtime_modules_do_not_import_torch():
    code = (
        "import sys, edgeseg.runtimes.pipeline.postprocess, edgeseg.runtimes.pipeline.results, edgeseg.runtimes.pipeline.rle; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
