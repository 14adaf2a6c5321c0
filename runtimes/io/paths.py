"""Output folder naming."""

from pathlib import Path

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.io.files import ensure_folder


def increment_path(path: str | Path, exist_ok: bool = False) -> Path:
    """``path`` if it does not exist (or ``exist_ok``), else ``path2``, ``path3``, … (the first free one).

    The returned folder is created, so two runs started together cannot pick the same one.

    Raises:
        EdgesegError: a part of the parent path is a file, or the folder cannot be created.
    """
    path = Path(path)
    if exist_ok:
        return ensure_folder(path)
    ensure_folder(path.parent)
    candidate, n = path, 2
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            candidate = path.with_name(f"{path.name}{n}")
            n += 1
        except OSError as exc:
            raise EdgesegError(f"{candidate}: cannot create this folder ({exc.strerror})") from None
