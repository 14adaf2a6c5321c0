"""Check a YOLO-seg split: every image and label file once, keeping the usable ones (``scan_files``).

Images are read by ``edgeseg.runtimes.io.images.decode_image`` (sizes checked before reading). Label
files over :data:`MAX_LABEL_BYTES` are corrupt without being read, and parsing one holds its
share of ``edgeseg.runtimes.io.images.READ_BUDGET``, so scan threads together stay within it.
``edgeseg.runtimes.evaluation.label_cache.scan_labels`` is the scan through its cache, which
every caller uses.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from edgeseg.runtimes.cpus import usable_cpus
from edgeseg.runtimes.io.capped import FileLimitError, read_capped
from edgeseg.runtimes.io.data_config import label_path
from edgeseg.runtimes.io.images import READ_BUDGET, ImageReadError, decode_image

MIN_IMAGE_SIZE = 10  # pixels; smaller images are corrupt (as in Ultralytics)
COORD_TOLERANCE = 1e-3  # normalised coordinates within [-tol, 1 + tol] are clipped to [0, 1]; beyond: corrupt

MAX_LABEL_BYTES = 8 << 20  # bytes (8 MiB): larger label files are corrupt unread (~400 polygons of 1000 points)
LABEL_PARSE_BYTES_PER_BYTE = 40  # bytes of memory parsing one byte of a label file may take (measured worst: 24)


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
        cache_path: the cache file (None if it was not written).
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


def segments_to_boxes(segments: list[np.ndarray]) -> np.ndarray:
    """(n, 4) float32 cx, cy, w, h of each polygon's extent, from n (k, 2) polygons (same units)."""
    if not segments:
        return np.zeros((0, 4), np.float32)
    lo = np.array([s.min(0) for s in segments], np.float32)
    hi = np.array([s.max(0) for s in segments], np.float32)
    return np.concatenate([(lo + hi) / 2, hi - lo], 1)


