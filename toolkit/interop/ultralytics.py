"""Import Ultralytics YOLOv8-seg, YOLO11-seg and YOLO26-seg checkpoints (``yolo26n-seg.pt`` …) without running their code.

The checkpoint's pickle is read by ``edgeseg.interop.torch_pickle.load_restricted``: Ultralytics
and ``torch.nn`` objects arrive as inert stand-ins, tensors as views checked against their
storage, and anything that would run code is refused. This module turns that into an edgeseg
checkpoint: every walk over the unpickled values (``train_args``, ``names``, the model YAML, the
module tree) visits at most :data:`MAX_VALUES` values, shared ones counted at each use, with
strings of at most :data:`MAX_STRING_CHARS` characters; the weights are collected from the
stand-in module tree (each object's ``_parameters``, persistent ``_buffers`` and ``_modules``,
under the key paths ``Module.state_dict`` gives, which are edgeseg's own parameter names) and the
architecture from the embedded ``model.yaml``. ``edgeseg.nn.network.load_network`` opens such a file
through it, and ``import_ultralytics`` there writes it as an edgeseg checkpoint.
"""

from __future__ import annotations

import datetime
import zipfile
import zlib
from pathlib import Path

import torch

from edgeseg.interop.torch_pickle import (
    MAX_PICKLE_BYTES,
    READ_ERRORS,
    Refused,
    StandIn,
    Unreadable,
    Unsafe,
    data_pkl,
    describe,
    iter_globals,
    load_restricted,
    read_error,
)
from edgeseg.models.config import HEAD_MODULES, KNOWN_MODULES, scale_from_name, validate_model_config
from edgeseg.runtimes.errors import EdgesegError, safe_repr
from edgeseg.runtimes.meta.limits import MAX_IMGSZ, MAX_NAME_CHARS
from edgeseg.runtimes.meta.model_meta import DEFAULT_IMGSZ

SEGMENTATION_MODEL = "ultralytics.nn.tasks.SegmentationModel"
FAMILIES = "YOLOv8-seg, YOLO11-seg and YOLO26-seg"  # what edgeseg imports, for messages
MAX_VALUES = 100_000  # values one walk over the unpickled data visits, shared ones counted at each use
MAX_STRING_CHARS = 1_000_000  # characters of one string
MAX_TEXT_CHARS = 10_000_000  # characters of all strings one walk visits
_MAX_DEPTH = 64  # nesting levels of modules / containers; deeper is treated as a malformed file

_HEADS = {
    "Detect": "a detection-only model (head Detect, not Segment)",
    "Pose": "a pose model (head Pose, not Segment)",
    "OBB": "an oriented-box model (head OBB, not Segment)",
    "Classify": "a classification model (head Classify, not Segment)",
}
_CONFIG_KEYS = ("nc", "scales", "scale", "backbone", "head", "end2end", "reg_max")
_IGNORED_YAML_KEYS = {"yaml_file", "ch", "channels"}  # the file name it came from; input channels (checked: 3)
_STR_TYPES = (bytes, datetime.date, datetime.timedelta, datetime.tzinfo, torch.device)  # _plain keeps their str


