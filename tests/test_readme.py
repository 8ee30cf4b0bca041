"""The README as written: every command of its ```bash blocks and every ```python block runs in a fresh process.

Each README section runs in its own temporary folder (the cwd), its commands in README order, so a later command
uses what an earlier one wrote. The inputs a reader would bring (a photo, a folder of images, weights `W`, a COCO
annotation file...) are made from the project's own synthetic shapes and its demo model; what cannot run here
(downloads, cameras, installs, the GPU, hour-long trainings) is changed or skipped by the ONE table below, each
entry with its reason. An entry that no longer matches any README command fails the test, so does a command that
no entry covers and that fails: a README change that breaks a command fails CI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import REPO, cli_env

README = REPO / "README.md"
DEMO = REPO / "yoloworld" / "assets" / "demo.pt"
SKIP = None  # a replacement of SKIP: the command is not run

# A tiny schedule, image size and model for the recipes built on finetune_coco (YOLO-World-S, 640 px, 80 epochs:
# hours on a CPU). W.pth is size n with its own text tower.
TINY = ("model.size=n model.arch.min_cls_channels=32 data.augment.image_size=64 data.workers=0 schedule.epochs=1 "
        "schedule.warmup_min_iters=1 optim.batch_size=8")
TINY_SYNTH = "data.augment.image_size=64 data.workers=0 schedule.epochs=1 schedule.warmup_min_iters=1"


@dataclass(frozen=True)
class Sub:
    """In commands of `section` ("*": any) that contain `find`: replace it by `replace` (SKIP: do not run the
    command), or, with `append`, add `append` at the end."""

    section: str
    find: str
    replace: str | None = ""
    reason: str = ""
    append: str = ""


SUBSTITUTIONS = [
    # ---- installs, test runs and benchmarks: illustrative here (this test runs inside the installed checkout)
    Sub("Two commands", "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && ", "",
        reason="the install: this test runs in the installed checkout; the rest of the line runs as written"),
    Sub("Two commands", 'pip install -e ".[test]"', SKIP, reason="the install and the whole test suite (CI runs it)"),
    Sub("*", "python3 -m venv", SKIP, reason="creating a venv: the test runs in one"),
    Sub("*", "pip install", SKIP, reason="installs: the test runs in the installed checkout"),
    Sub("Benchmarks", "python benchmarks/", SKIP, reason="benchmarks take minutes to hours (their figures are in the README)"),
    Sub("Fine-tuning without forgetting", "python benchmarks/forgetting.py", SKIP,
        reason="the 25-minute benchmark; tests/test_forgetting.py trains each method"),
    Sub("Development", "python -m pytest", SKIP, reason="the suite itself (CI runs it)"),
    Sub("Development", "ruff check", SKIP, reason="lint (CI runs it)"),
    Sub("Development", "bash scripts/test-portability.sh", SKIP, reason="the suite three more times"),
    Sub("Development", "yoloworld COMMAND ...", SKIP, reason="a pattern, not a command"),
    Sub("Training and fine-tuning", "torchrun --nproc_per_node 8", SKIP,
        reason="8 processes of DDP; tests/test_ddp.py runs DDP with two"),
    # ---- downloads: official and Ultralytics weights, CLIP (offline here)
    Sub("For Ultralytics users", "yoloworld ", SKIP,
        reason="Ultralytics' files are downloads; tests/test_ultralytics.py loads files written by ultralytics"),
    Sub("*", "/path/yolo_world_v2_s_obj365v1_goldg_pretrain-55b943ea.pth", "W.pth",
        reason="official weights: a download; W.pth is the demo model fine-tuned with its text tower"),
    Sub("*", "yolo_world_seg_l_seghead", "W.pth",
        reason="official segmentation weights: a download (W.pth detects; masks: tests/test_seg_predict.py)"),
    Sub("*", "yolo_world_v2_s", "W.pth", reason="official weights: a download"),
    Sub("*", "yolo_world_v2_l", "W.pth", reason="official weights: a download"),
    Sub("*", "model.vision_model=openai/clip-vit-base-patch32", "model.vision_model=clip-vision",
        reason="CLIP's vision tower: a download; clip-vision is a tiny random tower of the same shape"),
    Sub("Image (visual) prompts", "--visual-prompt", append=" --vision-model clip-vision",
        reason="CLIP's vision tower: a download; clip-vision is a tiny random tower of the same shape"),
    Sub("Image (visual) prompts", "--images", append=" --vision-model clip-vision",
        reason="CLIP's vision tower: a download"),
    # ---- cameras, stream servers, the web app: hardware and servers that run until stopped
    Sub("Cameras and live streams", "yoloworld predict ", SKIP,
        reason="a camera, an RTSP camera and an MJPEG server; tests/test_streams.py runs a local MJPEG camera"),
    Sub("Tracking and counting", "yoloworld track rtsp://", SKIP,
        reason="an RTSP camera; tests/test_track.py tracks a local MJPEG camera"),
    Sub("Web app", "yoloworld app", SKIP, reason="a server that runs until stopped; tests/test_app.py drives it"),
    Sub("Serving", "yoloworld serve", SKIP, reason="a server that runs until stopped; tests/test_serve.py starts it"),
    Sub("Serving", "python benchmarks/serve_load.py", SKIP, reason="a 3-minute load test (its figures are in the README)"),
    Sub("Serving", "curl ", SKIP, reason="needs the server: tests/test_serve.py runs this line against it"),
    Sub("Scaling out", "ray start", SKIP, reason="a multi-node Ray cluster; tests/test_serve.py runs a local one"),
    Sub("Scaling out", "yoloworld serve", SKIP, reason="a server that runs until stopped; tests/test_serve.py starts it"),
    Sub("Scaling out", "yoloworld label", SKIP, reason="joins a Ray cluster; tests/test_label_ray.py runs it on a "
        "local Ray head"),
    # ---- the demo model knows coloured shapes: classes it can find, so the labelled dataset has boxes
    Sub("Auto-labelling", '"person,forklift,pallet|skid"', '"red circle,green square,blue triangle|blue square"',
        reason="classes of the shapes the images show (an empty dataset would not train)"),
    Sub("Auto-labelling", '"pallet=0.45"', '"blue triangle=0.45"', reason="the class renamed above"),
    # ---- long trainings: the same recipes with a tiny model, image size and schedule
    Sub("*", "yoloworld train finetune_coco", append=f" {TINY}", reason="YOLO-World-S for 80 epochs at 640 px"),
    Sub("Auto-labelling", "yoloworld train finetune_coco", append=" model.weights=W.pth",
        reason="the recipe's default weights (yolo_world_v2_s) are a download"),
    Sub("Fine-tuning without forgetting", "yoloworld train finetune_coco $R", append=" model.weights=W.pth",
        reason="the recipe's default weights (yolo_world_v2_s) are a download"),
    Sub("Fine-tuning without forgetting", "keep.mix.kind=grounding", append=" --show",
        reason="one more training each: the settings resolve (--show); tests/test_forgetting.py trains them"),
    Sub("Fine-tuning without forgetting", "keep.distill=1.0", append=" --show", reason="as above"),
    Sub("Fine-tuning without forgetting", "keep.l2sp=50", append=" --show", reason="as above"),
    Sub("*", "yoloworld train --resume runs/train/finetune_coco128", append=" schedule.epochs=2",
        reason="the tiny run above is finished: resuming extends it by one epoch (key=value extends a run)"),
    Sub("*", "yoloworld train synth_demo", append=f" {TINY_SYNTH}", reason="15 epochs at 256 px: one at 64 px"),
    Sub("*", "yoloworld train prompt_tuning", append=f" model.weights=W.pth {TINY}", reason="as finetune_coco"),
    Sub("*", "yoloworld train rep_finetune", append=f" {TINY}", reason="as finetune_coco"),
    Sub("*", "yoloworld train image_prompt", append=f" {TINY} model.image_prompt_min_side=16",
        reason="as finetune_coco; at 64 px the shapes are smaller than the official 64-px minimum prompt box"),
    Sub("*", "data.train.0.ann=...", "data.train.0.ann=data/coco128/annotations/train.json",
        reason="'...' stands for the reader's annotation file"),
    Sub("Image (visual) prompts", "yoloworld predict shelf.jpg --weights W_dynamic.onnx",
        "yoloworld export --weights W --format onnx --vocab dynamic --out W_dynamic.onnx --no-check > /dev/null && "
        "yoloworld predict shelf.jpg --weights W_dynamic.onnx",
        reason="W_dynamic.onnx is the Export section's command (its own folder): made here first, as written there"),
    # ---- small inputs
    Sub("*", "--images 200 --seed 0", "--images 12 --seed 0 --min-side 96 --max-side 128",
        reason="a dozen small images instead of 200 up to 640 px"),
    Sub("*", " [--calib-images 300]", " --calib-images 4", reason="the optional flag, with 4 calibration images"),
]

# The inputs a reader brings, made from the synthetic shapes and the demo model (each listed with what it stands for).
GIVEN = {
    "street.jpg, img.jpg, shelf.jpg, ref.jpg, a.jpg, b.jpg": "photos: synthetic shape images",
    "photos/, images/, crops/cup/, refs/<class>/": "folders of those images",
    "clip.mp4": "a video: 3 synthetic frames",
    "W, W.pth": "your weights: the demo model fine-tuned for one epoch with its text tower (train synth_demo)",
    "clip-vision/": "a CLIP vision tower: tiny and random, the shape of CLIP's (no download)",
    "class_texts.json, texts.json, held_out_texts.json, obj365_texts.json": "class-text JSON of the shapes",
    "data/coco128/": "the coco128 download: the shapes in coco128's YOLO layout (train/, val/)",
    "data/synth/": "written by the Data section's `data synth` (the Training section runs on it)",
    "train.json, val.json, held_out.json, instances_val2017.json, imgs/, held_out/, val2017/, coco/":
        "COCO annotations of the shapes and their image folder",
    "lvis_v1_minival_inserted_image_name.json": "the same annotations in LVIS form",
    "goldg.json, gqa/": "grounding annotations of the shapes (data synth writes them)",
    "preds.json": "a COCO results file (the ground truth as detections)",
    "data/coco128/annotations/": "BEFORE_SECTION: the Training section's conversion, run first where a section "
        "needs it",
}
CONVERT = "yoloworld convert yolo2coco data/coco128 --texts data/texts/coco128_class_texts.json"
BEFORE_SECTION = {  # README commands of other sections that a section's commands need first
    "Image (visual) prompts": [CONVERT],
    "Fine-tuning without forgetting": [CONVERT],
}

PYTHON_PRELUDE = {  # names a README Python block uses without defining them (it shows a fragment)
    "Zero-shot prediction": """
        import cv2, torch
        from PIL import Image
        bgr_array = cv2.imread("img.jpg"); pil_image = Image.open("street.jpg"); a, b = "img.jpg", "street.jpg"
        images = torch.rand(1, 3, 256, 256)
    """,
    "Tracking and counting": """
        import cv2
        bgr_frame = cv2.imread("street.jpg")
    """,
    "Image (visual) prompts": """
        from yoloworld import YOLOWorld
        model = YOLOWorld.from_pretrained("W.pth", vision_model="clip-vision")
    """,
}
PYTHON_SUBSTITUTIONS = [
    Sub("Zero-shot prediction", '"yolo_world_v2_s"', '"W.pth"', reason="official weights: a download"),
    Sub("Zero-shot prediction", "model.forward_raw(images, text_embeds)", "model.forward_raw(images, "
        "model.text_embeds[None])", reason="text_embeds stands for (B, T, D) embeddings: the vocabulary's"),
    Sub("Serving", "requests.post(", SKIP, reason="the client needs the server: tests/test_serve.py runs this block "
        "against it"),
]


# ------------------------------------------------------------------------------------------------ reading

@dataclass
class Block:
    section: str
    language: str
    commands: list[tuple[int, str]]  # (README line, text) - bash: one per (joined) line; python: the whole block


def readme_blocks() -> list[Block]:
    blocks, section, lines = [], "", README.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("## ") or line.startswith("### "):
            section = line.lstrip("# ").strip()
        fence = re.match(r"^```(\w+)$", line)
        if fence and fence[1] in ("bash", "python"):
            start, body = index + 1, []
            index += 1
            while not lines[index].startswith("```"):
                body.append(lines[index])
                index += 1
            commands = shell_commands(body, start + 1) if fence[1] == "bash" else [(start + 1, "\n".join(body))]
            blocks.append(Block(section, fence[1], commands))
        index += 1
    return blocks


def shell_commands(body: list[str], first_line: int) -> list[tuple[int, str]]:
    """(README line, command): one command per line, lines ending in a backslash joined, comment lines dropped."""
    commands, current, start = [], "", None
    for number, line in enumerate(body, first_line):
        start = number if not current else start
        current += line
        if line.rstrip().endswith("\\"):
            current = current.rstrip()[:-1] + " "
            continue
        if current.strip() and not current.strip().startswith("#"):
            commands.append((start, " ".join(current.split()) if "'" not in current and '"' not in current
                             else current.strip()))
        current = ""
    return commands


def substituted(subs: list[Sub], section: str, command: str, used: set) -> str | None:
    """The command after the table's entries, in table order (each sees the command as the one before left it);
    None for a skipped command."""
    for sub in subs:
        if sub.section not in ("*", section) or sub.find not in command:
            continue
        used.add(sub)
        if sub.replace is SKIP and not sub.append:
            return None
        if sub.append:
            command = strip_comment(command) + sub.append
        else:
            command = command.replace(sub.find, sub.replace)
    return command


def strip_comment(command: str) -> str:
    """The command without its trailing `# ...` comment (outside quotes)."""
    quote = None
    for position, char in enumerate(command):
        if char in "'\"":
            quote = None if quote == char else (quote or char)
        elif char == "#" and quote is None and (position == 0 or command[position - 1] == " "):
            return command[:position].rstrip()
    return command


# ------------------------------------------------------------------------------------------------ inputs

def run(argv: list[str], cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def shell_env(bin_dir: Path) -> dict:
    """`yoloworld` on PATH runs this checkout with this interpreter (as the installed console script does)."""
    env = cli_env()
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["YOLOWORLD_CACHE"] = str(bin_dir.parent / "cache")  # text embeddings: not the user's cache
    return env


def check(result: subprocess.CompletedProcess, what: str) -> None:
    output = (result.stdout[-1500:] + "\n" + result.stderr[-3000:]).strip()
    assert result.returncode == 0, f"{what}\nexit code {result.returncode}:\n{output}"
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, f"{what}\n{output}"


@pytest.fixture(scope="module")
def given(tmp_path_factory) -> Path:
    """The inputs of GIVEN, made once: synthetic shapes, the weights W.pth, a tiny vision tower."""
    root = tmp_path_factory.mktemp("given")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "yoloworld"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m yoloworld "$@"\n')
    shim.chmod(0o755)
    env = shell_env(bin_dir)
    check(run(["yoloworld", "data", "synth", "--out", "synth", "--images", "16", "--min-side", "256",
               "--max-side", "320", "--val-fraction", "0.25"], root, env), "given: data synth")
    check(run(["yoloworld", "train", "synth_demo", f"model.weights={DEMO}", "optim.lr=0.0001", "out=run",
               "data.train.0.ann=synth/coco/annotations.json", "data.train.0.images=synth/coco/images",
               "data.train.0.classes_file=synth/coco/class_texts.json",
               "data.val.0.ann=synth/coco/annotations_val.json", "data.val.0.images=synth/coco/images",
               "data.val.0.classes_file=synth/coco/class_texts.json", *TINY_SYNTH.split()], root, env, 600),
          "given: W.pth")
    # in a child: FFmpeg's encoder in this long-lived test process (torch, ONNX Runtime, OpenVINO loaded) crashed
    check(run([sys.executable, "-c", WRITE_VIDEO, "synth/coco/images", "clip.mp4"], root, env), "given: clip.mp4")
    check(run([sys.executable, "-c", textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        from test_visual_prompts import save_tower
        save_tower("clip-vision")
    """), str(Path(__file__).parent)], root, env), "given: clip-vision")
    return root


