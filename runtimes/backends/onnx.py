"""ONNX Runtime backend: ``.onnx`` files from edgeseg, or any ONNX with the YOLO-seg output layout."""

import copy
import logging
import threading

import numpy as np
import onnxruntime as ort

from edgeseg.runtimes.backends.base import Backend, choose_device, parse_device
from edgeseg.runtimes.backends.layout import bind_outputs, layout_meta, with_input_shape
from edgeseg.runtimes.cpus import usable_cpus
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.plain_keys import meta_from_map

LOGGER = logging.getLogger("edgeseg")


def session_options(stream: bool) -> ort.SessionOptions:
    """ONNX Runtime options for one image at a time (``stream=False``) or for a pipelined stream.

    One image: workers spin while a run lasts and stop when it returns
    (``session.force_spinning_stop``), the lowest latency without burning CPU between calls.
    A stream (decode, post-processing and drawing on threads beside inference, two inference
    calls at once): idle workers sleep and work is handed out in small blocks, so that a worker
    preempted by those threads does not hold up the rest. Measured here, 2 cores, yolo11n-seg at
    320 (``benchmarks/stream_speed.py``): spinning makes inference alone 1.3x faster but the
    pipelined stream 0.91x as fast.
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if stream:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.dynamic_block_base", "4")
    else:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.force_spinning_stop", "1")
    options.intra_op_num_threads = usable_cpus()  # its default counts the machine's cores, not this process's share
    return options


def _providers(device: str, path: str) -> list:
    """Execution providers for ``device``; a GPU device without the CUDA provider is an error."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise EdgesegError(
            f"{path}: device {device!r} needs onnxruntime-gpu (CUDAExecutionProvider); "
            f"this onnxruntime has {', '.join(available)} (use --device cpu)"
        )
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


def _static(dim) -> int | None:
    """A dimension of an ONNX Runtime shape as an int, None when it is symbolic (dynamic)."""
    return dim if isinstance(dim, int) else None


def _describe(args) -> str:
    """``name (shape), ...`` of session inputs or outputs, for messages."""
    return ", ".join(f"{a.name} {list(a.shape)}" for a in args)


class OnnxBackend(Backend):
    """An ONNX Runtime session bound to the ``preds``/``protos`` contract.

    The metadata is read from ``metadata_props[META_KEY]``, else from the plain keys an
    Ultralytics export carries (``edgeseg.runtimes.meta.plain_keys``). Without either, a model whose outputs
    have the YOLO-seg layout still loads: nc = C - 4 - nm from the output shapes, the input size
    from the input shape (640 if dynamic) and class ids as names. Outputs are bound by the names
    the metadata lists, else by rank (rank 4 = protos). Static facts of the graph (batch, input
    size) take precedence over the metadata.

    Args:
        path: the ``.onnx`` file.
        device: ``cpu``, or ``cuda``/``cuda:N``/``N`` with onnxruntime-gpu.
    """

    name = "onnxruntime"
    concurrent = True  # InferenceSession.run is thread-safe

    def __init__(self, path: str, device: str = "cpu"):
        self.providers = _providers(device, path)
        try:
            self.session = ort.InferenceSession(str(path), session_options(stream=False), providers=self.providers)
        except Exception as exc:  # onnxruntime's errors (Fail, InvalidProtobuf, ...) derive from Exception only
            raise EdgesegError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        self._stream_backend: OnnxBackend | None = None
        self._stream_lock = threading.Lock()
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 3:
            raise EdgesegError(f"{path}: expected one (B, 3, H, W) image input, found {_describe(inputs)}")
        self.input_name = inputs[0].name
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        meta = meta_from_map(self.session.get_modelmeta().custom_metadata_map, path)
        preds, protos = bind_outputs(outputs, lambda o: [o.name], lambda o: len(o.shape), meta, path, _describe(outputs))
        self.output_names = [preds.name, protos.name]
        meta = layout_meta(meta, [_static(d) for d in preds.shape], [_static(d) for d in protos.shape], path, _describe([preds, protos]))
        meta = with_input_shape(meta, *(_static(inputs[0].shape[i]) for i in (0, 2, 3)))
        super().__init__(path, meta, device)

    def stream_infer(self):
        """``infer`` on a second session of the same file opened with ``session_options(stream=True)`` (once, on first use).

        On a GPU ``infer`` itself: the CPU thread settings barely matter there, and a second
        session would hold the model twice in GPU memory.
        """
        if parse_device(self.device)[0] != "cpu":
            return self.infer
        with self._stream_lock:
            if self._stream_backend is None:
                twin = copy.copy(self)
                twin.session = ort.InferenceSession(str(self.path), session_options(stream=True), providers=self.providers)
                self._stream_backend = twin
        return self._stream_backend.infer

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) float32 → preds (B, 4 + nc + nm, A), protos (B, nm, H / 4, W / 4) float32."""
        feed = {self.input_name: np.ascontiguousarray(batch, dtype=self.input_dtype)}
        preds, protos = self.session.run(self.output_names, feed)
        return preds.astype(np.float32, copy=False), protos.astype(np.float32, copy=False)


def load(path: str, device: str | None = None) -> OnnxBackend:
    """Open ``path`` with ONNX Runtime on ``device``; None: the first CUDA GPU where onnxruntime has CUDA, else the CPU."""
    return OnnxBackend(path, choose_device(device, "CUDAExecutionProvider" in ort.get_available_providers(), "onnxruntime"))
