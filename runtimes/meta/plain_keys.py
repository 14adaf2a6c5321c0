"""Metadata as the YOLO ecosystem's clients read it: plain keys beside edgeseg's own ``META_KEY``.

Ultralytics' AutoBackend and the apps and C++ demos built on its exports look for one entry per
fact (``names``, ``imgsz``, ``stride``, ``task``, ``batch``, ...), each value a Python literal
written with ``str()``: ``imgsz`` is ``[h, w]``, ``names`` is ``{0: 'a', 1: 'b'}``, ``args`` is
a dict of export settings (``nms``, ``dynamic``, ``half``, ``int8``, ``quantize``, ``batch``,
``imgsz``) and ``stride``/``batch``/``channels`` are integers. edgeseg writes these beside its
own JSON in every artifact, and reads them, with ``ast.literal_eval`` (never ``eval``), when an
artifact has no edgeseg metadata (an Ultralytics export).
"""

import ast
from collections.abc import Mapping
from pathlib import Path

import yaml

from edgeseg.runtimes.errors import EdgesegError, is_int
from edgeseg.runtimes.meta.limits import MAX_DETECTIONS, MAX_METADATA_BYTES
from edgeseg.runtimes.meta.model_meta import META_KEY, ModelMeta, parse_imgsz, parse_names

AUTHOR = "edgeseg"
REQUIRED = ("names", "imgsz")  # what an artifact's plain keys must hold to describe it
PLAIN_KEYS = ("names", "imgsz", "stride", "batch", "task", "args", "end2end")  # the keys read back
TOPK_DEFAULT = 300  # detections per image of an end-to-end Ultralytics export whose args carry no max_det
SIDECAR = "metadata.yaml"  # the plain keys' file inside a folder artifact (OpenVINO IR)


def plain_metadata(meta: ModelMeta) -> dict:
    """``meta`` as the plain keys' Python values: ``{"description": str, ..., "imgsz": [h, w], "names": {id: name}, ...}``.

    Write each value with ``str()`` where the format stores strings (ONNX, CoreML), or as
    YAML/JSON values where it stores structured data (OpenVINO's ``metadata.yaml``, TFLite's
    ``metadata.json``).
    """
    fp16, int8 = meta.precision == "fp16", meta.precision == "int8"
    return {
        "description": f"edgeseg YOLO-seg model ({meta.nc} classes, {meta.precision})",
        "author": AUTHOR,
        "version": meta.version,
        "license": "Apache-2.0",
        "stride": int(meta.stride),
        "task": meta.task,
        "head": "Segment",
        "batch": int(meta.batch) or 1,
        "imgsz": [int(meta.imgsz[0]), int(meta.imgsz[1])],
        "names": {int(i): str(n) for i, n in meta.names.items()},
        "args": {
            "batch": int(meta.batch) or 1,
            "imgsz": [int(meta.imgsz[0]), int(meta.imgsz[1])],
            "half": fp16,
            "int8": int8,
            "quantize": 16 if fp16 else 8 if int8 else None,
            "dynamic": bool(meta.dynamic),
            "nms": bool(meta.nms),
            **({"max_det": int(meta.topk)} if meta.topk else {}),
        },
        "channels": 3,
        "end2end": meta.end2end,
    }


def plain_strings(meta: ModelMeta) -> dict[str, str]:
    """``plain_metadata(meta)`` with every value written by ``str()``: the ONNX ``metadata_props`` / CoreML encoding."""
    return {key: str(value) for key, value in plain_metadata(meta).items()}


def _literal(key: str, value):
    """``value`` parsed as a Python literal when it is a string that holds one, else ``value`` itself.

    Raises:
        ValueError: a string too long to be metadata, or not a literal where one is expected.
    """
    if not isinstance(value, str):
        return value
    if len(value) > MAX_METADATA_BYTES:
        raise ValueError(f"'{key}' is {len(value)} characters (at most {MAX_METADATA_BYTES})")
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(f"'{key}' is not a Python literal: {value[:80]!r}") from None


