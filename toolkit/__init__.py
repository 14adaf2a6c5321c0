"""edgeseg: train YOLO11-style instance segmentation and deploy it to edge devices.

Importing ``edgeseg`` (or ``edgeseg.runtimes``) never imports torch; the first access to
``edgeseg.Model`` or ``edgeseg.bench`` does.
"""

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.version import __version__

__all__ = ["Model", "bench", "EdgesegError", "__version__"]


def __getattr__(name):
    if name == "Model":
        from edgeseg.model import Model

        return Model
    if name == "bench":
        from edgeseg.benchmark import bench

        return bench
    raise AttributeError(f"module 'edgeseg' has no attribute {name!r}")
