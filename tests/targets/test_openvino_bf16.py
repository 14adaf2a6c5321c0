"""bf16 on OpenVINO: ``export --precision bf16``, ``precision="bf16"`` at load and ``--half``, judged on the shipped trained model.

The shipped weights (weights/yolo11n-seg-synth320.pt, trained 35 epochs: mask mAP50-95 ~0.5) are
the model: bf16 is a precision for trained models, and on them it must keep the detections and
the mAP. Where the CPU has no native bf16 (OpenVINO lists no BF16 capability), everything bf16
is refused with one line; that is checked everywhere by making the CPU look so.
"""

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

ov = pytest.importorskip("openvino", reason="the OpenVINO target needs edgeseg[openvino]")

from edgeseg.cli import main  # noqa: E402
from edgeseg.data.synth import synthesize  # noqa: E402
from edgeseg.runtimes import load  # noqa: E402
from edgeseg.runtimes.backends import openvino as openvino_backend  # noqa: E402
from edgeseg.runtimes.errors import EdgesegError  # noqa: E402
from edgeseg.runtimes.io.images import read_image  # noqa: E402
from edgeseg.targets import export  # noqa: E402
from edgeseg.targets.verify import verify  # noqa: E402

SHIPPED = Path(__file__).parents[2] / "weights" / "yolo11n-seg-synth320.pt"
IMGSZ = 320
NATIVE = openvino_backend.cpu_bf16(openvino_backend.shared_core())
needs_bf16 = pytest.mark.skipif(not NATIVE, reason="this CPU has no native bf16 (OpenVINO lists no BF16 capability)")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A synthetic set of a seed the shipped model never saw: 16 labelled val images."""
    return synthesize(tmp_path_factory.mktemp("synth"), n_train=2, n_val=16, seed=0, progress=False)


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory) -> Path:
    """The shipped model as an fp32 ONNX file at 320."""
    return export(SHIPPED, imgsz=IMGSZ, verify=False, out=tmp_path_factory.mktemp("onnx")).path


@pytest.fixture(scope="module")
def bf16_ir(tmp_path_factory, data) -> Path:
    """``edgeseg export <shipped> --target openvino --precision bf16``, verified against the .pt on ``data``."""
    if not NATIVE:
        pytest.skip("this CPU has no native bf16 (OpenVINO lists no BF16 capability)")
    out = tmp_path_factory.mktemp("bf16")
    done = CliRunner().invoke(
        main, ["export", str(SHIPPED), "--target", "openvino", "--precision", "bf16", "--imgsz", str(IMGSZ), "--data", str(data), "--out", str(out)]
    )
    assert done.exit_code == 0, done.output
    assert "verified" in done.output and "not verified" not in done.output
    return out / "yolo11n-seg-synth320-bf16_openvino_model"


def maps(runtime, data) -> tuple[float, float]:
    """(box, mask) mAP50-95 of ``runtime`` on ``data``'s val split."""
    metrics = runtime.val(data, progress=False)
    return metrics.box.map, metrics.seg.map


def hint(runtime) -> str:
    """The precision OpenVINO computes ``runtime`` in (``f32``, ``bf16``)."""
    return runtime.backend.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()


@needs_bf16
def test_bf16_export_is_an_fp32_ir_computed_in_bf16_with_the_pt_map(bf16_ir, data):
    ir = ov.Core().read_model(str(bf16_ir / "yolo11n-seg-synth320-bf16.xml"))
    weights = {op.get_element_type().get_type_name() for op in ir.get_ordered_ops() if op.get_type_name() == "Constant"}
    assert "f32" in weights and not weights & {"bf16", "f16"}  # the weights stay fp32; bf16 is how they are computed
    runtime = load(bf16_ir)
    assert runtime.meta.precision == "bf16" and hint(runtime) == "bf16"
    reference = maps(load(SHIPPED), data)
    assert reference[1] > 0.3  # a model that has learned
    np.testing.assert_allclose(maps(runtime, data), reference, atol=0.01)
    as_fp32 = load(bf16_ir, precision="fp32")  # the same IR, asked for fp32
    assert as_fp32.meta.precision == "fp32" and hint(as_fp32) == "f32"
    image = read_image(next((Path(data).parent / "images" / "val").iterdir()))
    batch = np.zeros((1, 3, IMGSZ, IMGSZ), np.float32) + image.mean() / 255
    assert np.abs(runtime.backend.infer(batch)[0] - as_fp32.backend.infer(batch)[0]).max() > 1e-3  # it does compute in bf16


