"""Ultralytics' own exports run in edgeseg's runtime with the detections Ultralytics itself gets from them.

``tests/fixtures/ultralytics/exports.predict.npz`` holds ``YOLO(<export>).predict`` (Ultralytics
8.4.190, conf 0.01, its defaults otherwise: IoU 0.7, 300 detections) on four non-square
synthetic images, for the genuine ONNX and OpenVINO exports of the three families and YOLO26's
TFLite export beside it
(``make_export_predictions.py``). Both tools letterbox the image into the export's fixed
128 x 160 input, so their detections pair one to one.

It also holds ``YOLO(<.pt>).predict`` at imgsz 160 for the three genuine checkpoints, where
Ultralytics pads each image only to a multiple of the stride: edgeseg's ``rect=True``.
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
    "yolov8-seg-tiny-u8.4.190-openvino": "yolov8-seg-tiny-u8.4.190_openvino_model",
    "yolo26-seg-tiny-u8.4.190": "yolo26-seg-tiny-u8.4.190.onnx",
    "yolo26-seg-tiny-u8.4.190-end2end": "yolo26-seg-tiny-u8.4.190-end2end.onnx",
    "yolo26-seg-tiny-u8.4.190-openvino": "yolo26-seg-tiny-u8.4.190_openvino_model",
    "yolo26-seg-tiny-u8.4.190-tflite": "yolo26-seg-tiny-u8.4.190.tflite",
}


CHECKPOINTS = ["yolo11-seg-tiny-u8.4.190", "yolov8-seg-tiny-u8.4.190", "yolo26-seg-tiny-u8.4.190"]


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURES / "exports.predict.npz") as npz:
        return dict(npz)


@pytest.mark.parametrize("stem", sorted(EXPORTS))
def test_ultralytics_export_gives_ultralytics_detections(stem, reference):
    if stem.endswith("-tflite"):
        pytest.importorskip("ai_edge_litert", reason="the TFLite runtime is the [tflite] extra")
    results = load(FIXTURES / EXPORTS[stem]).predict(images(reference), conf=0.01, stream=False)
    matched, total = paired(results, reference, stem)
    assert matched >= 0.95 * total, f"{matched} of {total} detections pair with Ultralytics'"


@pytest.mark.parametrize("stem", CHECKPOINTS)
def test_rect_predict_of_a_checkpoint_gives_ultralytics_pt_detections(stem, reference, one_torch_thread):
    """``rect=True`` letterboxes as Ultralytics' ``.pt`` predict does (the 300 x 200 image into 160 x 128), so the detections pair."""
    results = load(FIXTURES / f"{stem}.pt").predict(images(reference), conf=0.01, imgsz=160, rect=True, stream=False)
    matched, total = paired(results, reference, f"{stem}-pt")
    assert matched >= 0.95 * total, f"{matched} of {total} detections pair with Ultralytics'"
    for result, i in zip(results, range(4)):
        np.testing.assert_allclose(np.sort(result.scores), np.sort(reference[f"{stem}-pt/scores_{i}"]), atol=1e-4)


def images(reference) -> list[np.ndarray]:
    """The four non-square BGR images of the reference."""
    pictures = [reference[f"images_{i}"] for i in range(4)]
    assert {image.shape[:2] for image in pictures} == {(150, 240), (200, 300), (240, 180), (180, 320)}
    return pictures


def paired(results, reference, stem: str) -> tuple[int, int]:
    """(detections that pair with the reference's: same class, box IoU >= 0.9; the larger count of the two) over the images."""
    total = matched = 0
    for i, result in enumerate(results):
        boxes, classes = reference[f"{stem}/boxes_{i}"], reference[f"{stem}/classes_{i}"]
        total += max(len(result), len(boxes))
        matched += len(match(result, SimpleNamespace(boxes=boxes, classes=classes), min_iou=0.9))
    return matched, total


def test_the_reference_has_detections_for_every_family(reference):
    stems = [*EXPORTS, *(f"{stem}-pt" for stem in CHECKPOINTS)]
    counts = {stem: sum(len(reference[f"{stem}/boxes_{i}"]) for i in range(4)) for stem in stems}
    assert all(counts[stem] >= 5 for stem in stems if not stem.startswith("yolo11")), counts
