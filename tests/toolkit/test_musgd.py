"""MuSGD against its formula on small weights, and how optimizer=auto and the groups pick it for YOLO26."""

import math

import numpy as np
import pytest
import torch

from edgeseg.models.config import load_model_config
from edgeseg.nn.net import SegmentationNet
from edgeseg.train.musgd import MuSGD, newton_schulz
from edgeseg.train.optim import build_optimizer, warmup


def quintic(s: np.ndarray, steps: int = 5) -> np.ndarray:
    """What the Newton-Schulz iteration does to each singular value: s -> 3.4445 s - 4.7750 s^3 + 2.0315 s^5."""
    for _ in range(steps):
        s = 3.4445 * s - 4.7750 * s**3 + 2.0315 * s**5
    return s


def orthogonalised(g: np.ndarray) -> np.ndarray:
    """newton_schulz by the SVD: U diag(quintic(s / (||g||_F + 1e-7))) Vᵀ."""
    u, s, vt = np.linalg.svd(g, full_matrices=False)
    return u @ np.diag(quintic(s / (np.linalg.norm(g) + 1e-7))) @ vt


@pytest.mark.parametrize("shape", [(2, 2), (3, 5), (5, 3)])
def test_newton_schulz_acts_on_the_singular_values(shape):
    g = torch.randn(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    np.testing.assert_allclose(newton_schulz(g, dtype=torch.float64).numpy(), orthogonalised(g.numpy()), atol=1e-10)


def test_one_musgd_step_on_a_2x2_weight_is_the_formula():
    w0 = np.array([[0.5, -0.2], [0.1, 0.3]])
    g = np.array([[0.4, 0.1], [-0.3, 0.2]])
    lr, mu, wd = 0.01, 0.9, 0.05
    weight = torch.nn.Parameter(torch.tensor(w0))
    optimizer = MuSGD([{"params": [weight], "use_muon": True, "weight_decay": wd}], lr=lr, momentum=mu)
    weight.grad = torch.tensor(g)
    optimizer.step()
    # Muon: buffer (1 - mu) g, Nesterov direction mu * buffer + (1 - mu) g, orthogonalised, scale 1 (2 x 2), lr x 0.2
    direction = mu * (1 - mu) * g + (1 - mu) * g
    w1 = w0 - lr * 0.2 * orthogonalised(direction)
    # then Nesterov SGD with its own buffer on g + wd * w (the weight the Muon step left)
    g_sgd = g + wd * w1
    w2 = w1 - lr * (g_sgd + mu * g_sgd)
    np.testing.assert_allclose(weight.detach().numpy(), w2, atol=1e-6)


def test_without_muon_a_group_takes_the_sgd_step_alone():
    weight = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    optimizer = MuSGD([weight], lr=0.1, momentum=0.5, weight_decay=0.0)
    for expected in ([0.85, 1.7], [0.675, 1.35]):  # g = (1, 2): buffer g, step 1.5 g; then buffer 1.5 g, step g + 0.75 g
        weight.grad = torch.tensor([1.0, 2.0], dtype=torch.float64)
        optimizer.step()
        np.testing.assert_allclose(weight.detach().numpy(), expected)


def test_a_tall_matrix_update_is_scaled_by_the_root_of_its_aspect():
    g = torch.randn(4, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    weight = torch.nn.Parameter(torch.zeros(4, 2, dtype=torch.float64))
    optimizer = MuSGD([{"params": [weight], "use_muon": True}], lr=1.0, momentum=0.0)
    weight.grad = g
    optimizer.step()
    np.testing.assert_allclose(weight.detach().numpy(), -0.2 * math.sqrt(2) * orthogonalised(g.numpy()) - g.numpy(), atol=1e-6)  # float32 iteration


@pytest.fixture(scope="module")
def yolo26():
    return SegmentationNet(load_model_config("yolo26n-seg.yaml", nc=5))


def test_auto_picks_musgd_for_long_yolo26_runs_with_the_class_branches_at_3x(yolo26):
    optimizer, choice = build_optimizer(yolo26, "auto", iterations=20000, nc=5)
    assert isinstance(optimizer, MuSGD) and choice == {"name": "MuSGD", "lr0": 0.01, "momentum": 0.9, "auto": True}
    ids = {id(p): name for name, p in yolo26.named_parameters()}
    head = f"model.{len(yolo26.model) - 1}."
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(ids)
    for group in optimizer.param_groups:
        names = [ids[id(p)] for p in group["params"]]
        boosted = [n.startswith((head + "cv3.", head + "one2one_cv3.", head + "proto.semseg.")) for n in names]
        assert all(boosted) or not any(boosted)
        assert group["lr"] == pytest.approx(0.03 if boosted[0] else 0.01) and group["initial_lr"] == group["lr"]
        shapes = {yolo26.get_parameter(n).ndim for n in names}
        assert group.get("use_muon", False) == (shapes <= {2, 4})
    warmup(optimizer, 0, 100, epoch_factor=1.0, momentum=0.9, warmup_bias_lr=0.1)
    assert {g["lr"] for g in optimizer.param_groups if g.get("bias")} == {0.1}
    assert {g["lr"] for g in optimizer.param_groups if not g.get("bias")} == {0.0}
    assert isinstance(build_optimizer(yolo26, "auto", iterations=500, nc=5)[0], torch.optim.AdamW)
    assert isinstance(build_optimizer(yolo26, "MuSGD", iterations=500, nc=5)[0], MuSGD)
