"""Crafted files for the hostile-input tests: images with chosen headers, sparse files, label files and datasets (tests/<layer>/ import it by name)."""

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np


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


def planted_links(labels: Path, victim: Path) -> list[Path]:
    """Links to ``victim`` at the old fixed temporary name and other names a writer might use."""
    names = ["train.edgeseg.cache.tmp", "train.edgeseg.cache.part", ".train.edgeseg.cache.tmp", "train.tmp", "tmp"]
    links = [labels / name for name in names]
    for link in links:
        link.symlink_to(victim)
    return links


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]\n" for a, b in zip("abcdefgh", "bcdefghi")
)


def coco_dict(**changes) -> dict:
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
