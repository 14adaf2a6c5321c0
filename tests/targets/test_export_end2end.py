"""End-to-end exports (--end2end): NMS in the graph with standard ops, the same detections as host NMS everywhere."""

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

import edgeseg
from edgeseg.cli import main
from edgeseg.data.synth import CLASS_NAMES
from edgeseg.runtimes import load
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.pipeline.end2end import host_detections
from edgeseg.runtimes.pipeline.preprocess import letterbox, to_input_tensor
from edgeseg.targets import export
from edgeseg.targets.end2end import End2End
from edgeseg.targets.onnx import ExportWrapper
from edgeseg.targets.verify import synthetic_images

import helpers

IMGSZ = 160
NC = len(CLASS_NAMES)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """``m.pt``: the calibrated model's checkpoint."""
    return helpers.export_model(IMGSZ).save(tmp_path_factory.mktemp("e2e") / "m.pt")


@pytest.fixture(scope="module")
def plain(checkpoint):
    """The checkpoint's dynamic ONNX without NMS (host NMS in the runtime)."""
    return export(checkpoint, dynamic=True, out=checkpoint.with_name("plain.onnx"), verify=False).path


@pytest.fixture(scope="module")
def end2end(checkpoint):
    """The checkpoint's dynamic end-to-end ONNX at the default NMS settings, verified."""
    return export(checkpoint, dynamic=True, end2end=True, out=checkpoint.with_name("e2e.onnx"))


def images() -> list[np.ndarray]:
    """Three synthetic images, one of them non-square."""
    return [helpers.non_square_image(), *synthetic_images(2)]


def test_graph_is_standard_onnx_and_outputs_host_nms(plain, end2end):
    model = onnx.load(str(end2end.path))
    ops = {node.op_type for node in model.graph.node}
    assert {"NonMaxSuppression", "TopK", "ScatterND"} <= ops
    assert {node.domain for node in model.graph.node} <= {"", "ai.onnx"}  # no custom op
    assert [o.name for o in model.graph.output] == ["detections", "protos"]
    assert end2end.meta.nms == {"conf": 0.001, "iou": 0.7, "max_det": 300} and end2end.meta.outputs == ["detections", "protos"]
    assert end2end.report["passed"] and end2end.report["agreement"] == 1.0
    assert end2end.report["max_abs_diff"]["preds"] < 1e-3  # detections compared by position, not by near-tied rank
    raw, e2e = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (plain, end2end.path))
    for shape in [(IMGSZ, IMGSZ), (96, 224)]:  # dynamic batch and size
        batch = to_input_tensor([letterbox(im, shape)[0] for im in images()])
        preds, protos = raw.run(None, {"images": batch})
        detections, e2e_protos = e2e.run(None, {"images": batch})
        assert detections.shape == (3, 300, 6 + 32)
        want = host_detections(preds, NC, 0.001, 0.7, 300)
        assert (want[..., 4] > 0).sum() > 50
        np.testing.assert_allclose(detections, want, atol=1e-4)
        np.testing.assert_array_equal(e2e_protos, protos)


def test_eager_module_computes_what_the_graph_does(checkpoint):
    net = edgeseg.Model(checkpoint).fuse().net.eval()
    module = End2End(ExportWrapper(net, half=False), NC, conf=0.2, iou=0.5, max_det=40).eval()
    batch = to_input_tensor([letterbox(im, (IMGSZ, IMGSZ))[0] for im in images()])
    with torch.no_grad():
        detections, _ = module(torch.from_numpy(batch))
        preds, _ = net(torch.from_numpy(batch))
    want = host_detections(preds.numpy(), NC, 0.2, 0.5, 40)
    assert (want[..., 4] > 0).sum() > 10
    np.testing.assert_allclose(detections.numpy(), want, atol=1e-4)


