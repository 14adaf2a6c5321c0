"""ONNX Runtime backend: ``.onnx`` files from edgeseg, or any ONNX with the YOLO-seg output layout."""

import dataclasses
import logging

import numpy as np
import onnxruntime as ort

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.backends.base import Backend, choose_device, parse_device
from edgeseg.runtimes.cpus import usable_cpus
from edgeseg.runtimes.meta import META_KEY, ModelMeta
from edgeseg.runtimes.plain_meta import meta_from_map

LOGGER = logging.getLogger("edgeseg")

DEFAULT_IMGSZ = 640  # input size assumed for a third-party ONNX whose height/width are dynamic
LAYOUT = "(B, 4+nc+nm, A) preds and (B, nm, H/4, W/4) protos"


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


def _describe(args) -> str:
    """``name (shape), ...`` of session inputs or outputs, for messages."""
    return ", ".join(f"{a.name} {list(a.shape)}" for a in args)


class OnnxBackend(Backend):
    """An ONNX Runtime session bound to the ``preds``/``protos`` contract.

    The metadata is read from ``metadata_props[META_KEY]``, else from the plain keys an
    Ultralytics export carries (``edgeseg.runtimes.plain_meta``). Without either, a model whose outputs
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
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # Idle workers sleep instead of spinning, and work is handed out in small blocks, so that a
        # worker preempted by another thread (a pipelined stream's decoding, post-processing and
        # drawing) does not hold up the rest (benchmarks/stream_speed.py)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.dynamic_block_base", "4")
        options.intra_op_num_threads = usable_cpus()  # its default counts the machine's cores, not this process's share
        providers = _providers(device, path)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime's errors (Fail, InvalidProtobuf, ...) derive from Exception only
            raise EdgesegError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 3:
            raise EdgesegError(f"{path}: expected one (B, 3, H, W) image input, found {_describe(inputs)}")
        self.input_name = inputs[0].name
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        meta = meta_from_map(self.session.get_modelmeta().custom_metadata_map, path)
        preds, protos = self._bind(outputs, meta, path)
        self.output_names = [preds.name, protos.name]
        axis, size = meta.head_shape if meta is not None else (1, None)
        channels, nm = preds.shape[axis], protos.shape[1]
        if meta is None:
            if not (isinstance(channels, int) and isinstance(nm, int) and channels - 4 - nm >= 1):
                raise EdgesegError(f"{path}: outputs do not have the YOLO-seg layout {LAYOUT}; found {_describe(outputs)}")
            meta = ModelMeta(names={i: str(i) for i in range(channels - 4 - nm)}, imgsz=(DEFAULT_IMGSZ, DEFAULT_IMGSZ), nm=nm)
            LOGGER.warning(f"{path}: no '{META_KEY}' metadata; using the output layout (nc={meta.nc}, names = class ids)")
        elif isinstance(channels, int) and isinstance(nm, int) and (channels, nm) != (size, meta.nm):
            raise EdgesegError(
                f"{path}: metadata says nc={meta.nc}, nm={meta.nm} but the outputs are {_describe([preds, protos])}"
            )
        batch, height, width = inputs[0].shape[0], inputs[0].shape[2], inputs[0].shape[3]
        static_hw = isinstance(height, int) and isinstance(width, int)
        meta = dataclasses.replace(
            meta,
            batch=batch if isinstance(batch, int) else 0,
            dynamic=not static_hw,
            imgsz=(height, width) if static_hw else meta.imgsz,
        )
        super().__init__(path, meta, device)

    @staticmethod
    def _bind(outputs, meta: ModelMeta | None, path: str):
        """(preds, protos) output args: by the metadata's names when they are the outputs, else by rank."""
        by_name = {o.name: o for o in outputs}
        if meta is not None and len(meta.outputs) == 2 and all(n in by_name for n in meta.outputs) and len(outputs) == 2:
            return by_name[meta.outputs[0]], by_name[meta.outputs[1]]
        ranked = {len(o.shape): o for o in outputs}
        if len(outputs) != 2 or set(ranked) != {3, 4}:
            raise EdgesegError(f"{path}: outputs do not have the YOLO-seg layout {LAYOUT}; found {_describe(outputs)}")
        return ranked[3], ranked[4]

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) float32 → preds (B, 4 + nc + nm, A), protos (B, nm, H / 4, W / 4) float32."""
        feed = {self.input_name: np.ascontiguousarray(batch, dtype=self.input_dtype)}
        preds, protos = self.session.run(self.output_names, feed)
        return preds.astype(np.float32, copy=False), protos.astype(np.float32, copy=False)


def load(path: str, device: str | None = None) -> OnnxBackend:
    """Open ``path`` with ONNX Runtime on ``device``; None: the first CUDA GPU where onnxruntime has CUDA, else the CPU."""
    return OnnxBackend(path, choose_device(device, "CUDAExecutionProvider" in ort.get_available_providers(), "onnxruntime"))
