"""The device a torch-side command (train, val, predict, export of a ``.pt``) runs on when none is given."""

import torch

from edgeseg.runtimes.backends.base import choose_device


def default_device(device: str | int | None) -> str:
    """``device`` as given, or for None the first CUDA GPU torch sees (``"cuda:0"``), else ``"cpu"``; the choice is logged.

    ``--device cpu`` (or ``device="cpu"``) always forces the CPU.
    """
    return choose_device(device, torch.cuda.is_available(), "torch")
