"""OpenVINO export and backend: IR folder and rt_info metadata, f32 precision hint, fp32/fp16/int8 accuracy, bad input."""

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

ov = pytest.importorskip("openvino", reason="the OpenVINO target needs edgeseg[openvino]")
pytest.importorskip("nncf", reason="int8 OpenVINO export needs edgeseg[openvino] (nncf)")

import edgeseg  # noqa: E402
from edgeseg.cli import main  # noqa: E402
from edgeseg.data.synth import CLASS_NAMES  # noqa: E402
from edgeseg.runtimes import ModelMeta, load  # noqa: E402
from edgeseg.runtimes.errors import EdgesegError  # noqa: E402
from edgeseg.runtimes.io.images import read_image  # noqa: E402
from edgeseg.runtimes.pipeline.preprocess import letterbox, to_input_tensor  # noqa: E402
from edgeseg.targets import export  # noqa: E402
from edgeseg.targets.common import ExportJob  # noqa: E402
from edgeseg.targets.openvino import calibration_batches  # noqa: E402
from edgeseg.targets.verify import synthetic_images  # noqa: E402

import helpers

IMGSZ = 160
NC = len(CLASS_NAMES)
ANCHORS = sum((IMGSZ // s) ** 2 for s in (8, 16, 32))
TRAINED = Path(__file__).parents[2] / "runs" / "bench" / "train_quality" / "weights" / "best.pt"
TRAINED_DATA = Path(__file__).parents[2] / "datasets" / "synth" / "data.yaml"
VAL = dict(batch=4, max_det=100, progress=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def calibrated_model(gain: float = 0.3) -> "edgeseg.Model":
    """The train-free model (tests/helpers.py) with BatchNorm gains ``gain``.

    Pre-activations of std 0.3 keep SiLU near its linear part, so the random net is not chaotic
    and fp16 weights move its scores by ~3e-3 (gain 1: ~0.13, and int8 noise then wrecks its
    detections, unlike a trained net's).
    """
    return helpers.export_model(IMGSZ, bn_gain=gain)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """``m.pt``: the calibrated model's checkpoint (no training data recorded), alone in its folder."""
    return calibrated_model().save(tmp_path_factory.mktemp("ckpt") / "m.pt")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, checkpoint):
    """``synthesize(tmp, 8, 4)``'s data YAML with the ``.pt`` model's predictions as val labels (non-trivial mAP)."""
    return helpers.self_labelled_dataset(tmp_path_factory.mktemp("synth"), checkpoint, 8, 4)


@pytest.fixture(scope="module")
def pt_map(checkpoint, dataset) -> float:
    """The ``.pt``'s mask mAP50-95 on the pseudo-labelled val split."""
    value = load(checkpoint).val(dataset, **VAL).seg.map
    assert value > 0.2  # the pseudo-labels make it meaningful
    return value


@pytest.fixture(scope="module")
def fp32(checkpoint, dataset):
    """The default fp32 export, verified on the dataset's val images."""
    return export(checkpoint, target="openvino", data=str(dataset))


def torch_outputs(checkpoint, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The checkpoint's fused PyTorch outputs on a (B, 3, H, W) batch."""
    net = edgeseg.Model(checkpoint).fuse().net
    with torch.no_grad():
        preds, protos = net(torch.from_numpy(batch))
    return preds.numpy(), protos.numpy()


def test_fp32_ir_folder_metadata_and_outputs(checkpoint, fp32, dataset, pt_map):
    folder = checkpoint.parent / "m_openvino_model"
    assert fp32.path == folder and sorted(p.name for p in folder.iterdir()) == ["m.bin", "m.xml", "metadata.yaml"]
    assert fp32.report["passed"] and fp32.report["max_abs_diff"]["preds"] <= 1e-3 and fp32.report["agreement"] >= 0.99
    model = ov.Core().read_model(str(folder / "m.xml"))
    assert ModelMeta.from_json(model.get_rt_info(["model_info", "edgeseg"]).astype(str)) == fp32.meta
    assert fp32.meta.precision == "fp32" and fp32.meta.batch == 1
    for path in (folder, folder / "m.xml"):
        runtime = load(path)
        assert runtime.backend.name == "openvino" and runtime.meta == fp32.meta
    batch = to_input_tensor([letterbox(helpers.non_square_image(), (IMGSZ, IMGSZ))[0]])
    preds, protos = runtime.backend.infer(batch)
    ref_preds, ref_protos = torch_outputs(checkpoint, batch)
    assert preds.shape == (1, 4 + NC + 32, ANCHORS) and protos.shape == (1, 32, IMGSZ // 4, IMGSZ // 4)
    np.testing.assert_allclose(preds[:, :4] / IMGSZ, ref_preds[:, :4] / IMGSZ, atol=1e-3)  # boxes: 1e-3 of the input
    np.testing.assert_allclose(preds[:, 4:], ref_preds[:, 4:], atol=1e-3)
    np.testing.assert_allclose(protos, ref_protos, atol=1e-3)
    assert abs(load(folder).val(dataset, **VAL).seg.map - pt_map) <= 0.005


def test_compiled_model_runs_in_f32(fp32):
    """Without the hint this CPU (AVX512-BF16) would run the fp32 IR in bf16."""
    cpu = load(fp32.path).backend
    assert cpu.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    batch = to_input_tensor([letterbox(im, (IMGSZ, IMGSZ))[0] for im in synthetic_images(2)])
    auto = load(fp32.path, device="auto").backend  # the hint is passed on to the CPU plugin: f32 there too
    np.testing.assert_allclose(auto.infer(batch)[0], cpu.infer(batch)[0], atol=1e-5)


def test_fp16_weights_and_map(checkpoint, dataset, fp32, pt_map, tmp_path):
    half = export(checkpoint, target="openvino", precision="fp16", data=str(dataset), out=tmp_path)
    assert half.path == tmp_path / "m-fp16_openvino_model" and half.report["passed"]
    assert half.meta.precision == "fp16" and half.size_mb < 0.6 * fp32.size_mb
    backend = load(half.path).backend
    assert backend.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    assert abs(load(half.path).val(dataset, **VAL).seg.map - pt_map) <= 0.01


def test_int8_is_quantised_from_letterboxed_train_images(checkpoint, dataset, fp32, tmp_path, caplog):
    """Structure and calibration; this random net is too fragile for int8 accuracy (see the trained-model test)."""
    with caplog.at_level(logging.INFO, logger="edgeseg"):
        int8 = export(checkpoint, target="openvino", precision="int8", data=str(dataset), out=tmp_path, verify=False)
    assert "has 8 readable images, fewer than --calib 300; using all of them" in caplog.text
    assert int8.path.name == "m-int8_openvino_model" and int8.meta.precision == "int8"
    assert int8.size_mb < 0.4 * fp32.size_mb
    ops = ov.Core().read_model(str(int8.path / "m-int8.xml")).get_ordered_ops()
    quantised = {op.get_friendly_name() for op in ops if op.get_type_name() == "FakeQuantize"}
    assert len(quantised) > 50
    assert not any("/model.23/dfl/" in name or "cv3.0.2" in name for name in quantised)  # decoding and last convs stay float
    runtime = load(int8.path)
    assert runtime.backend.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    assert len(runtime.predict(helpers.non_square_image(), stream=False)) == 1

    job = ExportJob(None, int8.meta, tmp_path, "int8", (IMGSZ, 128), 2, False, False, str(dataset), 5, "cpu", True, 17)
    with caplog.at_level(logging.INFO, logger="edgeseg"):
        batches = calibration_batches(job)
    assert f"int8 calibration on 5 train images of {dataset}" in caplog.text
    assert [b.shape for b in batches] == [(2, 3, IMGSZ, 128)] * 2  # a partial last batch is dropped
    image = read_image(sorted((dataset.parent / "images" / "train").iterdir())[0])
    np.testing.assert_array_equal(batches[0][:1], to_input_tensor([letterbox(image, (IMGSZ, 128))[0]]))


@pytest.mark.slow
@pytest.mark.skipif(not (TRAINED.is_file() and TRAINED_DATA.is_file()), reason="needs the trained yolo11n-seg of benchmarks/train_quality.py")
def test_int8_of_a_trained_model_keeps_its_map(tmp_path):
    kw = dict(batch=8, progress=False)
    reference = load(TRAINED).val(TRAINED_DATA, **kw).seg.map
    int8 = export(TRAINED, target="openvino", precision="int8", imgsz=320, data=str(TRAINED_DATA), calib=32, out=tmp_path)
    assert int8.report["passed"] and int8.report["mask_iou"]["mean"] >= 0.95
    assert abs(load(int8.path).val(TRAINED_DATA, **kw).seg.map - reference) <= 0.03


def test_bad_input_is_a_one_line_error(checkpoint, fp32, dataset, tmp_path, monkeypatch):
    broken = tmp_path / "broken_openvino_model"
    broken.mkdir()
    (broken / "m.xml").write_bytes((fp32.path / "m.xml").read_bytes())
    with pytest.raises(EdgesegError, match=r"weights file m\.bin is missing"):
        load(broken)

    param = ov.opset13.parameter([1, 3, 32, 32], ov.Type.f32, name="images")
    other = ov.Model([ov.opset13.relu(param)], [param], "other")
    ov.save_model(other, str(tmp_path / "other_openvino_model" / "other.xml"))
    with pytest.raises(EdgesegError, match=r"outputs do not have the YOLO-seg layout"):
        load(tmp_path / "other_openvino_model")

    with pytest.raises(EdgesegError, match=r"unknown OpenVINO device 'tpu'"):
        load(fp32.path, device="tpu")

    with pytest.raises(EdgesegError, match=r"int8 export needs calibration images: give --data"):
        export(checkpoint, target="openvino", precision="int8", out=tmp_path / "x_openvino_model")
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "val").mkdir()
    (empty / "data.yaml").write_text(f"path: {empty}\ntrain: train\nval: val\nnames: [a]\n")
    with pytest.raises(EdgesegError, match=r"int8 calibration: .*"):
        export(checkpoint, target="openvino", precision="int8", data=str(empty / "data.yaml"), out=tmp_path / "y_openvino_model")
    assert not (tmp_path / "x_openvino_model").exists() and not (tmp_path / "y_openvino_model").exists()

    result = CliRunner().invoke(main, ["export", str(checkpoint), "--target", "openvino", "--precision", "int8"])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "install" not in result.output
    assert result.output.startswith("error: int8 export needs calibration images")

    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(EdgesegError, match=r"install edgeseg\[openvino\]"):
        load(fp32.path)
    monkeypatch.delitem(sys.modules, "edgeseg.targets.openvino")
    with pytest.raises(EdgesegError, match=r"'openvino' package: install edgeseg\[openvino\]"):
        export(checkpoint, target="openvino", out=tmp_path / "z_openvino_model")
