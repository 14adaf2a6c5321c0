"""Hostile data: crafted images, label files, caches, data YAMLs, COCO files and predict sources.

Every entry point answers a bad input with one ``error:`` line or a counted skip (a warning naming
the file, and the count), within the time and memory of ``tests/hostile.py`` and without touching
anything outside its own output. The header parsers, the limits, the label parser, the safe YAML
loader, RLE decoding and the label cache also have direct tests with known answers.
"""

import io
import json
import logging
import os
import re
import struct
import threading
import time
import zipfile
import zlib
from dataclasses import replace
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest

import edgeseg
from edgeseg.runtimes import images as images_module
from edgeseg.runtimes.images import MAX_IMAGE_BYTES, ImageHeader, ImageReadError, decode_image, read_image, read_image_header
from edgeseg.runtimes.labels import MAX_LABEL_BYTES, read_label, scan_labels
from edgeseg.runtimes.data_config import img_paths, load_data_config
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.interop.coco import convert_coco
from edgeseg.interop.coco_geometry import MAX_OBJECT_POINTS, _closest_pair
from edgeseg.runtimes.rle import rle_decode, rle_encode
from edgeseg.runtimes.yaml_safe import MAX_YAML_BYTES, load_yaml, parse_yaml
from hostile import Case, check, params

SLOW = (pytest.mark.slow,)
LABEL = "0 0.15 0.2 0.6 0.2 0.6 0.6 0.15 0.6\n"
GIB3 = 3 << 30  # bytes of a sparse "multi-GB" file


# --------------------------------------------------------------------------------------
# File builders
# --------------------------------------------------------------------------------------


def png_bytes(w: int, h: int) -> bytes:
    """A PNG that declares w x h RGB pixels: a valid IHDR, a tiny IDAT (64 zero bytes) and IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def small_image(h: int = 48, w: int = 64) -> np.ndarray:
    """(h, w, 3) uint8 BGR: a white rectangle on grey."""
    img = np.full((h, w, 3), 60, np.uint8)
    img[h // 5 : h * 3 // 5, w // 6 : w * 3 // 5] = 255
    return img


def encoded(suffix: str, img: np.ndarray | None = None, *params) -> bytes:
    """``cv2.imencode`` bytes of ``img`` (default: small_image())."""
    ok, data = cv2.imencode(suffix, small_image() if img is None else img, list(params))
    assert ok
    return data.tobytes()


def patch_sof(jpeg: bytes, w: int, h: int) -> bytes:
    """The JPEG with its frame header (SOF0/1/2) declaring w x h."""
    i = 2
    while jpeg[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + struct.unpack(">H", jpeg[i + 2 : i + 4])[0]
    return jpeg[: i + 5] + struct.pack(">HH", h, w) + jpeg[i + 9 :]


def bmp_bytes(w: int, h: int, core: bool = False) -> bytes:
    """A BMP header (BITMAPINFOHEADER, or the 12-byte OS/2 core header) declaring w x h, h < 0 meaning top-down."""
    dib = struct.pack("<IHHHH", 12, w, h, 1, 24) if core else struct.pack("<IiiHHI", 40, w, h, 1, 24, 0) + b"\0" * 20
    return b"BM" + struct.pack("<IHHI", 14 + len(dib), 0, 0, 14 + len(dib)) + dib


def webp_vp8x(w: int, h: int) -> bytes:
    """An extended (VP8X) WebP header declaring a w x h canvas."""
    body = b"VP8X" + struct.pack("<I", 10) + b"\0" * 4 + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def tiff_bytes(entries: list[tuple[int, int, int]], order: str = "<", big: bool = False, data: bytes = b"") -> bytes:
    """A TIFF (or BigTIFF): header, ``data``, then one directory of ``(tag, type, value)`` single-value entries."""
    fmt = {3: "H", 4: "I", 16: "Q"}
    mark = b"II" if order == "<" else b"MM"
    if big:
        out = mark + struct.pack(order + "HHHQ", 43, 8, 0, 16 + len(data)) + data + struct.pack(order + "Q", len(entries))
        for tag, kind, value in sorted(entries):
            out += struct.pack(order + "HHQ", tag, kind, 1) + struct.pack(order + fmt[kind], value).ljust(8, b"\0")
        return out + struct.pack(order + "Q", 0)
    out = mark + struct.pack(order + "HI", 42, 8 + len(data)) + data + struct.pack(order + "H", len(entries))
    for tag, kind, value in sorted(entries):
        out += struct.pack(order + "HHI", tag, kind, 1) + struct.pack(order + fmt[kind], value).ljust(4, b"\0")
    return out + struct.pack(order + "I", 0)


def tiff16_rgba(w: int, h: int) -> bytes:
    """A deflate-compressed 16-bit RGBA TIFF of zeros in ONE strip: the costliest decode per pixel measured (14.3 B/px)."""
    compressor, row = zlib.compressobj(1), b"\0" * (w * 8)
    strip = b"".join(compressor.compress(row) for _ in range(h)) + compressor.flush()
    bits_at = 8 + len(strip)
    extra = struct.pack("<4H", 16, 16, 16, 16)
    entries = [(256, 4, w), (257, 4, h), (259, 3, 8), (262, 3, 2), (273, 4, 8), (277, 3, 4), (278, 4, h)]
    entries += [(279, 4, len(strip)), (284, 3, 1), (338, 3, 2)]
    ifd_at = bits_at + len(extra)
    out = b"II*\0" + struct.pack("<I", ifd_at) + strip + extra + struct.pack("<H", len(entries) + 1)
    for tag, kind, value in sorted([*entries, (258, 3, 0)]):
        if tag == 258:
            out += struct.pack("<HHII", 258, 3, 4, bits_at)
        else:
            out += struct.pack("<HHI", tag, kind, 1) + struct.pack("<" + {3: "H", 4: "I"}[kind], value).ljust(4, b"\0")
    return out + struct.pack("<I", 0)


def sparse(path: Path, head: bytes, size: int) -> None:
    """``head`` followed by a hole up to ``size`` bytes (no disk space used)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head)
    os.truncate(path, size)


