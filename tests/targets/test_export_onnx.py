"""ONNX export: the graph contract, metadata, static/dynamic shapes, parity with .pt, verification, atomic writes, CLI."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import onnxslim
import pytest
import torch
from click.testing import CliRunner

import edgeseg
from edgeseg.cli import main
from edgeseg.data.synth import CLASS_NAMES
from edgeseg.nn.checkpoint import file_hash
from edgeseg.runtimes import ModelMeta, load
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.model_meta import META_KEY
from edgeseg.runtimes.meta.plain_keys import plain_strings
from edgeseg.runtimes.pipeline.preprocess import letterbox, to_input_tensor
from edgeseg.targets import export, register_target
from edgeseg.targets import onnx as onnx_target
from edgeseg.targets.common import atomic_output
from edgeseg.targets.verify import TOLERANCES, synthetic_images, verify

import helpers

IMGSZ = 160
NC = len(CLASS_NAMES)
ANCHORS = sum((IMGSZ // s) ** 2 for s in (8, 16, 32))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """``m.pt``: the calibrated model's checkpoint, alone in its folder."""
    return helpers.export_model(IMGSZ).save(tmp_path_factory.mktemp("ckpt") / "m.pt")


@pytest.fixture(scope="module")
def exported(checkpoint):
    """The default export of ``m.pt``: ``m.onnx`` beside it, verified."""
    return export(checkpoint)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, checkpoint):
    """``synthesize(tmp, 4, 4)``'s data YAML with the ``.pt`` model's predictions as val labels (non-trivial mAP)."""
    return helpers.self_labelled_dataset(tmp_path_factory.mktemp("synth"), checkpoint, 4, 4)


def dims(value_info) -> list:
    """A graph input/output's shape: ints for fixed dims, names for dynamic ones."""
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


def same_detections(a, b, box_tol: float = 1.0, min_mask_iou: float = 0.98):
    """Assert two Results agree: count, classes, boxes within ``box_tol`` px and mask IoU."""
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.classes, b.classes)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=box_tol)
    inter = (a.masks & b.masks).sum((1, 2))
    union = (a.masks | b.masks).sum((1, 2))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    assert iou.min(initial=1.0) >= min_mask_iou, iou