def prepare(folder: Path, given: Path, section: str) -> None:
    """Lay out GIVEN in a section's folder."""
    synth, coco = given / "synth", given / "synth" / "coco"
    images = sorted((coco / "images").glob("*.jpg"))
    links = {"W": given / "run" / "best.pth", "W.pth": given / "run" / "best.pth", "clip-vision": given / "clip-vision",
             "class_texts.json": coco / "class_texts.json", "texts.json": coco / "class_texts.json",
             "held_out_texts.json": coco / "class_texts.json", "obj365_texts.json": coco / "class_texts.json",
             "train.json": coco / "annotations.json", "val.json": coco / "annotations_val.json",
             "held_out.json": coco / "annotations_val.json", "instances_val2017.json": coco / "annotations_val.json",
             "goldg.json": synth / "grounding" / "annotations.json"}
    for name in ("images", "imgs", "held_out", "val2017", "coco", "gqa"):
        links[name] = coco / "images"
    for name, image in zip(("street.jpg", "img.jpg", "shelf.jpg", "ref.jpg", "a.jpg", "b.jpg"), images):
        links[name] = image
    for name, target in links.items():
        (folder / name).symlink_to(target)
    for sub, picked in (("photos", images[:3]), ("crops/cup", images[3:5]), ("refs/mug", images[5:7]),
                        ("refs/cup", images[7:9])):
        (folder / sub).mkdir(parents=True)
        for image in picked:
            (folder / sub / image.name).symlink_to(image)
    (folder / "clip.mp4").symlink_to(given / "clip.mp4")
    write_lvis(coco / "annotations_val.json", folder / "lvis_v1_minival_inserted_image_name.json")
    write_results(coco / "annotations_val.json", folder / "preds.json")
    coco128 = folder / "data" / "coco128"
    for split in ("train", "val"):
        shutil.copytree(synth / "yolo" / "images" / split, coco128 / split / "images")
        shutil.copytree(synth / "yolo" / "labels" / split, coco128 / split / "labels")
    shutil.copy(synth / "yolo" / "classes.txt", coco128 / "classes.txt")
    (folder / "data" / "texts").mkdir()
    if section != "Data":  # the Data section writes it
        (folder / "data" / "synth").symlink_to(synth)


