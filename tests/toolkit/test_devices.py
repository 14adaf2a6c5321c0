"""The default device (first CUDA GPU, else the CPU, logged) and Ultralytics' names on ``edgeseg.Model``.

CUDA is faked (``torch.cuda.is_available`` / onnxruntime's provider list): this machine has no GPU.
"""

import logging

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import edgeseg
from edgeseg.cli import main
from edgeseg.data.synth import CLASS_NAMES
from edgeseg.devices import default_device, device_ids
from edgeseg.runtimes.backends import base
from edgeseg.runtimes.backends import onnx as onnx_backend
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.runtime import Runtime
from edgeseg.train import distributed

CUDA_LOG = "device: cuda:0 (the first CUDA GPU torch sees; --device cpu forces the CPU)"
CPU_LOG = "device: cpu (torch sees no CUDA GPU; --device cpu forces the CPU)"


@pytest.fixture(autouse=True)
def fresh_log(monkeypatch):
    """Each test sees the choice logged afresh (a process logs each choice once)."""
    monkeypatch.setattr(base, "_LOGGED_CHOICES", set())


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch sees one CUDA GPU (``set_device`` does nothing)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: None)


def test_default_is_the_first_cuda_gpu_logged(fake_cuda, caplog):
    caplog.set_level(logging.INFO, logger="edgeseg")
    assert default_device(None) == "cuda:0" and CUDA_LOG in caplog.text
    assert distributed.select_device(None) == torch.device("cuda", 0)  # training takes it too
    caplog.clear()
    assert default_device(None) == "cuda:0" and "device:" not in caplog.text  # logged once per process
    assert default_device("cpu") == "cpu" and distributed.select_device("cpu") == torch.device("cpu")
    assert "device:" not in caplog.text  # a given device is not second-guessed


def test_torchrun_without_device_gives_each_process_its_local_gpu(fake_cuda, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.select_device(None, rank=1) == torch.device("cuda", 1)
    assert distributed.select_device("0,1", rank=1) == torch.device("cuda", 1)
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(EdgesegError, match="LOCAL_RANK 2: only 2 CUDA device"):
        distributed.select_device(None, rank=2)


def test_default_is_the_cpu_without_cuda(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    caplog.set_level(logging.INFO, logger="edgeseg")
    assert default_device(None) == "cpu" and CPU_LOG in caplog.text
    assert distributed.select_device(None) == torch.device("cpu")
    with pytest.raises(EdgesegError, match="CUDA is not available"):
        distributed.select_device("0")


@pytest.mark.parametrize("providers, expected", [(["CUDAExecutionProvider", "CPUExecutionProvider"], "cuda:0"), (["CPUExecutionProvider"], "cpu")])
def test_onnx_default_follows_what_onnxruntime_has(monkeypatch, caplog, providers, expected):
    caplog.set_level(logging.INFO, logger="edgeseg")
    monkeypatch.setattr(onnx_backend.ort, "get_available_providers", lambda: providers)
    monkeypatch.setattr(onnx_backend, "OnnxBackend", lambda path, device: device)
    assert onnx_backend.load("m.onnx") == expected and f"device: {expected} (" in caplog.text
    assert onnx_backend.load("m.onnx", "cpu") == "cpu"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return edgeseg.Model("yolo11n-seg.yaml", names=list(CLASS_NAMES)).save(tmp_path_factory.mktemp("m") / "m.pt")


def test_cli_logs_the_default_and_passes_it_on(checkpoint, tmp_path, monkeypatch, fake_cuda):
    """``edgeseg predict`` without --device: the .pt backend is asked for cuda:0 (faked here), with the log line."""
    from edgeseg.nn import backend

    seen = []

    class Stop(Exception):
        pass

    def record(net, meta, path, device):
        seen.append(device)
        raise Stop

    monkeypatch.setattr(backend, "TorchBackend", record)
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.full((64, 96, 3), 90, np.uint8))
    result = CliRunner().invoke(main, ["predict", str(checkpoint), str(image), "--project", str(tmp_path)])
    assert "internal error: Stop" in result.output and seen == ["cuda:0"]  # the CLI reports the stand-in's exception
    result = CliRunner().invoke(main, ["predict", str(checkpoint), str(image), "--device", "cpu", "--project", str(tmp_path)])
    assert seen == ["cuda:0", "cpu"]


def test_cli_without_cuda_runs_on_the_cpu(checkpoint, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    caplog.set_level(logging.INFO, logger="edgeseg")
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.full((64, 96, 3), 90, np.uint8))
    result = CliRunner().invoke(main, ["predict", str(checkpoint), str(image), "--project", str(tmp_path), "--name", "p"])
    assert result.exit_code == 0, result.output
    assert CPU_LOG in caplog.text and (tmp_path / "p" / "a.png").is_file()


def test_ultralytics_names_on_model(checkpoint, tmp_path, monkeypatch):
    model = edgeseg.Model(checkpoint)
    assert model.model is model.net and isinstance(model.model, torch.nn.Module) and model.task == "segment"
    artifact = model.export(format="onnx", half=True, imgsz=64, out=tmp_path / "m.onnx", verify=False)
    assert artifact.target == "onnx" and artifact.precision == "fp16"
    with pytest.raises(EdgesegError, match="give one precision"):
        model.export(format="onnx", half=True, int8=True, out=tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
    seen = []
    monkeypatch.setattr(Runtime, "predict", lambda self, source, **kwargs: seen.append(kwargs))
    monkeypatch.setattr(Runtime, "track", lambda self, source, **kwargs: seen.append(kwargs))
    model.predict("x.png", conf=0.5, agnostic_nms=True)
    model.track("x.mp4", agnostic_nms=False)
    assert seen == [{"conf": 0.5, "agnostic": True}, {"agnostic": False}]


@pytest.mark.parametrize(
    "spelling, ids",
    [(None, ["cpu"]), ("cpu", ["cpu"]), (" CPU ", ["cpu"]), (0, ["0"]), ("1", ["1"]), ("cuda", ["0"]), ("cuda:2", ["2"]), ("0,1", ["0", "1"]), ("cuda:0, cuda:1", ["0", "1"])],
)
def test_device_ids_read_every_spelling_parse_device_reads(spelling, ids):
    assert device_ids(spelling) == ids


@pytest.mark.parametrize("spelling, message", [("gpu", "unknown device 'gpu'"), ("0,cpu", "give the CPU alone"), ("-1", "unknown device '-1'")])
def test_device_ids_refuse_bad_spellings(spelling, message):
    with pytest.raises(EdgesegError, match=message):
        device_ids(spelling)
