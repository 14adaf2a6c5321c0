"""Export verification judges detections, masks and mAP: known answers on hand-made outputs, and drift end to end."""

import json

import cv2
import numpy as np
import pytest

from edgeseg.data.synth import synthesize
from edgeseg.runtimes import Runtime, load
from edgeseg.runtimes.backends.base import Backend
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.evaluation.labels import Label
from edgeseg.runtimes.meta.model_meta import ModelMeta
from edgeseg.runtimes.pipeline.postprocess import xywh2xyxy
from edgeseg.runtimes.pipeline.preprocess import PAD_VALUE
from edgeseg.runtimes.pipeline.results import Results
from edgeseg.targets import export
from edgeseg.targets import onnx as onnx_target
from edgeseg.targets.verify import (
    TOLERANCES,
    Candidates,
    borderline_score,
    compare_detections,
    format_report,
    iou_summary,
    verification_set,
    verify,
)
from edgeseg.targets.verify import compare as verify_compare

import helpers

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 64  # hand-made outputs: square SIZE x SIZE images and input, so source px = input px
NAMES = {0: "a", 1: "b"}


class FixedBackend(Backend):
    """A backend that returns the same hand-made outputs for any input: one (4 + 2 + 1, A) preds per image.

    The single prototype is +1 everywhere and every coefficient is 1, so each mask is its box.
    """

    name = "fixed"

    def __init__(self, preds: list[np.ndarray]):
        super().__init__("fixed", ModelMeta(names=NAMES, imgsz=(SIZE, SIZE), nm=1, batch=0, dynamic=True))
        self.preds = np.stack(preds).astype(np.float32)

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        protos = np.ones((len(batch), 1, SIZE // 4, SIZE // 4), np.float32)
        return self.preds[: len(batch)], protos


def anchors(*detections) -> np.ndarray:
    """(7, A) preds of one image from ``(cx, cy, w, h, class, score)`` tuples in input px."""
    columns = []
    for cx, cy, w, h, cls, score in detections:
        scores = [0.0, 0.0]
        scores[cls] = score
        columns.append([cx, cy, w, h, *scores, 1.0])
    return np.array(columns, np.float32).T


def fixed(*images) -> Runtime:
    """A Runtime of FixedBackend over per-image lists of detections (see ``anchors``)."""
    return Runtime(FixedBackend([anchors(*detections) for detections in images]))


def blank_images(n: int) -> list[np.ndarray]:
    """``n`` grey SIZE x SIZE BGR images (the fixed backends ignore them)."""
    return [np.full((SIZE, SIZE, 3), 90, np.uint8) for _ in range(n)]


CLEAR = (20, 20, 16, 16, 0, 0.9)  # a confident detection
EDGE = (45, 45, 12, 12, 1, 0.255)  # a detection a hair above conf 0.25


@pytest.fixture
def few_detections_suffice(monkeypatch):
    """Judge at conf 0.25 even with under MIN_DETECTIONS reference detections (these images hold two)."""
    monkeypatch.setattr(verify_compare, "MIN_DETECTIONS", 1)


# --------------------------------------------------------------------------------------
# Known answers on hand-made outputs
# --------------------------------------------------------------------------------------


def test_scores_straddling_the_threshold_are_not_disagreements(few_detections_suffice):
    """EDGE drops to 0.24 and a new object rises from 0.245 to 0.256: both within the fp32 margin of conf.

    Each moved by more than the margin (0.082 and 0.060 logits), so neither takes the reference's score.
    """
    reference = fixed([CLEAR, EDGE, (45, 15, 10, 10, 0, 0.245)])
    artifact = fixed([CLEAR, (*EDGE[:5], 0.24), (45, 15, 10, 10, 0, 0.256)])
    report = verify(reference, artifact, blank_images(1), "fp32")
    assert report["passed"] and report["agreement"] == 1.0, report["failures"]
    assert report["detections"]["borderline"] == {"reference": 1, "artifact": 1}
    assert report["detections"]["unmatched"] == {"reference": 0, "artifact": 0}
    assert report["borderline_below"] == pytest.approx(borderline_score(0.25, TOLERANCES["fp32"]["logit_margin"]))
    assert report["box_iou"] == {"mean": 1.0, "p5": 1.0} and report["mask_iou"] == {"mean": 1.0, "p5": 1.0}


def test_a_clear_detection_lost_is_a_disagreement(few_detections_suffice):
    reference = fixed([CLEAR, (45, 45, 12, 12, 1, 0.6)])
    artifact = fixed([CLEAR, (45, 45, 12, 12, 1, 0.2)])
    report = verify(reference, artifact, blank_images(1), "fp32")
    assert report["agreement"] == 0.5 and report["detections"]["unmatched"] == {"reference": 1, "artifact": 0}
    assert report["failures"] == [
        "detection agreement 50.0% < 98% (1 matched; unmatched and clear of the threshold: 1 reference, 0 artifact)"
    ]


def test_a_real_box_shift_fails(few_detections_suffice):
    """12 px on a 16 px box: no longer the same object (IoU 0.14); 3 px: the same object, but its box and mask moved."""
    reference = fixed([CLEAR, EDGE])
    far = verify(reference, fixed([(32, *CLEAR[1:]), EDGE]), blank_images(1), "fp32")
    assert far["agreement"] == 0.5 and far["detections"]["unmatched"] == {"reference": 1, "artifact": 1}
    assert far["failures"][0].startswith("detection agreement 50.0% < 98%")
    near = verify(reference, fixed([(23, *CLEAR[1:]), EDGE]), blank_images(1), "fp32")
    assert near["agreement"] == 1.0 and near["box_iou"]["mean"] == pytest.approx((13 / 19 + 1) / 2)
    assert near["box_iou"]["p5"] == pytest.approx(np.percentile([13 / 19, 1], 5))
    assert [f.split(" 0.")[0] for f in near["failures"]] == ["box IoU mean", "box IoU p5", "mask IoU mean", "mask IoU p5"]


# Three overlapping boxes of one class in a chain: IoU(A, B) = IoU(B, C) = 18/22 > NMS's 0.7 and
# IoU(A, C) = 16/24 < 0.7. Scored A > B > C, NMS keeps A and C; scored B > A > C, it keeps B alone.
CHAIN = [(25, 20, 20, 20, 0), (27, 20, 20, 20, 0), (29, 20, 20, 20, 0)]
TIE = np.float32(0.6)  # the chain's score; 1e-7 apart is two float32 steps here
STEP = np.float32(1e-7)
OTHER = (45, 45, 12, 12, 1, 0.9)  # a detection of the other class, away from the chain


def chain(*scores) -> list[tuple]:
    """CHAIN's boxes (A, B, C) with these scores, and OTHER."""
    return [(*box, score) for box, score in zip(CHAIN, scores)] + [OTHER]


def test_nms_near_ties_permuted_between_the_sides_pass(few_detections_suffice):
    """Duplicate boxes whose scores differ by 1e-7, ranked the other way round: alone, NMS keeps other boxes."""
    reference = fixed(chain(TIE + STEP, TIE, TIE - STEP))  # keeps A and C
    artifact = fixed(chain(TIE, TIE + STEP, TIE - STEP))  # keeps B, which suppresses A and C
    assert [len(r) for r in reference.predict(blank_images(1)[0])] == [3]
    assert [len(r) for r in artifact.predict(blank_images(1)[0])] == [2]
    report = verify(reference, artifact, blank_images(1), "fp32")
    assert report["passed"] and report["agreement"] == 1.0, report["failures"]
    assert report["detections"]["matched"] == 3 and report["detections"]["unmatched"] == {"reference": 0, "artifact": 0}
    assert report["box_iou"] == {"mean": 1.0, "p5": 1.0} and report["mask_iou"] == {"mean": 1.0, "p5": 1.0}


def chain_results(*kept) -> Results:
    """Results holding the CHAIN boxes ``kept`` (indices, each scoring TIE) in source px (= input px here)."""
    boxes = np.array([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2] for cx, cy, w, h, _ in (CHAIN[i] for i in kept)], np.float32)
    masks = np.zeros((len(kept), SIZE, SIZE), bool)
    return Results(boxes=boxes, scores=[TIE] * len(kept), classes=[0] * len(kept), masks=masks, names=NAMES, orig_shape=(SIZE, SIZE))


def held(*columns) -> Candidates:
    """Candidates of one image from ``(cx, cy, w, h, class, score)`` tuples in source px."""
    preds = anchors(*columns)
    return Candidates(xywh2xyxy(preds[:4].T), np.ascontiguousarray(preds[4:6].T))


def test_an_unmatched_detection_held_before_nms_is_a_tie():
    """An end-to-end artifact kept B where the reference kept A and C; it held C before NMS: C is not a disagreement."""
    reference, artifact = [chain_results(0, 2)], [chain_results(1)]
    before_nms = {"reference": [held(*chain(TIE, TIE, TIE))], "artifact": [held(*chain(TIE, TIE, TIE - STEP))]}
    compared = compare_detections(reference, artifact, 0.26, before_nms, logit_margin=0.05)
    assert compared["matched"] == 1 and compared["agreement"] == 1.0
    assert compared["tied"] == {"reference": 1, "artifact": 0} and compared["unmatched"] == {"reference": 0, "artifact": 0}
    assert compare_detections(reference, artifact, 0.26)["agreement"] == 0.5  # no candidates: no tie


@pytest.mark.parametrize(
    "c_held",
    [(*CHAIN[2], 0.55), (*CHAIN[2][:4], 1, TIE), (CHAIN[2][0] + 12, *CHAIN[2][1:], TIE)],
    ids=["0.2 logits lower", "other class", "12 px away"],
)
def test_a_tie_needs_the_same_box_class_and_score(c_held):
    """C held 0.2 logits lower (the fp32 margin is 0.05), as another class, or 12 px away (IoU 0.25) is no tie.

    The artifact holds nothing else near C here (A and B, overlapping C at IoU >= 0.5, would be ties for it).
    """
    before_nms = {"reference": [held(*chain(TIE, TIE, TIE))], "artifact": [held(c_held, OTHER)]}
    compared = compare_detections([chain_results(0, 2)], [chain_results(1)], 0.26, before_nms, logit_margin=0.05)
    assert compared["tied"] == {"reference": 0, "artifact": 0} and compared["unmatched"]["reference"] == 1
    assert compared["agreement"] == 0.5


def test_mask_iou_distribution_mean_and_low_percentile():
    """Four matched objects with identical boxes; three identical masks and one that keeps half its pixels."""
    box = np.array([[0, 0, 8, 8]], np.float32)
    full = np.zeros((1, 8, 8), bool)
    full[0, :, :] = True
    half = full.copy()
    half[0, :, 4:] = False

    def result(mask):
        return Results(boxes=box, scores=[0.9], classes=[0], masks=mask, names=NAMES, orig_shape=(8, 8))

    compared = compare_detections([result(full)] * 4, [result(full)] * 3 + [result(half)], borderline=0.3)
    np.testing.assert_allclose(compared["mask_ious"], [1.0, 1.0, 1.0, 0.5])
    summary = iou_summary(compared["mask_ious"])
    assert summary["mean"] == pytest.approx(0.875) and summary["p5"] == pytest.approx(np.percentile([0.5, 1, 1, 1], 5))
    assert summary["p5"] < 0.6 and compared["agreement"] == 1.0 and iou_summary(np.zeros(0)) == {"mean": None, "p5": None}


def labelled_images(tmp_path, n: int) -> list[Label]:
    """``n`` blank SIZE x SIZE images on disk, each labelled with CLEAR's box as a class-0 square."""
    x1, y1, x2, y2 = (CLEAR[0] - 8) / SIZE, (CLEAR[1] - 8) / SIZE, (CLEAR[0] + 8) / SIZE, (CLEAR[1] + 8) / SIZE
    labels = []
    for i in range(n):
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), blank_images(1)[0])
        square = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)
        labels.append(Label(str(path), (SIZE, SIZE), np.array([0]), [square], np.array([[0.3125, 0.3125, 0.25, 0.25]], np.float32)))
    return labels


