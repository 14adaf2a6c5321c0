"""NCNN target: a ``<name>_ncnn_model/`` folder converted by pnnx from the fp32 ONNX hub artifact.

The folder holds ``model.ncnn.param``, ``model.ncnn.bin`` and ``edgeseg.json`` (the ModelMeta;
``extra["pnnx"]`` names the converter release). The graph takes one (3, H, W) image per call (a
static input at ``job.imgsz``) and keeps the output contract, without the batch axis
(``edgeseg.runtimes.backends.ncnn``).

* fp32: float32 weights (pnnx ``fp16=0``); the backend runs them in float32;
* fp16: weights stored as float16 (pnnx ``fp16=1``, half the size); ncnn computes in half where
  the CPU has it.

pnnx writes several side files (its own IR, a re-exported ONNX, Python scripts); they stay in
the staging folder and are deleted with it.
"""

import dataclasses
import subprocess

from edgeseg.runtimes.backends.folder_meta import write_folder_meta
from edgeseg.runtimes.backends.ncnn_files import PARAM, WEIGHTS
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.targets import onnx as onnx_target
from edgeseg.targets.common import ExportJob

SUFFIX = "_ncnn_model"
LOG_LINES = 5  # lines of pnnx's output quoted when it fails


def build(job: ExportJob) -> None:
    """Write the ``job.path`` folder: pnnx converts the fp32 ONNX of ``job.net``; the ModelMeta goes beside it.

    Raises:
        EdgesegError: end2end, dynamic or batch > 1 asked for (NCNN runs one fixed-size image
            per call here), or pnnx fails (quoting the end of its output).
    """
    import pnnx

    if job.end2end or job.dynamic or job.batch != 1:
        raise EdgesegError(
            "NCNN export is one fixed-size image per call without NMS in the graph: drop --end2end / --dynamic / --batch"
        )
    scratch = job.path.parent / "pnnx"
    scratch.mkdir()
    onnx_path = scratch / "model.onnx"
    onnx_target.build(dataclasses.replace(job, path=onnx_path, precision="fp32"))
    h, w = job.imgsz
    half = int(job.precision == "fp16")
    outputs = {"ncnnparam": PARAM, "ncnnbin": WEIGHTS, "pnnxparam": "model.pnnx.param", "pnnxbin": "model.pnnx.bin",
               "pnnxpy": "model_pnnx.py", "pnnxonnx": "model.pnnx.onnx", "ncnnpy": "model_ncnn.py"}  # fmt: skip
    command = [pnnx.EXEC_PATH, onnx_path.name, f"inputshape=[1,3,{h},{w}]f32", f"fp16={half}", "device=cpu"]
    command += [f"{key}={name}" for key, name in outputs.items()]
    done = subprocess.run(command, cwd=scratch, capture_output=True, text=True, errors="replace")
    if done.returncode != 0 or not (scratch / PARAM).is_file() or not (scratch / WEIGHTS).is_file():
        tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-LOG_LINES:])
        raise EdgesegError(f"pnnx could not convert the model to NCNN (exit {done.returncode}): {tail}")
    job.meta = dataclasses.replace(job.meta, extra={**job.meta.extra, "pnnx": getattr(pnnx, "__version__", "")})
    job.path.mkdir()
    for name in (PARAM, WEIGHTS):
        (scratch / name).replace(job.path / name)
    write_folder_meta(job.path, job.meta)
