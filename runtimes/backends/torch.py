"""PyTorch backend: an edgeseg ``.pt`` checkpoint, or a model already in memory.

torch is imported inside the functions that need it, so importing this module (or the
registry that names it) never loads torch; only loading a ``.pt`` does.
"""

import numpy as np

from edgeseg import __version__
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.backends.base import Backend, parse_device
from edgeseg.runtimes.meta import ModelMeta


class TorchBackend(Backend):
    """Runs a ``SegmentationModel`` in eval mode; dynamic batch and input size.

    Args:
        model: an ``edgeseg.Model`` (its ``net`` is put in eval mode and moved to ``device``).
        path: where it came from (a checkpoint path, or a label for an in-memory model).
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``N``.
        source_hash: the checkpoint's hash prefix, for the metadata.
    """

    name = "torch"

    def __init__(self, model, path: str, device: str = "cpu", source_hash: str = ""):
        kind, index = parse_device(device)
        import torch

        if kind == "cuda" and not torch.cuda.is_available():
            raise EdgesegError(f"{path}: device {device!r} needs a CUDA GPU, but torch sees none (use --device cpu)")
        if kind == "cuda" and index >= torch.cuda.device_count():
            raise EdgesegError(f"{path}: device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
        self.torch_device = torch.device("cpu" if kind == "cpu" else f"cuda:{index}")
        self.net = model.net.to(self.torch_device).eval()
        meta = ModelMeta(
            names=dict(model.names),
            imgsz=(model.imgsz, model.imgsz),
            stride=int(self.net.stride.max()),
            nm=self.net.head.nm,
            batch=0,
            dynamic=True,
            source_hash=source_hash,
            version=__version__,
        )
        super().__init__(path, meta, device)

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) float32 → preds (B, 4 + nc + nm, A), protos (B, nm, H / 4, W / 4) float32 numpy."""
        import torch

        with torch.inference_mode():
            preds, protos = self.net(torch.from_numpy(np.ascontiguousarray(batch)).to(self.torch_device))
        return preds.float().cpu().numpy(), protos.float().cpu().numpy()


def load(path: str, device: str = "cpu") -> TorchBackend:
    """Load a checkpoint with ``edgeseg.Model`` (weights-only), fuse Conv+BN and wrap it."""
    from edgeseg.model import Model
    from edgeseg.nn.checkpoint import file_hash

    model = Model(path).fuse()
    return TorchBackend(model, str(path), device, source_hash=file_hash(path))