def is_ultralytics_checkpoint(path: str | Path) -> bool:
    """True when ``path`` is a torch zip whose pickle names ``ultralytics.*`` classes (read, never unpickled).

    At most :data:`MAX_PICKLE_BYTES` of ``data.pkl`` are read, so an oversized one is still
    recognised (and then refused by :func:`load_restricted`).
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{data_pkl(archive, path)}data.pkl") as f:
            data = f.read(MAX_PICKLE_BYTES)
        return any(name.split(".")[0] == "ultralytics" for name in iter_globals(data))
    except (OSError, zipfile.BadZipFile, zlib.error, KeyError, ValueError, EOFError, NotImplementedError, EdgesegError):
        return False


class _Budget:
    """What one walk over unpickled values may still visit: values (shared ones counted at each use) and characters.

    Args:
        what: the walked value's name, for the error message (``train_args``, ``model.yaml`` …).
    """

    def __init__(self, what: str):
        self.what, self.values, self.chars = what, MAX_VALUES, MAX_TEXT_CHARS

    def visit(self, value) -> None:
        """Count ``value`` (and its characters when it is a string); raise Unsafe past a limit."""
        self.values -= 1
        if isinstance(value, (str, bytes)):
            if len(value) > MAX_STRING_CHARS:
                raise Unsafe(f"{self.what} holds a string of {len(value):,} characters (at most {MAX_STRING_CHARS:,})")
            self.chars -= len(value)
        if self.values < 0 or self.chars < 0:
            raise Unsafe(
                f"{self.what} holds more than {MAX_VALUES:,} values or {MAX_TEXT_CHARS:,} characters "
                "(shared values counted at each use)"
            )


def _plain(value, budget: _Budget, depth: int = 0):
    """``value`` rebuilt from builtins (dict, list, str, int, float, bool, None), loadable with ``weights_only``.

    Stand-in objects (namespaces) become dicts of their public attributes, tuples and sets
    lists, one-element tensors numbers, other tensors a description of their shape, anything
    else its ``str``. Every value visited is counted by ``budget``.
    """
    budget.visit(value)
    if depth > _MAX_DEPTH:
        raise Unreadable(f"{budget.what}: containers nested deeper than {_MAX_DEPTH} levels")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        raise Unsafe(f"{budget.what} holds an integer of {value.bit_length()} bits")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, StandIn):
        value = {k: v for k, v in vars(value).items() if isinstance(k, str) and not k.startswith("_")}
    if isinstance(value, dict):
        return {_plain_key(k, budget): _plain(v, budget, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v, budget, depth + 1) for v in value]
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else f"tensor of shape {list(value.shape)}"
    text = str(value) if isinstance(value, _STR_TYPES) else describe(value)
    budget.visit(text)
    return text


def _plain_key(key, budget: _Budget):
    """A dict key for :func:`_plain`: str and int keys as they are, others as their ``str``."""
    budget.visit(key)
    if isinstance(key, (str, int)):
        return key
    text = str(key)
    budget.visit(text)
    return text


def _collect_state(module: StandIn, prefix: str, state: dict, budget: _Budget, owners: dict | None = None) -> None:
    """Add ``module``'s ``state_dict()`` entries under ``prefix``: parameters, persistent buffers, then children.

    ``owners``, when given, gets ``{parameter key: its module's pickled class name}`` for every
    parameter, in ``named_modules`` / ``named_parameters`` order.
    """
    budget.visit(prefix)
    if prefix.count(".") > _MAX_DEPTH:
        raise Unreadable(f"modules nested deeper than {_MAX_DEPTH} levels")
    attrs = vars(module)
    non_persistent = attrs.get("_non_persistent_buffers_set") or set()
    if not isinstance(non_persistent, (set, frozenset)):
        raise Unreadable(f"{prefix}_non_persistent_buffers_set of a {module._pickled_name} is not a set")
    for group in ("_parameters", "_buffers"):
        tensors = attrs.get(group) or {}
        if not isinstance(tensors, dict):
            raise Unreadable(f"{prefix}{group} of a {module._pickled_name} is not a dict")
        for name, tensor in tensors.items():
            budget.visit(name)
            if tensor is None or (group == "_buffers" and name in non_persistent):
                continue
            if not isinstance(tensor, torch.Tensor):
                raise Unreadable(f"{prefix}{safe_repr(name)} is a {type(tensor).__name__}, not a tensor")
            state[f"{prefix}{name}"] = tensor
            if owners is not None and group == "_parameters":
                owners[f"{prefix}{name}"] = module._pickled_name
    children = attrs.get("_modules") or {}
    if not isinstance(children, dict):
        raise Unreadable(f"{prefix}_modules of a {module._pickled_name} is not a dict")
    for name, child in children.items():
        if child is None:
            continue
        if not isinstance(child, StandIn):
            raise Unreadable(f"submodule {prefix}{safe_repr(name)} is a {type(child).__name__}, not a module")
        _collect_state(child, f"{prefix}{name}.", state, budget, owners)


def _check_no_overlap(state: dict[str, torch.Tensor]) -> None:
    """Raise Unsafe when the tensors together claim more bytes than the storages they view (a storage reused many times)."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in state.values()}
    claimed = sum(t.numel() * t.element_size() for t in state.values())
    if claimed > sum(storages.values()):
        raise Unsafe(f"the weights claim {claimed:,} bytes over {sum(storages.values()):,} bytes of storage (tensors overlap)")


def _model_object(ckpt, path: Path) -> tuple[str, StandIn]:
    """``("ema" | "model", the pickled model)``: EMA weights when the checkpoint has them.

    Raises:
        EdgesegError: an edgeseg checkpoint, a plain state_dict, or no pickled model in the file.
    """
    if not isinstance(ckpt, dict):
        raise EdgesegError(f"{path}: holds a {describe(ckpt)}, not an Ultralytics checkpoint dict")
    if all(k in ckpt for k in ("config", "state_dict", "names")):
        raise EdgesegError(f"{path}: already an edgeseg checkpoint; load it with edgeseg.Model (nothing to import)")
    if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise EdgesegError(
            f"{path}: a plain state_dict ({len(ckpt)} tensors) without the architecture; import needs the "
            "full Ultralytics checkpoint (the dict with 'model'), or load it into "
            "edgeseg.Model('yolo11<scale>-seg.yaml', nc=...).net"
        )
    key = "ema" if ckpt.get("ema") is not None else "model"
    model = ckpt.get(key)
    if not isinstance(model, StandIn):
        keys = ", ".join(sorted(k[:40] if isinstance(k, str) else safe_repr(k) for k in ckpt)[:8])
        found = "nothing" if model is None else f"a {describe(model)}"
        raise EdgesegError(f"{path}: not an Ultralytics checkpoint ('{key}' holds {found}; keys: {keys})")
    return key, model


def _row_module(row) -> str:
    """The module name of a ``[from, repeats, module, args]`` row (``torch.nn.X`` spelled ``nn.X``)."""
    name = row[2] if isinstance(row, list) and len(row) == 4 and isinstance(row[2], str) else safe_repr(row)
    return name[len("torch."):] if name.startswith("torch.nn.") else name


def _architecture(model: StandIn, path: Path) -> dict:
    """The edgeseg model config from the pickled model's ``yaml`` dict.

    Raises:
        EdgesegError: no embedded YAML, a head other than Segment or Segment26, modules or keys
            edgeseg does not build, or input channels other than 3.
    """
    raw = _plain(vars(model).get("yaml"), _Budget("model.yaml"))
    if not isinstance(raw, dict):
        raise EdgesegError(f"{path}: the {describe(model)} carries no model.yaml dict to rebuild the architecture from")
    rows = [row for section in ("backbone", "head") for row in (raw.get(section) or [])]
    modules = [_row_module(row) for row in rows]
    head = modules[-1] if modules else "none"
    if head not in HEAD_MODULES:
        what = _HEADS.get(head, f"a model with head {head[:40]}, not Segment or Segment26")
        raise EdgesegError(f"{path}: {what}; edgeseg imports {FAMILIES} instance-segmentation models")
    unknown = sorted(set(modules) - KNOWN_MODULES)
    if unknown:
        raise EdgesegError(
            f"{path}: model.yaml uses module(s) {', '.join(m[:40] for m in unknown[:8])} that edgeseg does not build "
            f"(it builds {FAMILIES}: {', '.join(sorted(KNOWN_MODULES))})"
        )
    extra = sorted(str(k)[:40] for k in set(raw) - set(_CONFIG_KEYS) - _IGNORED_YAML_KEYS)[:8]
    if extra:
        raise EdgesegError(f"{path}: model.yaml key(s) {', '.join(extra)} are not supported by edgeseg")
    channels = raw.get("channels", raw.get("ch", 3))
    if channels != 3:
        shown = channels if type(channels) is int else safe_repr(channels)
        raise EdgesegError(f"{path}: the model takes {shown}-channel input; edgeseg models take 3-channel images")
    cfg = {k: raw[k] for k in _CONFIG_KEYS if k in raw}
    if cfg.get("scales") and not cfg.get("scale"):
        cfg["scale"] = scale_from_name(Path(str(raw.get("yaml_file", ""))).stem)
        if cfg["scale"] is None:
            raise EdgesegError(f"{path}: model.yaml lists scales but not the one that was built")
    validate_model_config(cfg, source=f"{path} (model.yaml)")
    return cfg


def _names(raw, nc: int, path: Path) -> dict[int, str]:
    """``{0: name, ...}`` from the model's ``names`` (a dict or list; ``class<i>`` when absent), checked against ``nc``.

    Names are at most ``MAX_NAME_CHARS`` characters.
    """
    if not raw:
        return {i: f"class{i}" for i in range(nc)}
    items = enumerate(raw) if isinstance(raw, list) else raw.items() if isinstance(raw, dict) else None
    try:
        names = {int(k): str(v) for k, v in items}
    except (TypeError, ValueError):
        raise EdgesegError(f"{path}: the model's names are not a list or a {{class id: name}} dict") from None
    if len(names) != nc or sorted(names) != list(range(nc)):
        raise EdgesegError(f"{path}: {len(names)} class names for nc={nc}")
    long = next((n for n in names.values() if len(n) > MAX_NAME_CHARS), None)
    if long is not None:
        raise EdgesegError(f"{path}: a class name of {len(long):,} characters (at most {MAX_NAME_CHARS:,})")
    return dict(sorted(names.items()))


def _imgsz(train_args, model_args, path: Path) -> int:
    """The square training size in px: ``imgsz`` of ``train_args``, else of the model's ``args``, else 640.

    Raises:
        EdgesegError: a size that is not an int (or list of ints) from 1 to ``MAX_IMGSZ``.
    """
    sizes = [a.get("imgsz") for a in (train_args, model_args) if isinstance(a, dict)]
    imgsz = next((s for s in sizes if s), DEFAULT_IMGSZ)
    imgsz = max(imgsz) if isinstance(imgsz, list) and imgsz else imgsz
    if type(imgsz) is not int or not 1 <= imgsz <= MAX_IMGSZ:
        shown = imgsz if type(imgsz) is int else safe_repr(imgsz)
        raise EdgesegError(f"{path}: training size imgsz {shown} is not an int from 1 to {MAX_IMGSZ} px")
    return imgsz


def ultralytics_checkpoint(path: str | Path) -> dict:
    """Read an Ultralytics YOLOv8-seg, YOLO11-seg or YOLO26-seg ``.pt`` as an edgeseg checkpoint dict, in memory (nothing written).

    Args:
        path: the Ultralytics checkpoint (``yolo11n-seg.pt``, a ``best.pt`` …).

    Returns:
        ``{"config", "state_dict", "names", "imgsz", "train_args", "epoch", "best_fitness",
        "metrics", "source"}``: ``state_dict`` has edgeseg's (= Ultralytics') key names with
        float32 tensors (half weights cast) and int64 BatchNorm counters, taken from ``ema``
        when present else ``model``; ``names`` is ``{class id: name}``; ``imgsz`` the square
        training size in px (``train_args``, else the model's ``args``, else 640);
        ``train_args`` / ``metrics`` are the checkpoint's ``train_args`` / ``train_metrics`` as
        plain builtins (or None); ``source`` is ``{"format": "ultralytics", "file", "version",
        "date", "license", "weights": "ema" | "model"}``.

    Raises:
        EdgesegError: see :func:`load_restricted` and :func:`_architecture`; also for an edgeseg
            checkpoint, a plain state_dict, a non-segmentation model or mismatched class names.
    """
    path = Path(path)
    ckpt = load_restricted(path)
    weights, model = _model_object(ckpt, path)
    try:
        cfg = _architecture(model, path)
        if model._pickled_name != SEGMENTATION_MODEL:
            raise EdgesegError(f"{path}: the model is a {model._pickled_name}, not a {SEGMENTATION_MODEL}")
        state: dict[str, torch.Tensor] = {}
        _collect_state(model, "", state, _Budget("the module tree"))
        _check_no_overlap(state)
        names = _names(_plain(vars(model).get("names"), _Budget("names")), cfg["nc"], path)
        train_args = _plain(ckpt.get("train_args"), _Budget("train_args"))
        model_args = _plain(vars(model).get("args"), _Budget("the model's args"))
        metrics = _plain(ckpt.get("train_metrics"), _Budget("train_metrics"))
        best_fitness = _plain(ckpt.get("best_fitness"), _Budget("best_fitness"))
        source = {k: _plain(ckpt.get(k), _Budget(k)) for k in ("version", "date", "license")}
        imgsz = _imgsz(train_args, model_args, path)
    except EdgesegError:
        raise
    except (Refused, Unsafe, *READ_ERRORS) as exc:
        raise read_error(path, exc) from None
    epoch = ckpt.get("epoch")
    return {
        "config": cfg,
        "state_dict": {k: v.to(torch.float32) if v.is_floating_point() else v.clone() for k, v in state.items()},
        "names": names,
        "imgsz": imgsz,
        "train_args": train_args if isinstance(train_args, dict) else None,
        "epoch": epoch if type(epoch) is int and abs(epoch) < 2**31 else None,
        "best_fitness": best_fitness if isinstance(best_fitness, (int, float)) else None,
        "metrics": metrics if isinstance(metrics, dict) else None,
        "source": {"format": "ultralytics", "file": path.name, **source, "weights": weights},
    }
