"""The geometry of a COCO object: its parts (polygons or RLE blobs) joined into the one outline a YOLO-seg label holds."""

from __future__ import annotations

import cv2
import numpy as np

from edgeseg.runtimes.io.images import MAX_IMAGE_PIXELS
from edgeseg.runtimes.pipeline.polygons import mask_polygons
from edgeseg.runtimes.pipeline.rle import rle_decode

MAX_OBJECT_POINTS = 5_000  # points of one object, all its parts together (merging compares every pair of parts)
MAX_OBJECT_PARTS = 500  # separate parts (polygons, or outlines of RLE blobs) of one object
PAIR_BLOCK = 1 << 20  # point pairs compared at once when linking parts (32 MB of float64 differences)


class ObjectTooComplex(ValueError):
    """An object with more parts or points than MAX_OBJECT_PARTS / MAX_OBJECT_POINTS (skipped and counted)."""


def merge_polygons(parts: list[np.ndarray]) -> np.ndarray:
    """Join the parts of one object into a single outline.

    The parts are linked into a tree by their shortest connections (Prim's minimum spanning
    tree over the distance between the nearest points of two parts). The outline walks once
    around each part and, at each link point, goes along the link to the next part, around
    it, and back the same way, so every link is a zero-width "there and back" segment.
    Filling the outline gives the parts plus a 1-px line along each link. This is the idea
    of Ultralytics' ``merge_multi_segment`` (which links the parts in their listed order);
    the spanning tree keeps the links short whatever the order.

    Args:
        parts: K >= 1 polygons, each (n_i, 2) float x, y in pixels.

    Returns:
        (sum n_i + 2 * (K - 1), 2) float64 pixel outline: every vertex of every part, plus
        both ends of each link once more (the way back).
    """
    parts = [np.asarray(p, np.float64).reshape(-1, 2) for p in parts]
    k = len(parts)
    if k == 1:
        return parts[0]
    dist = np.full((k, k), np.inf)
    nearest = np.zeros((k, k), np.int64)  # nearest[i, j]: index of the point of part i closest to part j
    for i in range(k):
        for j in range(i + 1, k):
            dist[i, j], a, b = _closest_pair(parts[i], parts[j])
            dist[j, i] = dist[i, j]
            nearest[i, j], nearest[j, i] = a, b
    attached: list[dict[int, list[int]]] = [{} for _ in range(k)]  # part -> {its point index: child parts}
    in_tree = np.zeros(k, bool)
    in_tree[0] = True
    for _ in range(k - 1):
        masked = np.where(in_tree[:, None] & ~in_tree[None, :], dist, np.inf)
        i, j = np.unravel_index(np.argmin(masked), masked.shape)
        attached[i].setdefault(int(nearest[i, j]), []).append(int(j))
        in_tree[j] = True

    def steps(i: int, entry: int):
        """Part i's points from ``entry`` around back to it; ``(child, entry)`` where a link leaves."""
        n = len(parts[i])
        for s in range(n + 1):
            v = (entry + s) % n
            yield parts[i][v]
            for child in attached[i].get(v, []) if s < n else []:
                yield child, int(nearest[child, i])
                yield parts[i][v]

    outline, stack = [], [steps(0, 0)]
    while stack:  # an explicit stack instead of recursion: chains of many parts stay shallow
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
        elif isinstance(item, tuple):
            stack.append(steps(*item))
        else:
            outline.append(item)
    return np.array(outline[:-1])  # the root's last point repeats its first


def _closest_pair(a: np.ndarray, b: np.ndarray) -> tuple[float, int, int]:
    """Squared distance and indices (i, j) of the closest points a[i], b[j] of (n, 2) and (m, 2) point sets.

    Compared PAIR_BLOCK pairs at a time, so memory stays bounded for long outlines; ties go to
    the first pair in row-major order, as one ``argmin`` over the whole (n, m) matrix would.
    """
    rows = max(1, PAIR_BLOCK // len(b))
    best = (np.inf, 0, 0)
    for start in range(0, len(a), rows):
        d2 = ((a[start : start + rows, None, :] - b[None, :, :]) ** 2).sum(-1)
        i, j = divmod(int(np.argmin(d2)), len(b))
        if d2[i, j] < best[0]:
            best = (float(d2[i, j]), start + i, j)
    return best


def annotation_polygon(segmentation, height: int, width: int, merge: str = "merge") -> np.ndarray | None:
    """One polygon for a COCO ``segmentation`` (polygons, compressed or uncompressed RLE).

    Args:
        segmentation: a list of flat ``[x1, y1, x2, y2, ...]`` pixel polygons (or one such
            polygon), or an RLE dict ``{"size": [H, W], "counts": str | list}``.
        height, width: the image size in pixels (an RLE of another size is rejected before decoding).
        merge: ``"merge"`` joins all parts (:func:`merge_polygons`); ``"largest"`` keeps the
            part with the largest area.

    Returns:
        (n, 2) float64 x, y in pixels, n >= 3, or None when there is no usable part (malformed
        data included: wrong types, non-finite coordinates, a broken RLE).

    Raises:
        ObjectTooComplex: more than MAX_OBJECT_PARTS parts or MAX_OBJECT_POINTS points.
    """
    parts = _segmentation_parts(segmentation, height, width)
    if not parts:
        return None
    if len(parts) > MAX_OBJECT_PARTS or sum(len(p) for p in parts) > MAX_OBJECT_POINTS:
        raise ObjectTooComplex(f"{len(parts)} parts, {sum(len(p) for p in parts)} points")
    if merge == "largest":
        return max(parts, key=lambda p: abs(cv2.contourArea(p.astype(np.float32))))
    return merge_polygons(parts)


def _segmentation_parts(segmentation, height: int, width: int) -> list[np.ndarray]:
    """The (n, 2) float64 pixel polygons (n >= 3, finite) of a segmentation; [] when malformed."""
    try:
        if isinstance(segmentation, list):
            if segmentation and not isinstance(segmentation[0], list):  # a single flat polygon
                segmentation = [segmentation]
            flat = [np.asarray(p, np.float64) for p in segmentation if isinstance(p, list)]
            usable = [p for p in flat if p.ndim == 1 and p.size >= 6 and p.size % 2 == 0 and np.isfinite(p).all()]
            return [p.reshape(-1, 2) for p in usable]
        if isinstance(segmentation, dict) and segmentation.get("size") == [height, width]:
            rle = {**segmentation, "size": [height, width]}  # 480.0 -> 480
            return mask_polygons(rle_decode(rle, max_pixels=MAX_IMAGE_PIXELS))
    except (ValueError, TypeError, IndexError, OverflowError):
        pass
    return []
