"""Bounded reading: open or read a user's file only when it is a regular file within a size limit.

The one home of the checks every reader of user files makes before reading (images, labels,
data YAMLs, COCO JSON): a FIFO, device or folder is refused instead of blocking or running on,
and the size is checked on the opened descriptor, so it applies to the file actually read.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from edgeseg.runtimes.errors import os_reason


class FileLimitError(ValueError):
    """A file refused before it is read: not a regular file, or over a size limit (the message omits the path)."""


def open_capped(path: str | os.PathLike, max_bytes: int) -> tuple[BinaryIO, int]:
    """Open a regular file of at most ``max_bytes`` bytes for reading; return it and its size in bytes.

    The open does not block (a FIFO is refused instead of waiting for a writer) and the checks
    use ``fstat`` on the opened descriptor, so they apply to the file actually read. Symbolic
    links are followed (reading through a link is harmless). The caller closes the file.

    Raises:
        OSError: the file cannot be opened (ValueError for a path with a NUL character).
        FileLimitError: a folder, FIFO, device or socket, or a file larger than ``max_bytes``.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileLimitError("not a regular file")
        if st.st_size > max_bytes:
            raise FileLimitError(f"{st.st_size:,} bytes, more than the {max_bytes:,}-byte limit")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb"), st.st_size


def open_user_file(path: str | os.PathLike, max_bytes: int, what: str = "file") -> tuple[BinaryIO, int]:
    """:func:`open_capped`, with every refusal one FileLimitError whose message starts with ``what``.

    Messages: ``"<what> is not a regular file"``, ``"<what> is 9,000 bytes, more than the
    8,000-byte limit"``, ``"<what> cannot be opened (No such file or directory)"``; the caller adds
    the path.
    """
    try:
        return open_capped(path, max_bytes)
    except FileLimitError as e:
        raise FileLimitError(f"{what} is {e}") from None
    except (OSError, ValueError) as e:
        raise FileLimitError(f"{what} cannot be opened ({os_reason(e)})") from None


def read_capped(path: str | os.PathLike, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` bytes (:func:`open_capped`), checked before reading.

    At most ``max_bytes + 1`` bytes are read, so a file that grows after the check is refused too.

    Raises:
        OSError: the file cannot be opened or read.
        FileLimitError: see :func:`open_capped`.
    """
    f, _ = open_capped(path, max_bytes)
    with f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileLimitError(f"grew past the {max_bytes:,}-byte limit while being read")
    return data
