"""Hostile data through the entry points: crafted images, label files, caches, data YAMLs, COCO files and predict sources.

Every entry point answers a bad input with one ``error:`` line or a counted skip (a warning naming
the file, and the count), within the time and memory of ``tests/hostile.py`` and without touching
anything outside its own output. The modules' own tests with known answers are beside their
modules (tests/runtimes/test_images.py, test_labels.py, test_yaml_safe.py, test_data_config.py,
test_rle.py, tests/toolkit/test_coco.py); the crafted files come from tests/bad_files.py.
"""

import json
import os
import re
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

import edgeseg

from bad_files import BOMB, GIB3, LABEL, coco_dict, dataset, encoded, planted_links, png_bytes, sparse, tiff16_rgba, write
from hostile import Case, check, params

SLOW = (pytest.mark.slow,)


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
    planted_links(sandbox / "ds" / "labels", victim)


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
    coco = coco_dict(segmentation=rle)
    coco["images"].append({"id": 2, "file_name": "a.png", "width": 100_000, "height": 100_000})
    coco["annotations"].append({"image_id": 2, "category_id": 1, "segmentation": rle})
    _coco_case(coco, sandbox)


TRAIN = ["train", "--data", "ds/data.yaml", "--epochs", "1", "--imgsz", "64", "--batch", "2", "--workers", "0", "--project", "runs"]
CHECK = ["data", "check", "ds/data.yaml"]
VAL = ["val", "m.onnx", "--data", "ds/data.yaml"]
PREDICT = ["predict", "m.onnx", "src", "--project", "runs"]
CONVERT = ["data", "convert", "coco", "ann.json", "--images", "images", "--out", "out"]
API_SCAN = """
from edgeseg.runtimes.evaluation.label_cache import scan_labels
from edgeseg.runtimes.io.data_config import img_paths
_, stats = scan_labels(img_paths('images/train', 'ds'), 1)
print('corrupt', stats.corrupt)
"""
API_PREDICT = """
import edgeseg.runtimes
rt = edgeseg.runtimes.load('m.onnx')
out = list(rt.predict({source!r}))
print('results', len(out), 'skipped', rt.last_skipped)
"""
API_DATA_YAML = "from edgeseg.runtimes.io.data_config import load_data_config\nload_data_config('ds/data.yaml')"
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
CATEGORY_TEXT = coco_dict(categories=[{"id": "one", "name": "x"}])
CATEGORY_LINE = r"ann.json: category \{'id': 'one', 'name': 'x'\} needs an integer 'id' and a 'name'"
WIDTH_1E300 = coco_dict(images=[{"id": 1, "file_name": "a.png", "width": 1e300, "height": 48}])
DEEP_JSON = partial(_annotation_file, lambda p: write(p, '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"))
SPARSE_JSON = partial(_annotation_file, lambda p: sparse(p, b"{", 6 << 30))
SPARSE_JSON_LINE = "ann.json: annotation file is 6,442,450,944 bytes, more than the 2,147,483,648-byte limit"
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
