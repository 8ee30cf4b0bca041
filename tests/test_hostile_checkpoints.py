"""Hostile checkpoint files (issue 23): each small file ends in one line and exit code 2 through the real CLI, within
seconds, in a child process under a memory limit whose peak memory stays at that of an ordinary `predict` of the demo
model plus a small multiple of the file's size; loading changes no module-level state.

The files are built opcode by opcode (tests/hostile_files.py). The CLI runs share one module fixture and run a few
at a time: each costs a torch import (~1 GB, several seconds), the checks themselves milliseconds.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import FIXTURES
from hostile_files import (
    absurd_settings,
    build_on_function,
    build_on_tensor,
    deflate_bomb,
    object_flood,
    p_call,
    p_dict,
    p_global,
    p_str,
    p_tensor,
    stride0_container,
    ultralytics_big_weight,
    ultralytics_deep,
    ultralytics_stride0_txt_feats,
    write_torch_zip,
)

import yoloworld.models.safe_pickle as safe_pickle
from yoloworld.errors import CheckpointError
from yoloworld.models.checkpoint import open_checkpoint, read_checkpoint
from yoloworld.models.safe_pickle import UnreadableFile, load_inert, scan_archive

DEMO = Path(__file__).resolve().parents[1] / "yoloworld" / "assets" / "demo.pt"
ADDRESS_SPACE_LIMIT = 8 << 30  # RLIMIT_AS of each child: torch alone maps ~3 GB; the bound below is the real test
SLACK = 64 << 20  # allocator and import noise between two runs of the same CLI


@dataclass
class Outcome:
    returncode: int
    stderr: str
    peak: int  # bytes, the child's peak resident memory
    seconds: float


def run_cli(args: list, cwd: Path) -> Outcome:
    """`python -m yoloworld ARGS` in a fresh process under an address-space limit; its own peak RSS via wait4."""
    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    errors = cwd / f"stderr_{time.monotonic_ns()}.txt"
    start = time.monotonic()
    with open(errors, "w") as stderr:
        child = subprocess.Popen([sys.executable, "-m", "yoloworld", *map(str, args)], stdout=subprocess.DEVNULL,
                                 stderr=stderr, cwd=cwd, env=env, preexec_fn=limit_memory)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return Outcome(child.returncode, errors.read_text(), usage.ru_maxrss * 1024, time.monotonic() - start)


def demo_variant(path: Path, change) -> Path:
    """The demo model with `change(checkpoint)` applied: a damaged but plain (weights_only) file."""
    checkpoint = torch.load(DEMO, weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, path)
    return path


def poison_first_weight(checkpoint: dict) -> None:
    key = next(k for k, v in checkpoint["state_dict"].items() if v.is_floating_point() and k.endswith("weight"))
    checkpoint["state_dict"][key][0] = float("nan")


def truncated_clip(source: Path, folder: Path) -> Path:
    folder.mkdir()
    for file in source.iterdir():
        data = file.read_bytes()
        (folder / file.name).write_bytes(data[: len(data) // 2] if file.suffix == ".safetensors" else data)
    return folder


def cases(root: Path) -> dict[str, tuple[Path, list]]:
    """name -> (hostile file, CLI arguments)."""
    image = root / "img.png"
    cv2.imwrite(str(image), np.full((64, 64, 3), 127, np.uint8))

    def predict(path):
        return path, ["predict", image, "--weights", path, "--no-save"]

    def convert(path):
        return path, ["convert", "ultralytics", path, "--out", root / f"{path.stem}.pth"]

    fewer, tiny_clip = root / "fewer_classes.pt", FIXTURES / "tiny-clip"
    planned = {
        "baseline": (DEMO, ["predict", image, "--weights", DEMO, "--no-save"]),
        "stride0 set": predict(stride0_container(root / "stride0_set.pt")),
        "BUILD on a tensor": predict(build_on_tensor(root / "build_tensor.pt")),
        "BUILD on a function": predict(build_on_function(root / "build_function.pt")),
        "DEFLATE bomb": predict(deflate_bomb(root / "deflate_bomb.pt")),
        "object flood": predict(object_flood(root / "object_flood.pt")),
        "Ultralytics stride0 txt_feats (predict)": predict(ultralytics_stride0_txt_feats(root / "txt_feats.pt")),
        "Ultralytics stride0 txt_feats (convert)": convert(root / "txt_feats.pt"),
        "Ultralytics big weight (convert)": convert(ultralytics_big_weight(root / "big_weight.pt")),
        "Ultralytics deep nesting": predict(ultralytics_deep(root / "deep.pt")),
        "num_prompts 100000": predict(absurd_settings(root / "num_prompts.pth", num_prompts=100_000)),
        "num_prompts 16000, no such weights": predict(absurd_settings(root / "num_prompts_16k.pth", num_prompts=16_000)),
        "NaN weight": predict(demo_variant(root / "nan.pt", poison_first_weight)),
        "fewer classes than embeddings": predict(demo_variant(fewer, lambda c: c["meta"]["yoloworld"].update(
            classes=[["red circle"], ["red square"]]))),
    }
    if tiny_clip.is_dir():  # the parity fixtures' tiny CLIP, cut in half
        clip = truncated_clip(tiny_clip, root / "truncated-clip")
        planned["truncated --vision-model"] = (clip, ["predict", image, "--weights", DEMO, "--no-save",
                                                      "--vision-model", clip, "--visual-prompt",
                                                      f"thing={image}:0,0,32,32"])
    return planned


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, Outcome]]:
    root = tmp_path_factory.mktemp("hostile")
    planned = cases(root)
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(run_cli, args, root) for name, (_, args) in planned.items()}
        return {name: (planned[name][0], future.result()) for name, future in futures.items()}


EXPECTED = {  # case -> words its one line must hold
    "stride0 set": "claims 2000000 elements; its storage holds 1",
    "BUILD on a tensor": "BUILD on Tensor",
    "BUILD on a function": "BUILD on torch._utils._rebuild_tensor_v2",
    "DEFLATE bomb": "would expand from",
    "object flood": "its pickle builds more objects",
    "Ultralytics stride0 txt_feats (predict)": "claims 102400000 elements",
    "Ultralytics stride0 txt_feats (convert)": "claims 102400000 elements",
    "Ultralytics big weight (convert)": "claims 460800000 elements",
    "Ultralytics deep nesting": "objects nested more than 100 deep",
    "num_prompts 100000": "num_prompts 100000: at most 16384",
    "num_prompts 16000, no such weights": "missing keys (e.g. embeddings",
    "NaN weight": "holds NaN or infinite values",
    "fewer classes than embeddings": "names 3 class texts (padding included) but its class_embeddings have shape (10,",
    "truncated --vision-model": "model.safetensors: truncated or damaged safetensors file",
}


def test_the_demo_baseline_runs(runs):
    _, outcome = runs["baseline"]
    assert outcome.returncode == 0, outcome.stderr


@pytest.mark.parametrize("case", list(EXPECTED))
def test_hostile_file_is_one_line_in_seconds_with_bounded_memory(runs, case):
    if case not in runs:
        pytest.skip(f"parity fixtures (tiny-clip) not found at {FIXTURES}")
    path, outcome = runs[case]
    baseline = runs["baseline"][1]
    lines = outcome.stderr.strip().splitlines()
    assert outcome.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), outcome.stderr
    assert EXPECTED[case] in lines[0] and str(path.name) in lines[0], lines[0]
    size = sum(f.stat().st_size for f in path.iterdir()) if path.is_dir() else path.stat().st_size
    assert outcome.peak <= baseline.peak + 4 * size + SLACK, (outcome.peak, baseline.peak, size)
    assert outcome.seconds <= max(3 * baseline.seconds, 30), (outcome.seconds, baseline.seconds)
    print(f"{case}: {size} bytes, peak {outcome.peak >> 20} MB (baseline {baseline.peak >> 20} MB), "
          f"{outcome.seconds:.1f} s")


# ---------------------------------------------------------------- in-process: the same tricks, their variants

def module_state() -> dict:
    """What a pickle could try to change: defaults, docs and attributes of every function and class it may name."""
    import collections

    owners = [safe_pickle, torch._utils, collections]
    objects = [value for owner in owners for value in vars(owner).values()
               if isinstance(value, (types.FunctionType, type))] + [torch.Size, set, frozenset]
    return {id(obj): (getattr(obj, "__defaults__", None), getattr(obj, "__kwdefaults__", None), obj.__doc__,
                      dict(vars(obj)) if isinstance(obj, types.FunctionType) else None) for obj in objects}


@pytest.mark.parametrize("build", [build_on_function, build_on_tensor, ultralytics_stride0_txt_feats,
                                   lambda path: stride0_container(path, ("torch", "Size"))])
def test_loading_changes_no_module_level_state(tmp_path, build):
    path = build(tmp_path / "hostile.pt")
    before = module_state()
    with pytest.raises(CheckpointError):
        read_checkpoint(path)
    with pytest.raises(UnreadableFile):
        load_inert(path)
    assert module_state() == before


def test_build_never_reaches_a_tensor(tmp_path):
    """Before: Tensor.__setstate__ -> set_() resized the empty storage to 400 MB."""
    with pytest.raises(UnreadableFile, match="BUILD on Tensor"):
        load_inert(build_on_tensor(tmp_path / "build.pt"))


@pytest.mark.parametrize("container", [("builtins", "set"), ("builtins", "frozenset"), ("torch", "Size")])
def test_stride0_views_never_reach_a_container(tmp_path, container):
    path = stride0_container(tmp_path / "view.pt", container, count=50_000_000)
    start = time.monotonic()
    for reader in (scan_archive, load_inert):
        with pytest.raises(UnreadableFile, match="claims 50000000 elements; its storage holds 1"):
            reader(path)
    assert time.monotonic() - start < 1


def test_containers_are_built_only_from_the_pickle_itself(tmp_path):
    """A dense tensor is no argument for set/frozenset/torch.Size either: iterating it makes one object per element."""
    count = 100_000
    view = p_tensor("0", (count,), (1,), numel=count)
    for module, name in (("builtins", "set"), ("torch", "Size")):
        path = write_torch_zip(tmp_path / f"{name}.pt", p_dict({"x": p_call(p_global(module, name), view)}),
                               {"0": bytes(4 * count)})
        with pytest.raises(UnreadableFile):
            scan_archive(path)


def test_many_views_of_one_storage_are_refused(tmp_path):
    """Views may share storage (tied weights), but not claim many times the bytes stored."""
    views = {f"w{i}": p_tensor("0", (262_144,), (1,), numel=262_144) for i in range(12)}
    path = write_torch_zip(tmp_path / "views.pt", p_dict(views), {"0": bytes(4 * 262_144)})
    with pytest.raises(UnreadableFile, match="claim"):
        scan_archive(path)
    shared = write_torch_zip(tmp_path / "tied.pt", p_dict({k: views[k] for k in ("w0", "w1")}),
                             {"0": bytes(4 * 262_144)})
    assert scan_archive(shared) is False and torch.equal(*load_inert(shared).values())


@pytest.mark.parametrize("settings", [dict(num_prompts=10 ** 9), dict(widen=64.0), dict(deepen=1000.0),
                                      dict(embed_dims=1 << 20), dict(widen=float("inf")), dict(mask_channels=4096)])
def test_absurd_settings_are_refused_before_building(tmp_path, settings):
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="at most"):
        open_checkpoint(absurd_settings(tmp_path / "absurd.pth", **settings))
    assert time.monotonic() - start < 5


def test_settings_within_bounds_must_match_the_weights(tmp_path):
    """widen 2.0 is allowed, but this 2 KB file holds no such weights: refused from a meta-device skeleton."""
    with pytest.raises(CheckpointError, match="stem.conv.weight has shape \\(16, 3, 3, 3\\), the model expects "
                                              "\\(128, 3, 3, 3\\)"):
        open_checkpoint(absurd_settings(tmp_path / "wide.pth", widen=2.0, deepen=2.0))


def test_class_metadata_must_be_lists_of_names(tmp_path):
    path = demo_variant(tmp_path / "int_classes.pt", lambda c: c["meta"]["yoloworld"].update(classes=5))
    with pytest.raises(CheckpointError, match="int_classes.pt: malformed class list in the metadata"):
        open_checkpoint(path)
    path = demo_variant(tmp_path / "str_classes.pt", lambda c: c["meta"]["yoloworld"].update(classes=["ab", "cd"]))
    with pytest.raises(CheckpointError, match="malformed class list"):
        open_checkpoint(path)


def test_compressed_members_within_the_ratio_still_load(tmp_path):
    """A re-zipped (DEFLATE) file of real weights is fine: the cap is on expansion, not on compression."""
    import zipfile

    source = zipfile.ZipFile(DEMO)
    rezipped = tmp_path / "rezipped.pt"
    with zipfile.ZipFile(rezipped, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in source.namelist():
            archive.writestr(name, source.read(name))
    assert scan_archive(rezipped) is False
    assert torch.equal(load_inert(rezipped)["class_embeddings"], load_inert(DEMO)["class_embeddings"])


def test_plain_checkpoints_read_the_same_as_torch_load():
    ours, theirs = load_inert(DEMO), torch.load(DEMO, weights_only=True)
    assert ours["meta"] == theirs["meta"] and ours["state_dict"].keys() == theirs["state_dict"].keys()
    assert all(torch.equal(ours["state_dict"][k], v) for k, v in theirs["state_dict"].items())


def test_persistent_ids_name_only_storages(tmp_path):
    path = write_torch_zip(tmp_path / "pid.pt", p_dict({"x": p_str("a") + b"Q"}))
    with pytest.raises(UnreadableFile, match="unsupported persistent record"):
        scan_archive(path)


def test_tower_settings_must_match_the_towers_weights():
    """A stored text/vision config is checked against the tower's weights before the tower is built."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from yoloworld.models.checkpoint_checks import check_tower

    small = CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           projection_dim=32, vocab_size=100, max_position_embeddings=16)
    state = {f"tower.{k}": v for k, v in CLIPTextModelWithProjection(small).state_dict().items()}
    check_tower(CLIPTextModelWithProjection, small, state, "tower.", "file.pth", "text tower")
    deep = CLIPTextConfig(**{**small.to_dict(), "num_hidden_layers": 100_000})
    with pytest.raises(CheckpointError, match="file.pth: the text tower config has 100000 layers, the file's weights 2"):
        check_tower(CLIPTextModelWithProjection, deep, state, "tower.", "file.pth", "text tower")
    wide = CLIPTextConfig(**{**small.to_dict(), "intermediate_size": 1 << 20})
    with pytest.raises(CheckpointError, match="fc1.weight has shape \\(64, 32\\), the model expects \\(1048576, 32\\)"):
        check_tower(CLIPTextModelWithProjection, wide, state, "tower.", "file.pth", "text tower")