def write(path: Path, content: bytes | str) -> Path:
    """Write text or bytes, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def dataset(sandbox: Path, train: dict | None = None, val: dict | None = None, yaml_text: str | None = None) -> Path:
    """``ds/``: one good labelled image per split, ``data.yaml`` (one class), plus extra ``{relative path: builder}`` files.

    A builder is bytes/str (written), or a callable taking the path.
    """
    ds = sandbox / "ds"
    for split, extra in (("train", train or {}), ("val", val or {})):
        write(ds / "images" / split / "ok.png", encoded(".png"))
        write(ds / "labels" / split / "ok.txt", LABEL)
        for rel, content in extra.items():
            path = ds / rel
            if callable(content):
                path.parent.mkdir(parents=True, exist_ok=True)
                content(path)
            else:
                write(path, content)
    write(ds / "data.yaml", yaml_text or "path: .\ntrain: images/train\nval: images/val\nnames: [thing]\n")
    return ds


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


# --------------------------------------------------------------------------------------
# Label files: numbers, sizes
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, problem",
    [
        ("inf 0.1 0.1 0.5 0.1 0.5 0.9", "class id inf is not an integer in 0..1"),
        ("1e400 0.1 0.1 0.5 0.1 0.5 0.9", "class id 1e400 is not an integer in 0..1"),
        ("nan 0.1 0.1 0.5 0.1 0.5 0.9", "class id nan is not an integer in 0..1"),
        ("-inf 0.1 0.1 0.5 0.1 0.5 0.9", "class id -inf"),
        ("0.5 0.1 0.1 0.5 0.1 0.5 0.9", "class id 0.5 is not an integer"),
        ("1e300 0.1 0.1 0.5 0.1 0.5 0.9", "class id 1e300"),
        ("0 nan 0.1 0.5 0.1 0.5 0.9", "not finite"),
        ("0 0.1 inf 0.5 0.1 0.5 0.9", "not finite"),
        ("0 0.1 0.1 1e400 0.1 0.5 0.9", "not finite"),
        ("0 0x1 0.1 0.5 0.1 0.5 0.9", "non-numeric value"),
        ("0 0.1 0.1 0.5 0.1 0.5 0.9 " + "0.5 " * 100_001, "odd number of coordinates (100007)"),
    ],
)
def test_label_numeric_edge_cases_are_corrupt_with_a_message(tmp_path, line, problem):
    path = write(tmp_path / "a.txt", f"0 0.2 0.2 0.4 0.2 0.4 0.4\n{line}\n")
    with pytest.raises(ValueError) as err:
        read_label(path, nc=2)
    assert str(err.value).startswith("line 2: ") and problem in str(err.value)


def test_label_numbers_that_are_fine(tmp_path):
    points = " ".join(["0.5"] * 200_000)  # 100,000 points on one line
    path = write(tmp_path / "a.txt", f"-0 0 0 1 0 1 1\n1.0 0 0 1 0 1 1\n0 -0 0 1 0 1 1\n1 {points}\n")
    cls, segments, duplicates = read_label(path, nc=2)
    assert cls.tolist() == [0, 1, 1] and duplicates == 1  # "-0 -0 ..." equals "0 0 ..."
    assert segments[2].shape == (100_000, 2) and segments[0].dtype == np.float32


def test_oversized_and_binary_label_files_are_corrupt(tmp_path):
    sparse(tmp_path / "big.txt", LABEL.encode(), GIB3)
    with pytest.raises(ValueError, match=f"label file is 3,221,225,472 bytes, more than the {MAX_LABEL_BYTES:,}-byte limit"):
        read_label(tmp_path / "big.txt", nc=1)
    with pytest.raises(ValueError, match=r"not UTF-8 text \(byte 0\)"):
        read_label(write(tmp_path / "bin.txt", b"\xff\xfe0 0 0"), nc=1)


# --------------------------------------------------------------------------------------
# Label cache: never through a link, never outside the dataset, never trusted blindly
# --------------------------------------------------------------------------------------


def _planted_links(labels: Path, victim: Path) -> list[Path]:
    """Links to ``victim`` at the old fixed temporary name and other names a writer might use."""
    names = ["train.edgeseg.cache.tmp", "train.edgeseg.cache.part", ".train.edgeseg.cache.tmp", "train.tmp", "tmp"]
    links = [labels / name for name in names]
    for link in links:
        link.symlink_to(victim)
    return links


def test_cache_is_never_written_through_a_planted_link(tmp_path):
    ds = dataset(tmp_path)
    victim = write(tmp_path / "victim.txt", "precious\n")
    links = _planted_links(ds / "labels", victim)
    (ds / "labels" / "val.edgeseg.cache").symlink_to(victim)  # a link at the final name is replaced, not followed
    cfg = load_data_config(ds / "data.yaml")
    for split in ("train", "val"):
        _, stats = scan_labels(img_paths(cfg[split], cfg["path"]), 1, prefix=split)
        assert stats.cache_path == str(ds / "labels" / f"{split}.edgeseg.cache")
    assert victim.read_text() == "precious\n"
    assert all(link.is_symlink() and os.readlink(link) == str(victim) for link in links)
    assert not (ds / "labels" / "val.edgeseg.cache").is_symlink()
    assert not [p.name for p in (ds / "labels").iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]
    _, stats = scan_labels(img_paths(cfg["val"], cfg["path"]), 1, prefix="val")
    assert stats.from_cache


def test_cache_outside_the_dataset_root_is_not_written(tmp_path, caplog):
    ds = dataset(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    write(elsewhere / "images" / "train" / "a.png", encoded(".png"))
    write(elsewhere / "labels" / "train" / "a.txt", LABEL)
    write(ds / "data.yaml", f"path: .\ntrain: {elsewhere / 'images' / 'train'}\nval: images/val\nnames: [thing]\n")
    cfg = load_data_config(ds / "data.yaml")
    with caplog.at_level(logging.INFO, logger="edgeseg"):
        labels, stats = scan_labels(img_paths(cfg["train"], cfg["path"]), 1)
    assert len(labels) == 1 and stats.cache_path is None and "(not cached)" in stats.summary("train")
    assert f"train: labels not cached: its folder {elsewhere / 'labels'} is outside the dataset root {ds}" in caplog.text
    assert sorted(p.name for p in (elsewhere / "labels").iterdir()) == ["train"]
    (ds / "labels" / "link").symlink_to(elsewhere / "labels", target_is_directory=True)  # a link inside leading out
    image = str(elsewhere / "images" / "train" / "a.png")
    _, stats = scan_labels([image], 1, cache_path=ds / "labels" / "link" / "c.cache", root=ds)
    assert stats.cache_path is None and not (elsewhere / "labels" / "c.cache").exists()


def _cache_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _rewrite_cache(path: Path, members: dict[str, bytes], compress: str = "") -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if name == compress else zipfile.ZIP_STORED)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array)
    return buffer.getvalue()


def _npy_claiming(shape: tuple, dtype) -> bytes:
    """A valid .npy header claiming ``shape`` followed by 64 bytes of data (allocating the claim could take TBs)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
    return buffer.getvalue() + b"\0" * 64


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m, p: _rewrite_cache(p, m, compress="points.npy"),
        lambda m, p: _rewrite_cache(p, {**m, "points.npy": _npy_claiming((1 << 40, 2), np.float32)}),
        lambda m, p: _rewrite_cache(p, {**m, "points.npy": _npy(np.full((4, 2), 7, np.float32))}),
        lambda m, p: _rewrite_cache(p, {**m, "cls.npy": _npy(np.array([5], np.int64))}),
        lambda m, p: _rewrite_cache(p, {**m, "cls.npy": _npy(np.array([0.0]))}),
        lambda m, p: _rewrite_cache(p, {**m, **{f"x{i}.npy": b"" for i in range(3)}}),
        lambda m, p: write(p, b"PK\x05\x06" + b"\0" * 6 + struct.pack("<HI", 60000, 1 << 30) + b"\0" * 6),
        lambda m, p: sparse(p, b"PK", 1 << 30),
    ],
    ids=["compressed", "huge_shape", "points_out_of_range", "class_out_of_range", "float_classes", "extra_members",
         "huge_directory", "sparse_1gb"],
)
def test_a_tampered_cache_is_ignored_and_rewritten(tmp_path, tamper):
    ds = dataset(tmp_path)
    files = img_paths(str(ds / "images" / "train"), ds)
    first, stats = scan_labels(files, 1)
    cache = Path(stats.cache_path)
    members = _cache_members(cache)
    tamper(members, cache)
    again, stats = scan_labels(files, 1)
    assert not stats.from_cache and len(again) == len(first) == 1 and again[0].cls.tolist() == [0]
    assert scan_labels(files, 1)[1].from_cache


