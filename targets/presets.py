"""Device presets (``presets.yaml``): the export and the bench candidates that suit each device.

``edgeseg export MODEL --target pi`` exports ``preset("pi").export``; ``edgeseg bench MODEL
--target pi`` benches ``preset("pi").candidates``. The presets live in one data file shipped
with the package; this module only reads and checks it.
"""

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.targets.registry import precisions

PRESETS_FILE = Path(__file__).with_name("presets.yaml")


@dataclass(frozen=True)
class Preset:
    """One device preset.

    Attributes:
        name: the ``--target`` value that selects it (``pi`` …).
        device: what the device is, in words.
        target: the export target (a registered ``edgeseg.targets`` name).
        precision: ``fp32``, ``fp16``, ``bf16`` or ``int8``.
        imgsz: square input size in pixels, for the export and for the bench.
        candidates: ``(target, precision)`` pairs worth benching on this device.
    """

    name: str
    device: str
    target: str
    precision: str
    imgsz: int
    candidates: tuple[tuple[str, str], ...]


def parse_spec(spec: str) -> tuple[str, str]:
    """``"tflite:int8"`` → ``("tflite", "int8")``; a bare ``"onnx"`` means fp32.

    Raises:
        EdgesegError: an empty target or a precision no target writes (``registry.precisions``).
    """
    target, _, precision = spec.strip().partition(":")
    precision = precision or "fp32"
    if not target or precision not in precisions():
        raise EdgesegError(f"{spec!r}: expected target[:precision] with precision {', '.join(precisions())}, e.g. tflite:int8")
    return target, precision


@cache
def presets() -> dict[str, Preset]:
    """All presets of ``presets.yaml``, by name.

    Raises:
        EdgesegError: an entry without ``device``, ``export`` (target, precision, imgsz) or ``candidates``.
    """
    raw = yaml.safe_load(PRESETS_FILE.read_text())
    out = {}
    for name, entry in raw.items():
        try:
            export = entry["export"]
            out[name] = Preset(
                name=name,
                device=entry["device"],
                target=export["target"],
                precision=parse_spec(f"{export['target']}:{export['precision']}")[1],
                imgsz=int(export["imgsz"]),
                candidates=tuple(parse_spec(spec) for spec in entry["candidates"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EdgesegError(f"{PRESETS_FILE}: preset {name!r} is malformed ({exc!r})") from None
    return out


def preset_names() -> list[str]:
    """The preset names, in file order."""
    return list(presets())


def preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises:
        EdgesegError: an unknown name, listing the presets.
    """
    found = presets().get(name)
    if found is None:
        raise EdgesegError(f"unknown device preset {name!r} (choose from: {', '.join(preset_names())})")
    return found
