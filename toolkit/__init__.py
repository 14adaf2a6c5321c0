"""edgeseg: train YOLO11-style instance segmentation and deploy it to edge devices.

Importing ``edgeseg`` (or ``edgeseg.runtimes``) never imports torch; the first access to
``edgeseg.Model`` or ``edgeseg.bench`` does.

Importing ``edgeseg`` sets ``OMP_WAIT_POLICY=PASSIVE`` unless it is already set: torch's OpenMP
threads then sleep instead of spinning while they wait, so training next to another CPU-bound
process slows in proportion to the CPU it loses instead of several times more. OpenMP reads the
variable once, when torch loads: import edgeseg before torch (the CLI always does). Inference
libraries with their own OpenMP load without it (``edgeseg.runtimes.openmp``).
"""

from edgeseg.runtimes.openmp import default_passive_wait

default_passive_wait()

from edgeseg.runtimes.errors import EdgesegError  # noqa: E402
from edgeseg.runtimes.version import __version__  # noqa: E402

__all__ = ["Model", "bench", "EdgesegError", "__version__"]


def __getattr__(name):
    if name == "Model":
        from edgeseg.model import Model

        return Model
    if name == "bench":
        from edgeseg.benchmark import bench

        return bench
    raise AttributeError(f"module 'edgeseg' has no attribute {name!r}")
