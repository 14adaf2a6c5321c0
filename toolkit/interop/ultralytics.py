"""Import Ultralytics YOLO11-seg checkpoints (``yolo11n-seg.pt`` …) into edgeseg without running their code.

An Ultralytics ``.pt`` is a torch zip archive: ``<archive>/data.pkl`` (a pickle of the whole
checkpoint dict, including the ``ultralytics.nn.tasks.SegmentationModel`` object) plus one
``<archive>/data/<key>`` record of raw bytes per tensor storage. ``torch.load(weights_only=False)``
would import ``ultralytics`` and call whatever the pickle names. Here the pickle is read with
:class:`_RestrictedUnpickler` instead:

- every ``ultralytics.*`` and ``torch.nn.modules.*`` class resolves to an inert
  :class:`_StandIn` that only keeps the pickled ``__dict__`` (no real constructor runs, the
  ``ultralytics`` package is never needed);
- a short allowlist (:data:`_ALLOWED`) rebuilds tensors, plain containers and numeric scalars
  with this module's own functions;
- ``builtins.getattr`` never reaches the real ``getattr``: protocol-2 pickles spell a nested
  name such as ``Detect.forward`` (older Ultralytics heads keep ``self.detect = Detect.forward``)
  as ``getattr(<class Detect>, "forward")``, so :func:`_stand_in_getattr` answers that with
  another stand-in, and refuses any other use;
- every other global (``posix.system``, ``builtins.eval`` / ``exec``, ``subprocess.*`` …) is
  refused with ``EdgesegError("… refused: <module>.<name> …")`` before anything is called.

The weights are then collected from the stand-in module tree (each object's ``_parameters``,
persistent ``_buffers`` and ``_modules``, under the key paths ``Module.state_dict`` gives, which
are edgeseg's own parameter names) and the architecture from the embedded ``model.yaml``.
"""

from __future__ import annotations

import collections
import datetime
import io
import logging
import pickle
import pickletools
import zipfile
from pathlib import Path

import numpy as np
import torch

from edgeseg.config import KNOWN_MODULES, scale_from_name, validate_model_config
from edgeseg.errors import EdgesegError

LOGGER = logging.getLogger("edgeseg")

DEFAULT_IMGSZ = 640  # px, when the checkpoint records no training size
SEGMENTATION_MODEL = "ultralytics.nn.tasks.SegmentationModel"
_MAX_DEPTH = 64  # nesting levels of modules / containers; deeper is treated as a malformed file

_STORAGE_DTYPES = {
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}
_DILL_TYPES = {"set": set, "frozenset": frozenset, "dict": dict, "list": list, "tuple": tuple, "NoneType": type(None)}
_HEADS = {
    "Detect": "a detection-only model (head Detect, not Segment)",
    "Pose": "a pose model (head Pose, not Segment)",
    "OBB": "an oriented-box model (head OBB, not Segment)",
    "Classify": "a classification model (head Classify, not Segment)",
}
_CONFIG_KEYS = ("nc", "scales", "scale", "backbone", "head")
_IGNORED_YAML_KEYS = {"yaml_file", "ch", "channels"}  # the file name it came from; input channels (checked: 3)
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
_GET_OPS = {"BINGET", "LONG_BINGET", "GET"}
_PUT_OPS = {"BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"}


class _Refused(Exception):
    """The pickle names a global outside the allowlist (the message is ``module.name``)."""


class _Unreadable(Exception):
    """The archive or pickle is malformed (the message says how)."""


# What a malformed archive or pickle raises while it is read (torch's own size checks included).
_READ_ERRORS = (
    _Unreadable, pickle.UnpicklingError, zipfile.BadZipFile, EOFError,
    TypeError, ValueError, RuntimeError, KeyError, IndexError, AttributeError,
)


