"""OpenVINO backend: ``*_openvino_model/`` IR folders (or their ``.xml``) from edgeseg, or any IR with the YOLO-seg layout.

It also runs an ``.onnx`` file directly (OpenVINO's ONNX reader; ``edgeseg.runtimes.load(path,
engine="openvino")``), reading the ModelMeta from the ONNX metadata, which OpenVINO exposes as
``rt_info["framework"]["edgeseg"]``.

The compute precision is f32 unless bf16 is asked for (``precision="bf16"``, or an IR exported
with ``--precision bf16``, whose ModelMeta says so): OpenVINO's CPU plugin then computes the fp32
weights in bf16 (``INFERENCE_PRECISION_HINT``): raw inference 1.5-1.7x as fast on a CPU that
has bf16 arithmetic, mAP unchanged on trained models (docs/ARCHITECTURE.md, "Converter choices"). Asked for on a CPU without it (where
emulated bf16 is slower than f32) or on another device, it is refused; an IR exported for bf16
runs in f32 there, with a warning.

openvino is imported by ``load`` only, so a device without it gets a one-line message naming the
extra to install.
"""

import dataclasses
import logging
from pathlib import Path

import numpy as np

from edgeseg.runtimes.backends.base import Backend
from edgeseg.runtimes.backends.layout import bind_outputs, layout_meta, with_input_shape
from edgeseg.runtimes.backends.openvino_files import ONNX_RT_INFO_PATH, RT_INFO_PATH, ir_files, ov_device, plain_values
from edgeseg.runtimes.cpus import usable_cpus
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.model_meta import META_KEY
from edgeseg.runtimes.meta.plain_keys import meta_from_map

LOGGER = logging.getLogger("edgeseg")

# INFERENCE_PRECISION_HINT per compute precision. Without a hint, OpenVINO computes an fp32 IR in
# bf16 on a CPU that has it: f32 unless bf16 is asked for. An int8 IR's quantised layers run in int8
# whatever the hint; it only sets the float parts.
HINTS = {"fp32": "f32", "bf16": "bf16"}
BF16_CAPABILITY = "BF16"  # in the CPU plugin's OPTIMIZATION_CAPABILITIES where the CPU computes bf16 natively


_CORE = []  # the process's one openvino.Core, once created


def shared_core():
    """The process's one ``openvino.Core``, created on first use and never destroyed.

    OpenVINO's CPU plugin (2026.4) installs an alternate signal stack per Core and puts the
    previous one back when that Core goes, so two Cores destroyed out of creation order leave the
    thread's alternate stack pointing at freed memory; the next signal a Python handler takes
    (Ctrl-C, a child's exit once torch's DataLoader watches SIGCHLD) then ends the process with
    SIGSEGV. One Core for every model avoids that.

    Raises:
        ModuleNotFoundError: openvino is not installed (checked on every call; the registry names the extra).
    """
    import openvino as ov

    if not _CORE:
        _CORE.append(ov.Core())
    return _CORE[0]


def cpu_bf16(core) -> bool:
    """True when OpenVINO's CPU plugin computes bf16 natively here (AVX512-BF16, AMX; its OPTIMIZATION_CAPABILITIES)."""
    return BF16_CAPABILITY in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def require_bf16(core, path, device: str = "CPU") -> None:
    """Raise EdgesegError unless ``device`` is OpenVINO's CPU and it computes bf16 natively (``cpu_bf16``)."""
    if device != "CPU":
        raise EdgesegError(f"{path}: bf16 runs on OpenVINO's CPU device only, not {device}")
    if not cpu_bf16(core):
        raise EdgesegError(
            f"{path}: this CPU has no native bf16 (AVX512-BF16, AMX; OpenVINO lists no BF16 capability), "
            "where emulated bf16 runs slower than fp32: use fp32"
        )


def compute_precision(core, path, meta_precision: str, asked: str | None, device: str) -> str:
    """``fp32`` or ``bf16``: ``asked`` if given (bf16 checked by ``require_bf16``), else bf16 for an IR exported
    for it where ``require_bf16`` allows (else fp32, with a warning), else fp32."""
    if asked is not None:
        if asked == "bf16":
            require_bf16(core, path, device)
        return asked
    if meta_precision != "bf16":
        return "fp32"
    try:
        require_bf16(core, path, device)
    except EdgesegError as exc:
        LOGGER.warning(f"{exc} (exported for bf16; running it in fp32, as exact and at fp32 speed)")
        return "fp32"
    return "bf16"


def _describe(ports) -> str:
    """``name [shape], ...`` of model inputs or outputs, for messages."""
    return ", ".join(f"{p.get_any_name() if p.get_names() else '?'} {p.get_partial_shape()}" for p in ports)


def _dim(shape, i: int) -> int | None:
    """Dimension ``i`` of a PartialShape as an int, or None when dynamic."""
    return shape[i].get_length() if shape[i].is_static else None


def _dims(port) -> list[int | None]:
    """The dimensions of a port's PartialShape, None where dynamic."""
    shape = port.get_partial_shape()
    return [_dim(shape, i) for i in range(shape.rank.get_length())]


