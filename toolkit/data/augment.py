"""Training augmentation of an image and its instance polygons together (numpy + OpenCV).

The pipeline and its default hyperparameters follow Ultralytics YOLO11-seg: mosaic of 4 on a
2s x 2s canvas, random affine back to s x s, HSV jitter, flips; polygons are transformed as
densely resampled points, boxes recomputed from the points that land in the image, and
instances filtered as Ultralytics' ``box_candidates`` does. Every random draw comes from the
``np.random.Generator`` passed in. Polygons here are lists of (k, 2) float arrays of x, y in
pixels of the current image, with pixel i covering [i, i + 1).
"""

from __future__ import annotations

import cv2
import numpy as np

from edgeseg.runtimes.pipeline.preprocess import PAD_VALUE

DEFAULT_HYP: dict[str, float] = {
    "mosaic": 1.0,  # probability
    "degrees": 0.0,
    "translate": 0.1,  # fraction of the output size
    "scale": 0.5,  # gain drawn from [1 - scale, 1 + scale]
    "shear": 0.0,  # degrees
    "perspective": 0.0,
    "hsv_h": 0.015,  # fractions
    "hsv_s": 0.7,
    "hsv_v": 0.4,
    "flipud": 0.0,  # probabilities
    "fliplr": 0.5,
}
SEGMENT_POINTS = 1000  # points per polygon before the affine (Ultralytics resamples to 1000 too)
MASK_RATIO = 4  # masks are drawn at 1/4 of the image size, the prototype resolution
_WH_THR, _AR_THR, _AREA_THR = 2.0, 100.0, 0.01  # box_candidates; Ultralytics uses area 0.01 when there are segments
_SUBPIXEL_BITS = 4  # cv2.fillPoly fixed-point shift


def resample_polygon(poly: np.ndarray, n: int = SEGMENT_POINTS) -> np.ndarray:
    """Densify a closed polygon so that clipping and box extents stay accurate after warping.

    Args:
        poly: (k, 2) vertices.
        n: target count.

    Returns:
        (max(n, k), 2) float32 points along the closed outline: every original vertex plus
        ``n - k`` points spaced evenly by arc length, in outline order.
    """
    k = len(poly)
    if k >= n:
        return poly.astype(np.float32)
    closed = np.concatenate([poly, poly[:1]]).astype(np.float64)
    cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(closed, axis=0).T))])
    t = np.sort(np.concatenate([cum[:-1], np.linspace(0.0, cum[-1], n - k, endpoint=False)]), kind="stable")
    return np.stack([np.interp(t, cum, closed[:, 0]), np.interp(t, cum, closed[:, 1])], 1).astype(np.float32)


def _extents(segments: list[np.ndarray]) -> np.ndarray:
    """(n, 4) float32 x1, y1, x2, y2 extent of each polygon."""
    if not segments:
        return np.zeros((0, 4), np.float32)
    return np.array([np.concatenate([s.min(0), s.max(0)]) for s in segments], np.float32)


