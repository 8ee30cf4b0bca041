"""Weights known by name: the official releases (Hugging Face hub), Ultralytics' YOLO-World files (GitHub) and
`demo`, the tiny model trained on synthetic shapes that ships with the package.

`resolve_weights("yolo_world_v2_s")` or `resolve_weights("yolov8s-worldv2")` downloads the file once and caches
it; `resolve_weights("demo")` is the packaged file, from any folder; a local path is returned as is. Offline (no
network, or HF_HUB_OFFLINE=1) the error says where the file goes.
"""

from __future__ import annotations

import difflib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from yoloworld.errors import CheckpointError

logger = logging.getLogger(__name__)

DEMO_NAME = "demo"
DEMO_WEIGHTS = Path(__file__).resolve().parents[1] / "assets" / "demo.pt"
V2_REPO = "wondervictor/YOLO-World"
V21_REPO = "wondervictor/YOLO-World-V2.1"
# the release tag Ultralytics 8.4 downloads its assets from (ultralytics/utils/downloads.py)
ULTRALYTICS_RELEASE = "https://github.com/ultralytics/assets/releases/download/v8.4.0"


@dataclass(frozen=True)
class WeightsFile:
    file: str
    repo: str  # a Hugging Face repo id, or the URL of a release folder
    version: str  # "v1", "v2", "v2.1"
    imgsz: int = 640  # the input size the model was trained for
    # no text tower or task field: the file itself tells both (its text-tower shapes and metadata, its mask head)

    @property
    def on_hub(self) -> bool:
        return not self.repo.startswith("https://")

    @property
    def url(self) -> str:
        if self.on_hub:
            return f"https://huggingface.co/{self.repo}/resolve/main/{self.file}"
        return f"{self.repo}/{self.file}"


def _seg(size: str, mode: str, digest: str) -> WeightsFile:
    return WeightsFile(f"yolo_world_seg_{size}_dual_vlpan_2e-4_80e_8gpus_{mode}_finetune_lvis-{digest}.pth",
                       V2_REPO, "v1")


WEIGHTS: dict[str, WeightsFile] = {
    # official v2 (names and hashes as in the official README)
    "yolo_world_v2_s": WeightsFile("yolo_world_v2_s_obj365v1_goldg_pretrain-55b943ea.pth", V2_REPO, "v2"),
    "yolo_world_v2_m": WeightsFile("yolo_world_v2_m_obj365v1_goldg_pretrain-c6237d5b.pth", V2_REPO, "v2"),
    "yolo_world_v2_l": WeightsFile("yolo_world_v2_l_obj365v1_goldg_pretrain-a82b1fe3.pth", V2_REPO, "v2"),
    "yolo_world_v2_l_cc3m": WeightsFile("yolo_world_v2_l_obj365v1_goldg_cc3mlite_pretrain-ca93cd1f.pth", V2_REPO, "v2"),
    "yolo_world_v2_x": WeightsFile("yolo_world_v2_x_obj365v1_goldg_cc3mlite_pretrain-8698fbfa.pth", V2_REPO, "v2"),
    "yolo_world_v2_xl": WeightsFile("yolo_world_v2_xl_obj365v1_goldg_cc3mlite_pretrain-5daf1395.pth", V2_REPO, "v2"),
    "yolo_world_v2_l_clip_large": WeightsFile("yolo_world_v2_l_clip_large_o365v1_goldg_pretrain-8ff2e744.pth",
                                              V2_REPO, "v2"),
    "yolo_world_v2_s_1280": WeightsFile("yolo_world_v2_s_obj365v1_goldg_pretrain_1280ft-fc4ff4f7.pth", V2_REPO,
                                        "v2", 1280),
    "yolo_world_v2_m_1280": WeightsFile("yolo_world_v2_m_obj365v1_goldg_pretrain_1280ft-77d0346d.pth", V2_REPO,
                                        "v2", 1280),
    "yolo_world_v2_l_1280": WeightsFile("yolo_world_v2_l_obj365v1_goldg_pretrain_1280ft-9babe3f6.pth", V2_REPO,
                                        "v2", 1280),
    "yolo_world_v2_x_1280": WeightsFile("yolo_world_v2_x_obj365v1_goldg_cc3mlite_pretrain_1280ft-14996a36.pth",
                                        V2_REPO, "v2", 1280),
    # official v2.1 (the official README's model card). S at 640 is missing: its README link points to the X
    # file (official issue #588) and no other name is published.
    "yolo_world_v2.1_s_1280": WeightsFile("s_stage2-4466ab94.pth", V21_REPO, "v2.1", 1280),
    "yolo_world_v2.1_m": WeightsFile("m_stage1-7e1e5299.pth", V21_REPO, "v2.1"),
    "yolo_world_v2.1_m_1280": WeightsFile("m_stage2-9987dcb1.pth", V21_REPO, "v2.1", 1280),
    "yolo_world_v2.1_l": WeightsFile("l_stage1-7d280586.pth", V21_REPO, "v2.1"),
    "yolo_world_v2.1_l_800": WeightsFile("l_stage2-b3e3dc3f.pth", V21_REPO, "v2.1", 800),  # also evaluated at 1280
    "yolo_world_v2.1_x": WeightsFile("x_stage1-62b674ad.pth", V21_REPO, "v2.1"),
    # official YOLO-World-Seg (v1 dual VL-PAN, LVIS fine-tunes): allmodules = better masks, seghead = the
    # detector's zero-shot boxes kept
    "yolo_world_seg_m": _seg("m", "allmodules", "ca465825"),
    "yolo_world_seg_l": _seg("l", "allmodules", "8c58c916"),
    "yolo_world_seg_m_seghead": _seg("m", "seghead", "7bca59a7"),
    "yolo_world_seg_l_seghead": _seg("l", "seghead", "5a642d30"),
    # Ultralytics' pickled models (read without running them: models/ultralytics.py)
    **{f"yolov8{size}-world{suffix}": WeightsFile(f"yolov8{size}-world{suffix}.pt", ULTRALYTICS_RELEASE, version)
       for size in "smlx" for suffix, version in (("", "v1"), ("v2", "v2"))},
}


