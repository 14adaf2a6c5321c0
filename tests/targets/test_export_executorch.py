"""ExecuTorch export (XNNPACK .pte) and its backend: embedded metadata, parity with the .pt, static batch, hostile files, CLI."""

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgeseg.cli import main
from edgeseg.data.synth import CLASS_NAMES
from edgeseg.runtimes import load
from edgeseg.runtimes.backends.executorch import META_METHOD
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.targets import export

import helpers

pytest.importorskip("executorch.runtime", reason="the ExecuTorch target needs edgeseg[executorch]")

IMGSZ = 160
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """``m.pt``: the calibrated model's checkpoint."""
    return helpers.export_model(IMGSZ).save(tmp_path_factory.mktemp("et") / "m.pt")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, checkpoint):
    """A synthetic data YAML whose val labels are the ``.pt`` model's own predictions."""
    return helpers.self_labelled_dataset(tmp_path_factory.mktemp("synth"), checkpoint, 2, 8)


@pytest.fixture(scope="module")
def fp32(checkpoint, dataset):
    """The verified fp32 program, ``m.pte`` beside the checkpoint."""
    return export(checkpoint, "executorch", data=str(dataset))


def test_program_carries_its_metadata_and_matches_the_pt(checkpoint, dataset, fp32):
    assert fp32.path == checkpoint.with_suffix(".pte")
    report = fp32.report
    assert report["passed"] and report["agreement"] == 1.0
    assert max(report["max_abs_diff"]["preds"], report["max_abs_diff"]["protos"]) <= 1e-3
    runtime = load(fp32.path)
    assert runtime.backend.name == "executorch"
    assert runtime.names == dict(enumerate(CLASS_NAMES)) and runtime.meta.imgsz == (IMGSZ, IMGSZ)
    assert runtime.meta.precision == "fp32" and runtime.meta.batch == 1
    reference = load(checkpoint)
    image = helpers.non_square_image()
    helpers.same_objects(next(reference.predict(image, imgsz=IMGSZ)), next(runtime.predict(image)))
    assert abs(helpers.mask_map(runtime, dataset) - helpers.mask_map(reference, dataset)) <= 0.002


def test_a_static_batch_runs_any_number_of_images(checkpoint, fp32, tmp_path):
    pair = export(checkpoint, "executorch", batch=2, out=tmp_path / "b2.pte", verify=False)
    runtime, single = load(pair.path), load(fp32.path)
    assert runtime.meta.batch == 2
    images = [helpers.non_square_image(), np.ascontiguousarray(helpers.non_square_image()[:, ::-1]), helpers.non_square_image()]
    for a, b in zip(runtime.predict(images, batch=3, stream=False), single.predict(images, stream=False)):
        helpers.same_objects(a, b)


def test_unsupported_options_leave_nothing(checkpoint, tmp_path):
    for options, message in (({"dynamic": True}, "static input"), ({"end2end": True}, "static input"), ({"device": "cuda:0"}, "--device cpu")):
        with pytest.raises(EdgesegError, match=message):
            export(checkpoint, "executorch", out=tmp_path / "x.pte", **options)
    with pytest.raises(EdgesegError, match="executorch exports fp32, not 'int8'"):
        export(checkpoint, "executorch", precision="int8", out=tmp_path / "x.pte")
    assert list(tmp_path.iterdir()) == []


def test_hostile_and_foreign_programs_are_one_line_errors(fp32, tmp_path):
    from executorch.exir import to_edge

    garbage = tmp_path / "garbage.pte"
    garbage.write_bytes(b"not a program" * 100)
    with pytest.raises(EdgesegError, match="garbage.pte: not a loadable ExecuTorch program"):
        load(garbage)
    cut = tmp_path / "cut.pte"
    cut.write_bytes(fp32.path.read_bytes()[:4096])
    with pytest.raises(EdgesegError, match="cut.pte: not a loadable ExecuTorch program"):
        load(cut)
    foreign = tmp_path / "foreign.pte"
    program = torch.export.export(torch.nn.Conv2d(3, 4, 3).eval(), (torch.zeros(1, 3, 8, 8),))
    foreign.write_bytes(to_edge(program).to_executorch().buffer)
    with pytest.raises(EdgesegError, match=f"foreign.pte: no {META_METHOD} method"):
        load(foreign)
    with pytest.raises(EdgesegError, match="run on the CPU"):
        load(fp32.path, device="cuda:0")


def test_missing_package_names_the_extra(fp32, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_executorch(name, *args, **kwargs):
        if name.startswith("executorch"):
            raise ModuleNotFoundError("No module named 'executorch'", name="executorch")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_executorch)
    with pytest.raises(EdgesegError, match=r"the executorch backend needs the 'executorch' package: install edgeseg\[executorch\] \(ExecuTorch's runtime also needs PyTorch\)"):
        load(fp32.path)


def test_cli_export_and_predict(checkpoint, fp32, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli.pte"
    done = runner.invoke(main, ["export", str(checkpoint), "--target", "executorch", "--out", str(out), "--no-verify"])
    assert done.exit_code == 0, done.output
    assert f"exported {out}" in done.output and out.read_bytes() == fp32.path.read_bytes()  # the same program, byte for byte
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), helpers.non_square_image())
    done = runner.invoke(main, ["predict", str(out), str(image), "--project", str(tmp_path), "--name", "p", "--save-txt"])
    assert done.exit_code == 0, done.output
    lines = (tmp_path / "p" / "labels" / "a.txt").read_text().splitlines()
    assert len(lines) == len(next(load(checkpoint).predict(str(image), imgsz=IMGSZ))) > 0
