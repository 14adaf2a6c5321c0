"""Image files: header parsers against known answers, and decoding refused before reading, within the limits."""

import io
import os
import re
import struct
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.runtimes.io import images as images_module
from edgeseg.runtimes.io.images import MAX_IMAGE_BYTES, ImageHeader, ImageReadError, decode_image, read_image, read_image_header

from bad_files import GIB3, bmp_bytes, encoded, patch_sof, png_bytes, small_image, sparse, tiff_bytes, webp_vp8x, write

# --------------------------------------------------------------------------------------
# Header parsers: known answers
# --------------------------------------------------------------------------------------


def header_of(data: bytes) -> ImageHeader:
    return read_image_header(io.BytesIO(data))


def test_headers_declare_known_sizes():
    progressive = encoded(".jpg", small_image(), cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    exif = b"\xff\xe1" + struct.pack(">H", 2 + 3000) + b"Exif\0\0" + b"\xff" * 2994  # a long APP1 full of 0xFF bytes
    cases = {
        "png": (png_bytes(30000, 30000), ("PNG", 30000, 30000, 0)),
        "jpeg_sof0": (patch_sof(encoded(".jpg"), 123, 45), ("JPEG", 123, 45, 0)),
        "jpeg_sof2_after_app1": (progressive[:2] + exif + patch_sof(progressive, 300, 200)[2:], ("JPEG", 300, 200, 0)),
        "jpeg_fill_bytes": (b"\xff\xd8\xff\xff\xff" + patch_sof(encoded(".jpg"), 7, 9)[3:], ("JPEG", 7, 9, 0)),
        "bmp": (bmp_bytes(640, 480), ("BMP", 640, 480, 0)),
        "bmp_top_down": (bmp_bytes(640, -480), ("BMP", 640, 480, 0)),
        "bmp_core": (bmp_bytes(300, 200, core=True), ("BMP", 300, 200, 0)),
        "webp_vp8x": (webp_vp8x(16384 * 4, 3), ("WebP", 65536, 3, 0)),
        "tiff_le": (tiff_bytes([(256, 3, 640), (257, 4, 480)]), ("TIFF", 640, 480, 0)),
        "tiff_be_tiles": (tiff_bytes([(256, 4, 16), (257, 3, 16), (322, 3, 8192), (323, 3, 8192)], ">"), ("TIFF", 16, 16, 1 << 26)),
        "bigtiff": (tiff_bytes([(256, 16, 1 << 20), (257, 16, 1 << 20)], big=True), ("TIFF", 1 << 20, 1 << 20, 0)),
    }
    for name, (data, expected) in cases.items():
        assert tuple(header_of(data)) == expected, name


def rgb_tiff(img: np.ndarray, order: str = "<", big: bool = False) -> bytes:
    """An uncompressed RGB TIFF (or BigTIFF) of an (h, w, 3) BGR image, in one strip."""
    h, w = img.shape[:2]
    pixels = img[..., ::-1].tobytes()
    entries = [(256, 3, w), (257, 3, h), (258, 3, 8), (259, 3, 1), (262, 3, 2), (273, 4, 16 if big else 8)]
    return tiff_bytes([*entries, (277, 3, 3), (278, 3, h), (279, 4, len(pixels))], order, big, pixels)


def test_headers_agree_with_opencv():
    img = small_image(37, 53)
    samples = {
        "png": encoded(".png", img),
        "png16": encoded(".png", img.astype(np.uint16) * 257),
        "jpeg": encoded(".jpg", img),
        "jpeg_progressive": encoded(".jpg", img, cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
        "bmp": encoded(".bmp", img),
        "bmp32": encoded(".bmp", cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)),
        "webp_lossy": encoded(".webp", img, cv2.IMWRITE_WEBP_QUALITY, 80),
        "webp_lossless": encoded(".webp", img, cv2.IMWRITE_WEBP_QUALITY, 101),
        "tiff": encoded(".tiff", img),
        "tiff16": encoded(".tiff", img.astype(np.uint16) * 257),
    }
    for order in "<>":
        for big in (False, True):
            samples[f"tiff_{order}_{'big' if big else 'classic'}"] = rgb_tiff(img, order, big)
    for name, data in samples.items():
        header = header_of(data)
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert (header.height, header.width) == decoded.shape[:2] == (37, 53), name


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"P6\n30000 30000\n255\n" + b"\0" * 64, "not a JPEG, PNG, BMP, WebP or TIFF file"),
        (b"GIF89a" + b"\0" * 64, "not a JPEG, PNG, BMP, WebP or TIFF file"),
        (png_bytes(10, 10)[:20], "truncated"),
        (b"\x89PNG\r\n\x1a\n" + b"\0\0\0\x0dIEND" + b"\0" * 16, "does not start with its IHDR"),
        (b"\xff\xd8" + b"\xff\xe0\x00\x01", "segment length 1"),
        (b"\xff\xd8\xff\xda\x00\x08" + b"\0" * 8, "before any frame header"),
        (b"\xff\xd8\xff\xe0\x00\x10" + b"\0" * 14, "no JPEG frame header"),
        (b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 20, "no VP8"),
        (bmp_bytes(10, 10)[:14] + struct.pack("<I", 8) + b"\0" * 12, "not a known kind"),
        (tiff_bytes([(256, 3, 16)]), "lacks the image width or height"),
        (b"II*\0" + struct.pack("<IH", 8, 60000) + b"\0" * 12, "60000 entries"),
        (b"II*\0" + struct.pack("<I", 1 << 30), "truncated"),
    ],
)
def test_malformed_headers_are_named(data, problem):
    with pytest.raises(ImageReadError, match=re.escape(problem)):
        header_of(data)


