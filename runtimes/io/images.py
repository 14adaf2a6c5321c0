"""Decode image files with every size decided before the bytes are read: the one image reader of edgeseg.

Images are decoded with OpenCV's ``IMREAD_COLOR``, which applies the EXIF orientation tag
(checked with OpenCV 5.0 on a JPEG tagged orientation 6: the decoded array is the rotated,
displayed image; ``IMREAD_IGNORE_ORIENTATION`` would turn that off). YOLO labels refer to the
displayed image, so shapes and pixels are always in that orientation.

:func:`decode_image` decides from the file's size and its header, before reading or decoding
it, whether it may be decoded: a regular file of at most :data:`MAX_IMAGE_BYTES`, a JPEG, PNG,
BMP, WebP or TIFF (recognised by content, not by name) declaring at most
:data:`MAX_IMAGE_PIXELS`. A file that fails is never a traceback: the label scan counts it as
corrupt with the reason, predict skips and counts it. OpenCV's own pixel limit
(``OPENCV_IO_MAX_IMAGE_PIXELS``, 2^30 by default) is read once when cv2 is loaded, so it cannot
be lowered once another module has imported cv2; the header check here does not depend on it.

Reading runs on several threads (the scan, val prefetching); what all of them may hold at once
while decoding (or parsing labels, see ``edgeseg.runtimes.evaluation.labels``) is bounded by
:data:`MAX_READ_BYTES_IN_FLIGHT` through :data:`READ_BUDGET` (a read that would pass it waits
for the others), so memory does not grow with the number of threads.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, NamedTuple

import cv2
import numpy as np

from edgeseg.runtimes.io.capped import FileLimitError, open_user_file

MAX_IMAGE_BYTES = 128 << 20  # bytes (128 MiB): larger image files are refused unread (a 40 MP 8-bit TIFF is 120 MB)
MAX_IMAGE_PIXELS = 50_000_000  # pixels (50 MP, e.g. 8660 x 5773) an image header may declare
DECODE_BYTES_PER_PIXEL = 16  # bytes OpenCV may use per pixel while decoding (measured worst: 14.3, 16-bit RGBA TIFF)

MAX_READ_BYTES_IN_FLIGHT = MAX_IMAGE_BYTES + MAX_IMAGE_PIXELS * DECODE_BYTES_PER_PIXEL  # one largest image at a time
JPEG_HEADER_SEARCH_BYTES = 1 << 20  # bytes: a JPEG's frame header (SOFn) must start within them
MAX_TIFF_TAGS = 4096  # entries of a TIFF's first directory (one holds a few dozen)

IMAGE_FORMATS = "JPEG, PNG, BMP, WebP or TIFF"
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers (DHT, JPG, DAC excluded)
_JPEG_STANDALONE = frozenset(range(0xD0, 0xD9)) | {0x01}  # RSTn, SOI, TEM: markers without a length
_TIFF_TYPES = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8 (BigTIFF only): the integer types of size tags
_TIFF_SIZE_TAGS = {256: "width", 257: "height", 322: "tile_width", 323: "tile_height"}


class ImageReadError(ValueError):
    """Why an image file is not decoded; the message does not name the file."""


class ImageHeader(NamedTuple):
    """What an image file's header declares.

    Attributes:
        format: ``"JPEG"``, ``"PNG"``, ``"BMP"``, ``"WebP"`` or ``"TIFF"``.
        width, height: pixels, before any EXIF rotation.
        buffer_pixels: pixels of the largest buffer the decoder allocates besides the image
            (a TIFF tile); 0 for other formats.
    """

    format: str
    width: int
    height: int
    buffer_pixels: int = 0

    @property
    def pixels(self) -> int:
        """The pixel count the limits apply to: the image's, or the decoder buffer's if larger."""
        return max(self.width * self.height, self.buffer_pixels)



class _MemoryBudget:
    """Bytes that reads on all threads may hold at once; a read waits until its share is free.

    A single read larger than the whole budget is given the whole budget (it runs alone).
    """

    def __init__(self, total: int):
        self.total = total
        self.reset()

    def reset(self) -> None:
        """Forget every reservation: in a forked child (a DataLoader worker) the threads that held them do not exist."""
        self._free = self.total
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        """Reserve ``nbytes`` (waiting while other threads hold too much) for the ``with`` block."""
        nbytes = min(nbytes, self.total)
        with self._cond:
            self._cond.wait_for(lambda: self._free >= nbytes)
            self._free -= nbytes
        try:
            yield
        finally:
            with self._cond:
                self._free += nbytes
                self._cond.notify_all()


READ_BUDGET = _MemoryBudget(MAX_READ_BYTES_IN_FLIGHT)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=READ_BUDGET.reset)


def _unpack(fmt: str, data: bytes, offset: int) -> tuple:
    """``struct.unpack_from`` that raises ImageReadError when ``data`` is too short."""
    try:
        return struct.unpack_from(fmt, data, offset)
    except struct.error:
        raise ImageReadError("header is truncated") from None


def _png_header(head: bytes) -> ImageHeader:
    """Width and height from the IHDR chunk, which must come first."""
    if head[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise ImageReadError("PNG does not start with its IHDR chunk")
    width, height = _unpack(">II", head, 16)
    return ImageHeader("PNG", width, height)


def _bmp_header(head: bytes) -> ImageHeader:
    """Width and |height| from the DIB header (OS/2 12-byte core header or a BITMAPINFOHEADER)."""
    (dib_size,) = _unpack("<I", head, 14)
    if dib_size == 12:
        width, height = _unpack("<HH", head, 18)
    elif dib_size >= 16:
        width, height = _unpack("<ii", head, 18)
    else:
        raise ImageReadError(f"BMP header of {dib_size} bytes is not a known kind")
    return ImageHeader("BMP", width, abs(height))


def _webp_header(head: bytes) -> ImageHeader:
    """Canvas size from the first chunk: VP8 (lossy), VP8L (lossless) or VP8X (extended)."""
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        width, height = _unpack("<HH", head, 26)
        return ImageHeader("WebP", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L" and head[20:21] == b"\x2f":
        (bits,) = _unpack("<I", head, 21)
        return ImageHeader("WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X" and len(head) >= 30:
        return ImageHeader("WebP", 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little"))
    raise ImageReadError("WebP has no VP8, VP8L or VP8X header where expected")


def _jpeg_header(f: BinaryIO) -> ImageHeader:
    """Width and height from the first frame header (SOFn), walking the marker segments as libjpeg does.

    Bytes between segments that are not a marker are skipped (libjpeg warns and does the same).
    """
    f.seek(0)
    data = f.read(JPEG_HEADER_SEARCH_BYTES)
    i = 2
    while (i := data.find(b"\xff", i)) >= 0:
        while i < len(data) and data[i] == 0xFF:  # fill bytes before a marker
            i += 1
        if i >= len(data):
            break
        marker, i = data[i], i + 1
        if marker in _JPEG_SOF:
            height, width = _unpack(">HH", data, i + 3)
            return ImageHeader("JPEG", width, height)
        if marker in (0xD9, 0xDA):
            raise ImageReadError("JPEG image data starts before any frame header")
        if marker in _JPEG_STANDALONE or marker == 0x00:
            continue
        (length,) = _unpack(">H", data, i)
        if length < 2:
            raise ImageReadError(f"JPEG segment length {length} is invalid")
        i += length
    raise ImageReadError(f"no JPEG frame header in the first {JPEG_HEADER_SEARCH_BYTES:,} bytes")


def _tiff_header(f: BinaryIO, head: bytes) -> ImageHeader:
    """Image and tile size from the first image directory (classic TIFF or BigTIFF, either byte order)."""
    order = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\x00", b"\x00+")
    (offset,) = _unpack(order + ("Q" if big else "I"), head, 8 if big else 4)
    entry_fmt, count_fmt = (order + "HHQ", order + "Q") if big else (order + "HHI", order + "H")
    entry_size = 20 if big else 12
    value_at = struct.calcsize(entry_fmt)
    f.seek(offset)
    (count,) = _unpack(count_fmt, f.read(struct.calcsize(count_fmt)), 0)
    if count > MAX_TIFF_TAGS:
        raise ImageReadError(f"TIFF directory of {count} entries (more than {MAX_TIFF_TAGS})")
    entries = f.read(count * entry_size)
    sizes: dict[str, int] = {}
    for k in range(count):
        tag, kind, n_values = _unpack(entry_fmt, entries, k * entry_size)
        if tag in _TIFF_SIZE_TAGS and n_values == 1 and kind in _TIFF_TYPES and (big or kind != 16):
            value = _unpack(order + _TIFF_TYPES[kind], entries, k * entry_size + value_at)[0]
            sizes[_TIFF_SIZE_TAGS[tag]] = value
    if "width" not in sizes or "height" not in sizes:
        raise ImageReadError("TIFF directory lacks the image width or height")
    tile = sizes.get("tile_width", 0) * sizes.get("tile_height", 0)
    return ImageHeader("TIFF", sizes["width"], sizes["height"], tile)


def read_image_header(f: BinaryIO) -> ImageHeader:
    """What an open image file's header declares, recognised by its first bytes (not its name).

    Reads at most :data:`JPEG_HEADER_SEARCH_BYTES` (a JPEG) or one TIFF directory; never decodes.

    Raises:
        ImageReadError: not a JPEG, PNG, BMP, WebP or TIFF file, or a malformed header.
    """
    f.seek(0)
    head = f.read(32)
    if head.startswith(b"\xff\xd8"):
        return _jpeg_header(f)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png_header(head)
    if head.startswith(b"BM"):
        return _bmp_header(head)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp_header(head)
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _tiff_header(f, head)
    raise ImageReadError(f"not a {IMAGE_FORMATS} file")


def _check_header(header: ImageHeader) -> None:
    """Raise ImageReadError unless the declared sizes are positive and within MAX_IMAGE_PIXELS."""
    if header.width < 1 or header.height < 1:
        raise ImageReadError(f"{header.format} header declares {header.width} x {header.height} pixels")
    if header.pixels > MAX_IMAGE_PIXELS:
        size = f"{header.width} x {header.height}"
        if header.buffer_pixels > header.width * header.height:
            size += f" (tiles of {header.buffer_pixels:,})"
        raise ImageReadError(f"{header.format} declares {size} pixels, more than the {MAX_IMAGE_PIXELS:,}-pixel limit")


def decode_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file as (H, W, 3) uint8 BGR with EXIF orientation applied, within the limits.

    The file must be a regular file of at most MAX_IMAGE_BYTES whose header declares at most
    MAX_IMAGE_PIXELS; both are checked before the file is read whole, and decoding waits for
    its share of MAX_READ_BYTES_IN_FLIGHT.

    Raises:
        ImageReadError: why the file was not decoded (one line, without the path).
    """
    try:
        f, size = open_user_file(path, MAX_IMAGE_BYTES)
    except FileLimitError as e:
        raise ImageReadError(str(e)) from None
    with f:
        if size == 0:
            raise ImageReadError("empty file")
        header = read_image_header(f)
        _check_header(header)
        with READ_BUDGET.hold(size + header.pixels * DECODE_BYTES_PER_PIXEL):
            f.seek(0)
            try:
                image = cv2.imdecode(np.frombuffer(f.read(size), np.uint8), cv2.IMREAD_COLOR)
            except cv2.error as e:
                raise ImageReadError(f"OpenCV cannot decode this {header.format} ({getattr(e, 'err', '') or e})") from None
            except MemoryError:
                raise ImageReadError(f"not enough memory to decode this {header.width} x {header.height} image") from None
    if image is None:
        raise ImageReadError(f"{header.format} data cannot be decoded")
    return image


def read_image(path: str | os.PathLike) -> np.ndarray | None:
    """:func:`decode_image`, or None for a file it refuses (never raises for a bad file)."""
    try:
        return decode_image(path)
    except ImageReadError:
        return None
