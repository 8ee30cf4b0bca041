"""Segmentation learning check: a small YOLO-World-Seg trained on CPU on the synthetic shapes (drawn from exact
polygons, so the masks are exact) learns masks; prints box and mask AP on held-out images.

It trains the built-in `synth_demo` recipe with `model.segment=true` (the same `yoloworld train` code path:
polygons through mosaic / affine / flip, rasterised at 1/4, mask loss, mask AP in validation), then scores
best.pth on an independently drawn test set through the public YOLOWorld API (masks at the original size).

    python benchmarks/learn_synth_seg.py                                 # 300 images at 256 px, 15 epochs
    python benchmarks/learn_synth_seg.py --images 160 data.augment.image_size=160 model.arch.proto_channels=64
        # the README figures: held-out mask AP 0.75 after 240 iterations, ~45 min on a busy 2-core VM
    python benchmarks/learn_synth_seg.py --picture /tmp/segmentation.jpg  # also a picture

Not a timed test: it prints box and mask AP, iterations and wall time.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from learn_synth import learning_check_parser, predict_set, train_on_synth  # noqa: E402  (the same synthetic data as the detection learning check)


def score(weights: Path, coco: Path, imgsz: int) -> tuple[dict, dict]:
    """COCO box and mask AP of a checkpoint on a synthetic set, via YOLOWorld.from_pretrained + predict."""
    from yoloworld.api import YOLOWorld
    from yoloworld.eval import evaluate
    from yoloworld.vocabulary import load_class_file

    model = YOLOWorld.from_pretrained(weights, imgsz=imgsz)
    model.set_classes(load_class_file(coco / "class_texts.json"))
    annotations, predictions = predict_set(model, coco, max_det=100, masks=True)
    return evaluate(annotations, predictions).metrics, evaluate(annotations, predictions, iou_type="segm").metrics


def main() -> int:
    parser = learning_check_parser(__doc__.split("\n\n")[0], "runs/learn_synth_seg",
                                   "delete a previous run in --out first")
    parser.add_argument("--picture", help="also draw a held-out image with `yoloworld predict` and copy it here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    work = Path(args.out)
    config, summary, wall, resume, test = train_on_synth(args, ["model.segment=true", "eval.metric=segm_AP"])

    imgsz = config.data.augment.image_size
    box, mask = score(work / "run" / "best.pth", test, imgsz)
    best = summary.get("best") or {}
    print("\n=== segmentation learning check (synthetic shapes, CPU) ===")
    print(f"iterations        {summary.get('iterations')} ({config.schedule.epochs} epochs x batch "
          f"{config.optim.batch_size}, image size {imgsz})")
    print(f"wall time         {wall / 60:.1f} min{' (resumed run: this session only)' if resume else ''}")
    print(f"val   mask AP     {best.get('coco/segm_mAP', float('nan')):.4f}  (AP50 "
          f"{best.get('coco/segm_mAP_50', float('nan')):.4f}, best epoch {summary.get('best_epoch')}; box AP "
          f"{best.get('coco/bbox_mAP', float('nan')):.4f})")
    print(f"test  mask AP     {mask['AP']:.4f}  (AP50 {mask['AP50']:.4f}, AP75 {mask['AP75']:.4f}; "
          f"{args.test_images} new images)")
    print(f"test  box AP      {box['AP']:.4f}  (AP50 {box['AP50']:.4f})")
    if args.picture:
        draw(work / "run" / "best.pth", test, imgsz, Path(args.picture))
    return 0


def draw(weights: Path, coco: Path, imgsz: int, picture: Path) -> None:
    """`yoloworld predict` on the first held-out image (masks, boxes, names), the annotated image written to
    `picture` (its suffix chooses the format)."""

    import cv2

    from yoloworld.cli import main as cli

    image = sorted((coco / "images").iterdir())[0]
    out = picture.parent / "_predict"
    code = cli(["predict", str(image), "--weights", str(weights), "--imgsz", str(imgsz), "--conf", "0.3",
                "--classes-file", str(coco / "class_texts.json"), "--save-dir", str(out)])
    if code == 0:
        picture.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(picture), cv2.imread(str(out / image.name)))
        print(f"picture           {picture}")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