# --------------------------------------------------------------------------------------
# Data YAML and the shared safe loader
# --------------------------------------------------------------------------------------

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]\n" for a, b in zip("abcdefgh", "bcdefghi")
)


@pytest.mark.parametrize(
    "text, problem",
    [
        (BOMB + "names: *i\n", "expands to more than 1,000,000 nodes"),
        ("a: &a [1]\nb: [" + ", ".join(["*a"] * 101) + "]\n", "more than 100 alias references"),
        ("a: &a [1, *a]\n", "recursive alias"),
        ("a: " + "[" * 150 + "]" * 150 + "\n", "nested deeper than 100 levels"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "not valid YAML"),
        ("a: !!python/object/apply:os.system ['touch PWNED']\n", "could not determine a constructor"),
        ("a: " + "1" * 5000 + "\n", "YAML value not usable"),
        ("a: 1\n---\nb: 2\n", "expected a single document"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_parse_yaml_refuses_bombs_and_tags(text, problem):
    with pytest.raises(EdgesegError, match=re.escape(problem)) as err:
        parse_yaml(text, "cfg.yaml")
    assert str(err.value).startswith("cfg.yaml: ") and "\n" not in str(err.value)


def test_parse_yaml_keeps_plain_documents_and_a_few_aliases():
    expected = {"base": {"x": 1}, "c": {"x": 1, "y": 2}, "l": [{"x": 1}] * 2}
    assert parse_yaml("base: &b {x: 1}\nc: {<<: *b, y: 2}\nl: [*b, *b]\n") == expected
    assert parse_yaml("") is None


def test_load_yaml_checks_the_file_before_reading(tmp_path):
    sparse(tmp_path / "big.yaml", b"a: 1\n", MAX_YAML_BYTES + 1)
    with pytest.raises(EdgesegError, match="big.yaml: YAML file refused: 1,048,577 bytes, more than the 1,048,576-byte"):
        load_yaml(tmp_path / "big.yaml")
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(EdgesegError, match="dir.yaml: YAML file refused: not a regular file"):
        load_yaml(tmp_path / "dir.yaml")
    os.mkfifo(tmp_path / "fifo.yaml")
    with pytest.raises(EdgesegError, match="fifo.yaml: YAML file refused: not a regular file"):
        load_yaml(tmp_path / "fifo.yaml")
    with pytest.raises(EdgesegError, match="missing.yaml: YAML file not found"):
        load_yaml(tmp_path / "missing.yaml")
    with pytest.raises(EdgesegError, match=r"bin.yaml: not UTF-8 text \(byte 3\)"):
        load_yaml(write(tmp_path / "bin.yaml", b"a: \xff"))


@pytest.mark.parametrize(
    "text, problem",
    [
        ("path: [1, 2]\ntrain: a\nval: a\nnames: [x]\n", "'path' must be a folder path"),
        ("path: ~nosuchuser_edgeseg\ntrain: a\nval: a\nnames: [x]\n", "its home folder is unknown"),
        ("train: {a: 1}\nval: a\nnames: [x]\n", "'train' must be a path or a list of paths"),
        ("train: a\nval: a\nnames: [[1, 2]]\n", "'names' values must be plain names"),
        ("train: a\nval: a\nnames: {99999999999999999999999: x}\n", "'names' ids must be 0..0"),
        ("train: a\nval: a\nnames: [x]\nnc: 1.5\n", "'nc' must be an integer"),
        ("train: \"a\\0b\"\nval: a\nnames: [x]\n", "contains a NUL character"),
    ],
)
def test_data_yaml_values_of_the_wrong_type_are_one_line(tmp_path, text, problem):
    write(tmp_path / "a" / "x.png", encoded(".png"))
    with pytest.raises(EdgesegError, match=re.escape(problem)) as err:
        load_data_config(write(tmp_path / "data.yaml", text))
    assert "data.yaml" in str(err.value) and "\n" not in str(err.value)


def test_image_lists_are_capped_and_checked(tmp_path):
    sparse(tmp_path / "big.txt", b"a.png\n", GIB3)
    with pytest.raises(EdgesegError, match="big.txt: image list refused: 3,221,225,472 bytes"):
        img_paths("big.txt", tmp_path)
    write(tmp_path / "nul.txt", "a.png\nb\0.png\n")
    with pytest.raises(EdgesegError, match="nul.txt: line 2"):
        img_paths("nul.txt", tmp_path)


# --------------------------------------------------------------------------------------
# RLE and COCO conversion
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rle, problem",
    [
        ({"size": [100_000, 100_000], "counts": "0"}, "more than 100,000,000 pixels"),
        ({"size": [4, 5], "counts": [15, 10]}, "cover 25 pixels"),
        ({"size": [4, 5], "counts": [-5, 30]}, "run outside 0..20"),
        ({"size": [4, 5], "counts": [2**62, 2**62, 20]}, "run outside 0..20"),
        ({"size": [4, 5], "counts": [10**30]}, "flat list of integers"),
        ({"size": [4, 5], "counts": [1.5, 18.5]}, "flat list of integers"),
        ({"size": [4, 5], "counts": [[20]]}, "flat list of integers"),
        ({"size": [4, 5], "counts": "\x7f"}, "outside COCO's alphabet"),
        ({"size": [4, 5], "counts": "o"}, "ends inside a value"),
        ({"size": [4, 5], "counts": "o" * 20 + "0"}, "more than 13 characters"),
        ({"size": [4, 5], "counts": None}, "string or a list"),
        ({"size": [True, 5], "counts": [5]}, "two non-negative integers"),
        ({"size": "45", "counts": [5]}, "must be [H, W]"),
        ([1, 2], "mapping with 'size' and 'counts'"),
    ],
)
def test_rle_decode_refuses_before_allocating(rle, problem):
    with pytest.raises(ValueError, match=re.escape(problem)):
        rle_decode(rle)


def test_rle_round_trip_still_holds():
    mask = np.zeros((30, 40), bool)
    mask[5:20, 8:33] = True
    np.testing.assert_array_equal(rle_decode(rle_encode(mask)), mask)
    assert rle_decode({"size": [30, 40], "counts": [1200]}).sum() == 0


def test_closest_pair_in_blocks_matches_the_full_matrix():
    rng = np.random.default_rng(0)
    a, b = rng.random((3000, 2)) * 100, rng.random((700, 2)) * 100 + 50
    d2 = ((a[:, None] - b[None]) ** 2).sum(-1)
    i, j = np.unravel_index(np.argmin(d2), d2.shape)
    assert _closest_pair(a, b) == (d2[i, j], i, j)


def _coco(**changes) -> dict:
    """A one-image, one-category, one-annotation COCO dict with top-level or annotation ``changes``."""
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [[5, 5, 40, 5, 40, 30]]}],
    }
    for key, value in changes.items():
        if key in coco:
            coco[key] = value
        else:
            coco["annotations"][0][key] = value
    return coco


