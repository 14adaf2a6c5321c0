"""Backend registry: which adapter loads which artifact, chosen from the path alone.

Adding a format is one module with a ``load(path, device)`` and one ``register_backend`` line: a
name, a matcher on the path, a loader, how users recognise the format, and the pip extra that
installs the engine's package. The built-in loaders import their engine (onnxruntime, openvino …)
only when called, so importing ``edgeseg.runtimes`` stays light; when that import fails, the
registry says which extra to install, for every backend alike (``guarded``). A backend that
lives outside this package (the ``.pt`` one needs torch and the network code of the training
toolkit) is a plugin: an ``edgeseg.backends`` entry point naming its ``load(path, device)``,
resolved only when a file of its format is opened (``plugin_loader``). An engine that can also
run another format's files (OpenVINO runs ``.onnx``) says so (``also_opens``); ``engines.py``
offers it there. An engine that can compute a file in a lower precision than the file's own at
load time (OpenVINO: bf16 on a CPU that has it) lists it in ``precisions``; ``guarded`` refuses
the others a precision with one line.
"""

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.backends.base import Backend

Loader = Callable[..., Backend]  # (path, device, precision=None) -> Backend


@dataclass(frozen=True)
class BackendEntry:
    """One registered format.

    Attributes:
        name: backend name.
        matcher: True for a path this backend loads (the path exists when it is called).
        loader: ``(path, device) -> Backend``, called with ``precision=`` too when one is asked for.
        formats: how users recognise the format in messages, e.g. ``".onnx (ONNX Runtime)"``.
        extra: the pip extra that installs the engine's package, named when its import fails
            (None: the package is always installed).
        hint: what the missing-package message adds, e.g. where the package comes from.
        engine: the name ``--engine`` picks it by (the Backend's ``name``).
        also_opens: suffixes of other formats' files this engine runs too (OpenVINO: ``.onnx``).
        precisions: the compute precisions a user may ask this engine for at load time, besides
            the file's own (OpenVINO: ``bf16``); empty: it runs files as they were exported.
    """

    name: str
    matcher: Callable[[Path], bool]
    loader: Loader
    formats: str
    extra: str | None = None
    hint: str = ""
    engine: str = ""
    also_opens: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ()


_REGISTRY: list[BackendEntry] = []


def register_backend(
    name: str,
    matcher: Callable[[Path], bool],
    loader: Loader,
    formats: str,
    extra: str | None = None,
    hint: str = "",
    engine: str = "",
    also_opens: tuple[str, ...] = (),
    precisions: tuple[str, ...] = (),
) -> None:
    """Add a backend (see ``BackendEntry``), or replace the one registered under ``name``; earlier registrations match first."""
    entry = BackendEntry(name, matcher, loader, formats, extra, hint, engine or name, also_opens, precisions)
    for i, existing in enumerate(_REGISTRY):
        if existing.name == name:
            _REGISTRY[i] = entry
            return
    _REGISTRY.append(entry)


