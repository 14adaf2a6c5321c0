"""NCNN export (pnnx) and the NCNN backend: folder layout, metadata, parity with the .pt, fp16, hostile folders, CLI."""

import json
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgeseg.cli import main
from edgeseg.data.synth import CLASS_NAMES
from edgeseg.runtimes import load
from edgeseg.runtimes.backends.folder_meta import META_FILE
from edgeseg.runtimes.backends.ncnn_files import PARAM, WEIGHTS
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.plain_keys import SIDECAR
from edgeseg.targets import export

import helpers

pytest.importorskip("ncnn", reason="the NCNN backend needs edgeseg[ncnn]")
pytest.importorskip("pnnx", reason="the NCNN export needs edgeseg[ncnn-export]")

IMGSZ = 160
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """``m.pt``: the calibrated model (BatchNorm gain 0.3, so that fp16 noise does not derail the random net)."""
    return helpers.export_model(IMGSZ, bn_gain=0.3).save(tmp_path_factory.mktemp("ncnn") / "m.pt")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, checkpoint):
    """A synthetic data YAML whose val labels are the ``.pt`` model's own predictions."""
    return helpers.self_labelled_dataset(tmp_path_factory.mktemp("synth"), checkpoint, 2, 8)


@pytest.fixture(scope="module")
def fp32(checkpoint, dataset):
    """The verified fp32 NCNN folder, ``m_ncnn_model`` beside the checkpoint."""
    return export(checkpoint, "ncnn", data=str(dataset))


def test_fp32_folder_metadata_and_parity_with_the_pt(checkpoint, dataset, fp32):
    assert fp32.path == checkpoint.with_name("m_ncnn_model") and fp32.path.is_dir()
    assert sorted(p.name for p in fp32.path.iterdir()) == sorted([PARAM, WEIGHTS, META_FILE, SIDECAR])
    meta = json.loads((fp32.path / META_FILE).read_text())
    assert meta["names"] == {str(i): n for i, n in enumerate(CLASS_NAMES)} and meta["imgsz"] == [IMGSZ, IMGSZ]
    assert meta["precision"] == "fp32" and meta["extra"]["pnnx"]
    report = fp32.report
    assert report["passed"] and report["agreement"] == 1.0
    assert max(report["max_abs_diff"]["preds"], report["max_abs_diff"]["protos"]) <= 1e-3
    runtime = load(fp32.path)
    assert runtime.backend.name == "ncnn" and runtime.meta.batch == 1
    reference = load(checkpoint)
    image = helpers.non_square_image()
    helpers.same_objects(next(reference.predict(image, imgsz=IMGSZ)), next(runtime.predict(image)))
    assert len(runtime.predict([image] * 3, batch=3, stream=False)) == 3  # run image by image
    assert abs(helpers.mask_map(runtime, dataset) - helpers.mask_map(reference, dataset)) <= 0.002


def test_fp16_halves_the_weights_and_keeps_the_map(checkpoint, dataset, fp32, tmp_path):
    half = export(checkpoint, "ncnn", precision="fp16", data=str(dataset), out=tmp_path / "h_ncnn_model")
    assert half.report["passed"]
    assert (half.path / WEIGHTS).stat().st_size < 0.55 * (fp32.path / WEIGHTS).stat().st_size
    assert abs(helpers.mask_map(load(half.path), dataset) - helpers.mask_map(load(fp32.path), dataset)) <= 0.01


def test_unsupported_options_leave_nothing(checkpoint, tmp_path):
    for options in ({"dynamic": True}, {"end2end": True}, {"batch": 2}):
        with pytest.raises(EdgesegError, match="NCNN export is one fixed-size image per call"):
            export(checkpoint, "ncnn", out=tmp_path / "x_ncnn_model", **options)
    with pytest.raises(EdgesegError, match="ncnn exports fp32, fp16, not 'int8'"):
        export(checkpoint, "ncnn", precision="int8", out=tmp_path / "x_ncnn_model")
    assert list(tmp_path.iterdir()) == []


