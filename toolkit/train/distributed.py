"""Device selection and DDP plumbing. Processes are launched by ``torchrun``, never by hand.

``torchrun --nproc_per_node N -m edgeseg train ...`` sets RANK / LOCAL_RANK / WORLD_SIZE; each
process trains on its share of every epoch and only rank 0 validates and writes files.
"""

import os
import subprocess
import sys

import torch
import torch.distributed as dist

from edgeseg.devices import check_cuda_index, default_device, device_ids
from edgeseg.runtimes.errors import EdgesegError


def rank_and_world_size() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (-1, 1) outside DDP."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    return (int(os.environ.get("RANK", 0)), world) if world > 1 else (-1, 1)


def check_devices(device: str | int | None) -> list[str]:
    """``device_ids(device)``, checked against the GPUs torch sees here.

    Raises:
        EdgesegError: a bad spelling, CUDA unavailable, or a GPU index this machine does not have.
    """
    ids = device_ids(device)
    if ids != ["cpu"]:
        check_cuda_index(int(max(ids, key=int)), f"--device {device}")
    return ids


def select_device(device: str | int | None, rank: int = -1) -> torch.device:
    """The torch.device this process trains on (with DDP: its LOCAL_RANK's GPU, or the CPU); None: ``default_device``.

    Under torchrun without ``--device`` on a CUDA machine, each process takes the GPU of its LOCAL_RANK.

    Raises:
        EdgesegError: as ``check_devices``, or a LOCAL_RANK beyond the GPUs torch sees.
    """
    ids = check_devices(default_device(device))
    if ids == ["cpu"]:
        return torch.device("cpu")
    local = int(os.environ.get("LOCAL_RANK", 0))
    index = int(ids[0]) if rank < 0 else local if device is None else int(ids[local])
    if index >= torch.cuda.device_count():
        raise EdgesegError(f"LOCAL_RANK {local}: only {torch.cuda.device_count()} CUDA device(s) here")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def launch_command(argv: list[str], nproc: int) -> list[str]:
    """The torchrun command that re-runs ``edgeseg <argv>`` in ``nproc`` processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "edgeseg", *argv]


def launch(argv: list[str], nproc: int) -> int:
    """Run ``edgeseg <argv>`` under torchrun with ``nproc`` processes; return its exit code."""
    return subprocess.call(launch_command(argv, nproc))


def init(device: torch.device) -> None:
    """Join the process group: NCCL on GPUs, gloo on the CPU."""
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def cleanup() -> None:
    """Leave the process group."""
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank."""
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
