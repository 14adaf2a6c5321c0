"""YOLO26 end to end: the one-to-one branch with top-k (no NMS), on a .pt, in an exported graph, or raw with top-k on the host.

The model is the genuine Ultralytics 8.4.190 YOLO26-seg fixture (tests/fixtures/ultralytics), so
the end-to-end graph can also be held against Ultralytics' own end-to-end export of it.
"""

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

import edgeseg
from edgeseg.cli import main
from edgeseg.runtimes import load
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.targets import export

import helpers

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ultralytics"
YOLO26 = FIXTURES / "yolo26-seg-tiny-u8.4.190.pt"
ULTRALYTICS_END2END = FIXTURES / "yolo26-seg-tiny-u8.4.190-end2end.onnx"  # Ultralytics' export(nms=False), 128x160
IMGSZ = (128, 160)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def images() -> list[np.ndarray]:
    """Three BGR images of other sizes than the input, one of them non-square."""
    return [helpers.non_square_image(), *(helpers.sample(3, i, 200, 160) for i in range(2))]


def write_images(folder: Path) -> None:
    """``images()`` as ``0.png``, ``1.png``, ``2.png`` in a new ``folder``."""
    folder.mkdir()
    for i, image in enumerate(images()):
        cv2.imwrite(str(folder / f"{i}.png"), image)


@pytest.fixture(scope="module")
def expected():
    """``Model.predict(end2end=True)`` on ``images()`` at conf 0.01: the one-to-one branch, top-k on the host."""
    return edgeseg.Model(YOLO26).predict(images(), conf=0.01, imgsz=IMGSZ, end2end=True, stream=False)


def same_results(ours, theirs) -> None:
    """The same detections in the same order: classes, boxes within 1e-2 px, scores within 1e-4, masks."""
    assert [len(r) for r in ours] == [len(r) for r in theirs] and sum(map(len, ours)) >= 10
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a.classes, b.classes)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
        assert (a.masks ^ b.masks).mean() < 1e-3


def test_onnx_end2end_graph_is_top_k_and_equals_ultralytics_end2end_export(tmp_path, expected):
    artifact = export(YOLO26, end2end=True, imgsz=IMGSZ, out=tmp_path / "e2e.onnx")
    assert (artifact.meta.selection, artifact.meta.topk, artifact.meta.nms) == ("topk", 300, {})
    assert artifact.report["passed"] and artifact.report["max_abs_diff"]["boxes"] < 1e-4
    model = onnx.load(str(artifact.path))
    ops = {node.op_type for node in model.graph.node}
    assert "TopK" in ops and "NonMaxSuppression" not in ops
    assert [o.name for o in model.graph.output] == ["detections", "protos"]
    batch = np.random.RandomState(0).uniform(0, 1, (1, 3, *IMGSZ)).astype(np.float32)
    ours = ort.InferenceSession(str(artifact.path)).run(None, {"images": batch})[0]
    session = ort.InferenceSession(str(ULTRALYTICS_END2END))
    theirs = session.run(None, {session.get_inputs()[0].name: batch})[0]
    assert ours.shape == theirs.shape == (1, 300, 6 + 32)
    top = slice(0, 100)  # the best 100 rows: far from ties between near-zero scores
    np.testing.assert_array_equal(ours[0, top, 5], theirs[0, top, 5])
    np.testing.assert_allclose(ours[0, top, 4], theirs[0, top, 4], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours[0, top, :4], theirs[0, top, :4], atol=1e-2)
    np.testing.assert_allclose(ours[0, top, 6:], theirs[0, top, 6:], atol=1e-3)
    same_results(load(artifact.path).predict(images(), conf=0.01, stream=False), expected)


def test_openvino_end2end_graph_predicts_as_the_pt(tmp_path):
    artifact = export(YOLO26, "openvino", end2end=True, imgsz=IMGSZ, max_det=100, out=tmp_path)
    assert (artifact.meta.selection, artifact.meta.topk, artifact.report["passed"]) == ("topk", 100, True)
    one2one = edgeseg.Model(YOLO26).predict(images(), conf=0.01, imgsz=IMGSZ, max_det=100, end2end=True, stream=False)
    same_results(load(artifact.path).predict(images(), conf=0.01, max_det=100, stream=False), one2one)


