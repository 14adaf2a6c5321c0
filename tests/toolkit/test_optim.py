"""Optimiser choice, parameter groups, LR schedule, warmup and EMA against known values."""

import math

import pytest
import torch

from edgeseg.models.config import load_model_config
from edgeseg.nn.net import SegmentationNet
from edgeseg.train.optim import (
    ModelEMA,
    accumulation_steps,
    build_optimizer,
    linear_lr,
    parameter_groups,
    set_epoch_lr,
    warmup,
)


@pytest.fixture(scope="module")
def net():
    return SegmentationNet(load_model_config("yolo11n-seg.yaml", nc=5))


def test_parameter_groups_cover_everything_once(net):
    decay, bn, biases = parameter_groups(net)
    assert sum(p.numel() for g in (decay, bn, biases) for p in g) == sum(p.numel() for p in net.parameters())
    bn_count = sum(1 for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert len(bn) == bn_count
    assert all(p.ndim == 1 for p in biases) and all(p.ndim == 4 for p in decay)


def test_auto_optimizer_follows_run_length(net):
    optimizer, choice = build_optimizer(net, "auto", iterations=120, nc=5)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert choice["lr0"] == pytest.approx(0.001111) and choice["momentum"] == 0.9
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0, 0.0005, 0.0]
    optimizer, choice = build_optimizer(net, "auto", iterations=20000, nc=5)
    assert isinstance(optimizer, torch.optim.SGD) and choice["lr0"] == 0.01
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer(net, "Lion")


def test_linear_schedule_and_warmup_values(net):
    assert linear_lr(0, 100, 0.01) == 1.0
    assert linear_lr(50, 100, 0.01) == pytest.approx(0.505)
    assert linear_lr(100, 100, 0.01) == pytest.approx(0.01)
    optimizer, _ = build_optimizer(net, "SGD", lr0=0.01, momentum=0.937)
    set_epoch_lr(optimizer, 50, 100, 0.01)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.00505] * 3)
    warmup(optimizer, 0, 100, epoch_factor=1.0, momentum=0.937)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.1, 0.0, 0.0])
    assert optimizer.param_groups[0]["momentum"] == pytest.approx(0.8)
    warmup(optimizer, 50, 100, epoch_factor=1.0, momentum=0.937)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.055, 0.005, 0.005])
    assert optimizer.param_groups[1]["momentum"] == pytest.approx(0.8685)


def test_accumulation_reaches_nominal_batch():
    assert [accumulation_steps(b) for b in (1, 16, 32, 64, 128)] == [64, 4, 2, 1, 1]


def test_ema_decay_ramp():
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = ModelEMA(model, decay=0.9999, tau=2000)
    model.weight.data.fill_(1.0)
    ema.update(model)
    d = 0.9999 * (1 - math.exp(-1 / 2000))
    assert ema.ema.weight.flatten().tolist() == pytest.approx([1 - d, 1 - d])
    assert ema.updates == 1