def test_runtime_gives_host_nms_results_in_predict_and_val(checkpoint, plain, end2end, tmp_path):
    host, inside = load(plain), load(end2end.path)
    assert inside.meta.end2end and inside.backend.name == "onnxruntime"
    for conf in (0.25, 0.05):
        for a, b in zip(host.predict(images(), conf=conf, imgsz=IMGSZ), inside.predict(images(), conf=conf, imgsz=IMGSZ)):
            assert len(a) == len(b) > 0
            np.testing.assert_array_equal(a.classes, b.classes)
            np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
            np.testing.assert_array_equal(a.masks, b.masks)
    data = helpers.self_labelled_dataset(tmp_path, checkpoint, 2, 6)
    # the graph's NMS keeps each anchor's best class, so its val equals the host's single-label val
    want = host.val(data, imgsz=IMGSZ, progress=False, multi_label=False).results_dict
    got = inside.val(data, imgsz=IMGSZ, progress=False).results_dict
    assert want["metrics/mAP50-95(M)"] > 0.1
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=0.002), key
    multi = host.val(data, imgsz=IMGSZ, progress=False).results_dict["metrics/mAP50-95(M)"]
    rows = edgeseg.bench(checkpoint, str(data), targets=[str(plain), str(end2end.path)], runs=1, project=tmp_path, name="b")
    assert [r["format"] for r in rows[1:]] == ["onnx", "onnx e2e"]  # the e2e row says NMS is in its graph
    assert rows[1]["mask_map"] == pytest.approx(multi, abs=0.002) and rows[2]["mask_map"] == pytest.approx(got["metrics/mAP50-95(M)"], abs=0.002)


def test_openvino_runs_the_onnx_and_builds_an_end2end_ir(checkpoint, plain, end2end, tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is the openvino extra")
    host = load(plain)
    ir = export(checkpoint, "openvino", end2end=True, out=tmp_path / "m_openvino_model")
    assert ir.report["passed"] and ir.meta.nms == end2end.meta.nms
    for runtime in (load(end2end.path, engine="openvino"), load(ir.path)):
        assert runtime.backend.name == "openvino"
        for a, b in zip(host.predict(images(), imgsz=IMGSZ), runtime.predict(images(), imgsz=IMGSZ)):
            helpers.same_objects(a, b)


def test_settings_are_checked_and_other_targets_refuse(checkpoint, tmp_path, caplog):
    with pytest.raises(EdgesegError, match="iou must be a number from 0 to 1"):
        export(checkpoint, end2end=True, iou=1.5, out=tmp_path / "x.onnx")
    with pytest.raises(EdgesegError, match="max_det 20000 is above the limit"):
        export(checkpoint, end2end=True, max_det=20000, out=tmp_path / "x.onnx")
    with pytest.raises(EdgesegError, match="end2end CoreML"):
        export(checkpoint, "coreml", end2end=True, out=tmp_path)
    with pytest.raises(EdgesegError, match="without NMS in the graph"):
        export(checkpoint, "tflite", end2end=True, out=tmp_path)
    assert list(tmp_path.iterdir()) == []
    small = export(checkpoint, end2end=True, conf=0.3, iou=0.5, max_det=7, out=tmp_path / "s.onnx")
    assert small.meta.nms == {"conf": 0.3, "iou": 0.5, "max_det": 7}
    runtime = load(small.path)
    with caplog.at_level(logging.WARNING, logger="edgeseg"):
        results = runtime.predict(images(), conf=0.1, stream=False)
    assert "reports no score <= 0.3" in caplog.text and "class-aware NMS at 0.5" in caplog.text
    assert all(len(r) <= 7 and (r.scores > 0.3).all() for r in results) and sum(map(len, results)) > 0


def test_cli_export_end2end_then_predict(checkpoint, plain, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli.onnx"
    done = runner.invoke(main, ["export", str(checkpoint), "--end2end", "--conf", "0.1", "--max-det", "50", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert f"exported {out}" in done.output
    assert load(out).meta.nms == {"conf": 0.1, "iou": 0.7, "max_det": 50}
    image = tmp_path / "a.png"
    import cv2

    cv2.imwrite(str(image), helpers.non_square_image())
    done = runner.invoke(main, ["predict", str(out), str(image), "--project", str(tmp_path), "--name", "p", "--save-txt"])
    assert done.exit_code == 0, done.output
    lines = (tmp_path / "p" / "labels" / "a.txt").read_text().splitlines()
    want = next(load(plain).predict(str(image), imgsz=IMGSZ, max_det=50))
    assert len(lines) == len(want) > 0
    bad = runner.invoke(main, ["export", str(checkpoint), "--end2end", "--iou", "2", "--out", str(tmp_path / "b.onnx")])
    assert bad.exit_code != 0 and "iou must be a number from 0 to 1" in bad.output
