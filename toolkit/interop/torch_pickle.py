"""Read the pickle of a torch zip checkpoint without running or importing anything it names.

A torch ``.pt`` is a zip archive: ``<archive>/data.pkl`` (a pickle of the whole object) plus one
``<archive>/data/<key>`` record of raw bytes per tensor storage. ``torch.load(weights_only=False)``
would import and call whatever the pickle names. :func:`load_restricted` reads it with
:class:`_RestrictedUnpickler` (the pure-Python unpickler, with some opcodes replaced) instead:

- every ``ultralytics.*`` and ``torch.nn.modules.*`` class resolves to an inert
  :class:`StandIn` that only keeps the pickled ``__dict__`` (no real constructor runs, the
  ``ultralytics`` package is never needed);
- a short allowlist (:data:`_ALLOWED`) rebuilds tensors, ``torch.Size``, ``torch.device``, plain
  containers, dates and numeric scalars with this module's own functions, which check their
  arguments (a set or dict key must be a plain value, a tensor view must stay inside its storage
  without repeating an element);
- ``builtins.getattr`` never reaches the real ``getattr``: protocol-2 pickles spell a nested
  name such as ``Detect.forward`` (older Ultralytics heads keep ``self.detect = Detect.forward``)
  as ``getattr(<class Detect>, "forward")``, which gives another stand-in; any other use is refused;
- BUILD (the opcode that sets an object's attributes) only ever reaches objects this load just
  made: a stand-in instance, a numpy dtype description, an ``OrderedDict`` (its attributes are
  dropped). BUILD on anything else, an allowlisted class or function above all, is refused, so a
  checkpoint cannot alter edgeseg's, torch's or Python's own objects; dict / list / set items
  likewise only go into plain dicts, lists and sets;
- every other global (``posix.system``, ``builtins.eval`` / ``exec``, ``subprocess.*`` …) is
  refused with ``EdgesegError("… refused: <module>.<name> …")`` before anything is called.

Sizes are checked before anything is allocated: records must be stored uncompressed (as torch
writes them) and together no larger than the file (at most :data:`MAX_ARCHIVE_BYTES`), and
``data.pkl`` at most :data:`MAX_PICKLE_BYTES`.
"""

from __future__ import annotations

import collections
import datetime
import io
import pickle
import pickletools
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch

from edgeseg.runtimes.errors import EdgesegError, safe_repr, first_line

MAX_PICKLE_BYTES = 4 << 20  # bytes of data.pkl (the test fixtures' best.pt: 144 kB; a last.pt mid-training: 217 kB)
MAX_ARCHIVE_BYTES = 2 << 30  # bytes read from one checkpoint, all records together (and never more than the file)
MAX_RECORDS = 100_000  # records in the archive (a YOLO11x-seg last.pt has about 2,000)
MAX_PICKLED_NAMES = 10_000  # distinct classes the pickle names (a YOLO11-seg checkpoint: ~40)
_MAX_DIMS = 64  # dimensions of one tensor (torch's own limit)
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
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
_GET_OPS = {"BINGET", "LONG_BINGET", "GET"}
_PUT_OPS = {"BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"}
_ATOMS = (str, bytes, int, float, bool, type(None))


class Refused(Exception):
    """The pickle names a global outside the allowlist or misuses one (the message is ``module.name`` …)."""


class Unsafe(Exception):
    """The file asks for something refused on principle: a size past a limit, state set on a global (the message says what)."""


class Unreadable(Exception):
    """The archive or pickle is malformed (the message says how)."""


# What a malformed archive or pickle raises while it is read (torch's own size checks included).
READ_ERRORS = (
    Unreadable, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OverflowError, struct.error, OSError,
    TypeError, ValueError, RuntimeError, KeyError, IndexError, AttributeError, RecursionError,
)


