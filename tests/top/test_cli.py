"""CLI: the foundation commands and their one-line errors."""

import re
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

import edgeseg
from edgeseg.cli import main


def run(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def test_info_prints_size_and_checkpoint_metadata(tmp_path):
    path = edgeseg.Model("yolo11n-seg.yaml", names=["circle", "square"]).save(tmp_path / "m.pt", epoch=7)
    result = run("info", path, "--imgsz", 320)
    assert result.exit_code == 0, result.output
    assert "2,842,998 parameters" in result.output  # nc=2 narrows the class branch to 64 channels
    assert "0: circle, 1: square" in result.output
    assert "epoch: 7" in result.output
    assert re.search(r"^\s*23\s+\[16, 19, 22\]\s+1\s+[\d,]+\s+Segment\s+\[2, 32, 64, \[64, 128, 256\]\]$", result.output, re.M)
    assert "summary: 24 layers, 2,842,998 parameters" in result.output


def test_info_counts_parameters_of_the_yaml():
    result = run("info", "yolo11s-seg.yaml", "--no-layers", "--imgsz", 64)
    assert result.exit_code == 0
    assert "10,113,248 parameters" in result.output


@pytest.mark.parametrize(
    "content, message",
    [
        ("nc: 3\nfoo: 1\nbackbone: [[-1, 1, Conv, [8, 3, 2]]]\nhead: [[-1, 1, Conv, [8, 3, 2]]]\n", "unknown key(s) foo"),
        ("nc: 3\nscale: q\nscales: {n: [0.5, 0.25, 1024]}\nbackbone: [[-1, 1, Conv, [8]]]\nhead: [[-1, 1, Conv, [8]]]\n", "unknown scale 'q'"),
        ("nc: 3\nbackbone: [[-1, 1, Magic, [8]]]\nhead: [[-1, 1, Conv, [8]]]\n", "unknown module 'Magic'"),
        ("nc: [\n", "not valid YAML"),
    ],
)
def test_bad_model_yaml_is_one_line_and_exit_1(tmp_path, content, message):
    path = tmp_path / "model.yaml"
    path.write_text(content)
    result = run("info", path)
    assert result.exit_code == 1
    assert message in result.output and str(path) in result.output
    assert "Traceback" not in result.output


def test_unknown_scale_in_name_and_missing_file(tmp_path):
    assert "model file not found" in run("info", "yolo11q-seg.yaml").output
    result = run("info", tmp_path / "missing.pt")
    assert result.exit_code == 1 and "checkpoint not found" in result.output


def test_real_process_exits_1_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "edgeseg", "info", str(tmp_path / "nope.pt")], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")


def test_data_synth_writes_a_dataset(tmp_path):
    result = run("data", "synth", "--out", tmp_path / "ds", "--train", 3, "--val", 2, "--seed", 4)
    assert result.exit_code == 0, result.output
    cfg = yaml.safe_load((tmp_path / "ds" / "data.yaml").read_text())
    assert len(list((tmp_path / "ds" / "images" / "train").glob("*.png"))) == 3
    assert len(list((tmp_path / "ds" / "labels" / "val").glob("*.txt"))) == 2
    assert len(cfg["names"]) >= 4


def test_predict_run_folders_follow_project_name_and_exist_ok(tmp_path):
    """A second predict into the same --name goes to name2; with --exist-ok it writes into the same folder."""
    import cv2

    import helpers

    path = edgeseg.Model("yolo11n-seg.yaml", names=["circle", "square"]).save(tmp_path / "m.pt")
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), helpers.sample(0, 0, 96, 64))
    args = ["predict", path, image, "--imgsz", 64, "--project", tmp_path / "runs", "--name", "p", "--save-txt"]
    folders = []
    for extra in ([], [], ["--exist-ok"]):
        result = run(*args, *extra)
        assert result.exit_code == 0, result.output
        folders.append(result.output.strip().splitlines()[-1])
    assert folders == [f"results saved to {tmp_path / 'runs' / name}" for name in ("p", "p2", "p")]
