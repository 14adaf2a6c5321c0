"""COCO run-length encoding of binary masks, in numpy (no pycocotools at run time).

The format is COCO's compressed RLE: run lengths of the mask flattened in column-major
(Fortran) order, starting with a run of zeros (possibly empty), then turned into a string
with COCO's LEB128-like code (5 bits per character, offset by 48, runs after the third
stored as the difference to the run two places before).
"""

import numpy as np

MAX_RLE_PIXELS = 100_000_000  # pixels (H x W) of the largest mask rle_decode builds unless told otherwise (100 MB)

_BITS = 5
_MAX_CHARS = 13  # 64-bit signed integers need at most 13 groups of 5 bits
_CODES = 64  # characters 48..111 carry 5 bits and a continuation bit


def _runs(mask: np.ndarray) -> np.ndarray:
    """Run lengths (M,) int64 of a (H, W) bool mask in column-major order, starting with zeros."""
    flat = mask.ravel(order="F")
    if flat.size == 0:
        return np.zeros(0, dtype=np.int64)
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate(([0], edges, [flat.size]))).astype(np.int64)
    return np.concatenate(([0], runs)) if flat[0] else runs


def _counts_to_string(runs: np.ndarray) -> str:
    """COCO's ``rleToString``: (M,) int64 run lengths -> compressed ASCII string."""
    if runs.size == 0:
        return ""
    values = runs.copy()
    values[3:] -= runs[1:-2]
    # Characters per value: the fewest 5-bit groups that hold it as a signed integer.
    limits = 16 * (np.int64(32) ** np.arange(_MAX_CHARS - 1, dtype=np.int64))
    n_chars = 1 + ((values[:, None] >= limits) | (values[:, None] < -limits)).sum(1)
    width = int(n_chars.max())
    position = np.arange(width)
    chunks = (values[:, None] >> (_BITS * position)) & 0x1F
    chunks |= np.where(position < n_chars[:, None] - 1, 0x20, 0)
    chars = (chunks + 48)[position < n_chars[:, None]]
    return chars.astype(np.uint8).tobytes().decode("ascii")


def _string_to_counts(text: str | bytes) -> np.ndarray:
    """COCO's ``rleFrString``: compressed string -> (M,) int64 run lengths.

    Raises:
        ValueError: a character outside COCO's alphabet, a value of more than 13 characters, or
            a string that ends inside a value.
    """
    codes = np.frombuffer(text.encode("ascii") if isinstance(text, str) else bytes(text), dtype=np.uint8)
    if codes.size == 0:
        return np.zeros(0, dtype=np.int64)
    codes = codes.astype(np.int64) - 48
    if codes.min() < 0 or codes.max() >= _CODES:
        raise ValueError("RLE string has a character outside COCO's alphabet")
    last = (codes & 0x20) == 0  # the final character of each value has no continuation bit
    if not last[-1]:
        raise ValueError("RLE string ends inside a value")
    value_id = np.concatenate(([0], np.cumsum(last)[:-1]))
    starts = np.flatnonzero(np.concatenate(([True], last[:-1])))
    position = np.arange(codes.size) - starts[value_id]
    if position.max() >= _MAX_CHARS:
        raise ValueError(f"RLE string has a value of more than {_MAX_CHARS} characters")
    values = np.zeros(int(last.sum()), dtype=np.int64)
    np.add.at(values, value_id, (codes & 0x1F) << (_BITS * position))
    ends = np.flatnonzero(last)
    negative = (codes[ends] & 0x10) != 0
    values[negative] -= np.int64(1) << (_BITS * (position[ends[negative]] + 1))
    # Undo the delta coding: run i (i > 2) was stored as run[i] - run[i - 2].
    counts = values.copy()
    counts[2::2] = np.cumsum(values[2::2])
    counts[1::2] = np.cumsum(values[1::2])
    return counts


def rle_encode(mask: np.ndarray) -> dict:
    """Encode a binary mask as COCO compressed RLE.

    Args:
        mask: (H, W) bool (or 0/1) array.

    Returns:
        ``{"size": [H, W], "counts": str}``, equal to ``pycocotools.mask.encode`` with the
        counts bytes decoded as ASCII.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode expects an (H, W) mask, got shape {mask.shape}")
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": _counts_to_string(_runs(mask))}


def _rle_size(size) -> tuple[int, int]:
    """(H, W) from an RLE's ``size``: two non-negative integers; ValueError otherwise."""
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise ValueError(f"RLE size must be [H, W], got {str(size)[:40]}")
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in size):
        raise ValueError(f"RLE size must be two non-negative integers, got {str(size)[:40]}")
    return int(size[0]), int(size[1])


def _list_runs(counts) -> np.ndarray:
    """(M,) int64 run lengths from an uncompressed list of integers; ValueError for anything else."""
    try:
        runs = np.asarray(counts)
    except (ValueError, TypeError, OverflowError):
        raise ValueError("RLE counts must be a flat list of integers") from None
    if runs.ndim != 1 or (runs.size and runs.dtype.kind not in "iu"):
        raise ValueError("RLE counts must be a flat list of integers")
    return runs.astype(np.int64)


def rle_decode(rle: dict, max_pixels: int = MAX_RLE_PIXELS) -> np.ndarray:
    """Decode a COCO RLE back into a mask, checking its size before allocating it.

    Args:
        rle: ``{"size": [H, W], "counts": ...}`` where counts is the compressed string (str or
            bytes) or an uncompressed list of run lengths.
        max_pixels: the largest H x W decoded.

    Returns:
        (H, W) bool mask.

    Raises:
        ValueError: a malformed RLE (size, counts, runs that do not cover H x W exactly) or one
            larger than ``max_pixels``.
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("RLE must be a mapping with 'size' and 'counts'")
    h, w = _rle_size(rle["size"])
    if h * w > max_pixels:
        raise ValueError(f"RLE size {h}x{w} is more than {max_pixels:,} pixels")
    counts = rle["counts"]
    if isinstance(counts, (list, tuple, np.ndarray)):
        runs = _list_runs(counts)
    elif isinstance(counts, (str, bytes)):
        runs = _string_to_counts(counts)
    else:
        raise ValueError(f"RLE counts must be a string or a list, got {type(counts).__name__}")
    if runs.size and (runs.min() < 0 or runs.max() > h * w):
        raise ValueError(f"RLE has a run outside 0..{h * w}")
    if int(runs.sum()) != h * w:
        raise ValueError(f"RLE runs cover {int(runs.sum())} pixels, size {h}x{w} has {h * w}")
    flat = np.repeat(np.arange(runs.size) % 2 == 1, runs)
    return np.ascontiguousarray(flat.reshape(w, h).T)
