"""OpenVINO target: an IR folder (``<name>_openvino_model/<name>.xml`` + ``.bin``) built from the ONNX hub artifact.

The folder holds one IR with the ONNX graph's contract: input ``images`` (B, 3, H, W) float32 RGB
in [0, 1], outputs ``preds`` (B, 4 + nc + nm, A) and ``protos`` (B, nm, H / 4, W / 4) float32, and
the ModelMeta as JSON in the IR's ``rt_info`` under ``model_info/edgeseg``, and a
``metadata.yaml`` with the plain keys the YOLO ecosystem's clients read.

* fp32: float32 weights (``compress_to_fp16=False``);
* fp16: weights stored as float16, decompressed to float32 at load (the backend computes in f32);
* bf16: the fp32 IR, its ModelMeta saying ``bf16``: the backend computes it in bf16 where the CPU
  has native bf16 (``edgeseg.runtimes.backends.openvino.compute_precision``). Exporting it on a
  CPU without refuses, since verification would judge fp32 arithmetic instead;
* int8: NNCF post-training quantisation (mixed preset: symmetric weights, asymmetric
  activations) calibrated on letterboxed images of the data YAML's train split. The head's box
  decoding (DFL and the elementwise anchor/stride arithmetic), the sigmoid and the last conv of
  each box / class / coefficient branch stay in float (``ignored_patterns``): they carry
  pixel-scale values next to 0–1 scores (docs/ARCHITECTURE.md, "Converter choices"). Measured
  on a trained yolo11n-seg at 320 (16 val images): decoding alone in float 80 % detection agreement,
  plus the last convs 83 % at the same 3.2 ms; the whole head in float no better and much slower.
  The outputs themselves are never quantised.
"""

import dataclasses
import logging
import re

import nncf
import numpy as np
import openvino as ov

from edgeseg.nn.head import float_kept_modules, head_module_name
from edgeseg.runtimes.backends.openvino import require_bf16, shared_core
from edgeseg.runtimes.backends.openvino_files import RT_INFO_PATH
from edgeseg.runtimes.meta.plain_keys import write_sidecar
from edgeseg.runtimes.pipeline.preprocess import to_input_tensor
from edgeseg.targets import onnx as onnx_target
from edgeseg.targets.common import ExportJob, calibration_images

LOGGER = logging.getLogger("edgeseg")

SUFFIX = "_openvino_model"
DECODE_OPS = ("Add", "Sub", "Mul", "Div")  # ONNX op types of the head's own box decoding (anchor/stride arithmetic)


def scope_pattern(module: str) -> str:
    """A regex matching the ONNX (and IR) node names inside the module of qualified name ``module``.

    The TorchScript exporter names a node ``/<scope>/…/<op>``, one scope per module called on the
    way, each scope the module's qualified name from its last non-numeric part on: module
    ``model.23.cv2.0.2`` gives ``/model.23/cv2.0/cv2.0.2/Conv``. Scopes of modules in between
    (``cv2.0``) may appear, hence the ``(?:.*/)?`` between parts.
    """
    parts, current = [], []
    for piece in module.split("."):
        if not piece.isdigit() and current:
            parts.append(".".join(current))
            current = []
        current.append(piece)
    parts.append(".".join(current))
    return ".*/" + "/(?:.*/)?".join(re.escape(part) for part in parts) + "/.*"


def ignored_patterns(net) -> list[str]:
    """NNCF ignored-scope regexes for ``net`` (a ``SegmentationNet``): what the head names as float-kept.

    The head's own decoding ops (``DECODE_OPS`` directly in the head's scope) and every module of
    ``edgeseg.nn.head.float_kept_modules`` (the DFL, the last conv of each branch); the head is
    found in the module tree by type.
    """
    head = scope_pattern(head_module_name(net)).removesuffix("/.*")
    return [*(f"{head}/{op}.*" for op in DECODE_OPS), *(scope_pattern(m) for m in float_kept_modules(net))]


def ir_name(folder_name: str) -> str:
    """The IR file stem inside an ``<name>_openvino_model`` folder: ``<name>``."""
    return folder_name.removesuffix(SUFFIX) or "model"


def calibration_batches(job: ExportJob) -> list[np.ndarray]:
    """Calibration inputs from ``job.data``'s train split: (B, 3, H, W) float32 batches, B = ``max(job.batch, 1)``.

    The first ``job.calib`` readable train images (sorted by path) go through the runtime's own
    ``letterbox`` / ``to_input_tensor``; a partial last batch is dropped (except when it is the
    only one) for a static batch above 1.

    Raises:
        EdgesegError: no data YAML, or a train split that is missing, empty or unreadable.
    """
    images = calibration_images(job)
    size = max(job.batch, 1)
    batches = [to_input_tensor(images[i : i + size]) for i in range(0, len(images), size)]
    if len(batches) > 1 and len(batches[-1]) < size:
        batches.pop()
    if len(batches[-1]) < size:
        batches[-1] = np.concatenate([batches[-1]] * size)[:size]
    return batches


def quantize(model: ov.Model, batches: list[np.ndarray], patterns: list[str]) -> ov.Model:
    """``model`` quantised to int8 by NNCF on (B, 3, H, W) float32 ``batches``; nodes matching ``patterns`` and Sigmoids kept in float."""
    return nncf.quantize(
        model,
        nncf.Dataset(batches),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(batches),
        ignored_scope=nncf.IgnoredScope(patterns=patterns, types=["Sigmoid"], validate=False),
    )


def build(job: ExportJob) -> None:
    """Write the ``job.path`` folder: the fp32 ONNX hub artifact converted to IR, quantised for int8, metadata in rt_info.

    Beside the IR, ``metadata.yaml`` holds the plain keys the YOLO ecosystem reads
    (``edgeseg.runtimes.meta.plain_keys``).

    Raises:
        EdgesegError: int8 without usable calibration data, bf16 on a CPU without native bf16, or a bad opset.
    """
    if job.precision == "bf16":
        require_bf16(shared_core(), job.path.name)
    batches = calibration_batches(job) if job.precision == "int8" else None
    onnx_path = job.path.parent / f"{ir_name(job.path.name)}.onnx"
    onnx_target.build(dataclasses.replace(job, path=onnx_path, precision="fp32"))
    model = ov.convert_model(str(onnx_path))
    onnx_path.unlink()
    if batches is not None:
        model = quantize(model, batches, ignored_patterns(job.net))
    model.set_rt_info(job.meta.to_json(), RT_INFO_PATH)
    job.path.mkdir()
    ov.save_model(model, str(job.path / f"{ir_name(job.path.name)}.xml"), compress_to_fp16=job.precision == "fp16")
    write_sidecar(job.path, job.meta)
