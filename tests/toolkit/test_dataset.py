"""Data YAML, label scan + cache, augmentation geometry and the SegmentationDataset (tiny datasets drawn with cv2)."""

import logging
import os
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edgeseg.data.dataset import SegmentationDataset, collate
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.evaluation.label_cache import scan_labels
from edgeseg.runtimes.io.data_config import img_paths, label_path, load_data_config
from edgeseg.runtimes.io.images import read_image
from edgeseg.runtimes.pipeline.preprocess import letterbox

OBJECT_BGR = (0, 0, 255)  # red
BACKGROUND_BGR = (40, 90, 40)


def _rect_poly(x1, y1, x2, y2, w, h):
    """Label coordinates of the rectangle covering pixels [x1, x2) x [y1, y2) of a w x h image."""
    return [x1 / w, y1 / h, x2 / w, y1 / h, x2 / w, y2 / h, x1 / w, y2 / h]


def _line(cls, coords):
    return " ".join([str(cls)] + [f"{c:.6f}" for c in coords])


def _write_sample(root: Path, split: str, name: str, size=(48, 64), rects=(), suffix=".png", label=True):
    """Draw rectangles ``(cls, x1, y1, x2, y2, bgr)`` on a plain image, write image + label, return the image path."""
    h, w = size
    img = np.full((h, w, 3), BACKGROUND_BGR, np.uint8)
    for _, x1, y1, x2, y2, bgr in rects:
        img[y1:y2, x1:x2] = bgr
    im_file = root / "images" / split / f"{name}{suffix}"
    im_file.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(im_file), img)
    if label:
        lb = Path(label_path(im_file))
        lb.parent.mkdir(parents=True, exist_ok=True)
        lb.write_text("".join(_line(c, _rect_poly(x1, y1, x2, y2, w, h)) + "\n" for c, x1, y1, x2, y2, _ in rects))
    return str(im_file)


@pytest.fixture
def rect_files(tmp_path):
    """Six 96x128 images with one red rectangle each at different places (class i % 2)."""
    files = []
    for i in range(6):
        x1, y1 = 8 + 14 * i, 6 + 9 * i
        rect = (i % 2, x1, y1, x1 + 36, y1 + 28, OBJECT_BGR)
        files.append(_write_sample(tmp_path, "train", f"r{i}", (96, 128), [rect]))
    return files


# ---------------------------------------------------------------- data YAML


def test_data_yaml_variants(tmp_path):
    ds = tmp_path / "ds"
    a = _write_sample(ds, "train", "a")
    b = _write_sample(ds, "val", "b")
    c = _write_sample(ds, "extra", "C", suffix=".PNG")
    (ds / "images" / "extra" / "notes.md").write_text("not an image")
    cfg = {"path": "ds", "train": "images/train", "val": ["images/val", "images/extra"], "names": ["x", "y"]}
    (tmp_path / "rel.yaml").write_text(yaml.safe_dump(cfg))
    cfg = load_data_config(tmp_path / "rel.yaml")
    assert cfg["path"] == str(ds.resolve()) and cfg["names"] == {0: "x", 1: "y"} and cfg["nc"] == 2
    assert img_paths(cfg["train"], cfg["path"]) == [a]
    assert img_paths(cfg["val"], cfg["path"]) == sorted([b, c])

    (ds / "train.txt").write_text("./images/train/a.png\nimages/extra/C.PNG\n\n")
    cfg = {"train": "train.txt", "val": "images/val", "nc": 2, "names": {1: "y", 0: "x"}}
    (ds / "data.yaml").write_text(yaml.safe_dump(cfg))
    cfg = load_data_config(ds / "data.yaml")
    assert cfg["path"] == str(ds.resolve()) and cfg["names"] == {0: "x", 1: "y"}
    assert img_paths(cfg["train"], cfg["path"]) == sorted([a, c])


@pytest.mark.parametrize(
    "content, problem",
    [
        ({"train": "images/train", "names": ["x"]}, "missing 'val'"),
        ({"val": "images/train", "names": ["x"]}, "missing 'train'"),
        ({"train": "images/train", "val": "images/nope", "names": ["x"]}, "does not exist"),
        ({"train": "images/train", "val": "images/train", "names": []}, "'names' is missing or empty"),
        ({"train": "images/train", "val": "images/train", "names": ["x"], "nc": 3}, "nc=3"),
    ],
)
def test_data_yaml_errors_name_the_yaml(tmp_path, content, problem):
    _write_sample(tmp_path, "train", "a")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(content))
    with pytest.raises(EdgesegError, match=problem) as err:
        load_data_config(tmp_path / "bad.yaml")
    assert "bad.yaml" in str(err.value) and "\n" not in str(err.value)


