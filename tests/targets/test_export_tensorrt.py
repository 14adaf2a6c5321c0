"""TensorRT: what can be checked without TensorRT (ONNX preparation, calibration batches and cache, engine header).

TensorRT cannot be installed on edgeseg's test machines (docs/ARCHITECTURE.md): building and running an
engine is skipped with that reason; the missing-TensorRT messages are checked instead.
"""

import copy
import dataclasses
import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnxruntime = pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402

import edgeseg  # noqa: E402
from edgeseg.cli import main  # noqa: E402
from edgeseg.data.synth import CLASS_NAMES, synthesize  # noqa: E402
from edgeseg.runtimes import ModelMeta, load  # noqa: E402
from edgeseg.runtimes.backends.tensorrt_file import HEADER, read_engine, write_engine  # noqa: E402
from edgeseg.runtimes.errors import EdgesegError  # noqa: E402
from edgeseg.runtimes.io.data_config import img_paths, load_data_config  # noqa: E402
from edgeseg.runtimes.io.images import read_image  # noqa: E402
from edgeseg.runtimes.pipeline.preprocess import letterbox, to_input_tensor  # noqa: E402
from edgeseg.targets import export  # noqa: E402
from edgeseg.targets.common import (
    ExportJob,  # noqa: E402
    calibration_set,  # noqa: E402
)
from edgeseg.targets.tensorrt import (  # noqa: E402
    NOT_INSTALLED,  # noqa: E402
    CalibrationBatches,
    cache_key,
    prepare_onnx,
)

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
NO_TENSORRT = "TensorRT is not installed here (it cannot be: docs/ARCHITECTURE.md); engine building is unverified"
IMGSZ = (160, 224)
NC = len(CLASS_NAMES)
ANCHORS = sum((IMGSZ[0] // s) * (IMGSZ[1] // s) for s in (8, 16, 32))
META = ModelMeta(names=dict(enumerate(CLASS_NAMES)), imgsz=IMGSZ, batch=0, precision="int8", source_hash="abc123")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    """A random yolo11n-seg with the synthetic classes."""
    torch.manual_seed(0)
    return edgeseg.Model("yolo11n-seg.yaml", names=list(CLASS_NAMES))


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory):
    """A synthetic dataset with 5 train images."""
    return synthesize(tmp_path_factory.mktemp("synth"), 5, 2, progress=False)


def job(model, dynamic: bool, batch: int, opset: int = 17) -> ExportJob:
    """An ExportJob for ``prepare_onnx`` (the path is not written)."""
    net = copy.deepcopy(model.net).fuse().eval()
    return ExportJob(net, META, Path("x.engine"), "fp16", IMGSZ, 0 if dynamic else batch, dynamic, False, None, 8, "cpu", True, opset)


def dims(value_info) -> list:
    """A graph input/output's shape: ints for fixed dims, names for dynamic ones."""
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


# ONNX for TensorRT
# --------------------------------------------------------------------------------------


def test_prepared_onnx_static_and_dynamic_batch(model):
    static = prepare_onnx(job(model, dynamic=False, batch=2, opset=18))
    assert [dims(i) for i in static.graph.input] == [[2, 3, *IMGSZ]]
    assert [o.name for o in static.graph.output] == ["preds", "protos"]
    assert [dims(o) for o in static.graph.output] == [[2, 4 + NC + 32, ANCHORS], [2, 32, IMGSZ[0] // 4, IMGSZ[1] // 4]]
    assert {o.domain: o.version for o in static.opset_import}[""] == 18

    dynamic = prepare_onnx(job(model, dynamic=True, batch=1))
    assert dims(dynamic.graph.input[0]) == ["batch", 3, *IMGSZ]  # only the batch is free: one profile covers it
    assert {o.domain: o.version for o in dynamic.opset_import}[""] == 17
    session = onnxruntime.InferenceSession(dynamic.SerializeToString())
    batch = np.random.default_rng(0).random((3, 3, *IMGSZ), dtype=np.float32)
    preds, protos = session.run(["preds", "protos"], {"images": batch})
    with torch.no_grad():
        ref_preds, ref_protos = model.net.eval()(torch.from_numpy(batch))
    assert preds.shape == (3, 4 + NC + 32, ANCHORS) and protos.shape == (3, 32, IMGSZ[0] // 4, IMGSZ[1] // 4)
    np.testing.assert_allclose(preds, ref_preds.numpy(), atol=1e-3 * float(ref_preds.abs().max()))
    np.testing.assert_allclose(protos, ref_protos.numpy(), atol=1e-3 * float(ref_protos.abs().max()))


# Calibration
# --------------------------------------------------------------------------------------


def test_calibration_batches_are_the_runtime_letterbox(data_yaml, tmp_path):
    cfg = load_data_config(data_yaml)
    train = [str(p) for p in img_paths(cfg["train"], cfg["path"])]
    found = calibration_set(data_yaml, 3)
    assert found.paths == train[:3]  # the first readable images of the sorted split, as every int8 target
    assert calibration_set(data_yaml, 50).paths == train

    batches = CalibrationBatches(found.images, IMGSZ, 2, tmp_path / "x.engine.calib", "k")
    produced = list(batches)
    assert len(batches) == len(produced) == 2
    assert all(b.shape == (2, 3, *IMGSZ) and b.dtype == np.float32 for b in produced)
    images = [read_image(p) for p in found.paths]
    expected = to_input_tensor([letterbox(image, IMGSZ)[0] for image in [*images, images[0]]])
    np.testing.assert_array_equal(np.concatenate(produced), expected)  # the last batch completed with the first image
    assert 0.0 <= expected.min() and expected.max() <= 1.0

    single = CalibrationBatches(calibration_set(data_yaml, 50).images, IMGSZ, 1, tmp_path / "c", "k")
    assert sum(len(b) for b in single) == len(train) == 5


def test_calibration_cache_round_trip_and_key(data_yaml, tmp_path):
    found = calibration_set(data_yaml, 2)
    key = cache_key(META, 1, found.paths)
    assert key != cache_key(dataclasses.replace(META, source_hash="other"), 1, found.paths) != cache_key(META, 2, found.paths)
    cache = tmp_path / "m.engine.calib"
    batches = CalibrationBatches(found.images, IMGSZ, 1, cache, key)
    assert batches.read_cache() is None
    scales = b"TRT-100300-EntropyCalibration2\nimages: 3c010a14\npreds: 3d8f5c29\n"
    batches.write_cache(scales)
    assert CalibrationBatches(found.images, IMGSZ, 1, cache, key).read_cache() == scales
    assert CalibrationBatches(found.images, IMGSZ, 1, cache, "another").read_cache() is None


def test_calibration_needs_data(tmp_path):
    with pytest.raises(EdgesegError, match="int8 export needs calibration images: give --data"):
        calibration_set(None, 10)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "data.yaml").write_text(f"path: {tmp_path}\ntrain: images\nval: images\nnames: [a]\n")
    with pytest.raises(EdgesegError, match="int8 calibration: .*data.yaml: no readable train images"):
        calibration_set(tmp_path / "data.yaml", 10)


# Engine header
# --------------------------------------------------------------------------------------


def test_engine_header_round_trip_and_sidecar(tmp_path):
    engine = bytes(range(256)) * 4
    path = write_engine(tmp_path / "m.engine", META, engine)
    raw = path.read_bytes()
    (length,) = HEADER.unpack_from(raw)
    assert raw[4 : 4 + length].decode() == META.to_json() and raw[4 + length :] == engine
    assert read_engine(path) == (META, engine)

    bare = tmp_path / "bare.engine"
    bare.write_bytes(engine)
    bare.with_name("bare.engine.json").write_text(META.to_json())
    assert read_engine(bare) == (META, engine)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "no edgeseg metadata header"),
        (b"\x10\x00", "no edgeseg metadata header"),
        (HEADER.pack(5000) + b'{"names"', "no edgeseg metadata header"),  # truncated inside the JSON
        (b"\x00garbage engine bytes", "no edgeseg metadata header"),
        (HEADER.pack(len(META.to_json())) + META.to_json().encode(), "truncated engine: the edgeseg header is followed by no engine bytes"),
    ],
)
def test_truncated_or_garbage_engines_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.engine"
    path.write_bytes(content)
    with pytest.raises(EdgesegError, match=message):
        read_engine(path)


