"""Fine-tuning an interrupted Ultralytics run: its ``last.pt``'s optimizer state carried into edgeseg's optimizer.

The fixture is a genuine Ultralytics 8.4.190 ``last.pt`` of a YOLO26-seg run stopped after 2 of 5
epochs, and the known answers were read from Ultralytics' live optimizer in that run
(``tests/fixtures/ultralytics/make_interrupted.py``).
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgeseg.cli import main
from edgeseg.data.synth import synthesize
from edgeseg.interop.ultralytics_optimizer import optimizer_kind, rebuilt_groups, ultralytics_optimizer_state
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.train.trainer import Trainer

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ultralytics"
INTERRUPTED = FIXTURES / "yolo26-seg-tiny-u8.4.190-interrupted.pt"
ANSWERS = np.load(FIXTURES / "yolo26-seg-tiny-u8.4.190-interrupted.optimizer.npz")
FINISHED = FIXTURES / "yolo26-seg-tiny-u8.4.190.pt"


def answers() -> dict[str, dict[str, np.ndarray]]:
    """``{parameter key: {state name: value}}`` as Ultralytics' optimizer held them."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for key in ANSWERS.files:
        if key != "groups":
            name, state = key.rsplit("/", 1)
            out.setdefault(name, {})[state] = ANSWERS[key]
    return out


def test_state_is_read_per_parameter_as_ultralytics_held_it():
    kind, state = ultralytics_optimizer_state(INTERRUPTED)
    assert kind == "AdamW" and len(state) == ANSWERS["groups"].sum() == 442
    for name, expected in answers().items():
        assert set(state[name]) == set(expected)
        for key, value in expected.items():
            np.testing.assert_array_equal(state[name][key].numpy(), value, err_msg=f"{name} {key}")
    assert ultralytics_optimizer_state(FINISHED) is None  # Ultralytics strips a finished run's optimizer


def test_groups_are_rebuilt_in_ultralytics_order():
    owners = {"model.0.conv.weight": "torch.nn.modules.conv.Conv2d", "model.0.bn.weight": "torch.nn.modules.batchnorm.BatchNorm2d",
              "model.0.bn.bias": "torch.nn.modules.batchnorm.BatchNorm2d", "model.1.cv3.0.weight": "torch.nn.modules.conv.Conv2d",
              "model.1.cv3.0.bias": "torch.nn.modules.conv.Conv2d", "model.1.scale": "x.Layer"}  # fmt: skip
    dims = {"model.0.conv.weight": 4, "model.0.bn.weight": 1, "model.0.bn.bias": 1, "model.1.cv3.0.weight": 4, "model.1.cv3.0.bias": 1, "model.1.scale": 1}
    assert rebuilt_groups(owners, dims, muon=False) == [
        ("weight", ["model.0.conv.weight", "model.1.cv3.0.weight", "model.1.scale"]),
        ("bn", ["model.0.bn.weight"]),
        ("bias", ["model.0.bn.bias", "model.1.cv3.0.bias"]),
    ]
    assert rebuilt_groups(owners, dims, muon=True) == [  # model.1 is the head: its cv3 learns at 3x lr, first in each pair
        ("weight", []), ("weight", ["model.1.scale"]), ("bn", []), ("bn", ["model.0.bn.weight"]),
        ("bias", ["model.1.cv3.0.bias"]), ("bias", ["model.0.bn.bias"]),
        ("muon", ["model.1.cv3.0.weight"]), ("muon", ["model.0.conv.weight"]),
    ]  # fmt: skip
    assert [optimizer_kind([g]) for g in ({"betas": 1, "decoupled_weight_decay": True}, {"betas": 1}, {"nesterov": True}, {"alpha": 0.99})] == [
        "AdamW", "Adam", "SGD", None
    ]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("finetune"), n_train=8, n_val=2, seed=0, progress=False)


def test_fine_tuning_starts_from_the_state_and_a_different_optimizer_starts_fresh(data, tmp_path, caplog):
    caplog.set_level("INFO", logger="edgeseg")
    trainer = Trainer(dict(model=str(INTERRUPTED), data=str(data), epochs=1, imgsz=64, batch=4, workers=0, plots=False, project=str(tmp_path)))
    trainer._setup()
    params = dict(trainer.net.named_parameters())
    for name, expected in answers().items():
        for key, value in expected.items():
            np.testing.assert_array_equal(trainer.optimizer.state[params[name]][key].numpy(), value, err_msg=f"{name} {key}")
    assert "optimizer state: 442 of 442 parameters start from" in caplog.text
    sgd = Trainer(dict(model=str(INTERRUPTED), data=str(data), epochs=1, imgsz=64, batch=4, workers=0, plots=False, project=str(tmp_path), optimizer="SGD"))
    sgd._setup()
    assert not sgd.optimizer.state and "its optimizer state is AdamW's, this run's optimizer SGD: it starts fresh" in caplog.text


def test_cli_fine_tune_of_an_interrupted_run_trains_on_from_its_state(data, tmp_path):
    done = CliRunner().invoke(main, ["train", "--model", str(INTERRUPTED), "--data", str(data), "--epochs", "1", "--imgsz", "64",
                                     "--batch", "4", "--workers", "0", "--no-plots", "--project", str(tmp_path), "--name", "ft"])  # fmt: skip
    assert done.exit_code == 0, done.output
    steps = torch.load(tmp_path / "ft" / "weights" / "last.pt", weights_only=True)["optimizer"]["state"][0]["step"]
    assert float(steps) == float(ANSWERS["model.0.conv.weight/step"]) + 2  # Adam's step count goes on from Ultralytics' 3: 2 batches, 2 steps


def test_a_state_that_does_not_fit_its_model_is_refused(tmp_path, monkeypatch):
    from edgeseg.interop import ultralytics_optimizer

    real = ultralytics_optimizer.rebuilt_groups
    monkeypatch.setattr(ultralytics_optimizer, "rebuilt_groups", lambda *a: [(k, names[1:]) for k, names in real(*a)])
    with pytest.raises(EdgesegError, match=r"interrupted.pt: its optimizer's parameter groups \[\('weight', 154\)"):
        ultralytics_optimizer_state(INTERRUPTED)