def test_missing_yaml_file(tmp_path):
    with pytest.raises(EdgesegError, match="nothere.yaml: data YAML not found"):
        load_data_config(tmp_path / "nothere.yaml")


def test_label_path_rule():
    sep = os.sep
    p = sep.join(["", "d", "images", "x", "images", "train", "a.b.jpg"])
    assert label_path(p) == sep.join(["", "d", "images", "x", "labels", "train", "a.b.txt"])
    assert label_path(sep.join(["", "d", "pics", "a.png"])) == sep.join(["", "d", "pics", "a.txt"])


# ---------------------------------------------------------------- label scan + cache


def test_scan_counts_corrupt_files_and_cache(tmp_path, caplog):
    root, w, h = tmp_path, 32, 32
    sq = _rect_poly(4, 4, 20, 20, w, h)
    contents = {
        "a": f"{_line(0, sq)}\n{_line(1, _rect_poly(2, 2, 10, 10, w, h))}\n",
        # the same polygon three times (once with fewer decimals): 2 duplicates
        "b": f"{_line(1, sq)}\n{_line(1, sq)}\n\n1 {' '.join(f'{c:.4f}' for c in sq)}\n"
        f"{_line(0, _rect_poly(0, 0, 5, 5, w, h))}\n",
        "c": "0 0.1 0.1 1.0005 0.1 0.5 0.9\n",  # within the 1e-3 tolerance: clipped to 1
        "d": _line(0, sq) + "\n",  # the image is garbage
        "e": "  \n",
        "g": "0 0.1 0.1 0.5 0.1 0.5\n",  # odd coordinate count
        "h": "0 0.1 0.1 1.5 0.1 0.5 0.9\n",
        "i": "2 0.1 0.1 0.5 0.1 0.5 0.9\n",  # class id >= nc
        "j": "0 0.1 zero 0.5 0.1 0.5 0.9\n",
        "k": "0 0.1 0.1 0.5 0.5\n",  # two points
        "l": _line(0, sq) + "\n",  # the image is 5x5
        "m": "-1 0.1 0.1 0.5 0.1 0.5 0.9\n",
    }
    files = []
    for name in "abcdefghijklm":
        suffix = ".jpg" if name == "d" else ".png"
        files.append(_write_sample(root, "train", name, (5, 5) if name == "l" else (h, w), suffix=suffix, label=False))
        if name in contents:
            Path(label_path(files[-1])).parent.mkdir(parents=True, exist_ok=True)
            Path(label_path(files[-1])).write_text(contents[name])
    Path(files[3]).write_bytes(b"\xff\xd8 definitely not a jpeg" * 10)

    with caplog.at_level(logging.INFO, logger="edgeseg"):
        labels, stats = scan_labels(files, nc=2)
    summary = "train: 13 images, 3 labels found, 1 missing, 1 empty, 8 corrupt, 2 duplicate lines removed"
    counts = (stats.images, stats.found, stats.missing, stats.empty, stats.corrupt, stats.duplicates)
    assert counts == (13, 3, 1, 1, 8, 2)
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(infos) == 1 and infos[0].startswith(summary) and stats.cache_path in infos[0]
    assert len(warnings) == 8
    for name, problem in [
        ("images/train/d.jpg", "cannot be read"),
        ("labels/train/g.txt", "odd number of coordinates"),
        ("labels/train/h.txt", "outside [0, 1]"),
        ("labels/train/i.txt", "class id 2 is not an integer in 0..1"),
        ("labels/train/j.txt", "non-numeric"),
        ("labels/train/k.txt", "fewer than 3 points"),
        ("images/train/l.png", "smaller than 10 pixels"),
        ("labels/train/m.txt", "class id -1"),
    ]:
        assert sum(str(root / name) in m and problem in m for m in warnings) == 1, (name, warnings)

    assert [Path(lb.im_file).stem for lb in labels] == ["a", "b", "c", "e", "f"]
    la, lb_, lc = labels[:3]
    assert la.cls.tolist() == [0, 1] and lb_.cls.tolist() == [1, 0] and labels[3].cls.size == labels[4].cls.size == 0
    assert la.shape == (32, 32) and lc.segments[0].max() == 1.0
    np.testing.assert_allclose(la.bboxes[1], [6 / 32, 6 / 32, 8 / 32, 8 / 32], atol=1e-6)

    cache = Path(stats.cache_path)
    assert cache.is_file() and cache.parent == root / "labels"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edgeseg"):
        labels2, stats2 = scan_labels(files, nc=2)
    assert stats2.from_cache and (stats2.found, stats2.corrupt, stats2.duplicates) == (3, 8, 2)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 8  # replayed from the cache
    for x, y in zip(labels, labels2):
        assert x.im_file == y.im_file and x.shape == y.shape and np.array_equal(x.cls, y.cls)
        assert all(np.array_equal(s, t) for s, t in zip(x.segments, y.segments)) and np.array_equal(x.bboxes, y.bboxes)

    Path(label_path(files[4])).write_text(_line(1, sq) + "\n")  # e: empty -> one instance
    labels3, stats3 = scan_labels(files, nc=2)
    assert not stats3.from_cache and (stats3.found, stats3.empty) == (4, 0) and labels3[3].cls.tolist() == [1]