def test_map_drop_is_judged_when_labels_are_given(tmp_path, few_detections_suffice):
    labels = labelled_images(tmp_path, 2)
    reference = fixed([CLEAR], [CLEAR])
    same = verify(reference, fixed([CLEAR], [CLEAR]), blank_images(2), "fp32", labels=labels)
    assert same["passed"] and same["map"]["images"] == 2 and same["map"]["delta"] == {"box": 0.0, "mask": 0.0}
    assert same["map"]["reference"]["box"] == pytest.approx(1.0) and same["map"]["reference"]["mask"] > 0.5
    lost = verify(reference, fixed([CLEAR], [(*CLEAR[:5], 0.0005)]), blank_images(2), "int8", labels=labels)
    assert lost["map"]["delta"]["box"] == pytest.approx(51 / 101 - 1)  # recall 0.5 at precision 1, then nothing
    assert "box mAP drop 0.495 > 0.03 (mAP50-95 1.000 → 0.505 on 2 labelled images)" in lost["failures"]
    assert any(failure.startswith("mask mAP drop") for failure in lost["failures"])
    assert verify(reference, fixed([CLEAR], [CLEAR]), blank_images(2), "fp32")["map"] is None
    other_images = [np.zeros((SIZE, SIZE, 3), np.uint8)] * 2
    with pytest.raises(ValueError, match="labels out of step with images"):
        verify(reference, fixed([CLEAR], [CLEAR]), other_images, "fp32", labels=labels)


