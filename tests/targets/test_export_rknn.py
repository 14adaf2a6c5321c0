"""RKNN: export with rknn-toolkit2 (its own venv) verified in its simulator, and the board backend through a stand-in RKNNLite.

The board runtime (rknn-toolkit-lite2) runs only on a Rockchip board, so its backend is tested
against ``FakeRKNNLite``: the documented RKNNLite calls, answered by ONNX Runtime running the ONNX
graph the RKNN model is built from. That checks what the backend does (pixels in, outputs bound
by name, the int8 split head decoded) but not the NPU. The export tests need the converter venv
(``make rknn-venv``; CI runs them with ``make rknn-check``) and are skipped without it.
"""

import dataclasses
import json
import os
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import edgeseg
from edgeseg.cli import main
from edgeseg.runtimes import load
from edgeseg.runtimes.backends.base import PredictUnavailable
from edgeseg.runtimes.backends.folder_meta import META_FILE, write_folder_meta
from edgeseg.runtimes.backends.rknn import MODEL, to_pixels
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.model_meta import ModelMeta
from edgeseg.runtimes.meta.plain_keys import SIDECAR
from edgeseg.runtimes.runtime import Runtime
from edgeseg.targets import export
from edgeseg.targets import rknn as rknn_target
from edgeseg.targets.common import ExportJob
from edgeseg.targets.onnx import converter_graph
from edgeseg.targets.rknn_worker import read_array, write_array
from edgeseg.targets.verify import format_report, verify

import helpers

IMGSZ = 160
TRAINED = Path(__file__).parents[2] / "runs" / "bench" / "train_quality" / "weights" / "best.pt"
TRAINED_DATA = Path(__file__).parents[2] / "datasets" / "synth" / "data.yaml"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def converter_found() -> bool:
    """True when the rknn-toolkit2 venv (or rknn-toolkit2 here) is found."""
    try:
        rknn_target.converter_python()
    except EdgesegError:
        return False
    return True


needs_converter = pytest.mark.skipif(not converter_found(), reason="rknn-toolkit2 venv not found (make rknn-venv)")


@pytest.fixture(scope="module")
def model():
    """The calibrated model (BatchNorm gain 0.3, so that fp16 arithmetic does not derail the random net)."""
    return helpers.export_model(IMGSZ, bn_gain=0.3)


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    """``m.pt`` of ``model``."""
    return model.save(tmp_path_factory.mktemp("rknn") / "m.pt")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, checkpoint):
    """A synthetic data YAML whose val labels are the ``.pt`` model's own predictions."""
    return helpers.self_labelled_dataset(tmp_path_factory.mktemp("synth"), checkpoint, 8, 8)


def job_for(checkpoint, path, precision: str, imgsz: int = IMGSZ, **changes) -> ExportJob:
    """An ExportJob of the checkpoint's fused network at ``imgsz``, as the exporter makes it."""
    net = edgeseg.Model(checkpoint).fuse().net.eval()
    outputs = ["preds", "protos"]
    meta = ModelMeta(names=load(checkpoint).names, imgsz=(imgsz, imgsz), stride=32, nm=32, precision=precision, outputs=outputs)
    job = ExportJob(net, meta, path, precision, (imgsz, imgsz), 1, False, False, None, 8, "cpu", True, 17, "rk3588")
    return dataclasses.replace(job, **changes)


class FakeRKNNLite:
    """RKNNLite's documented calls (0 = success; inference returns a list, or None on failure), run by ONNX Runtime.

    ``model.rknn`` here is the ONNX graph the RKNN model would be built from; inputs are
    (1, H, W, 3) uint8 pixels, scaled by 1/255 as the RKNN model's first layer does.
    """

    NPU_CORE_AUTO, NPU_CORE_0 = 0, 1
    calls: list = []
    fail: str = ""

    def __init__(self, verbose=False):
        self.session = None

    def load_rknn(self, path):
        import onnxruntime as ort

        FakeRKNNLite.calls.append(("load_rknn", os.path.basename(path)))
        if self.fail == "load":
            return -1
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return 0

    def init_runtime(self, target=None, device_id=None, async_mode=False, core_mask=NPU_CORE_AUTO):
        FakeRKNNLite.calls.append(("init_runtime", core_mask))
        return -1 if self.fail == "init" else 0

    def inference(self, inputs, data_type=None, data_format=None, inputs_pass_through=None, get_frame_id=False):
        (pixels,) = inputs
        assert pixels.dtype == np.uint8 and pixels.shape[-1] == 3 and data_format == "nhwc"
        if self.fail == "inference":
            return None
        images = (pixels.transpose(0, 3, 1, 2) / 255).astype(np.float32)
        return self.session.run(None, {"images": images})

    def release(self):
        pass