class OpenVinoBackend(Backend):
    """A compiled OpenVINO model bound to the ``preds``/``protos`` contract.

    The metadata is read from ``rt_info["model_info"]["edgeseg"]``, else from the plain keys of
    the ``metadata.yaml`` beside the IR (an Ultralytics export; ``plain_values``); without either,
    an IR whose outputs have the YOLO-seg layout still loads (nc from the output shapes, names =
    class ids), as in the ONNX backend. Static facts of the graph (batch, input size) take
    precedence over the metadata.
    Inference runs synchronously on one infer request. An ``AsyncInferQueue`` over a batch's
    images (2 requests, latency or throughput hint) was measured against it on the 2 shared CPU
    cores of the development machine (trained yolo11n-seg at 320, 16 images): the results swung
    both ways by 2x between repeats at load average ~6, so no gain could be shown and the
    simple path stays.

    Args:
        path: the IR folder or its ``.xml``, or an ``.onnx`` file.
        device: ``cpu``, ``gpu``, ``gpu:N`` or ``auto``.
        precision: ``fp32`` or ``bf16`` to compute in; None: the IR's (``compute_precision``).

    Attributes:
        compiled: the ``openvino.CompiledModel`` (compiled with the precision's ``HINTS``, on the
            CPU with ``usable_cpus()`` threads; for ``auto``, passed on to the CPU and GPU
            plugins, since the AUTO plugin itself has no precision hint).
        meta: the ModelMeta; where bf16 is computed in, or a bf16 IR is run in fp32, its ``precision``
            says so (``bf16``, ``fp32``).
    """

    name = "openvino"

    def __init__(self, path: str, device: str = "cpu", precision: str | None = None):
        core = shared_core()  # first: without openvino the message names the extra, whatever the path holds
        onnx_file = Path(path).suffix.lower() == ".onnx"
        files = (str(path),) if onnx_file else tuple(map(str, ir_files(Path(path))))
        target = ov_device(device)
        try:
            model = core.read_model(*files)
        except RuntimeError as exc:
            kind = "ONNX model" if onnx_file else "OpenVINO IR"
            raise EdgesegError(f"{path}: not a loadable {kind} ({str(exc).strip().splitlines()[0]})") from None
        inputs, outputs = model.inputs, model.outputs
        if len(inputs) != 1 or inputs[0].get_partial_shape().rank.get_length() != 4 or _dim(inputs[0].get_partial_shape(), 1) != 3:
            raise EdgesegError(f"{path}: expected one (B, 3, H, W) image input, found {_describe(inputs)}")
        meta_path = ONNX_RT_INFO_PATH if onnx_file else RT_INFO_PATH
        own = {META_KEY: model.get_rt_info(meta_path).astype(str)} if model.has_rt_info(meta_path) else None
        meta = meta_from_map(own or plain_values(model, Path(files[0]), onnx_file), path)
        preds, protos = bind_outputs(outputs, lambda o: o.get_names(), lambda o: o.get_partial_shape().rank.get_length(), meta, path, _describe(outputs))
        meta = layout_meta(meta, _dims(preds), _dims(protos), path, _describe([preds, protos]))
        shape = inputs[0].get_partial_shape()
        meta = with_input_shape(meta, _dim(shape, 0), _dim(shape, 2), _dim(shape, 3))
        computed = compute_precision(core, path, meta.precision, precision, target)
        if "bf16" in (computed, meta.precision):  # says how it computes: bf16, or fp32 for a bf16 IR run in fp32
            meta = dataclasses.replace(meta, precision=computed)
        hint = {"INFERENCE_PRECISION_HINT": HINTS[computed]}
        try:
            cpu = {**hint, "INFERENCE_NUM_THREADS": usable_cpus()}
            config = {"DEVICE_PROPERTIES": {"CPU": cpu, "GPU": hint}} if target == "AUTO" else cpu if target == "CPU" else hint
            self.compiled = core.compile_model(model, target, config)
        except RuntimeError as exc:
            raise EdgesegError(f"{path}: OpenVINO cannot compile it for {target} ({str(exc).strip().splitlines()[0]})") from None
        self.outputs = [self.compiled.output(outputs.index(p)) for p in (preds, protos)]
        self.request = self.compiled.create_infer_request()
        super().__init__(path, meta, device)

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, 3, H, W) float32 → preds (B, 4 + nc + nm, A), protos (B, nm, H / 4, W / 4) float32."""
        results = self.request.infer([np.ascontiguousarray(batch, dtype=np.float32)])
        return tuple(np.array(results[port], dtype=np.float32) for port in self.outputs)


def load(path: str, device: str | None = None, precision: str | None = None) -> OpenVinoBackend:
    """Open an OpenVINO IR folder or ``.xml`` (or an ``.onnx`` file) on ``device``, computing in ``precision`` (``OpenVinoBackend``).

    Raises:
        ModuleNotFoundError: openvino is not installed (the registry names the extra).
        EdgesegError: the IR is unusable, or bf16 asked for where it is not native.
    """
    return OpenVinoBackend(path, "cpu" if device is None else device, precision)