def test_report_is_json_and_its_table_names_every_check(few_detections_suffice):
    report = verify(fixed([CLEAR, EDGE]), fixed([(23, *CLEAR[1:]), EDGE]), blank_images(1), "fp32")
    assert json.loads(json.dumps(report)) == report
    table = format_report(report)
    assert table.startswith("verification (fp32, 1 images at 64x64, conf 0.25): FAILED")
    for check in ("agreement", "box IoU mean", "box IoU p5", "mask IoU mean", "mask IoU p5", "box mAP drop", "mask mAP drop", "finite outputs"):
        assert f"  {check} " in table
    assert "box IoU p5" in table and "FAIL" in table and "not judged: max |diff|" in table


def test_non_finite_outputs_fail(few_detections_suffice):
    broken = FixedBackend([anchors(CLEAR, EDGE)])
    broken.preds[0, 6, 0] = np.nan
    report = verify(fixed([CLEAR, EDGE]), Runtime(broken), blank_images(1), "int8")
    assert not report["finite"] and "the artifact's outputs are not finite (NaN or inf)" in report["failures"]


def test_verification_set_takes_labels_from_the_val_split(tmp_path):
    yaml_path = synthesize(tmp_path / "synth", 1, 3, progress=False)
    found = verification_set(str(yaml_path), None)
    assert len(found.images) == 3 and len(found.labels) == 3 and found.source == f"3 val images of {yaml_path}"
    assert [label.im_file for label in found.labels] == sorted(label.im_file for label in found.labels)
    trained_on = verification_set(None, {"train_args": {"data": str(yaml_path)}})
    assert trained_on.source == found.source
    for label_file in (tmp_path / "synth" / "labels" / "val").glob("*.txt"):
        label_file.unlink()
    unlabelled = verification_set(str(yaml_path), None)
    assert unlabelled.labels is None and unlabelled.source.endswith("(no labels)")
    synthetic = verification_set(None, {"train_args": {"data": str(tmp_path / "gone.yaml")}})
    assert synthetic.labels is None and synthetic.source == "8 synthetic images"