class StandIn:
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
    """A new :class:`StandIn` subclass recorded as ``module.qualname``."""
    attrs = {"__module__": module, "__qualname__": qualname, "_pickled_name": f"{module}.{qualname}"}
    return type(qualname.rpartition(".")[2], (StandIn,), attrs)


class _StorageType:
    """What ``torch.<Type>Storage`` resolves to: just the element dtype of a storage record."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


class _Storage:
    """One storage record as read: ``flat`` is a (numel,) tensor.

    Only :meth:`_RestrictedUnpickler.persistent_load` makes these, so a pickle cannot pass
    anything else (a view, say) to :func:`_rebuild_tensor` as a storage.
    """

    def __init__(self, flat: torch.Tensor):
        self.flat = flat


class _NumpyDtype:
    """What ``numpy.dtype(spec, …)`` gives the pickle: a numeric dtype and the byte order BUILD names.

    numpy's own dtype objects are never handed to the pickle, so its BUILD cannot alter them.
    """

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype

    def set_state(self, state) -> None:
        """BUILD with numpy's dtype state ``(version, byteorder, …)``: only the byte order is used."""
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else None
        if order not in ("<", ">", "|", "="):
            raise Unreadable("a numpy dtype with an unknown byte order")
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)


def _view_problem(storage_numel: int, offset: int, size: tuple, stride: tuple) -> str | None:
    """Why a strided view of a (storage_numel,) storage is refused, or None.

    A view is accepted when its elements are distinct elements inside the storage: sorted by
    stride, each dimension's stride exceeds the furthest offset the smaller ones reach. So its
    byte size never exceeds the storage's (no stride-0 view of GiBs over a few bytes).
    """
    if 0 in size:
        return None if offset <= storage_numel else f"offset {offset:,} is past the storage's {storage_numel:,} elements"
    reach = 0
    for step, count in sorted((st, n) for n, st in zip(size, stride) if n != 1):
        if step <= reach:
            return f"repeats storage elements (shape {list(size)[:8]}, stride {list(stride)[:8]})"
        reach += (count - 1) * step
    if offset + reach >= storage_numel:
        return f"reaches element {offset + reach:,} of a storage of {storage_numel:,} elements"
    return None


def _ints(values, what: str) -> tuple[int, ...]:
    """``values`` as a tuple of non-negative ints (a shape, stride or offset), at most ``_MAX_DIMS`` of them."""
    if not isinstance(values, (tuple, list)) or len(values) > _MAX_DIMS:
        raise Unreadable(f"a tensor {what} is a {safe_repr(values)}, not a short tuple of ints")
    if not all(type(v) is int and v >= 0 for v in values):
        raise Unreadable(f"a tensor {what} holds something other than non-negative ints")
    return tuple(values)


