"""Export orchestration: checkpoint or network → a staged artifact → verified → moved into place.

``export(model, target, precision, ...)`` fuses a private copy of the network, lets the target's
``build(job)`` write the artifact into a staging folder beside its destination, loads it with
``edgeseg.runtimes.load`` and compares it with the PyTorch network (``edgeseg.targets.verify``),
and only then moves it into place (``edgeseg.targets.common.atomic_output``): a failed,
unverified or interrupted export leaves no artifact behind.
"""

import copy
import logging
import numbers
import os
import time
from dataclasses import dataclass
from pathlib import Path

from edgeseg.runtimes import load
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.evaluation.validate import VAL_CONF, VAL_IOU, VAL_MAX_DET
from edgeseg.runtimes.meta.limits import MAX_DETECTIONS, MAX_IMGSZ
from edgeseg.runtimes.meta.model_meta import ModelMeta
from edgeseg.runtimes.runtime import Runtime, check_thresholds
from edgeseg.targets.common import ExportJob, artifact_size, atomic_output, missing_extra, refuse_folder
from edgeseg.targets.registry import TargetEntry, target_entry
from edgeseg.targets.verify import format_report, save_report, verification_set
from edgeseg.targets.verify import verify as verify_artifact

LOGGER = logging.getLogger("edgeseg")
FILE_SUFFIXES = (".onnx", ".engine", ".tflite", ".pte")  # the targets whose artifact is one file (the others are folders)


@dataclass
class Artifact:
    """One exported, verified model.

    Attributes:
        path: the artifact (a file, or a folder for folder formats).
        target: the target name (``onnx`` …).
        precision: ``fp32``, ``fp16``, ``bf16`` or ``int8``.
        meta: the ModelMeta embedded in it.
        seconds: wall time of the export, verification included.
        size_mb: size on disk in MB (10^6 bytes).
        report: the verification report (``edgeseg.targets.verify.verify``, plus ``images_from``:
            which images it ran on), or None when not verified.
    """

    path: Path
    target: str
    precision: str
    meta: ModelMeta
    seconds: float
    size_mb: float
    report: dict | None


def _input_size(imgsz, stride: int) -> tuple[int, int]:
    """An int or (h, w) input size as (h, w), checked to be positive multiples of ``stride``."""
    hw = (imgsz, imgsz) if isinstance(imgsz, numbers.Integral) else tuple(imgsz) if isinstance(imgsz, (tuple, list)) else ()
    if len(hw) != 2 or any(not isinstance(v, numbers.Integral) or not 0 < v <= MAX_IMGSZ or v % stride for v in hw):
        raise EdgesegError(
            f"imgsz must be a multiple of {stride} up to {MAX_IMGSZ} or a (height, width) pair of them, got {str(imgsz)[:40]}"
        )
    return int(hw[0]), int(hw[1])


def _open_source(model) -> tuple:
    """``(Network, default folder, default stem)`` of a checkpoint path, a Network, or a Model (its ``network``).

    A checkpoint is exported beside itself under its own stem; a Network read from a checkpoint
    file that still exists likewise under its name, another one into the current folder.

    Raises:
        EdgesegError: a path that is not an existing ``.pt``, or a checkpoint that cannot be loaded.
    """
    from edgeseg.nn.network import Network, load_network

    model = getattr(model, "network", model)  # an edgeseg.Model hands over its Network
    if isinstance(model, Network):
        path = Path(model.source)
        if model.checkpoint is not None and path.is_file():
            return model, path.parent, model.name
        return model, Path.cwd(), model.name
    if not isinstance(model, (str, os.PathLike)):
        raise EdgesegError(f"export needs an edgeseg .pt checkpoint path or an edgeseg.Model, got {type(model).__name__}")
    path = Path(model)
    if path.suffix.lower() != ".pt":
        raise EdgesegError(f"{path}: export needs an edgeseg .pt checkpoint (or an edgeseg.Model)")
    if not path.is_file():
        raise EdgesegError(f"{path}: checkpoint not found")
    return load_network(path), path.parent, path.stem


