"""Ultralytics' own exports run in edgeseg's runtime with the detections Ultralytics itself gets from them.

``tests/fixtures/ultralytics/exports.predict.npz`` holds ``YOLO(<export>).predict`` (Ultralytics
8.4.190, conf 0.01, its defaults otherwise: IoU 0.7, 300 detections) on four non-square
synthetic images, for the genuine ONNX and OpenVINO exports of the three families beside it
(``make_export_predictions.py``). Both tools letterbox the image into the export's fixed
128 x 160 input, so their detections pair one to one.
"""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgeseg.runtimes import load
from edgeseg.targets.verify.compare import match

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ultralytics"
EXPORTS = {
    "yolo11-seg-tiny-u8.4.190": "yolo11-seg-tiny-u8.4.190.onnx",
    "yolo11-seg-tiny-u8.4.190-openvino": "yolo11-seg-tiny-u8.4.190_openvino_model",
    "yolov8-seg-tiny-u8.4.190": "yolov8-seg-tiny-u8.4.190.onnx",
    "yolo26-seg-tiny-u8.4.190": "yolo26-seg-tiny-u8.4.190.onnx",
    "yolo26-seg-tiny-u8.4.190-end2end": "yolo26-seg-tiny-u8.4.190-end2end.onnx",
    "yolo26-seg-tiny-u8.4.190-openvino": "yolo26-seg-tiny-u8.4.190_openvino_model",
}


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURES / "exports.predict.npz") as npz:
        return dict(npz)


@pytest.mark.parametrize("stem", sorted(EXPORTS))
def test_ultralytics_export_gives_ultralytics_detections(stem, reference):
    images = [reference[f"images_{i}"] for i in range(4)]
    assert {image.shape[:2] for image in images} == {(150, 240), (200, 300), (240, 180), (180, 320)}
    results = load(FIXTURES / EXPORTS[stem]).predict(images, conf=0.01, stream=False)
    total = matched = 0
    for i, result in enumerate(results):
        boxes, classes = reference[f"{stem}/boxes_{i}"], reference[f"{stem}/classes_{i}"]
        total += max(len(result), len(boxes))
        matched += len(match(result, SimpleNamespace(boxes=boxes, classes=classes), min_iou=0.9))  # same class, box IoU >= 0.9
    assert matched >= 0.95 * total, f"{matched} of {total} detections pair with Ultralytics'"


def test_the_reference_has_detections_for_every_family(reference):
    counts = {stem: sum(len(reference[f"{stem}/boxes_{i}"]) for i in range(4)) for stem in EXPORTS}
    assert all(counts[stem] >= 5 for stem in EXPORTS if not stem.startswith("yolo11")), counts