WEIRD = [None, True, -1, 0, 1.5, 10**30, "x", "\0", [], {}, [None], [[1]], {"size": "x"}, float("nan"), float("inf")]
FUZZ = [(f"{key}={value!r}"[:40], key, value) for key in ("image_id", "category_id", "segmentation", "iscrowd") for value in WEIRD]
FUZZ += [(f"top:{key}={value!r}", key, value) for key in ("annotations", "images", "categories") for value in (None, 3, "x", {}, [None])]


@pytest.mark.parametrize("name, where, value", FUZZ, ids=[f[0] for f in FUZZ])
def test_crafted_coco_entries_are_errors_or_counted_skips(tmp_path, name, where, value):
    write(tmp_path / "images" / "a.png", encoded(".png"))
    (tmp_path / "ann.json").write_text(json.dumps(_coco(**{where: value})))
    try:
        yaml_path = convert_coco(tmp_path / "ann.json", tmp_path / "images", tmp_path / "out")
    except EdgesegError as err:
        assert "ann.json: " in str(err) and "\n" not in str(err)
    else:
        assert yaml_path.is_file()


def test_coco_skips_and_counts_what_it_cannot_convert(tmp_path, caplog):
    write(tmp_path / "images" / "a.png", encoded(".png"))
    write(tmp_path / "images" / "big.png", png_bytes(100_000, 100_000))
    many_points = [float(v) for v in np.random.default_rng(0).random(2 * MAX_OBJECT_POINTS + 2) * 40]
    coco = _coco()
    coco["images"].append({"id": 2, "file_name": "big.png", "width": 100_000, "height": 100_000})
    coco["annotations"] += [
        {"image_id": 1, "category_id": 1, "segmentation": {"size": [100_000, 100_000], "counts": "0"}},
        {"image_id": 2, "category_id": 1, "segmentation": {"size": [100_000, 100_000], "counts": [10**10]}},
        {"image_id": 1, "category_id": 1, "segmentation": [many_points]},
        {"image_id": 1, "category_id": 1, "segmentation": [[i, 0, i + 1, 0, i + 1, 1] for i in range(501)]},
        {"image_id": 1, "category_id": 1, "segmentation": 5},
        "not an object",
    ]
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    with caplog.at_level(logging.INFO, logger="edgeseg"):
        convert_coco(tmp_path / "ann.json", tmp_path / "images", tmp_path / "out")
    summary = next(r.message for r in caplog.records if "ann.json ->" in r.message)
    assert "1 images (0 without objects), 1 objects" in summary
    assert "2 without a usable polygon, 2 too complex (over 500 parts or 5000 points), 1 malformed" in summary
    assert "1 of images over 50,000,000 pixels; 0 images missing" in summary and "1 over 50,000,000 pixels" in summary


