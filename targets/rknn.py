"""RKNN target: a ``<name>_rknn_model/`` folder for a Rockchip NPU, built by rknn-toolkit2 in its own venv.

rknn-toolkit2 pins numpy <= 1.26.4, onnx <= 1.18 and torch <= 2.4, which cannot share edgeseg's
venv, so it runs in a converter venv (``EDGESEG_RKNN_PYTHON``, else ``.venv-rknn/bin/python`` in
the current folder or the source tree, else this interpreter when it has rknn-toolkit2), as the
worker script ``rknn_worker.py``. The worker converts the ONNX graph of ``job.net`` for
``job.platform``, then keeps the model in rknn-toolkit2's simulator for export verification
(``SimulatorBackend``): the simulator runs only a model built in the same process.

* fp16: the plain graph (``preds``, ``protos``), float16 on the NPU;
* int8: w8a8, per-channel weights, calibrated on ``job.calib`` letterboxed train images; the
  head is split (``box_logits`` / ``scores`` / ``coefficients`` / ``protos``, each with its own
  scale) and the boxes are decoded in numpy, as for TFLite int8.

The model takes (1, H, W, 3) uint8 RGB pixels; the 1/255 scaling is its first layer.
"""

import json
import logging
import subprocess
from pathlib import Path

import cv2
import numpy as np

from edgeseg.runtimes.backends.base import Backend
from edgeseg.runtimes.backends.folder_meta import write_folder_meta
from edgeseg.runtimes.backends.rknn import MODEL, to_contract, to_pixels
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.targets.common import ExportJob, calibration_images, side_python
from edgeseg.targets.onnx import converter_graph
from edgeseg.targets.rknn_worker import read_array, write_array

LOGGER = logging.getLogger("edgeseg")

PYTHON_ENV = "EDGESEG_RKNN_PYTHON"
VENV = ".venv-rknn"
WORKER = Path(__file__).with_name("rknn_worker.py")
INT8_ONLY = ("rv1103", "rv1103b", "rv1106", "rv1106b")  # rknn-toolkit2 builds no float model for these
MAX_OPSET = 19  # the newest opset rknn-toolkit2 2.5 reads
LOG_LINES = 5  # lines of the worker's log quoted when it fails


def converter_python() -> str:
    """The python of the rknn-toolkit2 venv (see the module docstring).

    Raises:
        EdgesegError: none found, saying how to make one.
    """
    return side_python(
        PYTHON_ENV, VENV, "rknn",
        f"RKNN export needs rknn-toolkit2 in its own venv: make {VENV.removeprefix('.venv-')}-venv "
        "(or see the README, RKNN)",
    )  # fmt: skip


class SimulatorBackend(Backend):
    """The model just built, run by the worker in rknn-toolkit2's simulator (the numbers are the simulator's, not an NPU's).

    Args:
        worker: the running worker process (after its build reply).
        path: the artifact's path, for messages.
        meta: the artifact's ModelMeta.
        log: the worker's stderr file, quoted when it dies.
    """

    name = "rknn-simulator"
    stand_in = "rknn-toolkit2's simulator"

    def __init__(self, worker: subprocess.Popen, path: str, meta, log: Path):
        self.worker, self.log = worker, log
        super().__init__(path, meta, "cpu")

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(1, 3, H, W) float32 → preds, protos float32 from the simulator."""
        try:
            write_array(self.worker.stdin, to_pixels(batch))
            self.worker.stdin.flush()
            outputs = [read_array(self.worker.stdout) for _ in self.meta.outputs]
        except (OSError, EOFError, ValueError):
            raise EdgesegError(f"the rknn-toolkit2 simulator stopped: {_tail(self.log)}") from None
        return to_contract(outputs, self.meta, self.path)

    def close(self) -> None:
        """End the worker (its stdin closes; it is killed if it does not exit within 30 s)."""
        _stop(self.worker)


def _tail(log: Path) -> str:
    """The last lines of the worker's log, joined with ' | '."""
    lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
    return " | ".join(lines[-LOG_LINES:]) or "no output"