def test_an_engine_with_the_plain_keys_header_reads_them(tmp_path):
    """Ultralytics writes its engines with the same 4-byte length but the plain keys' JSON: names, imgsz, stride …"""
    plain = {"names": {"0": "circle", "1": "star"}, "imgsz": list(IMGSZ), "stride": 32, "batch": 1, "task": "segment",
             "args": {"half": True, "int8": False, "dynamic": False, "nms": False}}  # fmt: skip
    text = json.dumps(plain).encode()
    path = tmp_path / "u.engine"
    path.write_bytes(HEADER.pack(len(text)) + text + b"\x01engine")
    meta, engine = read_engine(path)
    assert (meta.names, meta.imgsz, meta.precision, meta.batch) == ({0: "circle", 1: "star"}, IMGSZ, "fp16", 1)
    assert engine == b"\x01engine"
    neither = json.dumps({"names": {"0": "a"}}).encode()  # no imgsz: neither edgeseg's metadata nor the plain keys
    path.write_bytes(HEADER.pack(len(neither)) + neither + b"\x01engine")
    with pytest.raises(EdgesegError, match="unusable edgeseg metadata header"):
        read_engine(path)


def test_unreadable_sidecar(tmp_path):
    path = tmp_path / "bare.engine"
    path.write_bytes(b"\xff" * 64)
    path.with_name("bare.engine.json").write_text("{not json")
    with pytest.raises(EdgesegError, match="bare.engine.json: unreadable ModelMeta JSON"):
        read_engine(path)


