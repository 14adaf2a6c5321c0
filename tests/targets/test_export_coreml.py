"""CoreML export: the package's spec (names, shapes, dtypes), metadata, weight precision and size, verification off macOS."""

import json
import logging
import platform
from collections import Counter

import numpy as np
import pytest

ct = pytest.importorskip("coremltools")
torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from coremltools.proto import MIL_pb2  # noqa: E402

import edgeseg  # noqa: E402
from edgeseg.cli import main  # noqa: E402
from edgeseg.data.synth import CLASS_NAMES, render_sample, sample_rng  # noqa: E402
from edgeseg.runtimes import ModelMeta, load  # noqa: E402
from edgeseg.runtimes.backends.base import PredictUnavailable  # noqa: E402
from edgeseg.runtimes.errors import EdgesegError  # noqa: E402
from edgeseg.runtimes.meta.model_meta import META_KEY  # noqa: E402
from edgeseg.targets import export  # noqa: E402
from edgeseg.targets.common import artifact_size  # noqa: E402

IMGSZ = 160
NC = len(CLASS_NAMES)
ANCHORS = sum((IMGSZ // s) ** 2 for s in (8, 16, 32))
ON_MAC = platform.system() == "Darwin"
FLOAT16, FLOAT32, INT8 = (MIL_pb2.DataType.Value(n) for n in ("FLOAT16", "FLOAT32", "INT8"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """``m.pt``: a random yolo11n-seg at 160 with the synthetic classes."""
    torch.manual_seed(0)
    model = edgeseg.Model("yolo11n-seg.yaml", names=list(CLASS_NAMES))
    model.imgsz = IMGSZ
    return model.save(tmp_path_factory.mktemp("ckpt") / "m.pt")


@pytest.fixture(scope="module")
def packages(checkpoint):
    """``{precision: Artifact}``: fp32 and int8 through the API, fp16 through the CLI (``m-fp16.mlpackage``)."""
    artifacts = {p: export(checkpoint, "coreml", p) for p in ("fp32", "int8")}
    result = CliRunner().invoke(main, ["export", str(checkpoint), "--target", "coreml", "--precision", "fp16"])
    assert result.exit_code == 0, result.output
    path = checkpoint.with_name("m-fp16.mlpackage")
    assert f"exported {path}" in result.output
    if not ON_MAC:
        assert "verification skipped: CoreML predict needs macOS" in result.output
    artifacts["fp16"] = path
    return artifacts


def features(fields) -> dict:
    """``{name: (shape, data type)}`` of spec inputs or outputs."""
    return {f.name: (list(f.type.multiArrayType.shape), f.type.multiArrayType.dataType) for f in fields}


def stored_meta(path) -> ModelMeta:
    """The ModelMeta in a package's user-defined metadata."""
    return ModelMeta.from_json(ct.utils.load_spec(str(path)).description.metadata.userDefined[META_KEY])


def weight_dtypes(path) -> Counter:
    """``{(op type, dtype): count}`` of the ML Program's rank-4 (conv weight) constants; int8 data of dequantize ops."""
    spec = ct.utils.load_spec(str(path))
    function = spec.mlProgram.functions["main"]
    counts = Counter()
    for op in function.block_specializations[function.opset].operations:
        if op.type == "const" and len(op.outputs[0].type.tensorType.dimensions) == 4:
            counts["const", op.outputs[0].type.tensorType.dataType] += 1
        elif op.type == "constexpr_affine_dequantize":
            counts[op.type, op.attributes["quantized_data"].type.tensorType.dataType] += 1
    return counts


def test_package_spec_metadata_and_backend(packages):
    artifact = packages["fp32"]
    assert artifact.path.is_dir() and artifact.path.name == "m.mlpackage" and artifact.target == "coreml"
    spec = ct.utils.load_spec(str(artifact.path))
    assert spec.WhichOneof("Type") == "mlProgram"
    f32 = ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32
    assert features(spec.description.input) == {"images": ([1, 3, IMGSZ, IMGSZ], f32)}
    assert features(spec.description.output) == {
        "preds": ([1, 4 + NC + 32, ANCHORS], f32),
        "protos": ([1, 32, IMGSZ // 4, IMGSZ // 4], f32),
    }
    meta = stored_meta(artifact.path)
    assert meta == artifact.meta and meta.names == dict(enumerate(CLASS_NAMES)) and meta.imgsz == (IMGSZ, IMGSZ)
    backend = load(artifact.path).backend
    assert backend.name == "coreml" and backend.meta.batch == 1 and backend.meta.nc == NC
    with pytest.raises(EdgesegError, match="CoreML runs on cpu, gpu, ane, all, not device 'cuda'"):
        load(artifact.path, "cuda")


def test_weights_have_the_precision_asked_for_and_shrink(packages):
    fp32, fp16, int8 = packages["fp32"].path, packages["fp16"], packages["int8"].path
    assert set(weight_dtypes(fp32)) == {("const", FLOAT32)}
    assert set(weight_dtypes(fp16)) == {("const", FLOAT16)}
    quantised = weight_dtypes(int8)
    assert quantised["constexpr_affine_dequantize", INT8] >= 80  # all but the smallest convs (< 2048 weights)
    assert ("const", FLOAT32) not in quantised
    paths = {"fp32": fp32, "fp16": fp16, "int8": int8}
    assert {p: stored_meta(path).precision for p, path in paths.items()} == {p: p for p in paths}
    sizes = {p: artifact_size(path) for p, path in paths.items()}
    # yolo11n-seg: 11.5 / 5.9 / 3.1 MB (docs/ARCHITECTURE.md)
    assert 10e6 < sizes["fp32"] < 13e6
    assert 0.45 < sizes["fp16"] / sizes["fp32"] < 0.56
    assert 0.22 < sizes["int8"] / sizes["fp32"] < 0.32


@pytest.mark.skipif(ON_MAC, reason="off macOS only: there CoreML predict runs and verification happens")
def test_verification_is_skipped_off_macos_and_recorded(packages, caplog):
    artifact = packages["fp32"]
    assert artifact.report["skipped"] == "verification skipped: CoreML predict needs macOS (this machine runs Linux)"
    assert artifact.report["passed"] is None and artifact.report["failures"] == []
    saved = json.loads(artifact.path.with_name("m.mlpackage.verify.json").read_text())
    assert saved["skipped"] == artifact.report["skipped"] and saved["images_from"] == "8 synthetic images"
    image = render_sample(sample_rng(0, "val", 0))[0]
    with pytest.raises(PredictUnavailable, match=r"^CoreML predict needs macOS"):
        load(artifact.path).predict(image, stream=False)


@pytest.mark.skipif(not ON_MAC, reason="CoreML predict needs macOS")
def test_predict_matches_pytorch_on_macos(checkpoint, packages):
    assert packages["fp32"].report["passed"] and packages["int8"].report["passed"]
    batch = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    preds, protos = load(packages["fp32"].path).backend.infer(batch)
    with torch.no_grad():
        ref_preds, ref_protos = edgeseg.Model(checkpoint).fuse().net(torch.from_numpy(batch))
    np.testing.assert_allclose(preds, ref_preds.numpy(), atol=1e-2 * float(ref_preds.abs().max()))
    np.testing.assert_allclose(protos, ref_protos.numpy(), atol=1e-2 * float(ref_protos.abs().max()))


def test_dynamic_and_end2end_are_refused_and_leave_nothing(checkpoint, tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        with pytest.raises(EdgesegError, match="CoreML export is static: drop --dynamic"):
            export(checkpoint, "coreml", dynamic=True, out=tmp_path)
        with pytest.raises(EdgesegError, match="end2end CoreML"):
            export(checkpoint, "coreml", end2end=True, out=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_package_with_only_the_plain_keys_loads_from_them(packages, monkeypatch):
    """Ultralytics' CoreML packages carry the plain keys, not edgeseg's JSON: the backend reads those (names, size)."""
    spec = ct.utils.load_spec(str(packages["fp32"].path))
    del spec.description.metadata.userDefined[META_KEY]
    assert {"names", "imgsz", "stride"} <= set(spec.description.metadata.userDefined)  # written by the export
    monkeypatch.setattr(ct.utils, "load_spec", lambda path: spec)
    backend = load(packages["fp32"].path).backend
    assert backend.meta.names == dict(enumerate(CLASS_NAMES)) and backend.meta.imgsz == (IMGSZ, IMGSZ) and backend.meta.nc == NC
    for key in list(spec.description.metadata.userDefined):
        del spec.description.metadata.userDefined[key]
    with pytest.raises(EdgesegError, match="no 'edgeseg' metadata and no plain metadata keys"):
        load(packages["fp32"].path)
