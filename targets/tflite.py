"""TFLite target: the ONNX hub converted by onnx2tf in its own venv; fp32, fp16 and full-integer int8, builtin ops only.

Why onnx2tf (run as a subprocess) over litert-torch: TFLite is built from the ONNX hub,
and onnx2tf needs nothing from edgeseg or torch, only an ONNX file, so the converter venv is a
plain ``pip install onnx2tf==1.29.24`` (measured here: 42 s, 2.6 GB) that never touches the
training venv. It pins its whole stack (tensorflow 2.19, numpy 1.26.4, onnx 1.19), which cannot
share a venv with edgeseg's onnx 1.23 / numpy 2.x; litert-torch would install beside torch but
needs the PyTorch model (hence torch and edgeseg) in the converter process and pulls
jax/transformers (~2.1 GB) for the same result (docs/ARCHITECTURE.md, "Converter choices").

The converter's python: ``EDGESEG_TFLITE_PYTHON``, else ``.venv-tflite/bin/python`` in the current
folder or the source tree, else this interpreter when it has onnx2tf.

Artifact: input ``images`` (B, H, W, 3) float32 RGB in [0, 1] (int8: int8 with its scale),
outputs ``preds`` (B, 4 + nc + nm, A), its boxes in 0–1 of the input (``meta.extra["boxes"] =
"normalized"``, as TFLite consumers expect), and ``protos`` (B, H / 4, W / 4, nm); int8 splits the head
into ``box_logits`` (DFL bins) / ``scores`` / ``coefficients`` / ``protos`` (the head's split
mode, ``Segment.split``). fp16 holds half weights that the interpreter dequantises once at load.
The ModelMeta is a ``metadata`` entry of the flatbuffer (``embed_metadata``); the plain keys the
YOLO ecosystem reads follow the flatbuffer as a zip holding ``metadata.json`` (``append_plain_metadata``).
"""

import io
import json
import logging
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np

from edgeseg.runtimes.backends.tflite_flatbuffer import operator_names
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.model_meta import META_KEY, ModelMeta
from edgeseg.runtimes.meta.plain_keys import plain_metadata
from edgeseg.runtimes.pipeline.preprocess import letterbox, to_input_tensor
from edgeseg.targets.common import ExportJob, calibration_images, side_python
from edgeseg.targets.onnx import converter_graph

LOGGER = logging.getLogger("edgeseg")

PYTHON_ENV = "EDGESEG_TFLITE_PYTHON"
VENV = ".venv-tflite"
# onnx2tf downloads this sample at every conversion unless a file of this name is in its working folder
SAMPLE_NAME = "calibration_image_sample_data_20x128x128x3_float32.npy"
OUTPUT_FILES = {"fp32": "model_float32.tflite", "fp16": "model_float16.tflite", "int8": "model_full_integer_quant.tflite"}
CONVERT_TIMEOUT_S = 1800


def converter_python() -> str:
    """The python of the converter venv (see the module docstring).

    Raises:
        EdgesegError: none found, naming the extra to install.
    """
    return side_python(
        PYTHON_ENV, VENV, "onnx2tf",
        f"TFLite export needs the onnx2tf converter: install edgeseg[tflite-export] in a separate venv (e.g. python -m venv {VENV})",
    )  # fmt: skip


def calibration_inputs(job: ExportJob) -> np.ndarray:
    """The calibration images of ``job.data`` (``targets.common.calibration_images``): (N, H, W, 3) float32 RGB in [0, 1]."""
    images = calibration_images(job)
    return to_input_tensor(images).transpose(0, 2, 3, 1).copy()