def _platform(entry: TargetEntry, platform: str | None) -> str:
    """The chip to compile for: ``platform`` checked against the target's, its first by default; empty for other targets.

    Raises:
        EdgesegError: a platform for a target that has none, or one it does not know.
    """
    if not entry.platforms:
        if platform:
            raise EdgesegError(f"--platform {platform}: {entry.name} artifacts are not built for one chip (only rknn takes --platform)")
        return ""
    if platform is None:
        return entry.platforms[0]
    if platform.lower() not in entry.platforms:
        raise EdgesegError(f"{entry.name} builds for {', '.join(entry.platforms)}, not {platform!r}")
    return platform.lower()


def _destination(out, entry: TargetEntry, folder: Path, stem: str, precision: str) -> Path:
    """Where the artifact goes: ``out``, a default name inside an existing folder ``out``, or beside the source.

    Raises:
        EdgesegError: an ``out`` whose name does not end with the target's suffix.
    """
    name = entry.artifact_name(stem, precision)
    if out is None:
        return folder / name
    out = Path(out)
    if out.is_dir() and not out.name.endswith(entry.suffix):
        return out / name
    if not out.name.endswith(entry.suffix):
        raise EdgesegError(f"{out}: an artifact for {entry.name} must have a name ending in {entry.suffix!r} (or give an existing folder)")
    return out


