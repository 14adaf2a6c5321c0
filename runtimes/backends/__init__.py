"""Backend registry: which adapter loads which artifact, chosen from the path alone.

Adding a format is one ``register_backend`` call: a name, a matcher on the path and a loader
``(path, device) -> Backend``. The built-in loaders import their engine (onnxruntime, openvino …)
only when called, so importing ``edgeseg.runtimes`` stays light. A backend that lives outside
this package (the ``.pt`` one needs torch and the network code of the training toolkit) is a
plugin: an ``edgeseg.backends`` entry point naming its ``load(path, device)``, resolved only
when a file of its format is opened (``plugin_loader``).
"""

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.backends.base import Backend

Loader = Callable[[str, str], Backend]


@dataclass(frozen=True)
class BackendEntry:
    """One registered format.

    Attributes:
        name: backend name.
        matcher: True for a path this backend loads (the path exists when it is called).
        loader: ``(path, device) -> Backend``.
        formats: how users recognise the format in messages, e.g. ``".onnx (ONNX Runtime)"``.
    """

    name: str
    matcher: Callable[[Path], bool]
    loader: Loader
    formats: str


_REGISTRY: list[BackendEntry] = []


def register_backend(name: str, matcher: Callable[[Path], bool], loader: Loader, formats: str) -> None:
    """Add a backend, or replace the one registered under ``name``; earlier registrations match first."""
    entry = BackendEntry(name, matcher, loader, formats)
    for i, existing in enumerate(_REGISTRY):
        if existing.name == name:
            _REGISTRY[i] = entry
            return
    _REGISTRY.append(entry)


def suffix_matcher(*suffixes: str) -> Callable[[Path], bool]:
    """A matcher for files whose suffix is one of ``suffixes`` (case-insensitive)."""
    wanted = {s.lower() for s in suffixes}
    return lambda path: path.is_file() and path.suffix.lower() in wanted


def lazy_loader(module: str) -> Loader:
    """A loader that imports ``edgeseg.runtimes.backends.<module>`` on first use and calls its ``load``."""

    def load(path: str, device: str) -> Backend:
        return import_module(f"{__name__}.{module}").load(path, device)

    return load


def plugin_loader(name: str, extra: str) -> Loader:
    """A loader that calls the ``load(path, device)`` named by the ``edgeseg.backends`` entry point ``name``.

    Args:
        name: the entry point's name (``torch`` for ``.pt``).
        extra: the pip extra that installs what the plugin imports, named when it is missing.

    Raises (from the loader):
        EdgesegError: no such entry point is installed, or the plugin's packages are missing.
    """

    def load(path: str, device: str) -> Backend:
        found = entry_points(group="edgeseg.backends", name=name)
        if not found:
            raise EdgesegError(f"{path}: no '{name}' backend is installed (reinstall edgeseg[{extra}])")
        try:
            plugin = next(iter(found)).load()
        except ModuleNotFoundError as exc:
            if not exc.name or exc.name.split(".")[0] == "edgeseg":
                raise
            raise EdgesegError(f"{path}: the {name} backend needs the '{exc.name}' package: install edgeseg[{extra}]") from None
        return plugin(path, device)

    return load


def supported_formats() -> str:
    """The registered formats, comma-separated, for messages."""
    return ", ".join(entry.formats for entry in _REGISTRY)


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
            return entry.loader
    raise EdgesegError(f"{path}: unsupported model format (supported formats: {supported_formats()})")


register_backend("torch", suffix_matcher(".pt"), plugin_loader("torch", "train"), ".pt (PyTorch checkpoint)")
register_backend("onnx", suffix_matcher(".onnx"), lazy_loader("onnx"), ".onnx (ONNX Runtime)")
register_backend("openvino", lambda p: (p.is_dir() and p.name.endswith("_openvino_model")) or suffix_matcher(".xml")(p), lazy_loader("openvino"), "*_openvino_model/ or .xml (OpenVINO IR)")
register_backend("coreml", lambda p: p.is_dir() and p.suffix.lower() == ".mlpackage", lazy_loader("coreml"), ".mlpackage (CoreML, predict on macOS)")
register_backend("tensorrt", suffix_matcher(".engine"), lazy_loader("tensorrt"), ".engine (TensorRT, NVIDIA GPU)")
register_backend("tflite", suffix_matcher(".tflite"), lazy_loader("tflite"), ".tflite (LiteRT)")
register_backend("ncnn", lambda p: p.is_dir() and p.name.endswith("_ncnn_model"), lazy_loader("ncnn"), "*_ncnn_model/ (NCNN)")
register_backend("executorch", suffix_matcher(".pte"), lazy_loader("executorch"), ".pte (ExecuTorch, needs PyTorch)")
register_backend("rknn", lambda p: p.is_dir() and p.name.endswith("_rknn_model"), lazy_loader("rknn"), "*_rknn_model/ (RKNN, on a Rockchip board)")