@pytest.mark.parametrize(
    "coco, problem",
    [
        (_coco(categories=[{"id": "abc", "name": "x"}]), "category {'id': 'abc', 'name': 'x'} needs an integer 'id'"),
        (_coco(categories=[{"id": 1}]), "needs an integer 'id' and a 'name'"),
        (_coco(categories=[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]), "category id 1 appears twice"),
        (_coco(categories=[{"id": 1, "name": "x" * 300}]), "name of 300 characters"),
        (_coco(images=[{"id": 1, "file_name": "a.png", "width": "abc", "height": 48}]), "lacks an id, width or height"),
        (_coco(images=[{"id": [1], "file_name": "a.png", "width": 64, "height": 48}]), "lacks an id, width or height"),
        (_coco(images=[{"id": 1, "width": 64, "height": 48}] * 2), "image id 1 appears twice"),
        (_coco(annotations={"a": 1}), "'annotations' must be a list"),
    ],
)
def test_malformed_coco_structure_is_one_line(tmp_path, coco, problem):
    write(tmp_path / "images" / "a.png", encoded(".png"))
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    with pytest.raises(EdgesegError, match=re.escape(problem)):
        convert_coco(tmp_path / "ann.json", tmp_path / "images", tmp_path / "out")


def test_coco_output_never_follows_planted_links(tmp_path):
    write(tmp_path / "images" / "a.png", encoded(".png"))
    (tmp_path / "ann.json").write_text(json.dumps(_coco()))
    victim = write(tmp_path / "victim.txt", "precious\n")
    out = tmp_path / "out"
    write(out / "labels" / "train" / "keep.txt", "")
    (out / "labels" / "train" / "a.txt").symlink_to(victim)
    (out / "data.yaml").symlink_to(victim)  # read as a data YAML (it is not one): refused before writing
    with pytest.raises(EdgesegError, match="data.yaml: exists but is not a data YAML mapping"):
        convert_coco(tmp_path / "ann.json", tmp_path / "images", out)
    (out / "data.yaml").unlink()
    convert_coco(tmp_path / "ann.json", tmp_path / "images", out)
    assert victim.read_text() == "precious\n" and not (out / "labels" / "train" / "a.txt").is_symlink()
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "images" / "train").rename(tmp_path / "old")
    (out / "images" / "train").symlink_to(outside, target_is_directory=True)
    with pytest.raises(EdgesegError, match="leads outside the output folder"):
        convert_coco(tmp_path / "ann.json", tmp_path / "images", out)
    assert not list(outside.iterdir())


