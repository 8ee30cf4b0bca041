"""Read a torch zip file whose pickle holds whole objects (e.g. Ultralytics' pickled modules) without running it.

`torch.load(weights_only=True)` refuses such files, and `weights_only=False` would run whatever the pickle names.
Here the pickle may only build containers, dtypes and tensors (read from the zip's storage records); every other
class or function it names becomes an inert `Record` of its arguments and state, so no pickled code ever runs.
"""

from __future__ import annotations

import _compat_pickle
import collections
import pickle
import zipfile
from pathlib import Path

import torch


class UnreadableFile(Exception):
    """Not a torch zip file, or a pickle that does not rebuild into data."""


class Record:
    """An object the pickle names but that is never built: `qualname`, constructor `args`, and `state`.

    One subclass per pickled global (pickle's NEWOBJ needs a class); calling it, building it or setting its state
    only stores data.
    """

    qualname = "?"

    def __new__(cls, *args, **kwargs):
        record = object.__new__(cls)
        record.args, record.kwargs, record.state, record.items = args, kwargs, None, []
        return record

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state) -> None:
        self.state = state

    def append(self, item) -> None:  # APPEND(S) on list subclasses
        self.items.append(item)

    def extend(self, items) -> None:
        self.items.extend(items)

    def __setitem__(self, key, value) -> None:  # SETITEM(S) on dict subclasses
        self.items.append((key, value))

    @property
    def name(self) -> str:
        return self.qualname.rsplit(".", 1)[-1]

    @property
    def attributes(self) -> dict:
        """The object's `__dict__` as pickled (state may be `(dict, slots)`)."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2:
            state = {**(state[0] or {}), **(state[1] or {})}
        return state if isinstance(state, dict) else {}

    def __repr__(self) -> str:
        return f"Record({self.qualname})"


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    if not isinstance(storage, torch.Tensor):
        raise UnreadableFile("a tensor without a storage record")
    return storage.as_strided(tuple(size), tuple(stride), offset)  # bounds-checked against the storage


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
    return data  # only the values matter; a Parameter wrapper would carry no information


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "UntypedStorage": torch.uint8,
}
_DTYPES = {name: value for name, value in vars(torch).items() if isinstance(value, torch.dtype)}

# the only callables a pickle may reach: tensor rebuilds, containers, and the bytes decoder of protocol 2
_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch", "Size"): torch.Size,
}


class _StorageType:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


class _InertUnpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file, encoding="utf-8")
        self.archive, self.prefix, self.storages = archive, prefix, {}
        self.record_types: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        # protocol 2 writes Python 2 names (`__builtin__ set`); the default find_class would translate them
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "_codecs" and name == "encode":
            return _encode_bytes
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and name in _DTYPES:
            return _DTYPES[name]
        qualname = f"{module}.{name}"
        if qualname not in self.record_types:
            self.record_types[qualname] = type(name, (Record,), {"qualname": qualname, "__module__": __name__})
        return self.record_types[qualname]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise UnreadableFile(f"unsupported persistent record {str(pid)[:60]}")
        key = str(pid[2])
        if key not in self.storages:
            try:
                raw = bytearray(self.archive.read(f"{self.prefix}/data/{key}"))
            except KeyError:
                raise UnreadableFile(f"storage {key} missing from the archive") from None
            dtype = pid[1].dtype
            self.storages[key] = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        return self.storages[key]


def _encode_bytes(text: str, encoding: str = "latin1") -> bytes:
    if not isinstance(text, str) or encoding != "latin1":  # the only form pickle protocol 2 writes bytes in
        raise UnreadableFile("unexpected bytes record")
    return text.encode("latin1")


def load_inert(path: str | Path):
    """The pickled object of a torch zip file, with tensors rebuilt and every other object a `Record`."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                raise UnreadableFile("not a torch zip file (no single data.pkl)")
            prefix = pickles[0][: -len("/data.pkl")]
            if f"{prefix}/byteorder" in archive.namelist() and archive.read(f"{prefix}/byteorder") != b"little":
                raise UnreadableFile("big-endian tensors are not supported")
            with archive.open(pickles[0]) as file:
                return _InertUnpickler(file, archive, prefix).load()
    except UnreadableFile:
        raise
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnreadableFile(f"not a torch zip file ({type(exc).__name__})") from None
    except Exception as exc:  # a malformed or hostile pickle: never more than "unreadable"
        raise UnreadableFile(f"malformed pickle ({type(exc).__name__}: {str(exc)[:80]})") from None
