"""Small hostile torch files, written opcode by opcode: each asks a loader for far more than it holds.

A torch file is a zip: `archive/data.pkl` (a pickle) and one member per tensor storage. The pickles here are
protocol 2, assembled from the helpers below, so that no pickler refuses or rewrites what is written.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path


def p_int(n: int) -> bytes:
    if 0 <= n < 256:
        return b"K" + bytes([n])
    if -(2 ** 31) <= n < 2 ** 31:
        return b"J" + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def p_float(x: float) -> bytes:
    return b"G" + struct.pack(">d", x)


def p_str(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def p_tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def p_list(*items: bytes) -> bytes:
    return b"](" + b"".join(items) + b"e"


def p_dict(pairs: dict[str, bytes]) -> bytes:
    return b"}(" + b"".join(p_str(key) + value for key, value in pairs.items()) + b"u"


def p_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def p_call(func: bytes, *args: bytes) -> bytes:
    return func + p_tuple(*args) + b"R"


def p_object(qualname: str, state: dict[str, bytes]) -> bytes:
    """NEWOBJ of a class by name, then BUILD with its __dict__ (how nn.Modules are pickled)."""
    module, name = qualname.rsplit(".", 1)
    return p_global(module, name) + b")\x81" + p_dict(state) + b"b"


def p_storage(key: str, storage: str = "FloatStorage", numel: int = 1) -> bytes:
    return p_tuple(p_str("storage"), p_global("torch", storage), p_str(key), p_str("cpu"), p_int(numel)) + b"Q"


def p_tensor(key: str, size: tuple, stride: tuple, storage: str = "FloatStorage", numel: int = 1) -> bytes:
    """torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())."""
    return p_call(p_global("torch._utils", "_rebuild_tensor_v2"), p_storage(key, storage, numel), p_int(0),
                  p_tuple(*map(p_int, size)), p_tuple(*map(p_int, stride)), b"\x89",
                  p_call(p_global("collections", "OrderedDict")))


def write_torch_zip(path: Path, program: bytes, storages: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02" + program + b".")
        archive.writestr("archive/byteorder", b"little")
        for key, data in (storages or {}).items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", b"3\n")
    return path


def state_dict_file(path: Path, value: bytes, storages: dict[str, bytes] | None = None) -> Path:
    """{'state_dict': {'backbone.image_model.stem.conv.weight': value}}: what a YOLO-World loader looks for."""
    return write_torch_zip(path, p_dict({"state_dict": p_dict({"backbone.image_model.stem.conv.weight": value})}),
                           storages)


# ---------------------------------------------------------------- the tricks of issue 23

def stride0_container(path: Path, container: tuple[str, str] = ("builtins", "set"), count: int = 2_000_000) -> Path:
    """set / frozenset / torch.Size of a stride-0 view: `count` elements claimed from one stored float."""
    view = p_tensor("0", (count,), (0,))
    return state_dict_file(path, p_call(p_global(*container), view), {"0": b"\0" * 4})


def build_on_tensor(path: Path, count: int = 100_000_000) -> Path:
    """BUILD on a rebuilt tensor of an empty storage: Tensor.__setstate__ -> set_(storage, 0, size, stride) resizes
    the storage to `count` floats."""
    tensor = p_tensor("0", (0,), (1,), numel=0) + p_tuple(p_storage("0", numel=0), p_int(0), p_tuple(p_int(count)),
                                                           p_tuple(p_int(1)))
    return state_dict_file(path, tensor + b"b", {"0": b""})


def build_on_function(path: Path) -> Path:
    """BUILD with slot state on an allow-listed function: would replace its __defaults__ for the whole process."""
    slots = p_dict({"__defaults__": p_tuple(p_int(7)), "__doc__": p_str("changed by a file")})
    return state_dict_file(path, p_global("torch._utils", "_rebuild_tensor_v2") + p_tuple(b"N", slots) + b"b")


def deflate_bomb(path: Path, megabytes: int = 200) -> Path:
    """A `megabytes` storage of zeros, DEFLATE-compressed to ~1/1000 of that (written in chunks)."""
    numel = megabytes * (1 << 20) // 4
    program = p_dict({"state_dict": p_dict({"backbone.image_model.stem.conv.weight":
                                            p_tensor("0", (numel,), (1,), numel=numel)})})
    member = zipfile.ZipInfo("archive/data/0")
    member.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02" + program + b".")
        archive.writestr("archive/byteorder", b"little")
        with archive.open(member, "w", force_zip64=True) as handle:
            for _ in range(megabytes):
                handle.write(bytes(1 << 20))
    return path


def ultralytics_model(path: Path, txt_feats: bytes, layers: list[bytes] | None = None,
                      storages: dict[str, bytes] | None = None) -> Path:
    """{'model': WorldModel} as Ultralytics pickles it: `_modules.model` (the layers), `txt_feats`, `names`."""
    layer_list = p_object("torch.nn.modules.container.Sequential",
                          {"_modules": p_dict({str(i): layer for i, layer in enumerate(layers or [])})})
    model = p_object("ultralytics.nn.tasks.WorldModel", {"_modules": p_dict({"model": layer_list}),
                                                         "txt_feats": txt_feats, "names": p_list(p_str("person"))})
    return write_torch_zip(path, p_dict({"model": model}), storages)


def ultralytics_stride0_txt_feats(path: Path, count: int = 200_000) -> Path:
    """txt_feats (1, count, 512) as a stride-0 view of one stored half."""
    return ultralytics_model(path, p_tensor("0", (1, count, 512), (0, 0, 0), "HalfStorage"), [], {"0": b"\0" * 2})


# Ultralytics v2 layer classes by index (yoloworld.models.ultralytics.V2_LAYERS; 10, 11, 13, 14, 17, 20 hold none)
V2_KINDS = ["Conv", "Conv", "C2f", "Conv", "C2f", "Conv", "C2f", "Conv", "C2f", "SPPF", "Upsample", "Concat",
            "C2fAttn", "Upsample", "Concat", "C2fAttn", "Conv", "Concat", "C2fAttn", "Conv", "Concat", "C2fAttn",
            "WorldDetect"]


def _layers(first: bytes) -> list[bytes]:
    rest = [p_object(f"ultralytics.nn.modules.{kind}", {"_modules": b"}"}) for kind in V2_KINDS[1:]]
    return [first, *rest]


def ultralytics_big_weight(path: Path, shape: tuple = (100_000, 512, 3, 3), stride: tuple | None = None,
                           elements: int | None = None) -> Path:
    """A v2 layer layout whose stem conv weight claims `shape`; the stored bytes hold `elements` halves
    (default: one, read as a stride-0 view)."""
    elements = elements or 1
    stride = stride or (0,) * len(shape)
    conv = p_object("torch.nn.modules.conv.Conv2d", {"_parameters": p_dict({
        "weight": p_tensor("1", shape, stride, "HalfStorage", elements)})})
    stem = p_object("ultralytics.nn.modules.conv.Conv", {"_modules": p_dict({"conv": conv})})
    txt_feats = p_tensor("0", (1, 1, 512), (512, 512, 1), "HalfStorage", 512)
    return ultralytics_model(path, txt_feats, _layers(stem), {"0": b"\0" * 1024, "1": b"\0" * 2 * elements})


def ultralytics_deep(path: Path, depth: int = 20_000) -> Path:
    """A stem layer whose submodules nest `depth` deep (legal pickle, each level a few bytes)."""
    open_level = p_global("torch.nn", "Sequential") + b")\x81" + b"}(" + p_str("_modules") + b"}(" + p_str("m")
    close_level = b"u" + b"u" + b"b"
    deep = open_level * depth + b"N" + close_level * depth
    stem = p_object("ultralytics.nn.modules.conv.Conv", {"_modules": p_dict({"conv": deep})})
    txt_feats = p_tensor("0", (1, 1, 512), (512, 512, 1), "HalfStorage", 512)
    return ultralytics_model(path, txt_feats, _layers(stem), {"0": b"\0" * 1024})


def absurd_settings(path: Path, **settings) -> Path:
    """A 1-2 KB plain checkpoint (torch.load(weights_only=True) reads it) whose model settings ask for a huge model."""
    import torch

    model = {"deepen": 0.33, "widen": 0.25, "last_stage_channels": 1024, "contrastive": "bn", "neck_block": "text",
             "min_cls_channels": 80, "embed_dims": 512, "text_hidden": None, **settings}
    torch.save({"meta": {"yoloworld": {"model": model}},
                "state_dict": {"backbone.image_model.stem.conv.weight": torch.zeros(16, 3, 3, 3)}}, path)
    return path


def object_flood(path: Path, count: int = 1_500_000) -> Path:
    """`count` empty tensor views in a list, 6 bytes each: the rebuild call and its arguments are memoized once and
    fetched again (BINGET) for every tensor, so a 9 MB file asks for ~1 GB of tensor objects."""
    args = p_tuple(p_storage("0", numel=0), p_int(0), p_tuple(p_int(0)), p_tuple(p_int(1)), b"\x89",
                   p_call(p_global("collections", "OrderedDict")))
    setup = b"]q\x00" + p_global("torch._utils", "_rebuild_tensor_v2") + b"q\x010" + args + b"q\x020"
    return write_torch_zip(path, setup + b"h\x01h\x02Ra" * count, {"0": b""})