def test_storage_records_must_hold_what_they_claim(tmp_path):
    path = write_torch_zip(tmp_path / "claims.pt", p_dict({"w": p_tensor("0", (1,), (1,), numel=500_000_000)}),
                           {"0": bytes(4)})
    with pytest.raises(UnreadableFile, match="holds 4 bytes, not the 500000000 elements its record claims"):
        scan_archive(path)


def test_duplicate_members_are_refused(tmp_path):
    """Python's zipfile reads the last copy of a name, other readers the first: a small copy must not vouch for a
    big one."""
    import warnings
    import zipfile

    path = write_torch_zip(tmp_path / "twice.pt", p_dict({"w": p_tensor("0", (1,), (1,))}), {"0": bytes(4)})
    with zipfile.ZipFile(path, "a") as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name: that is the point
        archive.writestr("archive/data/0", bytes(4))
    with pytest.raises(UnreadableFile, match="two members of the same name"):
        scan_archive(path)


def test_deeply_nested_containers_are_refused(tmp_path):
    """10000 nested lists (a few bytes each): any recursive reader of the result would hit the recursion limit."""
    path = write_torch_zip(tmp_path / "nested.pt", p_dict({"meta": b"]" * 10_000 + b"a" * 9_999}))
    start = time.monotonic()
    for reader in (scan_archive, load_inert):
        with pytest.raises(UnreadableFile, match="nested more than 100 deep"):
            reader(path)
    assert time.monotonic() - start < 2
    # 60 levels, each holding the previous one twice (2^60 paths): 60 deep, walked in linear time
    shared = b"]q\x00" + b"".join(bytes([0x68, i - 1, 0x68, i - 1, 0x86, 0x71, i]) for i in range(1, 61))
    start = time.monotonic()
    assert isinstance(load_inert(write_torch_zip(tmp_path / "dag.pt", shared)), tuple)
    assert time.monotonic() - start < 2


def test_truncated_text_model_weights_are_named(fixtures, tmp_path):
    from yoloworld.models.text import TextEncoder

    folder = truncated_clip(fixtures / "tiny-clip", tmp_path / "clip")
    with pytest.raises(CheckpointError, match="clip/model.safetensors: truncated or damaged safetensors file"):
        TextEncoder.from_pretrained(folder)
