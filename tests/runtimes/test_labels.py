"""Label files and the label cache: numbers, sizes, and a cache never written through a link nor trusted blindly."""

import io
import logging
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgeseg.runtimes.evaluation.label_cache import scan_labels
from edgeseg.runtimes.evaluation.labels import MAX_LABEL_BYTES, read_label
from edgeseg.runtimes.io.data_config import img_paths, load_data_config

from bad_files import GIB3, LABEL, dataset, encoded, planted_links, sparse, write

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


def test_cache_is_never_written_through_a_planted_link(tmp_path):
    ds = dataset(tmp_path)
    victim = write(tmp_path / "victim.txt", "precious\n")
    links = planted_links(ds / "labels", victim)
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
