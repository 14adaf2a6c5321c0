"""Model YAML resolution and validation (torch-free).

A model name such as ``yolo11n-seg.yaml`` resolves to the bundled ``yolo11-seg.yaml``
with scale ``n``, the way Ultralytics names its files. Any other path is read as is.
"""

import math
import re
from pathlib import Path

from edgeseg.models import MODELS_DIR
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.io.yaml_safe import load_yaml
from edgeseg.runtimes.meta.limits import MAX_CLASSES

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
CHANNEL_MODULES = {"Conv", "C3k2", "SPPF", "C2PSA"}  # rows whose first argument is the output channel count
ARG_WORDS = {"nc", "None", "nearest"}  # the strings a row's args may hold
MAX_CHANNELS = 4096  # output channels of one layer (YOLO11x-seg: 768)
MAX_REPEATS = 16  # repeats of one row before depth scaling (YOLO11: 2)
MAX_LAYERS = 64  # rows in backbone + head (YOLO11-seg: 24)
MAX_MULTIPLE = 4.0  # largest depth / width multiple of a scale (YOLO11x: 1.5)
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
    if not _is_int(cfg["nc"]) or not 1 <= cfg["nc"] <= MAX_CLASSES:
        raise EdgesegError(f"{source}: nc must be an integer from 1 to {MAX_CLASSES}, got {_short(cfg['nc'])}")
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
                raise EdgesegError(f"{source}: {section}[{i}] must be [from, repeats, module, args], got {_short(layer)}")
            if not isinstance(layer[2], str) or layer[2] not in KNOWN_MODULES:
                raise EdgesegError(
                    f"{source}: {section}[{i}] uses unknown module {_short(layer[2])} "
                    f"(known: {', '.join(sorted(KNOWN_MODULES))})"
                )
            problem = _row_problem(layer, index, last=section == "head" and i == len(layers) - 1)
            if problem:
                raise EdgesegError(f"{source}: {section}[{i}] (layer {index}): {problem}")
            index += 1
    if index > MAX_LAYERS:
        raise EdgesegError(f"{source}: {index} layers (at most {MAX_LAYERS})")


def _short(value, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages about hostile values."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(value) -> bool:
    """True for an int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


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
                f"{source}: scale '{letter}' is {_short(values)}; depth and width must lie in (0, {MAX_MULTIPLE}], "
                f"max_channels in 1..{MAX_CHANNELS}"
            )


def _row_problem(row: list, index: int, last: bool) -> str | None:
    """What is wrong with one ``[from, repeats, module, args]`` row of layer ``index``, or None."""
    src, repeats, module, args = row
    sources = src if isinstance(src, list) else [src]
    joins = module in ("Concat", "Segment")
    if joins != isinstance(src, list) or not sources:
        return f"'from' must be {'a list of layer indices' if joins else 'one layer index'}, got {_short(src)}"
    if index == 0 and src != -1:
        return "the first layer must read the image ('from' -1)"
    if index > 0 and not all(_is_int(j) and -index <= j < index for j in sources):
        return f"'from' {_short(src)} names a layer that does not come before it"
    if not _is_int(repeats) or not 1 <= repeats <= MAX_REPEATS:
        return f"repeats {_short(repeats)} (1 to {MAX_REPEATS})"
    if not isinstance(args, list) or len(args) > 8:
        return f"args must be a list of at most 8 values, got {_short(args)}"
    for arg in args:
        plain = arg is None or isinstance(arg, bool) or arg in ARG_WORDS
        number = isinstance(arg, (int, float)) and not isinstance(arg, bool) and abs(arg) <= MAX_CHANNELS
        if not (plain or number) or (isinstance(arg, float) and not math.isfinite(arg)):
            return f"argument {_short(arg)} is not a number up to {MAX_CHANNELS}, a flag or one of {', '.join(sorted(ARG_WORDS))}"
    if module in CHANNEL_MODULES and not (args and _is_int(args[0]) and 1 <= args[0] <= MAX_CHANNELS):
        return f"{module} needs output channels 1..{MAX_CHANNELS} as its first argument, got {_short(args[:1])}"
    if (module == "Segment") != last:
        return "the last layer, and only it, must be Segment"
    return None
