"""Checkpoints: exact round trip, refusal of code-running pickles, atomic writes."""

import os
from pathlib import Path

import pytest
import torch

import edgeseg
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.nn import checkpoint as ckpt_io


class _RunsACommand:
    """A pickle payload that would create a file if it were ever unpickled unsafely."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_round_trip_reproduces_outputs_exactly(tmp_path):
    torch.manual_seed(1)
    model = edgeseg.Model("yolo11n-seg.yaml", names=["a", "b", "c"])
    path = model.save(tmp_path / "m.pt", epoch=3)
    loaded = edgeseg.Model(path)
    x = torch.rand(1, 3, 160, 224)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert loaded.names == {0: "a", 1: "b", 2: "c"}
    assert loaded.checkpoint["epoch"] == 3
    assert loaded.checkpoint["stride"] == [8, 16, 32]
    raw = torch.load(path, weights_only=True)
    assert set(raw) >= {"config", "state_dict", "names", "imgsz", "stride", "version", "date"}


def test_code_running_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"config": {}, "state_dict": {}, "names": {}, "payload": _RunsACommand(marker)}, evil)
    with pytest.raises(EdgesegError, match="refused to load.*system"):
        edgeseg.Model(evil)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [(b"", "not a PyTorch checkpoint \\(neither a zip archive nor a pickle\\)"), (b"\x80\x04garbage", "a plain pickle, not a PyTorch zip checkpoint")],
)
def test_corrupt_files_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(EdgesegError, match=message) as info:
        edgeseg.Model(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_plain_state_dict_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save({"model.0.conv.weight": torch.zeros(1)}, path)
    with pytest.raises(EdgesegError, match="not an edgeseg checkpoint"):
        edgeseg.Model(path)


def test_interrupted_save_leaves_the_old_file_intact(tmp_path, monkeypatch):
    model = edgeseg.Model("yolo11n-seg.yaml", nc=2)
    path = model.save(tmp_path / "last.pt", epoch=1)
    before = path.read_bytes()

    def dies_half_way(obj, f):
        f.write(b"partial bytes")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_io.torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        model.save(path, epoch=2)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