class suffix_matcher:  # noqa: N801 (used as a function: a matcher)
    """A matcher for files whose suffix is one of ``suffixes`` (case-insensitive), which it lists in ``.suffixes``."""

    def __init__(self, *suffixes: str):
        self.suffixes = frozenset(s.lower() for s in suffixes)

    def __call__(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() in self.suffixes


def lazy_loader(module: str) -> Loader:
    """A loader that imports ``edgeseg.runtimes.backends.<module>`` on first use and calls its ``load``."""

    def load(path: str, device: str, **precision) -> Backend:
        return import_module(f"{__name__}.{module}").load(path, device, **precision)

    return load


def plugin_loader(name: str, extra: str) -> Loader:
    """A loader that calls the ``load(path, device)`` named by the ``edgeseg.backends`` entry point ``name``.

    Args:
        name: the entry point's name (``torch`` for ``.pt``).
        extra: the pip extra that installs the plugin, named when it is not installed.

    Raises (from the loader):
        EdgesegError: no such entry point is installed.
    """

    def load(path: str, device: str, **precision) -> Backend:
        found = entry_points(group="edgeseg.backends", name=name)
        if not found:
            raise EdgesegError(f"{path}: no '{name}' backend is installed (reinstall edgeseg[{extra}])")
        return next(iter(found)).load()(path, device, **precision)

    return load


def guarded(entry: BackendEntry) -> Loader:
    """``entry.loader``, with a missing package (other than edgeseg's own) turned into one line naming ``entry.extra``.

    The guarded loader takes ``(path, device, precision=None)``; a precision the engine does not
    offer at load time (``entry.precisions``) is refused with one line naming those that do.
    """

    def load(path: str, device: str, precision: str | None = None) -> Backend:
        if precision is not None and precision not in entry.precisions:
            offering = [e.engine for e in _REGISTRY if precision in e.precisions]
            if not offering:
                known = sorted({p for e in _REGISTRY for p in e.precisions})
                raise EdgesegError(f"unknown precision {precision!r} (choose from: {', '.join(known)})")
            raise EdgesegError(
                f"{path}: the {entry.engine} engine runs this file in its exported precision; precision {precision!r} is "
                f"offered by the {' and '.join(offering)} engine (an .onnx: engine={offering[0]!r}, on the CLI --engine {offering[0]})"
            )
        try:
            return entry.loader(path, device, **({} if precision is None else {"precision": precision}))
        except ModuleNotFoundError as exc:
            package = (exc.name or "").split(".")[0]
            if entry.extra is None or package in ("", "edgeseg"):
                raise
            hint = f" ({entry.hint})" if entry.hint else ""
            raise EdgesegError(
                f"{path}: the {entry.name} backend needs the '{package}' package: install edgeseg[{entry.extra}]{hint}"
            ) from None

    return load


def supported_formats() -> str:
    """The registered formats, comma-separated, for messages."""
    return ", ".join(entry.formats for entry in _REGISTRY)


def engines_for(suffix: str) -> tuple[str, ...]:
    """The engines that run files of ``suffix`` when more than one can: the format's own backend first (the
    default and the reference), then those that ``also_opens`` it; empty when only one engine can."""
    suffix = suffix.lower()
    others = [e.engine for e in _REGISTRY if suffix in e.also_opens]
    if not others:
        return ()
    own = [e.engine for e in _REGISTRY if isinstance(e.matcher, suffix_matcher) and suffix in e.matcher.suffixes]
    return tuple(dict.fromkeys([*own, *others]))


def multi_engine_suffixes() -> list[str]:
    """The file suffixes more than one engine runs (those some backend ``also_opens``), sorted."""
    return sorted({suffix for entry in _REGISTRY for suffix in entry.also_opens})


def engine_choices() -> tuple[str, ...]:
    """Every engine name ``--engine`` can take (besides ``auto``)."""
    return tuple(dict.fromkeys(name for suffix in multi_engine_suffixes() for name in engines_for(suffix)))


def engine_loader(engine: str) -> Loader:
    """The guarded loader of the backend whose engine is named ``engine``.

    Raises:
        EdgesegError: no backend has that engine.
    """
    for entry in _REGISTRY:
        if entry.engine == engine:
            return guarded(entry)
    raise EdgesegError(f"unknown engine {engine!r} (known: {', '.join(e.engine for e in _REGISTRY)})")


def select_backend(path: str | Path) -> Loader:
    """The loader of the first registered backend whose matcher accepts ``path``.

    Raises:
        EdgesegError: naming the path and the supported formats, when it does not exist or no
            backend matches it.
    """
    path = Path(path)
    if not path.exists():
        raise EdgesegError(f"{path}: model not found (supported formats: {supported_formats()})")
    for entry in _REGISTRY:
        if entry.matcher(path):
            return guarded(entry)
    raise EdgesegError(f"{path}: unsupported model format (supported formats: {supported_formats()})")


register_backend("torch", suffix_matcher(".pt"), plugin_loader("torch", "train"), ".pt (PyTorch checkpoint)", extra="train")
register_backend("onnx", suffix_matcher(".onnx"), lazy_loader("onnx"), ".onnx (ONNX Runtime)", engine="onnxruntime")
register_backend(
    "openvino", lambda p: (p.is_dir() and p.name.endswith("_openvino_model")) or suffix_matcher(".xml")(p), lazy_loader("openvino"),
    "*_openvino_model/ or .xml (OpenVINO IR)", extra="openvino", also_opens=(".onnx",), precisions=("fp32", "bf16"),
)  # fmt: skip
register_backend("coreml", lambda p: p.is_dir() and p.suffix.lower() == ".mlpackage", lazy_loader("coreml"), ".mlpackage (CoreML, predict on macOS)", extra="coreml")
register_backend(
    "tensorrt", suffix_matcher(".engine"), lazy_loader("tensorrt"), ".engine (TensorRT, NVIDIA GPU)", extra="tensorrt",
    hint="TensorRT itself comes with JetPack on a Jetson, or as the tensorrt wheels from NVIDIA's package index",
)  # fmt: skip
register_backend("tflite", suffix_matcher(".tflite"), lazy_loader("tflite"), ".tflite (LiteRT)", extra="tflite", engine="litert")
register_backend("ncnn", lambda p: p.is_dir() and p.name.endswith("_ncnn_model"), lazy_loader("ncnn"), "*_ncnn_model/ (NCNN)", extra="ncnn")
register_backend(
    "executorch", suffix_matcher(".pte"), lazy_loader("executorch"), ".pte (ExecuTorch, needs PyTorch)", extra="executorch",
    hint="ExecuTorch's runtime also needs PyTorch",
)  # fmt: skip
register_backend("rknn", lambda p: p.is_dir() and p.name.endswith("_rknn_model"), lazy_loader("rknn"), "*_rknn_model/ (RKNN, on a Rockchip board)")
