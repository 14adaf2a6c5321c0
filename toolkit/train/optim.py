"""Optimiser, learning-rate schedule, warmup and EMA, with Ultralytics' defaults.

Iteration counts are in batches; learning rates are absolute values.
"""

import copy
import math

import numpy as np
import torch
from torch import nn

from edgeseg.train.musgd import MuSGD

NOMINAL_BATCH = 64  # gradients are accumulated up to this many images per optimiser step


def accumulation_steps(batch: int) -> int:
    """Batches per optimiser step so that a step sees about NOMINAL_BATCH images."""
    return max(round(NOMINAL_BATCH / batch), 1)


def parameter_groups(model: nn.Module) -> tuple[list, list, list]:
    """Split parameters into (weights with decay, BatchNorm weights, biases); the last two get no decay."""
    decay, bn_weights, biases = [], [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if name == "bias":
                biases.append(param)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                bn_weights.append(param)
            else:
                decay.append(param)
    return decay, bn_weights, biases


def build_optimizer(
    model: nn.Module,
    name: str = "auto",
    lr0: float = 0.01,
    momentum: float = 0.937,
    weight_decay: float = 0.0005,
    iterations: int = 0,
    nc: int = 80,
) -> tuple[torch.optim.Optimizer, dict]:
    """The optimiser with three parameter groups: [biases, decayed weights, BatchNorm weights] (MuSGD: ``musgd_groups``).

    ``name="auto"`` chooses as Ultralytics does: for runs longer than 10,000 iterations MuSGD for
    a YOLO26 (a head with a one-to-one branch) and SGD for the others, both at lr 0.01 and
    momentum 0.9; else AdamW with lr ``round(0.002 * 5 / (4 + nc), 6)`` and momentum 0.9.
    Bias groups carry ``"bias": True`` (``warmup`` ramps their lr down from ``warmup_bias_lr``).

    Returns:
        (optimizer, choice) where ``choice`` = ``{"name", "lr0", "momentum", "auto"}``.
    """
    auto = name.lower() == "auto"
    if auto:
        if iterations > 10000:
            end2end = getattr(getattr(model, "head", None), "has_one2one", False)
            name, lr0, momentum = ("MuSGD" if end2end else "SGD"), 0.01, 0.9
        else:
            name, lr0, momentum = "AdamW", round(0.002 * 5 / (4 + nc), 6), 0.9
    key = name.lower()
    if key == "musgd":
        optimizer = MuSGD(musgd_groups(model, lr0, weight_decay), lr=lr0, momentum=momentum)
        for group in optimizer.param_groups:
            group["initial_lr"] = group["lr"]
            group.setdefault("bias", False)
        return optimizer, {"name": "MuSGD", "lr0": lr0, "momentum": momentum, "auto": auto}
    decay, bn_weights, biases = parameter_groups(model)
    if key in ("adam", "adamw"):
        optimizer_cls = torch.optim.AdamW if key == "adamw" else torch.optim.Adam
        optimizer = optimizer_cls(biases, lr=lr0, betas=(momentum, 0.999), weight_decay=0.0)
    elif key == "sgd":
        optimizer = torch.optim.SGD(biases, lr=lr0, momentum=momentum, nesterov=True)
    else:
        raise ValueError(f"unknown optimizer '{name}' (use auto, SGD, MuSGD, Adam or AdamW)")
    optimizer.param_groups[0]["bias"] = True
    optimizer.add_param_group({"params": decay, "weight_decay": weight_decay})
    optimizer.add_param_group({"params": bn_weights, "weight_decay": 0.0})
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
        group.setdefault("bias", False)
    return optimizer, {"name": type(optimizer).__name__, "lr0": lr0, "momentum": momentum, "auto": auto}


def carry_state(optimizer: torch.optim.Optimizer, model: nn.Module, state: dict[str, dict[str, torch.Tensor]]) -> int:
    """Give ``model``'s parameters their entries of ``state`` (``{parameter key: {state name: tensor}}``) in ``optimizer``.

    A parameter whose entry has another shape (a head rebuilt for other classes) or none keeps an
    empty state, which the optimizer fills at its first step. The caller checks that ``state``
    comes from the same kind of optimizer. ``step`` stays on the CPU, the rest moves to the parameter's device.

    Returns:
        The number of parameters that got a state.
    """
    carried = 0
    for name, param in model.named_parameters():
        entry = state.get(name)
        if not entry or any(key != "step" and value.shape != param.shape for key, value in entry.items()):
            continue
        optimizer.state[param] = {key: value.clone() if key == "step" else value.to(param.device, copy=True) for key, value in entry.items()}
        carried += 1
    return carried


def musgd_groups(model: nn.Module, lr0: float, weight_decay: float) -> list[dict]:
    """MuSGD's parameter groups, as Ultralytics 8.4 builds them.

    Conv and linear weights (2-D and 4-D) take the Muon + SGD update with weight decay
    (``use_muon``); biases and BatchNorm weights plain SGD without decay; any other weight plain
    SGD with decay. Each group is split once more: the class branches of the head (``cv3``,
    ``one2one_cv3``) and ``Proto26``'s semantic branch learn at 3 x ``lr0``. Empty groups are left out.
    """
    head = getattr(model, "head", None)
    boosted = {
        id(p) for name in ("cv3", "one2one_cv3") for p in (getattr(head, name).parameters() if hasattr(head, name) else ())
    } | {id(p) for p in (head.proto.semseg.parameters() if hasattr(getattr(head, "proto", None), "semseg") else ())}
    kinds = {"muon": [], "bias": [], "bn": [], "decay": []}
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if param.ndim in (2, 4):
                kinds["muon"].append(param)
            elif name == "bias":
                kinds["bias"].append(param)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                kinds["bn"].append(param)
            else:
                kinds["decay"].append(param)
    settings = {
        "muon": {"weight_decay": weight_decay, "use_muon": True},
        "bias": {"weight_decay": 0.0, "bias": True},
        "bn": {"weight_decay": 0.0},
        "decay": {"weight_decay": weight_decay},
    }
    groups = []
    for kind, params in kinds.items():
        for lr, chosen in ((lr0 * 3, [p for p in params if id(p) in boosted]), (lr0, [p for p in params if id(p) not in boosted])):
            if chosen:
                groups.append({"params": chosen, "lr": lr, **settings[kind]})
    return groups


def linear_lr(epoch: float, epochs: int, lrf: float) -> float:
    """LR multiplier: 1 at epoch 0, falling linearly to ``lrf`` at ``epochs``."""
    return max(1 - epoch / epochs, 0) * (1.0 - lrf) + lrf


def set_epoch_lr(optimizer: torch.optim.Optimizer, epoch: int, epochs: int, lrf: float) -> None:
    """Set every group's lr to ``initial_lr * linear_lr(epoch)`` (the per-epoch schedule)."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * linear_lr(epoch, epochs, lrf)


def warmup(
    optimizer: torch.optim.Optimizer,
    iteration: int,
    warmup_iterations: int,
    epoch_factor: float,
    momentum: float,
    warmup_momentum: float = 0.8,
    warmup_bias_lr: float = 0.1,
) -> None:
    """Ramp lrs (biases from ``warmup_bias_lr`` down, others from 0 up) and SGD momentum over the first iterations.

    Args:
        iteration: batches done since the start of training.
        warmup_iterations: batches the warmup lasts.
        epoch_factor: ``linear_lr(epoch)`` of the current epoch.
        momentum: the SGD momentum reached at the end of warmup (Adam's betas are left alone).
    """
    xi = [0, warmup_iterations]
    for j, group in enumerate(optimizer.param_groups):
        start = warmup_bias_lr if group.get("bias", j == 0) else 0.0  # a checkpoint from before the flag: biases first
        group["lr"] = float(np.interp(iteration, xi, [start, group["initial_lr"] * epoch_factor]))
        if "momentum" in group:
            group["momentum"] = float(np.interp(iteration, xi, [warmup_momentum, momentum]))


class ModelEMA:
    """Exponential moving average of a model's float state (weights and BatchNorm statistics).

    ``decay(updates) = decay * (1 - exp(-updates / tau))`` ramps the averaging in early training.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000, updates: int = 0):
        self.ema = copy.deepcopy(model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.updates = updates

    def update(self, model: nn.Module) -> None:
        """Blend the current model's float state into the average (call after each optimiser step)."""
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        current = model.state_dict()
        with torch.no_grad():
            for key, value in self.ema.state_dict().items():
                if value.dtype.is_floating_point:
                    value.mul_(d).add_(current[key].detach(), alpha=1 - d)