def convert(python: str, onnx_path: Path, work: Path, job: ExportJob, calib: np.ndarray | None) -> Path:
    """Run onnx2tf on ``onnx_path`` in ``work``; return the .tflite of ``job.precision``.

    ``calib`` (N, H, W, 3) float32 calibration images make it quantise to full int8, weights per
    channel (trained yolo11n-seg at 320: max diff 0.24 vs 0.28 per tensor, same agreement).

    Raises:
        EdgesegError: the converter failed (with its last error line) or wrote no file.
    """
    onnx_path, work = onnx_path.absolute(), work.absolute()  # the converter runs with cwd=work
    sample = calib if calib is not None else np.full((1, *job.imgsz, 3), 114 / 255, np.float32)
    # onnx2tf's own sample file, written from our images so that nothing is downloaded
    picks = np.resize(np.arange(len(sample)), 20)
    np.save(work / SAMPLE_NAME, np.stack([letterbox((s * 255).astype(np.uint8), (128, 128))[0] / 255.0 for s in sample[picks]]).astype(np.float32))
    command = [python, "-m", "onnx2tf", "-i", str(onnx_path), "-o", str(work / "out"), "-n"]
    if calib is not None:
        np.save(work / "calib.npy", calib)
        command += ["-oiqt", "-qt", "per-channel", "-iqd", "int8", "-oqd", "int8"]
        command += ["-cind", "images", str(work / "calib.npy"), "[[[[0.0,0.0,0.0]]]]", "[[[[1.0,1.0,1.0]]]]"]
    env = {**os.environ, "PATH": f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}", "CUDA_VISIBLE_DEVICES": "-1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S)
    result = work / "out" / OUTPUT_FILES[job.precision]
    if proc.returncode != 0 or not result.is_file():
        errors = [line for line in (proc.stderr + proc.stdout).splitlines() if "Error" in line or "error" in line]
        raise EdgesegError(f"onnx2tf failed (exit {proc.returncode}): {(errors or ['no ' + result.name + ' written'])[-1].strip()}")
    return result


def output_tensors(data: bytes, names: list[str]) -> dict[str, str]:
    """``{ONNX output name: TFLite output tensor name}``.

    onnx2tf names outputs by their ONNX position (``Identity``, ``Identity_1`` … in float files,
    ``StatefulPartitionedCall:0`` … in int8 ones) but lists int8 outputs in another order, so the
    binding goes by that index, not by position.
    """
    from ai_edge_litert.interpreter import Interpreter

    mapping = {}
    for detail in Interpreter(model_content=data).get_output_details():
        tail = detail["name"].replace(":", "_").rsplit("_", 1)
        index = int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else 0
        mapping[names[index]] = detail["name"]
    return mapping


def embed_metadata(data: bytes, name: str, value: bytes) -> bytes:
    """``data`` (a TFLite flatbuffer) with a ``metadata`` entry ``name`` holding ``value`` (an existing one replaced).

    Uses the TFLite schema's generated object API shipped with ai-edge-litert.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    model.metadata = [m for m in (model.metadata or []) if m.name.decode() != name]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(value, np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = name, len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(data) + len(value) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def append_plain_metadata(data: bytes, meta: ModelMeta) -> bytes:
    """``data`` with a zip archive appended that holds ``metadata.json``: the plain keys (``plain_metadata``) as JSON.

    This is where Ultralytics' LiteRT backend and the tools that follow it read a ``.tflite``'s
    metadata; the interpreter reads the flatbuffer from the start of the file and ignores the tail.
    """
    buffer = io.BytesIO(data)
    buffer.seek(0, io.SEEK_END)
    with zipfile.ZipFile(buffer, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", json.dumps(plain_metadata(meta), indent=2))
    return buffer.getvalue()


def build(job: ExportJob) -> None:
    """Write ``job.path``: ONNX → onnx2tf → .tflite with the ModelMeta embedded, checked to hold builtin ops only.

    Raises:
        EdgesegError: end2end or a dynamic shape asked for, no converter, int8 without
            calibration data, a failed conversion, or a Flex op in the result.
    """
    if job.end2end or job.dynamic:
        raise EdgesegError("TFLite export is static and without NMS in the graph: drop --end2end / --dynamic")
    calib = calibration_inputs(job) if job.precision == "int8" else None
    python = converter_python()
    work = job.path.parent / "tflite-work"
    work.mkdir()
    names = converter_graph(job, work / "model.onnx", normalize_boxes=True)
    data = convert(python, work / "model.onnx", work, job, calib).read_bytes()
    flex = [op for op in operator_names(data) if op.startswith("Flex")]
    if flex:
        raise EdgesegError(f"the converted model needs TensorFlow (Flex) ops {sorted(set(flex))}, which LiteRT cannot run")
    job.meta.layout = "NHWC"
    job.meta.outputs = names
    job.meta.extra = {**job.meta.extra, "tensors": output_tensors(data, names)}
    if job.precision == "int8":
        job.meta.extra.update(reg_max=int(job.net.head.reg_max), strides=[int(s) for s in job.net.head.stride])
    else:
        job.meta.extra["boxes"] = "normalized"
    job.path.write_bytes(append_plain_metadata(embed_metadata(data, META_KEY, job.meta.to_json().encode()), job.meta))
    shutil.rmtree(work)
