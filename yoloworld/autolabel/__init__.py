"""Auto-labelling: run a detector over a folder and write a dataset that `yoloworld train` and `data check` read.

    images -> predict (per-class thresholds) -> ledger (one JSON line per image, resumable)
           -> COCO JSON + class texts, or YOLO txt + data.yaml -> review grid + per-class summary
"""

from yoloworld.autolabel.labeler import LabelSettings, label_images

__all__ = ["LabelSettings", "label_images"]
