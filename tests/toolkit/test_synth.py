"""The synthetic YOLO-seg dataset: determinism, polygon fidelity and layout."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edgeseg.data.synth import CLASS_NAMES, render_sample, sample_rng, synthesize


def _read_labels(path: Path) -> list[tuple[int, np.ndarray]]:
    rows = []
    for line in path.read_text().splitlines():
        values = line.split()
        rows.append((int(values[0]), np.array(values[1:], np.float64).reshape(-1, 2)))
    return rows


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return synthesize(tmp_path_factory.mktemp("synth"), n_train=16, n_val=4, seed=0, progress=False).parent


def test_same_seed_is_byte_identical_and_other_seed_differs(dataset, tmp_path):
    again = synthesize(tmp_path / "again", n_train=16, n_val=4, seed=0, progress=False).parent
    other = synthesize(tmp_path / "other", n_train=4, n_val=0, seed=1, progress=False).parent
    for rel in sorted(p.relative_to(dataset) for p in dataset.rglob("*") if p.suffix in (".png", ".txt")):
        assert (dataset / rel).read_bytes() == (again / rel).read_bytes(), rel
    for i in range(4):
        name = f"labels/train/{i:06d}.txt"
        assert (dataset / name).read_bytes() != (other / name).read_bytes()


def test_sample_does_not_depend_on_split_size(dataset, tmp_path):
    small = synthesize(tmp_path / "small", n_train=2, n_val=1, seed=0, progress=False).parent
    for name in ("labels/train/000001.txt", "images/train/000001.png", "labels/val/000000.txt"):
        assert (small / name).read_bytes() == (dataset / name).read_bytes()


def test_label_polygons_match_visible_masks(dataset):
    for split, count in (("train", 16), ("val", 4)):
        for i in range(count):
            image, classes, _, masks = render_sample(sample_rng(0, split, i))
            h, w = image.shape[:2]
            assert cv2.imread(str(dataset / "images" / split / f"{i:06d}.png")).shape == image.shape
            rows = _read_labels(dataset / "labels" / split / f"{i:06d}.txt")
            assert [cls for cls, _ in rows] == classes
            for (_, poly), truth in zip(rows, masks):
                filled = np.zeros((h, w), np.uint8)
                pts = np.round(poly * [w, h]).astype(np.int32)
                cv2.fillPoly(filled, [pts], 1, lineType=cv2.LINE_8)
                iou = np.count_nonzero(filled.astype(bool) & truth) / np.count_nonzero(filled.astype(bool) | truth)
                assert iou >= 0.95, (split, i, iou)


def test_layout_yaml_and_label_ranges(dataset):
    data = yaml.safe_load((dataset / "data.yaml").read_text())
    assert Path(data["path"]) == dataset.resolve()
    assert data["train"] == "images/train" and data["val"] == "images/val"
    assert data["names"] == dict(enumerate(CLASS_NAMES))
    per_image, shapes = [], []
    for split, count in (("train", 16), ("val", 4)):
        images = sorted((dataset / data[split]).glob("*.png"))
        assert len(images) == count
        for img in images:
            label = dataset / "labels" / split / f"{img.stem}.txt"
            assert label.is_file()
            rows = _read_labels(label)
            per_image.append(len(rows))
            shapes.append(cv2.imread(str(img)).shape[:2])
            for cls, poly in rows:
                assert 0 <= cls < len(data["names"])
                assert len(poly) >= 3
                assert poly.min() >= 0 and poly.max() <= 1
    assert max(per_image[:16]) >= 8
    assert min(per_image) >= 1
    assert any(h != w for h, w in shapes)


def test_rerun_overwrites_stale_files(tmp_path):
    out = tmp_path / "ds"
    synthesize(out, n_train=3, n_val=2, progress=False)
    synthesize(out, n_train=2, n_val=1, progress=False)
    assert len(list((out / "images" / "train").glob("*.png"))) == 2
    assert len(list((out / "labels" / "val").glob("*.txt"))) == 1
    assert (out / "data.yaml").is_file()


def test_render_sample_shapes_and_types():
    image, classes, polygons, masks = render_sample(np.random.default_rng(3), width=200, height=150, n_objects=5)
    assert image.shape == (150, 200, 3) and image.dtype == np.uint8
    assert len(classes) == len(polygons) == len(masks) and 1 <= len(classes) <= 5
    for poly, mask in zip(polygons, masks):
        assert poly.ndim == 2 and poly.shape[1] == 2 and poly.dtype == np.float32
        assert mask.shape == (150, 200) and mask.dtype == bool and mask.sum() >= 60
    union = np.zeros((150, 200), np.int32)
    for mask in masks:
        union += mask
    assert union.max() <= 1


def test_clip_is_deterministic_with_consistent_ground_truth(tmp_path):
    from edgeseg.data.synth_clip import MIN_VISIBLE_PX, render_clip

    first, again = list(render_clip(3, 40, 6)), list(render_clip(3, 40, 6))
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.ids, b.ids) for a, b in zip(first, again))
    for frame in first:
        assert set(frame.ids.tolist()) <= set(range(1, 7)) and len(set(frame.ids.tolist())) == len(frame.ids)
        assert (frame.masks.sum((1, 2)) >= MIN_VISIBLE_PX).all() and not (frame.masks.sum(0) > 1).any()  # visible parts never overlap
        for mask, (x1, y1, x2, y2) in zip(frame.masks, frame.boxes.astype(int)):
            assert mask[y1:y2, x1:x2].sum() == mask.sum()  # the box holds the whole visible mask
    centres = np.array([f.boxes[list(f.ids).index(1)].reshape(2, 2).mean(0) for f in first if 1 in f.ids])
    assert len(centres) > 20 and np.abs(np.diff(centres, axis=0)).max() < 12  # object 1 moves a few px per frame


def test_cli_synth_clip_writes_video_and_mot_ground_truth(tmp_path):
    from click.testing import CliRunner

    from edgeseg.cli import main

    done = CliRunner().invoke(main, ["data", "synth-clip", "--out", str(tmp_path), "--frames", "12", "--objects", "4"])
    assert done.exit_code == 0, done.output
    video = cv2.VideoCapture(str(tmp_path / "clip.avi"))
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    rows = [line.split(",") for line in (tmp_path / "gt.txt").read_text().splitlines()]
    assert {int(r[0]) for r in rows} == set(range(1, 13)) and {int(r[1]) for r in rows} <= {1, 2, 3, 4}
    assert all(len(r) == 9 and float(r[4]) > 0 and float(r[5]) > 0 for r in rows)