def _rebuild_tensor(storage, storage_offset, size, stride, *_):
    """``torch._utils._rebuild_tensor(_v2)``: a strided view of a storage record, checked by :func:`_view_problem` first."""
    if not isinstance(storage, _Storage):
        raise Unreadable(f"a tensor is built on a {safe_repr(storage)}, not a storage record")
    (offset,), size, stride = _ints((storage_offset,), "offset"), _ints(size, "shape"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise Unreadable(f"a tensor has {len(size)} dimensions but {len(stride)} strides")
    problem = _view_problem(storage.flat.numel(), offset, size, stride)
    if problem:
        raise Unsafe(f"a tensor view that {problem}")
    return torch.as_strided(storage.flat, size, stride, offset)


def _rebuild_parameter(data, *_):
    """``torch._utils._rebuild_parameter(_with_state)``: the parameter's tensor (gradient flags dropped)."""
    if not isinstance(data, torch.Tensor):
        raise Unreadable(f"a parameter holds a {type(data).__name__}, not a tensor")
    return data


def _torch_size(dims=()):
    """``torch.Size`` (pickled shapes, e.g. a head's cached input shape): a tuple of non-negative ints."""
    return torch.Size(_ints(dims, "shape"))


def _torch_device(kind, index=None):
    """``torch.device`` (a loss object's device): parsed from its name, nothing initialised."""
    if not isinstance(kind, str) or len(kind) > 32 or not (index is None or type(index) is int):
        raise Refused("torch.device with arguments other than a device name and index")
    return torch.device(kind) if index is None else torch.device(kind, index)


def _atom_items(items, what: str) -> list:
    """``items`` (a list or tuple) checked to hold plain values only, so hashing and comparing them is cheap."""
    if not isinstance(items, (list, tuple)):
        raise Refused(f"{what} of a {safe_repr(items)}")
    for item in items:
        _check_key(item)
    return list(items)


def _check_key(key) -> None:
    """Raise Unsafe unless ``key`` may be a dict key or set member: a plain value or a flat tuple of them.

    Nested tuples are refused: hashing a tuple is not cached, so a key of tuples sharing their
    halves 60 levels deep would take 2**60 steps to hash.
    """
    if isinstance(key, _ATOMS) or (type(key) is tuple and all(isinstance(k, _ATOMS) for k in key)):
        return
    raise Unsafe(f"a dict key or set member that is a {safe_repr(key)}, not a plain value")


def _set(items=()):
    """``builtins.set`` of plain values."""
    return set(_atom_items(items, "set"))


def _frozenset(items=()):
    """``builtins.frozenset`` of plain values."""
    return frozenset(_atom_items(items, "frozenset"))


def _ordered_dict(items=()):
    """``collections.OrderedDict``: empty (pickles add the items later), or from ``(key, value)`` pairs or a dict."""
    pairs = list(items.items()) if type(items) in (dict, collections.OrderedDict) else items
    if not isinstance(pairs, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
        raise Refused(f"collections.OrderedDict of a {safe_repr(items)}")
    for key, _ in pairs:
        _check_key(key)
    return collections.OrderedDict(pairs)


def _dict(items=()):
    """``builtins.dict`` (as dill names it): an OrderedDict's rules, a plain dict."""
    return dict(_ordered_dict(items))


def _sequence(kind: type):
    """``builtins.list`` / ``tuple`` (as dill names them): a copy of a list or tuple, never an iteration over other objects."""

    def make(items=()):
        if not isinstance(items, (list, tuple)):
            raise Refused(f"{kind.__name__} of a {safe_repr(items)}")
        return kind(items)

    return make


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes``: latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise Refused(f"_codecs.encode(..., {safe_repr(encoding)})")
    return text.encode("latin1")


def _numpy_dtype(spec, *_):
    """``numpy.dtype`` for numeric and boolean dtypes only, as a :class:`_NumpyDtype`."""
    dtype = np.dtype(spec) if isinstance(spec, str) and len(spec) <= 8 else None
    if dtype is None or dtype.kind not in "biufc":
        raise Refused(f"numpy.dtype({safe_repr(spec)})")
    return _NumpyDtype(dtype)


def _numpy_scalar(dtype, data=b""):
    """``numpy.core.multiarray.scalar``: a numeric numpy scalar as a Python number."""
    if not isinstance(dtype, _NumpyDtype) or not isinstance(data, bytes) or len(data) < dtype.dtype.itemsize:
        raise Refused("numpy.core.multiarray.scalar of a non-numeric dtype")
    return np.frombuffer(data, dtype.dtype, count=1)[0].item()


_DILL_TYPES = {
    "set": _set, "frozenset": _frozenset, "dict": _dict, "list": _sequence(list), "tuple": _sequence(tuple),
    "NoneType": type(None),
}


def _dill_load_type(name):
    """``dill._dill._load_type``: plain container constructors only (never ``CodeType`` / ``FunctionType``)."""
    if name not in _DILL_TYPES:
        raise Refused(f"dill._dill._load_type({safe_repr(name)})")
    return _DILL_TYPES[name]


# (module, name) -> what the pickle gets instead. Ultralytics 8.3 / 8.4 best.pt files name
# collections.OrderedDict, builtins.set, torch.Size, torch.<Type>Storage and the two _rebuild
# functions beside their ultralytics.* / torch.nn.* classes; an unstripped last.pt adds
# torch.device, numpy.dtype, numpy._core.multiarray.scalar and _codecs.encode.
_ALLOWED = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("builtins", "set"): _set,
    ("builtins", "frozenset"): _frozenset,
    ("torch", "Size"): _torch_size,
    ("torch", "device"): _torch_device,
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


_PICKLED_AS = {}  # allowlisted object -> the first name a pickle reaches it by, for messages
for (_module, _name), _obj in _ALLOWED.items():
    _PICKLED_AS.setdefault(_obj, f"{_module}.{_name}")


def _is_stand_in_module(module: str, name: str) -> bool:
    """Classes that become inert stand-ins: Ultralytics', ``torch.nn`` modules' and namespaces."""
    return (
        module.split(".")[0] == "ultralytics"
        or module.startswith("torch.nn.modules.")
        or (module, name) == ("types", "SimpleNamespace")
    )


def describe(obj) -> str:
    """The pickled class name of a stand-in (or ``class …`` for a stand-in class), else the Python type or object name."""
    if isinstance(obj, StandIn):
        return obj._pickled_name
    if isinstance(obj, type) and issubclass(obj, StandIn):
        return f"class {obj._pickled_name}"
    if isinstance(obj, type) or callable(obj):
        return _PICKLED_AS.get(obj) or f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"
    return type(obj).__name__


class _Records:
    """Reads records of a torch zip archive, each size checked before anything is read or inflated.

    Args:
        archive: the open archive.
        prefix: its record prefix (``"archive/"``), as found beside ``data.pkl``.
        file_size: the archive file's size in bytes: the records read may add up to no more
            (at most :data:`MAX_ARCHIVE_BYTES`), so overlapping records cannot multiply it.
    """

    def __init__(self, archive: zipfile.ZipFile, prefix: str, file_size: int):
        self._archive, self.prefix = archive, prefix
        self._left = self._budget = min(file_size, MAX_ARCHIVE_BYTES)

    def read(self, name: str, nbytes: int | None = None, limit: int = MAX_PICKLE_BYTES) -> bytes:
        """The first ``nbytes`` bytes of record ``<prefix><name>`` (all of it, at most ``limit`` bytes, when None)."""
        record = f"{self.prefix}{name}"
        try:
            info = self._archive.getinfo(record)
        except KeyError:
            raise Unreadable(f"record {record[:80]} is missing") from None
        if info.compress_type != zipfile.ZIP_STORED:
            raise Unsafe(
                f"record {record[:80]} is compressed ({info.compress_size:,} bytes inflating to {info.file_size:,}); "
                "PyTorch never compresses records"
            )
        if nbytes is None:
            if info.file_size > limit:
                raise Unsafe(f"record {record[:80]} holds {info.file_size:,} bytes (at most {limit:,})")
            nbytes = info.file_size
        elif info.file_size < nbytes:
            raise Unreadable(f"record {record[:80]} has {info.file_size:,} bytes, {nbytes:,} expected")
        if nbytes > self._left:
            raise Unsafe(
                f"the records read add up to more than {self._budget:,} bytes (the file's size, at most {MAX_ARCHIVE_BYTES:,})"
            )
        self._left -= nbytes
        with self._archive.open(info) as f:
            data = f.read(nbytes)
        if len(data) != nbytes:
            raise Unreadable(f"record {record[:80]} is truncated")
        return data


class _RestrictedUnpickler(pickle._Unpickler):
    """Unpickles a torch zip checkpoint's ``data.pkl`` without importing or calling anything unlisted.

    The pure-Python unpickler, so that the opcodes which give an object state or items (BUILD,
    SETITEM(S), DICT, APPEND(S), ADDITEMS, FROZENSET, NEWOBJ) can be replaced: each checks its
    target is an object of the kind it is meant for, made during this load.

    Args:
        file: the ``data.pkl`` bytes as a binary stream.
        records: the archive's storage records.
    """

    def __init__(self, file, records: _Records):
        super().__init__(file)
        self._records = records
        self._storages: dict[str, _Storage] = {}
        self._classes: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str):
        module = "builtins" if module == "__builtin__" else module  # protocol-2 pickles spell it the Python 2 way
        if (module, name) == ("builtins", "getattr"):
            return self._getattr
        if (module, name) in _ALLOWED:
            return _ALLOWED[module, name]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if _is_stand_in_module(module, name):
            return self._stand_in(module, name)
        raise Refused(f"{module[:80]}.{name[:80]}")

    def _stand_in(self, module: str, qualname: str) -> type:
        """The stand-in class for ``module.qualname`` (one per name and load, at most :data:`MAX_PICKLED_NAMES`)."""
        key = (module, qualname)
        if key not in self._classes:
            if len(self._classes) >= MAX_PICKLED_NAMES:
                raise Unsafe(f"the pickle names more than {MAX_PICKLED_NAMES:,} classes")
            self._classes[key] = _stand_in_class(module, qualname)
        return self._classes[key]

    def _getattr(self, owner, *names):
        """``builtins.getattr`` as pickles of nested names use it: only on stand-in classes, giving a stand-in."""
        if not (isinstance(owner, type) and issubclass(owner, StandIn) and len(names) == 1 and isinstance(names[0], str)):
            raise Refused(f"builtins.getattr on a {type(owner).__name__}")
        return self._stand_in(owner.__module__, f"{owner.__qualname__}.{names[0][:80]}")

    def persistent_load(self, pid):
        """torch's storage reference ``("storage", type, key, location, numel)`` -> a :class:`_Storage`."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
            raise Unreadable(f"unexpected persistent id (a {type(pid).__name__})")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, (str, bytes)) or type(numel) is not int:
            raise Unreadable("a storage reference without a storage type, key or size")
        key = key.decode("ascii") if isinstance(key, bytes) else key
        if key not in self._storages:
            self._storages[key] = self._read_storage(key, storage_type.dtype, numel)
        storage = self._storages[key]
        if storage.flat.dtype != storage_type.dtype:
            raise Unreadable(f"storage {safe_repr(key)} is used as {storage.flat.dtype} and {storage_type.dtype}")
        return storage

    def _read_storage(self, key: str, dtype: torch.dtype, numel: int) -> _Storage:
        """The record ``data/<key>`` as a (numel,) tensor of ``dtype`` (little-endian bytes)."""
        if numel < 0:
            raise Unreadable(f"storage {safe_repr(key)} has {numel:,} elements")
        nbytes = numel * torch.empty(0, dtype=dtype).element_size()
        raw = self._records.read(f"data/{key[:80]}", nbytes)
        flat = torch.frombuffer(bytearray(raw), dtype=dtype) if numel else torch.empty(0, dtype=dtype)
        return _Storage(flat)

    def load_build(self):
        """BUILD: state for a stand-in or numpy dtype made by this load; an OrderedDict's attributes are dropped."""
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, StandIn):
            StandIn.__setstate__(target, state)
        elif isinstance(target, _NumpyDtype):
            target.set_state(state)
        elif type(target) is not collections.OrderedDict or not (state is None or isinstance(state, dict)):
            raise Unsafe(f"the pickle sets attributes on {describe(target)}; only objects it builds itself may get state")

    def _into(self, kinds: tuple[type, ...], what: str):
        """The object on top of the stack, checked to be exactly one of ``kinds`` (a dict, list or set made here)."""
        target = self.stack[-1]
        if type(target) not in kinds:
            raise Unsafe(f"the pickle {what} {describe(target)}")
        return target

    def load_setitem(self):
        value = self.stack.pop()
        key = self.stack.pop()
        _check_key(key)
        self._into((dict, collections.OrderedDict), "sets an item of")[key] = value

    def load_setitems(self):
        items = self.pop_mark()
        target = self._into((dict, collections.OrderedDict), "sets items of")
        for i in range(0, len(items), 2):
            _check_key(items[i])
            target[items[i]] = items[i + 1]

    def load_dict(self):
        items = self.pop_mark()
        for key in items[::2]:
            _check_key(key)
        self.append({items[i]: items[i + 1] for i in range(0, len(items), 2)})

    def load_append(self):
        value = self.stack.pop()
        self._into((list,), "appends to").append(value)

    def load_appends(self):
        items = self.pop_mark()
        self._into((list,), "appends to").extend(items)

    def load_additems(self):
        items = self.pop_mark()
        self._into((set,), "adds items to").update(_atom_items(items, "set"))

    def load_frozenset(self):
        self.append(frozenset(_atom_items(self.pop_mark(), "frozenset")))

    def load_newobj(self):
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new(cls, args))

    def load_newobj_ex(self):
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        if kwargs:
            raise Refused(f"{describe(cls)}.__new__ with keyword arguments")
        self.append(self._new(cls, args))

    @staticmethod
    def _new(cls, args):
        """NEWOBJ: ``cls.__new__(cls)`` for stand-in classes only (their arguments are dropped)."""
        if not (isinstance(cls, type) and issubclass(cls, StandIn)):
            raise Refused(f"{describe(cls)}.__new__")
        return cls.__new__(cls)

    dispatch = {
        **pickle._Unpickler.dispatch,
        pickle.BUILD[0]: load_build,
        pickle.SETITEM[0]: load_setitem,
        pickle.SETITEMS[0]: load_setitems,
        pickle.DICT[0]: load_dict,
        pickle.APPEND[0]: load_append,
        pickle.APPENDS[0]: load_appends,
        pickle.ADDITEMS[0]: load_additems,
        pickle.FROZENSET[0]: load_frozenset,
        pickle.NEWOBJ[0]: load_newobj,
        pickle.NEWOBJ_EX[0]: load_newobj_ex,
    }


