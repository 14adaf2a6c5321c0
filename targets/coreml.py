"""CoreML target: the fused eval model traced with TorchScript and converted by coremltools to an ML Program.

Package: ``<stem>.mlpackage`` (a folder). Input ``images``: a *tensor* (B, 3, H, W) float32 RGB in
[0, 1], not a CoreML image input: every edgeseg backend receives exactly this batch from the
runtime's letterbox, so the CoreML backend feeds it as it is (no per-image PIL conversion, any
static batch size, and the /255 scale stays in one place, ``to_input_tensor``). Outputs ``preds``
(B, 4 + nc + nm, A) and ``protos`` (B, nm, H / 4, W / 4), forced to float32 (without that an fp16
package returns float16 arrays under generated names). The ModelMeta JSON is the package's
user-defined metadata ``edgeseg``, with the plain keys the YOLO ecosystem reads beside it.

Precisions: ``fp32`` computes in float32; ``fp16`` stores and computes in float16; ``int8`` is
fp16 with its weights linearly quantised to int8 per output channel
(``coremltools.optimize.coreml.linear_quantize_weights``): activations stay fp16. yolo11n-seg at
640: 11.5 MB, 5.9 MB and 3.1 MB. The shapes are static (one batch size and input size).
"""

import warnings

import coremltools as ct
import numpy as np
import torch

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.model_meta import META_KEY
from edgeseg.runtimes.meta.plain_keys import plain_strings
from edgeseg.targets.common import ExportJob
from edgeseg.targets.onnx import ExportWrapper

# macOS 13 / iOS 16: the first OS whose ML Programs hold int8 weights (constexpr_affine_dequantize).
DEPLOYMENT_TARGET = ct.target.macOS13
COMPUTE_PRECISION = {"fp32": ct.precision.FLOAT32, "fp16": ct.precision.FLOAT16, "int8": ct.precision.FLOAT16}


def convert(job: ExportJob) -> "ct.models.MLModel":
    """``job.net`` traced on the CPU at (max(job.batch, 1), 3, H, W) and converted to an ML Program of ``job.precision``."""
    net = job.net.float().cpu().eval()
    example = torch.zeros(max(job.batch, 1), 3, *job.imgsz)
    with warnings.catch_warnings(), torch.no_grad():
        # Expected: the tracer's constant strides, torch.jit's deprecation (coremltools converts
        # TorchScript) and coremltools' own numpy deprecations.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"(torch\.jit|coremltools)")
        traced = torch.jit.trace(ExportWrapper(net, half=False).eval(), example)
        model = ct.convert(
            traced,
            convert_to="mlprogram",
            inputs=[ct.TensorType(name="images", shape=tuple(example.shape), dtype=np.float32)],
            outputs=[ct.TensorType(name="preds", dtype=np.float32), ct.TensorType(name="protos", dtype=np.float32)],
            compute_precision=COMPUTE_PRECISION[job.precision],
            minimum_deployment_target=DEPLOYMENT_TARGET,
            skip_model_load=True,
        )
    if job.precision == "int8":
        config = ct.optimize.coreml.OptimizationConfig(
            global_config=ct.optimize.coreml.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8")
        )
        model = ct.optimize.coreml.linear_quantize_weights(model, config)
    return model


def build(job: ExportJob) -> None:
    """Write the ``.mlpackage`` at ``job.path`` with the ModelMeta in its user-defined metadata (and the plain keys beside it).

    Raises:
        EdgesegError: ``dynamic`` or ``end2end`` asked for (not available for CoreML).
    """
    if job.dynamic:
        raise EdgesegError("CoreML export is static: drop --dynamic (use --batch and --imgsz for the shape)")
    if job.end2end:
        raise EdgesegError("end2end CoreML (NMS in the graph) is not available; export without --end2end")
    model = convert(job)
    model.user_defined_metadata[META_KEY] = job.meta.to_json()
    model.user_defined_metadata.update(plain_strings(job.meta))
    model.short_description = f"edgeseg YOLO-seg ({job.meta.nc} classes, {job.precision})"
    model.version = job.meta.version
    model.save(str(job.path))
