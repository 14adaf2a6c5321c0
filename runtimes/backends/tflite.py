"""TFLite backend: ``.tflite`` files from edgeseg (fp32, fp16, full-integer int8) on the LiteRT interpreter.

The interpreter is ``ai-edge-litert`` (``edgeseg[tflite]``), else ``tflite_runtime`` or
``tensorflow.lite`` when that is what the device has. edgeseg's TFLite artifacts take an NHWC
input (B, H, W, 3); this backend transposes the NCHW batch the runtime gives it. An int8 artifact
takes and returns int8 tensors, and keeps the head as four outputs, each with its own scale
(docs/ARCHITECTURE.md, "Converter choices"): ``box_logits`` (B, 4 * reg_max, A) the DFL
bins, decoded here with ``meta.extra["reg_max"]`` and ``meta.extra["strides"]``, ``scores``
(B, nc, A), ``coefficients`` (B, nm, A) and ``protos`` (B, H / 4, W / 4, nm). After
dequantisation (``(q - zero_point) * scale`` per tensor) they are joined back into the output
contract ``preds`` (B, 4 + nc + nm, A) + ``protos`` (B, nm, H / 4, W / 4) by
``edgeseg.runtimes.pipeline.head_decode.join_split_head``.

The ModelMeta lives in the flatbuffer's ``metadata`` vector under ``META_KEY`` (read without any
interpreter by ``tflite_file``). A file without it (an Ultralytics export, whose input may be
NCHW) is described by the plain keys of the ``metadata.json`` zipped after the flatbuffer, its
boxes being in 0–1 of the input.
"""

import dataclasses
import os
from pathlib import Path

import numpy as np

from edgeseg.runtimes.backends.base import Backend, parse_device
from edgeseg.runtimes.backends.layout import channels_first
from edgeseg.runtimes.backends.tflite_file import describe_tensors, file_meta
from edgeseg.runtimes.backends.tflite_flatbuffer import read_metadata
from edgeseg.runtimes.cpus import usable_cpus
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.model_meta import ModelMeta
from edgeseg.runtimes.pipeline.head_decode import OUTPUTS, SPLIT_OUTPUTS, join_split_head


def _interpreter_class():
    """The LiteRT ``Interpreter`` class: ai-edge-litert, else tflite_runtime, else tensorflow.lite.

    Raises:
        ModuleNotFoundError: for ai_edge_litert, when none of them is installed (the registry names the extra).
    """
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ModuleNotFoundError as missing:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ModuleNotFoundError:
            try:
                from tensorflow.lite import Interpreter
            except ModuleNotFoundError:
                raise missing from None
    return Interpreter


