"""ONNX target: the fused eval model traced to ONNX, simplified, checked, with its ModelMeta embedded.

Graph: input ``images`` (B, 3, H, W) float32 RGB in [0, 1]; outputs ``preds`` (B, 4 + nc + nm, A)
and ``protos`` (B, nm, H / 4, W / 4) float32 (docs/ARCHITECTURE.md, "Output contract"); with
``--end2end``, NMS (``job.meta.nms`` set) or a one-to-one head's top-k (``job.meta.topk``) in the
graph and ``detections`` (B, max_det, 6 + nm) instead of ``preds`` (``edgeseg.targets.end2end``). Static, or with batch, height and
width dynamic (the anchor grid is computed in the graph from the feature-map shapes). fp16
artifacts hold half weights and compute in half, but cast in the graph so that their input and
outputs stay float32.
"""

import io
import warnings
from pathlib import Path

import onnx
import onnxslim
import torch
from torch import nn

from edgeseg.runtimes.backends.base import parse_device
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.model_meta import META_KEY
from edgeseg.runtimes.meta.plain_keys import plain_strings
from edgeseg.targets.common import ExportJob
from edgeseg.targets.end2end import End2End, TopK

MIN_OPSET = 17
MAX_OPSET = 20  # the newest opset torch's TorchScript-based exporter writes


class ExportWrapper(nn.Module):
    """The traced module: (B, 3, H, W) float32 images → (preds, protos) float32.

    Keeps export concerns (the half cast) out of the model: ``net`` runs in its own dtype.
    """

    def __init__(self, net: nn.Module, half: bool):
        super().__init__()
        self.net = net
        self.half = half

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        preds, protos = self.net(images.half() if self.half else images)
        return preds.float(), protos.float()


def _export_graph(module: nn.Module, example: torch.Tensor, opset: int, names: list[str], axes: dict | None = None):
    """The ONNX ModelProto of ``module`` traced on ``example`` (B, 3, H, W): input ``images``, outputs ``names``, constants folded."""
    buffer = io.BytesIO()
    torch.onnx.export(
        module,
        (example,),
        buffer,
        opset_version=opset,
        input_names=["images"],
        output_names=names,
        dynamic_axes=axes,
        do_constant_folding=True,
        dynamo=False,
    )
    return onnx.load_from_string(buffer.getvalue())


def trace(job: ExportJob) -> onnx.ModelProto:
    """``job.net`` as an ONNX graph (not yet simplified), traced at ``job.imgsz`` with ``max(job.batch, 1)`` images.

    torch 2.13 has two exporters: the torch.export-based one needs ``onnxscript`` (not an
    edgeseg dependency) and this model gains nothing from it, so the TorchScript tracer
    (``dynamo=False``) is used. Its tracer warnings are expected: the strides become constants.
    """
    kind, index = parse_device(job.device)
    device = torch.device("cpu" if kind == "cpu" else f"cuda:{index}")
    half = job.precision == "fp16"
    net = job.net.to(device)
    wrapper = ExportWrapper(net.half() if half else net, half).eval()
    nms = job.meta.nms
    if nms:
        wrapper = End2End(wrapper, job.meta.nc, nms["conf"], nms["iou"], nms["max_det"]).eval()
    elif job.meta.topk:
        wrapper = TopK(wrapper, job.meta.nc, job.meta.topk).eval()
    names = job.meta.outputs
    example = torch.zeros(max(job.batch, 1), 3, *job.imgsz, device=device)
    axes = None
    if job.dynamic:
        axes = {
            "images": {0: "batch", 2: "height", 3: "width"},
            names[0]: {0: "batch"} if job.meta.end2end else {0: "batch", 2: "anchors"},
            names[1]: {0: "batch", 2: "mask_height", 3: "mask_width"},
        }
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        # End-to-end graphs: the NMS indices it gathers with are never negative, and the slices
        # the folder skips are computed at run time.
        warnings.filterwarnings("ignore", message="Exporting aten::index operator of advanced indexing")
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
        return _export_graph(wrapper, example, job.opset, names, axes)


class NormalizedBoxes(nn.Module):
    """``net`` with the four box rows of ``preds`` divided by the input's (w, h, w, h): boxes in 0–1 of the input.

    One per-channel multiply (1.0 on the score and coefficient rows, which stay bit for bit).
    TFLite consumers (Ultralytics' LiteRT backend among them) expect normalised boxes and
    multiply them back by the input size.
    """

    def __init__(self, net: nn.Module, imgsz: tuple[int, int], channels: int):
        super().__init__()
        self.net = net
        h, w = imgsz
        scale = torch.ones(1, channels, 1)
        scale[0, :4, 0] = torch.tensor([1 / w, 1 / h, 1 / w, 1 / h])
        self.register_buffer("scale", scale)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        preds, protos = self.net(images)
        return preds * self.scale, protos


def converter_graph(job: ExportJob, path: Path, normalize_boxes: bool = False) -> list[str]:
    """Write the simplified fp32 ONNX graph a converter (onnx2tf, rknn-toolkit2) reads; return its output names.

    int8 traces the network with its head in split mode (``Segment.split``: outputs
    ``SPLIT_OUTPUTS``), fp32/fp16 the plain network (``preds``, ``protos``), with boxes in 0–1 of
    the input when ``normalize_boxes`` (``NormalizedBoxes``; the split head is left as it is).
    onnx2tf needs the simplified graph: unsimplified ``Split`` nodes become Flex ops.
    """
    net = job.net.float().cpu().eval()
    head = net.head
    head.split = job.precision == "int8"
    names = head.output_names
    traced = NormalizedBoxes(net, job.imgsz, job.meta.head_shape[1]) if normalize_boxes and not head.split else net
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's constant-stride and deprecation warnings
            model = _export_graph(traced, torch.zeros(max(job.batch, 1), 3, *job.imgsz), job.opset, names)
    finally:
        head.split = False
    onnx.save(onnxslim.slim(model), str(path))
    return names


def build(job: ExportJob) -> None:
    """Write ``job.path``: the traced graph, simplified with onnxslim when ``job.simplify``, checked, metadata embedded.

    ``metadata_props`` holds the ModelMeta as JSON under ``META_KEY`` and, beside it, the plain
    keys the YOLO ecosystem reads (``edgeseg.runtimes.meta.plain_keys``).

    Raises:
        EdgesegError: an opset outside 17–20.
    """
    if not MIN_OPSET <= job.opset <= MAX_OPSET:
        raise EdgesegError(f"ONNX opset {job.opset} is not supported; use {MIN_OPSET} to {MAX_OPSET}")
    model = trace(job)
    if job.simplify:
        # onnxslim over onnxsim: pure Python (no compiled wheel to match on the training machine),
        # leaves metadata_props alone where onnxsim adds 19 entries of its own, and leaves
        # yolo11n-seg's outputs bit-identical (docs/ARCHITECTURE.md, "Converter choices").
        model = onnxslim.slim(model)
    axis, channels = job.meta.head_shape
    # The tracer cannot tell that the channel count of ``preds`` is fixed when the batch and
    # size are dynamic; declaring it lets consumers check the layout.
    model.graph.output[0].type.tensor_type.shape.dim[axis].dim_value = channels
    model.metadata_props.add(key=META_KEY, value=job.meta.to_json())
    for key, value in plain_strings(job.meta).items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "edgeseg"
    model.producer_version = job.meta.version
    onnx.checker.check_model(model)
    onnx.save(model, str(job.path))