def export(
    model,
    target: str = "onnx",
    precision: str = "fp32",
    imgsz=None,
    batch: int = 1,
    dynamic: bool = False,
    end2end: bool = False,
    data: str | None = None,
    calib: int = 300,
    verify: bool = True,
    out=None,
    device: str | None = None,
    simplify: bool = True,
    opset: int = 17,
    conf: float = VAL_CONF,
    iou: float = VAL_IOU,
    max_det: int = VAL_MAX_DET,
    platform: str | None = None,
) -> Artifact:
    """Export a model to a deployable artifact and verify it against the PyTorch model.

    Args:
        model: an edgeseg ``.pt`` checkpoint path, an ``edgeseg.Model`` or an
            ``edgeseg.nn.network.Network``; left unchanged.
        target: a registered target (``target_names()``), e.g. ``onnx``.
        precision: ``fp32``, ``fp16``, ``bf16`` (OpenVINO) or ``int8``, as the target supports.
        imgsz: input size, an int or (height, width), multiples of the stride (default: the model's).
        batch: the static batch size of the artifact.
        dynamic: batch, height and width free (then leave ``batch`` at 1).
        end2end: NMS in the graph, where the target supports it; for a YOLO26 model, its
            one-to-one branch with top-k (no NMS): in the graph on ONNX and OpenVINO, else raw
            one-to-one outputs that the runtime top-k's.
        data: a data YAML: calibration images (int8) and the images verification runs on
            (default: the checkpoint's training data when that YAML exists, else synthetic images).
        calib: number of calibration images.
        verify: compare the artifact with the PyTorch model and refuse it beyond the tolerance;
            the report is logged and written beside the artifact as ``<artifact>.verify.json``.
        out: the artifact path, or an existing folder for the default name (default: beside
            the checkpoint, ``<stem>.onnx``, ``<stem>-fp16.onnx`` …; the current folder for an
            in-memory model).
        device: where to trace and verify: ``cpu``, ``cuda``, ``cuda:N`` or ``N``; None: the
            first CUDA GPU torch sees, else the CPU (logged).
        simplify: simplify the graph (ONNX-based targets).
        opset: ONNX opset (ONNX-based targets).
        conf, iou, max_det: with ``end2end``, the graph's NMS settings: the lowest score it
            reports (the default keeps what ``Runtime.val`` counts), the IoU above which a box
            is suppressed, and the detections per image (rows of its ``detections`` output); a
            top-k graph takes ``max_det`` only.
        platform: the chip, for a target that compiles for one (RKNN: ``rk3588``, ``rk3566`` …;
            default: the first of the target's ``platforms``).

    Returns:
        The Artifact.

    Raises:
        EdgesegError: a bad argument or source, a missing optional package (naming the extra to
            install), or ``export failed verification: …`` (then no artifact is written).
    """
    start = time.perf_counter()
    entry = target_entry(target, precision)
    platform = _platform(entry, platform)
    if batch < 1:
        raise EdgesegError(f"batch must be >= 1, got {batch}")
    if end2end:
        check_thresholds(conf, iou, max_det)
        if max_det > MAX_DETECTIONS:
            raise EdgesegError(f"max_det {max_det} is above the limit of {MAX_DETECTIONS}")
    if dynamic and batch != 1:
        raise EdgesegError("a dynamic export takes any batch size; --batch sets a static one: give one of them")
    with missing_extra("export"):
        from edgeseg.devices import default_device
        from edgeseg.nn.backend import network_runtime
        from edgeseg.train.distributed import check_devices

        device = default_device(device)
        if len(check_devices(device)) > 1:
            raise EdgesegError(f"--device {device}: export runs on one device")
        source, folder, stem = _open_source(model)
        net = copy.deepcopy(source.net).fuse().eval()
    checkpoint = source.checkpoint
    # YOLO26: end-to-end is its one-to-one branch with top-k (no NMS); in the graph where the target
    # builds end-to-end graphs, else the raw one-to-one outputs and the top-k on the host.
    topk = end2end and net.head.has_one2one
    net.head.select_branch("one2one" if topk else "one2many")  # whichever branch the source network was left on
    in_graph = end2end and (entry.end2end or not topk)
    stride = int(net.stride.max())
    hw = _input_size(source.meta.imgsz[0] if imgsz is None else imgsz, stride)
    meta = ModelMeta(
        names=dict(source.meta.names),
        imgsz=hw,
        stride=stride,
        nm=net.head.nm,
        batch=0 if dynamic else batch,
        dynamic=dynamic,
        precision=precision,
        source_hash=source.meta.source_hash,
        version=source.meta.version,
        outputs=["detections", "protos"] if in_graph else ["preds", "protos"],
        nms={"conf": float(conf), "iou": float(iou), "max_det": int(max_det)} if in_graph and not topk else {},
        selection="topk" if topk else "nms",
        topk=int(max_det) if in_graph and topk else 0,
    )
    dest = _destination(out, entry, folder, stem, precision)
    if entry.suffix in FILE_SUFFIXES:
        refuse_folder(dest)  # before the export's work, not after it
    chip = f" for {platform}" if platform else ""
    LOGGER.info(f"{source.source}: exporting to {dest} ({target} {precision}{chip}, {hw[0]}x{hw[1]}, batch {'dynamic' if dynamic else batch})")
    report = None
    with atomic_output(dest) as staged:
        job = ExportJob(
            net=copy.deepcopy(net),
            meta=meta,
            path=staged,
            precision=precision,
            imgsz=hw,
            batch=0 if dynamic else batch,
            dynamic=dynamic,
            end2end=in_graph,
            data=data or ((checkpoint or {}).get("train_args") or {}).get("data"),
            calib=calib,
            device=device,
            simplify=simplify,
            opset=opset,
            platform=platform,
        )
        try:
            with missing_extra(entry.extra):
                entry.build(job)
            if verify:
                sample = verification_set(data, checkpoint)
                reference = network_runtime(net, hw, source.source, device)
                tolerance = entry.tolerances.get(precision)
                artifact = Runtime(job.verifier) if job.verifier else load(staged, device)
                report = verify_artifact(reference, artifact, sample.images, precision, hw, tolerance, sample.labels)
                report["images_from"] = sample.source
                LOGGER.info(format_report(report))
                if report["failures"]:
                    raise EdgesegError(
                        f"export failed verification: {'; '.join(report['failures'])} "
                        f"({dest.name} not written; verify=False / --no-verify keeps it)"
                    )
        finally:
            if job.verifier is not None:
                job.verifier.close()
    report_path = dest.with_name(dest.name + ".verify.json")
    if report is None:
        report_path.unlink(missing_ok=True)
    else:
        save_report(report, report_path)
    return Artifact(
        path=dest,
        target=target,
        precision=precision,
        meta=job.meta,
        seconds=time.perf_counter() - start,
        size_mb=artifact_size(dest) / 1e6,
        report=report,
    )


