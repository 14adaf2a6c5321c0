"""Kills and resumes from the command line: SIGTERM leaves nothing partial, SIGKILL's leftovers are cleaned,
``edgeseg train --resume`` continues to the same weights, and only inside the resumed run's folder."""

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import edgeseg
from edgeseg.data.synth import CLASS_NAMES, synthesize

pytestmark = pytest.mark.slow

TRAIN = ["--epochs", "3", "--imgsz", "64", "--batch", "4", "--workers", "0", "--close-mosaic", "1", "--no-plots"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("tiny"), n_train=8, n_val=4, seed=3, progress=False)


def edgeseg_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    """Run ``python -m edgeseg ARGS`` to the end."""
    return subprocess.run([sys.executable, "-m", "edgeseg", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=ENV)


def start(*args, cwd=None) -> subprocess.Popen:
    """Start ``python -m edgeseg ARGS`` in the background."""
    return subprocess.Popen([sys.executable, "-m", "edgeseg", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=ENV)


def wait_for(condition, timeout: float = 120.0) -> None:
    """Poll ``condition()`` every 50 ms until it is true."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.05)


def dead_pid() -> int:
    """The id of a process that has exited."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _weights(path: Path) -> dict:
    ckpt = torch.load(path, weights_only=True)
    return {"ema": ckpt["state_dict"], "raw": ckpt["model_state"], "opt": ckpt["optimizer"]["state"], "epoch": ckpt["epoch"]}


def test_train_resume_after_sigkill_matches_an_uninterrupted_run(tiny_data, tmp_path):
    full = edgeseg_cli("train", "--data", tiny_data, *TRAIN, "--project", tmp_path, "--name", "full")
    assert full.returncode == 0, full.stderr[-2000:]

    proc = start("train", "--data", tiny_data, *TRAIN, "--project", tmp_path, "--name", "killed")
    last = tmp_path / "killed" / "weights" / "last.pt"
    wait_for(lambda: last.exists() or proc.poll() is not None)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _weights(last)["epoch"] < 2, "the run ended before it could be killed"
    stale = last.with_name(f".last.pt.{dead_pid()}.abcd1234.tmp")
    stale.write_bytes(b"half a checkpoint")

    resumed = edgeseg_cli("train", "--resume", last)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Traceback" not in resumed.stderr
    assert not stale.exists()
    a, b = _weights(tmp_path / "full" / "weights" / "last.pt"), _weights(last)
    assert a["epoch"] == b["epoch"] == 2
    for part in ("ema", "raw"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part} {key} differs"
    for index, state in a["opt"].items():
        for name, value in state.items():
            assert torch.equal(value, b["opt"][index][name]), f"optimizer state {index}.{name} differs"
    assert sorted(p.name for p in (tmp_path / "killed" / "weights").iterdir()) == ["best.pt", "last.pt"]


def test_resume_writes_only_beside_the_resumed_checkpoint(tiny_data, tmp_path):
    run = edgeseg_cli("train", "--data", tiny_data, *TRAIN, "--epochs", "1", "--project", tmp_path / "runs", "--name", "a")
    assert run.returncode == 0, run.stderr[-2000:]
    moved = tmp_path / "moved"
    (tmp_path / "runs" / "a").rename(moved)
    ckpt = torch.load(moved / "weights" / "last.pt", weights_only=True)
    outside = tmp_path / "outside"
    ckpt["save_dir"] = str(outside)
    ckpt["train_args"].update(project=str(outside), name="evil")
    torch.save(ckpt, moved / "weights" / "last.pt")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (moved / "results.csv").unlink()
    (moved / "results.csv").symlink_to(victim)

    resumed = edgeseg_cli("train", "--resume", moved / "weights" / "last.pt", "--epochs", "2")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not outside.exists()
    assert victim.read_text() == "keep me\n"
    assert not (moved / "results.csv").is_symlink()
    assert (moved / "results.csv").read_text().count("\n") == 2  # header + epoch 2
    assert torch.load(moved / "weights" / "last.pt", weights_only=True)["epoch"] == 1


def slow_export_source(folder: Path) -> Path:
    """A yolo11s-seg checkpoint whose export at 640 px (trace, simplify, verify) takes seconds, time to be killed."""
    model = edgeseg.Model("yolo11s-seg.yaml", names=list(CLASS_NAMES))
    model.imgsz = 640
    return model.save(folder / "m.pt")


def test_sigterm_during_export_leaves_nothing(tmp_path):
    path = slow_export_source(tmp_path)
    proc = start("export", path)
    wait_for(lambda: any(p.name.startswith(".m.onnx.") for p in tmp_path.iterdir()) or proc.poll() is not None)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert err.strip().splitlines()[-1] == "error: terminated (SIGTERM); partial outputs were removed"
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_sigkill_leftovers_of_an_export_are_removed_by_the_next_one(tmp_path):
    path = slow_export_source(tmp_path)
    proc = start("export", path)
    wait_for(lambda: any(p.name.startswith(".m.onnx.") for p in tmp_path.iterdir()) or proc.poll() is not None)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".m.onnx.")]
    assert leftovers, "the export finished before it could be killed"
    again = edgeseg_cli("export", path, "--imgsz", "64", "--no-verify")
    assert again.returncode == 0, again.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.pt"]


def test_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = edgeseg.Model("yolo11n-seg.yaml").save(tmp_path / "m.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
