"""Training: exact resume, outputs, bad data, the CLI and DDP."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

import edgeseg
from edgeseg.cli import main
from edgeseg.data.synth import synthesize
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.train.trainer import Trainer

import helpers

TINY = dict(epochs=3, imgsz=64, batch=4, workers=0, plots=False, close_mosaic=1)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("tiny"), n_train=8, n_val=4, seed=3, progress=False)


def _weights(path: Path) -> dict:
    ckpt = torch.load(path, weights_only=True)
    return {"ema": ckpt["state_dict"], "raw": ckpt["model_state"], "opt": ckpt["optimizer"]["state"]}


def _assert_bit_identical(a: dict, b: dict) -> None:
    for part in ("ema", "raw"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part} {key} differs"
    for index, state in a["opt"].items():
        for name, value in state.items():
            assert torch.equal(value, b["opt"][index][name]), f"optimizer state {index}.{name} differs"


class _Interrupt(Exception):
    """Stands in for a kill between epochs."""


@pytest.mark.parametrize(
    "model",
    [{}, {"model": "yolo26n-seg.yaml", "optimizer": "MuSGD"}],  # YOLO26: its per-epoch loss weights and MuSGD's two buffers resume too
    ids=["yolo11", "yolo26-musgd"],
)
def test_interrupted_and_resumed_run_is_bit_identical(tiny_data, tmp_path, model):
    full = Trainer({**TINY, **model, "data": str(tiny_data), "project": str(tmp_path), "name": "full"})
    full.train()

    broken = Trainer({**TINY, **model, "data": str(tiny_data), "project": str(tmp_path), "name": "broken"})

    def stop_after_first_epoch(trainer):
        if trainer.last.exists() and torch.load(trainer.last, weights_only=True)["epoch"] == 0:
            raise _Interrupt

    broken.callbacks["on_epoch_end"].append(stop_after_first_epoch)
    with pytest.raises(_Interrupt):
        broken.train()
    resumed = Trainer(resume=broken.last)
    resumed.train()
    assert resumed.save_dir == broken.save_dir
    _assert_bit_identical(_weights(full.last), _weights(resumed.last))
    with open(resumed.save_dir / "results.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]


KILLED_MID_EPOCH = """
import os, signal, sys
from edgeseg.cli import main
from edgeseg.train.trainer import Trainer

train_step, calls = Trainer._train_step, []

def killed_before_batch(self, batch):
    calls.append(1)
    if len(calls) == int(os.environ["KILL_AT_BATCH"]):
        os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer or a power cut would: no cleanup runs
    return train_step(self, batch)

Trainer._train_step = killed_before_batch
sys.exit(main())
"""


def _losses(run: Path) -> list[list[float]]:
    """results.csv's loss columns, one row per epoch."""
    with open(run / "results.csv") as f:
        return [[float(v) for k, v in row.items() if k.startswith("train/")] for row in csv.DictReader(f)]


