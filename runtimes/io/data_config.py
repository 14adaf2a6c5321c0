"""The data YAML of a YOLO-seg dataset (``path``, ``train``, ``val``, ``test``, ``names``) and its image lists."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from edgeseg.runtimes.errors import EdgesegError, os_reason, quoted
from edgeseg.runtimes.io.capped import FileLimitError, read_capped
from edgeseg.runtimes.io.yaml_safe import load_yaml

IMG_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
MAX_LIST_BYTES = 64 << 20  # bytes (64 MiB): a split's .txt image list (about a million paths)
_SPLITS = ("train", "val", "test")


class ImagePaths(list):
    """The image paths of a split: a plain list of str that also carries ``root``, the dataset root."""

    def __init__(self, paths, root: str | os.PathLike):
        super().__init__(paths)
        self.root = str(root)


def _user_path(spec: str | os.PathLike, base: Path, where: str) -> Path:
    """``spec`` with ``~`` expanded, relative to ``base`` unless absolute; EdgesegError (starting ``where``) if unusable."""
    try:
        p = Path(spec).expanduser()
    except RuntimeError:
        raise EdgesegError(f"{where} {quoted(str(spec))}: its home folder is unknown") from None
    if "\0" in str(p):
        raise EdgesegError(f"{where} {quoted(str(spec))}: contains a NUL character")
    return p if p.is_absolute() else base / p


def _kind(p: Path) -> str:
    """``"dir"``, ``"file"`` (a regular file), ``"other"``, or ``""`` when nothing usable is there (links followed)."""
    try:
        st = p.stat()
    except (OSError, ValueError):
        return ""
    return "dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "other"


def _resolve_split(spec, root: Path, yaml_file: Path, key: str) -> str | list[str]:
    """One split entry (a path or a list of paths, relative to ``root``) as absolute path string(s)."""
    entries = spec if isinstance(spec, list) else [spec]
    if not entries or not all(isinstance(e, (str, os.PathLike)) for e in entries):
        raise EdgesegError(f"{yaml_file}: '{key}' must be a path or a list of paths, got {quoted(spec)}")
    resolved = []
    for entry in entries:
        p = _user_path(entry, root, f"{yaml_file}: '{key}' path")
        if not _kind(p):
            raise EdgesegError(f"{yaml_file}: '{key}' path {p} does not exist")
        resolved.append(str(p))
    return resolved if isinstance(spec, list) else resolved[0]


def _normalise_names(names, nc, yaml_file: Path) -> dict[int, str]:
    """``names`` as a list or {int: str} dict -> {0: name0, 1: name1, ...}, checked against ``nc``."""
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise EdgesegError(f"{yaml_file}: 'names' is missing or empty (give a list or a {{id: name}} mapping)")
    if not all(isinstance(v, (str, int, float)) for v in names.values()):
        raise EdgesegError(f"{yaml_file}: 'names' values must be plain names (text or numbers)")
    try:
        out = {int(k): str(v) for k, v in names.items()}
    except (TypeError, ValueError, OverflowError):
        raise EdgesegError(f"{yaml_file}: 'names' keys must be integer class ids") from None
    if sorted(out) != list(range(len(out))):
        raise EdgesegError(f"{yaml_file}: 'names' ids must be 0..{len(out) - 1}, got {quoted(sorted(out))}")
    if nc is not None and nc != len(out):
        raise EdgesegError(f"{yaml_file}: nc={nc} but 'names' has {len(out)} classes")
    return dict(sorted(out.items()))


def load_data_config(path: str | os.PathLike) -> dict:
    """Read and check a data YAML (through ``edgeseg.runtimes.io.yaml_safe.load_yaml``: at most 1 MiB, no alias bombs).

    Args:
        path: the YAML file.

    Returns:
        The YAML's mapping with, resolved: ``path`` (absolute dataset root: the YAML's ``path``
        relative to the YAML's folder, or that folder when absent), ``train``/``val``/``test``
        (absolute path strings, or lists of them, as written), ``names`` ({int: str}), ``nc``
        (int) and ``yaml_file`` (absolute path of the YAML).

    Raises:
        EdgesegError: naming the YAML, when it is missing, unreadable or over a limit of
            ``edgeseg.runtimes.io.yaml_safe``, lacks ``train``/``val``, a path is not a string or does not
            exist, ``names`` is missing/empty, or ``nc`` disagrees with it.
    """
    yaml_file = Path(os.path.realpath(_user_path(path, Path.cwd(), "data YAML")))
    if _kind(yaml_file) != "file":
        raise EdgesegError(f"{yaml_file}: data YAML not found")
    cfg = load_yaml(yaml_file)
    if not isinstance(cfg, dict):
        raise EdgesegError(f"{yaml_file}: expected a mapping with 'train', 'val' and 'names'")
    for key in ("train", "val"):
        if cfg.get(key) is None:
            raise EdgesegError(f"{yaml_file}: missing '{key}' key")
    if not isinstance(cfg.get("path") or ".", (str, os.PathLike)):
        raise EdgesegError(f"{yaml_file}: 'path' must be a folder path, got {quoted(cfg['path'])}")
    root = Path(os.path.realpath(_user_path(cfg.get("path") or ".", yaml_file.parent, f"{yaml_file}: 'path'")))
    if _kind(root) != "dir":
        raise EdgesegError(f"{yaml_file}: dataset root 'path' {root} is not a folder")
    out = dict(cfg)
    out["path"] = str(root)
    for key in _SPLITS:
        if cfg.get(key) is not None:
            out[key] = _resolve_split(cfg[key], root, yaml_file, key)
    nc = cfg.get("nc")
    if nc is not None and (not isinstance(nc, int) or isinstance(nc, bool)):
        raise EdgesegError(f"{yaml_file}: 'nc' must be an integer, got {quoted(nc)}")
    out["names"] = _normalise_names(cfg.get("names"), nc, yaml_file)
    out["nc"] = len(out["names"])
    out["yaml_file"] = str(yaml_file)
    return out


def _folder_images(folder: Path) -> set[str]:
    """Every entry under ``folder`` (searched recursively, folder links not followed) with an image suffix.

    Entries that are not readable files (dangling or looping links, folders named ``x.jpg``)
    are kept: the label scan counts each as a corrupt image, naming it.
    """
    return {str(f) for f in folder.rglob("*") if f.suffix.lower() in IMG_SUFFIXES}


def _listed_images(list_file: Path) -> set[str]:
    """The paths a ``.txt`` list names, one per line; relative ones are relative to its folder, with links resolved.

    Raises:
        EdgesegError: the list is larger than MAX_LIST_BYTES, not UTF-8, or a line holds a NUL character.
    """
    try:
        text = read_capped(list_file, MAX_LIST_BYTES).decode("utf-8")
    except FileLimitError as e:
        raise EdgesegError(f"{list_file}: image list refused: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EdgesegError(f"{list_file}: image list cannot be read ({os_reason(e)})") from None
    files = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        if line := line.strip():
            f = _user_path(line, list_file.parent, f"{list_file}: line {lineno}")
            files.add(str(f) if os.path.isabs(os.path.expanduser(line)) else os.path.realpath(f))
    return files


def img_paths(split_spec: str | os.PathLike | list, root: str | os.PathLike) -> ImagePaths:
    """The sorted image files of one split.

    Args:
        split_spec: a folder (searched recursively), an image file, a ``.txt`` file listing one
            image per line (relative lines are relative to the ``.txt``'s folder, which covers
            Ultralytics' ``./images/...`` convention; at most MAX_LIST_BYTES), or a list of these.
            Relative specs are relative to ``root``.
        root: the dataset root (``load_data_config(...)["path"]``).

    Returns:
        Sorted, de-duplicated path strings whose suffix is in :data:`IMG_SUFFIXES`
        (case-insensitive), as an :class:`ImagePaths` carrying ``root`` (the label scan writes
        its cache only inside it). In a folder, unreadable entries with an image suffix are
        listed too, so the scan counts them.

    Raises:
        EdgesegError: a spec path does not exist, a list is unreadable, or no image is found.
    """
    specs = split_spec if isinstance(split_spec, list) else [split_spec]
    files: set[str] = set()
    for spec in specs:
        p = _user_path(spec, Path(root), "split path")
        kind = _kind(p)
        if kind == "dir":
            files |= _folder_images(p)
        elif kind == "file" and p.suffix.lower() == ".txt":
            files |= _listed_images(p)
        elif kind:
            files.add(str(p))
        else:
            raise EdgesegError(f"{p}: split path does not exist")
    images = sorted(f for f in files if Path(f).suffix.lower() in IMG_SUFFIXES)
    if not images:
        raise EdgesegError(f"{', '.join(str(s) for s in specs)}: no images found (suffixes {sorted(IMG_SUFFIXES)})")
    return ImagePaths(images, root)


def label_path(img_path: str | os.PathLike) -> str:
    """The label file of an image: the last ``/images/`` component becomes ``/labels/`` and the suffix ``.txt``.

    Ultralytics' rule, so ``ds/images/train/a.jpg`` -> ``ds/labels/train/a.txt``; an image outside
    any ``images`` folder gets its label beside it.
    """
    s = str(img_path)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    s = sb.join(s.rsplit(sa, 1))
    return str(Path(s).with_suffix(".txt"))
