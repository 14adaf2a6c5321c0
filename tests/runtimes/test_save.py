"""Saving predictions through the Python API: ``edgeseg.runtimes.io.save`` (annotated images/videos, labels, COCO)."""

import ast
import json
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

import edgeseg.runtimes
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.io.save import ResultSaver, save_results
from edgeseg.runtimes.meta.model_meta import META_KEY, ModelMeta
from edgeseg.runtimes.pipeline.results import Results
from edgeseg.runtimes.pipeline.rle import rle_decode

import helpers

IMGSZ = 160
# (seed, index, width, height) of the synthetic images: three files, two arrays, one video
FILE_SAMPLES = [(5, i, 200 + 20 * i, 130) for i in range(3)]
ARRAY_SAMPLES = [(6, 0, 180, 140), (6, 1, 150, 110)]
VIDEO_SAMPLE = (7, 0, 176, 120)
VIDEO_FRAMES, VIDEO_FPS = 4, 10.0

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    """The train-free model of tests/helpers.py (calibrated on these images), exported to ONNX with its metadata."""
    path = tmp_path_factory.mktemp("model") / "m.onnx"
    images = [helpers.sample(*s) for s in (*FILE_SAMPLES, *ARRAY_SAMPLES, VIDEO_SAMPLE)]
    model = helpers.calibrated_model(images, IMGSZ)
    with warnings.catch_warnings():  # the legacy exporter's deprecation and tracer warnings
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.net, torch.zeros(1, 3, IMGSZ, IMGSZ), str(path), opset_version=17,
            input_names=["images"], output_names=["preds", "protos"], dynamo=False,
        )
    proto = onnx.load(str(path))
    proto.metadata_props.add(key=META_KEY, value=ModelMeta(names=dict(model.names), imgsz=(IMGSZ, IMGSZ)).to_json())
    onnx.save(proto, str(path))
    return edgeseg.runtimes.load(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three PNGs of different sizes, ``00.png`` … ``02.png``."""
    root = tmp_path_factory.mktemp("images")
    for spec in FILE_SAMPLES:
        cv2.imwrite(str(root / f"{spec[1]:02d}.png"), helpers.sample(*spec))
    return root


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """A VIDEO_FRAMES-frame (120, 176) mp4v ``clip.mp4`` at VIDEO_FPS of moving synthetic content."""
    return helpers.write_video(tmp_path_factory.mktemp("video") / "clip.mp4", VIDEO_SAMPLE, VIDEO_FRAMES, VIDEO_FPS)


def read_labels(path: Path, orig_shape) -> list[tuple[int, np.ndarray]]:
    """(class id, (K, 2) polygon in source px) per line of a YOLO-seg label file."""
    h0, w0 = orig_shape
    rows = []
    for line in path.read_text().splitlines():
        values = line.split()
        coords = np.array(values[1:], float)
        assert len(coords) % 2 == 0 and ((0 <= coords) & (coords <= 1)).all(), line
        rows.append((int(values[0]), coords.reshape(-1, 2) * (w0, h0)))
    return rows


def assert_labels_match(path: Path, result: Results) -> None:
    """The label file holds one line per non-empty polygon: same class, same vertices within 1 px."""
    expected = [(int(c), p) for c, p in zip(result.classes, result.polygons) if len(p)]
    rows = read_labels(path, result.orig_shape)
    assert len(rows) == len(expected), path
    for (cls, polygon), (want_cls, want) in zip(rows, expected):
        assert cls == want_cls
        assert polygon.shape == want.shape
        np.testing.assert_allclose(polygon, want, atol=1.0)


def test_save_results_writes_images_labels_and_coco(runtime, folder, tmp_path):
    results = list(runtime.predict(folder))
    assert [Path(r.path).name for r in results] == ["00.png", "01.png", "02.png"]
    assert sum(len(r) for r in results) > 0 and sum(len(p) > 0 for r in results for p in r.polygons) > 0

    run = save_results(iter(results), tmp_path / "predict", txt=True, coco=True)
    assert run == tmp_path / "predict"
    assert sorted(p.name for p in run.iterdir()) == ["00.png", "01.png", "02.png", "labels", "predictions.json"]
    for r in results:
        saved = cv2.imread(str(run / Path(r.path).name))
        np.testing.assert_array_equal(saved, r.plot())  # PNG is lossless: exactly the annotated image
    assert any(not np.array_equal(cv2.imread(str(run / Path(r.path).name)), r.image) for r in results if len(r))

    assert sorted(p.name for p in (run / "labels").iterdir()) == ["00.txt", "01.txt", "02.txt"]
    for r in results:
        assert_labels_match(run / "labels" / f"{Path(r.path).stem}.txt", r)

    coco = json.loads((run / "predictions.json").read_text())
    assert len(coco) == sum(len(r) for r in results)
    expected = [e for i, r in enumerate(results) for e in r.to_coco(i)]  # numeric stems 00, 01, 02 -> 0, 1, 2
    assert coco == json.loads(json.dumps(expected))
    entries = iter(coco)
    for image_id, r in enumerate(results):
        for box, score, cls, mask in zip(r.boxes, r.scores, r.classes, r.masks):
            entry = next(entries)
            assert entry["image_id"] == image_id and entry["category_id"] == int(cls)
            x1, y1, x2, y2 = box.tolist()
            np.testing.assert_allclose(entry["bbox"], [x1, y1, x2 - x1, y2 - y1], atol=1e-3)
            assert entry["score"] == pytest.approx(float(score), abs=1e-5)
            assert entry["segmentation"]["size"] == list(r.orig_shape)
            np.testing.assert_array_equal(rle_decode(entry["segmentation"]).astype(bool), mask)


def test_arrays_are_named_image0_image1_in_order(runtime, folder, tmp_path):
    arrays = [helpers.sample(*s) for s in ARRAY_SAMPLES]
    results = list(runtime.predict([arrays[0], folder / "01.png", arrays[1]]))
    assert [r.path for r in results] == [None, str(folder / "01.png"), None]

    run = save_results(results, tmp_path / "arrays", txt=True, coco=True)
    assert sorted(p.name for p in run.glob("*.*") if p.name != "predictions.json") == ["01.png", "image0.jpg", "image1.jpg"]
    for name, r in (("image0", results[0]), ("image1", results[2])):
        saved = cv2.imread(str(run / f"{name}.jpg"))
        assert saved.shape == r.plot().shape == r.image.shape
        jpeg = cv2.imdecode(cv2.imencode(".jpg", r.plot())[1], cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(saved, jpeg)  # the annotated image, through the same (lossy) JPEG encoder
        assert_labels_match(run / "labels" / f"{name}.txt", r)
    assert sorted(p.name for p in (run / "labels").iterdir()) == ["01.txt", "image0.txt", "image1.txt"]
    coco = json.loads((run / "predictions.json").read_text())
    ids = [e["image_id"] for e in coco]
    assert ids == ["image0"] * len(results[0]) + [1] * len(results[1]) + ["image1"] * len(results[2])


def test_video_becomes_one_mp4_at_the_source_fps(runtime, video, tmp_path):
    with ResultSaver(tmp_path / "predict", txt=True) as saver:
        for result in runtime.predict(video):
            saver.add(result)
    run = saver.folder
    assert run == tmp_path / "predict"
    assert sorted(p.name for p in run.iterdir()) == ["clip.mp4", "labels"]
    assert sorted(p.name for p in (run / "labels").iterdir()) == [f"clip_{i}.txt" for i in range(VIDEO_FRAMES)]
    capture = cv2.VideoCapture(str(run / "clip.mp4"))
    try:
        assert capture.isOpened()
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == VIDEO_FRAMES
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(VIDEO_FPS, abs=0.01)
        assert (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (176, 120)
        frames = 0
        while capture.read()[0]:
            frames += 1
        assert frames == VIDEO_FRAMES
    finally:
        capture.release()


def test_a_second_save_goes_into_name2_and_nothing_creates_no_folder(runtime, folder, tmp_path):
    results = list(runtime.predict(folder / "00.png"))
    first = save_results(results, tmp_path / "name")
    second = save_results(results[0], tmp_path / "name", images=False, coco=True)  # one Results works too
    assert (first, second) == (tmp_path / "name", tmp_path / "name2")
    assert sorted(p.name for p in first.iterdir()) == ["00.png"]
    assert sorted(p.name for p in second.iterdir()) == ["predictions.json"]
    assert save_results(results, tmp_path / "name", exist_ok=True) == tmp_path / "name"

    assert save_results([], tmp_path / "empty", coco=True) is None
    assert save_results(results, tmp_path / "off", images=False) is None
    assert not (tmp_path / "empty").exists() and not (tmp_path / "off").exists()


def test_errors_are_one_line_naming_the_file(tmp_path):
    result = Results(np.zeros((0, 4)), [], [], np.zeros((0, 8, 8), bool), {0: "a"}, (8, 8), path="shot.nosuchformat")
    with pytest.raises(EdgesegError) as info:
        save_results([result], tmp_path / "run")
    assert str(info.value) == f"{tmp_path / 'run' / 'shot.nosuchformat'}: could not write the annotated image"

    (tmp_path / "file").write_text("")
    with pytest.raises(EdgesegError, match="exists and is not a folder") as info:
        save_results([result], tmp_path / "file" / "run", images=False, txt=True)
    assert "\n" not in str(info.value) and str(tmp_path / "file") in str(info.value)

    with pytest.raises(EdgesegError, match="expects a Results, got ndarray"):
        save_results([np.zeros((8, 8, 3), np.uint8)], tmp_path / "run")


def test_the_saver_is_torch_free():
    source = Path(edgeseg.runtimes.io.save.__file__)
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.startswith("edgeseg"):
            assert node.module.startswith("edgeseg.runtimes"), node.module
        assert not isinstance(node, ast.Import) or all(not a.name.startswith(("edgeseg", "torch")) for a in node.names)
    script = "import sys, edgeseg.runtimes.io.save; assert 'torch' not in sys.modules, 'torch was imported'"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