# --------------------------------------------------------------------------------------
# Entry points under the harness: one error line or a counted skip, bounded, nothing touched
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    """A random-weight yolo11n-seg (one class) exported to ONNX at 64 px: cheap to load in each subprocess."""
    from edgeseg.targets import export

    folder = tmp_path_factory.mktemp("model")
    path = edgeseg.Model("yolo11n-seg.yaml", names=["thing"]).save(folder / "m.pt")
    return export(path, imgsz=64, verify=False).path


def with_model(build, model: Path, sandbox: Path) -> None:
    """``build(sandbox)`` plus ``sandbox/m.onnx`` linked to the module's model."""
    (sandbox / "m.onnx").symlink_to(model)
    build(sandbox)


def skip_line(*names: str, count: str) -> str:
    """A pattern: a line naming each of ``names`` (in any order), and the ``count`` pattern."""
    return "(?s)" + "".join(f"(?=.*{re.escape(n)})" for n in names) + f".*{count}"


HUGE_PNG = {"images/{split}/huge.png": png_bytes(30000, 30000)}
SPARSE_JPG = {"images/{split}/sparse.jpg": lambda p: sparse(p, encoded(".jpg"), GIB3)}
BAD_LABELS = {
    "images/{split}/inf.png": encoded(".png"),
    "labels/{split}/inf.txt": "inf 0.1 0.1 0.5 0.1 0.5 0.9\n",
    "images/{split}/e400.png": encoded(".png"),
    "labels/{split}/e400.txt": "1e400 0.1 0.1 0.5 0.1 0.5 0.9\n",
    "images/{split}/nan.png": encoded(".png"),
    "labels/{split}/nan.txt": "0 nan 0.1 0.5 0.1 0.5 0.9\n",
    "images/{split}/big.png": encoded(".png"),
    "labels/{split}/big.txt": lambda p: sparse(p, LABEL.encode(), GIB3),
}
LABEL_PROBLEMS = (
    "inf.txt: line 1: class id inf",
    "e400.txt: line 1: class id 1e400",
    "nan.txt: line 1: coordinates",
    "big.txt: label file is 3,221,225,472 bytes",
)
SOURCE_PROBLEMS = tuple(f"{name}: skipped" for name in ("dangling.png", "fifo.png", "folder.jpg", "garbage.jpg", "huge.png", "loop.jpg"))
CACHE_OK = ("ds/label[s]", "ds/labels/*.edgeseg.cache")  # the scan's own output: its cache (and the folder's mtime)
PNG_30000 = "huge.png: image cannot be read (PNG declares 30000 x 30000 pixels, more than the 50,000,000-pixel limit)"
SPARSE_3GB = "sparse.jpg: image cannot be read (file is 3,221,225,472 bytes, more than the 134,217,728-byte limit)"
BOMB_LINE = "data.yaml: YAML expands to more than 1,000,000 nodes"
UNUSABLE = "train: none of the {} images is usable"


def _split_only(files: dict, split: str) -> dict:
    """The ``{split}`` entries of a dataset spec placed in one split only."""
    return {rel.replace("{split}", split): content for rel, content in files.items()}


def _with(split: str, files: dict):
    """A ``build``: the dataset with ``files`` added to ``split``."""
    return partial(dataset, **{split: _split_only(files, split)})


def _only_bad_train(files: dict, sandbox: Path) -> None:
    """A dataset whose train split holds only ``files`` (the good train image removed)."""
    dataset(sandbox, train=_split_only(files, "train"))
    (sandbox / "ds" / "images" / "train" / "ok.png").unlink()
    (sandbox / "ds" / "labels" / "train" / "ok.txt").unlink()


def _at_pixel_limit(sandbox: Path) -> None:
    """A dataset with a 50 MP 16-bit RGBA single-strip TIFF: decoding it is the costliest case within the limits."""
    dataset(sandbox, train={"images/train/limit.tiff": lambda p: write(p, tiff16_rgba(10_000, 4_999))})


def _sources(sandbox: Path) -> None:
    """``src/``: one good image and six entries that cannot be read."""
    src = sandbox / "src"
    write(src / "ok.png", encoded(".png"))
    write(src / "huge.png", png_bytes(30000, 30000))
    write(src / "garbage.jpg", b"\xff\xd8 not a jpeg")
    (src / "folder.jpg").mkdir()
    (src / "loop.jpg").symlink_to("loop.jpg")
    (src / "dangling.png").symlink_to("missing.png")
    os.mkfifo(src / "fifo.png")


def _source_dataset(sandbox: Path) -> None:
    """A dataset whose val images folder holds the same unreadable entries as ``_sources``."""
    _sources(sandbox)
    dataset(sandbox)
    val = sandbox / "ds" / "images" / "val"
    for entry in (sandbox / "src").iterdir():
        if entry.name != "ok.png":
            entry.rename(val / entry.name)


def _planted(sandbox: Path) -> None:
    dataset(sandbox)
    victim = write(sandbox / "victim.txt", "precious\n")
    _planted_links(sandbox / "ds" / "labels", victim)


