"""The cached scan of a YOLO-seg split (``scan_labels``): the result of ``labels.scan_files``, kept on disk.

The cache is an ``.npz`` of plain arrays (no pickles: loading it never runs code), written
beside the labels folder (``labels/train`` -> ``labels/train.edgeseg.cache``; the name differs
from Ultralytics' ``labels/train.cache`` so the two tools do not overwrite each other's cache)
through ``edgeseg.runtimes.io.files.atomic_write`` (a random temporary name, never a planted link), and
only inside the dataset root when one is known. It is keyed on a hash of every image and label
path with its size and mtime, and on ``nc``; a cache that is not exactly what this module
writes is ignored and rewritten. Training, ``edgeseg data check`` and val on a device all scan
through it.
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
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edgeseg.runtimes.errors import EdgesegError, os_reason
from edgeseg.runtimes.evaluation.labels import Label, ScanStats, scan_files, segments_to_boxes
from edgeseg.runtimes.io.capped import open_capped
from edgeseg.runtimes.io.data_config import label_path
from edgeseg.runtimes.io.files import atomic_write

LOGGER = logging.getLogger("edgeseg")

CACHE_VERSION = 1
MAX_CACHE_BYTES = 512 << 20  # bytes (512 MiB): a larger cache file is ignored and the split rescanned
_CACHE_ARRAYS = {"shapes": np.int64, "n_inst": np.int64, "cls": np.int64, "n_pts": np.int64, "points": np.float32}


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
        labels, stats = scan_files(img_files, nc)
        if reason := _outside_root(path, root):
            LOGGER.info(f"{prefix}: labels not cached: {reason}")
        elif _save_cache(path, digest, labels, stats):
            stats.cache_path = str(path)
    for msg in stats.messages:
        LOGGER.warning(f"{prefix}: {msg}, image excluded")
    LOGGER.info(stats.summary(prefix))
    return labels, stats
