"""Deterministic synthetic instance-segmentation dataset in YOLO-seg format.

Every image is drawn from its own generator, seeded from ``(seed, split, index)``, so a
sample does not depend on how many other samples are made or in which order. Objects are
filled shapes (see :data:`CLASS_NAMES`) drawn over textured backgrounds with unlabelled
thin clutter; later objects occlude earlier ones. Each label polygon is traced from the
object's *visible* pixels, and placements that would split, hole or hide an object are
retried, so the polygons match what is seen.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import yaml
from tqdm import tqdm

CLASS_NAMES: tuple[str, ...] = ("circle", "rectangle", "triangle", "star", "hexagon")

SPLITS: tuple[str, ...] = ("train", "val")

_WIDTH_RANGE = (320, 480)  # pixels, inclusive
_HEIGHT_RANGE = (240, 400)
_MAX_OBJECTS = 12
_MIN_DIAMETER = 16.0  # pixels, circumscribed diameter of the smallest shape
_MIN_FULL_AREA = 100  # pixels an object must cover in the image when placed
_MIN_VISIBLE_AREA = 60  # pixels an object must keep after occlusion
_MIN_VISIBLE_FRACTION = 0.5  # of its own in-image area
_MIN_IN_FRAME_FRACTION = 0.6  # of its polygon area that must fall inside the image
_MIN_POLYGON_IOU = 0.97  # rasterised label polygon vs visible mask
_APPROX_EPSILON = 0.7  # pixels, cv2.approxPolyDP tolerance
_PLACEMENT_TRIES = 25
_SUBPIXEL_BITS = 4  # cv2.fillPoly shift for sub-pixel vertices


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Return the generator that draws image ``index`` of ``split`` ("train" or "val") for ``seed``.

    ``synthesize`` draws each image with ``render_sample(sample_rng(seed, split, index))``,
    so tests can regenerate the ground truth of any written sample.
    """
    return np.random.default_rng([seed, SPLITS.index(split), index])


def _shape_polygon(rng: np.random.Generator, cls: int, center: np.ndarray, diameter: float) -> np.ndarray:
    """Vertices (K, 2) float64 in pixels (x, y) of a randomly rotated shape of class ``cls``."""
    r = diameter / 2
    if CLASS_NAMES[cls] == "circle":
        t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r
    elif CLASS_NAMES[cls] == "rectangle":
        aspect = rng.uniform(0.35, 1.0)
        half = np.array([1.0, aspect]) / np.hypot(1.0, aspect) * r
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
    elif CLASS_NAMES[cls] == "triangle":
        t = np.deg2rad(np.array([0.0, 120.0, 240.0]) + np.append(0.0, rng.uniform(-25, 25, 2)))
        radii = r * rng.uniform(0.8, 1.0, 3)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * radii[:, None]
    elif CLASS_NAMES[cls] == "star":
        t = np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, r * rng.uniform(0.38, 0.55))
        pts = np.stack([np.cos(t), np.sin(t)], 1) * radii[:, None]
    else:  # hexagon
        t = np.arange(6) * np.pi / 3
        pts = np.stack([np.cos(t), np.sin(t) * rng.uniform(0.85, 1.0)], 1) * r
    a = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return pts @ rot.T + center


