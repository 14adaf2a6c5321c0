"""Torch-free runtime: load any edgeseg artifact and run predict/val with numpy + OpenCV + one backend.

``load(path)`` picks the backend from the path (``.pt``, ``.onnx``, …; see
``edgeseg.runtimes.backends``); ``save_results`` writes what predict returns. This package is
what a device needs: it imports numpy, OpenCV, PyYAML and tqdm, never torch nor anything of
edgeseg outside itself; the ``.pt`` backend is a plugin of the training toolkit, imported only
when a ``.pt`` is opened (docs/ARCHITECTURE.md, "Layers").
"""

from edgeseg.runtimes.backends import select_backend
from edgeseg.runtimes.backends.engines import load_with_engine
from edgeseg.runtimes.io.save import ResultSaver, save_results
from edgeseg.runtimes.meta.model_meta import ModelMeta
from edgeseg.runtimes.pipeline.results import Results
from edgeseg.runtimes.runtime import Runtime

__all__ = ["load", "Runtime", "Results", "ModelMeta", "ResultSaver", "save_results"]


def load(path, device: str | None = None, engine: str | None = None, precision: str | None = None) -> Runtime:
    """Open a model artifact for predict/val.

    Args:
        path: an edgeseg ``.pt`` checkpoint or ``.onnx`` file (or any registered format).
        device: ``cpu``, or ``cuda``/``cuda:N``/``N`` where the backend supports it; None (the
            default): the first CUDA GPU where the backend can use one (torch for ``.pt``, ONNX
            Runtime with CUDA), else the CPU, logged.
        engine: for a file more than one engine can run (``.onnx``): ``onnxruntime`` (the
            default), ``openvino``, or ``auto``: the fastest installed one whose outputs match
            ONNX Runtime's, logged (``edgeseg.runtimes.backends.engines``).
        precision: compute in another precision than the file's own, where the engine offers it:
            ``bf16`` on OpenVINO (an IR, or an ``.onnx`` with ``engine="openvino"``) on a CPU with
            native bf16, about twice as fast as fp32; ``fp32`` runs an IR exported for bf16 in
            fp32. None (the default): the file's own.

    Raises:
        EdgesegError: a missing or unsupported path, an engine the format does not have, a
            precision the engine does not offer or this CPU cannot compute natively, or an
            artifact that cannot be loaded.
    """
    if engine is None:
        return Runtime(select_backend(path)(str(path), device, precision))
    return Runtime(load_with_engine(path, device, engine, precision))
