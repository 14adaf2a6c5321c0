"""Scan a YOLO-seg split: check every image and label file once, keep the usable ones, cache the result.

Images are read by ``edgeseg.runtimes.images.decode_image`` (sizes checked before reading). Label
files over :data:`MAX_LABEL_BYTES` are corrupt without being read, and parsing one holds its
share of ``edgeseg.runtimes.images.READ_BUDGET``, so scan threads together stay within it.

The cache is an ``.npz`` of plain arrays (no pickles: loading it never runs code), written
beside the labels folder (``labels/train`` -> ``labels/train.edgeseg.cache``; the name differs
from Ultralytics' ``labels/train.cache`` so the two tools do not overwrite each other's cache)
through ``edgeseg.runtimes.files.atomic_write`` (a random temporary name, never a planted link), and
only inside the dataset root when one is known. It is keyed on a hash of every image and label
path with its size and mtime, and on ``nc``; a cache that is not exactly what this module
writes is ignored and rewritten.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import struct
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edgeseg.runtimes.images import READ_BUDGET, ImageReadError, decode_image
from edgeseg.runtimes.cpus import usable_cpus
from edgeseg.runtimes.data_config import label_path
from edgeseg.runtimes.errors import EdgesegError, os_reason
from edgeseg.runtimes.files import atomic_write
from edgeseg.runtimes.capped import FileLimitError, open_capped, read_capped

LOGGER = logging.getLogger("edgeseg")

CACHE_VERSION = 1
MIN_IMAGE_SIZE = 10  # pixels; smaller images are corrupt (as in Ultralytics)
COORD_TOLERANCE = 1e-3  # normalised coordinates within [-tol, 1 + tol] are clipped to [0, 1]; beyond: corrupt

MAX_LABEL_BYTES = 8 << 20  # bytes (8 MiB): larger label files are corrupt unread (~400 polygons of 1000 points)
LABEL_PARSE_BYTES_PER_BYTE = 40  # bytes of memory parsing one byte of a label file may take (measured worst: 24)
MAX_CACHE_BYTES = 512 << 20  # bytes (512 MiB): a larger cache file is ignored and the split rescanned
_CACHE_ARRAYS = {"shapes": np.int64, "n_inst": np.int64, "cls": np.int64, "n_pts": np.int64, "points": np.float32}


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


def _files_hash(img_files: list[str], nc: int) -> str:
    """sha256 over every image and label path with its size and mtime, ``nc`` and the cache version."""
    h = hashlib.sha256(f"{CACHE_VERSION}|{nc}".encode())
    for f in img_files:
        for p in (f, label_path(f)):
            try:
                st = os.stat(p)
                h.update(f"|{p}|{st.st_size}|{st.st_mtime_ns}".encode())
            except (OSError, ValueError):
                h.update(f"|{p}|-".encode())
    return h.hexdigest()


def default_cache_path(img_files: list[str]) -> Path:
    """``<labels dir>.edgeseg.cache`` beside the first image's labels folder, e.g. ``labels/train.edgeseg.cache``."""
    labels_dir = Path(label_path(img_files[0])).parent
    return labels_dir.parent / f"{labels_dir.name}.edgeseg.cache"


def _outside_root(path: Path, root: str | os.PathLike | None) -> str:
    """Why ``path`` may not be written under the dataset ``root`` ('' when it may: inside it, or no root given)."""
    if root is None:
        return ""
    folder, top = Path(os.path.realpath(path.parent)), Path(os.path.realpath(root))
    if folder == top or top in folder.parents:
        return ""
    return f"its folder {folder} is outside the dataset root {top}"


def _save_cache(path: Path, digest: str, labels: list[Label], stats: ScanStats) -> bool:
    """Write the cache atomically through a random temporary name; False (and one warning) if it cannot be written."""
    segments = [s for lb in labels for s in lb.segments]
    meta = {
        "version": CACHE_VERSION,
        "hash": digest,
        "im_files": [lb.im_file for lb in labels],
        "counts": [stats.images, stats.found, stats.missing, stats.empty, stats.corrupt, stats.duplicates],
        "messages": stats.messages,
    }
    arrays = {
        "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8),
        "shapes": np.array([lb.shape for lb in labels], np.int64).reshape(-1, 2),
        "n_inst": np.array([len(lb.cls) for lb in labels], np.int64),
        "cls": np.concatenate([lb.cls for lb in labels] + [np.zeros(0, np.int64)]),
        "n_pts": np.array([len(s) for s in segments], np.int64),
        "points": np.concatenate(segments + [np.zeros((0, 2), np.float32)]),
    }
    try:
        if not path.parent.is_dir():
            raise FileNotFoundError(errno.ENOENT, f"no folder {path.parent}")
        atomic_write(path, lambda f: np.savez(f, **arrays))
    except (OSError, EdgesegError) as e:
        LOGGER.warning(f"label cache not written to {path}: {os_reason(e)}")
        return False
    return True


def _zip_directory_ok(f: BinaryIO, size: int) -> bool:
    """True when the zip's end record lists exactly the cache's members in a small central directory.

    Checked before ``zipfile`` parses the directory, whose entries cost memory in proportion to their number.
    """
    tail_size = min(size, 22 + 0xFFFF)
    f.seek(size - tail_size)
    tail = f.read(tail_size)
    end = tail.rfind(b"PK\x05\x06")
    if end < 0 or end + 22 > len(tail):
        return False
    entries, directory_size = struct.unpack_from("<HI", tail, end + 10)
    return entries == len(_CACHE_ARRAYS) + 1 and directory_size < 1 << 16


