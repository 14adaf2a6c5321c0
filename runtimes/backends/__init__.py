"""Backend registry: which adapter loads which artifact, chosen from the path alone.

Adding a format is one ``register_backend`` call: a name, a matcher on the path and a loader
``(path, device) -> Backend``. The built-in loaders import their engine (torch, onnxruntime)
only when called, so importing ``edgeseg.runtimes`` stays light and never imports torch.
"""

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
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


register_backend("torch", suffix_matcher(".pt"), lazy_loader("torch"), ".pt (PyTorch checkpoint)")
register_backend("onnx", suffix_matcher(".onnx"), lazy_loader("onnx"), ".onnx (ONNX Runtime)")
register_backend("openvino", lambda p: (p.is_dir() and p.name.endswith("_openvino_model")) or suffix_matcher(".xml")(p), lazy_loader("openvino"), "*_openvino_model/ or .xml (OpenVINO IR)")
register_backend("coreml", lambda p: p.is_dir() and p.suffix.lower() == ".mlpackage", lazy_loader("coreml"), ".mlpackage (CoreML, predict on macOS)")
register_backend("tensorrt", suffix_matcher(".engine"), lazy_loader("tensorrt"), ".engine (TensorRT, NVIDIA GPU)")
register_backend("tflite", suffix_matcher(".tflite"), lazy_loader("tflite"), ".tflite (LiteRT)")