def _outside_root(sandbox: Path) -> None:
    dataset(sandbox)
    write(sandbox / "elsewhere" / "images" / "train" / "a.png", encoded(".png"))
    write(sandbox / "elsewhere" / "labels" / "train" / "a.txt", LABEL)
    train = sandbox / "elsewhere" / "images" / "train"
    write(sandbox / "ds" / "data.yaml", f"path: .\ntrain: {train}\nval: images/val\nnames: [thing]\n")


def _bomb(sandbox: Path) -> None:
    dataset(sandbox, yaml_text="path: .\ntrain: images/train\nval: images/val\n" + BOMB + "names: *i\n")


def _huge_yaml(sandbox: Path) -> None:
    dataset(sandbox, yaml_text="names: [x]\n" + "#" * (2 << 20))


def _coco_case(coco: dict, sandbox: Path) -> None:
    write(sandbox / "images" / "a.png", encoded(".png"))
    write(sandbox / "ann.json", json.dumps(coco))


def _annotation_file(build, sandbox: Path) -> None:
    """An images folder and ``build(sandbox / "ann.json")``."""
    (sandbox / "images").mkdir()
    build(sandbox / "ann.json")


def _rle_100k(sandbox: Path) -> None:
    """An RLE of 100,000 x 100,000 on a 64 x 48 image, and one on an image entry of that size."""
    rle = {"size": [100_000, 100_000], "counts": [10**10]}
    coco = _coco(segmentation=rle)
    coco["images"].append({"id": 2, "file_name": "a.png", "width": 100_000, "height": 100_000})
    coco["annotations"].append({"image_id": 2, "category_id": 1, "segmentation": rle})
    _coco_case(coco, sandbox)


TRAIN = ["train", "--data", "ds/data.yaml", "--epochs", "1", "--imgsz", "64", "--batch", "2", "--workers", "0", "--project", "runs"]
CHECK = ["data", "check", "ds/data.yaml"]
VAL = ["val", "m.onnx", "--data", "ds/data.yaml"]
PREDICT = ["predict", "m.onnx", "src", "--project", "runs"]
CONVERT = ["data", "convert", "coco", "ann.json", "--images", "images", "--out", "out"]
API_SCAN = """
from edgeseg.runtimes.labels import scan_labels
from edgeseg.runtimes.data_config import img_paths
_, stats = scan_labels(img_paths('images/train', 'ds'), 1)
print('corrupt', stats.corrupt)
"""
API_PREDICT = """
import edgeseg.runtimes
rt = edgeseg.runtimes.load('m.onnx')
out = list(rt.predict({source!r}))
print('results', len(out), 'skipped', rt.last_skipped)
"""
API_DATA_YAML = "from edgeseg.runtimes.data_config import load_data_config\nload_data_config('ds/data.yaml')"
API_CONVERT = "from edgeseg.interop.coco import convert_coco\nconvert_coco('ann.json', 'images', 'out')\nprint('done')"


def refused(id, build, expect, argv=None, code=None, allowed=(), slow=False) -> Case:
    """A case that must end with one ``error:`` line matching ``expect``."""
    return Case(id, build, argv, code, expect=expect, allowed=allowed, marks=SLOW if slow else ())


def counted(id, build, expect, argv=None, code=None, allowed=CACHE_OK, slow=False) -> Case:
    """A case that must exit 0 with output matching ``expect`` (the skip's warning and its count)."""
    return Case(id, build, argv, code, expect=expect, allowed=allowed, succeeds=True, marks=SLOW if slow else ())