def read_error(path: Path, exc: BaseException) -> EdgesegError:
    """The one-line EdgesegError for an exception raised while reading ``path``."""
    if isinstance(exc, Refused):
        return EdgesegError(
            f"{path}: refused: {exc} (the checkpoint asks to call it while loading; edgeseg never runs code from a checkpoint)"
        )
    if isinstance(exc, Unsafe):
        return EdgesegError(f"{path}: refused: {exc}")
    return EdgesegError(f"{path}: not a readable checkpoint ({first_line(exc)[:200]})")


def data_pkl(archive: zipfile.ZipFile, path: Path) -> str:
    """The record prefix of a torch zip: ``"archive/"`` when ``archive/data.pkl`` is in it."""
    for name in archive.namelist():
        if name == "data.pkl" or (name.endswith("/data.pkl") and name.count("/") == 1):
            return name[: -len("data.pkl")]
    raise EdgesegError(f"{path}: a zip archive without data.pkl, not a PyTorch checkpoint")


def _archive_kind_problem(path: Path) -> str | None:
    """What ``path`` is when it is not a torch zip archive (a missing file, a legacy or plain pickle, ...), else None."""
    if not path.is_file():
        return "checkpoint not found"
    if zipfile.is_zipfile(path):
        return None
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"\x80\x02\x8a\x0a"):
        return "a legacy (torch < 1.6) checkpoint; re-save it with a current torch.save"
    if head[:1] == b"\x80":
        return "a plain pickle, not a PyTorch zip checkpoint"
    return "not a PyTorch checkpoint (neither a zip archive nor a pickle)"


