"""The one reader of untrusted torch files: a pure allow-list unpickler with a memory budget.

A torch file is a zip archive: a pickle (`data.pkl`) that names the objects to build, and one member per tensor
storage. Here the pickle may only build containers, dtypes and tensor views of the stored bytes; every other class
or function it names becomes an inert `Record` of its arguments and state (Ultralytics' pickled modules), and
BUILD only ever fills such records. So no pickled code runs, no object outside the pickle is touched (module-level
state is the same afterwards), and memory stays bounded by the bytes in the file:

- a tensor may claim at most the elements its storage holds (stride-0 or overlapping views of a small storage are
  refused), all tensors together at most VIEW_FACTOR times the stored bytes;
- set, frozenset and torch.Size are built only from the pickle's own lists and tuples (never by iterating a tensor);
- a compressed member may expand at most MAX_EXPANSION times (or to MIN_EXPANSION_BYTES), and is read with that cap;
- at most MAX_DIMS dimensions per tensor, containers nested at most MAX_NESTING deep.

`scan_archive` checks a file without reading any tensor data (storages become `meta` tensors) before
`torch.load(weights_only=True)` reads it: torch's own unpickler would resize storages on BUILD, iterate stride-0
views into sets and allocate `bytearray(n)`, so it only ever sees files this scan passed. `load_inert` reads
files that hold pickled objects (Ultralytics) as data.
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import math
import pickle
import zipfile
from pathlib import Path

import torch

MAX_DIMS = 16
MAX_EXPANSION = 8  # decompressed / compressed size of a member (torch.save never compresses)
MIN_EXPANSION_BYTES = 1 << 20  # a member may always decompress to this much
VIEW_FACTOR = 4  # tensors may share storage (tied weights, views); together at most this many times the stored bytes
VIEW_SLACK_BYTES = 1 << 20
MAX_NESTING = 100  # containers within containers (Ultralytics modules: ~25); recursive readers fail near 1000
# what the objects a pickle builds may cost, estimated per object (a tensor view ~1 KB, a record ~0.5 KB, a container
# and its slots): at most OBJECT_FACTOR times the file's size plus OBJECT_SLACK_BYTES. A real file's tensor bytes dwarf
# its objects; a hostile pickle of small objects (a few bytes each in the file) would otherwise amplify ~300x.
OBJECT_FACTOR = 8
OBJECT_SLACK_BYTES = 32 << 20
_TENSOR_COST, _RECORD_COST, _CONTAINER_COST, _ITEM_COST = 1024, 512, 64, 32


class UnreadableFile(Exception):
    """Not a torch zip file, or a pickle that does not rebuild into data."""


class HostileFile(UnreadableFile):
    """A torch file that asks for more than it holds, or for an operation no saved model needs."""


class Record:
    """An object the pickle names but that is never built: `qualname`, constructor `args`, and `state`.

    One subclass per pickled global (pickle's NEWOBJ needs a class); creating one or BUILD on it only stores data.
    """

    qualname = "?"

    def __new__(cls, *args, **kwargs):
        record = object.__new__(cls)
        record.args, record.kwargs, record.state, record.items = args, kwargs, None, []
        return record

    @property
    def name(self) -> str:
        return self.qualname.rsplit(".", 1)[-1]

    @property
    def attributes(self) -> dict:
        """The object's `__dict__` as pickled (state may be `(dict, slots)`)."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2:
            parts = [part for part in state if isinstance(part, dict)]
            state = {key: value for part in parts for key, value in part.items()}
        return state if isinstance(state, dict) else {}

    def __repr__(self) -> str:
        return f"Record({self.qualname})"


class _StorageType:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "UntypedStorage": torch.uint8,
}
_DTYPES = {name: value for name, value in vars(torch).items() if isinstance(value, torch.dtype)}
_REBUILD_TENSOR, _REBUILD_PARAMETER, _ORDERED_DICT, _COUNTER, _SET, _FROZENSET, _SIZE, _DEVICE, _COMPLEX, \
    _BYTEARRAY, _BYTES = (object() for _ in range(11))
# the only globals a pickle may call, as tokens: the unpickler runs its own checked code for each
_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _REBUILD_TENSOR,
    ("torch._utils", "_rebuild_parameter"): _REBUILD_PARAMETER,
    ("torch._utils", "_rebuild_parameter_with_state"): _REBUILD_PARAMETER,
    ("collections", "OrderedDict"): _ORDERED_DICT, ("collections", "Counter"): _COUNTER,
    ("builtins", "set"): _SET, ("builtins", "frozenset"): _FROZENSET, ("torch", "Size"): _SIZE,
    ("torch", "device"): _DEVICE, ("builtins", "complex"): _COMPLEX, ("builtins", "bytearray"): _BYTEARRAY,
    ("_codecs", "encode"): _BYTES,  # how pickle protocol 2 writes bytes
}
_CONTAINERS = (list, tuple, set, frozenset)