def lookup(name: str | os.PathLike) -> WeightsFile | None:
    """The table row for a short name; Ultralytics names may carry their `.pt` suffix."""
    name = str(name)
    return WEIGHTS.get(name) or (WEIGHTS.get(name[:-3]) if name.endswith(".pt") else None)


def default_imgsz(name_or_path: str | os.PathLike) -> int | None:
    row = lookup(name_or_path)
    return row.imgsz if row else None


def is_demo(path: str | os.PathLike) -> bool:
    """Whether `path` is the packaged demo model (trained on synthetic shapes only)."""
    try:
        return Path(path).resolve() == DEMO_WEIGHTS
    except OSError:
        return False


def resolve_weights(name_or_path: str | os.PathLike) -> Path:
    """A local file, `demo` (the packaged demo model), or a short name such as `yolo_world_v2_s` /
    `yolov8s-worldv2` downloaded once and cached."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():  # a training run: its best weights (else its last)
        for name in ("best.pth", "last.pth"):
            if (path / name).is_file():
                logger.info(f"{path} is a training run: using its {name}")
                return path / name
        raise CheckpointError(f"{path}: is a folder without best.pth or last.pth; pass a checkpoint file (.pth/.pt)")
    if path.exists():
        return path
    if str(name_or_path) == DEMO_NAME:
        if not DEMO_WEIGHTS.is_file():
            raise CheckpointError(f"{DEMO_WEIGHTS}: the demo model is missing from this installation")
        return DEMO_WEIGHTS
    row = lookup(name_or_path)
    if row is None:
        raise CheckpointError(f"{name_or_path}: no such file, and not a known model name{_did_you_mean(path)}")
    return _download_hub(str(name_or_path), row) if row.on_hub else _download_url(str(name_or_path), row)


def _did_you_mean(path: Path) -> str:
    """The closest short names to a mistyped one, else the list of them all."""
    names = [DEMO_NAME, *WEIGHTS]
    close = difflib.get_close_matches(path.name.lower(), names, n=2, cutoff=0.75)
    if close:
        return f"; did you mean {' or '.join(close)}?"
    return f" ({', '.join(names)})"


def _download_hub(name: str, row: WeightsFile) -> Path:
    try:
        from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache

        cached = try_to_load_from_cache(row.repo, row.file)
        if isinstance(cached, str):
            return Path(cached)
        # one quick attempt first: offline, hf_hub_download would back off and retry for ~25 s
        get_hf_file_metadata(hf_hub_url(row.repo, row.file), timeout=5)
        return Path(hf_hub_download(row.repo, row.file))
    except Exception as exc:  # offline, no such file, network error: one line with the way out
        raise CheckpointError(f"{name}: cannot download {row.file} ({type(exc).__name__}); download {row.url} "
                              f"yourself and {_use_the_file(row.file)}") from None


def weights_cache() -> Path:
    from yoloworld.models.text import cache_dir

    return cache_dir() / "weights"


def _download_url(name: str, row: WeightsFile) -> Path:
    target = weights_cache() / row.file
    if target.is_file():
        return target
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        reason = "offline"
    else:
        try:
            import torch.hub

            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(row.url, str(target), progress=True)  # temp file + rename
            return target
        except Exception as exc:
            reason = type(exc).__name__
    raise CheckpointError(f"{name}: cannot download {row.file} ({reason}); put {row.url} in {target.parent}/ "
                          f"or {_use_the_file(row.file)}")


def _use_the_file(file: str) -> str:
    """The way out, in both places a weights name is given (a command's flag, a training recipe's key)."""
    return f"give its path instead of the name (--weights /path/to/{file}, or model.weights=/path/to/{file} " \
           "for yoloworld train)"
