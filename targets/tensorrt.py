"""TensorRT target: a serialized engine built from the ONNX hub graph with the TensorRT Python API (10 or newer).

The ONNX graph (``prepare_onnx``) is the ONNX target's fp32 trace: the precision is the builder's
(``fp16``: FP16 kernels allowed; ``int8``: INT8 and FP16 kernels, scales from an entropy
calibration on letterboxed training images). A ``dynamic`` export makes only the batch free, with
one optimisation profile for 1 … ``max_batch`` images at the fixed input size; a static one has
batch ``job.batch``. The engine file starts with the ModelMeta header described in
``edgeseg.runtimes.backends.tensorrt`` (4-byte little-endian length, JSON, then the engine).

int8 calibration (``CalibrationBatches``) takes the first ``job.calib`` readable images of the data
YAML's train split (``calibration_set``, as every int8 target), letterboxes them in the runtime's
batch loop and feeds them through ``IInt8EntropyCalibrator2``. Its cache is written beside the engine as
``<engine>.calib`` and reused only by an export of the same checkpoint, size, batch and images.

Engine building is unverified in edgeseg's own test environment (TensorRT cannot be installed
there): ONNX preparation, calibration batches and the header are tested; the builder calls follow
TensorRT 10's documented Python API. ``build_engine`` is the Python entry point for options the
CLI does not have (``workspace``, ``max_batch``).
"""

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxslim

from edgeseg.runtimes.backends.base import parse_device
from edgeseg.runtimes.backends.cuda import cuda_call, gpu_name, import_cudart
from edgeseg.runtimes.backends.tensorrt import MIN_TENSORRT
from edgeseg.runtimes.backends.tensorrt_file import write_engine
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.model_meta import ModelMeta
from edgeseg.runtimes.pipeline.loop import batches
from edgeseg.targets.common import ExportJob, calibration_set
from edgeseg.targets.onnx import trace

NOT_INSTALLED = (
    "TensorRT is not installed: pip install edgeseg[tensorrt] on a machine with NVIDIA's TensorRT "
    "(JetPack on a Jetson, or the tensorrt wheels from NVIDIA's package index) and a CUDA driver"
)

WORKSPACE_GB = 4.0  # builder scratch memory limit (Jetson Orin Nano: 8 GB shared with the CPU)
MAX_BATCH = 16  # largest batch of a dynamic engine's optimisation profile
CACHE_MAGIC = b"edgeseg-calib "  # + key + b"\n" + TensorRT's calibration cache


def prepare_onnx(job: ExportJob) -> onnx.ModelProto:
    """The fp32 ONNX graph TensorRT parses: input ``images`` (B, 3, H, W), outputs ``preds``, ``protos``.

    Static: every dimension fixed (B = ``job.batch``). Dynamic: only the batch is free
    (``batch``); H and W are fixed to ``job.imgsz`` so that one optimisation profile covers it.
    Always simplified (onnxslim), at ``job.opset``.
    """
    model = trace(dataclasses.replace(job, precision="fp32"))
    if job.dynamic:
        for dim, size in zip(model.graph.input[0].type.tensor_type.shape.dim[2:], job.imgsz):
            dim.Clear()
            dim.dim_value = size
    model = onnxslim.slim(model)
    onnx.checker.check_model(model)
    return model


class CalibrationBatches:
    """int8 calibration data: letterboxed images in (batch, 3, H, W) float32 RGB [0, 1] batches, and the cache.

    Iterating yields ``len(self)`` batches of the runtime's batch loop (``edgeseg.runtimes.pipeline.loop``)
    covering every image once; the last batch is completed with the first images when the count
    is not a multiple of ``batch`` (a static engine's batch is fixed). The cache file holds
    ``CACHE_MAGIC + key + "\\n"`` and TensorRT's cache bytes; ``read_cache`` returns those bytes
    only when ``key`` matches.

    Args:
        images: N >= 1 (H0, W0, 3) uint8 BGR source images (``calibration_set``).
        imgsz: (height, width) of the model input.
        batch: images per batch.
        cache: the calibration cache file.
        key: what the cache must have been made from (``cache_key``).
    """

    def __init__(self, images: list[np.ndarray], imgsz: tuple[int, int], batch: int, cache: str | Path, key: str):
        self.images = list(images)
        self.imgsz, self.batch, self.cache, self.key = tuple(imgsz), batch, Path(cache), key

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch)

    def __iter__(self):
        """(batch, 3, H, W) float32 RGB [0, 1] arrays, letterboxed like ``Runtime.predict``."""
        padded = self.images + self.images[: -len(self.images) % self.batch]
        for step in batches([(None, image) for image in padded], self.imgsz, self.batch):
            yield step.tensor

    def read_cache(self) -> bytes | None:
        """TensorRT's cache bytes from ``self.cache`` when it exists and was made for ``self.key``, else None."""
        if not self.cache.is_file():
            return None
        head, _, body = self.cache.read_bytes().partition(b"\n")
        return body if head == CACHE_MAGIC + self.key.encode() and body else None

    def write_cache(self, data: bytes) -> None:
        """Store TensorRT's cache ``data`` under ``self.key``."""
        self.cache.write_bytes(CACHE_MAGIC + self.key.encode() + b"\n" + bytes(data))


