"""Output folder naming."""

from pathlib import Path


def increment_path(path: str | Path, exist_ok: bool = False) -> Path:
    """``path`` if it does not exist (or ``exist_ok``), else ``path2``, ``path3``, … (the first free one).

    The returned folder is created, so two runs started together cannot pick the same one.
    """
    path = Path(path)
    if exist_ok:
        path.mkdir(parents=True, exist_ok=True)
        return path
    candidate, n = path, 2
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            candidate = path.with_name(f"{path.name}{n}")
            n += 1
