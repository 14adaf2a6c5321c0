"""An OpenVINO model as the backend finds it: the IR's files, where its metadata sits, the plain keys beside it, device names."""

from pathlib import Path

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.io.yaml_safe import load_yaml
from edgeseg.runtimes.meta.model_meta import META_KEY
from edgeseg.runtimes.meta.plain_keys import PLAIN_KEYS, SIDECAR

RT_INFO_PATH = ["model_info", META_KEY]
ONNX_RT_INFO_PATH = ["framework", META_KEY]  # where an ONNX file's metadata_props appear once read by OpenVINO


def ov_device(device: str) -> str:
    """``cpu`` → ``CPU``, ``gpu`` → ``GPU``, ``gpu:N`` → ``GPU.N``, ``auto`` → ``AUTO``.

    Raises:
        EdgesegError: any other device.
    """
    text = str(device).strip().lower()
    if text in ("cpu", "gpu", "auto"):
        return text.upper()
    index = text.removeprefix("gpu:")
    if text.startswith("gpu:") and index.isdigit():
        return f"GPU.{index}"
    raise EdgesegError(f"unknown OpenVINO device {device!r} (use 'cpu', 'gpu', 'gpu:N' or 'auto')")


def ir_files(path: Path) -> tuple[Path, Path]:
    """The (``.xml``, ``.bin``) pair of an IR folder or ``.xml`` path.

    Raises:
        EdgesegError: a folder without exactly one ``.xml``, or a missing ``.bin``.
    """
    if path.is_dir():
        xmls = sorted(path.glob("*.xml"))
        if len(xmls) != 1:
            raise EdgesegError(f"{path}: an OpenVINO model folder holds one .xml file, found {len(xmls)}")
        path = xmls[0]
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise EdgesegError(f"{path}: the OpenVINO weights file {weights.name} is missing beside it")
    return path, weights


def plain_values(model, xml_or_onnx: Path, onnx_file: bool) -> dict:
    """The plain metadata keys of an artifact without edgeseg's own: an ONNX file's ``metadata_props``
    as OpenVINO exposes them (``rt_info["framework"]``), or the ``metadata.yaml`` beside an IR
    (an Ultralytics export); ``{}`` when there are none.

    Raises:
        EdgesegError: a ``metadata.yaml`` that is not a YAML mapping (``edgeseg.runtimes.io.yaml_safe`` limits).
    """
    if onnx_file:
        return {key: model.get_rt_info(["framework", key]).astype(str) for key in PLAIN_KEYS if model.has_rt_info(["framework", key])}
    sidecar = xml_or_onnx.parent / SIDECAR
    if not sidecar.is_file():
        return {}
    values = load_yaml(sidecar)
    if not isinstance(values, dict):
        raise EdgesegError(f"{sidecar}: not a YAML mapping of metadata keys")
    return values