def torch_outputs(checkpoint, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The checkpoint's fused PyTorch outputs on a (B, 3, H, W) batch."""
    net = edgeseg.Model(checkpoint).fuse().net
    with torch.no_grad():
        preds, protos = net(torch.from_numpy(batch))
    return preds.numpy(), protos.numpy()


def leftovers(folder: Path) -> list[str]:
    """Names in ``folder`` other than the checkpoint."""
    return sorted(p.name for p in folder.iterdir() if p.name != "m.pt")


# --------------------------------------------------------------------------------------
# The artifact
# --------------------------------------------------------------------------------------


def test_onnx_contract_and_metadata(checkpoint, exported):
    assert exported.path == checkpoint.with_suffix(".onnx") and exported.path.is_file()
    assert exported.target == "onnx" and exported.precision == "fp32" and exported.size_mb > 1
    model = onnx.load(str(exported.path))
    onnx.checker.check_model(model)
    assert {o.domain: o.version for o in model.opset_import}[""] >= 17
    assert [i.name for i in model.graph.input] == ["images"] and dims(model.graph.input[0]) == [1, 3, IMGSZ, IMGSZ]
    assert [o.name for o in model.graph.output] == ["preds", "protos"]
    assert dims(model.graph.output[0]) == [1, 4 + NC + 32, ANCHORS]
    assert dims(model.graph.output[1]) == [1, 32, IMGSZ // 4, IMGSZ // 4]
    props = {p.key: p.value for p in model.metadata_props}
    assert list(props) == [META_KEY, *plain_strings(exported.meta)]  # edgeseg's JSON first, then the plain keys
    meta = ModelMeta.from_json(props[META_KEY])
    assert meta == exported.meta
    assert meta.names == dict(enumerate(CLASS_NAMES)) and meta.imgsz == (IMGSZ, IMGSZ)
    assert (meta.stride, meta.nm, meta.batch, meta.dynamic, meta.precision) == (32, 32, 1, False, "fp32")
    assert meta.source_hash == file_hash(checkpoint) and meta.version == edgeseg.__version__
    assert meta.outputs == ["preds", "protos"]
    assert load(exported.path).meta == meta


def test_static_batch_and_dynamic_shapes(checkpoint, tmp_path):
    two = export(checkpoint, batch=2, out=tmp_path / "b2.onnx", verify=False)
    assert dims(onnx.load(str(two.path)).graph.input[0]) == [2, 3, IMGSZ, IMGSZ]
    runtime = load(two.path)
    assert runtime.meta.batch == 2 and not runtime.backend.dynamic_batch
    assert len(runtime.predict([helpers.non_square_image()] * 3, stream=False)) == 3  # padded to 2 + 2

    dyn = export(checkpoint, dynamic=True, out=tmp_path)
    assert dyn.path == tmp_path / "m.onnx" and dyn.meta.batch == 0 and dyn.meta.dynamic
    graph = onnx.load(str(dyn.path)).graph
    assert dims(graph.input[0]) == ["batch", 3, "height", "width"]
    assert dims(graph.output[0])[:2] == ["batch", 4 + NC + 32]
    images = [helpers.non_square_image(), *synthetic_images(2)]
    batch = to_input_tensor([letterbox(im, (96, 224))[0] for im in images])
    session = ort.InferenceSession(str(dyn.path), providers=["CPUExecutionProvider"])
    preds, protos = session.run(None, {"images": batch})
    ref_preds, ref_protos = torch_outputs(checkpoint, batch)
    assert preds.shape == (3, 4 + NC + 32, 12 * 28 + 6 * 14 + 3 * 7) and protos.shape == (3, 32, 24, 56)
    # the anchor grid is computed in the graph for the new size: boxes agree within 0.05 px
    np.testing.assert_allclose(preds[:, :4], ref_preds[:, :4], atol=0.05)
    np.testing.assert_allclose(preds[:, 4:], ref_preds[:, 4:], atol=1e-3)
    np.testing.assert_allclose(protos, ref_protos, atol=1e-3)
    # the whole pipeline at a non-square input the export never saw
    report = verify(load(checkpoint), load(dyn.path), synthetic_images(), "fp32", imgsz=(128, 192))
    assert report["passed"] and report["imgsz"] == [128, 192] and report["detections"]["matched"] >= 50


def test_pt_and_onnx_agree_on_a_non_square_image_and_in_val(checkpoint, exported, dataset):
    image = helpers.non_square_image()
    pt = next(load(checkpoint).predict(image))
    ox = next(load(exported.path).predict(image))
    assert pt.orig_shape == ox.orig_shape == (150, 240) and 5 <= len(pt) <= 100
    same_detections(pt, ox, box_tol=1.0, min_mask_iou=0.98)
    kw = dict(batch=4, max_det=100, progress=False)
    pt_metrics, ox_metrics = load(checkpoint).val(dataset, **kw), load(exported.path).val(dataset, **kw)
    assert pt_metrics.box.map50 > 0.4 and pt_metrics.seg.map50 > 0.2  # the pseudo-labels make mAP meaningful
    for key, value in pt_metrics.results_dict.items():
        assert ox_metrics.results_dict[key] == pytest.approx(value, abs=0.002), key


def test_fp16_keeps_float32_io_and_is_verified_with_its_tolerance(checkpoint, exported, tmp_path):
    """fp16 graph structure and verification; the fp16 tolerance itself is not asserted here.

    This test net is untrained: its class logits are a small spread (std ~0.3) read off large
    features, rescaled by the calibration, so half precision moves its scores by ~0.1. A trained
    yolo11n-seg passes the fp16 row easily (max diff ~4e-3, 100 % agreement).
    """
    half = export(checkpoint, precision="fp16", out=tmp_path, verify=False)
    assert half.path.name == "m-fp16.onnx" and half.meta.precision == "fp16"
    assert half.size_mb < 0.6 * exported.size_mb
    graph = onnx.load(str(half.path)).graph
    assert {v.type.tensor_type.elem_type for v in [*graph.input, *graph.output]} == {onnx.TensorProto.FLOAT}
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
    report = verify(load(checkpoint), load(half.path), synthetic_images(), "fp16")
    assert report["tolerance"] == TOLERANCES["fp16"] and report["max_abs_diff"]["protos"] <= 0.1
    assert report["agreement"] >= 0.9 and report["mask_iou"]["mean"] >= 0.9


# --------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------


def test_verification_report_values_and_json(exported):
    report = exported.report
    assert report["passed"] and not report["failures"] and report["precision"] == "fp32"
    assert report["max_abs_diff"]["preds"] <= 1e-3 and report["max_abs_diff"]["protos"] <= 1e-3
    assert set(report["max_abs_diff"]) == {"preds", "protos", "boxes", "scores", "coefficients"}
    assert report["images"] == 8 and report["images_from"] == "8 synthetic images" and report["imgsz"] == [IMGSZ, IMGSZ]
    assert report["detections"]["reference"] >= 5 and report["conf"] == 0.25 and not report["conf_lowered"]
    assert report["agreement"] >= 0.99 and report["mask_iou"]["mean"] >= 0.98 and report["box_iou"]["p5"] >= 0.99
    assert report["map"] is None and all(check["passed"] for check in report["checks"])
    saved = json.loads(exported.path.with_name("m.onnx.verify.json").read_text())
    assert saved == report


def test_verification_on_dataset_images_and_lowered_conf(checkpoint, dataset, tmp_path, monkeypatch):
    artifact = export(checkpoint, data=str(dataset), out=tmp_path / "d.onnx")
    assert artifact.report["images"] == 4 and artifact.report["images_from"].startswith(f"4 val images of {dataset}")
    monkeypatch.setattr("edgeseg.targets.verify.compare.CONF", 0.999)  # nothing scores this high: keep the top 50
    report = export(checkpoint, out=tmp_path / "low.onnx").report
    assert report["conf_lowered"] and report["conf"] < 0.999 and 45 <= report["detections"]["reference"] <= 50
    assert report["passed"]


def perturbed_trace(monkeypatch):
    """Make the ONNX target trace a network whose stride-8 class logits are shifted by +3."""
    trace = onnx_target.trace

    def broken(job):
        job.net.head.cv3[0][-1].bias.data += 3.0
        return trace(job)

    monkeypatch.setattr(onnx_target, "trace", broken)


def test_a_broken_artifact_fails_verification_and_is_not_written(checkpoint, tmp_path, monkeypatch):
    perturbed_trace(monkeypatch)
    with pytest.raises(EdgesegError, match=r"export failed verification: detection agreement \d+\.\d% < 98%"):
        export(checkpoint, out=tmp_path / "bad.onnx")
    assert list(tmp_path.iterdir()) == []
    kept = export(checkpoint, out=tmp_path / "bad.onnx", verify=False)
    assert kept.path.is_file() and kept.report is None and not (tmp_path / "bad.onnx.verify.json").exists()


# --------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------


def test_an_exception_mid_export_leaves_nothing(checkpoint, monkeypatch):
    folder = checkpoint.parent
    before = leftovers(folder)

    def partial_save(model, path):
        Path(path).write_bytes(b"half an onnx file")
        raise OSError("disk full")

    monkeypatch.setattr(onnx, "save", partial_save)
    with pytest.raises(OSError, match="disk full"):
        export(checkpoint, out=folder / "partial.onnx")
    assert leftovers(folder) == before
    monkeypatch.undo()

    def interrupted(model):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnxslim, "slim", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export(checkpoint, out=folder / "interrupted.onnx")
    assert leftovers(folder) == before


def test_a_failed_export_keeps_the_previous_artifact(checkpoint, tmp_path, monkeypatch):
    dest = tmp_path / "m.onnx"
    dest.write_bytes(b"previous")
    perturbed_trace(monkeypatch)
    with pytest.raises(EdgesegError, match="failed verification"):
        export(checkpoint, out=dest)
    assert dest.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_atomic_output_replaces_files_and_folders(tmp_path):
    folder = tmp_path / "m_fmt_model"
    folder.mkdir()
    (folder / "new.bin").write_text("old")
    with atomic_output(folder) as staged:
        assert staged.name == folder.name and staged.parent.parent == tmp_path
        staged.mkdir()
        (staged / "new.bin").write_text("new")
    assert [p.name for p in folder.iterdir()] == ["new.bin"] and (folder / "new.bin").read_text() == "new"
    with pytest.raises(RuntimeError), atomic_output(folder) as staged:
        staged.mkdir()
        raise RuntimeError
    with pytest.raises(EdgesegError, match="wrote nothing"), atomic_output(tmp_path / "x.bin"):
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["m_fmt_model"] and (folder / "new.bin").read_text() == "new"


def test_atomic_output_never_replaces_what_is_not_a_previous_artifact(tmp_path):
    folder = tmp_path / "m_fmt_model"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(EdgesegError, match="not part of this artifact \\(notes.txt\\)"), atomic_output(folder) as staged:
        staged.mkdir()
        (staged / "new.bin").write_text("new")
    with pytest.raises(EdgesegError, match="is an existing folder; the artifact is a file"), atomic_output(folder) as staged:
        staged.write_text("a file")
    (tmp_path / "a.bin").write_text("a file of mine")
    with pytest.raises(EdgesegError, match="is an existing file; the artifact is a folder"), atomic_output(tmp_path / "a.bin") as staged:
        staged.mkdir()
        (staged / "x").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "m_fmt_model"]
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


# --------------------------------------------------------------------------------------
# Arguments and registry
# --------------------------------------------------------------------------------------


def test_bad_arguments_are_one_line_errors(checkpoint, tmp_path, monkeypatch):
    with pytest.raises(EdgesegError, match=r"unknown export target 'tensorflow' \(choose from: .*onnx"):
        export(checkpoint, target="tensorflow")
    with pytest.raises(EdgesegError, match=r"onnx exports fp32, fp16, not 'int8'"):
        export(checkpoint, precision="int8")
    with pytest.raises(EdgesegError, match="checkpoint not found"):
        export(tmp_path / "missing.pt")
    with pytest.raises(EdgesegError, match="multiple of 32"):
        export(checkpoint, imgsz=100)
    with pytest.raises(EdgesegError, match="dynamic export takes any batch"):
        export(checkpoint, dynamic=True, batch=4)
    with pytest.raises(EdgesegError, match="must have a name ending in '.onnx'"):
        export(checkpoint, out=tmp_path / "m.bin")
    with pytest.raises(EdgesegError, match="opset 13 is not supported"):
        export(checkpoint, opset=13, out=tmp_path / "o.onnx")
    assert list(tmp_path.iterdir()) == []

    def needs_a_missing_package(job):
        import edgeseg_missing_converter  # noqa: F401

    monkeypatch.setattr("edgeseg.targets.registry._REGISTRY", dict(edgeseg.targets.registry._REGISTRY))
    register_target("fake", needs_a_missing_package, ("fp32",), "fake", ".onnx")
    with pytest.raises(EdgesegError, match=r"'edgeseg_missing_converter' package: install edgeseg\[fake\]"):
        export(checkpoint, target="fake", out=tmp_path / "f.onnx")
    assert list(tmp_path.iterdir()) == []


def test_model_export_in_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = helpers.export_model(IMGSZ)
    artifact = model.export(verify=False)
    assert artifact.path == tmp_path / "yolo11n-seg.onnx" and artifact.meta.source_hash == ""
    assert artifact.meta.imgsz == (IMGSZ, IMGSZ) and hasattr(model.net.model[0], "bn")  # not fused in place


def test_export_takes_a_path_a_model_or_its_network(checkpoint, tmp_path):
    checkpoint = Path(shutil.copy(checkpoint, tmp_path / "m.pt"))
    model = edgeseg.Model(checkpoint)
    hashes = {export(source, out=tmp_path / f"{i}.onnx", verify=False).meta.source_hash for i, source in enumerate((checkpoint, model, model.network))}
    assert len(hashes) == 1 and len(hashes.pop()) == 16  # the same checkpoint hash whichever way it was given
    assert export(model, verify=False).path == checkpoint.parent / "m.onnx"  # beside the checkpoint it was loaded from
    with pytest.raises(EdgesegError, match="export needs an edgeseg .pt checkpoint path or an edgeseg.Model, got int"):
        export(7)


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def test_cli_export(checkpoint, tmp_path, caplog):
    runner = CliRunner()
    out = tmp_path / "cli.onnx"
    with caplog.at_level(logging.INFO, logger="edgeseg"):
        result = runner.invoke(main, ["export", str(checkpoint), "--target", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and f"exported {out}" in result.output and "verified" in result.output
    assert "verification (fp32, 8 images at 160x160" in caplog.text and "agreement" in caplog.text

    for args, message in [
        (["export", str(checkpoint), "--target", "nope"], "error: unknown export target 'nope' (choose from: "),
        (["export", str(tmp_path / "missing.pt")], f"error: {tmp_path / 'missing.pt'}: checkpoint not found"),
    ]:
        result = runner.invoke(main, args)
        assert result.exit_code == 1 and result.output.strip().startswith(message)
        assert "\n" not in result.output.strip()