# --------------------------------------------------------------------------------------
# End to end: a real export, and real drift
# --------------------------------------------------------------------------------------

IMGSZ = 160


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The train-free yolo11n-seg of tests/helpers.py, calibrated on verification's synthetic images."""
    return helpers.calibrated_model(verification_set(None, None).images, IMGSZ).save(tmp_path_factory.mktemp("ckpt") / "m.pt")


@pytest.fixture(scope="module")
def exact(checkpoint):
    """Its plain fp32 ONNX export, verified."""
    return export(checkpoint)


class AlteredInput:
    """A backend whose input goes through ``alter`` first: an artifact preprocessed differently."""

    def __init__(self, backend, alter):
        self._backend, self._alter = backend, alter

    def infer(self, batch):
        return self._backend.infer(self._alter(batch))

    def __getattr__(self, name):
        return getattr(self._backend, name)


def black_padding(batch: np.ndarray) -> np.ndarray:
    """The batch with its letterbox padding (rows and columns all 114/255) set to 0."""
    pad = np.all(batch == np.float32(PAD_VALUE) / np.float32(255), axis=1)  # (B, H, W)
    rows, cols = pad.all(2, keepdims=True), pad.all(1, keepdims=True)
    return np.where((rows | cols)[:, None], np.float32(0), batch)