def _charged(load):
    """An opcode that builds a container, charged for it and its items."""
    def charged_load(self):
        load(self)
        self._charge(_CONTAINER_COST + _ITEM_COST * len(self.stack[-1]))
    return charged_load


class _GuardedUnpickler(pickle._Unpickler):  # the pure-Python unpickler: every opcode below is ours to check
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, read_data: bool, file_size: int):
        super().__init__(file, encoding="utf-8")
        self.archive, self.prefix, self.read_data = archive, prefix, read_data
        self.storages: dict[str, torch.Tensor] = {}
        self.record_types: dict[str, type] = {}
        self.stored_bytes = self.view_bytes = self.spent = 0
        self.file_size, self.budget = file_size, OBJECT_FACTOR * file_size + OBJECT_SLACK_BYTES

    def _charge(self, cost: int) -> None:
        self.spent += cost
        if self.spent > self.budget:
            raise HostileFile(f"its pickle builds more objects (~{self.spent} bytes) than a file of {self.file_size} "
                              "bytes can describe")

    # ---------------------------------------------------------------- names and storages
    def find_class(self, module: str, name: str):
        # protocol 2 writes Python 2 names (`__builtin__ set`); translate them as the default find_class would
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and name in _DTYPES:
            return _DTYPES[name]
        qualname = f"{module}.{name}"
        if qualname not in self.record_types:
            self.record_types[qualname] = type(name, (Record,), {"qualname": qualname, "__module__": __name__})
        return self.record_types[qualname]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage" and isinstance(pid[1], _StorageType)
                and isinstance(pid[2], (str, int))):
            raise UnreadableFile(f"unsupported persistent record ({type(pid).__name__})")
        key, dtype = str(pid[2]), pid[1].dtype
        if key not in self.storages:
            self.storages[key] = self._storage(f"{self.prefix}/data/{key}", dtype, pid[4] if len(pid) > 4 else None)
        elif self.storages[key].dtype != dtype:
            raise HostileFile(f"storage {key} read as two dtypes")
        return self.storages[key]

    def _storage(self, member: str, dtype: torch.dtype, claimed) -> torch.Tensor:
        info = _member(self.archive, member)
        itemsize = torch.empty(0, dtype=dtype).element_size()
        if info.file_size % itemsize or (claimed is not None and claimed != info.file_size // itemsize):
            raise HostileFile(f"{member} holds {info.file_size} bytes, not the {claimed} elements its record claims")
        self.stored_bytes += info.file_size
        if not self.read_data:  # shape only: a meta tensor costs no memory
            return torch.empty(info.file_size // itemsize, dtype=dtype, device="meta")
        raw = bytearray(read_member(self.archive, info))
        return torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)

    # ---------------------------------------------------------------- calls
    def _call(self, func, args, kwargs=None):
        if isinstance(func, type) and issubclass(func, Record):
            self._charge(_RECORD_COST)
            return func(*args, **(kwargs or {}))
        if kwargs or not isinstance(args, tuple):
            raise HostileFile("a call with keyword or non-tuple arguments")
        if func is _REBUILD_TENSOR:
            return self._rebuild_tensor(*args)
        if func is _REBUILD_PARAMETER:
            if not args or not isinstance(args[0], torch.Tensor):
                raise HostileFile("a parameter without a tensor")
            return args[0]  # only the values matter; a Parameter wrapper carries no information
        value = _build_value(func, args)
        self._charge(_CONTAINER_COST + _ITEM_COST * (len(value) if hasattr(value, "__len__") else 0))
        return value

    def _rebuild_tensor(self, storage, offset, size, stride, *_):
        if not isinstance(storage, torch.Tensor):
            raise UnreadableFile("a tensor without a storage record")
        size, stride = _check_layout(storage, offset, size, stride)
        self._charge(_TENSOR_COST)
        self.view_bytes += math.prod(size) * storage.element_size()
        if self.view_bytes > VIEW_FACTOR * self.stored_bytes + VIEW_SLACK_BYTES:
            raise HostileFile(f"its tensors claim {self.view_bytes} bytes, far more than the {self.stored_bytes} "
                              "stored")
        return storage.as_strided(size, stride, offset)

    def load_reduce(self):
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def load_newobj(self):
        args = self.stack.pop()
        self.stack[-1] = self._new_record(self.stack[-1], args, {})

    def load_newobj_ex(self):
        kwargs, args = self.stack.pop(), self.stack.pop()
        self.stack[-1] = self._new_record(self.stack[-1], args, kwargs)

    def _new_record(self, cls, args, kwargs):
        if not (isinstance(cls, type) and issubclass(cls, Record)) or not isinstance(args, tuple) \
                or not isinstance(kwargs, dict):
            raise HostileFile("NEWOBJ of a class that is not a plain record")
        self._charge(_RECORD_COST)
        return cls(*args, **kwargs)

    def _instantiate(self, klass, args):  # INST / OBJ (protocols 0 and 1)
        self.append(self._call(klass, tuple(args)))

    # ---------------------------------------------------------------- filling objects
    def load_build(self):
        state, target = self.stack.pop(), self.stack[-1]
        if isinstance(target, Record):
            target.state = state
        elif type(target) is not collections.OrderedDict or not isinstance(state, dict):
            # never __setstate__ / setattr on a real object
            raise HostileFile(f"BUILD on {_name_of(target)} (only pickled objects may be built)")
        # a state_dict's `_metadata` (module versions): not needed to read the weights, dropped

    def load_append(self):
        item = self.stack.pop()
        self._append_target().append(item)

    def load_appends(self):
        items = self.pop_mark()
        self._charge(_ITEM_COST * len(items))
        self._append_target().extend(items)

    def _append_target(self) -> list:
        target = self.stack[-1]
        if type(target) is list:
            return target
        if isinstance(target, Record):  # list subclasses
            return target.items
        raise HostileFile(f"APPEND to a {type(target).__name__}")

    def load_setitem(self):
        value, key = self.stack.pop(), self.stack.pop()
        self._set_items([key, value])

    def load_setitems(self):
        self._set_items(self.pop_mark())

    def _set_items(self, flat: list) -> None:
        self._charge(_ITEM_COST * len(flat))
        target = self.stack[-1]
        pairs = zip(flat[::2], flat[1::2])
        if type(target) in (dict, collections.OrderedDict, collections.Counter):
            for key, value in pairs:
                target[key] = value
        elif isinstance(target, Record):  # dict subclasses
            target.items.extend(pairs)
        else:
            raise HostileFile(f"SETITEM on a {type(target).__name__}")

    def load_additems(self):
        items = self.pop_mark()
        self._charge(_ITEM_COST * len(items))
        if type(self.stack[-1]) is not set:
            raise HostileFile(f"ADDITEMS on a {type(self.stack[-1]).__name__}")
        self.stack[-1].update(_hashable_items(items))

    def load_frozenset(self):
        items = _hashable_items(self.pop_mark())
        self._charge(_CONTAINER_COST + _ITEM_COST * len(items))
        self.append(frozenset(items))

    def _refuse_extension(self):
        raise HostileFile("copyreg extension codes")

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.APPEND[0]] = load_append
    dispatch[pickle.APPENDS[0]] = load_appends
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.ADDITEMS[0]] = load_additems
    dispatch[pickle.FROZENSET[0]] = load_frozenset
    for _opcode in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_opcode[0]] = _refuse_extension
    for _opcode in (pickle.EMPTY_LIST, pickle.EMPTY_DICT, pickle.EMPTY_SET, pickle.LIST, pickle.DICT, pickle.TUPLE,
                    pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3):
        dispatch[_opcode[0]] = _charged(dispatch[_opcode[0]])
    del _opcode