def cache_key(meta: ModelMeta, batch: int, paths: list[str | Path]) -> str:
    """16 hex digits identifying a calibration: checkpoint hash, input size, batch and image paths."""
    text = json.dumps([meta.source_hash, list(meta.imgsz), batch, [str(p) for p in paths]])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def entropy_calibrator(batches: CalibrationBatches):
    """A ``tensorrt.IInt8EntropyCalibrator2`` that feeds ``batches`` through one device buffer."""
    import tensorrt as trt

    cudart = import_cudart()

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = iter(batches)
            nbytes = batches.batch * 3 * batches.imgsz[0] * batches.imgsz[1] * np.dtype(np.float32).itemsize
            self.pointer = int(cuda_call(cudart, cudart.cudaMalloc(nbytes), "cudaMalloc"))

        def get_batch_size(self) -> int:
            return batches.batch

        def get_batch(self, names):
            batch = next(self.batches, None)
            if batch is None:
                return None
            kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            cuda_call(cudart, cudart.cudaMemcpy(self.pointer, batch.ctypes.data, batch.nbytes, kind), "cudaMemcpy")
            return [self.pointer]

        def read_calibration_cache(self):
            return batches.read_cache()

        def write_calibration_cache(self, cache) -> None:
            batches.write_cache(bytes(cache))

    return EntropyCalibrator()


def require_tensorrt():
    """The ``tensorrt`` module (10 or newer).

    Raises:
        EdgesegError: not installed (naming how to install it) or too old.
    """
    try:
        import tensorrt as trt
    except ModuleNotFoundError:
        raise EdgesegError(NOT_INSTALLED) from None
    if int(trt.__version__.split(".")[0]) < MIN_TENSORRT:
        raise EdgesegError(f"TensorRT {trt.__version__} is too old: edgeseg needs TensorRT {MIN_TENSORRT} or newer")
    return trt


def build_engine(
    onnx_model: onnx.ModelProto,
    precision: str = "fp16",
    workspace: float = WORKSPACE_GB,
    max_batch: int = MAX_BATCH,
    calibration: CalibrationBatches | None = None,
) -> bytes:
    """Build a serialized engine from a ``prepare_onnx`` graph on the current CUDA device.

    Args:
        onnx_model: input ``images`` (B or ``batch``, 3, H, W); a free batch gets one
            optimisation profile over 1 … ``max_batch`` (optimum ``max_batch`` / 2).
        precision: ``fp32``, ``fp16`` or ``int8`` (int8 also allows fp16 kernels).
        workspace: builder scratch memory limit in GB.
        max_batch: the largest batch of a dynamic engine.
        calibration: the int8 calibration batches (required for int8).

    Returns:
        The serialized engine (without edgeseg's header).

    Raises:
        EdgesegError: TensorRT missing or too old, int8 without calibration, an ONNX parse
            error, or a failed build.
    """
    trt = require_tensorrt()
    if precision == "int8" and calibration is None:
        raise EdgesegError("TensorRT int8 needs calibration batches")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_model.SerializeToString()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EdgesegError(f"TensorRT could not parse the ONNX graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace * (1 << 30)))
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    _, channels, height, width = network.get_input(0).shape
    if network.get_input(0).shape[0] == -1:
        profile = builder.create_optimization_profile()
        shapes = [(b, channels, height, width) for b in (1, max(max_batch // 2, 1), max_batch)]
        profile.set_shape("images", *shapes)
        config.add_optimization_profile(profile)
        if precision == "int8":
            fixed = builder.create_optimization_profile()
            fixed.set_shape("images", *[(calibration.batch, channels, height, width)] * 3)
            config.set_calibration_profile(fixed)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = entropy_calibrator(calibration)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise EdgesegError("TensorRT failed to build the engine (see the TensorRT log above)")
    return bytes(engine)


def build(job: ExportJob) -> None:
    """Write ``job.path``: edgeseg's ModelMeta header + the engine built on GPU ``job.device`` (``cpu`` = GPU 0).

    ``job.meta`` gains ``extra["tensorrt"]`` (the TensorRT version) and ``extra["gpu"]`` (the GPU
    name); a dynamic export's meta keeps a free batch but a fixed input size.

    Raises:
        EdgesegError: TensorRT missing (first, before any work), end2end, int8 without ``--data``,
            or a failed build.
    """
    trt = require_tensorrt()
    if job.end2end:
        raise EdgesegError(
            "end2end TensorRT engines are not built by edgeseg; export without --end2end, or export "
            "--target onnx --end2end and build that ONNX (standard NonMaxSuppression) with TensorRT's own tools"
        )
    cudart = import_cudart()
    _, index = parse_device(job.device)
    cuda_call(cudart, cudart.cudaSetDevice(index), "cudaSetDevice")
    job.meta = dataclasses.replace(
        job.meta, dynamic=False, extra={**job.meta.extra, "tensorrt": trt.__version__, "gpu": gpu_name(cudart, index)}
    )
    calibration = None
    if job.precision == "int8":
        found = calibration_set(job.data, job.calib)
        batch = max(job.batch, 1)
        # job.path lies in atomic_output's staging folder, whose parent is the engine's final folder.
        cache = job.path.parent.parent / f"{job.path.name}.calib"
        calibration = CalibrationBatches(found.images, job.imgsz, batch, cache, cache_key(job.meta, batch, found.paths))
    engine = build_engine(prepare_onnx(job), job.precision, calibration=calibration)
    write_engine(job.path, job.meta, engine)