def test_hostile_folders_and_settings_are_one_line_errors(fp32, tmp_path, monkeypatch):
    def copy(name: str):
        return shutil.copytree(fp32.path, tmp_path / f"{name}_ncnn_model")

    gone = copy("nometa")
    (gone / META_FILE).unlink()
    (gone / "metadata.yaml").unlink()
    with pytest.raises(EdgesegError, match=f"no {META_FILE} and no metadata.yaml with names and imgsz"):
        load(gone)
    bad = copy("badmeta")
    (bad / META_FILE).write_text('{"names": {"0": "a"}, "imgsz": -3}')
    with pytest.raises(EdgesegError, match="unreadable edgeseg metadata"):
        load(bad)
    param = copy("badparam")
    (param / PARAM).write_text("not a param file\n")
    with pytest.raises(EdgesegError, match="not an ncnn param file"):
        load(param)
    weights = copy("badweights")
    (weights / WEIGHTS).write_bytes(b"\0" * 64)
    with pytest.raises(EdgesegError, match="ncnn cannot load"):
        load(weights)
    wrong = copy("wrongnc")
    meta = json.loads((wrong / META_FILE).read_text())
    meta["names"] = {"0": "only"}
    (wrong / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(EdgesegError, match="do not match the metadata"):
        load(wrong).predict(helpers.non_square_image(), stream=False)
    monkeypatch.setenv("EDGESEG_NCNN_THREADS", "two")
    with pytest.raises(EdgesegError, match="EDGESEG_NCNN_THREADS='two'"):
        load(fp32.path)
    monkeypatch.setenv("EDGESEG_NCNN_THREADS", "1")
    assert load(fp32.path).backend.net.opt.num_threads == 1
    import ncnn

    if ncnn.get_gpu_count() == 0:
        with pytest.raises(EdgesegError, match="needs a Vulkan GPU"):
            load(fp32.path, device="cuda:0")


def test_missing_package_names_the_extra(fp32, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ncnn(name, *args, **kwargs):
        if name == "ncnn":
            raise ModuleNotFoundError("No module named 'ncnn'", name="ncnn")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ncnn)
    with pytest.raises(EdgesegError, match=r"install edgeseg\[ncnn\]"):
        load(fp32.path)


def test_cli_export_and_predict(checkpoint, fp32, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli_ncnn_model"
    done = runner.invoke(main, ["export", str(checkpoint), "--target", "ncnn", "--precision", "fp16", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert f"exported {out}" in done.output and (out / PARAM).is_file()
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), helpers.non_square_image())
    done = runner.invoke(main, ["predict", str(fp32.path), str(image), "--project", str(tmp_path), "--name", "p", "--save-txt"])
    assert done.exit_code == 0, done.output
    lines = (tmp_path / "p" / "labels" / "a.txt").read_text().splitlines()
    assert len(lines) == len(next(load(checkpoint).predict(str(image), imgsz=IMGSZ))) > 0


def test_a_folder_with_only_the_plain_keys_loads_from_them(fp32, tmp_path):
    """An NCNN folder as Ultralytics writes it: model.ncnn.param/.bin and metadata.yaml, no edgeseg.json."""
    plain = shutil.copytree(fp32.path, tmp_path / "plain_ncnn_model")
    (plain / META_FILE).unlink()
    ours, theirs = load(fp32.path), load(plain)
    assert (theirs.names, theirs.meta.imgsz, theirs.meta.nm) == (ours.names, ours.meta.imgsz, ours.meta.nm)
    batch = np.random.default_rng(0).uniform(0, 1, (1, 3, *ours.meta.imgsz)).astype(np.float32)
    for a, b in zip(ours.backend.infer(batch), theirs.backend.infer(batch)):
        np.testing.assert_array_equal(a, b)