def test_cli_yolo26_run_killed_mid_epoch_resumes_on_the_unbroken_loss_curve(tiny_data, tmp_path):
    """SIGKILL in the 2nd batch of epoch 2 (4 batches per epoch); ``edgeseg train --resume last.pt`` redoes epoch 2 from epoch 1's state."""
    args = ["train", "--model", "yolo26n-seg.yaml", "--data", str(tiny_data), "--epochs", "3", "--imgsz", "64", "--batch", "2",
            "--workers", "0", "--close-mosaic", "1", "--no-plots", "--project", str(tmp_path)]  # fmt: skip
    unbroken = subprocess.run([sys.executable, "-m", "edgeseg", *args, "--name", "unbroken"], capture_output=True, text=True)
    assert unbroken.returncode == 0, unbroken.stderr[-2000:]
    env = {**os.environ, "KILL_AT_BATCH": "6"}
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_EPOCH, *args, "--name", "killed"], capture_output=True, text=True, env=env)
    assert killed.returncode == -9
    last = tmp_path / "killed" / "weights" / "last.pt"
    assert torch.load(last, weights_only=True)["epoch"] == 0 and len(_losses(tmp_path / "killed")) == 1
    resumed = subprocess.run([sys.executable, "-m", "edgeseg", "train", "--resume", str(last)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected, got = _losses(tmp_path / "unbroken"), _losses(tmp_path / "killed")
    assert len(got) == len(expected) == 3 and len(got[0]) == 5  # box, seg, cls, l1, sem
    assert torch.allclose(torch.tensor(got), torch.tensor(expected), rtol=1e-6, atol=0)


def test_run_folder_contents_and_checkpoint_metadata(tiny_data, tmp_path):
    metrics = edgeseg.Model("yolo11n-seg.yaml").train(
        tiny_data, **{**TINY, "epochs": 2, "plots": True}, project=tmp_path, name="run"
    )  # paths as Path objects: stored as strings
    run = tmp_path / "run"
    assert {"args.yaml", "results.csv", "weights", "results.png", "BoxPR_curve.png", "MaskPR_curve.png",
            "train_batch0.png", "val_predictions.png"} <= {p.name for p in run.iterdir()}
    args = yaml.safe_load((run / "args.yaml").read_text())
    assert args["epochs"] == 2 and args["imgsz"] == 64 and args["project"] == str(tmp_path) and args["data"] == str(tiny_data)
    best = torch.load(run / "weights" / "best.pt", weights_only=True)
    assert "optimizer" not in best and best["names"][0] == "circle" and best["imgsz"] == 64
    last = torch.load(run / "weights" / "last.pt", weights_only=True)
    assert last["epoch"] == 1 and "optimizer" in last
    assert 0.0 <= metrics.seg.map <= metrics.seg.map50 <= 1.0
    with open(run / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and float(rows[0]["train/box_loss"]) > 0
    assert "metrics/mAP50-95(M)" in rows[0] and "lr/pg0" in rows[0]


def test_without_val_best_is_the_lowest_loss_epoch(tiny_data, tmp_path):
    """Without val, fitness is minus the summed loss (negative): the first epoch is already a best, and patience counts from there."""
    trainer = Trainer({**TINY, "val": False, "patience": 2, "data": str(tiny_data), "project": str(tmp_path), "name": "noval"})
    trainer.train()
    with open(trainer.save_dir / "results.csv") as f:
        sums = [sum(float(v) for k, v in row.items() if k.startswith("train/")) for row in csv.DictReader(f)]
    best = torch.load(trainer.best, weights_only=True)
    assert len(sums) == 3 and best["epoch"] == sums.index(min(sums)) and best["best_fitness"] == pytest.approx(-min(sums), rel=1e-6)


def test_resume_of_a_finished_run_is_refused(tiny_data, tmp_path):
    trainer = Trainer({**TINY, "epochs": 1, "data": str(tiny_data), "project": str(tmp_path), "name": "done"})
    trainer.train()
    with pytest.raises(EdgesegError, match="already finished"):
        Trainer(resume=trainer.last).train()


def test_bad_labels_are_counted_and_training_goes_on(tmp_path, caplog):
    data = synthesize(tmp_path / "ds", n_train=6, n_val=2, seed=1, progress=False)
    labels = tmp_path / "ds" / "labels" / "train"
    images = tmp_path / "ds" / "images" / "train"
    (images / "000000.png").write_bytes(b"not an image")
    (labels / "000001.txt").write_text("")
    (labels / "000002.txt").write_text("0 0.1 0.1 0.5 0.1 0.5\n")
    (labels / "000003.txt").write_text("9 0.1 0.1 0.5 0.1 0.5 0.5\n")
    with caplog.at_level("INFO", logger="edgeseg"):
        Trainer({**TINY, "epochs": 1, "data": str(data), "project": str(tmp_path), "name": "bad"}).train()
    log = caplog.text
    assert "6 images, 2 labels found, 0 missing, 1 empty, 3 corrupt" in log
    for name in ("000000.png", "000002.txt", "000003.txt"):
        assert name in log
    assert (tmp_path / "bad" / "weights" / "last.pt").exists()


def test_cli_train_errors_are_one_line(tmp_path):
    runner = CliRunner()
    bad = tmp_path / "data.yaml"
    bad.write_text(f"path: {tmp_path}\ntrain: images\nnames: [a]\n")
    result = runner.invoke(main, ["train", "--data", str(bad), "--epochs", "1"])
    assert result.exit_code == 1 and "missing 'val' key" in result.output and "Traceback" not in result.output
    result = runner.invoke(main, ["train", "--data", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1 and "data YAML not found" in result.output
    result = runner.invoke(main, ["train"])
    assert result.exit_code == 1 and "needs a data YAML" in result.output


@pytest.mark.parametrize("model", ["yolo11n-seg.yaml", "yolo26n-seg.yaml"])
def test_ddp_two_cpu_processes_write_one_set_of_checkpoints(tiny_data, tmp_path, model):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "edgeseg",
         "train", "--model", model, "--data", str(tiny_data), "--epochs", "1", "--imgsz", "64", "--batch", "4", "--workers", "0",
         "--no-plots", "--project", str(tmp_path), "--name", "ddp"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = sorted(p.name for p in tmp_path.iterdir())
    assert runs == ["ddp"]
    assert sorted(p.name for p in (tmp_path / "ddp" / "weights").iterdir()) == ["best.pt", "last.pt"]
    assert proc.stderr.count("closing mosaic") + proc.stdout.count("closing mosaic") == 1


def test_training_learns_masks(tmp_path):
    """Memorise 8 images with two big shapes each: mask mAP50 goes from 0 (untrained) to > 0.5."""
    from edgeseg.data.synth import CLASS_NAMES

    data = helpers.memorise_set(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        untrained = edgeseg.Model("yolo11n-seg.yaml", names=list(CLASS_NAMES)).val(data=str(data), imgsz=128)
        metrics = edgeseg.Model("yolo11n-seg.yaml").train(
            str(data), epochs=150, imgsz=128, batch=8, workers=0, plots=False, warmup_epochs=0, mosaic=0.0,
            scale=0.2, close_mosaic=0, optimizer="AdamW", lr0=0.002, amp=False, project=str(tmp_path), name="learn",
        )
    finally:
        torch.set_num_threads(threads)
    assert untrained.seg.map50 < 0.01
    assert metrics.seg.map50 > 0.5 and metrics.box.map50 > 0.5
    assert metrics.seg.map > 0.25


def test_thread_count_is_the_process_share_of_usable_cpus(monkeypatch):
    from edgeseg.train import trainer

    monkeypatch.setattr(trainer, "usable_cpus", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert trainer.compute_threads(0, 1) == 4
    assert trainer.compute_threads(0, 2) == 2  # two CPU DDP processes split the CPUs
    assert trainer.compute_threads(0, 8) == 1
    assert trainer.compute_threads(3, 2) == 3  # an explicit count wins
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert trainer.compute_threads(0, 1) == 1  # so does the environment's
    assert trainer.compute_threads(3, 1) == 3


def test_cli_threads_sets_torch_threads_and_is_checked(tiny_data, tmp_path):
    before = torch.get_num_threads()
    try:
        result = CliRunner().invoke(main, [
            "train", "--data", str(tiny_data), "--epochs", "1", "--imgsz", "64", "--batch", "4", "--workers", "0",
            "--no-plots", "--no-val", "--threads", "1", "--project", str(tmp_path), "--name", "t",
        ])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
        assert yaml.safe_load((tmp_path / "t" / "args.yaml").read_text())["threads"] == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(EdgesegError, match="threads must be an integer from 0 to 64"):
        Trainer({**TINY, "data": str(tiny_data), "threads": -1})
    result = CliRunner().invoke(main, ["train", "--data", str(tiny_data), "--threads", "65"])
    assert result.exit_code != 0 and "--threads" in result.output


def test_importing_edgeseg_makes_openmp_wait_passively_unless_told_otherwise():
    code = "import os, edgeseg; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == "ACTIVE"


def test_threads_follow_the_load_only_when_results_need_not_be_reproducible(tiny_data, tmp_path, monkeypatch, caplog):
    from edgeseg.train import trainer

    samples = []
    monkeypatch.setattr(trainer, "usable_cpus", lambda: 2)
    monkeypatch.setattr(trainer, "busy_cpus", lambda seconds: samples.append(seconds) or 1.2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        Trainer({**TINY, "epochs": 1, "data": str(tiny_data), "project": str(tmp_path), "name": "det"}).train()
        assert samples == [] and torch.get_num_threads() == 2
        with caplog.at_level("INFO", logger="edgeseg"):
            Trainer({**TINY, "epochs": 2, "deterministic": False, "data": str(tiny_data), "project": str(tmp_path), "name": "free"}).train()
        assert samples == [trainer.LOAD_SAMPLE_S] * 2  # before each epoch
        assert torch.get_num_threads() == 1
        assert "threads: 1 (other processes keep 1.2 of 2 CPUs busy)" in caplog.text
    finally:
        torch.set_num_threads(before)
