"""TFLite export and backend: head splitting, flatbuffer metadata/op list, bad input, and (with the converter) fp32/fp16/int8 artifacts."""

import importlib.util
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeseg.data.synth import CLASS_NAMES
from edgeseg.runtimes import load
from edgeseg.runtimes.backends import tflite_flatbuffer as tflite_backend
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.model_meta import META_KEY, ModelMeta
from edgeseg.runtimes.pipeline.head_decode import join_split_head
from edgeseg.runtimes.pipeline.preprocess import letterbox, to_input_tensor
from edgeseg.targets import export
from edgeseg.targets import tflite as tflite_target
from edgeseg.targets.verify import synthetic_images

import helpers

IMGSZ = 160
HAS_LITERT = importlib.util.find_spec("ai_edge_litert") is not None
TRAINED = Path(__file__).parents[2] / "runs" / "bench" / "train_quality" / "weights" / "best.pt"
TRAINED_DATA = Path(__file__).parents[2] / "datasets" / "synth" / "data.yaml"


def converter_available() -> bool:
    """True when the onnx2tf converter venv (or onnx2tf here) is found."""
    try:
        tflite_target.converter_python()
    except EdgesegError:
        return False
    return True


needs_litert = pytest.mark.skipif(not HAS_LITERT, reason="ai-edge-litert is not installed (edgeseg[tflite])")
needs_converter = pytest.mark.skipif(
    not (HAS_LITERT and converter_available()),
    reason="the onnx2tf converter venv is not installed (edgeseg[tflite-export], see EDGESEG_TFLITE_PYTHON)",
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """``m.pt``: a random yolo11n-seg with real detections (``helpers.export_model``), alone in its folder."""
    return helpers.export_model(IMGSZ).save(tmp_path_factory.mktemp("ckpt") / "m.pt")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, checkpoint):
    """A synthetic data YAML (8 train, 6 val images) whose val labels are the ``.pt`` model's predictions."""
    return helpers.self_labelled_dataset(tmp_path_factory.mktemp("synth"), checkpoint, 8, 6)


# --------------------------------------------------------------------------------------
# Without the converter
# --------------------------------------------------------------------------------------


def test_split_head_rejoins_to_the_network_outputs():
    net = helpers.export_model(IMGSZ).net.fuse().eval()
    batch = torch.from_numpy(to_input_tensor([letterbox(im, (IMGSZ, 192))[0] for im in synthetic_images(2)]))
    with torch.no_grad():
        preds, protos = net(batch)
        net.head.split = True
        box_logits, scores, coefficients, split_protos = net(batch)
    assert box_logits.shape[1] == 4 * net.head.reg_max
    strides = [int(s) for s in net.head.stride]
    joined = join_split_head(box_logits.numpy(), scores.numpy(), coefficients.numpy(), (IMGSZ, 192), strides)
    np.testing.assert_allclose(joined, preds.numpy(), rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(split_protos.numpy(), protos.numpy())


@needs_litert
def test_metadata_and_operator_list_on_a_tiny_flatbuffer():
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT()
    model.version, model.buffers = 3, [schema.BufferT()]
    codes = [schema.OperatorCodeT(), schema.OperatorCodeT()]
    codes[0].builtinCode = codes[0].deprecatedBuiltinCode = 3
    codes[1].builtinCode, codes[1].customCode = 32, "FlexSplitV"
    model.operatorCodes = codes
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    data = bytes(builder.Output())
    assert tflite_backend.read_metadata(data) == {}
    meta = ModelMeta(names={0: "a"}, imgsz=(64, 96), layout="NHWC")
    once = tflite_target.embed_metadata(data, META_KEY, meta.to_json().encode())
    twice = tflite_target.embed_metadata(once, META_KEY, b'{"names": {}, "imgsz": 32}')
    assert ModelMeta.from_json(tflite_backend.read_metadata(once)[META_KEY]) == meta
    assert list(tflite_backend.read_metadata(twice)) == [META_KEY]
    assert tflite_backend.operator_names(twice) == ["builtin:3", "FlexSplitV"]
    with pytest.raises(ValueError, match="TFL3"):
        tflite_backend.read_metadata(b"not a flatbuffer")


def test_a_corrupt_tflite_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(EdgesegError, match=r"bad.tflite: not a TFLite model \(no TFL3") as info:
        load(bad)
    assert "\n" not in str(info.value)


def test_int8_without_data_and_a_missing_converter_are_one_line_errors(checkpoint, tmp_path, monkeypatch):
    with pytest.raises(EdgesegError, match=r"^int8 export needs calibration images: give --data"):
        export(checkpoint, target="tflite", precision="int8", out=tmp_path)
    monkeypatch.setenv(tflite_target.PYTHON_ENV, str(tmp_path / "nowhere" / "python"))
    with pytest.raises(EdgesegError, match=r"EDGESEG_TFLITE_PYTHON=.*nowhere/python: no such python"):
        export(checkpoint, target="tflite", out=tmp_path)
    monkeypatch.delenv(tflite_target.PYTHON_ENV)
    monkeypatch.setattr(tflite_target, "VENV", ".no-such-venv")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EdgesegError, match=r"needs the onnx2tf converter: install edgeseg\[tflite-export\]"):
        export(checkpoint, target="tflite", out=tmp_path)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# With the converter (onnx2tf venv) and ai-edge-litert
# --------------------------------------------------------------------------------------


