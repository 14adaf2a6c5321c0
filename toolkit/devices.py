"""The devices a torch-side command (train, val, predict, export of a ``.pt``) runs on: the default and the checks.

Spellings are parsed by ``edgeseg.runtimes.backends.base.parse_device`` (one device) and
``device_ids`` here (a list, for training); this module checks them against the GPUs torch sees.
"""

import torch

from edgeseg.runtimes.backends.base import choose_device, parse_device
from edgeseg.runtimes.errors import EdgesegError


def default_device(device: str | int | None) -> str:
    """``device`` as given, or for None the first CUDA GPU torch sees (``"cuda:0"``), else ``"cpu"``; the choice is logged.

    ``--device cpu`` (or ``device="cpu"``) always forces the CPU.
    """
    return choose_device(device, torch.cuda.is_available(), "torch")


def device_ids(device: str | int | None) -> list[str]:
    """``"cpu"`` or None → ["cpu"]; one GPU (``0``, ``"0"``, ``"cuda"``, ``"cuda:1"``) → its index; ``"0,1"`` → ["0", "1"].

    Each item is spelled as ``parse_device`` takes it.

    Raises:
        EdgesegError: a bad spelling, or the CPU in a list of GPUs.
    """
    items = [item.strip() for item in str(device if device is not None else "cpu").split(",") if item.strip()] or ["cpu"]
    parsed = [parse_device(item) for item in items]
    if parsed == [("cpu", 0)]:
        return ["cpu"]
    if any(kind == "cpu" for kind, _ in parsed):
        raise EdgesegError(f"--device {device!r}: give the CPU alone or a list of GPU indices (0,1)")
    return [str(index) for _, index in parsed]


def check_cuda_index(index: int, what: str) -> None:
    """Raise unless torch sees a CUDA GPU of this index; ``what`` starts the message (``--device 1``, a file)."""
    if not torch.cuda.is_available():
        raise EdgesegError(f"{what}: CUDA is not available on this machine (use --device cpu)")
    if index >= torch.cuda.device_count():
        raise EdgesegError(f"{what}: only {torch.cuda.device_count()} CUDA device(s) here")