class _StandIn:
    """Inert placeholder for a class the pickle names: it keeps the pickled state and runs nothing.

    Subclasses are made per name by :func:`_stand_in_class`; ``_pickled_name`` is the
    ``module.qualname`` the pickle asked for.
    """

    _pickled_name = "?"

    def __init__(self, *args):
        """REDUCE calls ``cls(*args)`` (namespaces do); the arguments are dropped."""

    def __setstate__(self, state):
        """BUILD: a ``__dict__`` (or ``(dict, slots dict)``) becomes attributes; anything else ``_state``."""
        parts = state if isinstance(state, tuple) and len(state) == 2 else (state,)
        if all(p is None or isinstance(p, dict) for p in parts):
            for part in parts:
                self.__dict__.update(part or {})
        else:
            self.__dict__["_state"] = state


def _stand_in_class(module: str, qualname: str) -> type:
    """A new :class:`_StandIn` subclass recorded as ``module.qualname``."""
    attrs = {"__module__": module, "__qualname__": qualname, "_pickled_name": f"{module}.{qualname}"}
    return type(qualname.rpartition(".")[2], (_StandIn,), attrs)


def _stand_in_getattr(owner, *names):
    """``builtins.getattr`` as pickles of nested names use it: only on stand-in classes, giving a stand-in."""
    if not (isinstance(owner, type) and issubclass(owner, _StandIn) and len(names) == 1 and isinstance(names[0], str)):
        raise _Refused(f"builtins.getattr on a {type(owner).__name__}")
    return _stand_in_class(owner.__module__, f"{owner.__qualname__}.{names[0]}")


class _StorageType:
    """What ``torch.<Type>Storage`` resolves to: just the element dtype of a storage record."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def _rebuild_tensor(storage, storage_offset, size, stride, *_):
    """``torch._utils._rebuild_tensor(_v2)``: a strided view of a flat storage tensor (bounds checked by torch)."""
    if not isinstance(storage, torch.Tensor):
        raise _Unreadable(f"a tensor is built on a {type(storage).__name__}, not a storage record")
    return torch.as_strided(storage, tuple(int(s) for s in size), tuple(int(s) for s in stride), int(storage_offset))


def _rebuild_parameter(data, *_):
    """``torch._utils._rebuild_parameter(_with_state)``: the parameter's tensor (gradient flags dropped)."""
    if not isinstance(data, torch.Tensor):
        raise _Unreadable(f"a parameter holds a {type(data).__name__}, not a tensor")
    return data


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes``: latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"_codecs.encode(..., {encoding!r})")
    return text.encode("latin1")


def _numpy_dtype(spec, *_):
    """``numpy.dtype`` for numeric and boolean dtypes only (a fresh copy, so BUILD cannot alter numpy's)."""
    dtype = np.dtype(spec) if isinstance(spec, str) else None
    if dtype is None or dtype.kind not in "biufc":
        raise _Refused(f"numpy.dtype({spec!r})")
    return np.dtype(spec, False, True)


