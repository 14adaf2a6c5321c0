"""The ``.tflite`` file: its ``metadata`` entries, the plain keys appended after it, its operator codes, its ModelMeta.

``read_metadata`` and ``operator_names`` are a dependency-free flatbuffer reader (just enough of
the format), so the export can check a file's operators and the backend read its ModelMeta before
any interpreter is loaded.
"""

import dataclasses
import io
import json
import logging
import struct
import zipfile

import numpy as np

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.meta.limits import MAX_METADATA_BYTES
from edgeseg.runtimes.meta.model_meta import META_KEY, ModelMeta
from edgeseg.runtimes.meta.plain_keys import meta_from_map

LOGGER = logging.getLogger("edgeseg")

IDENTIFIER = b"TFL3"  # the TFLite flatbuffer file identifier, bytes 4-8
# Model table field ids (tensorflow/compiler/mlir/lite/schema/schema.fbs)
_OPERATOR_CODES, _BUFFERS, _METADATA = 1, 4, 6


class _Table:
    """A flatbuffer table at ``pos`` in ``buf``: just enough of the format to read TFLite metadata and op codes."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vtable_size = struct.unpack_from("<H", buf, self.vtable)[0]

    def _field(self, index: int) -> int:
        """Absolute position of field ``index``, or 0 when it is absent."""
        entry = 4 + 2 * index
        if entry >= self.vtable_size:
            return 0
        offset = struct.unpack_from("<H", self.buf, self.vtable + entry)[0]
        return self.pos + offset if offset else 0

    def scalar(self, index: int, fmt: str, default=0):
        """A scalar field (struct format ``fmt``), or ``default``."""
        at = self._field(index)
        return struct.unpack_from("<" + fmt, self.buf, at)[0] if at else default

    def _deref(self, index: int) -> int:
        """Target position of an offset field, or 0."""
        at = self._field(index)
        return at + struct.unpack_from("<I", self.buf, at)[0] if at else 0

    def string(self, index: int) -> str | None:
        """A string field, or None."""
        at = self._deref(index)
        if not at:
            return None
        size = struct.unpack_from("<I", self.buf, at)[0]
        return self.buf[at + 4 : at + 4 + size].decode("utf-8", "replace")

    def bytes_vector(self, index: int) -> bytes:
        """A ``[ubyte]`` field (empty when absent)."""
        at = self._deref(index)
        if not at:
            return b""
        size = struct.unpack_from("<I", self.buf, at)[0]
        return bytes(self.buf[at + 4 : at + 4 + size])

    def tables(self, index: int) -> list["_Table"]:
        """A vector-of-tables field (empty when absent)."""
        at = self._deref(index)
        if not at:
            return []
        size = struct.unpack_from("<I", self.buf, at)[0]
        items = (at + 4 + 4 * i for i in range(size))
        return [_Table(self.buf, p + struct.unpack_from("<I", self.buf, p)[0]) for p in items]


def _model(buf: bytes) -> _Table:
    """The root Model table of a TFLite flatbuffer.

    Raises:
        ValueError: not a TFLite flatbuffer.
    """
    if len(buf) < 8 or buf[4:8] != IDENTIFIER:
        raise ValueError("no TFL3 flatbuffer identifier")
    try:
        return _Table(buf, struct.unpack_from("<I", buf, 0)[0])
    except struct.error:
        raise ValueError("truncated flatbuffer") from None


def read_metadata(buf: bytes) -> dict[str, bytes]:
    """The ``{name: buffer bytes}`` entries of a TFLite flatbuffer's ``metadata`` vector.

    Raises:
        ValueError: not a readable TFLite flatbuffer.
    """
    model = _model(buf)
    try:
        buffers = model.tables(_BUFFERS)
        entries = {}
        for meta in model.tables(_METADATA):
            index = meta.scalar(1, "I")
            buffer = buffers[index]
            offset, size = buffer.scalar(1, "Q"), buffer.scalar(2, "Q")
            entries[meta.string(0) or ""] = bytes(buf[offset : offset + size]) if offset > 1 else buffer.bytes_vector(0)
        return entries
    except (struct.error, IndexError):
        raise ValueError("corrupt metadata in the flatbuffer") from None


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


def operator_names(buf: bytes) -> list[str]:
    """The operator codes a TFLite flatbuffer uses: builtin op numbers as ``builtin:<n>``, custom ops by name.

    A Flex (Select TensorFlow) op is a custom op whose name starts with ``Flex``.

    Raises:
        ValueError: not a readable TFLite flatbuffer.
    """
    names = []
    try:
        for code in _model(buf).tables(_OPERATOR_CODES):
            custom = code.string(1)
            builtin = max(code.scalar(0, "b"), code.scalar(3, "i"))
            names.append(custom if custom is not None else f"builtin:{builtin}")
    except struct.error:
        raise ValueError("corrupt operator codes in the flatbuffer") from None
    return names


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