def _stop(worker: subprocess.Popen) -> None:
    """Close the worker's stdin and wait for it; kill it when it does not exit within 30 s."""
    if worker.poll() is None:
        try:
            worker.stdin.close()
            worker.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            worker.kill()
            worker.wait()


def calibration_list(job: ExportJob, folder: Path) -> Path:
    """Write ``job.calib`` letterboxed train images as (1, 3, H, W) float32 RGB 0–255 .npy files and the list naming them."""
    folder.mkdir()
    paths = []
    for i, image in enumerate(calibration_images(job)):
        pixels = cv2.cvtColor(image, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)[None].astype(np.float32)
        paths.append(folder / f"{i}.npy")
        np.save(paths[-1], pixels)
    listing = folder / "dataset.txt"
    listing.write_text("".join(f"{p.absolute()}\n" for p in paths))
    return listing


def start_worker(python: str, config: dict, work: Path) -> tuple[subprocess.Popen, Path, dict]:
    """Run the worker on ``config`` and wait for its build reply: (process, its log, the reply).

    Raises:
        EdgesegError: the build failed (the toolkit's message and the end of its log).
    """
    (work / "config.json").write_text(json.dumps(config))
    log = work / "worker.log"
    with open(log, "wb") as stderr:
        worker = subprocess.Popen(
            [python, str(WORKER), str(work / "config.json")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
        )
    line = worker.stdout.readline()
    try:
        reply = json.loads(line)
    except ValueError:
        reply = {"ok": False, "error": f"the worker exited ({worker.wait()}) without a reply"}
    if not reply.get("ok"):
        _stop(worker)
        raise EdgesegError(f"RKNN conversion for {config['platform']} failed: {reply.get('error')}: {_tail(log)}")
    return worker, log, reply


def build(job: ExportJob) -> None:
    """Write the ``job.path`` folder (``model.rknn`` + ``edgeseg.json``) and leave a simulator for verification in ``job.verifier``.

    Raises:
        EdgesegError: end2end, dynamic or batch > 1 asked for, a platform that does not build
            ``job.precision``, no converter venv, int8 without calibration data, or a failed build.
    """
    if job.end2end or job.dynamic or job.batch != 1:
        raise EdgesegError("RKNN export is one fixed-size image per call without NMS in the graph: drop --end2end / --dynamic / --batch")
    if job.precision != "int8" and job.platform in INT8_ONLY:
        raise EdgesegError(f"{job.platform} runs int8 models only: use --precision int8")
    if job.opset > MAX_OPSET:
        raise EdgesegError(f"rknn-toolkit2 reads ONNX opsets up to {MAX_OPSET}, not {job.opset}")
    python = converter_python()
    int8 = job.precision == "int8"
    work = job.path.parent / "rknn-work"
    work.mkdir()
    names = converter_graph(job, work / "model.onnx")
    dataset = calibration_list(job, work / "calib") if int8 else None
    job.path.mkdir()
    config = {"onnx": str((work / "model.onnx").absolute()), "out": str((job.path / MODEL).absolute()),
              "platform": job.platform, "int8": int8, "dataset": None if dataset is None else str(dataset.absolute())}  # fmt: skip
    LOGGER.info(f"rknn-toolkit2: building {job.precision} for {job.platform} (the log is kept in {work / 'worker.log'} while it runs)")
    worker, log, reply = start_worker(python, config, work)
    job.meta.outputs = names
    job.meta.extra = {**job.meta.extra, "rknn": {"platform": job.platform, "toolkit": reply.get("toolkit", "")}}
    if int8:
        job.meta.extra.update(reg_max=int(job.net.head.reg_max), strides=[int(s) for s in job.net.head.stride])
    write_folder_meta(job.path, job.meta)
    job.verifier = SimulatorBackend(worker, str(job.path), job.meta, log)