def _numpy_scalar(dtype, data=b""):
    """``numpy.core.multiarray.scalar``: a numeric numpy scalar as a Python number."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc" or not isinstance(data, bytes):
        raise _Refused("numpy.core.multiarray.scalar of a non-numeric dtype")
    return np.frombuffer(data, dtype, count=1)[0].item()


def _dill_load_type(name):
    """``dill._dill._load_type``: plain container types only (never ``CodeType`` / ``FunctionType``)."""
    if name not in _DILL_TYPES:
        raise _Refused(f"dill._dill._load_type({name!r})")
    return _DILL_TYPES[name]


# (module, name) -> what the pickle gets instead.
_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "getattr"): _stand_in_getattr,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("_codecs", "encode"): _latin1_encode,
    ("datetime", "datetime"): datetime.datetime,
    ("datetime", "date"): datetime.date,
    ("datetime", "timedelta"): datetime.timedelta,
    ("datetime", "timezone"): datetime.timezone,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("dill._dill", "_load_type"): _dill_load_type,
}


def _is_stand_in_module(module: str, name: str) -> bool:
    """Classes that become inert stand-ins: Ultralytics', ``torch.nn`` modules' and namespaces."""
    return (
        module.split(".")[0] == "ultralytics"
        or module.startswith("torch.nn.modules.")
        or (module, name) == ("types", "SimpleNamespace")
    )


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickles a torch zip checkpoint's ``data.pkl`` without importing or calling anything unlisted.

    Args:
        file: the ``data.pkl`` bytes as a binary stream.
        archive: the open zip archive holding the storage records.
        prefix: the archive's record prefix (``"archive/"``), as found beside ``data.pkl``.
    """

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self._archive, self._prefix = archive, prefix
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str):
        module = "builtins" if module == "__builtin__" else module  # protocol-2 pickles spell it the Python 2 way
        if (module, name) in _ALLOWED:
            return _ALLOWED[module, name]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if _is_stand_in_module(module, name):
            return _stand_in_class(module, name)
        raise _Refused(f"{module}.{name}")

    def persistent_load(self, pid):
        """torch's storage reference ``("storage", type, key, location, numel)`` -> (numel,) flat tensor."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
            raise _Unreadable(f"unexpected persistent id {str(pid)[:60]}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise _Unreadable(f"storage {key!r} has no storage type")
        key = key.decode("ascii") if isinstance(key, bytes) else str(key)
        if key not in self._storages:
            self._storages[key] = self._read_storage(key, storage_type.dtype, int(numel))
        return self._storages[key]

    def _read_storage(self, key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        """The record ``data/<key>`` as a (numel,) tensor of ``dtype`` (little-endian bytes)."""
        record = f"{self._prefix}data/{key}"
        try:
            raw = self._archive.read(record)
        except KeyError:
            raise _Unreadable(f"storage record {record} is missing") from None
        nbytes = numel * torch.empty(0, dtype=dtype).element_size()
        if numel < 0 or len(raw) < nbytes:
            raise _Unreadable(f"storage record {record} has {len(raw)} bytes, {nbytes} expected")
        if numel == 0:
            return torch.empty(0, dtype=dtype)
        return torch.frombuffer(bytearray(raw[:nbytes]), dtype=dtype)


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _data_pkl(archive: zipfile.ZipFile, path: Path) -> str:
    """The record prefix of a torch zip: ``"archive/"`` when ``archive/data.pkl`` is in it."""
    for name in archive.namelist():
        if name == "data.pkl" or (name.endswith("/data.pkl") and name.count("/") == 1):
            return name[: -len("data.pkl")]
    raise EdgesegError(f"{path}: a zip archive without data.pkl, not a PyTorch checkpoint")


def _check_torch_zip(path: Path) -> None:
    """Raise EdgesegError naming what ``path`` is when it is not a torch zip archive."""
    if not path.is_file():
        raise EdgesegError(f"{path}: checkpoint not found")
    if zipfile.is_zipfile(path):
        return
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"\x80\x02\x8a\x0a"):
        raise EdgesegError(f"{path}: a legacy (torch < 1.6) checkpoint; re-save it with a current torch.save")
    if head[:1] == b"\x80":
        raise EdgesegError(f"{path}: a plain pickle, not a PyTorch zip checkpoint")
    raise EdgesegError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")


def load_restricted(path: str | Path):
    """Unpickle a torch zip checkpoint with the restricted unpickler (see the module docstring).

    Returns:
        The pickled object: dicts, lists, tensors (as stored: half stays half), numbers, strings
        and :class:`_StandIn` objects in place of Ultralytics / ``torch.nn`` objects.

    Raises:
        EdgesegError: missing file, not a torch zip, big-endian data, a malformed pickle, or
            ``refused: <module>.<name>`` for a global outside the allowlist (nothing is called).
    """
    path = Path(path)
    _check_torch_zip(path)
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = _data_pkl(archive, path)
            if f"{prefix}byteorder" in archive.namelist() and archive.read(f"{prefix}byteorder") != b"little":
                raise EdgesegError(f"{path}: a big-endian checkpoint, not supported")
            data = archive.read(f"{prefix}data.pkl")
            return _RestrictedUnpickler(io.BytesIO(data), archive, prefix).load()
    except _Refused as exc:
        raise EdgesegError(
            f"{path}: refused: {exc} (the checkpoint asks to call it while loading; edgeseg never runs code from a checkpoint)"
        ) from None
    except EdgesegError:
        raise
    except _READ_ERRORS as exc:
        raise EdgesegError(f"{path}: not a readable checkpoint ({_first_line(exc)})") from None


def pickle_globals(data: bytes) -> set[str]:
    """``module.name`` of every global a pickle references (GLOBAL and STACK_GLOBAL), without unpickling it.

    Raises:
        ValueError: ``data`` is not a well-formed pickle.
    """
    found, memo, pushed = set(), {}, []
    for opcode, arg, _ in pickletools.genops(data):
        op = opcode.name
        if op in _STRING_OPS:
            pushed.append(arg)
            continue
        if op in _GET_OPS:
            pushed.append(memo.get(arg))
            continue
        if op in _PUT_OPS:  # memoizing leaves the stack as it is
            memo[len(memo) if op == "MEMOIZE" else arg] = pushed[-1] if pushed else None
            continue
        if op == "GLOBAL":
            found.add(arg.replace(" ", "."))
        elif op == "STACK_GLOBAL" and len(pushed) >= 2:
            found.add(f"{pushed[-2]}.{pushed[-1]}")
        pushed = []
    return found


def is_ultralytics_checkpoint(path: str | Path) -> bool:
    """True when ``path`` is a torch zip whose pickle names ``ultralytics.*`` classes (read, never unpickled)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read(f"{_data_pkl(archive, path)}data.pkl")
        return any(name.split(".")[0] == "ultralytics" for name in pickle_globals(data))
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, EdgesegError):
        return False


