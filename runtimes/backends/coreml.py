"""CoreML backend: ``.mlpackage`` ML Programs from edgeseg, run with ``coremltools.models.MLModel.predict`` on macOS.

The package's input ``images`` is a (B, 3, H, W) float32 tensor (not a CoreML image), so the
runtime's batch is fed unchanged; outputs ``preds`` and ``protos`` are float32. Off macOS the
package still loads through its spec (``coremltools.utils.load_spec``), so its ModelMeta and
shapes are readable, but ``infer`` raises ``PredictUnavailable``: CoreML's predict exists only on
macOS. coremltools is imported by ``load`` only, so a device without it gets a one-line message
naming the extra.
"""

import dataclasses
import platform

import numpy as np

from edgeseg.runtimes.backends.base import Backend, PredictUnavailable
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.model_meta import META_KEY
from edgeseg.runtimes.meta.plain_keys import meta_from_map

# device → compute units: "cpu" keeps float32 packages in float32; "all" lets CoreML use the GPU
# and the Neural Engine (which compute in float16).
COMPUTE_UNITS = {"cpu": "CPU_ONLY", "gpu": "CPU_AND_GPU", "ane": "CPU_AND_NE", "all": "ALL"}


def _shape(feature) -> list[int]:
    """The fixed shape of a spec input/output feature (a multi-array)."""
    return [int(d) for d in feature.type.multiArrayType.shape]


class CoreMLBackend(Backend):
    """An edgeseg ``.mlpackage`` behind the ``preds``/``protos`` contract.

    Args:
        path: the ``.mlpackage`` folder.
        device: ``cpu`` (CPU only), ``gpu``, ``ane`` or ``all`` (CoreML's compute units).

    Raises:
        EdgesegError: not an edgeseg package (no ``edgeseg`` metadata, or not one (B, 3, H, W)
            input ``images`` and outputs ``preds``/``protos``), or an unknown device.
    """

    name = "coreml"

    def __init__(self, path: str, device: str = "cpu"):
        import coremltools as ct

        units = COMPUTE_UNITS.get(str(device).lower())
        if units is None:
            raise EdgesegError(f"{path}: CoreML runs on {', '.join(COMPUTE_UNITS)}, not device {device!r}")
        try:
            spec = ct.utils.load_spec(str(path))
        except Exception as exc:  # coremltools raises plain Exception/IOError for unreadable packages
            raise EdgesegError(f"{path}: not a loadable CoreML package ({str(exc).splitlines()[0]})") from None
        description = spec.description
        meta = meta_from_map(dict(description.metadata.userDefined), path)
        if meta is None:
            raise EdgesegError(f"{path}: no '{META_KEY}' metadata and no plain metadata keys (names, imgsz): not a YOLO-seg CoreML package")
        inputs = {f.name: _shape(f) for f in description.input}
        outputs = {f.name: _shape(f) for f in description.output}
        if list(inputs) != ["images"] or len(inputs["images"]) != 4 or set(outputs) != {"preds", "protos"}:
            raise EdgesegError(f"{path}: expected input 'images' (B, 3, H, W) and outputs 'preds', 'protos'; found {inputs}, {outputs}")
        batch, _, height, width = inputs["images"]
        super().__init__(path, dataclasses.replace(meta, batch=batch, imgsz=(height, width), dynamic=False), device)
        self.model = None
        if platform.system() == "Darwin":
            self.model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, units))

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(meta.batch, 3, H, W) float32 → preds (B, 4 + nc + nm, A), protos (B, nm, H / 4, W / 4) float32.

        Raises:
            PredictUnavailable: off macOS.
        """
        if self.model is None:
            raise PredictUnavailable(f"CoreML predict needs macOS (this machine runs {platform.system()})")
        out = self.model.predict({"images": np.ascontiguousarray(batch, dtype=np.float32)})
        return np.asarray(out["preds"], np.float32), np.asarray(out["protos"], np.float32)


def load(path: str, device: str | None = None) -> CoreMLBackend:
    """Open an edgeseg ``.mlpackage``; ``device`` picks CoreML's compute units.

    Raises:
        ModuleNotFoundError: coremltools is not installed (the registry names the extra).
        EdgesegError: the package is unusable.
    """
    import coremltools  # noqa: F401  (before reading the package: a missing one is named first)

    return CoreMLBackend(path, "cpu" if device is None else device)
