"""End-to-end detections in the preds layout: host NMS over them gives back the same detections."""

import json

import numpy as np
import pytest

from edgeseg.runtimes import ModelMeta
from edgeseg.runtimes.pipeline.end2end import DETECTION_COLUMNS, detections_to_preds, host_detections
from edgeseg.runtimes.pipeline.postprocess import non_max_suppression

NC, NM, ANCHORS = 3, 4, 400


def random_preds(seed: int, batch: int = 2) -> np.ndarray:
    """(batch, 4 + NC + NM, ANCHORS) float32: overlapping boxes in a 160 px input, uniform scores, normal coefficients."""
    rng = np.random.default_rng(seed)
    preds = np.empty((batch, 4 + NC + NM, ANCHORS), np.float32)
    preds[:, 0:2] = rng.uniform(20, 140, (batch, 2, ANCHORS))
    preds[:, 2:4] = rng.uniform(8, 60, (batch, 2, ANCHORS))
    preds[:, 4 : 4 + NC] = rng.uniform(0, 1, (batch, NC, ANCHORS))
    preds[:, 4 + NC :] = rng.normal(size=(batch, NM, ANCHORS))
    return preds


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("floor", "max_det"), [(0.001, 300), (0.5, 20), (0.9, 5)])
def test_host_nms_over_end2end_detections_gives_them_back(seed, floor, max_det):
    preds = random_preds(seed)
    detections = host_detections(preds, NC, floor, 0.6, max_det)
    assert detections.shape == (2, max_det, DETECTION_COLUMNS + NM)
    as_preds = detections_to_preds(detections, NC)
    assert as_preds.shape == (2, 4 + NC + NM, max_det)
    for b in range(2):
        for conf in (floor, max(floor, 0.7)):
            direct = non_max_suppression(preds[b], NC, conf=conf, iou=0.6, max_det=max_det)
            again = non_max_suppression(as_preds[b], NC, conf=conf, iou=0.6, max_det=max_det)
            assert len(direct[0]) == len(again[0]) > 0
            np.testing.assert_allclose(again[0], direct[0], atol=1e-4)  # xyxy → cxcywh → xyxy in float32
            for got, want in zip(again[1:], direct[1:]):
                np.testing.assert_array_equal(got, want)
    assert not detections[detections[..., 4] == 0].any()  # rows after the last detection are all zeros


def test_padding_rows_and_class_rows():
    detections = np.zeros((1, 3, DETECTION_COLUMNS + NM), np.float32)
    detections[0, 0, :6] = [10, 20, 30, 60, 0.8, 2]
    detections[0, 0, 6:] = [1, 2, 3, 4]
    preds = detections_to_preds(detections, NC)
    np.testing.assert_array_equal(preds[0, :, 0], np.float32([20, 40, 20, 40, 0, 0, 0.8, 1, 2, 3, 4]))
    assert not preds[0, :, 1:].any()
    detections[0, 0, 5] = NC
    with pytest.raises(ValueError, match="class ids outside 0..2"):
        detections_to_preds(detections, NC)


def test_model_meta_nms_round_trip_and_limits():
    meta = ModelMeta(names={0: "a"}, imgsz=(64, 64), outputs=["detections", "protos"], nms={"conf": 0.25, "iou": 0.7, "max_det": 100})
    back = ModelMeta.from_json(meta.to_json())
    assert back == meta and back.end2end and back.head_shape == (2, 6 + 32)
    plain = ModelMeta(names={0: "a", 1: "b"}, imgsz=(64, 64))
    assert not plain.end2end and plain.head_shape == (1, 4 + 2 + 32)
    for bad in ({"conf": 2, "iou": 0.7, "max_det": 1}, {"conf": 0.1, "iou": 0.7, "max_det": 0}, {"conf": 0.1, "iou": 0.7}, [1]):
        data = json.loads(meta.to_json())
        data["nms"] = bad
        with pytest.raises(ValueError, match="nms"):
            ModelMeta.from_json(json.dumps(data))