def _check_layout(storage: torch.Tensor, offset, size, stride) -> tuple[tuple, tuple]:
    """Size and stride as int tuples whose view lies inside the storage and claims no more elements than it holds."""
    if not (isinstance(size, (tuple, torch.Size)) and isinstance(stride, tuple) and len(size) == len(stride)
            and len(size) <= MAX_DIMS and all(_is_int(v) and v >= 0 for v in (offset, *size, *stride))):
        raise HostileFile("a tensor with a malformed size or stride")
    count = math.prod(size)
    if count and (offset + count > storage.numel()
                  or offset + sum((n - 1) * s for n, s in zip(size, stride)) >= storage.numel()):
        raise HostileFile(f"a tensor of size {tuple(size)} claims {count} elements; its storage holds "
                          f"{storage.numel() - min(offset, storage.numel())} (a stride-0 or overlapping view?)")
    return tuple(size), tuple(stride)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _hashable_items(items) -> list:
    if any(isinstance(item, torch.Tensor) for item in items):
        raise HostileFile("a set of tensors")
    return items


def _build_value(func, args: tuple):
    """The allow-listed builtins, each from arguments the pickle holds itself (never by iterating a tensor)."""
    if func in (_ORDERED_DICT, _COUNTER, _SET, _FROZENSET) and len(args) <= 1 \
            and all(isinstance(arg, (*_CONTAINERS, dict)) for arg in args):
        items = list(args[0]) if args else []
        kind = {_ORDERED_DICT: collections.OrderedDict, _COUNTER: collections.Counter, _SET: set,
                _FROZENSET: frozenset}[func]
        return kind(_hashable_items(items) if kind in (set, frozenset) else items)
    if func is _SIZE and len(args) == 1 and isinstance(args[0], (list, tuple)) and len(args[0]) <= MAX_DIMS \
            and all(_is_int(v) for v in args[0]):
        return torch.Size(args[0])
    if func is _DEVICE and 1 <= len(args) <= 2 and isinstance(args[0], str) and len(args[0]) < 64:
        return torch.device(*args)
    if func is _COMPLEX and len(args) == 2 and all(isinstance(v, (int, float)) for v in args):
        return complex(*args)
    if func is _BYTEARRAY and len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytearray(args[0])  # bytearray(n) would allocate n bytes from a few in the file
    if func is _BYTES and len(args) == 2 and isinstance(args[0], str) and args[1] == "latin1":
        return args[0].encode("latin1")
    raise HostileFile(f"an unexpected call ({_name_of(func)})")


