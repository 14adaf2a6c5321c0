"""Model YAML resolution and validation (torch-free).

A model name such as ``yolo11n-seg.yaml`` resolves to the bundled ``yolo11-seg.yaml``
with scale ``n``, the way Ultralytics names its files (``yolov8n-seg.yaml``,
``yolo26n-seg.yaml`` likewise). Any other path is read as is.
"""

import math
import re
from pathlib import Path

from edgeseg.models import MODELS_DIR
from edgeseg.runtimes.errors import EdgesegError, is_int, quoted
from edgeseg.runtimes.io.yaml_safe import load_yaml
from edgeseg.runtimes.meta.limits import MAX_CLASSES

MODEL_KEYS = {"nc", "scales", "scale", "backbone", "head", "names", "ch", "end2end", "reg_max"}
KNOWN_MODULES = {
    "Conv",
    "C2f",
    "C3k2",
    "SPPF",
    "C2PSA",
    "Concat",
    "Upsample",
    "nn.Upsample",
    "Segment",
    "Segment26",
}
HEAD_MODULES = {"Segment", "Segment26"}  # the last row's module: Segment (YOLOv8, YOLO11) or Segment26 (YOLO26)
CHANNEL_MODULES = {"Conv", "C2f", "C3k2", "SPPF", "C2PSA"}  # rows whose first argument is the output channel count
MAX_REG_MAX = 64  # DFL bins per box side (YOLOv8, YOLO11: 16; YOLO26: 1, no DFL)
ARG_WORDS = {"nc", "None", "nearest"}  # the strings a row's args may hold
MAX_CHANNELS = 4096  # output channels of one layer (YOLO11x-seg: 768)
MAX_REPEATS = 16  # repeats of one row before depth scaling (YOLOv8: 6, YOLO11 and YOLO26: 2)
MAX_LAYERS = 64  # rows in backbone + head (YOLO11-seg: 24)
MAX_MULTIPLE = 4.0  # largest depth / width multiple of a scale (YOLO11x, YOLO26x: 1.5)
_SCALE_IN_NAME = re.compile(r"yolo[v]?\d+([nslmx])(?=-|$)")


def scale_from_name(stem: str) -> str | None:
    """The scale letter encoded in a model file stem (``yolo11n-seg`` -> ``n``), or None."""
    match = _SCALE_IN_NAME.search(stem)
    return match.group(1) if match else None


def family_name(cfg: dict) -> str:
    """The YOLO-seg family a model config builds, with its scale: ``YOLOv8n-seg``, ``YOLO11s-seg``, ``YOLO26x-seg``.

    Told from the rows as Ultralytics builds them: a ``Segment26`` head is YOLO26, ``C2f`` blocks
    are YOLOv8, anything else YOLO11.
    """
    modules = {row[2] for row in cfg["backbone"] + cfg["head"]}
    family = "YOLO26" if "Segment26" in modules else "YOLOv8" if "C2f" in modules else "YOLO11"
    return f"{family}{cfg.get('scale') or ''}-seg"


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
    cfg = load_yaml(path)
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
    if not is_int(cfg["nc"]) or not 1 <= cfg["nc"] <= MAX_CLASSES:
        raise EdgesegError(f"{source}: nc must be an integer from 1 to {MAX_CLASSES}, got {quoted(cfg['nc'], 60)}")
    if "reg_max" in cfg and not (is_int(cfg["reg_max"]) and 1 <= cfg["reg_max"] <= MAX_REG_MAX):
        raise EdgesegError(f"{source}: reg_max must be an integer from 1 to {MAX_REG_MAX}, got {quoted(cfg['reg_max'], 60)}")
    if "end2end" in cfg and not isinstance(cfg["end2end"], bool):
        raise EdgesegError(f"{source}: end2end must be true or false, got {quoted(cfg['end2end'], 60)}")
    scales = cfg.get("scales") or {}
    if scales:
        if cfg.get("scale") is None:
            cfg["scale"] = next(iter(scales))
        if cfg["scale"] not in scales:
            raise EdgesegError(f"{source}: unknown scale '{cfg['scale']}' (available: {', '.join(scales)})")
        _check_scales(scales, source)
    elif cfg.get("scale") is not None:
        raise EdgesegError(f"{source}: scale '{cfg['scale']}' requested but the file defines no scales")
    index = 0
    for section in ("backbone", "head"):
        layers = cfg[section]
        if not isinstance(layers, list) or not layers:
            raise EdgesegError(f"{source}: '{section}' must be a non-empty list of [from, repeats, module, args]")
        for i, layer in enumerate(layers):
            if not (isinstance(layer, list) and len(layer) == 4):
                raise EdgesegError(f"{source}: {section}[{i}] must be [from, repeats, module, args], got {quoted(layer, 60)}")
            if not isinstance(layer[2], str) or layer[2] not in KNOWN_MODULES:
                raise EdgesegError(
                    f"{source}: {section}[{i}] uses unknown module {quoted(layer[2], 60)} "
                    f"(known: {', '.join(sorted(KNOWN_MODULES))})"
                )
            problem = _row_problem(layer, index, last=section == "head" and i == len(layers) - 1)
            if problem:
                raise EdgesegError(f"{source}: {section}[{i}] (layer {index}): {problem}")
            index += 1
    if index > MAX_LAYERS:
        raise EdgesegError(f"{source}: {index} layers (at most {MAX_LAYERS})")