# --------------------------------------------------------------------------------------
# decode_image / read_image: limits before reading, never an exception for a bad file
# --------------------------------------------------------------------------------------


def _fifo(path: Path) -> None:
    os.mkfifo(path)


@pytest.mark.parametrize(
    "build, problem",
    [
        (lambda p: sparse(p, encoded(".jpg"), GIB3), f"file is 3,221,225,472 bytes, more than the {MAX_IMAGE_BYTES:,}-byte limit"),
        (lambda p: write(p, png_bytes(30000, 30000)), "PNG declares 30000 x 30000 pixels, more than the 50,000,000-pixel limit"),
        (lambda p: write(p, patch_sof(encoded(".jpg"), 10000, 5001)), "JPEG declares 10000 x 5001 pixels"),
        (lambda p: write(p, bmp_bytes(65535, 65535)), "BMP declares 65535 x 65535"),
        (lambda p: write(p, webp_vp8x(10000, 10000)), "WebP declares 10000 x 10000"),
        (lambda p: write(p, tiff_bytes([(256, 3, 16), (257, 3, 16), (322, 4, 1 << 14), (323, 4, 1 << 14)])), "tiles of 268,435,456"),
        (lambda p: write(p, png_bytes(0, 10)), "PNG header declares 0 x 10 pixels"),
        (lambda p: write(p, b""), "empty file"),
        (lambda p: write(p, b"not an image at all"), "not a JPEG, PNG, BMP, WebP or TIFF file"),
        (lambda p: write(p, png_bytes(64, 48)), "PNG data cannot be decoded"),
        (lambda p: p.mkdir(), "file is not a regular file"),
        (_fifo, "file is not a regular file"),
        (lambda p: p.symlink_to(p.name), "cannot be opened (Too many levels of symbolic links)"),
        (lambda p: p.symlink_to("missing.png"), "cannot be opened (No such file or directory)"),
    ],
    ids=["sparse_3gb", "png_30000", "jpeg_50mp", "bmp_huge", "webp_huge", "tiff_tiles", "zero_width", "empty", "garbage",
         "png_no_data", "folder", "fifo", "link_loop", "dangling"],
)
def test_decode_refuses_before_reading(tmp_path, build, problem):
    path = tmp_path / "x.png"
    build(path)
    start = time.perf_counter()
    with pytest.raises(ImageReadError) as err:
        decode_image(path)
    assert problem in str(err.value) and str(path) not in str(err.value)
    assert read_image(path) is None and time.perf_counter() - start < 2


def test_an_opencv_exception_is_a_refusal(tmp_path, monkeypatch):
    def boom(*args):
        raise cv2.error("OpenCV(5.0.0) decoder exploded")

    write(tmp_path / "a.png", encoded(".png"))
    monkeypatch.setattr(images_module.cv2, "imdecode", boom)
    with pytest.raises(ImageReadError, match="OpenCV cannot decode this PNG"):
        decode_image(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png") is None


def test_images_within_the_limits_decode(tmp_path):
    img = small_image()
    lossless = encoded(".webp", img, cv2.IMWRITE_WEBP_QUALITY, 101)
    for name, data in {"a.png": encoded(".png", img), "a.jpg": encoded(".jpg", img), "a.webp": lossless}.items():
        assert decode_image(write(tmp_path / name, data)).shape == img.shape
    png_as_jpg = write(tmp_path / "really_a_png.jpg", encoded(".png", img))  # recognised by content, not by name
    np.testing.assert_array_equal(decode_image(png_as_jpg), img)


def test_memory_budget_bounds_what_threads_hold():
    budget = images_module._MemoryBudget(100)
    held, peak, lock = [0], [0], threading.Lock()

    def work(n):
        with budget.hold(n):
            with lock:
                held[0] += min(n, 100)
                peak[0] = max(peak[0], held[0])
            time.sleep(0.01)
            with lock:
                held[0] -= min(n, 100)

    threads = [threading.Thread(target=work, args=(n,)) for n in [60, 60, 30, 30, 500, 10] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads) and 60 <= peak[0] <= 100 and held[0] == 0