def _tokenize(text: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """All tokens of the non-blank lines, each line's token count (L,) and 1-based line number (L,)."""
    tokens: list[str] = []
    counts, linenos = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if words:
            tokens.extend(words)
            counts.append(len(words))
            linenos.append(lineno)
    return tokens, np.array(counts, np.int64), np.array(linenos, np.int64)


def _to_floats(tokens: list[str], counts: np.ndarray, linenos: np.ndarray) -> np.ndarray:
    """(T,) float64 of the tokens; ValueError naming the first line with a non-numeric token."""
    try:
        return np.array(tokens, np.float64)
    except ValueError:
        pass
    first = 0
    for n, lineno in zip(counts.tolist(), linenos.tolist()):
        for token in tokens[first : first + n]:
            try:
                float(token)
            except ValueError:
                raise ValueError(f"line {lineno}: non-numeric value") from None
        first += n
    raise ValueError("non-numeric value")


def _line_problem(token: str, n_coords: int, bad_class: bool, nc: int) -> str:
    """What is wrong with one bad label line: the first failing check of class, coordinate count, range."""
    if bad_class:
        return f"class id {token} is not an integer in 0..{nc - 1}"
    if n_coords % 2:
        return f"odd number of coordinates ({n_coords})"
    if n_coords < 6:
        return "polygon has fewer than 3 points"
    return "coordinates outside [0, 1] or not finite (not normalised?)"


def _parse_label(text: str, nc: int) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Parse label text into class ids (n,) int64, n (k, 2) float32 polygons and the count of duplicate lines dropped.

    Vectorised over the whole file: one float conversion, one range check, one split.

    Raises:
        ValueError: the label is corrupt; the message names the first bad line and its problem.
    """
    tokens, counts, linenos = _tokenize(text)
    if not tokens:
        return np.zeros(0, np.int64), [], 0
    values = _to_floats(tokens, counts, linenos)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    cls = values[starts]
    bad_class = ~(np.isfinite(cls) & (cls >= 0) & (cls < nc))
    bad_class[~bad_class] = cls[~bad_class] != np.floor(cls[~bad_class])
    in_range = (values >= -COORD_TOLERANCE) & (values <= 1 + COORD_TOLERANCE)  # False for nan
    in_range[starts] = True
    bad_coords = np.add.reduceat(~in_range, starts) > 0
    n_coords = counts - 1
    bad = bad_class | (n_coords % 2 == 1) | (n_coords < 6) | bad_coords
    if bad.any():
        k = int(np.argmax(bad))
        problem = _line_problem(tokens[starts[k]], int(n_coords[k]), bool(bad_class[k]), nc)
        raise ValueError(f"line {linenos[k]}: {problem}")
    values += 0.0  # -0.0 -> 0.0, so equal lines have equal bytes
    keep, seen = np.zeros(len(counts), bool), set()
    for k, (start, n) in enumerate(zip(starts.tolist(), counts.tolist())):
        key = values[start : start + n].tobytes()
        keep[k] = key not in seen
        seen.add(key)
    is_coord = np.repeat(keep, counts)
    is_coord[starts] = False
    points = values[is_coord].clip(0, 1).astype(np.float32).reshape(-1, 2)
    segments = np.split(points, np.cumsum(n_coords[keep] // 2)[:-1]) if keep.any() else []
    return cls[keep].astype(np.int64), segments, int((~keep).sum())


def read_label(lb_file: str | os.PathLike, nc: int) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Read and parse one label file of at most MAX_LABEL_BYTES: class ids (n,), n (k, 2) polygons, duplicates dropped.

    Raises:
        ValueError: the file is corrupt (too large, not UTF-8 text, a bad line); the message names the problem.
        OSError: the file cannot be read.
    """
    try:
        size = os.stat(lb_file).st_size
    except OSError:
        size = 0
    with READ_BUDGET.hold(size * LABEL_PARSE_BYTES_PER_BYTE if size <= MAX_LABEL_BYTES else 0):
        try:
            data = read_capped(lb_file, MAX_LABEL_BYTES)
        except FileLimitError as e:
            raise ValueError(f"label file is {e}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"not UTF-8 text (byte {e.start})") from None
        del data
        return _parse_label(text, nc)


def _check_one(im_file: str, nc: int) -> tuple[Label | None, str, int, str]:
    """Check one image and its label: (label or None if corrupt, status, duplicates removed, message)."""
    try:
        h, w = decode_image(im_file).shape[:2]
    except ImageReadError as e:
        return None, "corrupt", 0, f"{im_file}: image cannot be read ({e})"
    if h < MIN_IMAGE_SIZE or w < MIN_IMAGE_SIZE:
        return None, "corrupt", 0, f"{im_file}: image is {w}x{h}, smaller than {MIN_IMAGE_SIZE} pixels"
    lb_file = label_path(im_file)
    cls, segments, dup = np.zeros(0, np.int64), [], 0
    if not os.path.isfile(lb_file):
        status = "missing"
    else:
        try:
            cls, segments, dup = read_label(lb_file, nc)
        except (ValueError, OSError) as e:
            return None, "corrupt", 0, f"{lb_file}: {e}"
        status = "found" if len(cls) else "empty"
    return Label(im_file, (h, w), cls, segments, segments_to_boxes(segments)), status, dup, ""


def scan_files(img_files: list[str], nc: int) -> tuple[list[Label], ScanStats]:
    """Check every image and label file on a thread pool; the kept labels (in input order) and the counts (``cache_path`` None)."""
    with ThreadPoolExecutor(max_workers=min(8, usable_cpus())) as pool:
        results = list(pool.map(lambda f: _check_one(f, nc), img_files))
    statuses = [r[1] for r in results]
    stats = ScanStats(
        images=len(img_files),
        found=statuses.count("found"),
        missing=statuses.count("missing"),
        empty=statuses.count("empty"),
        corrupt=statuses.count("corrupt"),
        duplicates=sum(r[2] for r in results),
        cache_path=None,
        from_cache=False,
        messages=[r[3] for r in results if r[3]],
    )
    return [r[0] for r in results if r[0] is not None], stats
