"""ExecuTorch target: a ``.pte`` program lowered to XNNPACK, PyTorch's own on-device runtime.

The fused eval model is captured with ``torch.export`` at a static input (``job.batch`` images
at ``job.imgsz``) and lowered with ExecuTorch's XNNPACK partitioner, so the whole network runs
in XNNPACK's kernels (x86 and Arm CPUs). The program keeps the output contract: method
``forward`` maps ``images`` (B, 3, H, W) float32 RGB in [0, 1] to ``preds`` (B, 4 + nc + nm, A)
and ``protos`` (B, nm, H / 4, W / 4) float32. The ModelMeta travels inside the file as a second
method, ``edgeseg_meta``, that returns its JSON as a uint8 tensor
(``edgeseg.runtimes.backends.executorch``).

fp32 only: ExecuTorch's XNNPACK int8 (pt2e quantization) is not offered until it is shown to
keep the masks' accuracy.
"""

import warnings

import torch

from edgeseg.runtimes.backends.base import parse_device
from edgeseg.runtimes.backends.executorch import META_METHOD, quiet_import
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.targets.common import ExportJob
from edgeseg.targets.onnx import ExportWrapper


def build(job: ExportJob) -> None:
    """Write ``job.path`` (``.pte``): ``job.net`` exported with torch.export, lowered to XNNPACK, ModelMeta embedded.

    Raises:
        EdgesegError: end2end or dynamic asked for, or a device other than the CPU.
    """
    with quiet_import():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

    if job.end2end or job.dynamic:
        raise EdgesegError("ExecuTorch export has a static input without NMS in the graph: drop --end2end / --dynamic")
    if parse_device(job.device)[0] != "cpu":
        raise EdgesegError("ExecuTorch export runs on the CPU: use --device cpu")
    wrapper = ExportWrapper(job.net.float().cpu(), half=False).eval()
    example = torch.zeros(max(job.batch, 1), 3, *job.imgsz)
    meta = torch.tensor(list(job.meta.to_json().encode()), dtype=torch.uint8)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", "`isinstance\\(treespec, LeafSpec\\)` is deprecated", FutureWarning)  # inside exir
        program = torch.export.export(wrapper, (example,))
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()], constant_methods={META_METHOD: meta})
        job.path.write_bytes(lowered.to_executorch().buffer)
