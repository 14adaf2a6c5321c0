"""The ``.pt`` backend: a network in PyTorch behind the runtime's ``Backend`` contract.

It lives with the network, not in ``edgeseg.runtimes``, because it needs torch; the runtime's
backend registry finds it through the ``edgeseg.backends`` entry point ``torch`` (pyproject.toml)
when a ``.pt`` is loaded, so a device without torch never imports it.
"""

import dataclasses

import numpy as np
import torch

from edgeseg.devices import check_cuda_index, default_device
from edgeseg.nn.net import SegmentationNet
from edgeseg.nn.network import load_network, network_meta
from edgeseg.runtimes.backends.base import Backend, parse_device
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.model_meta import ModelMeta
from edgeseg.runtimes.runtime import Runtime


class TorchBackend(Backend):
    """Runs a ``SegmentationNet`` in eval mode; dynamic batch and input size.

    Args:
        net: the network (put in eval mode and moved to ``device``; not copied).
        meta: its ModelMeta (``edgeseg.nn.network.network_meta``).
        path: where it came from (a checkpoint path, or a label for an in-memory network).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``N``.
    """

    name = "torch"

    def __init__(self, net: SegmentationNet, meta: ModelMeta, path: str, device: str = "cpu"):
        kind, index = parse_device(device)
        if kind == "cuda":
            check_cuda_index(index, f"{path}: device {device!r}")
        self.torch_device = torch.device("cpu" if kind == "cpu" else f"cuda:{index}")
        self.net = net.to(self.torch_device).eval()
        super().__init__(path, meta, device)

    def select_branch(self, branch: str) -> None:
        """Run the head's ``one2many`` branch (NMS) or, on a YOLO26 head, its ``one2one`` branch (top-k).

        Raises:
            EdgesegError: a branch this head does not have.
        """
        head = self.net.head
        if branch not in head.branches:
            raise EdgesegError(
                f"{self.path}: this model has no {branch} branch (it has: {', '.join(head.branches)}); only YOLO26 heads have a one2one branch"
            )
        head.select_branch(branch)
        self.meta = dataclasses.replace(self.meta, selection="topk" if branch == "one2one" else "nms")

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) float32 → preds (B, 4 + nc + nm, A), protos (B, nm, H / 4, W / 4) float32 numpy."""
        with torch.inference_mode():
            preds, protos = self.net(torch.from_numpy(np.ascontiguousarray(batch)).to(self.torch_device))
        return preds.float().cpu().numpy(), protos.float().cpu().numpy()


def load(path: str, device: str | None = None) -> TorchBackend:
    """Open a checkpoint with ``load_network`` (weights only), fuse Conv+BN and wrap it on ``device`` (None: ``default_device``)."""
    network = load_network(path)
    return TorchBackend(network.net.fuse(), network.meta, str(path), default_device(device))


def network_runtime(net: SegmentationNet, imgsz, source: str = "<memory>", device: str | None = None) -> Runtime:
    """A Runtime over an in-memory network (no file written): predict and val as for any artifact.

    Args:
        net: the network (not copied; put in eval mode on ``device``).
        imgsz: its input size in pixels, an int or (height, width).
        source: a label for messages.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``N``; None: ``default_device`` (the first CUDA GPU, else the CPU).
    """
    return Runtime(TorchBackend(net, network_meta(net, imgsz), source, default_device(device)))