def _exif_orientation_segment(orientation: int) -> bytes:
    """A JPEG APP1 segment whose EXIF IFD0 holds only the Orientation tag."""
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + entry + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((40, 100, 3), np.uint8)
    img[:, :10] = 255  # white left column
    jpeg = cv2.imencode(".jpg", img)[1].tobytes()
    f = tmp_path / "images" / "o6.jpg"
    f.parent.mkdir()
    f.write_bytes(jpeg[:2] + _exif_orientation_segment(6) + jpeg[2:])  # 6: rotate 90 degrees clockwise
    labels, _ = scan_labels([str(f)], nc=1)
    decoded = read_image(f)
    assert labels[0].shape == (100, 40) and decoded.shape == (100, 40, 3)
    assert decoded[:8].mean() > 200 and decoded[20:].mean() < 50  # the white column is now the top rows


# ---------------------------------------------------------------- dataset


def _arrays(sample):
    return {k: v for k, v in sample.items() if isinstance(v, np.ndarray)}


def test_determinism_by_seed_epoch_index(rect_files):
    a = SegmentationDataset(rect_files, imgsz=64, seed=3, nc=2)
    b = SegmentationDataset(rect_files, imgsz=64, seed=3, nc=2)
    for i in (5, 0, 1):  # b visits other samples first
        b[i]
    first = _arrays(a[2])
    assert set(first) == {"img", "cls", "bboxes", "masks"}
    assert all(np.array_equal(v, _arrays(b[2])[k]) for k, v in first.items())
    a.set_epoch(1)
    assert not np.array_equal(a[2]["img"], first["img"])
    a.set_epoch(0)
    assert np.array_equal(a[2]["img"], first["img"])
    assert not np.array_equal(SegmentationDataset(rect_files, imgsz=64, seed=4, nc=2)[2]["img"], first["img"])


