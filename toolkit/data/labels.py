"""Scan a YOLO-seg split: check every image and label file once, keep the usable ones, cache the result.

Images are decoded with OpenCV's ``IMREAD_COLOR``, which applies the EXIF orientation tag
(checked with OpenCV 5.0 on a JPEG tagged orientation 6: the decoded array is the rotated,
displayed image; ``IMREAD_IGNORE_ORIENTATION`` would turn that off). YOLO labels refer to the
displayed image, so shapes and pixels here are always in that orientation.

The cache is an ``.npz`` of plain arrays (no pickles: loading it never runs code), written
beside the labels folder (``labels/train`` -> ``labels/train.edgeseg.cache``; the name differs
from Ultralytics' ``labels/train.cache`` so the two tools do not overwrite each other's cache).
It is keyed on a hash of every image and label path with its size and mtime, and on ``nc``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeseg.data.yaml_config import label_path

LOGGER = logging.getLogger("edgeseg")

CACHE_VERSION = 1
MIN_IMAGE_SIZE = 10  # pixels; smaller images are corrupt (as in Ultralytics)
COORD_TOLERANCE = 1e-3  # normalised coordinates within [-tol, 1 + tol] are clipped to [0, 1]; beyond: corrupt


@dataclass
class Label:
    """The checked annotation of one image.

    Attributes:
        im_file: image path.
        shape: (h, w) of the image as decoded (EXIF orientation applied).
        cls: (n,) int64 class ids.
        segments: n polygons, each (k, 2) float32 normalised x, y in [0, 1], k >= 3.
        bboxes: (n, 4) float32 normalised cx, cy, w, h of each polygon's extent.
    """

    im_file: str
    shape: tuple[int, int]
    cls: np.ndarray
    segments: list[np.ndarray]
    bboxes: np.ndarray


@dataclass
class ScanStats:
    """What a scan found. Every image is exactly one of found / missing / empty / corrupt.

    Attributes:
        images: images scanned.
        found: images with a valid, non-empty label file.
        missing: images without a label file (kept, no instances).
        empty: images with an empty label file (kept, no instances).
        corrupt: images excluded because the image or its label file is corrupt.
        duplicates: duplicate label lines removed.
        cache_path: the cache file (None if it could not be written).
        from_cache: True when the result was read from the cache.
        messages: one line per corrupt file, naming it and the problem.
    """

    images: int
    found: int
    missing: int
    empty: int
    corrupt: int
    duplicates: int
    cache_path: str | None
    from_cache: bool
    messages: list[str]

    def summary(self, prefix: str) -> str:
        """One line: ``train: 256 images, 250 labels found, 3 missing, ... (cache: path)``."""
        cache = "not cached"
        if self.cache_path:
            cache = f"cache: {self.cache_path}" + (", loaded" if self.from_cache else "")
        return (
            f"{prefix}: {self.images} images, {self.found} labels found, {self.missing} missing, "
            f"{self.empty} empty, {self.corrupt} corrupt, {self.duplicates} duplicate lines removed ({cache})"
        )


def read_image(path: str | os.PathLike) -> np.ndarray | None:
    """Decode an image file as (H, W, 3) uint8 BGR with EXIF orientation applied; None if unreadable."""
    try:
        data = np.fromfile(path, np.uint8)
    except OSError:
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None


def segments_to_boxes(segments: list[np.ndarray]) -> np.ndarray:
    """(n, 4) float32 cx, cy, w, h of each polygon's extent, from n (k, 2) polygons (same units)."""
    if not segments:
        return np.zeros((0, 4), np.float32)
    lo = np.array([s.min(0) for s in segments], np.float32)
    hi = np.array([s.max(0) for s in segments], np.float32)
    return np.concatenate([(lo + hi) / 2, hi - lo], 1)