def check_artifact(artifact, precision: str) -> None:
    """No Flex op, NHWC input, the embedded ModelMeta read back by the backend."""
    data = artifact.path.read_bytes()
    assert not [op for op in tflite_backend.operator_names(data) if op.startswith("Flex")]
    runtime = load(artifact.path)
    assert runtime.backend.name == "litert" and list(runtime.backend.input["shape"]) == [1, IMGSZ, IMGSZ, 3]
    meta = ModelMeta.from_json(tflite_backend.read_metadata(data)[META_KEY])
    assert meta == artifact.meta and meta.precision == precision and meta.layout == "NHWC"


@needs_converter
@pytest.mark.slow
def test_fp32(checkpoint, dataset, tmp_path):
    reference = helpers.mask_map(load(checkpoint), dataset)
    fp32 = export(checkpoint, target="tflite", out=tmp_path)
    assert fp32.path.name == "m.tflite" and fp32.report["passed"]
    assert max(fp32.report["max_abs_diff"]["preds"], fp32.report["max_abs_diff"]["protos"]) <= 1e-3
    check_artifact(fp32, "fp32")
    assert fp32.meta.outputs == ["preds", "protos"]
    assert abs(helpers.mask_map(load(fp32.path), dataset) - reference) <= 0.005
    # Boxes leave the interpreter in 0-1 of the input (as TFLite consumers expect) and the runtime scales them back.
    backend = load(fp32.path).backend
    assert fp32.meta.extra["boxes"] == "normalized"
    batch = to_input_tensor([letterbox(helpers.non_square_image(), (IMGSZ, IMGSZ))[0]])
    preds, _ = backend.infer(batch)
    raw = backend.interpreter.get_tensor(backend.outputs["preds"]["index"])
    raw = raw if raw.shape[1] == preds.shape[1] else raw.transpose(0, 2, 1)
    np.testing.assert_allclose(raw[:, :4] * IMGSZ, preds[:, :4], rtol=1e-6)
    np.testing.assert_array_equal(raw[:, 4:], preds[:, 4:])
    # The plain keys, where Ultralytics' LiteRT backend reads them: a zip with metadata.json after the flatbuffer.
    with zipfile.ZipFile(fp32.path) as archive:
        assert archive.namelist() == ["metadata.json"]
        plain = json.loads(archive.read("metadata.json"))
    assert plain["names"] == {str(i): n for i, n in enumerate(CLASS_NAMES)} and plain["imgsz"] == [IMGSZ, IMGSZ]
    assert (plain["task"], plain["stride"], plain["channels"], plain["end2end"]) == ("segment", 32, 3, False)


@needs_converter
@pytest.mark.slow
def test_fp16_structure(checkpoint, tmp_path):
    """Half weights, float32 I/O; accuracy is checked on the trained checkpoint (test_fp16_and_int8_accuracy_on_the_trained_checkpoint).

    verify=False: half weights move this untrained net's scores by ~0.1 (mask ΔmAP 0.021), as in
    test_export_onnx's fp16 test.
    """
    fp32_mb = export(checkpoint, target="tflite", out=tmp_path, verify=False).size_mb
    fp16 = export(checkpoint, target="tflite", precision="fp16", out=tmp_path, verify=False)
    check_artifact(fp16, "fp16")
    backend = load(fp16.path).backend
    assert backend.input["dtype"] == np.float32 and all(o["dtype"] == np.float32 for o in backend.outputs.values())
    assert fp16.size_mb < 0.6 * fp32_mb


@needs_converter
@pytest.mark.slow
def test_int8_split_head(checkpoint, dataset, tmp_path):
    int8 = export(checkpoint, target="tflite", precision="int8", data=str(dataset), calib=8, out=tmp_path, verify=False)
    assert int8.path.name == "m-int8.tflite"
    check_artifact(int8, "int8")
    backend = load(int8.path).backend
    assert int8.meta.outputs == ["box_logits", "scores", "coefficients", "protos"]
    assert int8.meta.extra["reg_max"] == 16 and int8.meta.extra["strides"] == [8, 16, 32]
    assert backend.input["dtype"] == np.int8 and all(o["dtype"] == np.int8 for o in backend.outputs.values())
    scales = {name: o["quantization"][0] for name, o in backend.outputs.items()}
    assert scales["scores"] <= 1 / 255 < scales["box_logits"]  # each part its own scale
    preds, protos = backend.infer(to_input_tensor([letterbox(synthetic_images(1)[0], (IMGSZ, IMGSZ))[0]]))
    assert preds.shape == (1, 4 + len(CLASS_NAMES) + 32, sum((IMGSZ // s) ** 2 for s in (8, 16, 32))) and protos.shape == (1, 32, IMGSZ // 4, IMGSZ // 4)


@needs_converter
@pytest.mark.slow
@pytest.mark.skipif(not (TRAINED.is_file() and TRAINED_DATA.is_file()), reason="needs the trained yolo11n-seg of benchmarks/train_quality.py")
@pytest.mark.parametrize("precision, limit", [("fp16", 0.01), ("int8", 0.03)])
def test_fp16_and_int8_accuracy_on_the_trained_checkpoint(precision, limit, tmp_path):
    """Verification passes and the mask mAP on the val split stays within ``limit`` of the ``.pt``.

    On a random net both are too fragile to say anything (scores a hair from the threshold).
    """
    artifact = export(TRAINED, target="tflite", precision=precision, imgsz=320, data=str(TRAINED_DATA), calib=32, out=tmp_path)
    assert artifact.report["passed"]
    assert abs(helpers.mask_map(load(artifact.path), TRAINED_DATA) - helpers.mask_map(load(TRAINED), TRAINED_DATA)) <= limit