def _read_member(zf: zipfile.ZipFile, name: str, dtype) -> np.ndarray:
    """One stored ``.npy`` member of ``dtype``, its declared size checked against the member's before allocating.

    Raises:
        ValueError: the member is compressed, of another dtype, or declares more data than it holds.
    """
    info = zf.getinfo(f"{name}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{name}: compressed")
    with zf.open(info) as member:
        version = np.lib.format.read_magic(member)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, found = read_header(member)
    if found != np.dtype(dtype) or fortran or math.prod(shape) * found.itemsize > info.file_size:
        raise ValueError(f"{name}: not a {np.dtype(dtype)} array of its stored size")
    with zf.open(info) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def _list_of(value, kind: type) -> bool:
    """True when ``value`` is a list whose items are all of ``kind``."""
    return isinstance(value, list) and all(isinstance(v, kind) for v in value)


def _cached_labels(meta: dict, arrays: dict[str, np.ndarray], nc: int) -> list[Label]:
    """The Labels a cache holds, after checking its arrays agree with each other.

    Raises:
        ValueError: the cache's parts are inconsistent (not written by this module).
    """
    shapes, n_inst, cls, n_pts, points = (arrays[k] for k in _CACHE_ARRAYS)
    im_files = meta["im_files"]
    n = len(im_files)
    consistent = (
        shapes.shape == (n, 2)
        and (shapes > 0).all()
        and n_inst.shape == (n,)
        and (n_inst >= 0).all()
        and cls.shape == (int(n_inst.sum()),)
        and ((cls >= 0) & (cls < nc)).all()
        and n_pts.shape == cls.shape
        and (n_pts >= 3).all()
        and points.shape == (int(n_pts.sum()), 2)
        and ((points >= 0) & (points <= 1)).all()
    )
    if not consistent:
        raise ValueError("inconsistent cache")
    segments = np.split(points, np.cumsum(n_pts)[:-1]) if len(n_pts) else []
    labels, i = [], 0
    for im_file, shape, k in zip(im_files, shapes.tolist(), n_inst.tolist()):
        segs = segments[i : i + k]
        labels.append(Label(im_file, (shape[0], shape[1]), cls[i : i + k].copy(), segs, segments_to_boxes(segs)))
        i += k
    return labels


def _load_cache(path: Path, digest: str, nc: int) -> tuple[list[Label], list[int], list[str]] | None:
    """Labels, counts and messages from a cache whose hash matches ``digest``; None if absent, stale or not ours.

    Every size is checked before memory is allocated for it: the file (MAX_CACHE_BYTES), the zip
    directory, each member's declared array size against its stored size.
    """
    try:
        f, size = open_capped(path, MAX_CACHE_BYTES)
    except (OSError, ValueError):
        return None
    with f:
        try:
            if not _zip_directory_ok(f, size):
                return None
            with zipfile.ZipFile(f) as zf:
                meta = json.loads(_read_member(zf, "meta", np.uint8).tobytes())
                if not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION or meta.get("hash") != digest:
                    return None
                arrays = {k: _read_member(zf, k, dtype) for k, dtype in _CACHE_ARRAYS.items()}
            counts, messages = meta["counts"], meta["messages"]
            if not (_list_of(counts, int) and len(counts) == 6 and _list_of(messages, str)):
                return None
            if not _list_of(meta["im_files"], str):
                return None
            return _cached_labels(meta, arrays, nc), counts, messages
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, struct.error):
            return None  # another tool's, an older or a damaged file: rescan and overwrite it


def scan_labels(
    img_files: list[str],
    nc: int,
    cache_path: str | os.PathLike | None = None,
    prefix: str = "train",
    root: str | os.PathLike | None = None,
) -> tuple[list[Label], ScanStats]:
    """Check every image and its label file, or read the result from a valid cache.

    A corrupt image (refused by :func:`decode_image`: unreadable, over a size limit, not
    decodable; or under 10 px) or label (over MAX_LABEL_BYTES, not UTF-8, non-numeric, class id
    not an integer in 0..nc-1, odd coordinate count, fewer than 3 points, coordinates outside
    [0, 1] beyond 1e-3 or not finite) excludes the image, with one warning naming the file and
    the problem. Missing and empty label files keep the image with no instances; duplicate lines
    are dropped. Logs one summary line on the ``edgeseg`` logger.

    Args:
        img_files: N image paths (``img_paths`` gives them with their dataset root attached).
        nc: number of classes.
        cache_path: cache file; None for :func:`default_cache_path`.
        prefix: the split name that starts the log lines.
        root: the dataset root; the cache is written only inside it (one log line says when
            it is not). None: ``img_files.root`` when present, else no restriction.

    Returns:
        The labels of the N - corrupt kept images, in input order, and the ScanStats.
    """
    root = root if root is not None else getattr(img_files, "root", None)
    path = Path(cache_path) if cache_path is not None else default_cache_path(img_files)
    digest = _files_hash(img_files, nc)
    cached = _load_cache(path, digest, nc)
    if cached is not None:
        labels, counts, messages = cached
        stats = ScanStats(*counts, cache_path=str(path), from_cache=True, messages=messages)
    else:
        labels, stats = _scan(img_files, nc)
        if reason := _outside_root(path, root):
            LOGGER.info(f"{prefix}: labels not cached: {reason}")
        elif _save_cache(path, digest, labels, stats):
            stats.cache_path = str(path)
    for msg in stats.messages:
        LOGGER.warning(f"{prefix}: {msg}, image excluded")
    LOGGER.info(stats.summary(prefix))
    return labels, stats


def _scan(img_files: list[str], nc: int) -> tuple[list[Label], ScanStats]:
    """Check every file on a thread pool; the kept labels and the counts (not cached yet: ``cache_path`` None)."""
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