# Without TensorRT
# --------------------------------------------------------------------------------------


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed: the missing-TensorRT messages do not apply")
def test_without_tensorrt_export_and_load_are_one_line_errors(model, tmp_path):
    checkpoint = model.save(tmp_path / "m.pt")
    with pytest.raises(EdgesegError) as info:
        export(checkpoint, "tensorrt", "fp16")
    assert str(info.value) == NOT_INSTALLED and "pip install edgeseg[tensorrt]" in NOT_INSTALLED
    result = CliRunner().invoke(main, ["export", str(checkpoint), "--target", "tensorrt", "--precision", "int8"])
    assert result.exit_code == 1 and result.output.strip() == f"error: {NOT_INSTALLED}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # nothing staged or left behind

    engine = write_engine(tmp_path / "m.engine", META, b"\x00" * 64)
    with pytest.raises(EdgesegError, match=r"m\.engine: the tensorrt backend needs the 'tensorrt' package: install edgeseg\[tensorrt\] \(TensorRT itself comes with JetPack"):
        load(engine, "cuda")


@pytest.mark.skipif(not HAS_TENSORRT, reason=NO_TENSORRT)
def test_engine_build_and_run(model, data_yaml, tmp_path, caplog):
    checkpoint = model.save(tmp_path / "m.pt")
    with caplog.at_level(logging.INFO, logger="edgeseg"):
        artifact = export(checkpoint, "tensorrt", "int8", imgsz=IMGSZ, dynamic=True, data=data_yaml, calib=4, device="cuda")
    assert artifact.report["passed"] and artifact.meta.extra["tensorrt"]
    assert artifact.path.with_name("m-int8.engine.calib").is_file()
    backend = load(artifact.path, "cuda").backend
    preds, protos = backend.infer(np.zeros((3, 3, *IMGSZ), np.float32))
    assert preds.shape == (3, 4 + NC + 32, ANCHORS) and protos.shape == (3, 32, IMGSZ[0] // 4, IMGSZ[1] // 4)