def _plain(value, depth: int = 0):
    """``value`` rebuilt from builtins (dict, list, str, int, float, bool, None), loadable with ``weights_only``.

    Stand-in objects (namespaces) become dicts of their public attributes, tuples and sets
    lists, one-element tensors numbers, anything else its ``str``.
    """
    if depth > _MAX_DEPTH:
        raise _Unreadable(f"containers nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, _StandIn):
        value = {k: v for k, v in vars(value).items() if isinstance(k, str) and not k.startswith("_")}
    if isinstance(value, dict):
        return {k if isinstance(k, (str, int)) else str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return str(value)


def _collect_state(module: _StandIn, prefix: str, state: dict) -> None:
    """Add ``module``'s ``state_dict()`` entries under ``prefix``: parameters, persistent buffers, then children."""
    if prefix.count(".") > _MAX_DEPTH:
        raise _Unreadable(f"modules nested deeper than {_MAX_DEPTH} levels")
    attrs = vars(module)
    non_persistent = attrs.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        tensors = attrs.get(group) or {}
        if not isinstance(tensors, dict):
            raise _Unreadable(f"{prefix}{group} of a {module._pickled_name} is not a dict")
        for name, tensor in tensors.items():
            if tensor is None or (group == "_buffers" and name in non_persistent):
                continue
            if not isinstance(tensor, torch.Tensor):
                raise _Unreadable(f"{prefix}{name} is a {type(tensor).__name__}, not a tensor")
            state[f"{prefix}{name}"] = tensor
    children = attrs.get("_modules") or {}
    if not isinstance(children, dict):
        raise _Unreadable(f"{prefix}_modules of a {module._pickled_name} is not a dict")
    for name, child in children.items():
        if child is None:
            continue
        if not isinstance(child, _StandIn):
            raise _Unreadable(f"submodule {prefix}{name} is a {type(child).__name__}, not a module")
        _collect_state(child, f"{prefix}{name}.", state)


def _describe(obj) -> str:
    """The pickled class name of a stand-in, else the Python type name."""
    return obj._pickled_name if isinstance(obj, _StandIn) else type(obj).__name__


def _model_object(ckpt, path: Path) -> tuple[str, _StandIn]:
    """``("ema" | "model", the pickled model)``: EMA weights when the checkpoint has them.

    Raises:
        EdgesegError: an edgeseg checkpoint, a plain state_dict, or no pickled model in the file.
    """
    if not isinstance(ckpt, dict):
        raise EdgesegError(f"{path}: holds a {_describe(ckpt)}, not an Ultralytics checkpoint dict")
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
    if not isinstance(model, _StandIn):
        keys = ", ".join(sorted(str(k) for k in ckpt)[:8])
        found = "nothing" if model is None else f"a {_describe(model)}"
        raise EdgesegError(f"{path}: not an Ultralytics checkpoint ('{key}' holds {found}; keys: {keys})")
    return key, model


def _row_module(row) -> str:
    """The module name of a ``[from, repeats, module, args]`` row (``torch.nn.X`` spelled ``nn.X``)."""
    name = str(row[2]) if isinstance(row, list) and len(row) == 4 else repr(row)
    return name[len("torch."):] if name.startswith("torch.nn.") else name


def _architecture(model: _StandIn, path: Path) -> dict:
    """The edgeseg model config from the pickled model's ``yaml`` dict.

    Raises:
        EdgesegError: no embedded YAML, a head other than Segment, YOLOv8 blocks, modules or
            keys edgeseg does not build, or input channels other than 3.
    """
    raw = _plain(vars(model).get("yaml"))
    if not isinstance(raw, dict):
        raise EdgesegError(f"{path}: the {_describe(model)} carries no model.yaml dict to rebuild the architecture from")
    rows = [row for section in ("backbone", "head") for row in (raw.get(section) or [])]
    modules = [_row_module(row) for row in rows]
    head = modules[-1] if modules else "none"
    if head != "Segment":
        what = _HEADS.get(head, f"a model with head {head}, not Segment")
        raise EdgesegError(f"{path}: {what}; edgeseg imports YOLO11-seg instance-segmentation models only")
    if "C2f" in modules:
        raise EdgesegError(f"{path}: YOLOv8-seg (C2f blocks) is not supported, only YOLO11-seg")
    unknown = sorted(set(modules) - KNOWN_MODULES)
    if unknown:
        raise EdgesegError(
            f"{path}: model.yaml uses module(s) {', '.join(unknown)} that edgeseg does not build "
            f"(YOLO11-seg: {', '.join(sorted(KNOWN_MODULES))})"
        )
    extra = sorted(str(k) for k in set(raw) - set(_CONFIG_KEYS) - _IGNORED_YAML_KEYS)
    if extra:
        raise EdgesegError(f"{path}: model.yaml key(s) {', '.join(extra)} are not supported by edgeseg")
    channels = raw.get("channels", raw.get("ch", 3))
    if channels != 3:
        raise EdgesegError(f"{path}: the model takes {channels}-channel input; edgeseg models take 3-channel images")
    cfg = {k: raw[k] for k in _CONFIG_KEYS if k in raw}
    if cfg.get("scales") and not cfg.get("scale"):
        cfg["scale"] = scale_from_name(Path(str(raw.get("yaml_file", ""))).stem)
        if cfg["scale"] is None:
            raise EdgesegError(f"{path}: model.yaml lists scales but not the one that was built")
    validate_model_config(cfg, source=f"{path} (model.yaml)")
    return cfg


def _names(raw, nc: int, path: Path) -> dict[int, str]:
    """``{0: name, ...}`` from the model's ``names`` (a dict or list; ``class<i>`` when absent), checked against ``nc``."""
    if not raw:
        return {i: f"class{i}" for i in range(nc)}
    items = enumerate(raw) if isinstance(raw, list) else raw.items() if isinstance(raw, dict) else None
    try:
        names = {int(k): str(v) for k, v in items}
    except (TypeError, ValueError):
        raise EdgesegError(f"{path}: the model's names are not a list or a {{class id: name}} dict") from None
    if sorted(names) != list(range(nc)):
        raise EdgesegError(f"{path}: {len(names)} class names for nc={nc}")
    return dict(sorted(names.items()))


def ultralytics_checkpoint(path: str | Path) -> dict:
    """Read an Ultralytics YOLO11-seg ``.pt`` as an edgeseg checkpoint dict, in memory (nothing written).

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
        _collect_state(model, "", state)
        names = _names(_plain(vars(model).get("names")), cfg["nc"], path)
        train_args = _plain(ckpt.get("train_args"))
        model_args = _plain(vars(model).get("args"))
        metrics = _plain(ckpt.get("train_metrics"))
        best_fitness, epoch = _plain(ckpt.get("best_fitness")), ckpt.get("epoch")
        sizes = [a.get("imgsz") for a in (train_args, model_args) if isinstance(a, dict)]
        imgsz = next((s for s in sizes if s), DEFAULT_IMGSZ)
        imgsz = int(max(imgsz) if isinstance(imgsz, list) else imgsz)
    except _READ_ERRORS as exc:
        raise EdgesegError(f"{path}: not a readable checkpoint ({_first_line(exc)})") from None
    return {
        "config": cfg,
        "state_dict": {k: v.to(torch.float32) if v.is_floating_point() else v.clone() for k, v in state.items()},
        "names": names,
        "imgsz": imgsz,
        "train_args": train_args if isinstance(train_args, dict) else None,
        "epoch": epoch if isinstance(epoch, int) else None,
        "best_fitness": best_fitness if isinstance(best_fitness, (int, float)) else None,
        "metrics": metrics if isinstance(metrics, dict) else None,
        "source": {
            "format": "ultralytics",
            "file": path.name,
            "version": _plain(ckpt.get("version")),
            "date": _plain(ckpt.get("date")),
            "license": _plain(ckpt.get("license")),
            "weights": weights,
        },
    }


def import_ultralytics(path: str | Path, out: str | Path | None = None) -> Path:
    """Convert an Ultralytics YOLO11-seg checkpoint into an edgeseg checkpoint file (written atomically).

    Args:
        path: the Ultralytics ``.pt``.
        out: the edgeseg ``.pt`` to write (default: ``<stem>-edgeseg.pt`` beside ``path``).

    Returns:
        ``out``; it loads with ``torch.load(weights_only=True)`` and ``edgeseg.Model(out)``,
        carrying ``train_args``, ``epoch``, ``best_fitness``, ``metrics`` and ``source`` where
        the original had them (see :func:`ultralytics_checkpoint`).

    Raises:
        EdgesegError: see :func:`ultralytics_checkpoint`; also when the weights do not fit the
            architecture of the embedded model.yaml, or ``out`` is ``path`` itself.
    """
    from edgeseg.nn.checkpoint import atomic_torch_save, build_checkpoint
    from edgeseg.nn.model import SegmentationModel

    path = Path(path)
    out = Path(out) if out is not None else path.with_name(f"{path.stem}-edgeseg.pt")
    if out.resolve() == path.resolve():
        raise EdgesegError(f"{out}: is the file being imported; choose another output path")
    ckpt = ultralytics_checkpoint(path)
    net = SegmentationModel(ckpt["config"], names=ckpt["names"])
    try:
        missing, unexpected = net.load_state_dict(ckpt["state_dict"], strict=False)
    except RuntimeError as exc:
        raise EdgesegError(f"{path}: weights do not fit the model.yaml architecture ({_first_line(exc)})") from None
    if missing or unexpected:
        raise EdgesegError(
            f"{path}: weights do not fit the model.yaml architecture "
            f"({len(missing)} missing, {len(unexpected)} unexpected, e.g. {(missing + unexpected)[0]})"
        )
    extra = {k: ckpt[k] for k in ("train_args", "epoch", "best_fitness", "metrics", "source") if ckpt[k] is not None}
    written = atomic_torch_save(build_checkpoint(net, ckpt["imgsz"], **extra), out)
    LOGGER.info(f"imported Ultralytics checkpoint {path} -> {written}")
    return written
