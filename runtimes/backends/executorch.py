"""ExecuTorch backend: ``.pte`` programs from edgeseg, on ExecuTorch's runtime (``edgeseg[executorch]``).

ExecuTorch's Python runtime needs PyTorch: its extension links against libtorch and takes and
returns ``torch.Tensor``. This is the one backend that imports torch, and only when a ``.pte``
is opened; every other format runs without it. (On a phone or microcontroller the same ``.pte``
runs in ExecuTorch's C++ runtime, without Python.)

The program's ``forward`` takes ``images`` (B, 3, H, W) float32 RGB in [0, 1] at the static
shape it was exported with and returns ``preds`` (B, 4 + nc + nm, A) and ``protos``
(B, nm, H / 4, W / 4); its ``edgeseg_meta`` method returns the ModelMeta's JSON as a uint8
tensor. Programs are checked for internal consistency when they load. XNNPACK uses one thread
per core.
"""

import logging
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from edgeseg.runtimes.backends.base import Backend, parse_device
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.limits import MAX_METADATA_BYTES
from edgeseg.runtimes.meta.model_meta import ModelMeta

META_METHOD = "edgeseg_meta"
MAX_PROGRAM_BYTES = 2 << 30  # a yolo11x-seg program is ~250 MB
IMPORT_NOISE = ("torchao", "torch.utils._pytree")  # CUDA kernels a CPU build lacks; a deprecation in torchao


@contextmanager
def quiet_import():
    """Import ExecuTorch inside this block: the warnings its dependencies log while they load are not the user's concern."""
    loggers = [logging.getLogger(name) for name in IMPORT_NOISE]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _output_sizes(method) -> list[tuple[int, ...]]:
    """The static sizes of ``method``'s outputs, from the program's method metadata."""
    meta = method.metadata
    return [tuple(meta.output_tensor_meta(i).sizes()) for i in range(meta.num_outputs())]


def read_meta(program, path: str) -> ModelMeta:
    """The ModelMeta held by ``program``'s ``edgeseg_meta`` method.

    Raises:
        EdgesegError: the method is missing (not an edgeseg program), too large, or unreadable.
    """
    if META_METHOD not in program.method_names:
        raise EdgesegError(f"{path}: no {META_METHOD} method (not a .pte written by edgeseg export)")
    method = program.load_method(META_METHOD)
    sizes = _output_sizes(method)
    if len(sizes) != 1 or len(sizes[0]) != 1 or not 0 < sizes[0][0] <= MAX_METADATA_BYTES:
        raise EdgesegError(f"{path}: {META_METHOD} is not a metadata string of at most {MAX_METADATA_BYTES} bytes")
    (blob,) = method.execute([])
    try:
        return ModelMeta.from_json(blob.numpy().astype(np.uint8).tobytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise EdgesegError(f"{path}: unreadable edgeseg metadata ({exc})") from None


class ExecutorchBackend(Backend):
    """An ExecuTorch program's ``forward`` bound to the ``preds``/``protos`` contract.

    Args:
        path: the ``.pte`` file.
        device: ``cpu`` (XNNPACK runs on the CPU).
    """

    name = "executorch"

    def __init__(self, path: str, device: str = "cpu"):
        from executorch.runtime import Runtime

        if parse_device(device)[0] != "cpu":
            raise EdgesegError(f"{path}: ExecuTorch programs run on the CPU (XNNPACK): use --device cpu")
        try:
            program = Runtime.get().load_program(str(path))
        except RuntimeError as exc:
            raise EdgesegError(f"{path}: not a loadable ExecuTorch program ({exc})") from None
        meta = read_meta(program, path)
        if "forward" not in program.method_names:
            raise EdgesegError(f"{path}: no forward method")
        self.forward = program.load_method("forward")
        sizes = _output_sizes(self.forward)
        if len(sizes) != 2 or sizes[0][1:] != meta.head_shape[1:2] + sizes[0][2:] or sizes[1][1] != meta.nm:
            raise EdgesegError(f"{path}: outputs {sizes} do not match the metadata (nc={meta.nc}, nm={meta.nm})")
        self.program = program  # the methods use its memory
        super().__init__(path, meta, device)

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(meta.batch, 3, H, W) float32 → preds (B, 4 + nc + nm, A), protos (B, nm, H / 4, W / 4) float32."""
        import torch

        preds, protos = self.forward.execute([torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))])
        return preds.numpy().copy(), protos.numpy().copy()


def load(path: str, device: str | None = None) -> ExecutorchBackend:
    """Open an edgeseg ``.pte`` with ExecuTorch's runtime on ``device``.

    Raises:
        ModuleNotFoundError: ExecuTorch or PyTorch is not installed (the registry names the extra).
        EdgesegError: the file is unusable.
    """
    if Path(path).stat().st_size > MAX_PROGRAM_BYTES:
        raise EdgesegError(f"{path}: larger than {MAX_PROGRAM_BYTES >> 30} GB, not an edgeseg program")
    with quiet_import():
        import executorch.runtime  # noqa: F401
    return ExecutorchBackend(path, "cpu" if device is None else device)