def has_plain(values: Mapping) -> bool:
    """True when ``values`` (an artifact's key → value metadata) holds the plain keys ``meta_from_plain`` needs."""
    return all(key in values for key in REQUIRED)


def meta_from_plain(values: Mapping) -> ModelMeta:
    """A ``ModelMeta`` from plain keys (strings as ONNX/CoreML store them, or YAML/JSON values); checked.

    ``names`` may map ids (int or digit strings) to names, or be a list; ``imgsz`` an int or
    ``[h, w]``. ``end2end`` true is a one-to-one head's top-k in the graph (YOLO26 exported with
    ``nms=False``): its ``args["max_det"]`` (default 300) detections per image, picked without NMS.
    An export with NMS in the graph (``args["nms"]`` true otherwise) is refused: its NMS settings
    are not in the plain keys.

    Raises:
        ValueError: a missing or malformed key, or a value outside ``ModelMeta.check``'s limits.
    """
    missing = [key for key in REQUIRED if key not in values]
    if missing:
        raise ValueError(f"no {' or '.join(missing)} key")
    names = parse_names(_literal("names", values["names"]), numbers_as_names=True)
    imgsz = parse_imgsz(_literal("imgsz", values["imgsz"]))
    fields = {}
    for key in ("stride", "batch"):
        if key in values:
            value = _literal(key, values[key])
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{key} is {value!r}, not an integer")
            fields[key] = value
    args = _literal("args", values.get("args", {}))
    args = args if isinstance(args, dict) else {}
    end2end = _literal("end2end", values.get("end2end", False)) is True
    if args.get("nms") is True and not end2end:
        raise ValueError("an export with NMS in the graph (nms=True) is not supported without edgeseg metadata")
    if end2end:  # a one-to-one head's top-k in the graph (YOLO26 exported with nms=False)
        topk = args.get("max_det", TOPK_DEFAULT)
        if not is_int(topk) or not 0 < topk <= MAX_DETECTIONS:
            raise ValueError(f"max_det is {topk!r}, not a detection count from 1 to {MAX_DETECTIONS}")
        fields.update(selection="topk", topk=topk)
    task = values.get("task", "segment")
    if task != "segment":
        raise ValueError(f"task is {task!r}; edgeseg runs segmentation models")
    quantize = args.get("quantize")
    precision = "int8" if args.get("int8") is True or quantize == 8 else "fp16" if args.get("half") is True or quantize == 16 else "fp32"
    return ModelMeta(
        names=names, imgsz=imgsz, precision=precision, dynamic=args.get("dynamic") is True, **fields
    ).check()


def meta_from_map(values: Mapping, path) -> ModelMeta | None:
    """The ModelMeta of an artifact whose metadata is a key → value map (ONNX ``metadata_props``, CoreML, ...).

    edgeseg's own ``META_KEY`` JSON first; else the plain keys (an Ultralytics export); else None
    (the caller falls back to the output layout).

    Raises:
        EdgesegError: metadata that is present but unreadable, naming ``path`` and the key.
    """
    if META_KEY in values:
        try:
            return ModelMeta.from_json(values[META_KEY])
        except ValueError as exc:
            raise EdgesegError(f"{path}: unreadable '{META_KEY}' metadata ({exc})") from None
    if not has_plain(values):
        return None
    try:
        return meta_from_plain(values)
    except ValueError as exc:
        raise EdgesegError(f"{path}: unreadable plain metadata ({exc})") from None


def write_sidecar(folder: Path, meta: ModelMeta) -> Path:
    """Write ``folder/metadata.yaml``: ``plain_metadata(meta)`` as YAML, as a folder artifact's readers expect; return its path."""
    path = folder / SIDECAR
    path.write_text(yaml.safe_dump(plain_metadata(meta), sort_keys=False), encoding="utf-8")
    return path
