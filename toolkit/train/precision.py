"""The arithmetic of a training step: fp16 autocast on CUDA by default, bf16 autocast on a CPU when asked (``amp=True``), else fp32.

Only the model's forward (and so its backward) runs in the lower precision: the master weights,
the gradients the optimizer sees, the EMA and the checkpoints stay float32, and the loss is
computed in float32 on the model's outputs cast up (``float_outputs``). On a CPU bf16 stays
opt-in: measured on yolo26n-seg it loses more than 0.01 mAP (docs/ARCHITECTURE.md); on one without native
bf16 (``edgeseg.runtimes.cpus.native_bf16``) it is emulated and slower than fp32, which the log
line says.
"""

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