def _check_scales(scales, source: str) -> None:
    """Raise EdgesegError unless every scale is [depth 0-4, width 0-4, max_channels 1-MAX_CHANNELS]."""
    if not isinstance(scales, dict):
        raise EdgesegError(f"{source}: scales must be a mapping of scale letter to [depth, width, max_channels]")
    for letter, values in scales.items():
        if not (isinstance(values, list) and len(values) == 3):
            raise EdgesegError(f"{source}: scale '{letter}' must be [depth, width, max_channels]")
        depth, width, max_channels = values
        numbers_ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if not (numbers_ok and 0 < depth <= MAX_MULTIPLE and 0 < width <= MAX_MULTIPLE and 0 < max_channels <= MAX_CHANNELS):
            raise EdgesegError(
                f"{source}: scale '{letter}' is {quoted(values, 60)}; depth and width must lie in (0, {MAX_MULTIPLE}], "
                f"max_channels in 1..{MAX_CHANNELS}"
            )


def _row_problem(row: list, index: int, last: bool) -> str | None:
    """What is wrong with one ``[from, repeats, module, args]`` row of layer ``index``, or None."""
    src, repeats, module, args = row
    sources = src if isinstance(src, list) else [src]
    joins = module == "Concat" or module in HEAD_MODULES
    if joins != isinstance(src, list) or not sources:
        return f"'from' must be {'a list of layer indices' if joins else 'one layer index'}, got {quoted(src, 60)}"
    if index == 0 and src != -1:
        return "the first layer must read the image ('from' -1)"
    if index > 0 and not all(is_int(j) and -index <= j < index for j in sources):
        return f"'from' {quoted(src, 60)} names a layer that does not come before it"
    if not is_int(repeats) or not 1 <= repeats <= MAX_REPEATS:
        return f"repeats {quoted(repeats, 60)} (1 to {MAX_REPEATS})"
    if not isinstance(args, list) or len(args) > 8:
        return f"args must be a list of at most 8 values, got {quoted(args, 60)}"
    for arg in args:
        plain = arg is None or isinstance(arg, bool) or arg in ARG_WORDS
        number = isinstance(arg, (int, float)) and not isinstance(arg, bool) and abs(arg) <= MAX_CHANNELS
        if not (plain or number) or (isinstance(arg, float) and not math.isfinite(arg)):
            return f"argument {quoted(arg, 60)} is not a number up to {MAX_CHANNELS}, a flag or one of {', '.join(sorted(ARG_WORDS))}"
    if module in CHANNEL_MODULES and not (args and is_int(args[0]) and 1 <= args[0] <= MAX_CHANNELS):
        return f"{module} needs output channels 1..{MAX_CHANNELS} as its first argument, got {quoted(args[:1], 60)}"
    if (module in HEAD_MODULES) != last:
        return f"the last layer, and only it, must be a head ({' or '.join(sorted(HEAD_MODULES))})"
    if last and len(args) != 3:
        return f"{module} takes [nc, masks, proto channels], got {quoted(args, 60)}"
    return None