def _parse_label(lb_file: str, nc: int) -> tuple[list[int], list[np.ndarray], int]:
    """Parse a label file into class ids, (k, 2) float32 polygons and the count of duplicate lines dropped.

    Raises:
        ValueError: the label is corrupt; the message names the line and the problem.
    """
    classes, segments, seen = [], [], set()
    with open(lb_file, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for lineno, line in enumerate(lines, 1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            raise ValueError(f"line {lineno}: non-numeric value") from None
        c, coords = values[0], np.array(values[1:], np.float64)
        if c != int(c) or not 0 <= c < nc:
            raise ValueError(f"line {lineno}: class id {tokens[0]} outside 0..{nc - 1}")
        if len(coords) % 2:
            raise ValueError(f"line {lineno}: odd number of coordinates ({len(coords)})")
        if len(coords) < 6:
            raise ValueError(f"line {lineno}: polygon has fewer than 3 points")
        if not np.isfinite(coords).all() or coords.min() < -COORD_TOLERANCE or coords.max() > 1 + COORD_TOLERANCE:
            raise ValueError(f"line {lineno}: coordinates outside [0, 1] (not normalised?)")
        key = tuple(values)
        if key in seen:
            continue
        seen.add(key)
        classes.append(int(c))
        segments.append(coords.clip(0, 1).reshape(-1, 2).astype(np.float32))
    n_lines = sum(1 for line in lines if line.split())
    return classes, segments, n_lines - len(classes)


def _check_one(im_file: str, nc: int) -> tuple[Label | None, str, int, str]:
    """Check one image and its label: (label or None if corrupt, status, duplicates removed, message)."""
    img = read_image(im_file)
    if img is None:
        return None, "corrupt", 0, f"{im_file}: image cannot be read or decoded"
    h, w = img.shape[:2]
    if h < MIN_IMAGE_SIZE or w < MIN_IMAGE_SIZE:
        return None, "corrupt", 0, f"{im_file}: image is {w}x{h}, smaller than {MIN_IMAGE_SIZE} pixels"
    lb_file = label_path(im_file)
    classes, segments, dup = [], [], 0
    if not os.path.isfile(lb_file):
        status = "missing"
    else:
        try:
            classes, segments, dup = _parse_label(lb_file, nc)
        except (ValueError, OSError, UnicodeDecodeError) as e:
            return None, "corrupt", 0, f"{lb_file}: {e}"
        status = "found" if classes else "empty"
    label = Label(im_file, (h, w), np.array(classes, np.int64), segments, segments_to_boxes(segments))
    return label, status, dup, ""


def _files_hash(img_files: list[str], nc: int) -> str:
    """sha256 over every image and label path with its size and mtime, ``nc`` and the cache version."""
    h = hashlib.sha256(f"{CACHE_VERSION}|{nc}".encode())
    for f in img_files:
        for p in (f, label_path(f)):
            try:
                st = os.stat(p)
                h.update(f"|{p}|{st.st_size}|{st.st_mtime_ns}".encode())
            except OSError:
                h.update(f"|{p}|-".encode())
    return h.hexdigest()


def default_cache_path(img_files: list[str]) -> Path:
    """``<labels dir>.edgeseg.cache`` beside the first image's labels folder, e.g. ``labels/train.edgeseg.cache``."""
    labels_dir = Path(label_path(img_files[0])).parent
    return labels_dir.parent / f"{labels_dir.name}.edgeseg.cache"


def _save_cache(path: Path, digest: str, labels: list[Label], stats: ScanStats) -> bool:
    """Write the cache atomically; False (and one warning) if the folder is not writable."""
    segments = [s for lb in labels for s in lb.segments]
    meta = {
        "version": CACHE_VERSION,
        "hash": digest,
        "im_files": [lb.im_file for lb in labels],
        "counts": [stats.images, stats.found, stats.missing, stats.empty, stats.corrupt, stats.duplicates],
        "messages": stats.messages,
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                shapes=np.array([lb.shape for lb in labels], np.int64).reshape(-1, 2),
                n_inst=np.array([len(lb.cls) for lb in labels], np.int64),
                cls=np.concatenate([lb.cls for lb in labels] + [np.zeros(0, np.int64)]),
                n_pts=np.array([len(s) for s in segments], np.int64),
                points=np.concatenate(segments + [np.zeros((0, 2), np.float32)]),
            )
        os.replace(tmp, path)
    except OSError as e:
        LOGGER.warning(f"label cache not written to {path}: {e.strerror or e}")
        return False
    return True


def _load_cache(path: Path, digest: str) -> tuple[list[Label], list[int], list[str]] | None:
    """Labels, counts and messages from a cache whose hash matches ``digest``; None if absent, stale or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes())
            if meta.get("version") != CACHE_VERSION or meta.get("hash") != digest:
                return None
            shapes, n_inst, cls, n_pts, points = (z[k] for k in ("shapes", "n_inst", "cls", "n_pts", "points"))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, AttributeError):
        return None  # absent, or another tool's / an older file: rescan and overwrite it
    segments = np.split(points, np.cumsum(n_pts)[:-1]) if len(n_pts) else []
    labels, i = [], 0
    for im_file, shape, n in zip(meta["im_files"], shapes, n_inst):
        segs = segments[i : i + n]
        shape = (int(shape[0]), int(shape[1]))
        labels.append(Label(im_file, shape, cls[i : i + n].copy(), segs, segments_to_boxes(segs)))
        i += n
    return labels, meta["counts"], meta["messages"]


def scan_labels(
    img_files: list[str], nc: int, cache_path: str | os.PathLike | None = None, prefix: str = "train"
) -> tuple[list[Label], ScanStats]:
    """Check every image and its label file, or read the result from a valid cache.

    A corrupt image (unreadable, under 10 px) or label (non-numeric, class id outside
    0..nc-1, odd coordinate count, fewer than 3 points, coordinates outside [0, 1] beyond
    1e-3) excludes the image, with one warning naming the file and the problem. Missing
    and empty label files keep the image with no instances; duplicate lines are dropped.
    Logs one summary line on the ``edgeseg`` logger.

    Args:
        img_files: N image paths.
        nc: number of classes.
        cache_path: cache file; None for :func:`default_cache_path`.
        prefix: the split name that starts the log lines.

    Returns:
        The labels of the N - corrupt kept images, in input order, and the ScanStats.
    """
    path = Path(cache_path) if cache_path is not None else default_cache_path(img_files)
    digest = _files_hash(img_files, nc)
    cached = _load_cache(path, digest)
    if cached is not None:
        labels, counts, messages = cached
        stats = ScanStats(*counts, cache_path=str(path), from_cache=True, messages=messages)
    else:
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            results = list(pool.map(lambda f: _check_one(f, nc), img_files))
        statuses = [r[1] for r in results]
        messages = [r[3] for r in results if r[3]]
        labels = [r[0] for r in results if r[0] is not None]
        stats = ScanStats(
            images=len(img_files),
            found=statuses.count("found"),
            missing=statuses.count("missing"),
            empty=statuses.count("empty"),
            corrupt=statuses.count("corrupt"),
            duplicates=sum(r[2] for r in results),
            cache_path=str(path),
            from_cache=False,
            messages=messages,
        )
        if not _save_cache(path, digest, labels, stats):
            stats.cache_path = None
    for msg in stats.messages:
        LOGGER.warning(f"{prefix}: {msg}, image excluded")
    LOGGER.info(stats.summary(prefix))
    return labels, stats