def _check_records(archive: zipfile.ZipFile, size: int) -> None:
    """Raise Unsafe unless the archive has at most MAX_RECORDS records, each uncompressed, within ``size`` bytes, and a small ``data.pkl``."""
    records = archive.infolist()
    if len(records) > MAX_RECORDS:
        raise Unsafe(f"{len(records):,} archive records (at most {MAX_RECORDS:,})")
    for record in records:
        name = record.filename[:80]
        if record.compress_type != zipfile.ZIP_STORED or record.file_size != record.compress_size:
            raise Unsafe(
                f"record {name} is compressed ({record.compress_size:,} bytes inflating to {record.file_size:,}); "
                "PyTorch never compresses records"
            )
        if record.header_offset + record.file_size > size:
            raise Unsafe(f"record {name} claims {record.file_size:,} bytes beyond the end of the file")
        if record.filename.endswith("data.pkl") and record.file_size > MAX_PICKLE_BYTES:
            raise Unsafe(f"record {name} holds {record.file_size:,} bytes (at most {MAX_PICKLE_BYTES:,})")


def check_torch_zip(path: Path) -> None:
    """Raise EdgesegError unless ``path`` is a torch zip archive that is safe to open.

    The one guard before either reader: edgeseg's checkpoint loader (``torch.load(weights_only=True)``)
    and ``load_restricted``. It names what the file is when it is no torch zip (missing, a legacy
    or plain pickle), and refuses more than MAX_RECORDS records, a compressed record (torch never
    compresses one; it could inflate to any size when read), a record past the end of the file
    and a ``data.pkl`` over MAX_PICKLE_BYTES.
    """
    problem = _archive_kind_problem(path)
    if problem:
        raise EdgesegError(f"{path}: {problem}")
    try:
        with zipfile.ZipFile(path) as archive:
            _check_records(archive, path.stat().st_size)
    except (Unsafe, *READ_ERRORS) as exc:
        raise read_error(path, exc) from None


