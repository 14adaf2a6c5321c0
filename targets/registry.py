"""The export targets: which module builds which format, at which precisions, with which extra.

A target is a module ``targets/<name>.py`` with ``build(job: ExportJob) -> None`` plus one
``register_target`` line at the end of this file; the module (and its optional packages) is
imported only when that target is used.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.targets.common import ExportJob

PACKAGE = "edgeseg.targets"


@dataclass(frozen=True)
class TargetEntry:
    """One registered target; see ``register_target``."""

    name: str
    build: Callable[[ExportJob], None]
    precisions: tuple[str, ...]
    extra: str
    suffix: str
    tolerances: dict = field(default_factory=dict)
    platforms: tuple[str, ...] = ()
    end2end: bool = False

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
    platforms: tuple[str, ...] = (),
    end2end: bool = False,
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
        platforms: the chips it compiles for (``--platform``), the default first; empty when the
            artifact is not built for one chip.
        end2end: it builds end-to-end graphs (``--end2end``: NMS, or a one-to-one head's top-k, in
            the graph). Without, a YOLO26 ``--end2end`` export keeps the one-to-one branch's raw
            outputs and the host does the top-k; other models are refused by the target's ``build``.
    """
    _REGISTRY[name] = TargetEntry(name, build, tuple(precisions), extra, suffix, dict(tolerances or {}), tuple(platforms), end2end)


def lazy_build(module: str) -> Callable[[ExportJob], None]:
    """A build function that imports ``edgeseg.targets.<module>`` on first use and calls its ``build``."""

    def build(job: ExportJob) -> None:
        import_module(f"{PACKAGE}.{module}").build(job)

    return build


def target_names() -> list[str]:
    """The registered targets, sorted."""
    return sorted(_REGISTRY)


def registered_targets() -> list[TargetEntry]:
    """Every registered target (name, precisions, extra, artifact suffix, tolerances), sorted by name."""
    return [_REGISTRY[name] for name in target_names()]


def precisions() -> tuple[str, ...]:
    """Every precision some registered target writes, in registration order (fp32, fp16, bf16, int8)."""
    return tuple(dict.fromkeys(p for entry in _REGISTRY.values() for p in entry.precisions))


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


register_target("onnx", lazy_build("onnx"), ("fp32", "fp16"), "export", ".onnx", end2end=True)
register_target("openvino", lazy_build("openvino"), ("fp32", "fp16", "bf16", "int8"), "openvino", "_openvino_model", end2end=True)
register_target("coreml", lazy_build("coreml"), ("fp32", "fp16", "int8"), "coreml", ".mlpackage")
register_target("tensorrt", lazy_build("tensorrt"), ("fp32", "fp16", "int8"), "tensorrt", ".engine")
register_target("tflite", lazy_build("tflite"), ("fp32", "fp16", "int8"), "tflite-export", ".tflite")
register_target("ncnn", lazy_build("ncnn"), ("fp32", "fp16"), "ncnn-export", "_ncnn_model")
register_target("executorch", lazy_build("executorch"), ("fp32",), "executorch", ".pte")
# rknn-toolkit2 runs in its own venv (targets/rknn.py); this side needs the export extra only.
# rk3588 first, the default; rk2118 is left out: rknn-toolkit2 2.5 crashed on the model's first conv.
RKNN_PLATFORMS = ("rk3588", "rk3576", "rk3566", "rk3568", "rk3562", "rv1126b", "rv1103", "rv1103b", "rv1106", "rv1106b")
register_target("rknn", lazy_build("rknn"), ("fp16", "int8"), "export", "_rknn_model", platforms=RKNN_PLATFORMS)