TRAIN_OK = (*CACHE_OK, "runs")
CHECK_COUNT = r"train: 2 images, 1 with labels.* 1 corrupt"
VAL_COUNT = r"val: 2 images, 1 labels found.* 1 corrupt"
LABELS_COUNT = r"{}: 5 images, 1 (with labels|labels found).* 4 corrupt"
LIMIT_COUNT = "train: 2 images, 1 with labels, 1 without a label file, 0 with an empty one, 0 corrupt"
OUTSIDE = r"train: labels not cached: its folder .*elsewhere/labels is outside the dataset root .*ds"
RLE_COUNT = r"1 without a usable polygon.* 1 of images over 50,000,000 pixels; .*, 1 over 50,000,000 pixels"
CATEGORY_TEXT = _coco(categories=[{"id": "one", "name": "x"}])
CATEGORY_LINE = r"ann.json: category \{'id': 'one', 'name': 'x'\} needs an integer 'id' and a 'name'"
WIDTH_1E300 = _coco(images=[{"id": 1, "file_name": "a.png", "width": 1e300, "height": 48}])
DEEP_JSON = partial(_annotation_file, lambda p: write(p, '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"))
SPARSE_JSON = partial(_annotation_file, lambda p: sparse(p, b"{", 6 << 30))
SPARSE_JSON_LINE = "ann.json: annotation file refused: 6,442,450,944 bytes, more than the 2,147,483,648-byte limit"
SOURCES_CHECK = (
    "dangling.png: image cannot be read",
    "fifo.png: image cannot be read (file is not a regular file)",
    "folder.jpg: image cannot be read (file is not a regular file)",
    "loop.jpg: image cannot be read",
)

CASES = [
    # 1. images that declare too many pixels, a multi-GB sparse file, the costliest image within the limits
    counted("huge_png-check", _with("train", HUGE_PNG), skip_line(PNG_30000, count=CHECK_COUNT), CHECK),
    counted("huge_png-val", _with("val", HUGE_PNG), skip_line(PNG_30000, count=VAL_COUNT), VAL, slow=True),
    counted("huge_png-api_scan", _with("train", HUGE_PNG), skip_line(PNG_30000, count="^corrupt 1$"), code=API_SCAN),
    refused("huge_png-train", partial(_only_bad_train, HUGE_PNG), UNUSABLE.format(1), TRAIN, allowed=TRAIN_OK, slow=True),
    counted("sparse_jpg-check", _with("train", SPARSE_JPG), skip_line(SPARSE_3GB, count=CHECK_COUNT), CHECK),
    counted("sparse_jpg-val", _with("val", SPARSE_JPG), skip_line(SPARSE_3GB, count=VAL_COUNT), VAL, slow=True),
    refused("sparse_jpg-train", partial(_only_bad_train, SPARSE_JPG), UNUSABLE.format(1), TRAIN, allowed=TRAIN_OK, slow=True),
    counted("tiff16_at_pixel_limit-check", _at_pixel_limit, LIMIT_COUNT, CHECK),
    counted("tiff16_at_pixel_limit-api_scan_after_torch", _at_pixel_limit, "^corrupt 0$", code="import edgeseg.train.trainer\n" + API_SCAN, slow=True),
    # 2. label files: non-finite numbers, a multi-GB sparse file
    counted("bad_labels-check", _with("train", BAD_LABELS), skip_line(*LABEL_PROBLEMS, count=LABELS_COUNT.format("train")), CHECK),
    counted("bad_labels-val", _with("val", BAD_LABELS), skip_line(*LABEL_PROBLEMS, count=LABELS_COUNT.format("val")), VAL, slow=True),
    counted("bad_labels-api_scan", _with("train", BAD_LABELS), skip_line(*LABEL_PROBLEMS, count="^corrupt 4$"), code=API_SCAN),
    refused("bad_labels-train", partial(_only_bad_train, BAD_LABELS), UNUSABLE.format(4), TRAIN, allowed=TRAIN_OK, slow=True),
    # 3. the label cache: links planted where a writer might put its temporary file; a split outside the dataset root
    counted("planted_links-check", _planted, r"cache: .*labels/train\.edgeseg\.cache", CHECK),
    counted("planted_links-api_scan", _planted, "^corrupt 0$", code=API_SCAN),
    counted("outside_root-check", _outside_root, OUTSIDE, CHECK),
    counted("outside_root-val", _outside_root, OUTSIDE, [*VAL, "--split", "train"], slow=True),
    # 4. a YAML alias bomb as the data YAML, and a YAML over the size limit
    refused("alias_bomb-check", _bomb, BOMB_LINE, CHECK),
    refused("alias_bomb-val", _bomb, BOMB_LINE, VAL, slow=True),
    refused("alias_bomb-train", _bomb, BOMB_LINE, TRAIN, allowed=("runs",), slow=True),
    refused("alias_bomb-api", _bomb, BOMB_LINE, code=API_DATA_YAML),
    refused("huge_yaml-check", _huge_yaml, "data.yaml: YAML file refused: 2,097,163 bytes, more than the 1,048,576-byte limit", CHECK),
    # 5. COCO conversion
    counted("rle_100k-convert", _rle_100k, RLE_COUNT, CONVERT, allowed=("out",)),
    counted("rle_100k-api", _rle_100k, "^done$", code=API_CONVERT, allowed=("out",)),
    refused("category_id_text-convert", partial(_coco_case, CATEGORY_TEXT), CATEGORY_LINE, CONVERT),
    counted("image_width_1e300-convert", partial(_coco_case, WIDTH_1E300), "1 of images over 50,000,000 pixels", CONVERT, allowed=("out",)),
    refused("deep_json-convert", DEEP_JSON, "ann.json: not valid JSON", CONVERT),
    refused("sparse_json-convert", SPARSE_JSON, SPARSE_JSON_LINE, CONVERT),
    # 6. predict sources: links that loop or dangle, a folder named x.jpg, a FIFO, a huge and a broken image
    counted("sources-predict", _sources, skip_line(*SOURCE_PROBLEMS, count=r"1 images, \d+ detections, 6 skipped"), PREDICT,
            allowed=("runs",), slow=True),
    counted("sources-api_predict", _sources, skip_line(*SOURCE_PROBLEMS, count="^results 1 skipped 6$"),
            code=API_PREDICT.format(source="src"), allowed=(), slow=True),
    counted("sources_glob-api_predict", _sources, skip_line(*SOURCE_PROBLEMS, count="^results 1 skipped 6$"),
            code=API_PREDICT.format(source="src/*"), allowed=(), slow=True),
    refused("sources_only_bad-api_predict", _sources, r"nothing readable in the source \(1 skipped\)",
            code=API_PREDICT.format(source="src/huge.png"), slow=True),
    counted("sources-check", _source_dataset, skip_line(*SOURCES_CHECK, count=r"val: 7 images, 1 with labels.* 6 corrupt"), CHECK),
]


@pytest.mark.parametrize("case", params(CASES))
def test_hostile_data(case, request, tmp_path):
    if "m.onnx" in (case.argv or []) or "m.onnx" in (case.code or ""):
        case = replace(case, build=partial(with_model, case.build, request.getfixturevalue("onnx_model")))
    check(case, tmp_path)
