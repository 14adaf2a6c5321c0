"""The data YAML of a YOLO-seg dataset (``path``, ``train``, ``val``, ``test``, ``names``) and its image lists."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from edgeseg.errors import EdgesegError

IMG_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

_SPLITS = ("train", "val", "test")


def _resolve_split(spec, root: Path, yaml_file: Path, key: str) -> str | list[str]:
    """One split entry (a path or a list of paths, relative to ``root``) as absolute path string(s)."""
    entries = spec if isinstance(spec, list) else [spec]
    if not entries or not all(isinstance(e, (str, os.PathLike)) for e in entries):
        raise EdgesegError(f"{yaml_file}: '{key}' must be a path or a list of paths, got {spec!r}")
    resolved = []
    for entry in entries:
        p = Path(entry).expanduser()
        p = p if p.is_absolute() else root / p
        if not p.exists():
            raise EdgesegError(f"{yaml_file}: '{key}' path {p} does not exist")
        resolved.append(str(p))
    return resolved if isinstance(spec, list) else resolved[0]


def _normalise_names(names, nc, yaml_file: Path) -> dict[int, str]:
    """``names`` as a list or {int: str} dict -> {0: name0, 1: name1, ...}, checked against ``nc``."""
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise EdgesegError(f"{yaml_file}: 'names' is missing or empty (give a list or a {{id: name}} mapping)")
    try:
        out = {int(k): str(v) for k, v in names.items()}
    except (TypeError, ValueError):
        raise EdgesegError(f"{yaml_file}: 'names' keys must be integer class ids") from None
    if sorted(out) != list(range(len(out))):
        raise EdgesegError(f"{yaml_file}: 'names' ids must be 0..{len(out) - 1}, got {sorted(out)}")
    if nc is not None and nc != len(out):
        raise EdgesegError(f"{yaml_file}: nc={nc} but 'names' has {len(out)} classes")
    return dict(sorted(out.items()))


def load_data_config(path: str | os.PathLike) -> dict:
    """Read and check a data YAML.

    Args:
        path: the YAML file.

    Returns:
        The YAML's mapping with, resolved: ``path`` (absolute dataset root: the YAML's ``path``
        relative to the YAML's folder, or that folder when absent), ``train``/``val``/``test``
        (absolute path strings, or lists of them, as written), ``names`` ({int: str}), ``nc``
        (int) and ``yaml_file`` (absolute path of the YAML).

    Raises:
        EdgesegError: naming the YAML, when it is missing or unreadable, lacks ``train``/``val``,
            a split path does not exist, ``names`` is missing/empty, or ``nc`` disagrees with it.
    """
    yaml_file = Path(path).expanduser().resolve()
    if not yaml_file.is_file():
        raise EdgesegError(f"{yaml_file}: data YAML not found")
    try:
        cfg = yaml.safe_load(yaml_file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise EdgesegError(f"{yaml_file}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(cfg, dict):
        raise EdgesegError(f"{yaml_file}: expected a mapping with 'train', 'val' and 'names'")
    for key in ("train", "val"):
        if cfg.get(key) is None:
            raise EdgesegError(f"{yaml_file}: missing '{key}' key")
    root = Path(cfg.get("path") or ".").expanduser()
    root = (root if root.is_absolute() else yaml_file.parent / root).resolve()
    if not root.is_dir():
        raise EdgesegError(f"{yaml_file}: dataset root 'path' {root} is not a folder")
    out = dict(cfg)
    out["path"] = str(root)
    for key in _SPLITS:
        if cfg.get(key) is not None:
            out[key] = _resolve_split(cfg[key], root, yaml_file, key)
    nc = cfg.get("nc")
    if nc is not None and (not isinstance(nc, int) or isinstance(nc, bool)):
        raise EdgesegError(f"{yaml_file}: 'nc' must be an integer, got {nc!r}")
    out["names"] = _normalise_names(cfg.get("names"), nc, yaml_file)
    out["nc"] = len(out["names"])
    out["yaml_file"] = str(yaml_file)
    return out


def img_paths(split_spec: str | os.PathLike | list, root: str | os.PathLike) -> list[str]:
    """The sorted image files of one split.

    Args:
        split_spec: a folder (searched recursively), an image file, a ``.txt`` file listing one
            image per line (relative lines are relative to the ``.txt``'s folder, which covers
            Ultralytics' ``./images/...`` convention), or a list of these. Relative specs are
            relative to ``root``.
        root: the dataset root (``load_data_config(...)["path"]``).

    Returns:
        Sorted, de-duplicated path strings of files whose suffix is in :data:`IMG_SUFFIXES`
        (case-insensitive).

    Raises:
        EdgesegError: a spec path does not exist, or no image is found.
    """
    specs = split_spec if isinstance(split_spec, list) else [split_spec]
    files: set[str] = set()
    for spec in specs:
        p = Path(spec).expanduser()
        p = p if p.is_absolute() else Path(root) / p
        if p.is_dir():
            files.update(str(f) for f in p.rglob("*") if f.suffix.lower() in IMG_SUFFIXES and f.is_file())
        elif p.is_file() and p.suffix.lower() == ".txt":
            for line in p.read_text(encoding="utf-8").splitlines():
                line = line.strip()
                if line:
                    f = Path(line).expanduser()
                    files.add(str(f if f.is_absolute() else (p.parent / f).resolve()))
        elif p.is_file():
            files.add(str(p))
        else:
            raise EdgesegError(f"{p}: split path does not exist")
    images = sorted(f for f in files if Path(f).suffix.lower() in IMG_SUFFIXES)
    if not images:
        raise EdgesegError(f"{', '.join(str(s) for s in specs)}: no images found (suffixes {sorted(IMG_SUFFIXES)})")
    return images


def label_path(img_path: str | os.PathLike) -> str:
    """The label file of an image: the last ``/images/`` component becomes ``/labels/`` and the suffix ``.txt``.

    Ultralytics' rule, so ``ds/images/train/a.jpg`` -> ``ds/labels/train/a.txt``; an image outside
    any ``images`` folder gets its label beside it.
    """
    s = str(img_path)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    s = sb.join(s.rsplit(sa, 1))
    return str(Path(s).with_suffix(".txt"))