@pytest.mark.skipif(importlib.util.find_spec("pnnx") is None, reason="needs pnnx (edgeseg[ncnn-export])")
def test_a_target_without_end2end_graphs_keeps_the_raw_one_to_one_outputs(tmp_path, expected):
    """NCNN builds no top-k graph: the artifact is the one-to-one branch's raw outputs, and the runtime does the top-k."""
    artifact = export(YOLO26, "ncnn", end2end=True, imgsz=IMGSZ, out=tmp_path)
    assert (artifact.meta.selection, artifact.meta.topk, artifact.meta.outputs[0], artifact.report["passed"]) == ("topk", 0, "preds", True)
    runtime = load(artifact.path)
    assert runtime.meta.selection == "topk"
    same_results(runtime.predict(images(), conf=0.01, stream=False), expected)


def test_cli_end2end_on_the_pt(tmp_path, expected):
    write_images(tmp_path / "in")
    runner = CliRunner()
    args = ["predict", str(YOLO26), str(tmp_path / "in"), "--conf", "0.01", "--imgsz", "160", "--project", str(tmp_path), "--exist-ok"]
    done = runner.invoke(main, [*args, "--end2end", "--name", "e2e", "--save-txt"])
    assert done.exit_code == 0, done.output
    plain = runner.invoke(main, [*args, "--name", "plain", "--save-txt"])
    assert plain.exit_code == 0, plain.output
    one2one = edgeseg.Model(YOLO26).predict(str(tmp_path / "in"), conf=0.01, imgsz=160, end2end=True, stream=False)
    for result in one2one:
        lines = (tmp_path / "e2e" / "labels" / f"{Path(result.path).stem}.txt").read_text().splitlines()
        assert len(lines) == len(result) and [int(line.split()[0]) for line in lines] == result.classes.tolist()
    differs = [
        (tmp_path / "e2e" / "labels" / f"{i}.txt").read_text() != (tmp_path / "plain" / "labels" / f"{i}.txt").read_text() for i in range(3)
    ]
    assert any(differs)


def test_end2end_needs_a_one_to_one_branch(tmp_path):
    runner = CliRunner()
    yolo11 = FIXTURES / "yolo11-seg-tiny-u8.4.190.pt"
    done = runner.invoke(main, ["val", str(yolo11), "--data", "unused.yaml", "--end2end"])
    assert done.exit_code == 1 and "has no one2one branch (it has: one2many); only YOLO26 heads" in done.output
    with pytest.raises(EdgesegError, match="runs the branch it was exported with \\(one2many\\)"):
        load(FIXTURES / "yolo26-seg-tiny-u8.4.190.onnx").select_branch("one2one")
    assert load(ULTRALYTICS_END2END).select_branch("one2one").meta.selection == "topk"  # already on it


def test_cli_val_end2end_is_the_one_to_one_branch(tmp_path):
    from edgeseg.data.synth import synthesize

    data = synthesize(tmp_path / "synth", n_train=1, n_val=4, seed=1, progress=False)
    model = edgeseg.Model(YOLO26)
    one2one, one2many = (model.val(str(data), imgsz=128, end2end=flag, progress=False) for flag in (True, False))
    assert one2one.seg.map != one2many.seg.map or one2one.box.map != one2many.box.map
    done = CliRunner().invoke(main, ["val", str(YOLO26), "--data", str(data), "--imgsz", "128", "--end2end"])
    assert done.exit_code == 0, done.output
    assert one2one.table(model.names) in done.output


def test_cli_track_end2end_tracks_the_one_to_one_detections(tmp_path):
    write_images(tmp_path / "in")
    tracker = tmp_path / "low.yaml"  # the barely trained fixture's one-to-one scores stay under 0.05: start tracks from 0.015
    tracker.write_text("high_score: 0.015\nlow_score: 0.01\nnew_track_score: 0.015\n")
    args = ["track", str(YOLO26), str(tmp_path / "in"), "--conf", "0.01", "--imgsz", "160", "--end2end", "--save-txt", "--tracker", str(tracker)]
    done = CliRunner().invoke(main, [*args, "--project", str(tmp_path), "--name", "t", "--exist-ok"])
    assert done.exit_code == 0, done.output
    from edgeseg.runtimes.tracking import TrackerSettings

    settings = TrackerSettings.from_yaml(tracker)
    tracked = edgeseg.Model(YOLO26).track(str(tmp_path / "in"), tracker=settings, conf=0.01, imgsz=160, end2end=True, stream=False)
    assert sum(len(r) for r in tracked) > 0
    for result in tracked:
        lines = (tmp_path / "t" / "labels" / f"{Path(result.path).stem}.txt").read_text().splitlines()
        assert [int(line.split()[-1]) for line in lines] == result.track_ids.tolist()
