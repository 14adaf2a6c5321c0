"""The ``.engine`` file as edgeseg writes it (the same layout as Ultralytics' engines), read without TensorRT::

    bytes 0-3     n, the length of the metadata, uint32 little-endian
    bytes 4-4+n   ModelMeta JSON, UTF-8 (an Ultralytics engine: its plain keys' JSON)
    bytes 4+n-    the serialized TensorRT engine (``IBuilder.build_serialized_network``)

A bare engine (no header, e.g. from ``trtexec``) loads when a sidecar ``<engine>.json`` holds its
ModelMeta.
"""

import json
import struct
from pathlib import Path

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.model_meta import ModelMeta
from edgeseg.runtimes.meta.plain_keys import has_plain, meta_from_plain

HEADER = struct.Struct("<I")  # length of the ModelMeta JSON that precedes the engine bytes


def write_engine(path: str | Path, meta: ModelMeta, engine: bytes) -> Path:
    """Write ``path``: the length-prefixed ModelMeta JSON header, then ``engine``."""
    path = Path(path)
    text = meta.to_json().encode()
    path.write_bytes(HEADER.pack(len(text)) + text + bytes(engine))
    return path


def header_meta(text: str, path) -> ModelMeta:
    """The ModelMeta of an engine header's JSON: edgeseg's ModelMeta (it always holds ``precision``), else the
    plain keys (an Ultralytics engine: ``names``, ``imgsz``, ``args`` …, no ``precision``).

    Raises:
        ValueError: neither.
    """
    values = json.loads(text)
    if isinstance(values, dict) and "precision" not in values and has_plain(values):
        return meta_from_plain(values)
    return ModelMeta.from_json(text)


def read_engine(path: str | Path) -> tuple[ModelMeta, bytes]:
    """The ModelMeta and serialized engine of an ``.engine`` file: from its header, else from ``<engine>.json``.

    Raises:
        EdgesegError: neither a readable header nor a sidecar (a truncated or foreign file), or
            an unreadable sidecar.
    """
    path = Path(path)
    data = path.read_bytes()
    meta, problem = None, None
    if len(data) > HEADER.size:
        (length,) = HEADER.unpack_from(data)
        if 0 < length <= len(data) - HEADER.size:
            try:
                meta = header_meta(data[HEADER.size : HEADER.size + length].decode(), path)
            except (UnicodeDecodeError, ValueError, TypeError) as exc:
                problem = exc if data[HEADER.size : HEADER.size + 1] == b"{" else None
    if meta is not None:
        engine = data[HEADER.size + length :]
        if not engine:
            raise EdgesegError(f"{path}: truncated engine: the edgeseg header is followed by no engine bytes")
        return meta, engine
    sidecar = path.with_name(path.name + ".json")
    if problem is not None and not sidecar.is_file():
        raise EdgesegError(f"{path}: unusable edgeseg metadata header ({str(problem)[:160]})")
    if not sidecar.is_file():
        raise EdgesegError(
            f"{path}: no edgeseg metadata header (4-byte little-endian length + ModelMeta JSON) and no "
            f"{sidecar.name} sidecar: a truncated file or not an edgeseg engine"
        )
    try:
        return ModelMeta.from_json(sidecar.read_text()), data
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise EdgesegError(f"{sidecar}: unreadable ModelMeta JSON ({exc})") from None