WRITE_VIDEO = """
import sys
from pathlib import Path

import cv2

frames = sorted(Path(sys.argv[1]).glob("*.jpg"))[:3]
writer = cv2.VideoWriter(sys.argv[2], cv2.VideoWriter_fourcc(*"mp4v"), 5, (256, 256))
for frame in frames:
    writer.write(cv2.resize(cv2.imread(str(frame)), (256, 256)))
writer.release()
"""


def write_lvis(coco_file: Path, path: Path) -> None:
    data = json.loads(coco_file.read_text())
    for category in data["categories"]:
        category["frequency"] = "f"
    for image in data["images"]:
        image.update(neg_category_ids=[], not_exhaustive_category_ids=[])
    path.write_text(json.dumps(data))


def write_results(coco_file: Path, path: Path) -> None:
    annotations = json.loads(coco_file.read_text())["annotations"]
    path.write_text(json.dumps([{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                                 "score": 0.9} for a in annotations]))


# ------------------------------------------------------------------------------------------------ the test

def sections() -> list[str]:
    names = []
    for block in readme_blocks():
        if block.section not in names:
            names.append(block.section)
    return names


def test_every_substitution_matches_a_readme_command():
    """A stale entry (its README command changed or gone) must be updated with the README."""
    used: set = set()
    for block in readme_blocks():
        subs = SUBSTITUTIONS if block.language == "bash" else PYTHON_SUBSTITUTIONS
        for _, command in block.commands:
            substituted(subs, block.section, command, used)
    unused = [s for s in SUBSTITUTIONS + PYTHON_SUBSTITUTIONS if s not in used]
    assert not unused, unused
    for section in list(PYTHON_PRELUDE) + list(BEFORE_SECTION):
        assert section in sections(), section


