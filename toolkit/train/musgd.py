"""MuSGD: Muon's orthogonalised momentum update mixed with Nesterov SGD (the optimiser YOLO26 trains with).

A group with ``use_muon`` (conv and linear weights) moves each step by
``-lr * (MUON_SCALE * orthogonalise(momentum) + SGD_SCALE * nesterov_sgd(grad + weight_decay * p))``;
other groups take the SGD step alone. ``orthogonalise`` is five Newton-Schulz iterations towards
the nearest semi-orthogonal matrix (``newton_schulz``), applied to each weight flattened to
(out_channels, everything else).
"""

import math

import torch

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # the quintic iteration's a, b, c
NS_STEPS = 5
MUON_SCALE, SGD_SCALE = 0.2, 1.0  # each part's share of the group's lr


def newton_schulz(g: torch.Tensor, steps: int = NS_STEPS, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An approximately semi-orthogonal matrix with the row and column spaces of the 2-D ``g`` (same shape).

    ``X = g / (||g||_F + 1e-7)``, then ``steps`` times ``A = X Xᵀ; X = a X + (b A + c A²) X`` on the
    wide orientation (a tall ``g`` is transposed first and back after), computed in ``dtype``
    (float32 here; bfloat16 on GPUs, where it is faster).
    """
    a, b, c = NS_COEFFICIENTS
    x = g.to(dtype)
    x = x / (x.norm() + 1e-7)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.T if tall else x).to(g.dtype)


def muon_update(grad: torch.Tensor, buffer: torch.Tensor, beta: float, nesterov: bool = True) -> torch.Tensor:
    """The Muon direction of one weight (its shape); updates ``buffer`` in place.

    ``buffer = beta * buffer + (1 - beta) * grad``; the direction is ``beta * buffer + (1 - beta) * grad``
    (``nesterov``) or ``buffer``, flattened to (shape[0], -1), orthogonalised (``newton_schulz``) and
    scaled by ``sqrt(max(1, shape[-2] / shape[-1]))`` of the weight's own last two sizes (1 for a
    square conv kernel, as Ultralytics 8.4 scales it).
    """
    buffer.lerp_(grad, 1 - beta)
    direction = grad.lerp(buffer, beta) if nesterov else buffer
    flat = newton_schulz(direction.reshape(direction.shape[0], -1)).view_as(grad)
    return flat * math.sqrt(max(1.0, grad.shape[-2] / grad.shape[-1]))


class MuSGD(torch.optim.Optimizer):
    """Muon + Nesterov SGD (module docstring). Groups take ``lr``, ``momentum``, ``weight_decay`` and ``use_muon``.

    The SGD part keeps its own momentum buffer (``momentum_buffer_SGD`` beside Muon's
    ``momentum_buffer``); weight decay enters the SGD part only, after the Muon step has moved the weight.
    """

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0, use_muon: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, use_muon=use_muon, nesterov=True))

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter with a gradient (``closure`` as ``torch.optim.Optimizer``)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                    if group["use_muon"]:
                        state["momentum_buffer_SGD"] = torch.zeros_like(p)
                sgd_lr = lr
                if group["use_muon"]:
                    p.add_(muon_update(p.grad, state["momentum_buffer"], momentum, group["nesterov"]), alpha=-lr * MUON_SCALE)
                    buffer, sgd_lr = state["momentum_buffer_SGD"], lr * SGD_SCALE
                else:
                    buffer = state["momentum_buffer"]
                grad = p.grad + decay * p if decay else p.grad
                buffer.mul_(momentum).add_(grad)
                p.add_(grad + momentum * buffer if group["nesterov"] else buffer, alpha=-sgd_lr)
        return loss