def _name_of(func) -> str:
    names = [f"{module}.{name}" for (module, name), token in _ALLOWED.items() if token is func]
    return names[0] if names else type(func).__name__


def _member(archive: zipfile.ZipFile, name: str) -> zipfile.ZipInfo:
    """A member whose declared size is one it may decompress to."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise UnreadableFile(f"{name} missing from the archive") from None
    if info.compress_type != zipfile.ZIP_STORED \
            and info.file_size > max(MAX_EXPANSION * info.compress_size, MIN_EXPANSION_BYTES):
        raise HostileFile(f"{name} would expand from {info.compress_size} to {info.file_size} bytes")
    return info


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """Its bytes, never more than its header declares (read with that cap)."""
    with archive.open(info) as handle:
        data = handle.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise UnreadableFile(f"{info.filename} holds {len(data)} bytes, its header says {info.file_size}")
    return data


def _unpickle(path: str | Path, read_data: bool) -> tuple[object, bool]:
    """(the pickled object, whether it named any non-allow-listed global)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if len(set(archive.namelist())) != len(archive.namelist()):  # two readers could pick different copies
                raise HostileFile("the archive holds two members of the same name")
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                raise UnreadableFile("not a torch zip file (no single data.pkl)")
            prefix = pickles[0][: -len("/data.pkl")]
            if f"{prefix}/byteorder" in archive.namelist() \
                    and read_member(archive, _member(archive, f"{prefix}/byteorder")) != b"little":
                raise UnreadableFile("big-endian tensors are not supported")
            program = read_member(archive, _member(archive, pickles[0]))
            unpickler = _GuardedUnpickler(io.BytesIO(program), archive, prefix, read_data, Path(path).stat().st_size)
            result = unpickler.load()
            _check_nesting(result)
            return result, bool(unpickler.record_types)
    except UnreadableFile:
        raise
    except RecursionError:
        raise HostileFile("objects nested too deeply") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise UnreadableFile(f"not a torch zip file, or truncated ({type(exc).__name__})") from None
    except Exception as exc:  # a malformed or hostile pickle: never more than "unreadable"
        raise UnreadableFile(f"malformed pickle ({type(exc).__name__}: {str(exc)[:80]})") from None


def _check_nesting(root) -> None:
    """Containers nested at most MAX_NESTING deep, so that no recursive reader of the result runs out of stack.
    Iterative; a shared object is walked again only when reached deeper, a cycle is not followed."""
    deepest: dict[int, int] = {}
    on_path: set[int] = set()
    todo = [(root, 0, False)]
    while todo:
        obj, depth, leaving = todo.pop()
        if leaving:
            on_path.discard(id(obj))
            continue
        children = _children(obj)
        if children is None or id(obj) in on_path or deepest.get(id(obj), -1) >= depth:
            continue
        if depth > MAX_NESTING:
            raise HostileFile(f"objects nested more than {MAX_NESTING} deep")
        deepest[id(obj)] = depth
        on_path.add(id(obj))
        todo.append((obj, depth, True))
        todo.extend((child, depth + 1, False) for child in children)


def _children(obj) -> list | None:
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(obj)
    if isinstance(obj, Record):
        return [obj.args, obj.kwargs, obj.state, obj.items]
    return None


def scan_archive(path: str | Path) -> bool:
    """Check a torch file without reading its tensors; True when it holds pickled objects (not plain data)."""
    return _unpickle(path, read_data=False)[1]


def load_inert(path: str | Path):
    """The pickled object of a torch zip file, with tensors rebuilt and every other object a `Record`."""
    return _unpickle(path, read_data=True)[0]