@pytest.mark.slow
def test_an_exact_fp32_export_passes(exact):
    report = exact.report
    assert report["passed"] and report["failures"] == [] and report["agreement"] == 1.0
    assert report["detections"]["matched"] >= 50 and report["map"] is None
    assert report["box_iou"]["p5"] > 0.999 and report["mask_iou"]["p5"] > 0.99
    assert all(check["passed"] for check in report["checks"])


@pytest.mark.slow
def test_a_conv_scaled_by_1_5_is_refused(checkpoint, tmp_path, monkeypatch):
    """model.5 (the P4/16 downsampling conv) traced with its weights x1.5: a weight drift in the exporter."""
    trace = onnx_target.trace

    def scaled(job):
        job.net.model[5].conv.weight.data *= 1.5
        return trace(job)

    monkeypatch.setattr(onnx_target, "trace", scaled)
    with pytest.raises(EdgesegError, match=r"export failed verification: detection agreement \d+\.\d% < 98%") as failed:
        export(checkpoint, out=tmp_path / "scaled.onnx")
    assert "box IoU" in str(failed.value) or "mask IoU" in str(failed.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_an_artifact_fed_black_padding_is_refused(checkpoint, exact):
    images = verification_set(None, None).images
    drifted = Runtime(AlteredInput(load(exact.path).backend, black_padding))
    report = verify(load(checkpoint), drifted, images, "fp32")
    assert not report["passed"] and report["failures"][0].startswith("detection agreement")
    assert report["max_abs_diff"]["preds"] > 1e-2


def test_a_model_scoring_every_anchor_alike_keeps_its_detections():
    """A train-free model can give every anchor one score: the lowered threshold lies just below it, not on it."""
    same = [(4 + 8 * (i % 8), 4 + 8 * (i // 8), 6, 6, i % 2, 0.0025) for i in range(60)]  # 60 > TOP_K, none overlapping
    report = verify(fixed(same), fixed(same), blank_images(1), "fp32")
    assert report["conf_lowered"] and report["conf"] == pytest.approx(0.0025) and report["conf"] < np.float32(0.0025)
    assert report["detections"]["reference"] == 60 and report["detections"]["matched"] == 60 and report["passed"]
