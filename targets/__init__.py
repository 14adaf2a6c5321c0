"""Exporters: checkpoint → ONNX, OpenVINO, TFLite, CoreML, TensorRT, each verified against PyTorch.

``export(model, target, precision, ...)`` fuses a private copy of the network, lets the target's
``build(job)`` write the artifact into a staging folder beside its destination, loads it with
``edgeseg.runtimes.load`` and compares it with the PyTorch model (``edgeseg.targets.verify``),
and only then moves it into place (``edgeseg.targets.common.atomic_output``): a failed,
unverified or interrupted export leaves no artifact behind.

A target is a module ``targets/<name>.py`` with ``build(job: ExportJob) -> None`` plus one
``register_target`` line at the end of this file; the module (and its optional packages) is
imported only when that target is used.
"""

import copy
import logging
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

from edgeseg import __version__
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes import Runtime, load
from edgeseg.runtimes.limits import MAX_IMGSZ
from edgeseg.runtimes.meta import ModelMeta
from edgeseg.targets.common import ExportJob, artifact_size, atomic_output, missing_extra
from edgeseg.targets.verify import format_report, save_report, verification_set
from edgeseg.targets.verify import verify as verify_artifact

__all__ = ["export", "Artifact", "ExportJob", "register_target", "lazy_build", "target_names"]

LOGGER = logging.getLogger("edgeseg")