@pytest.mark.parametrize("section", sections())
def test_readme_section_runs_as_written(section, given, tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    prepare(folder, given, section)
    env = shell_env(given / "bin")
    for command in BEFORE_SECTION.get(section, []):
        check(run(["bash", "-c", command], folder, env), f"[{section}] before: {command}")
    ran, used = 0, set()
    for block in (b for b in readme_blocks() if b.section == section):
        assignments = []  # `R="..."` lines: kept for the later commands of the block, as one shell would
        for line, command in block.commands:
            if block.language == "python":
                code = substituted(PYTHON_SUBSTITUTIONS, section, command, used)
                if code is None:
                    continue
                code = textwrap.dedent(PYTHON_PRELUDE.get(section, "")) + code
                check(run([sys.executable, "-c", code], folder, env), f"[{section}] README line {line}:\n{code}")
                ran += 1
                continue
            runnable = substituted(SUBSTITUTIONS, section, command, used)
            if runnable is None:
                continue
            if re.match(r"^[A-Z_]+=\S", runnable) and " " not in runnable.split("=", 1)[0]:
                assignments.append(runnable)
                continue
            script = "\n".join(assignments + [runnable])
            check(run(["bash", "-c", script], folder, env, 600), f"[{section}] README line {line}: {runnable}")
            ran += 1
    print(f"{section}: {ran} command(s) run")
