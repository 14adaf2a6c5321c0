"""The ``.tflite`` file's ModelMeta: edgeseg's metadata entry, else the plain keys appended after it, else the layout.

The flatbuffer itself is read by ``tflite_flatbuffer`` (no interpreter needed).
"""

import dataclasses
import io
import json
import logging
import zipfile

import numpy as np

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.limits import MAX_METADATA_BYTES
from edgeseg.runtimes.meta.model_meta import META_KEY, ModelMeta
from edgeseg.runtimes.meta.plain_keys import meta_from_map

LOGGER = logging.getLogger("edgeseg")

def appended_metadata(buf: bytes) -> dict:
    """The plain keys of the ``metadata.json`` in a zip appended after the flatbuffer (Ultralytics' place), or ``{}``.

    Raises:
        ValueError: an appended ``metadata.json`` larger than ``MAX_METADATA_BYTES`` or not a JSON object.
    """
    stream = io.BytesIO(buf)
    if not zipfile.is_zipfile(stream):
        return {}
    try:
        with zipfile.ZipFile(stream) as archive:
            info = archive.getinfo("metadata.json")
            if info.file_size > MAX_METADATA_BYTES:
                raise ValueError(f"an appended metadata.json of {info.file_size} bytes (at most {MAX_METADATA_BYTES})")
            values = json.loads(archive.read(info))
    except KeyError:
        return {}
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, NotImplementedError) as exc:
        raise ValueError(f"an unreadable appended metadata.json ({exc})") from None
    if not isinstance(values, dict):
        raise ValueError("the appended metadata.json is not a JSON object")
    return values


def describe_tensors(details: list[dict]) -> str:
    """``name [shape] dtype, ...`` of interpreter tensor details, for messages."""
    return ", ".join(f"{d['name']} {list(d['shape'])} {np.dtype(d['dtype']).name}" for d in details)


def file_meta(entries: dict[str, bytes], data: bytes, outputs: list[dict], imgsz: tuple[int, int], path) -> ModelMeta:
    """The ModelMeta of a ``.tflite`` file: its embedded one; else, for the two-output layout, one from the plain keys
    of its appended ``metadata.json`` (an Ultralytics export: names, size, boxes in 0–1 of the input) or from the
    layout alone (names = class ids).

    Args:
        entries: ``read_metadata(data)``; data: the file's bytes.
        outputs: the interpreter's output details; imgsz: the input's (height, width); path: for messages.

    Raises:
        EdgesegError: unreadable metadata, or no metadata and not the layout.
    """
    own = meta_from_map(entries, path)
    if own is not None:
        return own
    ranks = sorted(len(o["shape"]) for o in outputs)
    if ranks != [3, 4]:
        raise EdgesegError(f"{path}: no '{META_KEY}' metadata and outputs not in the YOLO-seg layout: {describe_tensors(outputs)}")
    preds, protos = sorted(outputs, key=lambda o: len(o["shape"]))
    nm = int(min(protos["shape"][1], protos["shape"][3]))
    nc = int(min(preds["shape"][1:])) - 4 - nm
    tensors = {"preds": preds["name"], "protos": protos["name"]}
    try:
        plain = appended_metadata(data)
    except ValueError as exc:
        raise EdgesegError(f"{path}: unreadable plain metadata ({exc})") from None
    meta = meta_from_map(plain, path)
    if meta is not None:
        if meta.nc != nc:
            raise EdgesegError(f"{path}: metadata names {meta.nc} classes but the outputs hold {nc}: {describe_tensors(outputs)}")
        return dataclasses.replace(meta, nm=nm, extra={"tensors": tensors, "boxes": "normalized"})
    LOGGER.warning(f"{path}: no '{META_KEY}' metadata; using the output layout (nc={nc}, names = class ids)")
    return ModelMeta(names={i: str(i) for i in range(nc)}, imgsz=imgsz, nm=nm, extra={"tensors": tensors})