@dataclass
class Artifact:
    """One exported, verified model.

    Attributes:
        path: the artifact (a file, or a folder for folder formats).
        target: the target name (``onnx`` …).
        precision: ``fp32``, ``fp16`` or ``int8``.
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


@dataclass(frozen=True)
class TargetEntry:
    """One registered target; see ``register_target``."""

    name: str
    build: Callable[[ExportJob], None]
    precisions: tuple[str, ...]
    extra: str
    suffix: str
    tolerances: dict = field(default_factory=dict)

    def artifact_name(self, stem: str, precision: str) -> str:
        """``<stem><suffix>`` for fp32, ``<stem>-<precision><suffix>`` otherwise."""
        return f"{stem}{'' if precision == 'fp32' else '-' + precision}{self.suffix}"


_REGISTRY: dict[str, TargetEntry] = {}


def register_target(
    name: str,
    build: Callable[[ExportJob], None],
    precisions: tuple[str, ...],
    extra: str,
    suffix: str,
    tolerances: dict | None = None,
) -> None:
    """Add a target, or replace the one registered under ``name``.

    Args:
        name: the ``target`` argument (``--target``) that selects it.
        build: writes ``job.path`` from an ExportJob (``lazy_build("<module>")`` imports it on use).
        precisions: the precisions it writes.
        extra: the pip extra that installs its packages, named in the message when one is missing.
        suffix: how its artifact's name ends (``.onnx``, ``_openvino_model``); the runtime's
            backend registry must recognise it, since verification loads the artifact.
        tolerances: ``{precision: {check: limit}}`` overrides of ``verify.TOLERANCES``.
    """
    _REGISTRY[name] = TargetEntry(name, build, tuple(precisions), extra, suffix, dict(tolerances or {}))


def lazy_build(module: str) -> Callable[[ExportJob], None]:
    """A build function that imports ``edgeseg.targets.<module>`` on first use and calls its ``build``."""

    def build(job: ExportJob) -> None:
        import_module(f"{__name__}.{module}").build(job)

    return build


def target_names() -> list[str]:
    """The registered targets, sorted."""
    return sorted(_REGISTRY)


def registered_targets() -> list[TargetEntry]:
    """Every registered target (name, precisions, extra, artifact suffix, tolerances), sorted by name."""
    return [_REGISTRY[name] for name in target_names()]


def target_entry(target: str, precision: str) -> TargetEntry:
    """The registered target, checked against ``precision``.

    Raises:
        EdgesegError: an unknown target or a precision it does not write, listing the choices.
    """
    entry = _REGISTRY.get(target)
    if entry is None:
        raise EdgesegError(f"unknown export target {target!r} (choose from: {', '.join(target_names())})")
    if precision not in entry.precisions:
        raise EdgesegError(f"{target} exports {', '.join(entry.precisions)}, not {precision!r}")
    return entry


def _input_size(imgsz, stride: int) -> tuple[int, int]:
    """An int or (h, w) input size as (h, w), checked to be positive multiples of ``stride``."""
    hw = (imgsz, imgsz) if isinstance(imgsz, numbers.Integral) else tuple(imgsz) if isinstance(imgsz, (tuple, list)) else ()
    if len(hw) != 2 or any(not isinstance(v, numbers.Integral) or not 0 < v <= MAX_IMGSZ or v % stride for v in hw):
        raise EdgesegError(
            f"imgsz must be a multiple of {stride} up to {MAX_IMGSZ} or a (height, width) pair of them, got {str(imgsz)[:40]}"
        )
    return int(hw[0]), int(hw[1])


def _load_source(model):
    """``(Model, checkpoint dict or None, source hash, default folder, default stem)`` of a path or Model.

    A Model loaded from a checkpoint file that still exists is hashed and exported beside it;
    another in-memory Model gets no hash and the current folder.
    """
    from edgeseg.model import Model

    if isinstance(model, Model):
        path = Path(model.source)
        if model.checkpoint is not None and path.is_file():
            from edgeseg.nn.checkpoint import file_hash

            return model, model.checkpoint, file_hash(path), path.parent, model.name
        return model, model.checkpoint, "", Path.cwd(), model.name
    path = Path(model)
    if path.suffix.lower() != ".pt":
        raise EdgesegError(f"{path}: export needs an edgeseg .pt checkpoint (or an edgeseg.Model)")
    if not path.is_file():
        raise EdgesegError(f"{path}: checkpoint not found")
    from edgeseg.nn.checkpoint import file_hash

    loaded = Model(path)
    return loaded, loaded.checkpoint, file_hash(path), path.parent, path.stem


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
        raise EdgesegError(f"{out}: a {entry.name} artifact's name must end with {entry.suffix!r} (or give an existing folder)")
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
    device: str = "cpu",
    simplify: bool = True,
    opset: int = 17,
) -> Artifact:
    """Export a model to a deployable artifact and verify it against the PyTorch model.

    Args:
        model: an edgeseg ``.pt`` checkpoint path or an ``edgeseg.Model`` (left unchanged).
        target: a registered target (``target_names()``), e.g. ``onnx``.
        precision: ``fp32``, ``fp16`` or ``int8``, as the target supports.
        imgsz: input size, an int or (height, width), multiples of the stride (default: the model's).
        batch: the static batch size of the artifact.
        dynamic: batch, height and width free (then leave ``batch`` at 1).
        end2end: NMS in the graph, where the target supports it.
        data: a data YAML: calibration images (int8) and the images verification runs on
            (default: the checkpoint's training data when that YAML exists, else synthetic images).
        calib: number of calibration images.
        verify: compare the artifact with the PyTorch model and refuse it beyond the tolerance;
            the report is logged and written beside the artifact as ``<artifact>.verify.json``.
        out: the artifact path, or an existing folder for the default name (default: beside
            the checkpoint, ``<stem>.onnx``, ``<stem>-fp16.onnx`` …; the current folder for an
            in-memory model).
        device: where to trace and verify: ``cpu``, ``cuda``, ``cuda:N`` or ``N``.
        simplify: simplify the graph (ONNX-based targets).
        opset: ONNX opset (ONNX-based targets).

    Returns:
        The Artifact.

    Raises:
        EdgesegError: a bad argument or source, a missing optional package (naming the extra to
            install), or ``export failed verification: …`` (then no artifact is written).
    """
    start = time.perf_counter()
    entry = target_entry(target, precision)
    if batch < 1:
        raise EdgesegError(f"batch must be >= 1, got {batch}")
    if dynamic and batch != 1:
        raise EdgesegError("a dynamic export takes any batch size; --batch sets a static one: give one of them")
    with missing_extra("export"):
        from edgeseg.train.distributed import check_devices

        if len(check_devices(device)) > 1:
            raise EdgesegError(f"--device {device}: export runs on one device")
        source, checkpoint, source_hash, folder, stem = _load_source(model)
        from edgeseg.model import Model
        from edgeseg.runtimes.backends.torch import TorchBackend

        net = copy.deepcopy(source.net).fuse().eval()
    stride = int(net.stride.max())
    hw = _input_size(source.imgsz if imgsz is None else imgsz, stride)
    meta = ModelMeta(
        names=dict(source.names),
        imgsz=hw,
        stride=stride,
        nm=net.head.nm,
        batch=0 if dynamic else batch,
        dynamic=dynamic,
        precision=precision,
        source_hash=source_hash,
        version=__version__,
    )
    dest = _destination(out, entry, folder, stem, precision)
    LOGGER.info(f"{source.source}: exporting to {dest} ({target} {precision}, {hw[0]}x{hw[1]}, batch {'dynamic' if dynamic else batch})")
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
            end2end=end2end,
            data=data or ((checkpoint or {}).get("train_args") or {}).get("data"),
            calib=calib,
            device=device,
            simplify=simplify,
            opset=opset,
        )
        with missing_extra(entry.extra):
            entry.build(job)
        if verify:
            sample = verification_set(data, checkpoint)
            reference = Runtime(TorchBackend(Model.from_network(net, hw[0], source.source), source.source, device))
            tolerance = entry.tolerances.get(precision)
            report = verify_artifact(reference, load(staged, device), sample.images, precision, hw, tolerance, sample.labels)
            report["images_from"] = sample.source
            LOGGER.info(format_report(report))
            if report["failures"]:
                raise EdgesegError(
                    f"export failed verification: {'; '.join(report['failures'])} "
                    f"({dest.name} not written; verify=False / --no-verify keeps it)"
                )
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


register_target("onnx", lazy_build("onnx"), ("fp32", "fp16"), "export", ".onnx")
register_target("openvino", lazy_build("openvino"), ("fp32", "fp16", "int8"), "openvino", "_openvino_model")
register_target("coreml", lazy_build("coreml"), ("fp32", "fp16", "int8"), "coreml", ".mlpackage")
register_target("tensorrt", lazy_build("tensorrt"), ("fp32", "fp16", "int8"), "tensorrt", ".engine")
register_target("tflite", lazy_build("tflite"), ("fp32", "fp16", "int8"), "tflite-export", ".tflite")
