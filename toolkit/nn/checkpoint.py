"""Checkpoints: plain dicts of tensors and builtins, loaded with ``torch.load(weights_only=True)``.

No pickled classes: loading a checkpoint never runs code. Writes are atomic (temp file in
the same folder, fsync, rename), so an interrupted save never leaves a truncated file.
"""

import datetime
import hashlib
import os
import pickle
import re
import tempfile
from pathlib import Path

import torch

import edgeseg
from edgeseg.errors import EdgesegError

REQUIRED_KEYS = ("config", "state_dict", "names")


def atomic_torch_save(obj: dict, path: str | Path) -> Path:
    """``torch.save`` to a temp file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def build_checkpoint(model, imgsz: int, **extra) -> dict:
    """The checkpoint dict for ``model`` (a SegmentationModel).

    Args:
        model: the network whose ``state_dict`` (float32, on CPU) is stored.
        imgsz: the square input size in pixels the model is meant for.
        extra: more keys (``train_args``, ``epoch``, ``best_fitness``, ``metrics``,
            ``optimizer``, ``ema`` …), stored as given.
    """
    state = {k: v.detach().float().cpu() if v.is_floating_point() else v.detach().cpu() for k, v in model.state_dict().items()}
    return {
        "config": model.yaml,
        "state_dict": state,
        "names": {int(k): str(v) for k, v in model.names.items()},
        "imgsz": int(imgsz),
        "stride": [int(s) for s in model.stride.tolist()],
        "version": edgeseg.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint dict safely.

    Raises:
        EdgesegError: missing file, not a torch file, a pickle that would build arbitrary
            objects (refused by ``weights_only``), or a dict without the edgeseg keys.
    """
    path = Path(path)
    if not path.is_file():
        raise EdgesegError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        blocked = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if blocked:
            raise EdgesegError(
                f"{path}: refused to load: the file would construct {blocked.group(1)}; "
                "edgeseg checkpoints are plain dicts of tensors (use `edgeseg import` for Ultralytics files)"
            ) from None
        raise EdgesegError(f"{path}: not a readable checkpoint (corrupt or not a torch file)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise EdgesegError(f"{path}: not a readable checkpoint ({_first_line(exc)})") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        found = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise EdgesegError(f"{path}: not an edgeseg checkpoint (expected keys {', '.join(REQUIRED_KEYS)}; found {found})")
    return ckpt


def file_hash(path: str | Path, length: int = 16) -> str:
    """First ``length`` hex digits of the file's SHA-256 (identifies the source checkpoint of an export)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
