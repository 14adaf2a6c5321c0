"""A dependency-free reader of the TFLite flatbuffer (just enough of the format): its ``metadata`` entries and operator codes.

The export checks a file's operators, and the backend reads its ModelMeta, before any
interpreter is loaded.
"""

import struct

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
