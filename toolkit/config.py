"""Model YAML resolution and validation (torch-free).

A model name such as ``yolo11n-seg.yaml`` resolves to the bundled ``yolo11-seg.yaml``
with scale ``n``, the way Ultralytics names its files. Any other path is read as is.
"""

import re
from pathlib import Path

import yaml

from edgeseg.errors import EdgesegError
from edgeseg.models import MODELS_DIR

MODEL_KEYS = {"nc", "scales", "scale", "backbone", "head", "names", "ch"}
KNOWN_MODULES = {
    "Conv",
    "C3k2",
    "SPPF",
    "C2PSA",
    "Concat",
    "Upsample",
    "nn.Upsample",
    "Segment",
}
_SCALE_IN_NAME = re.compile(r"yolo[v]?\d+([nslmx])(?=-|$)")


def scale_from_name(stem: str) -> str | None:
    """The scale letter encoded in a model file stem (``yolo11n-seg`` -> ``n``), or None."""
    match = _SCALE_IN_NAME.search(stem)
    return match.group(1) if match else None


def _locate(name: str) -> tuple[Path, str | None]:
    """Find the YAML for ``name``; return (path, scale from the name or None)."""
    path = Path(name)
    if path.is_file():
        return path, scale_from_name(path.stem)
    stem = path.stem
    scale = scale_from_name(stem)
    candidates = [MODELS_DIR / path.name]
    if scale:
        unscaled = _SCALE_IN_NAME.sub(lambda m: m.group(0)[:-1], stem, count=1)
        candidates.insert(0, MODELS_DIR / f"{unscaled}.yaml")
    for candidate in candidates:
        if candidate.is_file():
            return candidate, scale
    raise EdgesegError(
        f"{name}: model file not found (bundled models: "
        f"{', '.join(p.name for p in sorted(MODELS_DIR.glob('*.yaml')))})"
    )


def load_model_config(name: str, nc: int | None = None) -> dict:
    """Read and validate a model YAML; return the resolved config dict.

    Args:
        name: a path to a YAML file, or a bundled name such as ``yolo11n-seg.yaml``.
        nc: number of classes to override the file's ``nc`` with.

    Returns:
        ``{"nc", "scales", "scale", "backbone", "head", ...}`` with ``scale`` set to
        the chosen scale letter (from the name, the file, or the first one listed).

    Raises:
        EdgesegError: missing file, unreadable YAML, unknown key or scale, unknown module.
    """
    path, name_scale = _locate(name)
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise EdgesegError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(cfg, dict):
        raise EdgesegError(f"{path}: expected a mapping of model keys, got {type(cfg).__name__}")
    cfg["scale"] = name_scale or cfg.get("scale")
    if nc is not None:
        cfg["nc"] = int(nc)
    validate_model_config(cfg, source=str(path))
    return cfg


def validate_model_config(cfg: dict, source: str = "model config") -> None:
    """Check a model config dict; raise EdgesegError naming ``source`` and the problem.

    Fills in ``cfg["scale"]`` with the first listed scale when none was chosen.
    """
    unknown = sorted(set(cfg) - MODEL_KEYS)
    if unknown:
        raise EdgesegError(f"{source}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(MODEL_KEYS))})")
    for key in ("nc", "backbone", "head"):
        if key not in cfg:
            raise EdgesegError(f"{source}: missing required key '{key}'")
    if not isinstance(cfg["nc"], int) or cfg["nc"] < 1:
        raise EdgesegError(f"{source}: nc must be a positive integer, got {cfg['nc']!r}")
    scales = cfg.get("scales") or {}
    if scales:
        if cfg.get("scale") is None:
            cfg["scale"] = next(iter(scales))
        if cfg["scale"] not in scales:
            raise EdgesegError(f"{source}: unknown scale '{cfg['scale']}' (available: {', '.join(scales)})")
        for letter, values in scales.items():
            if not (isinstance(values, list) and len(values) == 3):
                raise EdgesegError(f"{source}: scale '{letter}' must be [depth, width, max_channels]")
    elif cfg.get("scale") is not None:
        raise EdgesegError(f"{source}: scale '{cfg['scale']}' requested but the file defines no scales")
    for section in ("backbone", "head"):
        layers = cfg[section]
        if not isinstance(layers, list) or not layers:
            raise EdgesegError(f"{source}: '{section}' must be a non-empty list of [from, repeats, module, args]")
        for i, layer in enumerate(layers):
            if not (isinstance(layer, list) and len(layer) == 4):
                raise EdgesegError(f"{source}: {section}[{i}] must be [from, repeats, module, args], got {layer!r}")
            if layer[2] not in KNOWN_MODULES:
                raise EdgesegError(
                    f"{source}: {section}[{i}] uses unknown module '{layer[2]}' "
                    f"(known: {', '.join(sorted(KNOWN_MODULES))})"
                )