@needs_bf16
def test_onnx_on_openvino_in_bf16_passes_verification_like_its_export(onnx_file, data):
    runtime = load(onnx_file, engine="openvino", precision="bf16")
    assert runtime.meta.precision == "bf16" and hint(runtime) == "bf16"
    images = [read_image(p) for p in sorted((Path(data).parent / "images" / "val").iterdir())]
    report = verify(load(SHIPPED), runtime, images, "bf16")
    assert report["passed"], report["failures"]
    assert report["agreement"] >= 0.97 and report["detections"]["matched"] >= 50
    assert hint(load(onnx_file, engine="openvino")) == "f32"  # fp32 unless asked


@needs_bf16
def test_a_bf16_ir_runs_in_fp32_with_a_warning_where_the_cpu_has_no_bf16(bf16_ir, monkeypatch, caplog):
    monkeypatch.setattr(openvino_backend, "cpu_bf16", lambda core: False)
    with caplog.at_level(logging.WARNING, logger="edgeseg"):
        runtime = load(bf16_ir)
    assert hint(runtime) == "f32" and runtime.meta.precision == "fp32"  # how it computes
    assert "this CPU has no native bf16" in caplog.text and "running it in fp32" in caplog.text


def test_bf16_is_refused_where_the_cpu_has_none(onnx_file, data, tmp_path, monkeypatch):
    monkeypatch.setattr(openvino_backend, "cpu_bf16", lambda core: False)
    with pytest.raises(EdgesegError, match=r"yolo11n-seg-synth320\.onnx: this CPU has no native bf16") as refused:
        load(onnx_file, engine="openvino", precision="bf16")
    assert "\n" not in str(refused.value)
    with pytest.raises(EdgesegError, match="yolo11n-seg-synth320-bf16_openvino_model: this CPU has no native bf16"):
        export(SHIPPED, target="openvino", precision="bf16", imgsz=IMGSZ, data=str(data), out=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_a_precision_is_refused_by_engines_that_do_not_offer_it(onnx_file):
    with pytest.raises(EdgesegError, match="the onnxruntime engine runs this file in its exported precision; precision 'bf16' is offered by the openvino engine"):
        load(onnx_file, precision="bf16")
    with pytest.raises(EdgesegError, match="engine auto picks among engines with ONNX Runtime's fp32 outputs"):
        load(onnx_file, engine="auto", precision="bf16")
    with pytest.raises(EdgesegError, match=r"unknown precision 'fp16' \(choose from: bf16, fp32\)"):
        load(onnx_file, engine="openvino", precision="fp16")
    with pytest.raises(EdgesegError, match="bf16 runs on OpenVINO's CPU device only, not AUTO"):
        load(onnx_file, engine="openvino", precision="bf16", device="auto")


def test_cli_half(onnx_file, data, tmp_path):
    runner = CliRunner()
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), read_image(next((Path(data).parent / "images" / "val").iterdir())))
    refused = runner.invoke(main, ["predict", str(onnx_file), str(image), "--half", "--no-save"])
    assert refused.exit_code == 1 and "--engine openvino" in refused.output
    if not NATIVE:
        return
    tables = [runner.invoke(main, ["val", str(onnx_file), "--data", str(data), "--engine", "openvino", *half]) for half in ([], ["--half"])]
    assert [t.exit_code for t in tables] == [0, 0], tables[1].output
    rows = [[float(v) for v in next(line for line in t.output.splitlines() if line.split()[:1] == ["all"]).split()[3:]] for t in tables]
    np.testing.assert_allclose(rows[1], rows[0], atol=0.02)  # P, R, mAP50, mAP50-95 of boxes and masks
    done = runner.invoke(main, ["predict", str(onnx_file), str(image), "--engine", "openvino", "--half", "--no-save"])
    assert done.exit_code == 0 and f"{image}: " in done.output