@pytest.fixture
def fake_lite(monkeypatch):
    """``rknnlite.api.RKNNLite`` importable, as ``FakeRKNNLite``."""
    package, api = types.ModuleType("rknnlite"), types.ModuleType("rknnlite.api")
    api.RKNNLite = FakeRKNNLite
    package.api = api
    monkeypatch.setitem(sys.modules, "rknnlite", package)
    monkeypatch.setitem(sys.modules, "rknnlite.api", api)
    monkeypatch.setattr(FakeRKNNLite, "calls", [])
    monkeypatch.setattr(FakeRKNNLite, "fail", "")
    return FakeRKNNLite


def board_folder(checkpoint, folder, precision: str):
    """A ``*_rknn_model`` folder as the target writes it, with the graph's ONNX standing in for ``model.rknn``."""
    folder.mkdir()
    job = job_for(checkpoint, folder, precision)
    job.meta.outputs = converter_graph(job, folder / MODEL)
    job.meta.extra = {"rknn": {"platform": "rk3588", "toolkit": "2.5.0"}}
    if precision == "int8":
        job.meta.extra.update(reg_max=16, strides=[8, 16, 32])
    write_folder_meta(folder, job.meta)
    return folder


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_board_backend_binds_and_decodes_what_the_pt_finds(checkpoint, tmp_path, fake_lite, precision):
    folder = board_folder(checkpoint, tmp_path / f"m-{precision}_rknn_model", precision)
    runtime = load(folder)
    assert runtime.backend.name == "rknn" and fake_lite.calls == [("load_rknn", MODEL), ("init_runtime", 0)]
    image = helpers.non_square_image()
    helpers.same_objects(next(load(checkpoint).predict(image, imgsz=IMGSZ)), next(runtime.predict(image)))
    assert len(runtime.predict([image] * 3, batch=3, stream=False)) == 3  # one image per call


def test_pixels_are_the_letterboxed_image_itself():
    pixels = np.random.default_rng(0).integers(0, 256, (2, 7, 5, 3), dtype=np.uint8)
    batch = (pixels.transpose(0, 3, 1, 2) / 255).astype(np.float32)
    np.testing.assert_array_equal(to_pixels(batch), pixels)


def meta_names(meta: dict) -> dict[int, str]:
    """``{class id: name}`` of an ``edgeseg.json`` dict."""
    return {int(k): v for k, v in meta["names"].items()}


def test_board_errors_are_one_line(checkpoint, tmp_path, fake_lite, monkeypatch):
    folder = board_folder(checkpoint, tmp_path / "m-fp16_rknn_model", "fp16")
    monkeypatch.setenv("EDGESEG_RKNN_CORES", "0_1")
    load(folder)
    assert fake_lite.calls[-1] == ("init_runtime", 3)
    monkeypatch.setenv("EDGESEG_RKNN_CORES", "3")
    with pytest.raises(EdgesegError, match="EDGESEG_RKNN_CORES='3': expected one of auto, 0, 1, 2"):
        load(folder)
    monkeypatch.delenv("EDGESEG_RKNN_CORES")
    for failure, message in (("load", "rknn-toolkit-lite2 cannot load it"), ("init", "the NPU runtime did not start")):
        monkeypatch.setattr(FakeRKNNLite, "fail", failure)
        with pytest.raises(EdgesegError, match=message):
            load(folder)
    monkeypatch.setattr(FakeRKNNLite, "fail", "inference")
    with pytest.raises(EdgesegError, match="the NPU inference failed"):
        load(folder).predict(helpers.non_square_image(), stream=False)
    monkeypatch.setattr(FakeRKNNLite, "fail", "")
    meta = json.loads((folder / META_FILE).read_text())
    (folder / META_FILE).write_text(json.dumps({**meta, "outputs": ["box_logits", "scores", "coefficients", "protos"]}))
    with pytest.raises(EdgesegError, match="needs strides and reg_max"):
        load(folder)
    (folder / META_FILE).unlink()
    assert load(folder).names == meta_names(meta)  # the plain keys' metadata.yaml beside it still describes the model
    (folder / "metadata.yaml").unlink()
    with pytest.raises(EdgesegError, match=f"no {META_FILE} and no metadata.yaml"):
        load(folder)
    (folder / MODEL).unlink()
    with pytest.raises(EdgesegError, match=f"no {MODEL}"):
        load(folder)


