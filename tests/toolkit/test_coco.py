"""COCO conversion against crafted files: one-line errors or counted skips, and outputs never through planted links."""

import json
import logging
import re

import numpy as np
import pytest

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.interop.coco import convert_coco
from edgeseg.interop.coco_geometry import MAX_OBJECT_POINTS, _closest_pair

from bad_files import coco_dict, encoded, png_bytes, write


def test_closest_pair_in_blocks_matches_the_full_matrix():
    rng = np.random.default_rng(0)
    a, b = rng.random((3000, 2)) * 100, rng.random((700, 2)) * 100 + 50
    d2 = ((a[:, None] - b[None]) ** 2).sum(-1)
    i, j = np.unravel_index(np.argmin(d2), d2.shape)
    assert _closest_pair(a, b) == (d2[i, j], i, j)


WEIRD = [None, True, -1, 0, 1.5, 10**30, "x", "\0", [], {}, [None], [[1]], {"size": "x"}, float("nan"), float("inf")]
FUZZ = [(f"{key}={value!r}"[:40], key, value) for key in ("image_id", "category_id", "segmentation", "iscrowd") for value in WEIRD]
FUZZ += [(f"top:{key}={value!r}", key, value) for key in ("annotations", "images", "categories") for value in (None, 3, "x", {}, [None])]


@pytest.mark.parametrize("name, where, value", FUZZ, ids=[f[0] for f in FUZZ])
def test_crafted_coco_entries_are_errors_or_counted_skips(tmp_path, name, where, value):
    write(tmp_path / "images" / "a.png", encoded(".png"))
    (tmp_path / "ann.json").write_text(json.dumps(coco_dict(**{where: value})))
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
    coco = coco_dict()
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
        (coco_dict(categories=[{"id": "abc", "name": "x"}]), "category {'id': 'abc', 'name': 'x'} needs an integer 'id'"),
        (coco_dict(categories=[{"id": 1}]), "needs an integer 'id' and a 'name'"),
        (coco_dict(categories=[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]), "category id 1 appears twice"),
        (coco_dict(categories=[{"id": 1, "name": "x" * 300}]), "name of 300 characters"),
        (coco_dict(images=[{"id": 1, "file_name": "a.png", "width": "abc", "height": 48}]), "lacks an id, width or height"),
        (coco_dict(images=[{"id": [1], "file_name": "a.png", "width": 64, "height": 48}]), "lacks an id, width or height"),
        (coco_dict(images=[{"id": 1, "width": 64, "height": 48}] * 2), "image id 1 appears twice"),
        (coco_dict(annotations={"a": 1}), "'annotations' must be a list"),
    ],
)
def test_malformed_coco_structure_is_one_line(tmp_path, coco, problem):
    write(tmp_path / "images" / "a.png", encoded(".png"))
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    with pytest.raises(EdgesegError, match=re.escape(problem)):
        convert_coco(tmp_path / "ann.json", tmp_path / "images", tmp_path / "out")


def test_coco_output_never_followsplanted_links(tmp_path):
    write(tmp_path / "images" / "a.png", encoded(".png"))
    (tmp_path / "ann.json").write_text(json.dumps(coco_dict()))
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
