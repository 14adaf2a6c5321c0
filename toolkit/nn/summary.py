"""Model size reports: parameter counts, GFLOPs and the per-layer table ``edgeseg info`` prints."""

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: torch.nn.Module) -> int:
    """Total number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def gflops(model: torch.nn.Module, imgsz: int = 640) -> float:
    """Forward-pass GFLOPs (multiply-add = 2 FLOPs) for one (1, 3, imgsz, imgsz) image, in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, imgsz, imgsz, device=device))
    model.train(was_training)
    return counter.get_total_flops() / 1e9


def layer_table(model) -> str:
    """One line per layer: index, input(s), repeats, parameters, module type and its arguments."""
    lines = [f"{'':>3}{'from':>18}{'n':>3}{'params':>10}  {'module':<12}arguments"]
    for layer in model.model:
        lines.append(f"{layer.i:>3}{str(layer.f):>18}{layer.repeats:>3}{layer.np:>10,}  {layer.type:<12}{layer.args}")
    return "\n".join(lines)