def test_off_the_board_the_metadata_loads_and_predict_is_unavailable(checkpoint, tmp_path, monkeypatch):
    folder = board_folder(checkpoint, tmp_path / "m-int8_rknn_model", "int8")
    monkeypatch.setitem(sys.modules, "rknnlite", None)  # not installed: import raises ModuleNotFoundError
    with pytest.raises(PredictUnavailable, match="RKNN models run on the NPU of rk3588 with rknn-toolkit-lite2"):
        load(folder)


def test_arrays_cross_the_worker_pipe():
    read_end, write_end = os.pipe()
    arrays = [np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.zeros((1, 5, 5, 3), np.uint8)]
    with os.fdopen(write_end, "wb") as out:
        for array in arrays:
            write_array(out, array)
        out.write(b'{"dtype": "<f4", "shape": [4]}\n' + bytes(6))  # cut inside an array
    with os.fdopen(read_end, "rb") as stream:
        for array in arrays:
            got = read_array(stream)
            assert got.dtype == array.dtype and np.array_equal(got, array)
        with pytest.raises(EOFError, match="inside an array"):
            read_array(stream)
        with pytest.raises(EOFError, match="end of stream"):
            read_array(stream)


def test_options_and_platforms_are_checked_before_anything_is_built(checkpoint, tmp_path):
    with pytest.raises(EdgesegError, match="rknn builds for rk3588, rk3576, .*, not 'rk9999'"):
        export(checkpoint, "rknn", precision="fp16", platform="rk9999", out=tmp_path / "a_rknn_model")
    with pytest.raises(EdgesegError, match="only rknn takes --platform"):
        export(checkpoint, "onnx", platform="rk3588", out=tmp_path / "a.onnx")
    with pytest.raises(EdgesegError, match="rv1106 runs int8 models only"):
        export(checkpoint, "rknn", precision="fp16", platform="rv1106", out=tmp_path / "a_rknn_model")
    with pytest.raises(EdgesegError, match="rknn exports fp16, int8, not 'fp32'"):
        export(checkpoint, "rknn", out=tmp_path / "a_rknn_model")
    for options in ({"dynamic": True}, {"end2end": True}, {"batch": 2}):
        with pytest.raises(EdgesegError, match="RKNN export is one fixed-size image per call"):
            export(checkpoint, "rknn", precision="fp16", out=tmp_path / "a_rknn_model", **options)
    assert list(tmp_path.iterdir()) == []


@needs_converter
def test_fp16_export_is_verified_in_the_simulator(checkpoint, dataset, tmp_path):
    artifact = export(checkpoint, "rknn", precision="fp16", data=str(dataset), out=tmp_path / "m-fp16_rknn_model")
    assert sorted(p.name for p in artifact.path.iterdir()) == sorted([MODEL, META_FILE, SIDECAR])
    report = artifact.report
    assert report["backend"] == "rknn-simulator" and report["passed"] and abs(report["map"]["delta"]["mask"]) <= 0.01
    assert "in rknn-toolkit2's simulator: passed" in format_report(report).splitlines()[0]
    meta = json.loads((artifact.path / META_FILE).read_text())
    assert meta["extra"]["rknn"]["platform"] == "rk3588" and meta["extra"]["rknn"]["toolkit"].startswith("2.5")
    assert meta["outputs"] == ["preds", "protos"] and meta["precision"] == "fp16"


