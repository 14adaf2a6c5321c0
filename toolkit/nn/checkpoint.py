"""Checkpoints: plain dicts of tensors and builtins, loaded with ``torch.load(weights_only=True)``.

No pickled classes: loading a checkpoint never runs code. Writes are atomic (temp file in
the same folder, fsync, rename), so an interrupted save never leaves a truncated file.
"""

import datetime
import hashlib
import pickle
import re
from pathlib import Path

import torch

from edgeseg.interop.torch_pickle import check_torch_zip
from edgeseg.models.config import validate_model_config
from edgeseg.runtimes.errors import EdgesegError, first_line
from edgeseg.runtimes.io.files import atomic_write
from edgeseg.runtimes.meta.limits import MAX_IMGSZ, MAX_NAME_CHARS
from edgeseg.runtimes.meta.model_meta import DEFAULT_IMGSZ
from edgeseg.runtimes.version import __version__

REQUIRED_KEYS = ("config", "state_dict", "names")
MAX_ITEMS = 2_000_000  # values in the loaded structure, shared ones counted at each use
MAX_DEPTH = 64  # nesting levels of containers
MAX_STRING_CHARS = 1 << 20  # characters of one string


def atomic_torch_save(obj: dict, path: str | Path) -> Path:
    """``torch.save`` through ``edgeseg.runtimes.io.files.atomic_write``: complete or untouched, never through a planted link."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def build_checkpoint(model, imgsz: int, **extra) -> dict:
    """The checkpoint dict for ``model`` (a SegmentationNet).

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
        "version": __version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint dict safely, with every size checked before it is allocated or expanded.

    Raises:
        EdgesegError: missing file, not a torch zip file, a compressed or oversized record, a
            pickle that would build arbitrary objects (refused by ``weights_only``), a tensor that
            claims more elements than its storage holds, more than ``MAX_ITEMS`` nested values
            (shared references counted at each use), or a dict without the edgeseg keys.
    """
    path = Path(path)
    check_torch_zip(path)
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
    except (RuntimeError, EOFError, OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise EdgesegError(f"{path}: not a readable checkpoint ({first_line(exc)})") from None
    problem = _walk_problem(ckpt)
    if problem:
        raise EdgesegError(f"{path}: not a usable checkpoint: {problem}")
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in REQUIRED_KEYS):
        found = sorted(str(k)[:40] for k in ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise EdgesegError(f"{path}: not an edgeseg checkpoint (expected keys {', '.join(REQUIRED_KEYS)}; found {found})")
    return ckpt


def _walk_problem(obj) -> str | None:
    """Why a loaded checkpoint cannot be used safely, or None.

    Visits every value (a shared list counts at each place it is used, as printing or saving
    it would expand it), at most ``MAX_ITEMS``; refuses tensors whose shape claims more bytes
    than their storage holds (a stride-0 view of GiBs over a few bytes).
    """
    stack, seen = [(obj, 0)], 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_ITEMS or depth > MAX_DEPTH:
            return f"more than {MAX_ITEMS} values or {MAX_DEPTH} levels of nesting"
        if isinstance(value, torch.Tensor):
            if value.numel() * value.element_size() > value.untyped_storage().nbytes():
                return f"a tensor of shape {tuple(value.shape)[:6]} claims more elements than its storage holds"
        elif isinstance(value, dict):
            stack.extend((v, depth + 1) for pair in value.items() for v in pair)
        elif isinstance(value, (list, tuple, set, frozenset)):
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, (str, bytes)) and len(value) > MAX_STRING_CHARS:
            return f"a string of {len(value)} characters (at most {MAX_STRING_CHARS})"
    return None


def checkpoint_parts(ckpt: dict, source: str) -> tuple[dict, dict[int, str], int]:
    """The validated ``(config, names, imgsz)`` of a loaded checkpoint dict.

    ``names`` may be stored as ``{id: name}`` (int or digit-string keys) or a list; ``imgsz``
    as an int (default 640 when absent).

    Raises:
        EdgesegError: a config that is not a valid model config, names that are not one
            string per class id 0..nc-1, or an imgsz that is not an int of 32..MAX_IMGSZ.
    """
    cfg = ckpt["config"]
    if not isinstance(cfg, dict):
        raise EdgesegError(f"{source}: the checkpoint's config is a {type(cfg).__name__}, not a model config mapping")
    cfg = dict(cfg)
    validate_model_config(cfg, source=source)
    names = _names(ckpt["names"], cfg["nc"], source)
    imgsz = ckpt.get("imgsz", DEFAULT_IMGSZ)
    if not (isinstance(imgsz, int) and not isinstance(imgsz, bool) and 32 <= imgsz <= MAX_IMGSZ):
        raise EdgesegError(f"{source}: imgsz {str(imgsz)[:40]} is not an integer from 32 to {MAX_IMGSZ}")
    return cfg, names, imgsz


def _names(raw, nc: int, source: str) -> dict[int, str]:
    """``{0: name, ..., nc - 1: name}`` from a stored dict or list, or EdgesegError naming the problem."""
    items = list(enumerate(raw)) if isinstance(raw, list) else list(raw.items()) if isinstance(raw, dict) else None
    if items is None:
        raise EdgesegError(f"{source}: class names are a {type(raw).__name__}, not a {{class id: name}} mapping or a list")
    keys_ok = all((isinstance(k, int) and not isinstance(k, bool)) or (isinstance(k, str) and k.isdigit()) for k, _ in items)
    if not keys_ok or not all(isinstance(v, str) and len(v) <= MAX_NAME_CHARS for _, v in items):
        raise EdgesegError(f"{source}: class names must map integer class ids to names of at most {MAX_NAME_CHARS} characters")
    names = {int(k): v for k, v in items}
    if sorted(names) != list(range(nc)) or len(items) != nc:
        raise EdgesegError(f"{source}: {len(items)} class names for nc={nc} (ids must be 0..{nc - 1}, each once)")
    return dict(sorted(names.items()))


def check_state_dict(state, shapes: dict[str, tuple], source: str) -> None:
    """Raise EdgesegError unless ``state`` holds exactly the tensors ``shapes`` names, with those shapes.

    Args:
        state: the checkpoint's state_dict.
        shapes: ``{parameter name: shape}`` of the architecture (``edgeseg.nn.net.check_architecture``).
        source: the file, for the message.
    """
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise EdgesegError(f"{source}: the state_dict is not a mapping of parameter names to tensors")
    missing, unexpected = sorted(set(shapes) - set(state)), sorted(set(state) - set(shapes))
    if missing or unexpected:
        raise EdgesegError(
            f"{source}: weights do not fit the architecture "
            f"({len(missing)} missing, {len(unexpected)} unexpected, e.g. {(missing + unexpected)[0][:80]})"
        )
    for name, shape in shapes.items():
        if tuple(state[name].shape) != tuple(shape):
            raise EdgesegError(
                f"{source}: weight {name} has shape {tuple(state[name].shape)}, the architecture needs {tuple(shape)}"
            )


def file_hash(path: str | Path, length: int = 16) -> str:
    """First ``length`` hex digits of the file's SHA-256 (identifies the source checkpoint of an export)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]