def _rasterize(poly: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Fill a float polygon (K, 2) into a uint8 {0, 1} mask of ``shape`` (H, W), no anti-aliasing."""
    mask = np.zeros(shape, np.uint8)
    pts = np.round(poly * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    return mask


def _trace_polygon(mask: np.ndarray) -> np.ndarray | None:
    """Outer contour (K, 2) float32 in pixels of a uint8 mask, or None if it does not fit.

    None when the mask is not one component without holes, or when the simplified
    contour, filled with cv2.fillPoly, has IoU below ``_MIN_POLYGON_IOU`` with the mask.
    """
    contours, _ = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if len(contours) != 1:
        return None
    poly = cv2.approxPolyDP(contours[0], _APPROX_EPSILON, True)
    if len(poly) < 3:
        return None
    filled = np.zeros_like(mask)
    cv2.fillPoly(filled, [poly], 1, lineType=cv2.LINE_8)
    inter = np.count_nonzero(filled & mask)
    union = np.count_nonzero(filled | mask)
    if inter < _MIN_POLYGON_IOU * union:
        return None
    return poly.reshape(-1, 2).astype(np.float32)


def _two_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random BGR colour and a second one at a random contrast from it, float32 (3,)."""
    c1 = rng.uniform(0, 255, 3)
    c2 = np.clip(c1 + rng.normal(0, rng.uniform(20, 90), 3), 0, 255)
    return c1.astype(np.float32), c2.astype(np.float32)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A (H, W, 3) float32 BGR background in [0, 255]: flat, gradient, noise, stripes or checkerboard."""
    kind = rng.choice(["flat", "gradient", "noise", "stripes", "checker"], p=[0.15, 0.25, 0.25, 0.15, 0.2])
    c1, c2 = _two_colours(rng)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, np.pi)
    u = xs * np.cos(a) + ys * np.sin(a)
    v = -xs * np.sin(a) + ys * np.cos(a)
    if kind == "flat":
        t = np.zeros((h, w), np.float32)
    elif kind == "gradient":
        t = (u - u.min()) / (u.max() - u.min())
    elif kind == "noise":
        cell = rng.uniform(8, 60)
        grid = rng.random((int(h / cell) + 2, int(w / cell) + 2)).astype(np.float32)
        t = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    elif kind == "stripes":
        period = rng.uniform(6, 40)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * u / period)
        if rng.random() < 0.5:
            t = (t > 0.5).astype(np.float32)
    else:
        cell = rng.uniform(8, 40)
        t = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
    img = c1 + np.clip(t, 0, 1)[..., None] * (c2 - c1)
    img += rng.normal(0, rng.uniform(0, 10), (h, w, 1)).astype(np.float32)
    return img


def _draw_clutter(rng: np.random.Generator, img: np.ndarray) -> None:
    """Draw unlabelled thin distractors (lines, scribbles, tiny lumps) into ``img`` in place."""
    h, w = img.shape[:2]
    for _ in range(rng.integers(2, 16)):
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        kind = rng.integers(3)
        if kind == 0:
            p0, p1 = rng.uniform([0, 0], [w, h], (2, 2)).astype(np.int32)
            cv2.line(img, tuple(map(int, p0)), tuple(map(int, p1)), colour, int(rng.integers(1, 3)), cv2.LINE_AA)
        elif kind == 1:
            steps = rng.normal(0, 8, (int(rng.integers(5, 25)), 2)).cumsum(0)
            pts = (steps + rng.uniform([0, 0], [w, h])).astype(np.int32)
            cv2.polylines(img, [pts], False, colour, int(rng.integers(1, 3)), cv2.LINE_AA)
        else:
            t = np.linspace(0, 2 * np.pi, 9, endpoint=False)
            radii = rng.uniform(1.5, 4.5) * rng.uniform(0.4, 1.0, 9)
            pts = np.stack([np.cos(t), np.sin(t)], 1) * radii[:, None] + rng.uniform([0, 0], [w, h])
            cv2.fillPoly(img, [np.round(pts).astype(np.int32)], colour, cv2.LINE_AA)


def _object_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A BGR colour float32 (3,) that contrasts (most of the time) with the mean colour ``under``."""
    wanted = rng.uniform(35, 100)
    best, best_dist = None, -1.0
    for _ in range(20):
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        dist = float(np.linalg.norm(colour - under))
        if dist > best_dist:
            best, best_dist = colour, dist
        if dist >= wanted:
            break
    return best


def _paint_object(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray, center: np.ndarray, diameter: float) -> None:
    """Paint a shaded, noisy, optionally outlined object over ``img`` (float32 BGR) where ``mask`` is set."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    roi_mask = mask[y0:y1, x0:x1].astype(bool)
    roi = img[y0:y1, x0:x1]
    colour = _object_colour(rng, roi[roi_mask].mean(0))
    gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    ramp = ((gx - center[0]) * np.cos(a) + (gy - center[1]) * np.sin(a)) / (diameter / 2)
    paint = colour * (1 + rng.uniform(0, 0.35) * ramp[..., None])
    paint += rng.normal(0, rng.uniform(0, 10), paint.shape).astype(np.float32)
    if diameter > 30 and rng.random() < 0.35:
        k = int(rng.integers(1, 4))
        inner = cv2.erode(roi_mask.astype(np.uint8), np.ones((2 * k + 1, 2 * k + 1), np.uint8)).astype(bool)
        ring = roi_mask & ~inner
        paint[ring] = colour * rng.choice([0.45, 1.5])
    roi[roi_mask] = paint[roi_mask]


def render_sample(
    rng: np.random.Generator,
    width: int | None = None,
    height: int | None = None,
    n_objects: int | None = None,
) -> tuple[np.ndarray, list[int], list[np.ndarray], list[np.ndarray]]:
    """Draw one synthetic image and its ground truth from ``rng``.

    Args:
        rng: the generator to draw from (``sample_rng`` gives the one ``synthesize`` uses).
        width, height: image size in pixels; drawn from 320-480 x 240-400 when None.
        n_objects: objects to attempt (1-12 drawn when None); fewer may be placed when
            a placement keeps failing the visibility checks.

    Returns:
        image: (H, W, 3) uint8 BGR.
        classes: one class id per object, indexes into ``CLASS_NAMES``.
        polygons: one (K, 2) float32 array per object, K >= 3, vertices (x, y) in pixels,
            tracing the object's visible pixels.
        masks: one (H, W) bool array per object, its visible pixels (drawing order:
            later objects occlude earlier ones).
    """
    w = int(rng.integers(_WIDTH_RANGE[0], _WIDTH_RANGE[1] + 1)) if width is None else width
    h = int(rng.integers(_HEIGHT_RANGE[0], _HEIGHT_RANGE[1] + 1)) if height is None else height
    n = int(rng.integers(1, _MAX_OBJECTS + 1)) if n_objects is None else n_objects
    img = _background(rng, h, w)
    if rng.random() < 0.6:
        _draw_clutter(rng, img)

    max_diameter = max(2 * _MIN_DIAMETER, min(h, w) * max(0.2, 0.5 - 0.025 * n))
    classes: list[int] = []
    visible: list[np.ndarray] = []  # uint8 {0, 1}
    full_area: list[int] = []
    polygons: list[np.ndarray] = []
    centers: list[np.ndarray] = []
    diameters: list[float] = []
    for _ in range(n):
        cls = int(rng.integers(len(CLASS_NAMES)))
        diameter = float(np.exp(rng.uniform(np.log(_MIN_DIAMETER), np.log(max_diameter))))
        for attempt in range(_PLACEMENT_TRIES):
            d = max(_MIN_DIAMETER, diameter * 0.95**attempt)
            if centers and rng.random() < 0.3:
                j = int(rng.integers(len(centers)))
                a = rng.uniform(0, 2 * np.pi)
                dist = (d + diameters[j]) / 2 * rng.uniform(0.6, 1.05)
                center = centers[j] + dist * np.array([np.cos(a), np.sin(a)])
            else:
                center = rng.uniform([-0.15 * d, -0.15 * d], [w + 0.15 * d, h + 0.15 * d])
            poly = _shape_polygon(rng, cls, center, d)
            mask = _rasterize(poly, (h, w))
            area = int(np.count_nonzero(mask))
            if area < _MIN_FULL_AREA or area < _MIN_IN_FRAME_FRACTION * cv2.contourArea(poly.astype(np.float32)):
                continue
            own = _trace_polygon(mask)
            if own is None:
                continue
            updated = {}
            for i, vis in enumerate(visible):
                if not np.any(vis & mask):
                    continue
                new_vis = vis & (1 - mask)
                kept = int(np.count_nonzero(new_vis))
                if kept < _MIN_VISIBLE_AREA or kept < _MIN_VISIBLE_FRACTION * full_area[i]:
                    break
                traced = _trace_polygon(new_vis)
                if traced is None:
                    break
                updated[i] = (new_vis, traced)
            else:
                for i, (new_vis, traced) in updated.items():
                    visible[i], polygons[i] = new_vis, traced
                _paint_object(rng, img, mask, center, d)
                classes.append(cls)
                visible.append(mask)
                full_area.append(area)
                polygons.append(own)
                centers.append(center)
                diameters.append(d)
                break

    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.0))
    img = img * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20)
    img += rng.normal(0, rng.uniform(0, 6), img.shape).astype(np.float32)
    image = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return image, classes, polygons, [m.astype(bool) for m in visible]


def format_label(classes: list[int], polygons: list[np.ndarray], width: int, height: int) -> str:
    """YOLO-seg label text: one ``cls x1 y1 x2 y2 ...`` line per object.

    ``polygons`` are (K, 2) arrays in pixels; coordinates are divided by ``width`` /
    ``height`` (pixels) and written with 6 decimals.
    """
    lines = []
    for cls, poly in zip(classes, polygons):
        norm = np.asarray(poly, np.float64) / np.array([width, height])
        lines.append(" ".join([str(cls)] + [f"{v:.6f}" for v in norm.reshape(-1)]))
    return "".join(line + "\n" for line in lines)


def synthesize(out: str | Path, n_train: int = 256, n_val: int = 64, seed: int = 0, progress: bool = True) -> Path:
    """Write a synthetic YOLO-seg dataset into ``out`` and return the path of ``out/data.yaml``.

    Layout: ``images/{train,val}/NNNNNN.png`` (lossless, BGR as drawn), one
    ``labels/{train,val}/NNNNNN.txt`` per image (see ``format_label``), and ``data.yaml``
    with the absolute ``path``, the ``train``/``val`` image folders and ``names``.
    Image ``i`` of a split is ``render_sample(sample_rng(seed, split, i))``, so the same
    seed gives byte-identical files. Earlier images, labels and label caches in ``out``
    are removed first, and ``data.yaml`` is written last, so it exists only for a
    complete dataset.
    """
    out = Path(out).resolve()
    yaml_path = out / "data.yaml"
    yaml_path.unlink(missing_ok=True)
    for split in SPLITS:
        for sub, suffix in (("images", ".png"), ("labels", ".txt")):
            folder = out / sub / split
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob(f"*{suffix}"):
                stale.unlink()
        (out / "labels" / f"{split}.cache").unlink(missing_ok=True)

    jobs = [(split, i) for split, count in zip(SPLITS, (n_train, n_val)) for i in range(count)]
    for split, i in tqdm(jobs, desc="synthesizing", unit="img", disable=not progress):
        image, classes, polygons, _ = render_sample(sample_rng(seed, split, i))
        name = f"{i:06d}"
        cv2.imwrite(str(out / "images" / split / f"{name}.png"), image)
        h, w = image.shape[:2]
        (out / "labels" / split / f"{name}.txt").write_text(format_label(classes, polygons, w, h))

    data = {
        "path": str(out),
        "train": "images/train",
        "val": "images/val",
        "names": dict(enumerate(CLASS_NAMES)),
    }
    tmp = yaml_path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, yaml_path)
    return yaml_path