@needs_converter
def test_int8_keeps_the_head_split(checkpoint, dataset, tmp_path):
    """Structure only: this random net is too fragile for int8 accuracy (see the trained-checkpoint test)."""
    artifact = export(checkpoint, "rknn", precision="int8", data=str(dataset), calib=8, out=tmp_path / "m-int8_rknn_model", verify=False)
    meta = json.loads((artifact.path / META_FILE).read_text())
    assert meta["outputs"] == ["box_logits", "scores", "coefficients", "protos"]
    assert meta["extra"]["reg_max"] == 16 and meta["extra"]["strides"] == [8, 16, 32]


@needs_converter
@pytest.mark.slow
@pytest.mark.skipif(not (TRAINED.is_file() and TRAINED_DATA.is_file()), reason="needs the trained yolo11n-seg of benchmarks/train_quality.py")
@pytest.mark.parametrize("precision, limit", [("fp16", 0.01), ("int8", 0.03)])
def test_accuracy_on_the_trained_checkpoint(precision, limit, tmp_path):
    """Verification in the simulator passes, and its mask mAP change on the labelled val images stays within ``limit``."""
    artifact = export(TRAINED, "rknn", precision=precision, imgsz=320, data=str(TRAINED_DATA), calib=64, out=tmp_path / "t_rknn_model")
    assert artifact.report["passed"] and abs(artifact.report["map"]["delta"]["mask"]) <= limit


@needs_converter
@pytest.mark.slow
@pytest.mark.skipif(not (TRAINED.is_file() and TRAINED_DATA.is_file()), reason="needs the trained yolo11n-seg of benchmarks/train_quality.py")
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_simulator_finds_what_the_pt_finds_on_non_square_images(precision, tmp_path):
    """Judged as export verification judges fp16 and int8 (RKNN has no fp32, so not box for box)."""
    images = []
    for i, path in enumerate(sorted((TRAINED_DATA.parent / "images" / "val").iterdir())[:32]):
        image = cv2.imread(str(path))
        h, w = image.shape[:2]
        images.append(cv2.resize(image, (w, h * 2 // 3) if i % 2 else (w * 2 // 3, h)))  # wide and tall
    job = job_for(TRAINED, tmp_path / "staged" / "t_rknn_model", precision, imgsz=320, data=str(TRAINED_DATA), calib=64)
    job.path.parent.mkdir()
    rknn_target.build(job)
    try:
        report = verify(load(TRAINED), Runtime(job.verifier), images, precision, (320, 320))
    finally:
        job.verifier.close()
    assert report["passed"] and report["detections"]["matched"] >= 20
    assert job.verifier.worker.wait(timeout=30) == 0


@needs_converter
def test_a_failed_build_quotes_the_toolkit(tmp_path):
    config = {"onnx": str(tmp_path / "missing.onnx"), "out": str(tmp_path / "x.rknn"), "platform": "rk3588", "int8": False, "dataset": None}
    with pytest.raises(EdgesegError, match="RKNN conversion for rk3588 failed: rknn-toolkit2 load_onnx failed"):
        rknn_target.start_worker(rknn_target.converter_python(), config, tmp_path)


@needs_converter
def test_cli_export_for_another_platform(checkpoint, dataset, tmp_path):
    out = tmp_path / "cli-fp16_rknn_model"
    args = ["export", str(checkpoint), "--target", "rknn", "--platform", "rk3566", "--precision", "fp16", "--data", str(dataset)]
    done = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert f"exported {out}" in done.output and "verified" in done.output
    assert json.loads((out / META_FILE).read_text())["extra"]["rknn"]["platform"] == "rk3566"
    done = CliRunner().invoke(main, ["predict", str(out), str(dataset.parent / "images" / "val")])
    assert done.exit_code != 0 and "rknn-toolkit-lite2" in done.output
