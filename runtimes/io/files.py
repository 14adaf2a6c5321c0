"""Writes that never leave a partial file, never follow a planted link, and clean up after a killed run.

Every file edgeseg writes in place (checkpoints, caches, CSVs, reports) goes through
:func:`atomic_write`: a new file with a random name in the destination folder, opened with
``O_EXCL`` (so an existing file or symbolic link of that name is never opened), written, synced,
given the permissions of a plain ``open`` under the current umask, then renamed over the
destination (``rename`` replaces a link itself, never its target). Temporary names carry the
writer's process id, ``.<name>.<pid>.<random>[.tmp]``; :func:`remove_stale` deletes those of
processes that no longer run (a SIGKILL's leftovers) the next time the same destination is written.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from edgeseg.runtimes.errors import EdgesegError

LOGGER = logging.getLogger("edgeseg")

_STAGED = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]{8}(\.tmp)?$")


def file_mode() -> int:
    """The permission bits ``open(path, "w")`` would give a new file under the current umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def staging_prefix(dest: Path) -> str:
    """``.<dest name>.<pid>.``: the start of this process's temporary names for ``dest``."""
    return f".{dest.name}.{os.getpid()}."


def _process_alive(pid: int) -> bool:
    """True when a process with this id exists (ours, or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(dest: Path) -> int:
    """Delete temporary files and staging folders of ``dest`` left by processes that no longer run.

    Returns:
        How many were removed (each is logged).
    """
    folder = dest.parent
    if not folder.is_dir():
        return 0
    removed = 0
    for entry in folder.iterdir():
        match = _STAGED.match(entry.name)
        if not match or match["name"] != dest.name or _process_alive(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        LOGGER.info(f"{entry}: removed, left by an interrupted run (process {match['pid']})")
        removed += 1
    return removed


def ensure_folder(folder: Path) -> Path:
    """Create ``folder`` and its parents.

    Raises:
        EdgesegError: a part of the path is a file, or the folder cannot be created.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise EdgesegError(f"{folder}: exists and is not a folder") from None
    except NotADirectoryError:
        raise EdgesegError(f"{folder}: a part of this path is a file, not a folder") from None
    except OSError as exc:
        raise EdgesegError(f"{folder}: cannot create this folder ({exc.strerror})") from None
    return folder


def atomic_write(path: str | Path, write: Callable, binary: bool = True, bulk: bool = False) -> Path:
    """Write ``path`` through a private temporary file in its folder, then rename it into place.

    Args:
        path: the destination; its folder is created. An existing symbolic link at ``path`` is
            replaced by the new file (its target is left alone).
        write: called with the open temporary file (binary, or text in UTF-8 when ``binary`` is False).
        binary: open mode of the temporary file.
        bulk: one of many files a run writes into a folder (a dataset conversion): no fsync (a
            rerun rewrites the output) and no sweep of stale temporaries, which would read the
            folder once per file.

    Returns:
        ``path``, holding the complete new contents with ``file_mode()`` permissions; on any
        exception (KeyboardInterrupt included) the temporary file is removed and ``path`` is unchanged.

    Raises:
        EdgesegError: ``path`` is an existing folder, or its folder cannot be created.
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise EdgesegError(f"{path}: is a folder; give a file path")
    ensure_folder(path.parent)
    if not bulk:
        remove_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=staging_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as f:
            write(f)
            if not bulk:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """``atomic_write`` of a UTF-8 text."""
    return atomic_write(path, lambda f: f.write(text), binary=False)


def staging_folder(dest: Path) -> Path:
    """A new private folder ``.<dest name>.<pid>.<random>`` beside ``dest`` (stale ones removed first)."""
    ensure_folder(dest.parent)
    remove_stale(dest)
    return Path(tempfile.mkdtemp(prefix=staging_prefix(dest), dir=dest.parent))