@pytest.mark.parametrize("mosaic", [True, False])
def test_augmented_mask_box_and_pixels_agree(rect_files, mosaic):
    s = 128
    ds = SegmentationDataset(rect_files, imgsz=s, seed=0, nc=2, hyp={"hsv_h": 0, "hsv_s": 0, "hsv_v": 0, "lr0": 0.01})
    if not mosaic:
        ds.close_mosaic()
    checked, red = 0, np.array(OBJECT_BGR[::-1])
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            sample = ds[i]
            img, masks, bboxes = sample["img"], sample["masks"], sample["bboxes"]
            assert img.shape == (3, s, s) and img.dtype == np.uint8 and masks.shape == (s // 4, s // 4)
            assert masks.max() == len(bboxes) and sample["cls"].shape == (len(bboxes), 1)
            for k, box in enumerate(bboxes, 1):
                m = (masks == k).astype(np.uint8)
                ys, xs = np.nonzero(m)
                cx, cy, bw, bh = box * s / 4
                assert abs(xs.min() - (cx - bw / 2)) <= 1 and abs(xs.max() + 1 - (cx + bw / 2)) <= 1, (i, k)
                assert abs(ys.min() - (cy - bh / 2)) <= 1 and abs(ys.max() + 1 - (cy + bh / 2)) <= 1, (i, k)
                inner = cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
                yi, xi = np.nonzero(inner)
                if len(yi):
                    under = img[:, yi * 4 + 2, xi * 4 + 2].T.astype(int)
                    assert np.abs(under - red).max() <= 8, (i, k)
                    checked += 1
            reds = np.abs(img.transpose(1, 2, 0).astype(int) - red).max(-1) <= 8
            red_blocks = reds.reshape(s // 4, 4, s // 4, 4).all((1, 3))
            assert not (red_blocks & (masks == 0)).any(), "object outside every mask"
    assert checked >= 10


def test_overlap_mask_order_and_binary_masks(tmp_path):
    small, big = (1, 30, 30, 50, 50, (255, 0, 0)), (0, 10, 10, 90, 90, (0, 255, 0))
    f = _write_sample(tmp_path, "val", "o", (100, 100), [big, small])
    Path(label_path(f)).write_text(
        _line(1, _rect_poly(30, 30, 50, 50, 100, 100)) + "\n" + _line(0, _rect_poly(10, 10, 90, 90, 100, 100)) + "\n"
    )
    sample = SegmentationDataset([f], imgsz=64, augment=False, nc=2)[0]
    masks = sample["masks"]
    assert masks.shape == (16, 16) and sample["cls"].ravel().tolist() == [0, 1]  # largest first
    assert (masks == 2).sum() < (masks == 1).sum() and (masks == 2).any()
    ys, xs = np.nonzero(masks == 2)  # the small one wins where they overlap
    cx, cy, w, h = sample["bboxes"][1] * 16
    assert abs(xs.min() - (cx - w / 2)) <= 1 and abs(ys.max() + 1 - (cy + h / 2)) <= 1
    np.testing.assert_allclose(sample["orig_segments"][1], [[30, 30], [50, 30], [50, 50], [30, 50]], atol=1e-3)

    binary = SegmentationDataset([f], imgsz=64, augment=False, nc=2, overlap_mask=False)[0]
    assert binary["masks"].shape == (2, 16, 16) and binary["cls"].ravel().tolist() == [1, 0]
    assert np.array_equal(binary["masks"][0], (masks == 2).astype(np.uint8))


def test_val_letterbox_matches_runtime_and_collate(tmp_path):
    tall_rects = [(1, 5, 5, 30, 60, OBJECT_BGR), (0, 40, 80, 65, 140, (9, 9, 9))]
    files = [
        _write_sample(tmp_path, "val", "wide", (60, 150), [(0, 20, 10, 80, 40, OBJECT_BGR)]),
        _write_sample(tmp_path, "val", "tall", (150, 70), tall_rects),
    ]
    ds = SegmentationDataset(files, imgsz=96, augment=False, nc=2, split="val")
    for f, sample in zip(files, [ds[0], ds[1]]):
        expected, info = letterbox(cv2.imread(f), (96, 96), scaleup=True)
        assert np.array_equal(sample["img"], expected[..., ::-1].transpose(2, 0, 1))
        assert sample["ratio_pad"] == (info.ratio, (info.pad_x, info.pad_y))
        assert sample["ori_shape"] == info.source_shape
    x1 = 20 * ds[0]["ratio_pad"][0] + ds[0]["ratio_pad"][1][0]
    assert abs((ds[0]["bboxes"][0, 0] - ds[0]["bboxes"][0, 2] / 2) * 96 - x1) < 1e-3

    batch = collate([ds[0], ds[1]])
    assert batch["img"].shape == (2, 3, 96, 96) and batch["masks"].shape == (2, 24, 24)
    assert batch["batch_idx"].tolist() == [0, 1, 1] and batch["cls"].shape == (3, 1) and batch["bboxes"].shape == (3, 4)
    assert batch["im_file"] == files and len(batch["orig_segments"][1]) == 2

    train = SegmentationDataset(files, imgsz=64, nc=2, overlap_mask=False)
    batch = collate([train[0], train[1]])
    n = len(batch["cls"])
    assert batch["masks"].shape == (n, 16, 16) and batch["batch_idx"].shape == (n,) and "ratio_pad" not in batch


def test_dataset_from_data_config(tmp_path, rect_files):
    cfg = {"train": "images/train", "val": "images/train", "names": ["a", "b"]}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(cfg))
    cfg = load_data_config(tmp_path / "data.yaml")
    ds = SegmentationDataset(cfg, imgsz=64, augment=False, split="val", cache_images=True)
    assert len(ds) == 6 and [lb.im_file for lb in ds.labels] == sorted(rect_files)
    with pytest.raises(EdgesegError, match="no 'test' split"):
        SegmentationDataset(cfg, split="test")