class TfliteBackend(Backend):
    """A LiteRT interpreter bound to the ``preds``/``protos`` contract.

    Outputs are bound by the tensor names the metadata lists (``meta.extra["tensors"]``:
    contract name → TFLite tensor name), never by position (an int8 file lists its outputs in
    another order than a float one); a file without edgeseg metadata is bound by rank (rank 4 =
    protos) when it has the two-output YOLO-seg layout.

    Args:
        path: the ``.tflite`` file.
        device: ``cpu`` only (GPU/NPU delegates are the device app's business).
        num_threads: interpreter threads (default: the CPUs this process may use, ``usable_cpus``).
    """

    name = "litert"

    def __init__(self, path: str, device: str = "cpu", num_threads: int | None = None):
        if parse_device(device)[0] != "cpu":
            raise EdgesegError(f"{path}: the TFLite backend runs on the CPU; use --device cpu")
        data = Path(path).read_bytes()
        try:
            entries = read_metadata(data)
        except ValueError as exc:
            raise EdgesegError(f"{path}: not a TFLite model ({exc})") from None
        Interpreter = _interpreter_class()
        try:
            self.interpreter = Interpreter(model_content=data, num_threads=num_threads or usable_cpus())
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise EdgesegError(f"{path}: not a loadable TFLite model ({str(exc).splitlines()[0]})") from None
        inputs = self.interpreter.get_input_details()
        shape = list(inputs[0]["shape"]) if len(inputs) == 1 else []
        if len(shape) != 4 or 3 not in (shape[1], shape[3]):
            raise EdgesegError(f"{path}: expected one (B, H, W, 3) or (B, 3, H, W) image input, found {describe_tensors(inputs)}")
        self.input = inputs[0]
        self.nhwc = shape[3] == 3  # edgeseg's and onnx2tf's files; a litert-torch export keeps NCHW
        batch, height, width = (int(v) for v in (shape[:3] if self.nhwc else (shape[0], *shape[2:])))
        meta = file_meta(entries, data, self.interpreter.get_output_details(), (height, width), path)
        self.outputs = self._bind(self.interpreter.get_output_details(), meta, path)
        layout = "NHWC" if self.nhwc else "NCHW"
        meta = dataclasses.replace(meta, batch=batch, dynamic=False, imgsz=(height, width), layout=layout)
        # boxes in 0–1 of the input are scaled back to px by one multiply per call
        normalized = meta.extra.get("boxes") == "normalized"
        self.box_scale = np.array([width, height, width, height], np.float32)[None, :, None] if normalized else None
        super().__init__(path, meta, device)

    @staticmethod
    def _bind(outputs: list[dict], meta: ModelMeta, path: str) -> dict[str, dict]:
        """``{contract name: output details}`` for ``meta.outputs``, by the tensor names in ``meta.extra``."""
        by_name = {o["name"]: o for o in outputs}
        tensors = meta.extra.get("tensors", {})
        missing = [n for n in meta.outputs if tensors.get(n) not in by_name]
        if missing or sorted(meta.outputs) not in (sorted(OUTPUTS), sorted(SPLIT_OUTPUTS)):
            raise EdgesegError(f"{path}: outputs {missing or meta.outputs} not found among {describe_tensors(outputs)}")
        return {n: by_name[tensors[n]] for n in meta.outputs}

    def _output(self, name: str, channels: int) -> np.ndarray:
        """Output ``name`` dequantised to float32, channels first: (B, channels, A) or (B, channels, h, w)."""
        detail = self.outputs[name]
        value = self.interpreter.get_tensor(detail["index"])
        scale, zero = detail["quantization"]
        if np.issubdtype(value.dtype, np.integer):
            value = (value.astype(np.float32) - zero) * scale
        return channels_first(value.astype(np.float32, copy=False), channels, self.nhwc)

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) float32 → preds (B, 4 + nc + nm, A), protos (B, nm, H / 4, W / 4) float32."""
        x = batch.transpose(0, 2, 3, 1) if self.nhwc else batch
        dtype = self.input["dtype"]
        if np.issubdtype(dtype, np.integer):
            scale, zero = self.input["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero), info.min, info.max)
        self.interpreter.set_tensor(self.input["index"], np.ascontiguousarray(x, dtype=dtype))
        self.interpreter.invoke()
        nc, nm = self.meta.nc, self.meta.nm
        protos = self._output("protos", nm)
        if "preds" in self.outputs:
            preds = self._output("preds", 4 + nc + nm)
            if self.box_scale is not None:
                preds[:, :4] *= self.box_scale
            return preds, protos
        extra = self.meta.extra
        parts = (self._output("box_logits", 4 * extra["reg_max"]), self._output("scores", nc), self._output("coefficients", nm))
        return join_split_head(*parts, self.meta.imgsz, extra["strides"]), protos


def load(path: str, device: str | None = None) -> TfliteBackend:
    """Open ``path`` with the LiteRT interpreter (threads: ``EDGESEG_TFLITE_THREADS``, else ``usable_cpus()``)."""
    threads = os.environ.get("EDGESEG_TFLITE_THREADS")
    return TfliteBackend(path, "cpu" if device is None else device, int(threads) if threads else None)