def mosaic4(
    tiles: list[tuple[np.ndarray, list[np.ndarray], np.ndarray]], s: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Place 4 images around a random centre of a (2s, 2s) grey canvas.

    Args:
        tiles: 4 of (image (h, w, 3) uint8 with max(h, w) <= s, polygons in its pixels, cls (n,)).
        s: the output size of the whole pipeline (the canvas is 2s).
        rng: draws the centre, uniform in [s/2, 3s/2) on each axis.

    Returns:
        The (2s, 2s, 3) canvas, the polygons in canvas pixels clipped to it, and their cls (m,);
        instances left with no extent after clipping are dropped.
    """
    canvas = np.full((2 * s, 2 * s, 3), PAD_VALUE, np.uint8)
    yc, xc = (int(rng.uniform(s // 2, 2 * s - s // 2)) for _ in range(2))
    segments, classes = [], []
    for i, (img, segs, cls) in enumerate(tiles):
        h, w = img.shape[:2]
        if i == 0:  # top left: the tile's bottom-right corner at the centre
            x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
            x1b, y1b, x2b, y2b = w - (x2a - x1a), h - (y2a - y1a), w, h
        elif i == 1:  # top right
            x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, 2 * s), yc
            x1b, y1b, x2b, y2b = 0, h - (y2a - y1a), min(w, x2a - x1a), h
        elif i == 2:  # bottom left
            x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(2 * s, yc + h)
            x1b, y1b, x2b, y2b = w - (x2a - x1a), 0, w, min(y2a - y1a, h)
        else:  # bottom right
            x1a, y1a, x2a, y2a = xc, yc, min(xc + w, 2 * s), min(2 * s, yc + h)
            x1b, y1b, x2b, y2b = 0, 0, min(w, x2a - x1a), min(y2a - y1a, h)
        canvas[y1a:y2a, x1a:x2a] = img[y1b:y2b, x1b:x2b]
        shift = np.array([x1a - x1b, y1a - y1b], np.float32)
        segments += [np.clip(seg + shift, 0, 2 * s) for seg in segs]
        classes.append(cls)
    ext = _extents(segments)
    keep = (ext[:, 2] > ext[:, 0]) & (ext[:, 3] > ext[:, 1])
    return canvas, [seg for seg, k in zip(segments, keep) if k], np.concatenate(classes)[keep]


def random_affine(
    img: np.ndarray,
    segments: list[np.ndarray],
    cls: np.ndarray,
    rng: np.random.Generator,
    hyp: dict[str, float],
    border: int = 0,
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray]:
    """Random perspective/rotation/scale/shear/translation of an image and its polygons.

    ``M = T @ S @ R @ P @ C`` as in Ultralytics: C centres the input, P perspective, R rotation
    and scale gain, S shear, T translates to a random point near the output centre.

    Args:
        img: (H, W, 3) uint8.
        segments: n polygons in ``img`` pixels.
        cls: (n,) class ids.
        rng: the sample's generator.
        hyp: ``degrees``, ``translate``, ``scale``, ``shear``, ``perspective`` (see DEFAULT_HYP).
        border: pixels added on each side of the output; -s/2 after a 2s mosaic gives s x s.

    Returns:
        The (H + 2*border, W + 2*border, 3) image, the kept polygons in its pixels (clipped to
        their boxes), their cls (m,) and boxes (m, 4) float32 x1, y1, x2, y2 in pixels: the
        extent of each polygon's points inside the image. Instances whose box is <= 2 px wide
        or high, keeps <= 1% of its scaled pre-warp box area, or has aspect ratio >= 100 are dropped.
    """
    out_h, out_w = img.shape[0] + 2 * border, img.shape[1] + 2 * border
    C = np.eye(3)
    C[0, 2], C[1, 2] = -img.shape[1] / 2, -img.shape[0] / 2
    P = np.eye(3)
    P[2, 0], P[2, 1] = rng.uniform(-hyp["perspective"], hyp["perspective"], 2)
    R = np.eye(3)
    angle = rng.uniform(-hyp["degrees"], hyp["degrees"])
    gain = rng.uniform(1 - hyp["scale"], 1 + hyp["scale"])
    R[:2] = cv2.getRotationMatrix2D(center=(0, 0), angle=angle, scale=gain)
    S = np.eye(3)
    S[0, 1], S[1, 0] = np.tan(np.deg2rad(rng.uniform(-hyp["shear"], hyp["shear"], 2)))
    T = np.eye(3)
    T[0, 2] = rng.uniform(0.5 - hyp["translate"], 0.5 + hyp["translate"]) * out_w
    T[1, 2] = rng.uniform(0.5 - hyp["translate"], 0.5 + hyp["translate"]) * out_h
    M = T @ S @ R @ P @ C
    fill = (PAD_VALUE,) * 3
    if hyp["perspective"]:
        img = cv2.warpPerspective(img, M, dsize=(out_w, out_h), borderValue=fill)
    else:
        img = cv2.warpAffine(img, M[:2], dsize=(out_w, out_h), borderValue=fill)
    if not segments:
        return img, [], cls, np.zeros((0, 4), np.float32)

    before = _extents(segments) * gain
    counts = np.array([len(seg) for seg in segments])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    owner = np.repeat(np.arange(len(segments)), counts)
    src = np.concatenate(segments).astype(np.float64)
    pts = src @ M[:2, :2].T + M[:2, 2]
    if hyp["perspective"]:
        pts /= (src @ M[2, :2] + M[2, 2])[:, None]
    x, y = pts[:, 0], pts[:, 1]
    inside = (x >= 0) & (y >= 0) & (x <= out_w) & (y <= out_h)
    boxes = np.stack(
        [
            np.minimum.reduceat(np.where(inside, x, np.inf), starts),
            np.minimum.reduceat(np.where(inside, y, np.inf), starts),
            np.maximum.reduceat(np.where(inside, x, -np.inf), starts),
            np.maximum.reduceat(np.where(inside, y, -np.inf), starts),
        ],
        1,
    )
    boxes[np.add.reduceat(inside, starts) == 0] = 0.0
    pts[:, 0] = x.clip(boxes[owner, 0], boxes[owner, 2])
    pts[:, 1] = y.clip(boxes[owner, 1], boxes[owner, 3])

    w1, h1 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w2, h2 = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    aspect = np.maximum(w2 / (h2 + 1e-16), h2 / (w2 + 1e-16))
    keep = (w2 > _WH_THR) & (h2 > _WH_THR) & (w2 * h2 / (w1 * h1 + 1e-16) > _AREA_THR) & (aspect < _AR_THR)
    parts = np.split(pts.astype(np.float32), starts[1:])
    return img, [p for p, k in zip(parts, keep) if k], cls[keep], boxes[keep].astype(np.float32)


def augment_hsv(img: np.ndarray, rng: np.random.Generator, hgain: float, sgain: float, vgain: float) -> None:
    """Jitter hue, saturation and value of a (H, W, 3) uint8 BGR image in place, through lookup tables.

    Hue is shifted by up to ``hgain`` of the circle, saturation and value scaled by up to
    ``1 +- sgain`` / ``1 +- vgain``; saturation 0 stays 0 (greys keep their colour).
    """
    if not (hgain or sgain or vgain):
        return
    r = rng.uniform(-1, 1, 3) * np.array([hgain, sgain, vgain])
    x = np.arange(256, dtype=np.float64)
    lut_hue = ((x + r[0] * 180) % 180).astype(np.uint8)
    lut_sat = np.clip(x * (1 + r[1]), 0, 255).astype(np.uint8)
    lut_sat[0] = 0
    lut_val = np.clip(x * (1 + r[2]), 0, 255).astype(np.uint8)
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR, dst=img)


def flip(
    img: np.ndarray, segments: list[np.ndarray], boxes: np.ndarray, horizontal: bool
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Mirror a (H, W, 3) image, its polygons and (n, 4) x1, y1, x2, y2 boxes left-right or up-down."""
    h, w = img.shape[:2]
    axis, size = (0, w) if horizontal else (1, h)
    img = np.ascontiguousarray(img[:, ::-1] if horizontal else img[::-1])
    flipped = []
    for seg in segments:
        seg = seg.copy()
        seg[:, axis] = size - seg[:, axis]
        flipped.append(seg)
    boxes = boxes.copy()
    boxes[:, [axis, axis + 2]] = size - boxes[:, [axis + 2, axis]]
    return img, flipped, boxes


def polygons_to_masks(
    segments: list[np.ndarray], shape: tuple[int, int], overlap: bool, ratio: int = MASK_RATIO
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise polygons at 1/``ratio`` of the image size.

    A reduced pixel is set when about half of it is inside the polygon: each polygon is filled
    at full resolution (sub-pixel vertices through ``cv2.fillPoly``'s fixed-point shift), only
    over its own extent, and each ratio x ratio block is counted. ``fillPoly`` also sets the
    pixels its outline passes through, half a pixel too many per side on average, so a block
    needs (ratio^2 + ratio) / 2 set pixels (10 of 16), which makes mask areas unbiased (measured
    on random rectangles and triangles). Filling at the reduced size directly would grow every
    mask by about half a reduced pixel per side.

    Args:
        segments: n polygons in pixels of an image of ``shape``.
        shape: (H, W) of the image.
        overlap: one index map instead of n binary masks.
        ratio: reduction factor.

    Returns:
        masks and order. With ``overlap``: an (H/ratio, W/ratio) map, uint8 (int32 when n > 255),
        where value k >= 1 is instance ``order[k - 1]``; ``order`` sorts instances by rasterised
        area, largest first (stable), so smaller instances are drawn last and win overlaps.
        Without: (n, H/ratio, W/ratio) uint8 {0, 1} masks and ``order`` = arange(n).
    """
    h, w = shape[0] // ratio, shape[1] // ratio
    binary = np.zeros((len(segments), h, w), np.uint8)
    for mask, seg in zip(binary, segments):
        x0, y0 = np.clip(np.floor(seg.min(0) / ratio).astype(int), 0, [w, h])
        x1, y1 = np.clip(np.ceil(seg.max(0) / ratio).astype(int) + 1, 0, [w, h])
        if x1 <= x0 or y1 <= y0:
            continue
        block = np.zeros(((y1 - y0) * ratio, (x1 - x0) * ratio), np.uint8)
        pts = np.round((seg - np.array([x0, y0]) * ratio - 0.5) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
        cv2.fillPoly(block, [pts], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
        cover = block.reshape(y1 - y0, ratio, x1 - x0, ratio).sum((1, 3), dtype=np.int32)
        mask[y0:y1, x0:x1] = 2 * cover >= ratio * ratio + ratio
    if not overlap:
        return binary, np.arange(len(segments))
    order = np.argsort(-binary.sum((1, 2), dtype=np.int64), kind="stable")
    index_map = np.zeros((h, w), np.int32 if len(segments) > 255 else np.uint8)
    for k, i in enumerate(order, 1):
        index_map[binary[i] > 0] = k
    return index_map, order
