"""TensorRT backend: serialized engines run on an NVIDIA GPU through the TensorRT Python API and cuda-python.

The engine file (a ModelMeta header, then the engine; ``tensorrt_file``) is read without TensorRT.
Inputs and outputs are bound by tensor name (``images`` → ``preds``, ``protos``) and live in
device buffers allocated with ``cudaMalloc``; a call copies the (B, 3, H, W) float32 batch in,
runs ``execute_async_v3`` on a CUDA stream and copies both outputs back. torch is never imported.
An engine is tied to the TensorRT version and the GPU that built them: the header's ``extra``
records both (``tensorrt``, ``gpu``), and a mismatch is named in the error.

Engine building is not verified in edgeseg's own test environment (TensorRT is not installable
there): header parsing is tested, inference is written against TensorRT 10's documented API.
"""

import logging

import numpy as np

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.backends.base import Backend, parse_device
from edgeseg.runtimes.backends.cuda import cuda_call, gpu_name, import_cudart
from edgeseg.runtimes.backends.tensorrt_file import read_engine

LOGGER = logging.getLogger("edgeseg")

MIN_TENSORRT = 10  # execute_async_v3, set_input_shape and name-based I/O


class TensorRTBackend(Backend):
    """A deserialized TensorRT engine behind the ``preds``/``protos`` contract.

    Args:
        path: the ``.engine`` file.
        device: the GPU: ``cuda``, ``cuda:N`` or ``N``; ``cpu`` (every command's default) means
            GPU 0, since an engine runs only on a GPU.

    Raises:
        EdgesegError: TensorRT or cuda-python missing, no usable GPU, an unreadable header, or an
            engine built by another TensorRT version or for another GPU.
    """

    name = "tensorrt"

    def __init__(self, path: str, device: str = "cpu"):
        import tensorrt as trt

        meta, engine_bytes = read_engine(path)
        self.cudart = cudart = import_cudart()
        _, index = parse_device(device)
        cuda_call(cudart, cudart.cudaSetDevice(index), "cudaSetDevice")
        built_with, built_on = meta.extra.get("tensorrt"), meta.extra.get("gpu")
        here = gpu_name(cudart, index)
        mismatch = (
            f"{path}: built with TensorRT {built_with or '?'} for {built_on or '?'}; this is TensorRT "
            f"{trt.__version__} on {here}. An engine runs only with the TensorRT version and GPU model "
            "that built it: export it again on this machine (edgeseg export MODEL.pt --target tensorrt)"
        )
        if built_with and built_with != trt.__version__:
            raise EdgesegError(mismatch)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise EdgesegError(mismatch)
        if built_on and built_on != here:
            LOGGER.warning(f"{path}: built for {built_on}, running on {here}; rebuild it here if it fails or runs slowly")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if inputs != ["images"] or not {"preds", "protos"} <= set(names):
            raise EdgesegError(f"{path}: expected input 'images' and outputs 'preds', 'protos'; the engine has {names}")
        self.stream = cuda_call(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.buffers: dict[str, tuple[int, int]] = {}  # tensor name → (device pointer, bytes)
        shape = tuple(self.engine.get_tensor_shape("images"))
        batch = 0 if shape[0] == -1 else int(shape[0])
        self.max_batch = int(self.engine.get_tensor_profile_shape("images", 0)[2][0]) if batch == 0 else batch
        meta.batch, meta.imgsz, meta.dynamic = batch, (int(shape[2]), int(shape[3])), False
        super().__init__(path, meta, device)

    def _buffer(self, name: str, nbytes: int) -> int:
        """A device buffer of at least ``nbytes`` for tensor ``name``, reused across calls, bound to the context."""
        pointer, size = self.buffers.get(name, (0, 0))
        if size < nbytes:
            if pointer:
                cuda_call(self.cudart, self.cudart.cudaFree(pointer), "cudaFree")
            pointer = int(cuda_call(self.cudart, self.cudart.cudaMalloc(nbytes), "cudaMalloc"))
            self.buffers[name] = (pointer, nbytes)
            self.context.set_tensor_address(name, pointer)
        return pointer

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) float32 → preds (B, 4 + nc + nm, A), protos (B, nm, H / 4, W / 4) float32, on the GPU.

        A dynamic-batch engine runs at most its optimisation profile's largest batch per call.
        """
        if len(batch) > self.max_batch:
            parts = [self._run(batch[i : i + self.max_batch]) for i in range(0, len(batch), self.max_batch)]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        return self._run(batch)

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One engine execution on (B <= max_batch, 3, H, W) float32 → (preds, protos) float32."""
        cudart = self.cudart
        images = np.ascontiguousarray(batch, dtype=self.dtypes["images"])
        self.context.set_input_shape("images", images.shape)
        pointer = self._buffer("images", images.nbytes)
        copy_in, copy_out = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_call(cudart, cudart.cudaMemcpyAsync(pointer, images.ctypes.data, images.nbytes, copy_in, self.stream), "cudaMemcpyAsync")
        outputs = {}
        for name in ("preds", "protos"):
            outputs[name] = np.empty(tuple(self.context.get_tensor_shape(name)), self.dtypes[name])
            self._buffer(name, outputs[name].nbytes)
        if not self.context.execute_async_v3(int(self.stream)):
            raise EdgesegError(f"{self.path}: TensorRT execution failed (see the TensorRT log above)")
        for name, host in outputs.items():
            pointer = self.buffers[name][0]
            cuda_call(cudart, cudart.cudaMemcpyAsync(host.ctypes.data, pointer, host.nbytes, copy_out, self.stream), "cudaMemcpyAsync")
        cuda_call(cudart, cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return outputs["preds"].astype(np.float32, copy=False), outputs["protos"].astype(np.float32, copy=False)

    def __del__(self):
        for pointer, _ in getattr(self, "buffers", {}).values():
            self.cudart.cudaFree(pointer)


def load(path: str, device: str | None = None) -> TensorRTBackend:
    """Open an ``.engine`` on GPU ``device``.

    Raises:
        ModuleNotFoundError: TensorRT is not installed (the registry names the extra and where TensorRT comes from).
        EdgesegError: TensorRT older than 10 or cuda-python missing, naming what to install, or the
            engine is unusable here.
    """
    import tensorrt

    if int(tensorrt.__version__.split(".")[0]) < MIN_TENSORRT:
        raise EdgesegError(f"{path}: TensorRT {tensorrt.__version__} is too old: edgeseg needs TensorRT {MIN_TENSORRT} or newer")
    try:
        import_cudart()
    except ImportError:
        raise EdgesegError(f"{path}: TensorRT engines need cuda-python: install edgeseg[tensorrt]") from None
    return TensorRTBackend(path, "cpu" if device is None else device)
