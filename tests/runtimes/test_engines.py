"""Engine choice for one .onnx file: ONNX Runtime, OpenVINO, or the fastest that gives the same outputs."""

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgeseg.cli import main
from edgeseg.runtimes import load
from edgeseg.runtimes.backends import engines
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.targets import export

import helpers

pytest.importorskip("openvino", reason="the OpenVINO engine needs edgeseg[openvino]")

IMGSZ = 96
SAMPLES = [(11, i, 200 + 30 * i, 150) for i in range(3)]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    """An edgeseg ONNX export (static, batch 1, with ModelMeta) of a model that detects on SAMPLES."""
    folder = tmp_path_factory.mktemp("engines")
    checkpoint = helpers.calibrated_model([helpers.sample(*s) for s in SAMPLES], IMGSZ).save(folder / "m.pt")
    return export(checkpoint, imgsz=IMGSZ, verify=False).path


def test_openvino_runs_the_onnx_file_with_its_metadata_and_results(onnx_file):
    reference, candidate = load(onnx_file), load(onnx_file, engine="openvino")
    assert (reference.backend.name, candidate.backend.name) == ("onnxruntime", "openvino")
    assert candidate.meta == reference.meta  # read from the ONNX metadata through OpenVINO
    images = [helpers.sample(*s) for s in SAMPLES]
    detections = 0
    for ref, got in zip(reference.predict(images), candidate.predict(images)):
        assert len(ref) == len(got) and np.array_equal(ref.classes, got.classes)
        np.testing.assert_allclose(got.boxes, ref.boxes, atol=0.05)  # px, at the source resolution
        assert ref.masks.shape == got.masks.shape and np.count_nonzero(ref.masks != got.masks) <= 1e-3 * max(ref.masks.size, 1)
        detections += len(ref)
    assert detections >= 3  # the comparison is about real detections


def test_auto_picks_a_matching_engine_and_says_which(onnx_file, caplog):
    with caplog.at_level(logging.INFO, logger="edgeseg"):
        runtime = load(onnx_file, engine="auto")
    line = next(r.getMessage() for r in caplog.records if "engine auto chose" in r.getMessage())
    assert f"engine auto chose {runtime.backend.name} (" in line
    assert "onnxruntime" in line and "openvino" in line and " ms" in line


def test_auto_passes_over_an_engine_whose_outputs_differ(onnx_file, caplog, monkeypatch):
    original = engines.output_diff
    monkeypatch.setattr(engines, "output_diff", lambda ref, out: original(ref, out) + 0.5)
    with caplog.at_level(logging.INFO, logger="edgeseg"):
        runtime = load(onnx_file, engine="auto")
    assert runtime.backend.name == "onnxruntime"
    assert any("openvino passed over (outputs differ from onnxruntime's by 0.5" in r.getMessage() for r in caplog.records)


def test_output_diff_is_relative_to_the_largest_reference_output():
    reference = (np.array([[100.0, -50.0]]), np.array([[1.0]]))
    assert engines.output_diff(reference, (np.array([[100.1, -50.0]]), np.array([[1.0]]))) == pytest.approx(1e-3)
    assert engines.output_diff(reference, (np.zeros((1, 3)), np.array([[1.0]]))) == float("inf")


def test_engine_errors_name_the_problem(onnx_file, tmp_path):
    with pytest.raises(EdgesegError, match=r"unknown engine 'tensorrt' for \.onnx files \(choose from auto, onnxruntime, openvino\)"):
        load(onnx_file, engine="tensorrt")
    with pytest.raises(EdgesegError, match=r"m\.pt: engine choice applies to \.onnx files"):
        load(onnx_file.with_suffix(".pt"), engine="auto")
    with pytest.raises(EdgesegError, match="missing.onnx: model not found"):
        load(tmp_path / "missing.onnx", engine="openvino")


def test_cli_predict_takes_an_engine(onnx_file, tmp_path):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), helpers.sample(*SAMPLES[0]))
    runner = CliRunner()
    done = runner.invoke(main, ["predict", str(onnx_file), str(image), "--engine", "openvino", "--no-save"])
    assert done.exit_code == 0, done.output
    reference = runner.invoke(main, ["predict", str(onnx_file), str(image), "--no-save"])
    def counts(output: str) -> list[str]:
        return [line.split("\r")[-1] for line in output.splitlines() if f"{image}: " in line]

    assert counts(done.output) and counts(done.output) == counts(reference.output)  # "<image>: HxW, 16 circle, ..."
    refused = runner.invoke(main, ["predict", str(onnx_file), str(image), "--engine", "litert"])
    assert refused.exit_code == 2 and "'litert' is not one of" in refused.output


def test_cli_val_takes_an_engine(onnx_file, tmp_path):
    from edgeseg.data.synth import synthesize

    data = synthesize(tmp_path / "synth", n_train=1, n_val=3, seed=4, progress=False)
    runner = CliRunner()
    tables = [runner.invoke(main, ["val", str(onnx_file), "--data", str(data), "--engine", engine]) for engine in ("openvino", "onnxruntime")]
    assert [t.exit_code for t in tables] == [0, 0], tables[0].output
    rows = [[line for line in t.output.splitlines() if line.split()[:1] == ["all"]] for t in tables]
    assert rows[0] and rows[0] == rows[1]  # the same metrics, to the printed digits


def test_openvino_models_closed_in_any_order_leave_signal_handling_intact(tmp_path):
    """Two OpenVINO models freed first-in first-out, then a child exits under a Python SIGCHLD handler (as after torch's
    DataLoader): the process lives. With one ``openvino.Core`` per model the freed plugin's alternate signal stack stayed
    installed and the handler's signal killed the process with SIGSEGV (exit -11)."""
    import subprocess
    import sys

    genuine = Path(__file__).parents[1] / "fixtures" / "ultralytics" / "yolo11-seg-tiny-u8.4.190.onnx"
    script = f"""
import gc, signal, subprocess
from edgeseg.runtimes import load
first = load({str(genuine)!r}, engine="openvino")
second = load({str(genuine)!r}, engine="openvino")
del first; gc.collect()
del second; gc.collect()
signal.signal(signal.SIGCHLD, lambda *args: None)
subprocess.run(["true"], check=True)
print("alive")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "alive"), done.stderr[-2000:]