def load_restricted(path: str | Path):
    """Unpickle a torch zip checkpoint with the restricted unpickler (see the module docstring).

    Returns:
        The pickled object: dicts, lists, tensors (as stored: half stays half), numbers, strings
        and :class:`StandIn` objects in place of Ultralytics / ``torch.nn`` objects.

    Raises:
        EdgesegError: missing file, not a torch zip, big-endian data, a malformed pickle,
            ``refused: <module>.<name>`` for a global outside the allowlist (nothing is called),
            or ``refused: <what>`` for state set on an object the load did not make, a
            compressed or oversized record, or a tensor view past or repeating its storage.
    """
    path = Path(path)
    check_torch_zip(path)
    try:
        with zipfile.ZipFile(path) as archive:
            records = _Records(archive, data_pkl(archive, path), path.stat().st_size)
            if f"{records.prefix}byteorder" in archive.namelist() and records.read("byteorder", limit=16) != b"little":
                raise EdgesegError(f"{path}: a big-endian checkpoint, not supported")
            return _RestrictedUnpickler(io.BytesIO(records.read("data.pkl")), records).load()
    except EdgesegError:
        raise
    except (Refused, Unsafe, *READ_ERRORS) as exc:
        raise read_error(path, exc) from None


def iter_globals(data: bytes):
    """Yield ``module.name`` of each global a pickle references (GLOBAL and STACK_GLOBAL), in order, without unpickling it."""
    memo, pushed = {}, []
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
            yield arg.replace(" ", ".")
        elif op == "STACK_GLOBAL" and len(pushed) >= 2:
            yield f"{pushed[-2]}.{pushed[-1]}"
        pushed = []


def pickle_globals(data: bytes) -> set[str]:
    """``module.name`` of every global a pickle references (GLOBAL and STACK_GLOBAL), without unpickling it.

    Raises:
        ValueError: ``data`` is not a well-formed pickle.
    """
    return set(iter_globals(data))
