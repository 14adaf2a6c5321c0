"""The arithmetic of a training step: fp16 autocast on CUDA by default, bf16 autocast on a CPU when asked (``amp=True``), else fp32.

Only the model's forward (and so its backward) runs in the lower precision: the master weights,
the gradients the optimizer sees, the EMA and the checkpoints stay float32, and the loss is
computed in float32 on the model's outputs cast up (``float_outputs``). The layers whose outputs
the loss reads (``edgeseg.nn.head.prediction_layer_modules``: the head's output convs, the
prototypes' and semantic logits' output layers) compute in float32 inside the autocast region
(``autocast_forward``). On a CPU bf16 stays opt-in: measured on yolo26n-seg its one-to-one
branch's mAP moves by -0.027 to +0.018 against fp32 (docs/ARCHITECTURE.md); on a CPU without
native bf16 (``edgeseg.runtimes.cpus.native_bf16``) it is emulated and slower than fp32, which the
log line says.
"""

import contextlib
from collections.abc import Iterator

import torch

from edgeseg.runtimes.cpus import native_bf16


def autocast_dtype(amp: bool | None, device_type: str) -> tuple[torch.dtype | None, str]:
    """The ``torch.autocast`` dtype of a training step (None: fp32) and the line the trainer logs about it.

    Args:
        amp: None picks (CUDA: fp16; CPU: fp32); False is fp32 everywhere; True is fp16 on CUDA
            and bf16 on a CPU (emulated on one without native bf16: slower than fp32).
        device_type: ``"cpu"`` or ``"cuda"``.
    """
    if amp is False:
        return None, "AMP off (--no-amp): training in fp32"
    if device_type == "cuda":
        return torch.float16, "AMP: fp16 autocast on CUDA (--no-amp trains in fp32)"
    feature = native_bf16()
    if amp:
        if feature:
            return torch.bfloat16, f"AMP: bf16 autocast on the CPU ({feature}: native bf16)"
        return torch.bfloat16, "AMP: bf16 autocast on a CPU without native bf16 (--amp): emulated, slower than fp32"
    if feature:
        return None, f"training in fp32 on the CPU (it has native bf16, {feature}: --amp trains in bf16)"
    return None, "training in fp32 on the CPU (no native bf16 here: --amp would emulate it, slower)"


def float_outputs(outputs):
    """``outputs`` (a tensor, or tuples, lists and dicts of them) with every floating tensor as float32 (others as they are)."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, dict):
        return {key: float_outputs(value) for key, value in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(float_outputs(value) for value in outputs)
    return outputs


@contextlib.contextmanager
def autocast_forward(net: torch.nn.Module, dtype: torch.dtype | None, device_type: str, float_layers: list[str]) -> Iterator[None]:
    """Autocast to ``dtype`` (None: no autocast) for a forward of ``net``, with ``float_layers`` computing in float32.

    Args:
        net: the model whose forward runs inside (hooks go on its submodules, so a DDP wrapper around it is covered).
        dtype: the autocast dtype (``autocast_dtype``), or None for plain float32.
        device_type: ``"cpu"`` or ``"cuda"``.
        float_layers: qualified submodule names of ``net`` that take float32 inputs and run with autocast off.
    """
    if dtype is None:
        yield
        return
    states: list[bool] = []

    def enter_float(module, args):
        states.append(torch.is_autocast_enabled(device_type))
        torch.set_autocast_enabled(device_type, False)
        return tuple(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)

    def leave_float(module, args, output):
        torch.set_autocast_enabled(device_type, states.pop())

    hooks = []
    try:
        for name in float_layers:
            layer = net.get_submodule(name)
            hooks += [layer.register_forward_pre_hook(enter_float), layer.register_forward_hook(leave_float)]
        with torch.autocast(device_type, dtype=dtype):
            yield
    finally:
        for hook in hooks:
            hook.remove()
