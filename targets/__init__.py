"""Exporters: checkpoint → ONNX, OpenVINO, TFLite, CoreML, TensorRT, each verified against PyTorch.

``export`` (``edgeseg.targets.exporter``) writes one verified artifact; the registry
(``edgeseg.targets.registry``) says which module builds which format; ``verify`` judges an
artifact against its network; ``common`` holds the export job, atomic writes and calibration.
"""

from edgeseg.targets.common import ExportJob
from edgeseg.targets.exporter import Artifact, export
from edgeseg.targets.registry import lazy_build, register_target, registered_targets, target_names

__all__ = ["export", "Artifact", "ExportJob", "register_target", "lazy_build", "target_names", "registered_targets"]
