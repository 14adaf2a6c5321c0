"""NCNN backend: ``<name>_ncnn_model/`` folders from edgeseg, on Tencent's ``ncnn`` Python package (``edgeseg[ncnn]``).

The folder holds ``model.ncnn.param`` (the graph as text), ``model.ncnn.bin`` (the weights) and
``edgeseg.json`` (the ModelMeta; else the plain keys of ``metadata.yaml``). The graph takes one (3, H, W) image per call, RGB in [0, 1],
and returns the output contract without its batch axis: ``preds`` (4 + nc + nm, A) and
``protos`` (nm, H / 4, W / 4); batches run image by image. Its input and output blobs are read
from the param file (``ncnn_files.param_blobs``).

An fp32 artifact runs in float32 (ncnn's fp16/bf16 storage and arithmetic switched off, which it
would otherwise use on CPUs that have them); an fp16 one stores half weights and lets ncnn
compute in half where the CPU can. Threads: ``EDGESEG_NCNN_THREADS``, else the usable CPUs.
``device`` ``cuda:N`` / ``N`` runs on Vulkan GPU N when the ncnn build has Vulkan.
"""

import os
from pathlib import Path

import numpy as np

from edgeseg.runtimes.backends.base import Backend, parse_device
from edgeseg.runtimes.backends.folder_meta import META_FILE, read_folder_meta
from edgeseg.runtimes.backends.ncnn_files import MAX_PARAM_BYTES, PARAM, WEIGHTS, param_blobs
from edgeseg.runtimes.cpus import usable_cpus
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.openmp import spinning_wait

THREADS_ENV = "EDGESEG_NCNN_THREADS"
FLOAT_ONLY = ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage", "use_bf16_packed")


def threads() -> int:
    """``EDGESEG_NCNN_THREADS`` when set (a positive integer), else ``usable_cpus()``.

    Raises:
        EdgesegError: the variable is set to something else.
    """
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return usable_cpus()
    if not value.isdigit() or int(value) < 1:
        raise EdgesegError(f"{THREADS_ENV}={value!r}: expected a positive number of threads")
    return int(value)


class NcnnBackend(Backend):
    """An ``ncnn.Net`` bound to the ``preds``/``protos`` contract, one image per extractor.

    Args:
        path: the ``*_ncnn_model`` folder.
        device: ``cpu``, or ``cuda:N`` / ``N`` for Vulkan GPU N.
    """

    name = "ncnn"

    def __init__(self, path: str, device: str = "cpu"):
        import ncnn

        folder = Path(path)
        for name in (PARAM, WEIGHTS):
            if not (folder / name).is_file():
                raise EdgesegError(f"{folder}: no {name} (an edgeseg NCNN folder holds {PARAM}, {WEIGHTS} and {META_FILE})")
        meta = read_folder_meta(folder, f"{PARAM}, {WEIGHTS}")
        if (folder / PARAM).stat().st_size > MAX_PARAM_BYTES:
            raise EdgesegError(f"{folder / PARAM}: larger than {MAX_PARAM_BYTES >> 20} MB, not a model's param file")
        self.input_blob, outputs = param_blobs((folder / PARAM).read_text(errors="replace"), folder / PARAM)
        if len(outputs) != 2:
            raise EdgesegError(f"{folder / PARAM}: expected 2 output blobs (preds, protos), found {len(outputs)}")
        self.output_blobs = outputs
        self.net = ncnn.Net()
        options = self.net.opt
        options.num_threads = threads()
        if meta.precision == "fp32":
            for flag in FLOAT_ONLY:
                setattr(options, flag, False)
        kind, index = parse_device(device)
        if kind == "cuda":
            if ncnn.get_gpu_count() <= index:
                raise EdgesegError(
                    f"{path}: device {device!r} needs a Vulkan GPU; this ncnn build sees {ncnn.get_gpu_count()} (use --device cpu)"
                )
            options.use_vulkan_compute = True
            self.net.set_vulkan_device(index)
        if self.net.load_param(str(folder / PARAM)) != 0 or self.net.load_model(str(folder / WEIGHTS)) != 0:
            raise EdgesegError(f"{folder}: ncnn cannot load {PARAM} / {WEIGHTS} (damaged, or written by a newer ncnn)")
        super().__init__(path, meta, device)

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) float32 → preds (B, 4 + nc + nm, A), protos (B, nm, H / 4, W / 4) float32, image by image."""
        import ncnn

        preds, protos = [], []
        channels = self.meta.head_shape[1]
        for image in batch:
            pixels = np.ascontiguousarray(image, dtype=np.float32)  # ncnn.Mat borrows this memory
            extractor = self.net.create_extractor()
            extractor.input(self.input_blob, ncnn.Mat(pixels))
            outs = []
            for blob in self.output_blobs:
                status, mat = extractor.extract(blob)
                if status != 0:
                    raise EdgesegError(f"{self.path}: ncnn failed to compute blob {blob!r} (status {status})")
                outs.append(np.array(mat, dtype=np.float32))
            first, second = sorted(outs, key=np.ndim)  # preds (C, A) has rank 2, protos (nm, h, w) rank 3
            if first.ndim != 2 or first.shape[0] != channels or second.shape[0] != self.meta.nm:
                raise EdgesegError(
                    f"{self.path}: outputs {first.shape} and {second.shape} do not match the metadata "
                    f"(nc={self.meta.nc}, nm={self.meta.nm}: ({channels}, A) and ({self.meta.nm}, H/4, W/4))"
                )
            preds.append(first)
            protos.append(second)
        return np.stack(preds), np.stack(protos)


def load(path: str, device: str | None = None) -> NcnnBackend:
    """Open an edgeseg ``*_ncnn_model`` folder with ncnn on ``device``.

    Raises:
        ModuleNotFoundError: ncnn is not installed (the registry names the extra).
        EdgesegError: the folder is unusable.
    """
    with spinning_wait():  # ncnn's own OpenMP: ~3x slower with the passive policy edgeseg sets for torch
        import ncnn  # noqa: F401
    return NcnnBackend(path, "cpu" if device is None else device)
